//! The chat engine: replicas of this node's chats over the sled store. Owned
//! by the node actor; every method that acknowledges something flushes first.
//!
//! On any storage error the affected replica is dropped from memory, so the
//! in-memory view never runs ahead of what is on disk.

use std::collections::{BTreeMap, HashMap};

use meshchat_crdt::{
    ChangeHash, ChatId, ChatKind, ChatReplica, Identity, Message, MessageId, PublicKey,
    SegmentHeads, SegmentIndex, SignedChange, WriteError,
};
use serde::{Deserialize, Serialize};

use crate::{
    protocol::{RejectedChange, Response, WireError},
    store::{ChatRecord, DeliveryState, OutboxEntry, Store, StoreError},
};

/// Bytes of changes put in one push or sync answer, well under the frame limits.
pub(crate) const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Changes taken from the outbox for one push.
pub(crate) const OUTBOX_BATCH: usize = 512;

/// A message in a history listing, with its delivery state when it is ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The message.
    pub message: Message,
    /// Whether this node's user wrote it.
    pub outgoing: bool,
    /// For outgoing messages: the least-advanced state over the recipients.
    pub delivery: Option<DeliveryState>,
}

/// One line of the chat list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSummary {
    /// The chat.
    pub id: ChatId,
    /// Who is in it.
    pub kind: ChatKind,
    /// Number of messages.
    pub messages: usize,
    /// The newest message.
    pub last: Option<Message>,
}

/// What receiving a batch of changes did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Durably held now (new or duplicate): acknowledge these.
    pub(crate) stored: Vec<ChangeHash>,
    pub(crate) rejected: Vec<RejectedChange>,
    pub(crate) new_messages: Vec<(ChatId, Message)>,
}

/// Why a local write failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalWriteError {
    #[error("no chat {0}")]
    UnknownChat(ChatId),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) struct Chats {
    me: Identity,
    store: Store,
    replicas: HashMap<ChatId, ChatReplica>,
}

impl Chats {
    pub(crate) fn new(me: Identity, store: Store) -> Self {
        Self {
            me,
            store,
            replicas: HashMap::new(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn me(&self) -> PublicKey {
        self.me.public()
    }

    /// The replica of `chat`, loaded from disk on first use.
    fn replica(&mut self, chat: &ChatId) -> Result<Option<&mut ChatReplica>, StoreError> {
        if !self.replicas.contains_key(chat) {
            let Some(record) = self.store.chat(chat)? else {
                return Ok(None);
            };
            let mut replica = ChatReplica::new(record.kind);
            let mut stored = Vec::new();
            for signed in self.store.changes_of(chat)? {
                match signed.decode_stored() {
                    Ok(change) => stored.push(change),
                    Err(error) => {
                        tracing::error!(%chat, %error, "skipping undecodable stored change")
                    }
                }
            }
            replica.apply(stored);
            self.replicas.insert(*chat, replica);
        }
        Ok(self.replicas.get_mut(chat))
    }

    /// The direct chat with `peer`, created (and persisted) if new.
    pub(crate) fn ensure_direct(
        &mut self,
        peer: PublicKey,
        now_ms: i64,
    ) -> Result<ChatId, StoreError> {
        let kind = ChatKind::direct(self.me.public(), peer);
        let id = kind.chat_id();
        if self.store.chat(&id)?.is_none() {
            self.store.put_chat(
                &id,
                &ChatRecord {
                    kind,
                    created_at_ms: now_ms,
                },
            )?;
        }
        Ok(id)
    }

    pub(crate) fn exists(&self, chat: &ChatId) -> Result<bool, StoreError> {
        Ok(self.replicas.contains_key(chat) || self.store.chat(chat)?.is_some())
    }

    /// Writes a message, stores it with an outbox entry per recipient, flushes.
    /// Returns the message and its recipients.
    pub(crate) async fn write(
        &mut self,
        chat: ChatId,
        text: &str,
        now_ms: i64,
    ) -> Result<(Message, Vec<PublicKey>), LocalWriteError> {
        let me = self.me.clone();
        let replica = self
            .replica(&chat)?
            .ok_or(LocalWriteError::UnknownChat(chat))?;
        let written = replica.write_message(&me, text, None, now_ms)?;
        let recipients = recipients(replica, &me.public());
        let result =
            self.persist_write(&written.change, written.hash, &written.message, &recipients);
        if let Err(e) = result {
            self.replicas.remove(&chat);
            return Err(e.into());
        }
        if let Err(e) = self.store.flush().await {
            self.replicas.remove(&chat);
            return Err(e.into());
        }
        Ok((written.message, recipients))
    }

    fn persist_write(
        &self,
        change: &SignedChange,
        hash: ChangeHash,
        message: &Message,
        recipients: &[PublicKey],
    ) -> Result<(), StoreError> {
        self.store.put_changes([(change, hash)])?;
        for peer in recipients {
            self.store.outbox_add(
                peer,
                &OutboxEntry {
                    chat: change.chat,
                    segment: change.segment,
                    hash,
                    message: Some(message.id),
                },
            )?;
            self.store
                .set_delivery(&change.chat, &message.id, peer, DeliveryState::Pending)?;
        }
        Ok(())
    }

    /// Checks, durably stores, then applies changes pushed by `from`.
    pub(crate) async fn receive(
        &mut self,
        from: PublicKey,
        changes: Vec<SignedChange>,
        now_ms: i64,
    ) -> Result<Received, StoreError> {
        let mut by_chat: BTreeMap<ChatId, Vec<SignedChange>> = BTreeMap::new();
        for change in changes {
            by_chat.entry(change.chat).or_default().push(change);
        }
        let mut out = Received::default();
        let mut to_apply = Vec::new();
        for (chat, changes) in by_chat {
            if !self.exists(&chat)? && !self.adopt_direct_chat(&chat, &changes, now_ms)? {
                out.rejected.extend(changes.iter().map(|c| RejectedChange {
                    hash: c.verify().ok().map(|v| v.hash),
                    reason: format!("unknown chat {chat}"),
                }));
                continue;
            }
            let Some(replica) = self.replica(&chat)? else {
                continue;
            };
            let checked = replica.check(changes);
            for rejected in checked.rejected {
                tracing::warn!(%chat, peer = %from, reason = %rejected.reason, "rejected change");
                out.rejected.push(RejectedChange {
                    hash: rejected.hash,
                    reason: rejected.reason.to_string(),
                });
            }
            out.stored.extend(checked.duplicates);
            let mut valid = checked.accepted;
            valid.extend(checked.deferred);
            if valid.is_empty() {
                continue;
            }
            let persisted = self
                .store
                .put_changes(valid.iter().map(|c| (&c.signed, c.hash)));
            if let Err(e) = persisted {
                self.replicas.remove(&chat);
                return Err(e);
            }
            out.stored.extend(valid.iter().map(|c| c.hash));
            to_apply.push((chat, valid));
        }
        if !to_apply.is_empty() {
            if let Err(e) = self.store.flush().await {
                for (chat, _) in &to_apply {
                    self.replicas.remove(chat);
                }
                return Err(e);
            }
        }
        for (chat, accepted) in to_apply {
            if let Some(replica) = self.replica(&chat)? {
                let applied = replica.apply(accepted);
                for rejected in &applied.rejected {
                    tracing::warn!(%chat, peer = %from, reason = %rejected.reason, "rejected deferred change");
                }
                out.new_messages
                    .extend(applied.new_messages.into_iter().map(|m| (chat, m)));
            }
        }
        Ok(out)
    }

    /// A change for an unknown chat creates it only when the chat is the direct
    /// chat between this node and the change's (verified) author.
    fn adopt_direct_chat(
        &mut self,
        chat: &ChatId,
        changes: &[SignedChange],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let me = self.me.public();
        let author = changes
            .iter()
            .filter_map(|c| c.verify().ok())
            .map(|v| v.author)
            .find(|author| ChatId::direct(&me, author) == *chat);
        match author {
            Some(author) => {
                self.ensure_direct(author, now_ms)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Answers a peer's sync request.
    pub(crate) fn answer_sync(
        &mut self,
        from: PublicKey,
        chat: ChatId,
        their_heads: &[SegmentHeads],
    ) -> Result<Response, StoreError> {
        let Some(replica) = self.replica(&chat)? else {
            return Ok(if ChatId::direct(&self.me.public(), &from) == chat {
                Response::Synced {
                    changes: Vec::new(),
                    heads: Vec::new(),
                    more: false,
                }
            } else {
                Response::Error(WireError::NotMember)
            });
        };
        if !replica.is_member(&from) {
            return Ok(Response::Error(WireError::NotMember));
        }
        let from_segment = first_entitled_segment(replica, &from);
        let mut batches =
            split_batches(replica.changes_missing_from(their_heads, from_segment)).into_iter();
        let changes = batches.next().unwrap_or_default();
        Ok(Response::Synced {
            changes,
            heads: replica.heads(),
            more: batches.next().is_some(),
        })
    }

    /// The chats shared with `peer` and this node's heads for each.
    pub(crate) fn sync_requests_for(
        &mut self,
        peer: PublicKey,
    ) -> Result<Vec<(ChatId, Vec<SegmentHeads>)>, StoreError> {
        let chat = ChatId::direct(&self.me.public(), &peer);
        Ok(match self.replica(&chat)? {
            Some(replica) => vec![(chat, replica.heads())],
            None => Vec::new(),
        })
    }

    /// Changes of `chat` a replica with `their_heads` lacks, in frame-sized batches.
    pub(crate) fn missing_batches(
        &mut self,
        peer: &PublicKey,
        chat: &ChatId,
        their_heads: &[SegmentHeads],
    ) -> Result<Vec<Vec<SignedChange>>, StoreError> {
        Ok(match self.replica(chat)? {
            Some(replica) if replica.is_member(peer) => {
                let from_segment = first_entitled_segment(replica, peer);
                split_batches(replica.changes_missing_from(their_heads, from_segment))
            }
            _ => Vec::new(),
        })
    }

    /// The next batch of undelivered changes for `peer`.
    pub(crate) fn outbox_batch(&self, peer: &PublicKey) -> Result<Vec<SignedChange>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.store.outbox_for(peer, OUTBOX_BATCH)? {
            match self.store.change(&entry.chat, entry.segment, &entry.hash)? {
                Some(change) => {
                    bytes += change.change.len();
                    if bytes > BATCH_BYTES && !out.is_empty() {
                        break;
                    }
                    out.push(change);
                }
                None => {
                    // An outbox entry whose change is gone cannot be delivered.
                    tracing::error!(chat = %entry.chat, hash = %entry.hash, "outbox entry without its change; dropping entry");
                    self.store.outbox_remove(peer, &entry.hash)?;
                }
            }
        }
        Ok(out)
    }

    /// `peer` acknowledged `hashes`: clear them from its outbox. Returns the
    /// messages that became delivered.
    pub(crate) fn acknowledged(
        &self,
        peer: &PublicKey,
        hashes: &[ChangeHash],
    ) -> Result<Vec<(ChatId, MessageId)>, StoreError> {
        let mut delivered = Vec::new();
        for hash in hashes {
            if let Some(entry) = self.store.outbox_remove(peer, hash)? {
                if let Some(message) = entry.message {
                    self.store.set_delivery(
                        &entry.chat,
                        &message,
                        peer,
                        DeliveryState::Delivered,
                    )?;
                    delivered.push((entry.chat, message));
                }
            }
        }
        Ok(delivered)
    }

    /// `peer` refused these changes for good: stop retrying them.
    pub(crate) fn refused(
        &self,
        peer: &PublicKey,
        hashes: &[ChangeHash],
    ) -> Result<(), StoreError> {
        for hash in hashes {
            self.store.outbox_remove(peer, hash)?;
        }
        Ok(())
    }

    pub(crate) fn history(
        &mut self,
        chat: &ChatId,
        limit: Option<usize>,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let me = self.me.public();
        let Some(replica) = self.replica(chat)? else {
            return Ok(None);
        };
        let messages = replica.messages();
        let skip = limit.map_or(0, |l| messages.len().saturating_sub(l));
        let mut out = Vec::with_capacity(messages.len() - skip);
        for message in messages.into_iter().skip(skip) {
            let outgoing = message.author == me;
            let delivery = if outgoing {
                self.store
                    .delivery(chat, &message.id)?
                    .into_iter()
                    .map(|(_, s)| s)
                    .min()
            } else {
                None
            };
            out.push(HistoryEntry {
                message,
                outgoing,
                delivery,
            });
        }
        Ok(Some(out))
    }

    pub(crate) fn summaries(&mut self) -> Result<Vec<ChatSummary>, StoreError> {
        let mut out = Vec::new();
        for (id, record) in self.store.chats()? {
            let Some(replica) = self.replica(&id)? else {
                continue;
            };
            let messages = replica.messages();
            out.push(ChatSummary {
                id,
                kind: record.kind,
                messages: messages.len(),
                last: messages.last().cloned(),
            });
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.last.as_ref().map(|m| m.sent_at_ms)));
        Ok(out)
    }
}

/// Everyone in the chat but this node.
fn recipients(replica: &ChatReplica, me: &PublicKey) -> Vec<PublicKey> {
    replica.members().into_keys().filter(|k| k != me).collect()
}

/// The first history segment `peer` may receive (0 unless it joined a group
/// whose setting withholds older history).
fn first_entitled_segment(replica: &ChatReplica, peer: &PublicKey) -> SegmentIndex {
    replica
        .group_info()
        .and_then(|info| info.members.into_iter().find(|m| m.key == *peer))
        .map_or(0, |m| m.joined_segment)
}

/// Splits changes into batches of about [`BATCH_BYTES`] each, in order.
fn split_batches(changes: Vec<SignedChange>) -> Vec<Vec<SignedChange>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for change in changes {
        let size = change.change.len() + 128;
        if bytes + size > BATCH_BYTES && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(change);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

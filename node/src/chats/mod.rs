//! The chat engine: replicas of this node's chats over the sled store. Owned
//! by the node actor; every method that acknowledges something flushes first.
//!
//! On any storage error the affected replica is dropped from memory, so the
//! in-memory view never runs ahead of what is on disk.

mod local;
mod views;

use std::collections::{BTreeMap, HashMap};

use meshchat_crdt::{
    ChangeHash, ChatId, ChatKind, ChatReplica, Identity, Message, MessageId, PublicKey,
    SegmentHeads, SegmentIndex, SignedChange, VerifiedChange, META_SEGMENT,
};

pub(crate) use local::LocalWriteError;
pub use local::{ChatOp, OpOutcome};
pub(crate) use views::ExportError;
pub use views::{ChatSummary, ExportSummary, HistoryEntry, MessageInfo, RecipientState};

use crate::{
    protocol::{RejectedChange, Response, WireError},
    store::{ChatRecord, DeliveryState, Store, StoreError},
};

/// Bytes of changes put in one push or sync answer, well under the frame limits.
pub(crate) const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Changes taken from the outbox for one push.
pub(crate) const OUTBOX_BATCH: usize = 512;

/// What receiving a batch of changes did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Durably held now (new, deferred or duplicate): acknowledge these.
    pub(crate) stored: Vec<ChangeHash>,
    pub(crate) rejected: Vec<RejectedChange>,
    /// Stored but not yet judged (dependencies missing).
    pub(crate) deferred: usize,
    pub(crate) new_messages: Vec<(ChatId, Message)>,
    pub(crate) updated_messages: Vec<(ChatId, Message)>,
    /// Groups whose metadata changed (membership, roles, name, settings).
    pub(crate) meta_changed: Vec<ChatId>,
    /// Groups this node just joined (it was invited).
    pub(crate) adopted: Vec<ChatId>,
    /// New group changes, per group, to pass on to the other members.
    pub(crate) fresh_group_changes: Vec<(ChatId, Vec<SignedChange>)>,
}

pub(crate) struct Chats {
    me: Identity,
    store: Store,
    replicas: HashMap<ChatId, ChatReplica>,
    /// Read receipts already queued this run (the queue itself is on disk).
    read_receipts_queued: std::collections::HashSet<(ChatId, MessageId)>,
}

impl Chats {
    pub(crate) fn new(me: Identity, store: Store) -> Self {
        Self {
            me,
            store,
            replicas: HashMap::new(),
            read_receipts_queued: Default::default(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The store, to reopen it after a storage fault.
    pub(crate) fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.me
    }

    pub(crate) fn me(&self) -> PublicKey {
        self.me.public()
    }

    /// The replica of `chat`, loaded from disk on first use.
    pub(crate) fn replica(
        &mut self,
        chat: &ChatId,
    ) -> Result<Option<&mut ChatReplica>, StoreError> {
        if !self.replicas.contains_key(chat) {
            let Some(record) = self.store.chat(chat)? else {
                return Ok(None);
            };
            let mut replica = ChatReplica::new(record.kind);
            let applied = replica.load(self.store.changes_of(chat)?);
            for rejected in applied.rejected {
                tracing::warn!(%chat, reason = %rejected.reason, "stored change no longer valid");
            }
            self.replicas.insert(*chat, replica);
        }
        Ok(self.replicas.get_mut(chat))
    }

    /// Forgets the in-memory replica (after a storage error), so the next use
    /// reloads exactly what is on disk.
    pub(crate) fn evict(&mut self, chat: &ChatId) {
        self.replicas.remove(chat);
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

    /// All chats this node knows.
    pub(crate) fn chat_ids(&self) -> Result<Vec<(ChatId, ChatKind)>, StoreError> {
        Ok(self
            .store
            .chats()?
            .into_iter()
            .map(|(id, r)| (id, r.kind))
            .collect())
    }

    /// Groups this node is a member of.
    pub(crate) fn my_groups(&mut self) -> Result<Vec<ChatId>, StoreError> {
        let me = self.me.public();
        let mut out = Vec::new();
        for (id, kind) in self.chat_ids()? {
            if kind.is_group() && self.replica(&id)?.is_some_and(|r| r.is_member(&me)) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Checks, durably stores, then applies changes received from `from`
    /// (pushed, synced or gossiped).
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
            if !self.exists(&chat)? {
                match self.adopt(&chat, &changes, now_ms)? {
                    Adoption::Direct => {}
                    Adoption::Group => out.adopted.push(chat),
                    Adoption::Refused(reason) => {
                        out.rejected.extend(changes.iter().map(|c| RejectedChange {
                            hash: c.verify().ok().map(|v| v.hash),
                            reason: reason.clone(),
                        }));
                        continue;
                    }
                }
            }
            let Some(replica) = self.replica(&chat)? else {
                continue;
            };
            let checked = replica.check(changes);
            let is_group = replica.kind().is_group();
            for rejected in checked.rejected {
                tracing::warn!(%chat, peer = %from, reason = %rejected.reason, "rejected change");
                out.rejected.push(RejectedChange {
                    hash: rejected.hash,
                    reason: rejected.reason.to_string(),
                });
            }
            out.stored.extend(checked.duplicates);
            out.deferred += checked.deferred.len();
            let mut valid = checked.accepted;
            valid.extend(checked.deferred);
            if valid.is_empty() {
                continue;
            }
            if let Err(e) = self
                .store
                .put_changes(valid.iter().map(|c| (&c.signed, c.hash)))
            {
                self.evict(&chat);
                return Err(e);
            }
            out.stored.extend(valid.iter().map(|c| c.hash));
            if is_group {
                out.fresh_group_changes
                    .push((chat, valid.iter().map(|c| c.signed.clone()).collect()));
            }
            to_apply.push((chat, valid));
        }
        if !to_apply.is_empty() {
            if let Err(e) = self.store.flush().await {
                for (chat, _) in &to_apply {
                    self.evict(chat);
                }
                return Err(e);
            }
        }
        for (chat, valid) in to_apply {
            self.apply_stored(chat, valid, &mut out)?;
        }
        Ok(out)
    }

    /// Applies durably stored changes to the replica and records the effects.
    fn apply_stored(
        &mut self,
        chat: ChatId,
        changes: Vec<VerifiedChange>,
        out: &mut Received,
    ) -> Result<(), StoreError> {
        let Some(replica) = self.replica(&chat)? else {
            return Ok(());
        };
        let applied = replica.apply(changes);
        for rejected in &applied.rejected {
            tracing::warn!(%chat, reason = %rejected.reason, "rejected a deferred change");
            if let Some(hash) = rejected.hash {
                // Held for judgement, now refused: it must not stay on disk.
                self.store.remove_change(&chat, &hash)?;
            }
        }
        out.new_messages
            .extend(applied.new_messages.into_iter().map(|m| (chat, m)));
        out.updated_messages
            .extend(applied.updated_messages.into_iter().map(|m| (chat, m)));
        if applied.meta_changed {
            out.meta_changed.push(chat);
        }
        Ok(())
    }

    /// A batch for an unknown chat creates it only when it is the direct chat
    /// between this node and a change's (verified) author, or a group whose
    /// genesis is in the batch and that counts this node as a member.
    fn adopt(
        &mut self,
        chat: &ChatId,
        changes: &[SignedChange],
        now_ms: i64,
    ) -> Result<Adoption, StoreError> {
        let me = self.me.public();
        let verified: Vec<VerifiedChange> =
            changes.iter().filter_map(|c| c.verify().ok()).collect();
        if let Some(author) = verified
            .iter()
            .map(|v| v.author)
            .find(|author| ChatId::direct(&me, author) == *chat)
        {
            self.ensure_direct(author, now_ms)?;
            return Ok(Adoption::Direct);
        }
        let Some(kind) = verified.iter().find_map(ChatKind::from_genesis) else {
            return Ok(Adoption::Refused(format!("unknown chat {chat}")));
        };
        // Judge the invitation on a scratch replica: only join if it makes us a member.
        let mut scratch = ChatReplica::new(kind.clone());
        let checked = scratch.check(changes.iter().cloned());
        let mut valid = checked.accepted;
        valid.extend(checked.deferred);
        scratch.apply(valid);
        if !scratch.is_member(&me) {
            return Ok(Adoption::Refused(format!("not a member of group {chat}")));
        }
        self.store.put_chat(
            chat,
            &ChatRecord {
                kind,
                created_at_ms: now_ms,
            },
        )?;
        Ok(Adoption::Group)
    }

    /// Answers a peer's sync request.
    pub(crate) fn answer_sync(
        &mut self,
        from: PublicKey,
        chat: ChatId,
        their_heads: &[SegmentHeads],
    ) -> Result<Response, StoreError> {
        let me = self.me.public();
        let Some(replica) = self.replica(&chat)? else {
            return Ok(if ChatId::direct(&me, &from) == chat {
                Response::Synced {
                    changes: Vec::new(),
                    heads: Vec::new(),
                    more: false,
                }
            } else {
                Response::Error(WireError::NotMember)
            });
        };
        // Only members get history; a former member gets the metadata only
        // (so it learns it was removed); strangers get nothing.
        if !replica.is_member(&me) {
            return Ok(Response::Error(WireError::NotMember));
        }
        let Some(from_segment) = entitlement(replica, &from) else {
            return Ok(Response::Error(WireError::NotMember));
        };
        let mut batches =
            split_batches(replica.changes_missing_from(their_heads, from_segment)).into_iter();
        let changes = batches.next().unwrap_or_default();
        Ok(Response::Synced {
            changes,
            heads: replica.heads(),
            more: batches.next().is_some(),
        })
    }

    /// The chats shared with `peer` (its direct chat and common groups), with
    /// this node's heads for each.
    pub(crate) fn sync_requests_for(
        &mut self,
        peer: PublicKey,
    ) -> Result<Vec<(ChatId, Vec<SegmentHeads>)>, StoreError> {
        let me = self.me.public();
        let direct = ChatId::direct(&me, &peer);
        let mut out = Vec::new();
        for (id, kind) in self.chat_ids()? {
            let shared = id == direct
                || (kind.is_group()
                    && self
                        .replica(&id)?
                        .is_some_and(|r| r.is_member(&peer) && r.is_member(&me)));
            if shared {
                if let Some(replica) = self.replica(&id)? {
                    out.push((id, replica.heads()));
                }
            }
        }
        Ok(out)
    }

    /// This node's heads for one chat.
    pub(crate) fn heads(&mut self, chat: &ChatId) -> Result<Option<Vec<SegmentHeads>>, StoreError> {
        Ok(self.replica(chat)?.map(|r| r.heads()))
    }

    /// Changes of `chat` a replica with `their_heads` lacks, in frame-sized batches.
    pub(crate) fn missing_batches(
        &mut self,
        peer: &PublicKey,
        chat: &ChatId,
        their_heads: &[SegmentHeads],
    ) -> Result<Vec<Vec<SignedChange>>, StoreError> {
        Ok(match self.replica(chat)? {
            Some(replica) => match entitlement(replica, peer) {
                Some(from_segment) => {
                    split_batches(replica.changes_missing_from(their_heads, from_segment))
                }
                None => Vec::new(),
            },
            None => Vec::new(),
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

    /// A relay holds these changes for `peer`: messages still `pending` become
    /// `sent`. The outbox entries stay until `peer` itself acknowledges.
    pub(crate) fn in_custody(
        &self,
        peer: &PublicKey,
        hashes: &[ChangeHash],
        relay: &PublicKey,
        held_until_ms: i64,
    ) -> Result<Vec<(ChatId, MessageId)>, StoreError> {
        let mut sent = Vec::new();
        for entry in self.store.outbox_for(peer, usize::MAX)? {
            let Some(message) = entry.message.filter(|_| hashes.contains(&entry.hash)) else {
                continue;
            };
            self.store
                .add_custody(&entry.chat, &message, peer, relay, held_until_ms)?;
            let states = self.store.delivery(&entry.chat, &message)?;
            let pending = states
                .iter()
                .any(|(k, s)| k == peer && *s == DeliveryState::Pending);
            if pending {
                self.store
                    .set_delivery(&entry.chat, &message, peer, DeliveryState::Sent)?;
                sent.push((entry.chat, message));
            }
        }
        Ok(sent)
    }

    /// `peer` read these messages of `chat`: record it for the ones this node wrote.
    pub(crate) fn read_by(
        &mut self,
        peer: &PublicKey,
        chat: &ChatId,
        messages: &[MessageId],
    ) -> Result<Vec<MessageId>, StoreError> {
        let me = self.me.public();
        let Some(replica) = self.replica(chat)? else {
            return Ok(Vec::new());
        };
        if !replica.is_member(peer) {
            return Ok(Vec::new());
        }
        let mine: Vec<MessageId> = messages
            .iter()
            .filter(|id| replica.message(id).is_some_and(|m| m.author == me))
            .copied()
            .collect();
        let mut changed = Vec::new();
        for id in mine {
            if self
                .store
                .set_delivery(chat, &id, peer, DeliveryState::Read)?
            {
                changed.push(id);
            }
        }
        Ok(changed)
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
}

enum Adoption {
    Direct,
    Group,
    Refused(String),
}

/// What `peer` may receive of a chat: `Some(first history segment)` (0 unless
/// it joined a group whose setting withholds older history; `META_SEGMENT`,
/// i.e. metadata only, for a former member), or `None` for a stranger.
fn entitlement(replica: &ChatReplica, peer: &PublicKey) -> Option<SegmentIndex> {
    if replica.is_member(peer) {
        return Some(replica.member(peer).map_or(0, |m| m.joined_segment));
    }
    replica.was_member(peer).then_some(META_SEGMENT)
}

/// Splits changes into batches that fit a gossipsub message (1 MiB).
pub(crate) fn split_for_gossip(changes: Vec<SignedChange>) -> Vec<Vec<SignedChange>> {
    split_batches_of(changes, GOSSIP_BATCH_BYTES)
}

/// Bytes of changes per gossip message, under gossipsub's 1 MiB limit.
const GOSSIP_BATCH_BYTES: usize = 512 * 1024;

/// Splits changes into batches of about [`BATCH_BYTES`] each, in order.
fn split_batches(changes: Vec<SignedChange>) -> Vec<Vec<SignedChange>> {
    split_batches_of(changes, BATCH_BYTES)
}

/// Splits changes into batches of about `limit` bytes each, in order.
fn split_batches_of(changes: Vec<SignedChange>, limit: usize) -> Vec<Vec<SignedChange>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for change in changes {
        let size = change.change.len() + 128 + 32 * change.meta_heads.len();
        if bytes + size > limit && !current.is_empty() {
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

//! The chat engine: replicas of this node's chats over the sled store. Owned
//! by the node actor; every method that acknowledges something flushes first.
//!
//! On any storage error the affected replica is dropped from memory, so the
//! in-memory view never runs ahead of what is on disk.

mod local;
mod names;
mod recent;
mod requests;
mod views;

use std::collections::{BTreeMap, HashMap};

use meshchat_crdt::{
    e2e::DeviceKeyring, ChangeHash, ChatId, ChatKind, ChatReplica, Identity, Ingested, Message,
    MessageId, PublicKey, RejectReason, SegmentHeads, SegmentIndex, SignedChange, VerifiedChange,
    META_SEGMENT,
};
use requests::{RequestRecord, RequestRefusal, Requests};

pub(crate) use local::ChatOp;
pub(crate) use local::LocalWriteError;
pub use local::OpOutcome;
pub use requests::{RequestSummary, MAX_REQUESTS, MAX_REQUEST_BYTES, MAX_REQUEST_CHANGES};
pub(crate) use views::ExportError;
pub use views::{ChatSummary, ExportSummary, HistoryEntry, MessageInfo, RecipientState};

use crate::{
    direct::sync_wire::{RejectedChange, Response},
    framing::WireError,
    store::{ChatRecord, DeliveryState, Store, StoreError},
};

/// Bytes of changes put in one push or sync answer, well under the frame limits.
pub(crate) const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Changes taken from the outbox for one push.
pub(crate) const OUTBOX_BATCH: usize = 512;
/// Push batches sent back to a peer per sync round.
pub(crate) const SYNC_PUSH_BATCHES: usize = 4;

/// Received changes written to the store but not flushed yet.
#[derive(Debug, Default)]
pub(crate) struct Unflushed {
    /// Chats whose replicas changed (dropped if the flush fails).
    touched: Vec<ChatId>,
    applied: Vec<(ChatId, Ingested)>,
    out: Received,
}

/// What receiving a batch of changes did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Durably held now (new or duplicate): acknowledge these.
    pub(crate) stored: Vec<ChangeHash>,
    /// Refused for good: tell the sender, which stops retrying them.
    pub(crate) rejected: Vec<RejectedChange>,
    /// Not kept for now (dependencies missing, or a budget full): neither
    /// stored nor acknowledged, so the sender tries again later. With why.
    pub(crate) not_kept: Vec<RejectedChange>,
    /// Kept in memory until their dependencies arrive (not acknowledged).
    pub(crate) deferred: Vec<ChangeHash>,
    /// Chats where changes wait for dependencies, or were not kept while
    /// they are missing: the sender holds what they depend on, so a sync
    /// with it fetches them (instead of waiting for their own deliveries).
    pub(crate) missing_dependencies: Vec<ChatId>,
    /// Message requests (direct or group) that are new or grew.
    pub(crate) requests: Vec<(ChatId, PublicKey)>,
    pub(crate) new_messages: Vec<(ChatId, Message)>,
    pub(crate) updated_messages: Vec<(ChatId, Message)>,
    /// Groups whose metadata changed (membership, roles, name, settings).
    pub(crate) meta_changed: Vec<ChatId>,
    /// Groups this node just joined (it was invited).
    pub(crate) adopted: Vec<ChatId>,
    /// New group changes, per group, with their authors, to pass on to the
    /// other members.
    pub(crate) fresh_group_changes: Vec<(ChatId, Vec<FreshChange>)>,
}

/// A group change this node did not hold before.
#[derive(Debug)]
pub(crate) struct FreshChange {
    pub(crate) signed: SignedChange,
    pub(crate) author: PublicKey,
    pub(crate) hash: ChangeHash,
}

pub(crate) struct Chats {
    me: Identity,
    /// This device's X25519 encryption keys (`encryption.keys`).
    device_keys: DeviceKeyring,
    store: Store,
    requests: Requests,
    replicas: HashMap<ChatId, ChatReplica>,
    /// Group name → chat ids, for finding a group by name.
    names: names::GroupNames,
    /// Read receipts already queued this run (the queue itself is on disk).
    read_receipts_queued: std::collections::HashSet<(ChatId, MessageId)>,
    /// This node's latest changes, for the pushes that follow a write.
    recent: recent::RecentChanges,
}

impl Chats {
    pub(crate) fn new(me: Identity, store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            me,
            device_keys: DeviceKeyring::generate(),
            requests: Requests::open(store.handle())?,
            store,
            replicas: HashMap::new(),
            names: Default::default(),
            read_receipts_queued: Default::default(),
            recent: Default::default(),
        })
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

    /// Uses the device keys loaded from the data dir (a fresh keyring is
    /// only for tests that need none).
    pub(crate) fn with_device_keys(mut self, keys: DeviceKeyring) -> Self {
        self.device_keys = keys;
        self
    }

    pub(crate) fn device_keys(&self) -> &DeviceKeyring {
        &self.device_keys
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
            let loaded = replica.load(self.store.changes_of(chat)?);
            // A change on disk that does not pass today's checks (or lost a
            // fork) is dropped: loading never fails because of one change.
            for rejected in &loaded.rejected {
                tracing::warn!(%chat, hash = ?rejected.hash, reason = %rejected.reason, "dropping a stored change that does not pass the checks");
                if let Some(hash) = rejected.hash {
                    self.store.remove_change(chat, &hash)?;
                }
            }
            for (_, hash) in &loaded.superseded {
                self.store.remove_change(chat, hash)?;
            }
            self.replicas.insert(*chat, replica);
        }
        Ok(self.replicas.get_mut(chat))
    }

    /// Forgets the in-memory replica (after a storage error), so the next use
    /// reloads exactly what is on disk.
    pub(crate) fn evict(&mut self, chat: &ChatId) {
        self.replicas.remove(chat);
        // What is on disk may name the group otherwise.
        self.names.touch(*chat);
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

    /// Judges and applies changes received from `from` (pushed, synced,
    /// gossiped or mailed) and writes what it keeps to the store, unflushed:
    /// nothing of it may be acknowledged until a flush that started after
    /// this call succeeds ([`Chats::received`]); if that flush fails,
    /// [`Chats::abandon`] drops the touched replicas, so memory is never
    /// ahead of the disk for long.
    pub(crate) fn receive(
        &mut self,
        from: PublicKey,
        changes: Vec<SignedChange>,
        now_ms: i64,
    ) -> Result<Unflushed, StoreError> {
        let mut by_chat: BTreeMap<ChatId, Vec<SignedChange>> = BTreeMap::new();
        for change in changes {
            by_chat.entry(change.chat).or_default().push(change);
        }
        let mut unflushed = Unflushed::default();
        for (chat, changes) in by_chat {
            if let Err(e) = self.receive_chat(from, chat, changes, now_ms, &mut unflushed) {
                self.abandon(&unflushed);
                return Err(e);
            }
        }
        Ok(unflushed)
    }

    fn receive_chat(
        &mut self,
        from: PublicKey,
        chat: ChatId,
        changes: Vec<SignedChange>,
        now_ms: i64,
        unflushed: &mut Unflushed,
    ) -> Result<(), StoreError> {
        // A received change may rename a group (or create one).
        self.names.touch(chat);
        if !self.exists(&chat)? {
            unflushed.touched.push(chat);
            if let Some(ingested) =
                self.receive_unknown(from, chat, changes, now_ms, &mut unflushed.out)?
            {
                if ingested.meta_changed {
                    unflushed.out.adopted.push(chat);
                }
                unflushed.applied.push((chat, ingested));
            }
            return Ok(());
        }
        let Some(replica) = self.replica(&chat)? else {
            return Ok(());
        };
        let is_group = replica.kind().is_group();
        let ingested = replica.receive(changes, now_ms);
        unflushed.touched.push(chat);
        self.persist(&chat, &ingested)?;
        if is_group && !ingested.stored.is_empty() {
            unflushed.out.fresh_group_changes.push((
                chat,
                ingested
                    .stored
                    .iter()
                    .map(|c| FreshChange {
                        signed: c.signed.clone(),
                        author: c.author,
                        hash: c.hash,
                    })
                    .collect(),
            ));
        }
        unflushed.applied.push((chat, ingested));
        Ok(())
    }

    /// What a receive did, once a flush covering its writes succeeded.
    pub(crate) fn received(&self, unflushed: Unflushed) -> Received {
        let mut out = unflushed.out;
        for (chat, ingested) in unflushed.applied {
            record_ingested(chat, ingested, &mut out);
        }
        out
    }

    /// The flush that was to cover a receive failed: its replicas go, and
    /// are loaded again from what is on disk when next needed.
    pub(crate) fn abandon(&mut self, unflushed: &Unflushed) {
        self.evict_all(&unflushed.touched);
    }

    /// Writes what a replica accepted and deletes what it dropped (not yet
    /// flushed).
    fn persist(&self, chat: &ChatId, ingested: &Ingested) -> Result<(), StoreError> {
        self.store
            .put_changes(ingested.stored.iter().map(|c| (&c.signed, c.hash)))?;
        for (_, hash) in &ingested.superseded {
            self.store.remove_change(chat, hash)?;
        }
        Ok(())
    }

    fn evict_all(&mut self, chats: &[ChatId]) {
        for chat in chats {
            self.evict(chat);
        }
    }

    /// Changes for a chat this node does not have. The direct chat with a
    /// contact, or a group a contact added this node to, is created at once
    /// (its outcome is returned for the caller to report). From anyone else
    /// the changes are judged on a scratch replica and what passes is kept as
    /// a message request, within its budget; nothing else is stored.
    fn receive_unknown(
        &mut self,
        from: PublicKey,
        chat: ChatId,
        changes: Vec<SignedChange>,
        now_ms: i64,
        out: &mut Received,
    ) -> Result<Option<Ingested>, StoreError> {
        let me = self.me.public();
        let verified: Vec<VerifiedChange> =
            changes.iter().filter_map(|c| c.verify().ok()).collect();
        let direct_peer = verified
            .iter()
            .map(|v| v.author)
            .find(|author| ChatId::direct(&me, author) == chat);
        let kind = if let Some(peer) = direct_peer {
            ChatKind::direct(me, peer)
        } else if let Some(kind) = verified.iter().find_map(ChatKind::from_genesis) {
            kind
        } else {
            out.rejected.extend(changes.iter().map(|c| RejectedChange {
                hash: c.verify().ok().map(|v| v.hash),
                reason: format!("unknown chat {chat}"),
            }));
            return Ok(None);
        };
        // Judge everything on a scratch replica, with what an earlier
        // request for the same chat already kept.
        let mut record = self.requests.get(&chat)?.unwrap_or(RequestRecord {
            kind: kind.clone(),
            from,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            changes: Vec::new(),
        });
        let mut scratch = record.replica();
        let ingested = scratch.receive(changes, now_ms);
        let inviter = match direct_peer {
            Some(peer) => peer,
            None => match scratch.member(&me) {
                Some(member) => member.added_by.unwrap_or_else(|| creator_of(&kind)),
                None => {
                    report_rejections(&ingested, out);
                    out.rejected
                        .extend(ingested.stored.iter().map(|c| RejectedChange {
                            hash: Some(c.hash),
                            reason: format!("this node is not a member of group {chat}"),
                        }));
                    return Ok(None);
                }
            },
        };
        record.from = inviter;
        if self.accepts_from(&inviter)? {
            // A contact: the chat exists from now on, with what was judged.
            self.store.put_chat(
                &chat,
                &ChatRecord {
                    kind,
                    created_at_ms: now_ms,
                },
            )?;
            let mut kept = record.changes.clone();
            kept.extend(ingested.stored.iter().map(|c| c.signed.clone()));
            self.requests.remove(&chat)?;
            self.store.put_changes(
                kept.iter()
                    .filter_map(|c| c.decode_stored().ok().map(|v| (c, v.hash))),
            )?;
            self.replicas.insert(chat, scratch);
            return Ok(Some(ingested));
        }
        report_rejections(&ingested, out);
        out.stored.extend(ingested.duplicates.iter().copied());
        if ingested.stored.is_empty() {
            return Ok(None);
        }
        let is_new = record.changes.is_empty();
        if is_new && self.requests.len() >= requests::MAX_REQUESTS {
            out.not_kept
                .extend(not_kept(&ingested, &RequestRefusal::Full));
            return Ok(None);
        }
        let hashes: Vec<ChangeHash> = ingested.stored.iter().map(|c| c.hash).collect();
        let stored: Vec<SignedChange> = ingested.stored.iter().map(|c| c.signed.clone()).collect();
        if let Err(refusal) = requests::admit(&mut record, stored) {
            out.not_kept.extend(not_kept(&ingested, &refusal));
            return Ok(None);
        }
        record.last_seen_ms = now_ms;
        self.requests.put(&chat, &record)?;
        out.stored.extend(hashes);
        out.requests.push((chat, inviter));
        Ok(None)
    }

    /// Whether changes from `key` create a chat without asking: a contact
    /// that is not blocked, this node itself, or someone this node already
    /// has a direct chat with.
    fn accepts_from(&self, key: &PublicKey) -> Result<bool, StoreError> {
        if let Some(contact) = self.store.contact(key)? {
            return Ok(!contact.blocked);
        }
        let direct = ChatId::direct(&self.me.public(), key);
        Ok(*key == self.me.public() || self.exists(&direct)?)
    }

    /// The pending message requests, newest first.
    pub(crate) fn requests(&self) -> Result<Vec<RequestSummary>, StoreError> {
        let mut all: Vec<(ChatId, RequestRecord)> = self.requests.all()?;
        all.sort_by_key(|(_, r)| std::cmp::Reverse(r.last_seen_ms));
        Ok(all
            .iter()
            .map(|(chat, record)| Requests::summary(*chat, record))
            .collect())
    }

    /// Accepts a request: the chat is created from what was kept. Returns
    /// the chat's kind, who sent the request and its messages.
    pub(crate) async fn accept_request(
        &mut self,
        chat: &ChatId,
        now_ms: i64,
    ) -> Result<Option<AcceptedRequest>, StoreError> {
        let Some(record) = self.requests.get(chat)? else {
            return Ok(None);
        };
        self.store.put_chat(
            chat,
            &ChatRecord {
                kind: record.kind.clone(),
                created_at_ms: now_ms,
            },
        )?;
        self.store.put_changes(
            record
                .changes
                .iter()
                .filter_map(|c| c.decode_stored().ok().map(|v| (c, v.hash))),
        )?;
        self.requests.remove(chat)?;
        self.store.flush().await?;
        // Also marks the name index stale for the new chat.
        self.evict(chat);
        let messages = self
            .replica(chat)?
            .map(|r| r.messages())
            .unwrap_or_default();
        Ok(Some(AcceptedRequest {
            kind: record.kind,
            from: record.from,
            messages,
        }))
    }

    /// Deletes a request. Returns who sent it.
    pub(crate) async fn delete_request(
        &mut self,
        chat: &ChatId,
    ) -> Result<Option<PublicKey>, StoreError> {
        let removed = self.requests.remove(chat)?;
        self.store.flush().await?;
        Ok(removed.map(|r| r.from))
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
        // One bounded batch per round: only what is sent is copied.
        let (changes, more) =
            replica.changes_missing_within(their_heads, from_segment, BATCH_BYTES);
        Ok(Response::Synced {
            changes,
            heads: replica.heads(),
            more,
        })
    }

    /// The chats shared with `peer`: its direct chat and common groups.
    pub(crate) fn shared_with(&mut self, peer: PublicKey) -> Result<Vec<ChatId>, StoreError> {
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
                out.push(id);
            }
        }
        Ok(out)
    }

    /// This node's heads for one chat.
    pub(crate) fn heads(&mut self, chat: &ChatId) -> Result<Option<Vec<SegmentHeads>>, StoreError> {
        Ok(self.replica(chat)?.map(|r| r.heads()))
    }

    /// Changes of `chat` a replica with `their_heads` lacks, at most
    /// [`SYNC_PUSH_BATCHES`] frame-sized batches of them per sync round (the
    /// next round carries on).
    pub(crate) fn missing_batches(
        &mut self,
        peer: &PublicKey,
        chat: &ChatId,
        their_heads: &[SegmentHeads],
    ) -> Result<Vec<Vec<SignedChange>>, StoreError> {
        Ok(match self.replica(chat)? {
            Some(replica) => match entitlement(replica, peer) {
                Some(from_segment) => split_batches(
                    replica
                        .changes_missing_within(
                            their_heads,
                            from_segment,
                            SYNC_PUSH_BATCHES * BATCH_BYTES,
                        )
                        .0,
                ),
                None => Vec::new(),
            },
            None => Vec::new(),
        })
    }

    /// The next batch of undelivered changes for `peer`.
    pub(crate) fn outbox_batch(
        &self,
        peer: &PublicKey,
    ) -> Result<Vec<(SignedChange, ChangeHash)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.store.outbox_for(peer, OUTBOX_BATCH)? {
            let kept = self.recent.get(&entry.chat, entry.segment, &entry.hash);
            let change = match kept {
                Some(change) => Some(change),
                None => self.store.change(&entry.chat, entry.segment, &entry.hash)?,
            };
            match change {
                Some(change) => {
                    bytes += change.change.len();
                    if bytes > BATCH_BYTES && !out.is_empty() {
                        break;
                    }
                    out.push((change, entry.hash));
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

/// A message request the user accepted.
#[derive(Debug)]
pub(crate) struct AcceptedRequest {
    pub(crate) kind: ChatKind,
    pub(crate) from: PublicKey,
    pub(crate) messages: Vec<Message>,
}

/// The creator of a group: the one who added us when nobody else is named.
fn creator_of(kind: &ChatKind) -> PublicKey {
    match kind {
        ChatKind::Group { creator, .. } => *creator,
        ChatKind::Direct { a, .. } => *a,
        _ => PublicKey::from_bytes([0; 32]),
    }
}

/// Whether a refusal is for good (the sender stops retrying) or only for
/// now (the change could be judged later, or a budget is full).
fn is_final(reason: &RejectReason) -> bool {
    !matches!(reason, RejectReason::Unjudgeable(_))
}

fn report_rejections(ingested: &Ingested, out: &mut Received) {
    for rejected in &ingested.rejected {
        let change = RejectedChange {
            hash: rejected.hash,
            reason: rejected.reason.to_string(),
        };
        if is_final(&rejected.reason) {
            out.rejected.push(change);
        } else {
            out.not_kept.push(change);
        }
    }
}

fn not_kept(ingested: &Ingested, why: &RequestRefusal) -> Vec<RejectedChange> {
    ingested
        .stored
        .iter()
        .map(|c| RejectedChange {
            hash: Some(c.hash),
            reason: why.to_string(),
        })
        .collect()
}

/// Adds what one chat's ingest did to the batch's outcome.
fn record_ingested(chat: ChatId, ingested: Ingested, out: &mut Received) {
    report_rejections(&ingested, out);
    let waiting =
        !ingested.deferred.is_empty() || ingested.rejected.iter().any(|r| !is_final(&r.reason));
    if waiting && !out.missing_dependencies.contains(&chat) {
        out.missing_dependencies.push(chat);
    }
    out.stored.extend(ingested.duplicates.iter().copied());
    out.stored.extend(ingested.stored.iter().map(|c| c.hash));
    out.deferred.extend(ingested.deferred.iter().copied());
    out.new_messages
        .extend(ingested.new_messages.into_iter().map(|m| (chat, m)));
    out.updated_messages
        .extend(ingested.updated_messages.into_iter().map(|m| (chat, m)));
    if ingested.meta_changed {
        out.meta_changed.push(chat);
    }
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

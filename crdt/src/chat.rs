//! A replica of one chat: its kind, its group metadata (groups), and its
//! history segments. Sans-I/O: the node feeds it signed changes and persists
//! what it is told to.
//!
//! [`ChatReplica::receive`] verifies, judges and applies received changes in
//! one step and says what to persist: the node writes those changes, flushes,
//! and only then acknowledges them (if the flush fails it drops the replica
//! and reloads it from disk, so memory never stays ahead of what is stored).
//! Nothing is persisted or acknowledged before it was fully judged:
//! - a change is judged against the state at its own dependencies
//!   (`structure.rs` for its shape, `rules.rs` / `meta.rs` for what it may do,
//!   `authority.rs` for who may do it), so every replica reaches the same
//!   verdict;
//! - a change whose dependencies have not arrived waits in memory, bounded,
//!   only if its author is a member, and is neither stored nor acknowledged;
//! - two changes by one actor with one sequence number (a fork) cannot both
//!   be in an Automerge document: the one with the smaller hash is kept on
//!   every replica, the other and everything built on it are dropped;
//! - if Automerge ever refuses or panics on a change that passed, the
//!   document is rebuilt without it and the change is quarantined: never
//!   stored, never re-sent, reported.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    authority::{self, GroupState, MetaEntry, Resolution},
    ids::{ChangeHash, ChatId, GroupNonce, MessageId, PublicKey},
    message::Message,
    meta::{self, check_meta, GroupInfo, GroupSettings, Member, MetaSchema, Role, MAX_SEGMENT},
    model::{Effects, Model, Node, ObjRef},
    rules::{check_history, HistorySchema, RuleViolation},
    segment::Segment,
    signed::{SegmentIndex, SignedChange, VerifiedChange, VerifyError, META_SEGMENT},
    structure::{shape, Problem, Shaped},
};

/// Messages per history segment before a writer starts the next one. Keeps
/// every Automerge document small, so applying a remote change stays cheap.
pub const DEFAULT_SEGMENT_CAPACITY: usize = 1000;

/// Changes waiting for their dependencies, per chat.
pub const MAX_DEFERRED: usize = 512;
/// Bytes of changes waiting for their dependencies, per chat.
pub const MAX_DEFERRED_BYTES: usize = 4 * 1024 * 1024;
/// Changes waiting for their dependencies, per author and chat.
pub const MAX_DEFERRED_PER_AUTHOR: usize = 128;
/// How long a change waits for its dependencies before it is dropped (its
/// sender still holds it, unacknowledged, and sends it again).
pub const DEFERRED_TTL_MS: i64 = 10 * 60 * 1000;
/// Refused change hashes remembered, so a resent one is refused at once.
const REFUSED_KEPT: usize = 4096;
/// Group states at past metadata heads kept (messages name the heads their
/// author saw; a group rarely has more than a few live at once).
const PAST_STATES_KEPT: usize = 32;

/// The heads of one segment, exchanged by anti-entropy sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeads {
    /// Which segment ([`META_SEGMENT`] for a group's metadata).
    pub segment: SegmentIndex,
    /// Its Automerge heads.
    pub heads: Vec<ChangeHash>,
}

/// Why a received change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The change claims another chat.
    #[error("change is for chat {0}, not this one")]
    WrongChat(ChatId),
    /// Signature, encoding or actor check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The signer is not a member.
    #[error("author {0} is not a member of the chat")]
    NotMember(PublicKey),
    /// The change breaks the chat's rules.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    /// The change is not one Automerge could apply.
    #[error("malformed change: {0}")]
    Structure(String),
    /// Its actor already wrote another change with this sequence number,
    /// which wins (the smaller hash wins, on every replica).
    #[error("sequence number already used by change {held} of the same actor")]
    SeqReused {
        /// The change that keeps the slot.
        held: ChangeHash,
    },
    /// It was dropped because another change of its actor with the same
    /// sequence number won, or it was built on one that lost.
    #[error("superseded: built on a change that lost to another with the same sequence number")]
    Superseded,
    /// Its dependencies have not arrived and it is not kept while they are
    /// missing (its author is not a member, or too many changes wait).
    #[error("cannot be judged yet and not kept: {0}")]
    Unjudgeable(&'static str),
    /// Automerge could not apply it although it passed every check; it is
    /// kept out of the documents.
    #[error("quarantined: automerge could not apply it ({0})")]
    Quarantined(String),
    /// Refused before (remembered), refused again.
    #[error("refused before: {0}")]
    Again(Box<RejectReason>),
}

/// A received change that was refused, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The change's hash when it could be decoded.
    pub hash: Option<ChangeHash>,
    /// Who signed it, when it could be decoded.
    pub author: Option<PublicKey>,
    /// Why.
    pub reason: RejectReason,
}

/// The outcome of [`ChatReplica::receive`] or [`ChatReplica::load`].
#[derive(Debug, Default)]
pub struct Ingested {
    /// Changes now applied that the node does not store yet: persist them
    /// (then acknowledge them). Includes earlier deferred ones that became
    /// judgeable.
    pub stored: Vec<VerifiedChange>,
    /// Changes this replica already held: acknowledge them.
    pub duplicates: Vec<ChangeHash>,
    /// Changes waiting in memory for their dependencies: do not acknowledge.
    pub deferred: Vec<ChangeHash>,
    /// Refused changes.
    pub rejected: Vec<Rejected>,
    /// Changes removed from the chat (they lost a fork, or were built on one
    /// that did): delete them from storage.
    pub superseded: Vec<(SegmentIndex, ChangeHash)>,
    /// Messages that became visible, each exactly once.
    pub new_messages: Vec<Message>,
    /// Messages edited, deleted, reacted to, or hidden.
    pub updated_messages: Vec<Message>,
    /// The group's metadata changed (members, roles, name, settings).
    pub meta_changed: bool,
}

/// Who is in a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChatKind {
    /// A conversation between two keys (the same key twice is a note-to-self).
    Direct {
        /// The smaller key.
        a: PublicKey,
        /// The larger key.
        b: PublicKey,
    },
    /// A group: members and roles live in its metadata document.
    Group {
        /// Who created it (the only key that may write its first change).
        creator: PublicKey,
        /// The creator's random nonce.
        nonce: GroupNonce,
    },
}

impl ChatKind {
    /// The direct chat between two keys, in canonical order.
    pub fn direct(x: PublicKey, y: PublicKey) -> Self {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Self::Direct { a, b }
    }

    /// The chat id this kind implies.
    pub fn chat_id(&self) -> ChatId {
        match self {
            Self::Direct { a, b } => ChatId::direct(a, b),
            Self::Group { creator, nonce } => meta::group_id(creator, nonce.as_bytes()),
        }
    }

    /// For a direct chat, the member that is not `me`.
    pub fn peer_of(&self, me: &PublicKey) -> Option<PublicKey> {
        match self {
            Self::Direct { a, b } if a == me => Some(*b),
            Self::Direct { a, b } if b == me => Some(*a),
            _ => None,
        }
    }

    /// Whether this is a group.
    pub fn is_group(&self) -> bool {
        matches!(self, Self::Group { .. })
    }

    /// The group a genesis change (the first change of a group's metadata)
    /// founds, if `change` is one, is well formed, and matches the chat id
    /// it claims. Lets a node adopt a group it is invited to.
    pub fn from_genesis(change: &VerifiedChange) -> Option<Self> {
        if change.signed.segment != META_SEGMENT || !change.change.deps().is_empty() {
            return None;
        }
        let expanded = crate::structure::expand(&change.change)?;
        let (mut creator, mut nonce) = (None, None);
        for op in &expanded.operations {
            let (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(key)) =
                (&op.obj, &op.key)
            else {
                continue;
            };
            let automerge::legacy::OpType::Put(automerge::ScalarValue::Str(value)) = &op.action
            else {
                continue;
            };
            match key.as_str() {
                meta::CREATED_BY => creator = crate::rules::canonical::<PublicKey>(value),
                meta::NONCE => nonce = crate::rules::canonical::<GroupNonce>(value),
                _ => {}
            }
        }
        let kind = Self::Group {
            creator: creator?,
            nonce: nonce?,
        };
        let founded = creator == Some(change.author) && kind.chat_id() == change.signed.chat;
        // The whole genesis must also pass the checks every replica applies.
        let scratch = ChatReplica::new(kind.clone());
        let judged = scratch.judge(change);
        (founded && matches!(judged, Verdict::Accept(_))).then_some(kind)
    }
}

/// A change that passed every check, with what applying it does.
struct Accepted {
    shaped: Shaped,
    effects: Effects,
    entry: Option<MetaEntry>,
}

enum Verdict {
    Accept(Box<Accepted>),
    /// Dependencies (or the metadata it names, or the previous segment)
    /// are missing: judge again when they arrive.
    Defer,
    /// Another change of its actor holds its sequence number.
    Fork(ChangeHash),
    Reject(RejectReason),
}

/// Changes waiting in memory for their dependencies.
#[derive(Default)]
struct Deferred {
    changes: HashMap<ChangeHash, (VerifiedChange, i64)>,
    bytes: usize,
}

impl Deferred {
    fn admit(&mut self, change: VerifiedChange, now_ms: i64) -> Result<(), &'static str> {
        if self.changes.contains_key(&change.hash) {
            return Ok(());
        }
        let size = change.signed.wire_size();
        if self.changes.len() >= MAX_DEFERRED || self.bytes + size > MAX_DEFERRED_BYTES {
            return Err("too many changes of this chat are waiting for their dependencies");
        }
        let by_author = self
            .changes
            .values()
            .filter(|(c, _)| c.author == change.author)
            .count();
        if by_author >= MAX_DEFERRED_PER_AUTHOR {
            return Err("too many changes of this author are waiting for their dependencies");
        }
        self.bytes += size;
        self.changes.insert(change.hash, (change, now_ms));
        Ok(())
    }

    fn take_all(&mut self) -> Vec<VerifiedChange> {
        self.bytes = 0;
        self.changes.drain().map(|(_, (c, _))| c).collect()
    }

    fn expire(&mut self, now_ms: i64) {
        let before = self.changes.len();
        self.changes
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) < DEFERRED_TTL_MS);
        if self.changes.len() != before {
            self.bytes = self
                .changes
                .values()
                .map(|(c, _)| c.signed.wire_size())
                .sum();
        }
    }
}

/// An in-memory replica of one chat.
pub struct ChatReplica {
    pub(crate) id: ChatId,
    pub(crate) kind: ChatKind,
    /// History segments, and for groups the metadata document at [`META_SEGMENT`].
    pub(crate) segments: BTreeMap<SegmentIndex, Segment>,
    pub(crate) segment_capacity: usize,
    deferred: Deferred,
    /// Deferred changes' received times survive a re-admission.
    deferred_since: HashMap<ChangeHash, i64>,
    /// Recently refused changes, so a resent one costs nothing.
    refused: HashMap<ChangeHash, RejectReason>,
    refused_order: VecDeque<ChangeHash>,
    /// The group's state resolved from all metadata held (cached).
    resolution: RefCell<Option<Arc<Resolution>>>,
    /// Group states at past metadata heads (cached; history at fixed heads
    /// never changes).
    past_states: RefCell<HashMap<Vec<ChangeHash>, Arc<GroupState>>>,
    info: RefCell<Option<Arc<GroupInfo>>>,
}

impl std::fmt::Debug for ChatReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatReplica")
            .field("id", &self.id)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

/// How a batch of changes entered the replica.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// From the network: verify signatures, defer what cannot be judged yet.
    Remote,
    /// From this node's own store: signatures were checked before storing.
    Stored,
}

impl ChatReplica {
    /// An empty replica of the chat `kind` describes.
    pub fn new(kind: ChatKind) -> Self {
        Self {
            id: kind.chat_id(),
            kind,
            segments: BTreeMap::new(),
            segment_capacity: DEFAULT_SEGMENT_CAPACITY,
            deferred: Deferred::default(),
            deferred_since: HashMap::new(),
            refused: HashMap::new(),
            refused_order: VecDeque::new(),
            resolution: RefCell::new(None),
            past_states: RefCell::new(HashMap::new()),
            info: RefCell::new(None),
        }
    }

    /// Sets how many messages a segment holds before writers start the next one.
    pub fn with_segment_capacity(mut self, capacity: usize) -> Self {
        self.segment_capacity = capacity.max(1);
        self
    }

    /// The chat id.
    pub fn id(&self) -> ChatId {
        self.id
    }

    /// Who is in the chat.
    pub fn kind(&self) -> &ChatKind {
        &self.kind
    }

    /// Number of history segments.
    pub fn segment_count(&self) -> usize {
        self.history().count()
    }

    pub(crate) fn history(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values().filter(|s| s.index != META_SEGMENT)
    }

    pub(crate) fn meta(&self) -> Option<&Segment> {
        self.segments.get(&META_SEGMENT)
    }

    // ----- membership -------------------------------------------------------

    /// The group's state resolved from every metadata change held.
    pub(crate) fn resolution(&self) -> Arc<Resolution> {
        if let Some(r) = self.resolution.borrow().as_ref() {
            return r.clone();
        }
        let resolved = Arc::new(match self.meta() {
            Some(meta) => authority::resolve(&meta.entries),
            None => Resolution::default(),
        });
        *self.resolution.borrow_mut() = Some(resolved.clone());
        resolved
    }

    /// The group's state as of the metadata `heads` (all held).
    fn state_at(&self, heads: &[ChangeHash]) -> Arc<GroupState> {
        let Some(meta) = self.meta() else {
            return Arc::new(GroupState::default());
        };
        let mut key = heads.to_vec();
        key.sort();
        key.dedup();
        if key.iter().eq(meta.model.heads().iter()) {
            return self.resolution().state.clone();
        }
        if let Some(state) = self.past_states.borrow().get(&key) {
            return state.clone();
        }
        let state = authority::resolve(&authority::past_of(&meta.entries, &key)).state;
        let mut past = self.past_states.borrow_mut();
        if past.len() >= PAST_STATES_KEPT {
            past.clear();
        }
        past.insert(key, state.clone());
        state
    }

    fn forget_meta_views(&mut self) {
        *self.resolution.get_mut() = None;
        *self.info.get_mut() = None;
    }

    /// Members and roles now. Direct chats: both keys, no admins.
    pub fn members(&self) -> BTreeMap<PublicKey, Role> {
        match &self.kind {
            ChatKind::Direct { a, b } => [(*a, Role::Member), (*b, Role::Member)].into(),
            ChatKind::Group { .. } => self.resolution().state.roles(),
        }
    }

    /// `key`'s role now, if it is a member.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        match &self.kind {
            ChatKind::Direct { a, b } => (key == a || key == b).then_some(Role::Member),
            ChatKind::Group { .. } => {
                let info = self.group_info_shared()?;
                let at = info.members.binary_search_by_key(key, |m| m.key).ok()?;
                Some(info.members[at].role)
            }
        }
    }

    /// Whether `key` is a member now.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.role_of(key).is_some()
    }

    /// Whether `key` is or ever was named a member. Former members may still
    /// receive the group's metadata (so they learn they were removed), never
    /// its later history.
    pub fn was_member(&self, key: &PublicKey) -> bool {
        match &self.kind {
            ChatKind::Direct { a, b } => key == a || key == b,
            ChatKind::Group { creator, .. } => {
                key == creator
                    || self.meta().is_some_and(|m| {
                        m.entries.values().any(|e| {
                            e.actions
                                .iter()
                                .any(|a| matches!(a, authority::MetaAction::Role(k, _) if k == key))
                        })
                    })
            }
        }
    }

    /// A group's metadata (`None` for direct chats and groups not yet received).
    pub fn group_info(&self) -> Option<GroupInfo> {
        self.group_info_shared().map(|i| (*i).clone())
    }

    /// One member of a group, with who added them and what history they may read.
    pub fn member(&self, key: &PublicKey) -> Option<Member> {
        let info = self.group_info_shared()?;
        let at = info.members.binary_search_by_key(key, |m| m.key).ok()?;
        Some(info.members[at].clone())
    }

    /// [`ChatReplica::group_info`] without copying it.
    pub(crate) fn group_info_shared(&self) -> Option<Arc<GroupInfo>> {
        if let Some(info) = self.info.borrow().as_ref() {
            return Some(info.clone());
        }
        let ChatKind::Group { creator, .. } = &self.kind else {
            return None;
        };
        let resolution = self.resolution();
        let state = &resolution.state;
        if !state.started {
            return None;
        }
        let roles = state.roles();
        let info = Arc::new(GroupInfo {
            name: state.name.clone(),
            creator: *creator,
            members: state
                .members
                .iter()
                .map(|(key, m)| Member {
                    key: *key,
                    role: roles.get(key).copied().unwrap_or(m.role),
                    added_by: m.added_by,
                    joined_segment: m.joined,
                })
                .collect(),
            settings: GroupSettings {
                history_for_new_members: state.history_for_new_members,
            },
        });
        *self.info.borrow_mut() = Some(info.clone());
        Some(info)
    }

    // ----- receiving --------------------------------------------------------

    /// Whether this replica holds the change (applied to its documents).
    pub fn holds(&self, segment: SegmentIndex, hash: &ChangeHash) -> bool {
        self.segments
            .get(&segment)
            .is_some_and(|s| s.signed.contains_key(hash))
    }

    /// Number of changes waiting in memory for their dependencies.
    pub fn deferred_count(&self) -> usize {
        self.deferred.changes.len()
    }

    /// Verifies, judges and applies received changes. `now_ms` (the node's
    /// clock) only ages the changes kept waiting for their dependencies.
    pub fn receive(
        &mut self,
        changes: impl IntoIterator<Item = SignedChange>,
        now_ms: i64,
    ) -> Ingested {
        let mut out = Ingested::default();
        let mut verified = Vec::new();
        let mut seen = HashSet::new();
        for signed in changes {
            if signed.chat != self.id {
                out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: RejectReason::WrongChat(signed.chat),
                });
                continue;
            }
            match signed.verify() {
                Ok(v) if self.holds(v.signed.segment, &v.hash) => out.duplicates.push(v.hash),
                Ok(v) if !seen.insert(v.hash) => {}
                Ok(v) => {
                    if let Some(reason) = self.refused.get(&v.hash) {
                        out.rejected.push(Rejected {
                            hash: Some(v.hash),
                            author: Some(v.author),
                            reason: RejectReason::Again(Box::new(reason.clone())),
                        });
                    } else {
                        verified.push(v);
                    }
                }
                Err(e) => out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: e.into(),
                }),
            }
        }
        self.deferred.expire(now_ms);
        self.deferred_since
            .retain(|h, _| self.deferred.changes.contains_key(h));
        self.ingest(verified, Mode::Remote, now_ms, &mut out);
        out
    }

    /// Re-applies changes from this node's own store (signatures were checked
    /// before they were stored). Every change is judged again, so a bad one
    /// on disk is reported (in `rejected`: delete it) and the rest still load.
    pub fn load(&mut self, stored: Vec<SignedChange>) -> Ingested {
        let mut out = Ingested::default();
        let mut decoded = Vec::with_capacity(stored.len());
        for signed in stored {
            if signed.chat != self.id {
                out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: RejectReason::WrongChat(signed.chat),
                });
                continue;
            }
            match signed.decode_stored() {
                Ok(change) => decoded.push(change),
                Err(e) => out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: e.into(),
                }),
            }
        }
        self.ingest(decoded, Mode::Stored, 0, &mut out);
        // Loaded changes are stored already; only report what to delete.
        out.stored.clear();
        out.new_messages.clear();
        out.updated_messages.clear();
        out
    }

    /// Judges and applies verified changes, retrying deferred ones.
    fn ingest(
        &mut self,
        changes: Vec<VerifiedChange>,
        mode: Mode,
        now_ms: i64,
        out: &mut Ingested,
    ) {
        let mut queue: Vec<VerifiedChange> = match mode {
            Mode::Remote => self.deferred.take_all(),
            Mode::Stored => Vec::new(),
        };
        let known: HashSet<ChangeHash> = queue.iter().map(|c| c.hash).collect();
        queue.extend(changes.into_iter().filter(|c| !known.contains(&c.hash)));
        let mut batches: BTreeMap<SegmentIndex, Vec<VerifiedChange>> = BTreeMap::new();
        let mut touched: BTreeSet<(SegmentIndex, MessageId)> = BTreeSet::new();
        let mut created: BTreeSet<(SegmentIndex, MessageId)> = BTreeSet::new();
        let mut meta_changed = false;
        let mut waiting: Vec<VerifiedChange> = causal_order(queue);
        loop {
            let mut progress = false;
            let mut still: Vec<VerifiedChange> = Vec::new();
            for change in std::mem::take(&mut waiting) {
                if self.holds(change.signed.segment, &change.hash) {
                    continue;
                }
                match self.judge(&change) {
                    Verdict::Accept(accepted) => {
                        progress = true;
                        let segment = change.signed.segment;
                        if segment == META_SEGMENT {
                            meta_changed = true;
                        }
                        for (id, new) in messages_touched(&accepted) {
                            touched.insert((segment, id));
                            if new {
                                created.insert((segment, id));
                            }
                        }
                        self.insert(&change, *accepted);
                        out.stored.push(change.clone());
                        batches.entry(segment).or_default().push(change);
                    }
                    Verdict::Defer => still.push(change),
                    Verdict::Fork(held) if change.hash < held => {
                        // The smaller hash wins on every replica: drop the
                        // held change and what was built on it, then judge
                        // this one again.
                        self.flush(std::mem::take(&mut batches), out);
                        let segment = change.signed.segment;
                        self.supersede(segment, held, out);
                        meta_changed |= segment == META_SEGMENT;
                        progress = true;
                        still.push(change);
                    }
                    Verdict::Fork(held) => {
                        self.refuse(out, &change, RejectReason::SeqReused { held })
                    }
                    Verdict::Reject(reason) => self.refuse(out, &change, reason),
                }
            }
            waiting = still;
            if !progress || waiting.is_empty() {
                break;
            }
        }
        for change in waiting {
            match mode {
                Mode::Stored => self.refuse(
                    out,
                    &change,
                    RejectReason::Unjudgeable("stored without its dependencies"),
                ),
                Mode::Remote => match self.may_wait(&change) {
                    Err(why) => self.refuse(out, &change, RejectReason::Unjudgeable(why)),
                    Ok(()) => {
                        let since = *self.deferred_since.entry(change.hash).or_insert(now_ms);
                        let hash = change.hash;
                        let author = change.author;
                        match self.deferred.admit(change, since) {
                            Ok(()) => out.deferred.push(hash),
                            Err(why) => out.rejected.push(Rejected {
                                hash: Some(hash),
                                author: Some(author),
                                reason: RejectReason::Unjudgeable(why),
                            }),
                        }
                    }
                },
            }
        }
        self.flush(batches, out);
        if meta_changed {
            self.forget_meta_views();
            self.recompute_voids();
            out.meta_changed = true;
        }
        // Quarantined or superseded changes must not be persisted.
        let dropped: HashSet<ChangeHash> = self.refused.keys().copied().collect();
        out.stored
            .retain(|c| !dropped.contains(&c.hash) && self.holds(c.signed.segment, &c.hash));
        for (segment, id) in &created {
            if let Some(m) = self.segments.get(segment).and_then(|s| s.message(id)) {
                out.new_messages.push(m);
            }
        }
        for (segment, id) in touched.difference(&created) {
            if let Some(m) = self.segments.get(segment).and_then(|s| s.message(id)) {
                out.updated_messages.push(m);
            }
        }
        out.new_messages.sort_by_key(|m| (m.sent_at_ms, m.id));
    }

    fn refuse(&mut self, out: &mut Ingested, change: &VerifiedChange, reason: RejectReason) {
        // A change that could not be judged yet may be judgeable later.
        if !matches!(reason, RejectReason::Unjudgeable(_)) {
            self.remember_refused(change.hash, reason.clone());
        }
        out.rejected.push(Rejected {
            hash: Some(change.hash),
            author: Some(change.author),
            reason,
        });
    }

    fn remember_refused(&mut self, hash: ChangeHash, reason: RejectReason) {
        if self.refused.insert(hash, reason).is_none() {
            self.refused_order.push_back(hash);
            while self.refused_order.len() > REFUSED_KEPT {
                if let Some(old) = self.refused_order.pop_front() {
                    self.refused.remove(&old);
                }
            }
        }
    }

    /// Whether a change that cannot be judged yet may wait in memory: only
    /// from a member (now) or the direct chat's peer.
    fn may_wait(&self, change: &VerifiedChange) -> Result<(), &'static str> {
        match &self.kind {
            ChatKind::Direct { a, b } if change.author == *a || change.author == *b => Ok(()),
            ChatKind::Direct { .. } => Err("author is not in this chat"),
            ChatKind::Group { .. } if self.meta().is_none() => {
                Err("no metadata yet to tell whether the author is a member")
            }
            ChatKind::Group { .. } if self.is_member(&change.author) => Ok(()),
            ChatKind::Group { .. } => Err("author is not a member"),
        }
    }

    /// Decides what to do with one verified change, against the replica as
    /// it is (every earlier change of the batch already inserted).
    fn judge(&self, change: &VerifiedChange) -> Verdict {
        let segment = change.signed.segment;
        let author = change.author;
        if segment == META_SEGMENT {
            return self.judge_meta(change);
        }
        if !change.signed.meta_heads.is_empty() && !self.kind.is_group() {
            return Verdict::Reject(
                RuleViolation::NotAllowed("direct chats have no metadata heads").into(),
            );
        }
        let (is_admin, floor) = match &self.kind {
            ChatKind::Direct { a, b } => {
                if author != *a && author != *b {
                    return Verdict::Reject(RejectReason::NotMember(author));
                }
                (false, 0)
            }
            ChatKind::Group { .. } => {
                let heads = &change.signed.meta_heads;
                if heads.is_empty() {
                    return Verdict::Reject(
                        RuleViolation::NotAllowed("group history must name its metadata heads")
                            .into(),
                    );
                }
                let Some(meta) = self.meta() else {
                    return Verdict::Defer;
                };
                if !heads.iter().all(|h| meta.model.has(h)) {
                    return Verdict::Defer;
                }
                let state = self.state_at(heads);
                let Some(role) = state.role_of(&author) else {
                    return Verdict::Reject(RejectReason::NotMember(author));
                };
                let floor = state.members.values().map(|m| m.joined).max().unwrap_or(0);
                (role == Role::Admin, floor)
            }
        };
        if segment >= MAX_SEGMENT {
            return Verdict::Reject(RejectReason::Structure(format!(
                "segment {segment} is beyond the last allowed ({MAX_SEGMENT})"
            )));
        }
        // A segment starts only after the one before it (or where the group
        // lets newcomers start): no member can jump ahead and strand writers.
        let previous_held = segment == 0
            || self
                .segments
                .get(&(segment - 1))
                .is_some_and(|s| !s.model.is_empty());
        if !previous_held && segment > floor {
            return Verdict::Defer;
        }
        let empty = Model::default();
        let model = self.segments.get(&segment).map_or(&empty, |s| &s.model);
        let shaped = match shape(model, &change.change, &HistorySchema) {
            Ok(s) => s,
            Err(problem) => return problem_verdict(problem),
        };
        let effects = match check_history(model, &shaped, is_admin) {
            Ok(effects) => effects,
            Err(e) => return Verdict::Reject(e.into()),
        };
        if let Some(held) = shaped.fork {
            return Verdict::Fork(held);
        }
        Verdict::Accept(Box::new(Accepted {
            shaped,
            effects,
            entry: None,
        }))
    }

    fn judge_meta(&self, change: &VerifiedChange) -> Verdict {
        let ChatKind::Group { creator, nonce } = &self.kind else {
            return Verdict::Reject(
                RuleViolation::NotAllowed("direct chats have no metadata").into(),
            );
        };
        if !change.signed.meta_heads.is_empty() {
            return Verdict::Reject(
                RuleViolation::NotAllowed("metadata changes name no metadata heads").into(),
            );
        }
        let empty = Model::default();
        let model = self.meta().map_or(&empty, |s| &s.model);
        let shaped = match shape(model, &change.change, &MetaSchema) {
            Ok(s) => s,
            Err(problem) => return problem_verdict(problem),
        };
        let (entry, effects) = match check_meta(&shaped, creator, nonce) {
            Ok(x) => x,
            Err(e) => return Verdict::Reject(e.into()),
        };
        if !entry.genesis {
            let state = self.state_at(&entry.deps);
            if let Err(why) = state.allows(&entry) {
                return Verdict::Reject(if state.members.contains_key(&entry.author) {
                    RuleViolation::NotAllowed(why).into()
                } else {
                    RejectReason::NotMember(entry.author)
                });
            }
        }
        if let Some(held) = shaped.fork {
            return Verdict::Fork(held);
        }
        Verdict::Accept(Box::new(Accepted {
            shaped,
            effects,
            entry: Some(entry),
        }))
    }

    /// Records an accepted change in its segment's model (the Automerge
    /// document gets it when the batch is flushed).
    fn insert(&mut self, change: &VerifiedChange, accepted: Accepted) {
        let index = change.signed.segment;
        let segment = self
            .segments
            .entry(index)
            .or_insert_with(|| Segment::new(index));
        let Accepted {
            shaped,
            effects,
            entry,
        } = accepted;
        let actor = segment.model.intern(&shaped.actor_id);
        debug_assert_eq!(actor, shaped.actor);
        segment.model.insert(
            change.hash,
            Node {
                actor,
                seq: shaped.seq,
                max_op: shaped.max_op,
                deps: shaped.deps,
            },
            effects,
        );
        segment.signed.insert(change.hash, change.signed.clone());
        if let Some(entry) = entry {
            segment.entries.insert(change.hash, entry);
            self.forget_meta_views();
        } else if self.history_change_is_void(index, change) {
            if let Some(segment) = self.segments.get_mut(&index) {
                segment.void.insert(change.hash);
            }
        }
    }

    /// Applies inserted changes to the Automerge documents, one call per
    /// document. If Automerge refuses or panics, the document is rebuilt and
    /// the changes it cannot take are quarantined.
    fn flush(&mut self, batches: BTreeMap<SegmentIndex, Vec<VerifiedChange>>, out: &mut Ingested) {
        for (index, changes) in batches {
            let Some(segment) = self.segments.get_mut(&index) else {
                continue;
            };
            let raw: Vec<automerge::Change> = changes.iter().map(|c| c.change.clone()).collect();
            let doc = &mut segment.doc;
            let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes(raw)));
            let failure = match applied {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "panicked".to_string(),
            };
            tracing::error!(chat = %self.id, segment = index, %failure, "automerge could not apply a checked batch; containing it");
            self.contain(index, changes, &failure, out);
        }
    }

    /// Rebuilds a segment without a batch Automerge failed on, then applies
    /// the batch one change at a time; each change it cannot take is
    /// quarantined with everything built on it.
    fn contain(
        &mut self,
        index: SegmentIndex,
        batch: Vec<VerifiedChange>,
        failure: &str,
        out: &mut Ingested,
    ) {
        let batch_hashes: HashSet<ChangeHash> = batch.iter().map(|c| c.hash).collect();
        let mut quarantined: HashSet<ChangeHash> = HashSet::new();
        let mut good: HashSet<ChangeHash> = HashSet::new();
        let untried = |good: &HashSet<ChangeHash>| -> HashSet<ChangeHash> {
            batch_hashes.difference(good).copied().collect()
        };
        let mut doc = self.rebuild_doc(index, &untried(&good));
        for change in &batch {
            if quarantined.contains(&change.hash) {
                continue;
            }
            let applied = doc.as_mut().is_some_and(|doc| {
                matches!(
                    catch_unwind(AssertUnwindSafe(
                        || doc.apply_changes([change.change.clone()])
                    )),
                    Ok(Ok(()))
                )
            });
            if applied {
                good.insert(change.hash);
            } else {
                let model = &self.segments[&index].model;
                quarantined.extend(model.with_descendants(&[change.hash]));
                // The failed apply may have left the document half-updated.
                doc = self.rebuild_doc(index, &untried(&good));
            }
        }
        self.remove_changes(index, &quarantined);
        for hash in quarantined {
            let reason = RejectReason::Quarantined(failure.to_string());
            self.remember_refused(hash, reason.clone());
            out.rejected.push(Rejected {
                hash: Some(hash),
                author: None,
                reason,
            });
        }
    }

    /// A fresh Automerge document of the segment's changes except `exclude`.
    fn rebuild_doc(
        &self,
        index: SegmentIndex,
        exclude: &HashSet<ChangeHash>,
    ) -> Option<automerge::Automerge> {
        let segment = self.segments.get(&index)?;
        let mut changes = Vec::new();
        for hash in segment.model.causal_order() {
            if exclude.contains(&hash) {
                continue;
            }
            changes.push(segment.signed.get(&hash)?.decode_stored().ok()?.change);
        }
        let mut doc = automerge::Automerge::new();
        catch_unwind(AssertUnwindSafe(|| doc.apply_changes(changes)))
            .ok()?
            .ok()?;
        Some(doc)
    }

    /// Drops `hashes` (closed under descendants) from a segment and rebuilds
    /// its document and model from the rest.
    fn remove_changes(&mut self, index: SegmentIndex, hashes: &HashSet<ChangeHash>) {
        let Some(segment) = self.segments.remove(&index) else {
            return;
        };
        let order = segment.model.causal_order();
        let mut keep = Vec::with_capacity(order.len());
        for hash in order {
            if hashes.contains(&hash) {
                continue;
            }
            if let Some(signed) = segment.signed.get(&hash) {
                if let Ok(v) = signed.decode_stored() {
                    keep.push(v);
                }
            }
        }
        if index == META_SEGMENT {
            self.forget_meta_views();
        }
        // Re-judge the rest into a fresh segment: it passed before, and every
        // change it depends on is still there.
        let mut scratch = Ingested::default();
        self.ingest(keep, Mode::Stored, 0, &mut scratch);
        for rejected in scratch.rejected {
            tracing::error!(chat = %self.id, segment = index, reason = %rejected.reason, "change lost while rebuilding a segment");
        }
    }

    /// Drops the change `held` of `segment` and everything built on it,
    /// including history that named it (or a later metadata change) as its
    /// metadata heads.
    fn supersede(&mut self, index: SegmentIndex, held: ChangeHash, out: &mut Ingested) {
        let Some(segment) = self.segments.get(&index) else {
            return;
        };
        let gone = segment.model.with_descendants(&[held]);
        let mut dropped: Vec<(SegmentIndex, HashSet<ChangeHash>)> = vec![(index, gone.clone())];
        if index == META_SEGMENT {
            for history in self.history() {
                let named: Vec<ChangeHash> = history
                    .signed
                    .iter()
                    .filter(|(_, s)| s.meta_heads.iter().any(|h| gone.contains(h)))
                    .map(|(h, _)| *h)
                    .collect();
                if !named.is_empty() {
                    dropped.push((history.index, history.model.with_descendants(&named)));
                }
            }
        }
        for (segment, hashes) in dropped {
            self.remove_changes(segment, &hashes);
            for hash in hashes {
                self.remember_refused(hash, RejectReason::Superseded);
                out.superseded.push((segment, hash));
            }
        }
    }

    /// Whether a history change by a member that a standing removal took out
    /// lies beyond that removal: not seen by the remover, and written
    /// without having seen the removal.
    fn history_change_is_void(&self, index: SegmentIndex, change: &VerifiedChange) -> bool {
        if !self.kind.is_group() {
            return false;
        }
        let resolution = self.resolution();
        let Some(meta) = self.meta() else {
            return false;
        };
        let actor = change.change.actor_id().to_bytes();
        resolution
            .removals
            .iter()
            .filter(|r| r.member == change.author)
            .any(|r| {
                let seen = r.cut.as_ref().map_or(0, |c| c.seen(index, actor));
                change.change.seq() > seen
                    && !authority::in_past(&meta.entries, &r.change, &change.signed.meta_heads)
            })
    }

    /// Recomputes which history changes are void after the metadata changed.
    fn recompute_voids(&mut self) {
        if !self.kind.is_group() {
            return;
        }
        let removed: HashSet<PublicKey> = self
            .resolution()
            .removals
            .iter()
            .map(|r| r.member)
            .collect();
        let indices: Vec<SegmentIndex> = self.history().map(|s| s.index).collect();
        for index in indices {
            let mut void = HashSet::new();
            if !removed.is_empty() {
                let segment = &self.segments[&index];
                for actor in 0..segment.model.actor_count() as u32 {
                    if !segment
                        .model
                        .author(actor)
                        .is_some_and(|a| removed.contains(&a))
                    {
                        continue;
                    }
                    for hash in segment.model.chain(actor) {
                        let Some(v) = segment
                            .signed
                            .get(hash)
                            .and_then(|s| s.decode_stored().ok())
                        else {
                            continue;
                        };
                        if self.history_change_is_void(index, &v) {
                            void.insert(*hash);
                        }
                    }
                }
            }
            if let Some(segment) = self.segments.get_mut(&index) {
                segment.void = void;
            }
        }
    }

    // ----- sync -------------------------------------------------------------

    /// The heads of every document, metadata first.
    pub fn heads(&self) -> Vec<SegmentHeads> {
        self.ordered_segments()
            .map(|s| SegmentHeads {
                segment: s.index,
                heads: s.heads(),
            })
            .collect()
    }

    /// Metadata first (history changes depend on it), then history in order.
    fn ordered_segments(&self) -> impl Iterator<Item = &Segment> {
        self.meta().into_iter().chain(self.history())
    }

    /// The signed changes this replica has that a replica with `their_heads`
    /// lacks (possibly a few more; never fewer), metadata first. History
    /// segments before `from_segment` are left out (a member who joined later
    /// without access to older history).
    pub fn changes_missing_from(
        &self,
        their_heads: &[SegmentHeads],
        from_segment: SegmentIndex,
    ) -> Vec<SignedChange> {
        self.changes_missing_within(their_heads, from_segment, usize::MAX)
            .0
    }

    /// [`ChatReplica::changes_missing_from`], at most about `max_bytes` of
    /// them (at least one change if any is missing), in causal order; `true`
    /// when more are missing. Only what is returned is copied.
    pub fn changes_missing_within(
        &self,
        their_heads: &[SegmentHeads],
        from_segment: SegmentIndex,
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        let mut out = Vec::new();
        let mut budget = max_bytes;
        for segment in self.ordered_segments() {
            if segment.index != META_SEGMENT && segment.index < from_segment {
                continue;
            }
            if budget == 0 {
                return (out, true);
            }
            let theirs = their_heads
                .iter()
                .find(|h| h.segment == segment.index)
                .map(|h| h.heads.as_slice())
                .unwrap_or_default();
            if theirs.len() == segment.model.heads().len()
                && theirs.iter().all(|h| segment.model.heads().contains(h))
            {
                continue;
            }
            let before = out.len();
            let mut segment_budget = budget;
            out.extend(segment.changes_not_in(theirs, &mut segment_budget));
            budget = segment_budget;
            if budget == 0 && out.len() > before {
                // The budget ran out inside this segment: more may be missing.
                return (out, true);
            }
        }
        (out, false)
    }

    // ----- reading ----------------------------------------------------------

    /// Every visible message, oldest first (by the authors' clocks, then id).
    pub fn messages(&self) -> Vec<Message> {
        let mut all: Vec<Message> = self.history().flat_map(|s| s.messages()).collect();
        all.sort_by_key(|m| (m.sent_at_ms, m.id));
        all
    }

    /// One message.
    pub fn message(&self, id: &MessageId) -> Option<Message> {
        self.history().find_map(|s| s.message(id))
    }

    /// Number of visible messages.
    pub fn message_count(&self) -> usize {
        self.history().map(Segment::message_count).sum()
    }

    /// A document saved in Automerge's standard binary format: a history
    /// segment, or the metadata at [`META_SEGMENT`].
    pub fn save_segment(&self, segment: SegmentIndex) -> Option<Vec<u8>> {
        self.segments.get(&segment).map(|s| s.doc.save())
    }

    /// Indices of all documents (metadata first).
    pub fn segment_indices(&self) -> Vec<SegmentIndex> {
        self.ordered_segments().map(|s| s.index).collect()
    }

    // ----- local writes -----------------------------------------------------

    /// Judges a change this replica just committed to `index` (its document
    /// already holds it) and records it, so local writes obey exactly the
    /// rules receivers enforce. If it fails, the document is rebuilt without it.
    pub(crate) fn accept_local(&mut self, signed: &SignedChange) -> Result<ChangeHash, String> {
        let verified = signed.decode_stored().map_err(|e| e.to_string())?;
        let index = signed.segment;
        // The document already has the change; judge it as the model sees it.
        let verdict = self.judge(&verified);
        match verdict {
            Verdict::Accept(accepted) => {
                if index == META_SEGMENT {
                    self.forget_meta_views();
                }
                self.insert(&verified, *accepted);
                if index == META_SEGMENT {
                    self.recompute_voids();
                }
                Ok(verified.hash)
            }
            other => {
                let reason = match other {
                    Verdict::Reject(r) => r.to_string(),
                    Verdict::Defer => "dependencies missing".into(),
                    Verdict::Fork(h) => format!("sequence number taken by {h}"),
                    Verdict::Accept(_) => String::new(),
                };
                if let Some(doc) = self.rebuild_doc(index, &HashSet::new()) {
                    if let Some(segment) = self.segments.get_mut(&index) {
                        segment.doc = doc;
                    }
                }
                Err(reason)
            }
        }
    }

    /// The cut of `member`'s writing as this replica sees it: per segment and
    /// actor, their last sequence number. Recorded with a removal.
    pub(crate) fn cut_of(&self, member: &PublicKey) -> authority::Cut {
        let mut cut = Vec::new();
        for segment in self.history() {
            for actor in 0..segment.model.actor_count() as u32 {
                if segment.model.author(actor) != Some(*member) {
                    continue;
                }
                let seq = segment.model.chain(actor).count() as u64;
                if let Some(id) = segment.model.actor_id(actor) {
                    cut.push(authority::CutEntry {
                        segment: segment.index,
                        actor: id.to_bytes().to_vec(),
                        seq,
                    });
                }
            }
        }
        authority::Cut(cut)
    }
}

#[cfg(test)]
impl ChatReplica {
    /// Puts a change into its segment without judging it, to test the
    /// containment of what Automerge cannot apply.
    pub(crate) fn apply_unjudged_for_test(&mut self, change: VerifiedChange) -> Ingested {
        let mut out = Ingested::default();
        let index = change.signed.segment;
        let segment = self
            .segments
            .entry(index)
            .or_insert_with(|| Segment::new(index));
        let actor = segment.model.intern(change.change.actor_id());
        segment.model.insert(
            change.hash,
            Node {
                actor,
                seq: change.change.seq(),
                max_op: change.change.max_op(),
                deps: change.change.deps().iter().map(|d| (*d).into()).collect(),
            },
            Effects::default(),
        );
        segment.signed.insert(change.hash, change.signed.clone());
        out.stored.push(change.clone());
        self.flush(BTreeMap::from([(index, vec![change])]), &mut out);
        out.stored.retain(|c| self.holds(c.signed.segment, &c.hash));
        out
    }
}

fn problem_verdict(problem: Problem) -> Verdict {
    match problem {
        Problem::MissingDeps => Verdict::Defer,
        Problem::Malformed(reason) => Verdict::Reject(RejectReason::Structure(reason)),
    }
}

/// The messages an accepted history change creates (`true`) or touches.
fn messages_touched(accepted: &Accepted) -> Vec<(MessageId, bool)> {
    if accepted.entry.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for op in &accepted.shaped.ops {
        match op.obj {
            ObjRef::Root => {
                if let Ok(id) = op.key.parse() {
                    out.push((id, true));
                }
            }
            ObjRef::Obj(_) => {}
        }
    }
    out.extend(accepted.effects.touched.iter().map(|id| (*id, false)));
    out
}

/// Orders changes so that each comes after its dependencies within the set,
/// metadata before history (history changes name metadata heads), lower
/// segments first.
fn causal_order(changes: Vec<VerifiedChange>) -> Vec<VerifiedChange> {
    let mut by_hash: HashMap<ChangeHash, VerifiedChange> =
        changes.into_iter().map(|c| (c.hash, c)).collect();
    let mut keys: Vec<(bool, SegmentIndex, ChangeHash)> = by_hash
        .values()
        .map(|c| (c.signed.segment != META_SEGMENT, c.signed.segment, c.hash))
        .collect();
    keys.sort();
    let mut out = Vec::with_capacity(by_hash.len());
    let mut visiting = HashSet::new();
    for (_, _, hash) in keys {
        visit(hash, &mut by_hash, &mut visiting, &mut out);
    }
    out
}

fn visit(
    hash: ChangeHash,
    by_hash: &mut HashMap<ChangeHash, VerifiedChange>,
    visiting: &mut HashSet<ChangeHash>,
    out: &mut Vec<VerifiedChange>,
) {
    // Iterative depth-first post-order, so long chains cannot overflow the stack.
    let mut stack = vec![(hash, false)];
    while let Some((h, expanded)) = stack.pop() {
        if expanded {
            if let Some(change) = by_hash.remove(&h) {
                out.push(change);
            }
            continue;
        }
        if !by_hash.contains_key(&h) || !visiting.insert(h) {
            continue;
        }
        stack.push((h, true));
        let deps: Vec<ChangeHash> = by_hash[&h]
            .change
            .deps()
            .iter()
            .map(|d| ChangeHash::from(*d))
            .filter(|d| by_hash.contains_key(d))
            .collect();
        for dep in deps {
            stack.push((dep, false));
        }
    }
}

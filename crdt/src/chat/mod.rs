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
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    authority::{self, GroupState, Resolution},
    ids::{ChangeHash, ChatId, GroupNonce, MessageId, PublicKey},
    message::Message,
    meta::{self, GroupInfo, GroupSettings, Member},
    role::Role,
    rules::RuleViolation,
    segment::Segment,
    signed::{SegmentIndex, SignedChange, VerifiedChange, VerifyError, META_SEGMENT},
};

mod deferred;
mod ingest;

use deferred::Deferred;
use ingest::Verdict;

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
    /// Changes received now that wait in memory for their dependencies (or
    /// were waiting already): do not acknowledge. Changes that waited from
    /// before and were not received again are not listed.
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

/// An in-memory replica of one chat.
#[derive(Clone)]
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
    /// The `sent_at` of the last message this replica wrote: the next one is
    /// stamped later even when the clock has not moved, so one author's
    /// messages keep their order (history sorts by `sent_at`, then id).
    pub(crate) last_sent_at_ms: i64,
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
            last_sent_at_ms: i64::MIN,
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
}

impl ChatReplica {
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

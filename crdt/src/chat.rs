//! A replica of one chat: its kind, its group metadata (groups), and its
//! history segments. Sans-I/O: the node feeds it signed changes and persists
//! what it is told to.
//!
//! Receiving is two steps so that nothing is acknowledged before it is durable:
//! [`ChatReplica::check`] verifies and judges without touching the documents;
//! the node persists the accepted and deferred changes; then
//! [`ChatReplica::apply`] merges them in causal order, batched per document.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    ids::{ChangeHash, ChatId, GroupNonce, MessageId, PublicKey},
    message::Message,
    meta::{self, GroupInfo, Member, Role},
    meta_cache::{MetaCache, Roles},
    rules::{check_history_change, RuleViolation},
    segment::Segment,
    signed::{SegmentIndex, SignedChange, VerifiedChange, VerifyError, META_SEGMENT},
};

/// Messages per history segment before a writer starts the next one. Keeps
/// every Automerge document small, so applying a remote change stays cheap.
pub const DEFAULT_SEGMENT_CAPACITY: usize = 1000;

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
}

/// A received change that was refused, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The change's hash when it could be decoded.
    pub hash: Option<ChangeHash>,
    /// Why.
    pub reason: RejectReason,
}

/// The outcome of [`ChatReplica::check`].
#[derive(Debug, Default)]
pub struct Checked {
    /// Valid changes: persist them, then pass them to [`ChatReplica::apply`].
    pub accepted: Vec<VerifiedChange>,
    /// Changes that cannot be judged yet (their dependencies have not
    /// arrived): persist them too, and pass them to [`ChatReplica::apply`],
    /// which keeps them until they can be judged.
    pub deferred: Vec<VerifiedChange>,
    /// Changes this replica already holds (harmless: delivery is at-least-once).
    pub duplicates: Vec<ChangeHash>,
    /// Refused changes.
    pub rejected: Vec<Rejected>,
}

/// The outcome of [`ChatReplica::apply`].
#[derive(Debug, Default)]
pub struct Applied {
    /// Messages that became visible, each exactly once.
    pub new_messages: Vec<Message>,
    /// Messages edited, deleted or reacted to.
    pub updated_messages: Vec<Message>,
    /// Previously deferred changes that turned out invalid: delete them from storage.
    pub rejected: Vec<Rejected>,
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
    /// founds, if `change` is one and its content matches the chat id it
    /// claims. Lets a node adopt a group it is invited to.
    pub fn from_genesis(change: &VerifiedChange) -> Option<Self> {
        if change.signed.segment != META_SEGMENT || !change.change.deps().is_empty() {
            return None;
        }
        let mut doc = automerge::Automerge::new();
        doc.apply_changes([change.change.clone()]).ok()?;
        let (creator, nonce) = meta::founder(&doc)?;
        let kind = Self::Group { creator, nonce };
        (creator == change.author && kind.chat_id() == change.signed.chat).then_some(kind)
    }
}

enum Verdict {
    Accept,
    /// Dependencies missing: keep until they arrive.
    Defer,
    /// Dependencies are pending in this batch and the rules need them applied.
    NeedsFlush,
    Reject(RejectReason),
}

/// An in-memory replica of one chat.
pub struct ChatReplica {
    pub(crate) id: ChatId,
    pub(crate) kind: ChatKind,
    /// History segments, and for groups the metadata document at [`META_SEGMENT`].
    pub(crate) segments: BTreeMap<SegmentIndex, Segment>,
    pub(crate) segment_capacity: usize,
    /// Changes waiting for their dependencies.
    deferred: HashMap<ChangeHash, VerifiedChange>,
    /// Membership and metadata views, so questions do not re-read Automerge.
    pub(crate) meta_cache: MetaCache,
}

impl std::fmt::Debug for ChatReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatReplica")
            .field("id", &self.id)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl ChatReplica {
    /// An empty replica of the chat `kind` describes.
    pub fn new(kind: ChatKind) -> Self {
        Self {
            id: kind.chat_id(),
            kind,
            segments: BTreeMap::new(),
            segment_capacity: DEFAULT_SEGMENT_CAPACITY,
            deferred: HashMap::new(),
            meta_cache: MetaCache::default(),
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

    /// Members and roles now. Direct chats: both keys, no admins.
    pub fn members(&self) -> BTreeMap<PublicKey, Role> {
        match &self.kind {
            ChatKind::Direct { a, b } => [(*a, Role::Member), (*b, Role::Member)].into(),
            ChatKind::Group { .. } => self.group_roles().map(|r| (*r).clone()).unwrap_or_default(),
        }
    }

    /// A group's members and roles now, from the cache.
    fn group_roles(&self) -> Option<Roles> {
        self.meta().map(|m| self.meta_cache.roles(&m.doc))
    }

    /// `key`'s role now, if it is a member.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        match &self.kind {
            ChatKind::Direct { a, b } => (key == a || key == b).then_some(Role::Member),
            ChatKind::Group { .. } => self.group_roles()?.get(key).copied(),
        }
    }

    /// Whether `key` is a member now.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.role_of(key).is_some()
    }

    /// Whether `key` is or ever was a member. Former members may still
    /// receive the group's metadata (so they learn they were removed), never
    /// its later history.
    pub fn was_member(&self, key: &PublicKey) -> bool {
        match &self.kind {
            ChatKind::Direct { a, b } => key == a || key == b,
            ChatKind::Group { .. } => self.meta().is_some_and(|m| meta::ever_member(&m.doc, key)),
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
        self.meta_cache.info(&self.meta()?.doc)
    }

    /// Whether this replica holds the change (applied, or waiting for its dependencies).
    pub fn holds(&self, segment: SegmentIndex, hash: &ChangeHash) -> bool {
        self.deferred.contains_key(hash)
            || self
                .segments
                .get(&segment)
                .is_some_and(|s| s.signed.contains_key(hash))
    }

    /// Verifies received changes (signature, actor = signer) and judges them
    /// against membership and the rules, without applying them.
    pub fn check(&self, changes: impl IntoIterator<Item = SignedChange>) -> Checked {
        let mut out = Checked::default();
        let mut seen = HashSet::new();
        let mut verified = Vec::new();
        for signed in changes {
            if signed.chat != self.id {
                out.rejected.push(Rejected {
                    hash: None,
                    reason: RejectReason::WrongChat(signed.chat),
                });
                continue;
            }
            match signed.verify() {
                Ok(v) if self.holds(v.signed.segment, &v.hash) || !seen.insert(v.hash) => {
                    out.duplicates.push(v.hash)
                }
                Ok(v) => verified.push(v),
                Err(e) => out.rejected.push(Rejected {
                    hash: None,
                    reason: e.into(),
                }),
            }
        }
        let pending: HashSet<ChangeHash> = HashSet::new();
        for change in causal_order(verified) {
            match self.judge(&change, &pending) {
                Verdict::Accept => out.accepted.push(change),
                Verdict::Defer | Verdict::NeedsFlush => out.deferred.push(change),
                Verdict::Reject(reason) => out.rejected.push(Rejected {
                    hash: Some(change.hash),
                    reason,
                }),
            }
        }
        out
    }

    /// Decides what to do with one verified change, given the changes of this
    /// batch already accepted but not yet applied (`pending`).
    fn judge(&self, change: &VerifiedChange, pending: &HashSet<ChangeHash>) -> Verdict {
        let segment = change.signed.segment;
        let empty = Segment::new(segment);
        let seg = self.segments.get(&segment).unwrap_or(&empty);
        let mut deps_pending = false;
        for dep in change.change.deps() {
            let dep = ChangeHash::from(*dep);
            if pending.contains(&dep) {
                deps_pending = true;
            } else if !seg.has_change(&dep) {
                return Verdict::Defer;
            }
        }
        let author = change.author;
        if segment == META_SEGMENT {
            let ChatKind::Group { creator, .. } = &self.kind else {
                return Verdict::Reject(
                    RuleViolation::NotAllowed("direct chats have no metadata").into(),
                );
            };
            if deps_pending {
                return Verdict::NeedsFlush;
            }
            let roles = self.meta_cache.roles_at(&seg.doc, change.change.deps());
            return match meta::check_meta_change(&seg.doc, &roles, &change.change, &author, creator)
            {
                Ok(()) => Verdict::Accept,
                Err(RuleViolation::NotMember) => Verdict::Reject(RejectReason::NotMember(author)),
                Err(e) => Verdict::Reject(e.into()),
            };
        }
        let is_admin = match &self.kind {
            ChatKind::Direct { a, b } => {
                if author != *a && author != *b {
                    return Verdict::Reject(RejectReason::NotMember(author));
                }
                false
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
                for head in heads {
                    if pending.contains(head) {
                        return Verdict::NeedsFlush;
                    }
                    if !meta.has_change(head) {
                        return Verdict::Defer;
                    }
                }
                let heads: Vec<automerge::ChangeHash> = heads.iter().map(|h| (*h).into()).collect();
                match self.meta_cache.roles_at(&meta.doc, &heads).get(&author) {
                    None => return Verdict::Reject(RejectReason::NotMember(author)),
                    Some(role) => *role == Role::Admin,
                }
            }
        };
        match check_history_change(&seg.doc, &change.change, is_admin) {
            Ok(()) => Verdict::Accept,
            Err(RuleViolation::UnknownObject) if deps_pending => Verdict::NeedsFlush,
            Err(e) => Verdict::Reject(e.into()),
        }
    }

    /// Merges changes that passed [`ChatReplica::check`] (accepted or
    /// deferred), or were loaded from this node's own store, in causal order,
    /// batched per document. Changes still missing dependencies wait inside
    /// the replica and are retried on every later apply.
    pub fn apply(&mut self, changes: Vec<VerifiedChange>) -> Applied {
        self.apply_tracked(changes, true)
    }

    /// [`ChatReplica::apply`]; with `track`, also works out which messages
    /// the changes created or touched (cost: proportional to the changes, not
    /// to the chat).
    fn apply_tracked(&mut self, changes: Vec<VerifiedChange>, track: bool) -> Applied {
        let mut out = Applied::default();
        let mut touched = track.then(Touched::default);
        let mut queue: Vec<VerifiedChange> = self.deferred.drain().map(|(_, c)| c).collect();
        let known: HashSet<ChangeHash> = queue.iter().map(|c| c.hash).collect();
        queue.extend(changes.into_iter().filter(|c| !known.contains(&c.hash)));
        let mut pending: HashSet<ChangeHash> = HashSet::new();
        let mut batch: Vec<VerifiedChange> = Vec::new();
        for change in causal_order(queue) {
            if self.holds(change.signed.segment, &change.hash) || pending.contains(&change.hash) {
                continue;
            }
            let mut verdict = self.judge(&change, &pending);
            if matches!(verdict, Verdict::NeedsFlush) {
                self.flush(std::mem::take(&mut batch), &mut out, touched.as_mut());
                pending.clear();
                verdict = self.judge(&change, &pending);
            }
            match verdict {
                Verdict::Accept => {
                    pending.insert(change.hash);
                    batch.push(change);
                }
                Verdict::Defer | Verdict::NeedsFlush => {
                    self.deferred.insert(change.hash, change);
                }
                Verdict::Reject(reason) => out.rejected.push(Rejected {
                    hash: Some(change.hash),
                    reason,
                }),
            }
        }
        self.flush(batch, &mut out, touched.as_mut());
        if let Some(touched) = touched {
            for (index, id) in &touched.created {
                if let Some(m) = self.segments.get(index).and_then(|s| s.message(id)) {
                    out.new_messages.push(m);
                }
            }
            for (index, id) in touched.changed.difference(&touched.created) {
                if let Some(m) = self.segments.get(index).and_then(|s| s.message(id)) {
                    out.updated_messages.push(m);
                }
            }
        }
        out.new_messages.sort_by_key(|m| (m.sent_at_ms, m.id));
        out
    }

    /// Applies one batch of accepted changes, one Automerge call per document.
    fn flush(
        &mut self,
        batch: Vec<VerifiedChange>,
        out: &mut Applied,
        mut touched: Option<&mut Touched>,
    ) {
        let mut by_segment: BTreeMap<SegmentIndex, Vec<VerifiedChange>> = BTreeMap::new();
        for change in batch {
            by_segment
                .entry(change.signed.segment)
                .or_default()
                .push(change);
        }
        for (index, changes) in by_segment {
            if index == META_SEGMENT {
                out.meta_changed = true;
                self.meta_cache.invalidate();
            }
            let segment = self
                .segments
                .entry(index)
                .or_insert_with(|| Segment::new(index));
            let mut raw = Vec::with_capacity(changes.len());
            let mut objects = Vec::new();
            for change in changes {
                if let Some(t) = touched.as_deref_mut().filter(|_| index != META_SEGMENT) {
                    objects.extend(t.note(index, &change.change));
                }
                segment.signed.insert(change.hash, change.signed);
                raw.push(change.change);
            }
            if let Err(error) = segment.doc.apply_changes(raw) {
                // Every change was checked and its dependencies are present,
                // so this is an Automerge invariant breaking. The signed
                // copies are kept (they are persisted) so sync still forwards them.
                tracing::error!(chat = %self.id, segment = index, %error, "automerge refused a checked batch");
            }
            if let Some(t) = touched.as_deref_mut() {
                for object in objects {
                    if let Some(id) = message_of_object(&segment.doc, &object) {
                        t.changed.insert((index, id));
                    }
                }
            }
        }
    }

    /// Re-applies changes from this node's own store (signatures were checked
    /// before they were stored).
    pub fn load(&mut self, stored: Vec<SignedChange>) -> Applied {
        let mut decoded = Vec::with_capacity(stored.len());
        let mut out_rejected = Vec::new();
        for signed in stored {
            match signed.decode_stored() {
                Ok(change) => decoded.push(change),
                Err(e) => out_rejected.push(Rejected {
                    hash: None,
                    reason: e.into(),
                }),
            }
        }
        let mut applied = self.apply_tracked(decoded, false);
        applied.rejected.extend(out_rejected);
        applied
    }

    /// Number of changes waiting for their dependencies.
    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

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
        let mut out = Vec::new();
        for segment in self.ordered_segments() {
            if segment.index != META_SEGMENT && segment.index < from_segment {
                continue;
            }
            let theirs = their_heads
                .iter()
                .find(|h| h.segment == segment.index)
                .map(|h| h.heads.as_slice())
                .unwrap_or_default();
            out.extend(segment.changes_not_in(theirs));
        }
        out
    }

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
}

/// Messages created or touched by the changes of one apply.
#[derive(Default)]
struct Touched {
    created: BTreeSet<(SegmentIndex, MessageId)>,
    changed: BTreeSet<(SegmentIndex, MessageId)>,
}

impl Touched {
    /// Records the messages `change` creates; returns the objects it writes
    /// into, to resolve to messages once applied.
    fn note(&mut self, index: SegmentIndex, change: &automerge::Change) -> Vec<String> {
        let Ok(expanded) = crate::rules::expand(change) else {
            return Vec::new();
        };
        let mut objects = Vec::new();
        for op in expanded.operations {
            match (&op.obj, &op.key) {
                (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(key)) => {
                    if let Ok(id) = key.parse() {
                        self.created.insert((index, id));
                    }
                }
                (automerge::legacy::ObjectId::Id(id), _) => {
                    objects.push(format!("{}@{}", id.counter(), id.actor()));
                }
                _ => {}
            }
        }
        objects.sort();
        objects.dedup();
        objects
    }
}

/// The message (root key) an object lives in.
fn message_of_object(doc: &automerge::Automerge, object: &str) -> Option<MessageId> {
    use automerge::ReadDoc;
    let obj = doc.import_obj(object).ok()?;
    let top = doc.parents(&obj).ok()?.last()?;
    match top.prop {
        automerge::Prop::Map(key) if top.obj == automerge::ROOT => key.parse().ok(),
        _ => None,
    }
}

/// Orders changes so that each comes after its dependencies within the set,
/// metadata before history (history changes name metadata heads).
fn causal_order(changes: Vec<VerifiedChange>) -> Vec<VerifiedChange> {
    let mut by_hash: HashMap<ChangeHash, VerifiedChange> =
        changes.into_iter().map(|c| (c.hash, c)).collect();
    let mut hashes: Vec<(bool, ChangeHash)> = by_hash
        .values()
        .map(|c| (c.signed.segment != META_SEGMENT, c.hash))
        .collect();
    hashes.sort();
    let mut out = Vec::with_capacity(by_hash.len());
    let mut visiting = HashSet::new();
    for (_, hash) in hashes {
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

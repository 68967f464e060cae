//! One document of a chat: a history segment (a bounded Automerge document of
//! messages) or a group's metadata. Beside the Automerge document it keeps the
//! signed form of every change in it (so sync forwards changes exactly as they
//! were signed), the model the validator judges against, and, for history,
//! which changes are void (written by a removed member beyond its removal).

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, Automerge, ObjId as ExId, ReadDoc, ROOT};

use crate::{
    authority::MetaEntry,
    ids::{ChangeHash, MessageId},
    message::{read_message, Message},
    model::{Model, Oid},
    rules::MAX_START_OP_SLACK,
    signed::{SegmentIndex, SignedChange, META_SEGMENT},
};

#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) index: SegmentIndex,
    pub(crate) doc: Automerge,
    /// Every change applied, as signed.
    pub(crate) signed: HashMap<ChangeHash, SignedChange>,
    pub(crate) model: Model,
    /// Metadata only: each change's actions, for the resolver.
    pub(crate) entries: HashMap<ChangeHash, MetaEntry>,
    /// History only: changes that are held but take no effect.
    pub(crate) void: HashSet<ChangeHash>,
    /// When received changes among the heads arrived (ms), for
    /// [`Segment::lean_base`]; a head not listed is settled.
    arrivals: HashMap<ChangeHash, i64>,
}

/// How long after it arrived a received change is *settled*: so long that
/// the other members are taken to hold it, and a new message may be built
/// on it without making them wait for it. What a member lacks shows up when
/// a message built on it arrives, as with every dependency.
pub(crate) const SETTLE_MS: i64 = 30_000;

impl Segment {
    pub(crate) fn new(index: SegmentIndex) -> Self {
        Self {
            index,
            doc: Automerge::new(),
            signed: HashMap::new(),
            model: Model::default(),
            entries: HashMap::new(),
            void: HashSet::new(),
            arrivals: HashMap::new(),
        }
    }

    /// A received change was just applied at `now_ms`.
    pub(crate) fn arrived(&mut self, hash: ChangeHash, now_ms: i64) {
        self.arrivals.insert(hash, now_ms);
        // Only heads are looked at: forget the rest now and then, so the map
        // stays within twice the heads.
        if self.arrivals.len() > 2 * self.model.heads().len() + 16 {
            let heads = self.model.heads();
            self.arrivals.retain(|h, _| heads.contains(h));
        }
    }

    /// Messages shown (a void message is not).
    pub(crate) fn message_count(&self) -> usize {
        if self.void.is_empty() {
            return self.doc.length(ROOT);
        }
        self.messages().count()
    }

    pub(crate) fn messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.doc
            .keys(ROOT)
            .filter_map(|k| read_message(&self.doc, &k, self.index, &|id| self.is_void(id)))
    }

    pub(crate) fn message(&self, id: &MessageId) -> Option<Message> {
        read_message(&self.doc, &id.to_string(), self.index, &|op| {
            self.is_void(op)
        })
    }

    /// Whether the op `id` (an object or value id from the document) was
    /// written by a void change.
    pub(crate) fn is_void(&self, id: &ExId) -> bool {
        if self.void.is_empty() {
            return false;
        }
        let ExId::Id(counter, actor, _) = id else {
            return false;
        };
        let Some(actor) = self.model.actor(actor) else {
            return false;
        };
        self.model
            .change_of_op(Oid {
                counter: *counter,
                actor,
            })
            .is_some_and(|hash| self.void.contains(&hash))
    }

    /// The dependencies of a new message by `actor` written at `now_ms`:
    /// the heads that are settled ([`SETTLE_MS`]) and the actor's own last
    /// change in this segment, so that a receiver never waits for a change
    /// still travelling to it. `None` when it must be built on every head.
    pub(crate) fn lean_base(&self, actor: &ActorId, now_ms: i64) -> Option<Vec<ChangeHash>> {
        if self.index == META_SEGMENT {
            return None;
        }
        let settled = |hash: &&ChangeHash| {
            self.arrivals
                .get(*hash)
                .is_none_or(|at| now_ms.saturating_sub(*at) >= SETTLE_MS)
        };
        let mut deps: Vec<ChangeHash> =
            self.model.heads().iter().filter(settled).copied().collect();
        if let Some(idx) = self.model.actor(actor) {
            let own = self.model.chain(idx).count() as u64;
            if own > self.model.clock_of(&deps).seq(idx) {
                deps.extend(self.model.chain(idx).last().copied());
            }
        }
        let all_heads = self.heads();
        let slack = self
            .model
            .max_op_of(&all_heads)
            .saturating_sub(self.model.max_op_of(&deps));
        (slack <= MAX_START_OP_SLACK).then_some(deps)
    }

    pub(crate) fn heads(&self) -> Vec<ChangeHash> {
        self.model.heads().iter().copied().collect()
    }

    /// Changes of this segment not covered by `their_heads`, at most
    /// `budget` bytes of them (at least one), in causal order. Heads we do not
    /// know are ignored, which can only make the answer larger, never wrong.
    pub(crate) fn changes_not_in(
        &self,
        their_heads: &[ChangeHash],
        budget: &mut usize,
    ) -> Vec<SignedChange> {
        let known: Vec<automerge::ChangeHash> = their_heads
            .iter()
            .filter(|h| self.model.has(h))
            .map(|h| automerge::ChangeHash::from(*h))
            .collect();
        let mut out = Vec::new();
        for meta in self.doc.get_changes_meta(&known) {
            let Some(signed) = self.signed.get(&ChangeHash::from(meta.hash)) else {
                continue;
            };
            let size = signed.wire_size();
            if size > *budget && !out.is_empty() {
                *budget = 0;
                break;
            }
            *budget = budget.saturating_sub(size);
            out.push(signed.clone());
            if *budget == 0 {
                break;
            }
        }
        out
    }
}

//! What a replica knows about the changes and objects of one document, kept
//! beside its Automerge document so that a received change can be judged
//! against the state *at its own dependencies* without asking Automerge (which
//! panics on some malformed changes instead of refusing them).
//!
//! The model holds, for every change applied to the document: its actor, its
//! sequence number, its last op counter and its dependencies; per actor the
//! chain of its changes (an actor's changes are totally ordered: each names
//! its previous one in its causal past); which objects exist, who created
//! them and what they are; and for every key that may be written after it was
//! created, every write with its predecessors, so that "which values are
//! visible at these heads" is answered from the model.

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use automerge::ActorId;

use crate::{
    identity::author_of,
    ids::{ChangeHash, MessageId, PublicKey},
};

/// An actor's position in the model's actor table.
pub(crate) type ActorIdx = u32;

/// An operation id: a counter and the actor that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Oid {
    pub(crate) counter: u64,
    pub(crate) actor: ActorIdx,
}

/// The object an operation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjRef {
    Root,
    Obj(Oid),
}

/// What an object is, as the document's schema names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjKind {
    /// A message map at the root of a history segment.
    Message,
    /// A message's `reactions` map.
    Reactions,
    /// A message's `attachment` map.
    Attachment,
    /// One of the containers the genesis of a group's metadata creates.
    Container(Container),
}

/// The maps of a group's metadata document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Container {
    Members,
    AddedBy,
    JoinedSegment,
    Settings,
    Removed,
}

/// An object some accepted change created.
#[derive(Debug, Clone)]
pub(crate) struct ObjInfo {
    pub(crate) kind: ObjKind,
    /// The public key of the actor that created it.
    pub(crate) creator: PublicKey,
    /// The message it is or belongs to (history documents).
    pub(crate) message: Option<MessageId>,
}

/// One write to a tracked key.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) id: Oid,
    pub(crate) pred: Vec<Oid>,
    pub(crate) delete: bool,
}

/// One applied change.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) actor: ActorIdx,
    pub(crate) seq: u64,
    pub(crate) max_op: u64,
    pub(crate) deps: Vec<ChangeHash>,
}

/// The effects of one accepted change on the model.
#[derive(Debug, Default, Clone)]
pub(crate) struct Effects {
    pub(crate) objects: Vec<(Oid, ObjInfo)>,
    pub(crate) writes: Vec<(ObjRef, String, Write)>,
    /// Existing messages the change writes into.
    pub(crate) touched: Vec<MessageId>,
}

/// For each actor, the highest sequence number in some causal past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Clock(Vec<u64>);

impl Clock {
    pub(crate) fn seq(&self, actor: ActorIdx) -> u64 {
        self.0.get(actor as usize).copied().unwrap_or(0)
    }
}

/// The model of one document.
#[derive(Debug, Default, Clone)]
pub(crate) struct Model {
    actors: Vec<ActorId>,
    actor_index: HashMap<ActorId, ActorIdx>,
    nodes: HashMap<ChangeHash, Node>,
    /// Per actor: (hash, max op) of its changes by sequence number (index = seq - 1).
    chains: Vec<Vec<(ChangeHash, u64)>>,
    heads: BTreeSet<ChangeHash>,
    children: HashMap<ChangeHash, Vec<ChangeHash>>,
    objects: HashMap<Oid, ObjInfo>,
    slots: HashMap<(ObjRef, String), Vec<Write>>,
}

impl Model {
    /// Whether the change is applied.
    pub(crate) fn has(&self, hash: &ChangeHash) -> bool {
        self.nodes.contains_key(hash)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub(crate) fn heads(&self) -> &BTreeSet<ChangeHash> {
        &self.heads
    }

    /// The index of a known actor.
    pub(crate) fn actor(&self, actor: &ActorId) -> Option<ActorIdx> {
        self.actor_index.get(actor).copied()
    }

    pub(crate) fn actor_id(&self, idx: ActorIdx) -> Option<&ActorId> {
        self.actors.get(idx as usize)
    }

    /// The author (public key) of a known actor.
    pub(crate) fn author(&self, idx: ActorIdx) -> Option<PublicKey> {
        self.actor_id(idx).and_then(author_of)
    }

    /// The index of `actor`, added to the table if new.
    pub(crate) fn intern(&mut self, actor: &ActorId) -> ActorIdx {
        if let Some(idx) = self.actor_index.get(actor) {
            return *idx;
        }
        let idx = self.actors.len() as ActorIdx;
        self.actors.push(actor.clone());
        self.actor_index.insert(actor.clone(), idx);
        self.chains.push(Vec::new());
        idx
    }

    /// The change `actor` wrote with sequence number `seq`, if held.
    pub(crate) fn slot(&self, actor: ActorIdx, seq: u64) -> Option<ChangeHash> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.chains.get(actor as usize)?.get(index).map(|(h, _)| *h)
    }

    /// Every change of `actor`, in order of sequence number.
    pub(crate) fn chain(&self, actor: ActorIdx) -> impl Iterator<Item = &ChangeHash> {
        self.chains
            .get(actor as usize)
            .into_iter()
            .flatten()
            .map(|(h, _)| h)
    }

    /// Number of actors known.
    pub(crate) fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// The highest op counter in the causal past of `deps` (which must be held).
    pub(crate) fn max_op_of(&self, deps: &[ChangeHash]) -> u64 {
        // Every change's ops are numbered above all of its causal past, so the
        // maximum over the dependencies is the maximum over their whole past.
        deps.iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|n| n.max_op)
            .max()
            .unwrap_or(0)
    }

    /// The clock of the causal past of `deps` (which must be held).
    ///
    /// Found from the other end: the past of `deps` is everything held but
    /// the changes that are neither among `deps` nor an ancestor of one
    /// (*outside*). A change is outside exactly when it is not in `deps` and
    /// every child of it is outside, so they are found from the heads down,
    /// newest first (by last op counter, which grows along every dependency),
    /// looking only at parents of changes found outside. Each actor's changes
    /// in a past form a prefix of its chain, so the outside ones are a
    /// suffix: the clock is the chain lengths less those. The cost is what is
    /// concurrent to `deps`, not the history before it (a walk of the whole
    /// past was 12 % of all CPU in a 20-member group with 4 writers).
    pub(crate) fn clock_of(&self, deps: &[ChangeHash]) -> Clock {
        let mut clock: Vec<u64> = self.chains.iter().map(|c| c.len() as u64).collect();
        let is_dep = |hash: &ChangeHash| deps.contains(hash);
        let mut queue: BinaryHeap<(u64, ChangeHash)> = self
            .heads
            .iter()
            .filter(|h| !is_dep(h))
            .filter_map(|h| self.nodes.get(h).map(|n| (n.max_op, *h)))
            .collect();
        let mut outside: HashSet<ChangeHash> = HashSet::new();
        let mut judged: HashSet<ChangeHash> = HashSet::new();
        while let Some((_, hash)) = queue.pop() {
            if !judged.insert(hash) || is_dep(&hash) {
                continue;
            }
            let children_outside = self
                .children
                .get(&hash)
                .is_none_or(|children| children.iter().all(|c| outside.contains(c)));
            if !children_outside {
                continue;
            }
            let Some(node) = self.nodes.get(&hash) else {
                continue;
            };
            outside.insert(hash);
            if let Some(seq) = clock.get_mut(node.actor as usize) {
                *seq = seq.saturating_sub(1);
            }
            queue.extend(
                node.deps
                    .iter()
                    .filter(|d| !judged.contains(d))
                    .filter_map(|d| self.nodes.get(d).map(|n| (n.max_op, *d))),
            );
        }
        Clock(clock)
    }

    /// [`Model::clock_of`] by walking the whole past of `deps`: the
    /// definition, to test the fast way against.
    #[cfg(test)]
    fn clock_by_walk(&self, deps: &[ChangeHash]) -> Clock {
        let mut clock = vec![0u64; self.actors.len()];
        let mut seen: HashSet<ChangeHash> = HashSet::new();
        let mut stack: Vec<ChangeHash> = deps.to_vec();
        while let Some(hash) = stack.pop() {
            if !seen.insert(hash) {
                continue;
            }
            let Some(node) = self.nodes.get(&hash) else {
                continue;
            };
            let slot = &mut clock[node.actor as usize];
            if node.seq > *slot {
                *slot = node.seq;
            }
            stack.extend(node.deps.iter().filter(|d| !seen.contains(d)));
        }
        Clock(clock)
    }

    /// Whether the op `id` lies in the causal past a clock describes.
    pub(crate) fn in_past(&self, id: Oid, clock: &Clock) -> bool {
        let seq = clock.seq(id.actor);
        if seq == 0 || id.counter == 0 {
            return false;
        }
        self.chains
            .get(id.actor as usize)
            .and_then(|c| c.get(seq as usize - 1))
            .is_some_and(|(_, max_op)| id.counter <= *max_op)
    }

    /// The change that wrote op `id`, if held.
    pub(crate) fn change_of_op(&self, id: Oid) -> Option<ChangeHash> {
        let chain = self.chains.get(id.actor as usize)?;
        let at = chain.partition_point(|(_, max_op)| *max_op < id.counter);
        chain.get(at).map(|(h, _)| *h)
    }

    pub(crate) fn object(&self, id: Oid) -> Option<&ObjInfo> {
        self.objects.get(&id)
    }

    /// The writes ever made to a tracked key.
    pub(crate) fn writes(&self, obj: ObjRef, key: &str) -> &[Write] {
        // A borrowed (ObjRef, &str) lookup would need a custom key type; the
        // allocation is small and only on judged ops.
        self.slots
            .get(&(obj, key.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The writes to a tracked key that are visible in the causal past a
    /// clock describes: in that past, not deletions, and not overwritten by
    /// another write in that past.
    pub(crate) fn visible(&self, obj: ObjRef, key: &str, clock: &Clock) -> Vec<Oid> {
        let writes = self.writes(obj, key);
        let in_past: Vec<&Write> = writes
            .iter()
            .filter(|w| self.in_past(w.id, clock))
            .collect();
        in_past
            .iter()
            .filter(|w| !w.delete)
            .filter(|w| !in_past.iter().any(|other| other.pred.contains(&w.id)))
            .map(|w| w.id)
            .collect()
    }

    /// Records an accepted change. Its dependencies must be held and its
    /// sequence number must be the next of its actor.
    pub(crate) fn insert(&mut self, hash: ChangeHash, node: Node, effects: Effects) {
        for dep in &node.deps {
            self.heads.remove(dep);
            self.children.entry(*dep).or_default().push(hash);
        }
        self.heads.insert(hash);
        if let Some(chain) = self.chains.get_mut(node.actor as usize) {
            // `clock_of` relies on it: an actor's changes form one chain.
            debug_assert_eq!(
                node.seq,
                chain.len() as u64 + 1,
                "not the actor's next change"
            );
            chain.push((hash, node.max_op));
        }
        for (id, info) in effects.objects {
            self.objects.insert(id, info);
        }
        for (obj, key, write) in effects.writes {
            self.slots.entry((obj, key)).or_default().push(write);
        }
        self.nodes.insert(hash, node);
    }

    /// `hashes` and everything that depends on them, among held changes.
    pub(crate) fn with_descendants(&self, hashes: &[ChangeHash]) -> HashSet<ChangeHash> {
        let mut out = HashSet::new();
        let mut stack: Vec<ChangeHash> = hashes.to_vec();
        while let Some(hash) = stack.pop() {
            if !out.insert(hash) {
                continue;
            }
            if let Some(children) = self.children.get(&hash) {
                stack.extend(children.iter().filter(|c| !out.contains(c)));
            }
        }
        out.retain(|h| self.nodes.contains_key(h));
        out
    }

    /// The held changes in an order where each comes after its dependencies.
    pub(crate) fn causal_order(&self) -> Vec<ChangeHash> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut done: HashSet<ChangeHash> = HashSet::with_capacity(self.nodes.len());
        let mut roots: Vec<ChangeHash> = self.nodes.keys().copied().collect();
        roots.sort();
        for root in roots {
            let mut stack = vec![(root, false)];
            while let Some((hash, expanded)) = stack.pop() {
                if expanded {
                    if done.insert(hash) {
                        order.push(hash);
                    }
                    continue;
                }
                if done.contains(&hash) {
                    continue;
                }
                let Some(node) = self.nodes.get(&hash) else {
                    continue;
                };
                stack.push((hash, true));
                for dep in &node.deps {
                    if !done.contains(dep) {
                        stack.push((*dep, false));
                    }
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn hash(n: usize) -> ChangeHash {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        automerge::ChangeHash(bytes).into()
    }

    /// A random history as replicas make one: each change names its actor's
    /// previous change and some others (concurrent writers, merges), and
    /// numbers its ops above everything it depends on.
    fn random_history(rng: &mut ChaCha8Rng, actors: usize, changes: usize) -> Model {
        let mut model = Model::default();
        let ids: Vec<ActorId> = (0..actors)
            .map(|a| ActorId::from(vec![a as u8 + 1; 40]))
            .collect();
        let mut last_of: Vec<Option<ChangeHash>> = vec![None; actors];
        let mut all: Vec<ChangeHash> = Vec::new();
        for n in 0..changes {
            let a = rng.gen_range(0..actors);
            let actor = model.intern(&ids[a]);
            let mut deps: Vec<ChangeHash> = last_of[a].into_iter().collect();
            // Mostly recent changes, as a writer that is a little behind.
            for _ in 0..rng.gen_range(0..3) {
                if all.is_empty() {
                    break;
                }
                let back = rng.gen_range(0..all.len().min(12));
                let dep = all[all.len() - 1 - back];
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
            let seq = model.chains[actor as usize].len() as u64 + 1;
            let max_op = model.max_op_of(&deps) + rng.gen_range(1..4);
            let h = hash(n);
            model.insert(
                h,
                Node {
                    actor,
                    seq,
                    max_op,
                    deps,
                },
                Effects::default(),
            );
            last_of[a] = Some(h);
            all.push(h);
        }
        model
    }

    #[test]
    fn the_clock_of_any_dependencies_is_that_of_their_whole_past() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..40 {
            let model = random_history(&mut rng, 1 + round % 6, 20 + round * 5);
            let held: Vec<ChangeHash> = model.nodes.keys().copied().collect();
            for _ in 0..50 {
                let mut deps = Vec::new();
                for _ in 0..rng.gen_range(0..4) {
                    let dep = held[rng.gen_range(0..held.len())];
                    if !deps.contains(&dep) {
                        deps.push(dep);
                    }
                }
                assert_eq!(
                    model.clock_of(&deps),
                    model.clock_by_walk(&deps),
                    "round {round}, deps {deps:?}"
                );
            }
            let heads: Vec<ChangeHash> = model.heads().iter().copied().collect();
            assert_eq!(model.clock_of(&heads), model.clock_by_walk(&heads));
        }
    }
}

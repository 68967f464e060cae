//! Who may do what in a group: the group's state resolved from the graph of
//! its metadata changes, with **strong removal**.
//!
//! Automerge's map semantics alone would let a removed admin stay admin: a
//! change it bases on heads from before its removal is concurrent with the
//! removal, and a put concurrent with a delete survives. So the group's state
//! is not read from the Automerge document; it is computed here from the
//! changes' actions, deterministically from the set of changes alone (every
//! replica holding the same changes computes the same state), following
//! p2panda-auth's strong-remove rules:
//!
//! 1. Changes are processed in a total order: causal order, concurrent
//!    changes by hash.
//! 2. A **removal** (an admin deleting a member, or a member leaving) or a
//!    **demotion** (an admin setting another admin's role to member) that was
//!    allowed in that order is a *candidate*. A candidate made by someone
//!    whom another, concurrent candidate removes or demotes is void — unless
//!    the two are part of a cycle of removals (A removes B while B removes A,
//!    or longer cycles): then they all stand, and everyone in the cycle is out.
//! 3. For every standing removal of X, every other change by X that is not in
//!    the removal's causal past (concurrent with it, or after it without a
//!    re-add) is void: it stays in the document, but has no effect. For a
//!    standing demotion of X, X's concurrent changes that needed admin rights
//!    are void.
//! 4. A put of a member's role concurrent with a standing removal of that
//!    member has no effect (remove wins over a concurrent re-add; a re-add made
//!    after seeing the removal works).
//! 5. Each remaining change takes effect if its author is allowed to make it
//!    in the state so far; a later put of the same field wins.
//!
//! If no admin remains (concurrent demotions), the member with the smallest key
//! acts as admin, the same on every replica.
//!
//! A removal also carries the removed member's *cut*: for each history
//! segment and each of the member's actors, the last change of theirs the
//! remover had seen. A history change by the removed member beyond the cut
//! whose metadata heads do not include the removal is void too (hidden), so a
//! removed member cannot write into the group by pretending it has not seen
//! its removal.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{
    ids::{ChangeHash, PublicKey},
    role::Role,
    signed::SegmentIndex,
};

/// Largest encoded cut accepted in a removal, in bytes.
pub(crate) const MAX_CUT_BYTES: usize = 64 * 1024;

/// What a removed member had written, as the remover saw it: per segment and
/// actor, the last sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cut(pub(crate) Vec<CutEntry>);

/// One actor's last change in one segment, as the remover saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CutEntry {
    pub(crate) segment: SegmentIndex,
    #[serde(with = "serde_bytes")]
    pub(crate) actor: Vec<u8>,
    pub(crate) seq: u64,
}

impl Cut {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing CBOR into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_CUT_BYTES {
            return None;
        }
        ciborium::from_reader(bytes).ok()
    }

    /// The last sequence number of `actor` in `segment` the remover had seen.
    pub(crate) fn seen(&self, segment: SegmentIndex, actor: &[u8]) -> u64 {
        self.0
            .iter()
            .filter(|e| e.segment == segment && e.actor.as_slice() == actor)
            .map(|e| e.seq)
            .max()
            .unwrap_or(0)
    }
}

/// One effect a metadata change asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaAction {
    Name(String),
    Role(PublicKey, Role),
    Remove(PublicKey),
    AddedBy(PublicKey, PublicKey),
    Joined(PublicKey, SegmentIndex),
    History(bool),
    Cut(PublicKey, Cut),
}

/// A metadata change as the resolver sees it.
#[derive(Debug, Clone)]
pub(crate) struct MetaEntry {
    pub(crate) author: PublicKey,
    pub(crate) deps: Vec<ChangeHash>,
    /// The group's first change (only the creator writes one).
    pub(crate) genesis: bool,
    pub(crate) actions: Vec<MetaAction>,
}

/// A member as the resolved state has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberState {
    pub(crate) role: Role,
    pub(crate) added_by: Option<PublicKey>,
    pub(crate) joined: SegmentIndex,
}

/// A group's resolved state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    pub(crate) started: bool,
    pub(crate) name: String,
    pub(crate) members: BTreeMap<PublicKey, MemberState>,
    pub(crate) history_for_new_members: bool,
    /// Set once resolved: the member acting as admin because none is left.
    fallback_admin: Option<PublicKey>,
}

impl GroupState {
    /// Members and roles, with the smallest key acting as admin when no admin is left.
    pub(crate) fn roles(&self) -> BTreeMap<PublicKey, Role> {
        let mut roles: BTreeMap<PublicKey, Role> =
            self.members.iter().map(|(k, m)| (*k, m.role)).collect();
        if !roles.values().any(|r| *r == Role::Admin) {
            if let Some(first) = roles.values_mut().next() {
                *first = Role::Admin;
            }
        }
        roles
    }

    /// Records who acts as admin when no admin is left (call once resolved).
    fn finish(&mut self) {
        self.fallback_admin = if self.members.values().any(|m| m.role == Role::Admin) {
            None
        } else {
            self.members.keys().next().copied()
        };
    }

    /// A resolved state's role of `key` (with the fallback admin).
    pub(crate) fn role_of(&self, key: &PublicKey) -> Option<Role> {
        let role = self.members.get(key)?.role;
        if self.fallback_admin == Some(*key) {
            return Some(Role::Admin);
        }
        Some(role)
    }

    fn role(&self, key: &PublicKey) -> Option<Role> {
        let role = self.members.get(key)?.role;
        if role == Role::Member && !self.members.values().any(|m| m.role == Role::Admin) {
            // The fallback admin: the smallest key.
            return self
                .members
                .keys()
                .next()
                .filter(|k| *k == key)
                .map(|_| Role::Admin)
                .or(Some(role));
        }
        Some(role)
    }

    /// Whether `entry` may take effect in this state, and why not.
    pub(crate) fn allows(&self, entry: &MetaEntry) -> Result<(), &'static str> {
        if entry.genesis {
            return if self.started {
                Err("the group already has its first change")
            } else {
                Ok(())
            };
        }
        if !self.started {
            return Err("no group to change");
        }
        let Some(role) = self.role(&entry.author) else {
            return Err("author is not a member");
        };
        let admin = role == Role::Admin;
        for action in &entry.actions {
            let allowed = match action {
                MetaAction::Remove(key) => admin || *key == entry.author,
                MetaAction::Cut(key, _) => admin || *key == entry.author,
                MetaAction::AddedBy(_, by) => admin && *by == entry.author,
                _ => admin,
            };
            if !allowed {
                return Err("only admins change a group");
            }
        }
        Ok(())
    }

    fn apply(&mut self, entry: &MetaEntry, skip_member: &dyn Fn(&PublicKey) -> bool) {
        if entry.genesis {
            self.started = true;
            self.history_for_new_members = true;
        }
        for action in &entry.actions {
            match action {
                MetaAction::Name(name) => self.name.clone_from(name),
                MetaAction::History(on) => self.history_for_new_members = *on,
                MetaAction::Role(key, role) if !skip_member(key) => {
                    self.members
                        .entry(*key)
                        .and_modify(|m| m.role = *role)
                        .or_insert(MemberState {
                            role: *role,
                            added_by: None,
                            joined: 0,
                        });
                }
                MetaAction::Remove(key) => {
                    self.members.remove(key);
                }
                MetaAction::AddedBy(key, by) if !skip_member(key) => {
                    if let Some(m) = self.members.get_mut(key) {
                        m.added_by = Some(*by);
                    }
                }
                MetaAction::Joined(key, segment) if !skip_member(key) => {
                    if let Some(m) = self.members.get_mut(key) {
                        m.joined = *segment;
                    }
                }
                _ => {}
            }
        }
    }
}

/// A removal that stands after resolution.
#[derive(Debug, Clone)]
pub(crate) struct Removal {
    /// The metadata change that removed them.
    pub(crate) change: ChangeHash,
    pub(crate) member: PublicKey,
    /// What they had written, as the remover saw it (none if not recorded).
    pub(crate) cut: Option<Cut>,
}

/// The outcome of resolving a set of metadata changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolution {
    pub(crate) state: std::sync::Arc<GroupState>,
    /// Removals (not demotions) that stand.
    pub(crate) removals: Vec<Removal>,
}

/// The causal order of a downward-closed set of changes, with ancestor sets.
struct Dag {
    order: Vec<ChangeHash>,
    /// ancestors[i]: bit set over positions of the causal past of order[i].
    ancestors: Vec<Vec<u64>>,
}

impl Dag {
    fn new(entries: &HashMap<ChangeHash, MetaEntry>) -> Self {
        // Kahn's algorithm; among ready changes the smallest hash goes first.
        let mut waiting: HashMap<ChangeHash, usize> = HashMap::new();
        let mut children: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for (hash, entry) in entries {
            let deps = entry
                .deps
                .iter()
                .filter(|d| entries.contains_key(d))
                .count();
            for dep in entry.deps.iter().filter(|d| entries.contains_key(d)) {
                children.entry(*dep).or_default().push(*hash);
            }
            if deps == 0 {
                ready.push(std::cmp::Reverse(*hash));
            } else {
                waiting.insert(*hash, deps);
            }
        }
        let mut order = Vec::with_capacity(entries.len());
        while let Some(std::cmp::Reverse(hash)) = ready.pop() {
            order.push(hash);
            for child in children.get(&hash).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        waiting.remove(child);
                        ready.push(std::cmp::Reverse(*child));
                    }
                }
            }
        }
        let position: HashMap<ChangeHash, usize> =
            order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let words = order.len().div_ceil(64);
        let mut ancestors: Vec<Vec<u64>> = Vec::with_capacity(order.len());
        for hash in &order {
            let mut set = vec![0u64; words];
            for dep in entries[hash].deps.iter() {
                if let Some(&p) = position.get(dep) {
                    set[p / 64] |= 1 << (p % 64);
                    for (w, bits) in set.iter_mut().zip(&ancestors[p]) {
                        *w |= bits;
                    }
                }
            }
            ancestors.push(set);
        }
        Self { order, ancestors }
    }

    /// Whether position `a` is in the causal past of position `b`.
    fn precedes(&self, a: usize, b: usize) -> bool {
        self.ancestors[b]
            .get(a / 64)
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }

    fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.precedes(a, b) && !self.precedes(b, a)
    }
}

struct Candidate {
    at: usize,
    by: PublicKey,
    member: PublicKey,
    demotion: bool,
}

/// Resolves the group state of a downward-closed set of metadata changes.
pub(crate) fn resolve(entries: &HashMap<ChangeHash, MetaEntry>) -> Resolution {
    let dag = Dag::new(entries);
    let entry = |i: usize| &entries[&dag.order[i]];

    // Candidates: every removal and demotion held. Each held change was
    // allowed in the state at its own dependencies when it was accepted.
    let mut candidates: Vec<Candidate> = Vec::new();
    for i in 0..dag.order.len() {
        let e = entry(i);
        for action in &e.actions {
            let (member, demotion) = match action {
                MetaAction::Remove(member) => (*member, false),
                MetaAction::Role(member, Role::Member) if *member != e.author => (*member, true),
                _ => continue,
            };
            candidates.push(Candidate {
                at: i,
                by: e.author,
                member,
                demotion,
            });
        }
    }

    // Void candidates made by someone a concurrent candidate removes or
    // demotes, unless both lie on a cycle of removals.
    let removes: HashMap<PublicKey, Vec<PublicKey>> =
        candidates.iter().fold(HashMap::new(), |mut acc, c| {
            acc.entry(c.by).or_default().push(c.member);
            acc
        });
    let reaches = |from: PublicKey, to: PublicKey| -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(k) = stack.pop() {
            if k == to {
                return true;
            }
            if seen.insert(k) {
                stack.extend(removes.get(&k).into_iter().flatten());
            }
        }
        false
    };
    let void_candidate: Vec<bool> = candidates
        .iter()
        .map(|c| {
            let self_leave = !c.demotion && c.by == c.member;
            !self_leave
                && candidates.iter().any(|other| {
                    other.member == c.by
                        && dag.concurrent(c.at, other.at)
                        && !reaches(c.member, other.by)
                })
        })
        .collect();
    let mut void: HashSet<usize> = candidates
        .iter()
        .zip(&void_candidate)
        .filter(|(_, v)| **v)
        .map(|(c, _)| c.at)
        .collect();
    let standing: Vec<&Candidate> = candidates
        .iter()
        .zip(&void_candidate)
        .filter(|(c, v)| !**v && !void.contains(&c.at))
        .map(|(c, _)| c)
        .collect();

    // The resolved state.
    let standing_at: HashSet<usize> = standing.iter().map(|s| s.at).collect();
    let mut state = GroupState::default();
    for i in 0..dag.order.len() {
        if void.contains(&i) {
            continue;
        }
        let e = entry(i);
        if standing_at.contains(&i) {
            // A standing removal takes effect even when its author was
            // removed concurrently (a cycle of removals: all of them stand).
            let removed_concurrently = |_: &PublicKey| false;
            state.apply(e, &removed_concurrently);
            continue;
        }
        let needs_admin = !e.genesis
            && e.actions.iter().any(|a| match a {
                MetaAction::Remove(k) | MetaAction::Cut(k, _) => *k != e.author,
                _ => true,
            });
        // After a removal (or demotion) the author's state already says no,
        // unless they were added (or promoted) again since.
        let voided = standing.iter().any(|s| {
            s.member == e.author && dag.concurrent(i, s.at) && (!s.demotion || needs_admin)
        });
        if voided || state.allows(e).is_err() {
            void.insert(i);
            continue;
        }
        let removed_concurrently = |member: &PublicKey| {
            standing
                .iter()
                .any(|s| !s.demotion && s.member == *member && dag.concurrent(s.at, i))
        };
        state.apply(e, &removed_concurrently);
    }

    let removals = standing
        .iter()
        .filter(|s| !s.demotion && !void.contains(&s.at))
        .map(|s| Removal {
            change: dag.order[s.at],
            member: s.member,
            cut: entry(s.at).actions.iter().find_map(|a| match a {
                MetaAction::Cut(k, cut) if *k == s.member => Some(cut.clone()),
                _ => None,
            }),
        })
        .collect();
    state.finish();
    Resolution {
        state: std::sync::Arc::new(state),
        removals,
    }
}

/// The causal past of `heads` (included) among `entries`.
pub(crate) fn past_of(
    entries: &HashMap<ChangeHash, MetaEntry>,
    heads: &[ChangeHash],
) -> HashMap<ChangeHash, MetaEntry> {
    let mut out: HashMap<ChangeHash, MetaEntry> = HashMap::new();
    let mut stack: Vec<ChangeHash> = heads.to_vec();
    while let Some(hash) = stack.pop() {
        if out.contains_key(&hash) {
            continue;
        }
        if let Some(entry) = entries.get(&hash) {
            stack.extend(entry.deps.iter().copied());
            out.insert(hash, entry.clone());
        }
    }
    out
}

/// Whether `change` is in the causal past of `heads` (or one of them).
pub(crate) fn in_past(
    entries: &HashMap<ChangeHash, MetaEntry>,
    change: &ChangeHash,
    heads: &[ChangeHash],
) -> bool {
    let mut seen = HashSet::new();
    let mut stack: Vec<ChangeHash> = heads.to_vec();
    while let Some(hash) = stack.pop() {
        if hash == *change {
            return true;
        }
        if seen.insert(hash) {
            if let Some(entry) = entries.get(&hash) {
                stack.extend(entry.deps.iter().copied());
            }
        }
    }
    false
}

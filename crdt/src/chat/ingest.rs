//! Receiving: verifying, judging and applying changes, deferral, forks,
//! containment and void history (see the crate docs and ARCHITECTURE.md).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    panic::{catch_unwind, AssertUnwindSafe},
};

use super::{ChatKind, ChatReplica, Ingested, Mode, RejectReason, Rejected, REFUSED_KEPT};
use crate::{
    authority::{self, MetaEntry},
    ids::{ChangeHash, MessageId, PublicKey},
    meta::{check_meta, MetaSchema, MAX_SEGMENT},
    model::{Effects, Model, Node, ObjRef},
    role::Role,
    rules::{check_history, HistorySchema, RuleViolation},
    segment::Segment,
    signed::{
        SegmentIndex, SignedChange, UncheckedChange, VerifiedChange, VerifyError, META_SEGMENT,
    },
    structure::{shape, Problem, Shaped},
};

/// Batches at least this large are verified on several threads.
const PARALLEL_VERIFY_FROM: usize = 64;
/// Most threads one batch is verified on.
const MAX_VERIFY_THREADS: usize = 4;

/// Checks each change's signature, in order: a large batch (a page of
/// mail, a sync) spread over the machine's cores, since the signature
/// checks are most of a batch's cost and need nothing but the change.
fn verify_all(mut changes: Vec<UncheckedChange>) -> Vec<Result<VerifiedChange, VerifyError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_VERIFY_THREADS);
    if changes.len() < PARALLEL_VERIFY_FROM || threads < 2 {
        return changes.into_iter().map(UncheckedChange::verify).collect();
    }
    let chunk = changes.len().div_ceil(threads);
    let mut parts = Vec::new();
    while !changes.is_empty() {
        let rest = changes.split_off(chunk.min(changes.len()));
        parts.push(std::mem::replace(&mut changes, rest));
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let len = part.len();
                let handle = scope.spawn(move || {
                    part.into_iter()
                        .map(UncheckedChange::verify)
                        .collect::<Vec<_>>()
                });
                (len, handle)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(len, handle)| {
                // `verify` contains the parser's panics; should anything
                // else panic, that part is refused, not the node.
                handle.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(VerifyError::Malformed("verification panicked".into())))
                        .collect()
                })
            })
            .collect()
    })
}

/// A change that passed every check, with what applying it does.
pub(super) struct Accepted {
    shaped: Shaped,
    effects: Effects,
    entry: Option<MetaEntry>,
}

pub(super) enum Verdict {
    Accept(Box<Accepted>),
    /// Dependencies (or the metadata it names, or the previous segment)
    /// are missing: judge again when they arrive.
    Defer,
    /// Another change of its actor holds its sequence number.
    Fork(ChangeHash),
    Reject(RejectReason),
}

impl ChatReplica {
    // ----- receiving --------------------------------------------------------

    /// Whether this replica holds the change (applied to its documents).
    pub fn holds(&self, segment: SegmentIndex, hash: &ChangeHash) -> bool {
        self.segments
            .get(&segment)
            .is_some_and(|s| s.signed.contains_key(hash))
    }

    /// The signature of the held change `hash` of `segment`, if held.
    fn held_copy(&self, segment: SegmentIndex, hash: &ChangeHash) -> Option<&[u8; 64]> {
        Some(&self.segments.get(&segment)?.signed.get(hash)?.signature)
    }

    /// The signature of the change `hash` waiting for its dependencies, if any.
    fn waiting_copy(&self, hash: &ChangeHash) -> Option<&[u8; 64]> {
        Some(&self.deferred.changes.get(hash)?.0.signed.signature)
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
        // Expired first, so a copy of a change that waits is only skipped
        // below while the waiting copy is still there to be judged.
        self.deferred.expire(now_ms);
        self.deferred_since
            .retain(|h, _| self.deferred.changes.contains_key(h));
        let mut out = Ingested::default();
        let mut verified = Vec::new();
        let mut queued = HashSet::new();
        let mut unchecked = Vec::new();
        // What this call was given, as opposed to what waited from before.
        let mut incoming = HashSet::new();
        // Decoding tells a change's hash; an exact copy of a change held or
        // waiting already (same signature bytes: Ed25519 signs
        // deterministically, so an honest copy is byte for byte the same),
        // one refused before, or one repeated in the batch costs no
        // signature check (most of a sync's answer during a burst). A copy
        // under another signature is checked like a new change.
        for signed in changes {
            if signed.chat != self.id {
                out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: RejectReason::WrongChat(signed.chat),
                });
                continue;
            }
            match signed.decode_unchecked() {
                Ok(c) if self.held_copy(c.segment(), &c.hash()) == Some(&signed.signature) => {
                    out.duplicates.push(c.hash());
                }
                // The copy waiting is judged again below; this one would be dropped.
                Ok(c) if self.waiting_copy(&c.hash()) == Some(&signed.signature) => {
                    incoming.insert(c.hash());
                }
                Ok(c) if self.refused.contains_key(&c.hash()) => {
                    let reason = self.refused[&c.hash()].clone();
                    out.rejected.push(Rejected {
                        hash: Some(c.hash()),
                        author: Some(c.author()),
                        reason: RejectReason::Again(Box::new(reason)),
                    });
                }
                Ok(c) if !queued.insert(c.hash()) => {}
                Ok(c) => unchecked.push(c),
                Err(e) => out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: e.into(),
                }),
            }
        }
        for checked in verify_all(unchecked) {
            match checked {
                Ok(v) if self.holds(v.signed.segment, &v.hash) => out.duplicates.push(v.hash),
                Ok(v) => {
                    incoming.insert(v.hash);
                    verified.push(v);
                }
                Err(e) => out.rejected.push(Rejected {
                    hash: None,
                    author: None,
                    reason: e.into(),
                }),
            }
        }
        self.ingest(verified, Mode::Remote, now_ms, &incoming, &mut out);
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
        self.ingest(decoded, Mode::Stored, 0, &HashSet::new(), &mut out);
        // Loaded changes are stored already; only report what to delete.
        out.stored.clear();
        out.new_messages.clear();
        out.updated_messages.clear();
        out
    }

    /// Judges and applies verified changes, retrying deferred ones. Of the
    /// changes left waiting, `out.deferred` names those in `incoming` (what
    /// the caller was given), not those that waited already.
    pub(super) fn ingest(
        &mut self,
        changes: Vec<VerifiedChange>,
        mode: Mode,
        now_ms: i64,
        incoming: &HashSet<ChangeHash>,
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
                        if mode == Mode::Remote {
                            if let Some(s) = self.segments.get_mut(&segment) {
                                s.arrived(change.hash, now_ms);
                            }
                        }
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
                            Ok(()) if incoming.contains(&hash) => out.deferred.push(hash),
                            Ok(()) => {}
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
    pub(super) fn judge(&self, change: &VerifiedChange) -> Verdict {
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

    pub(super) fn judge_meta(&self, change: &VerifiedChange) -> Verdict {
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
    pub(super) fn insert(&mut self, change: &VerifiedChange, accepted: Accepted) {
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
    pub(super) fn rebuild_doc(
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
        self.ingest(keep, Mode::Stored, 0, &HashSet::new(), &mut scratch);
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
    pub(super) fn recompute_voids(&mut self) {
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

#[cfg(test)]
mod verify_tests {
    use super::*;
    use crate::Identity;

    #[test]
    fn a_large_batch_is_verified_in_order_like_a_small_one() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let mut chat = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
        let mut changes: Vec<SignedChange> = (0..PARALLEL_VERIFY_FROM * 3 + 5)
            .map(|i| {
                chat.write_message(&alice, &format!("message {i}"), None, 1_000 + i as i64)
                    .unwrap()
                    .change
            })
            .collect();
        // Forged signatures scattered over the threads' parts.
        for i in [0, 70, 131, changes.len() - 1] {
            changes[i].signature[0] ^= 1;
        }
        let one_by_one: Vec<_> = changes.iter().map(SignedChange::verify).collect();
        let together = verify_all(
            changes
                .iter()
                .map(|c| c.decode_unchecked().unwrap())
                .collect(),
        );
        assert_eq!(together.len(), changes.len());
        for (i, (a, b)) in one_by_one.iter().zip(&together).enumerate() {
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a.hash, b.hash, "change {i}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "change {i}"),
                _ => panic!("change {i}: {a:?} one by one, {b:?} together"),
            }
        }
        assert_eq!(together.iter().filter(|r| r.is_err()).count(), 4);
    }
}

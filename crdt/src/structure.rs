//! Structural validation: proves a change is one Automerge 0.12 can apply
//! without refusing the batch or panicking, judged only against the causal
//! past its dependencies name (so every replica reaches the same verdict).
//!
//! Automerge trusts a change's header and op references: a sequence number
//! that skips, an op on an object that does not exist, or a predecessor naming
//! an actor the document has never seen makes it panic, and an (actor, seq)
//! pair that is already held with other content makes it refuse the whole
//! batch. A change passes only if it has exactly the shape an honest
//! Automerge writer produces from the document at its dependencies:
//! - no extra bytes (no author footer), 1 to [`MAX_OPS`] operations,
//!   distinct dependencies, all held (the commit message, which binds the
//!   envelope's segment and metadata heads, is checked when verifying);
//! - sequence number = its actor's last one in that past + 1 (never a gap,
//!   never a reuse), start op = the highest op counter in that past + 1
//!   (history: up to [`crate::rules::MAX_START_OP_SLACK`] above that, as a
//!   new message is built on its author's own last change only);
//! - every other actor it names appears in that past;
//! - every operation is a map put, a map delete or the creation of a map the
//!   schema expects at that key, on the root or on an object created in that
//!   past (or earlier in the same change), with a string key;
//! - predecessors are exactly the values visible at that key in that past
//!   (empty on objects the change creates), and no key is written twice.

use std::{
    collections::HashSet,
    panic::{catch_unwind, AssertUnwindSafe},
};

use automerge::{
    legacy::{Key, ObjectId, OpId, OpType},
    ActorId, ExpandedChange, ObjType, ScalarValue,
};

use crate::{
    identity::author_of,
    ids::{ChangeHash, PublicKey},
    model::{ActorIdx, Clock, Model, ObjKind, ObjRef, Oid},
};

/// Most operations one change may carry (a 1,024-member group's genesis
/// has about 3,100).
pub(crate) const MAX_OPS: usize = 16_384;
/// Longest map key, in bytes (keys are hex ids and field names).
pub(crate) const MAX_KEY_BYTES: usize = 128;

/// What a document's schema says about its objects, for the structural check.
pub(crate) trait Schema {
    /// The kind of a map created at `key` of an object of kind `parent`
    /// (`None` = the root), or `None` if no map may be created there.
    fn child_kind(&self, parent: Option<ObjKind>, key: &str) -> Option<ObjKind>;
    /// Whether `key` of an object of kind `parent` may be written after the
    /// object was created (those writes are tracked by the model).
    fn tracked(&self, parent: Option<ObjKind>, key: &str) -> bool;
    /// How far above the highest op counter in a change's causal past its
    /// start op may lie (0: exactly one above).
    fn start_op_slack(&self) -> u64 {
        0
    }
}

/// Why a change cannot be applied (yet, or ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A dependency is not held yet: judge again when it arrives.
    MissingDeps,
    /// It can never be applied.
    Malformed(String),
}

fn bad(reason: impl Into<String>) -> Problem {
    Problem::Malformed(reason.into())
}

/// A change's operation, with its references resolved against the model.
#[derive(Debug, Clone)]
pub(crate) struct ShapedOp {
    pub(crate) id: Oid,
    pub(crate) obj: ObjRef,
    /// The kind of the target object (`None` = the root).
    pub(crate) obj_kind: Option<ObjKind>,
    /// Whether the target object is created by this same change.
    pub(crate) obj_created_here: bool,
    pub(crate) key: String,
    pub(crate) action: Action,
    pub(crate) pred: Vec<Oid>,
    /// For a map creation, the kind the schema gives it.
    pub(crate) creates: Option<ObjKind>,
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    MakeMap,
    Put(ScalarValue),
    Delete,
}

/// A change that passed the structural check.
#[derive(Debug, Clone)]
pub(crate) struct Shaped {
    /// The change's actor index (the next free index if the actor is new).
    pub(crate) actor: ActorIdx,
    pub(crate) actor_id: ActorId,
    pub(crate) author: PublicKey,
    pub(crate) seq: u64,
    pub(crate) max_op: u64,
    pub(crate) deps: Vec<ChangeHash>,
    /// The clock of the change's causal past.
    pub(crate) clock: Clock,
    pub(crate) ops: Vec<ShapedOp>,
    /// The change that already holds this actor's sequence number, if any.
    pub(crate) fork: Option<ChangeHash>,
}

/// Expands a change into operations without ever panicking.
pub fn expand(change: &automerge::Change) -> Option<ExpandedChange> {
    // `decode` is documented to panic on inconsistent input; parsing has
    // already validated the change, but a panic must never take the node down.
    catch_unwind(AssertUnwindSafe(|| change.decode())).ok()
}

/// Checks `change` against the model of its document.
pub(crate) fn shape(
    model: &Model,
    change: &automerge::Change,
    schema: &dyn Schema,
) -> Result<Shaped, Problem> {
    if !change.extra_bytes().is_empty() {
        return Err(bad("change carries extra bytes"));
    }
    if change.is_empty() {
        return Err(bad("change has no operations"));
    }
    if change.len() > MAX_OPS {
        return Err(bad(format!("change has more than {MAX_OPS} operations")));
    }
    let author = author_of(change.actor_id()).ok_or_else(|| bad("actor id is not key ‖ epoch"))?;
    let deps: Vec<ChangeHash> = change.deps().iter().map(|d| (*d).into()).collect();
    let unique: HashSet<&ChangeHash> = deps.iter().collect();
    if unique.len() != deps.len() {
        return Err(bad("repeated dependency"));
    }
    if !deps.iter().all(|d| model.has(d)) {
        return Err(Problem::MissingDeps);
    }
    let clock = model.clock_of(&deps);
    let known = model.actor(change.actor_id());
    let actor = known.unwrap_or(model.actor_count() as ActorIdx);
    let seq = change.seq();
    let previous = known.map_or(0, |a| clock.seq(a));
    if seq != previous.saturating_add(1) {
        return Err(bad(format!(
            "sequence number {seq} does not follow {previous}, the actor's last in its past"
        )));
    }
    // Another change already holds this slot: a fork. Judged in full all the
    // same, so that only a change that is valid in every other way can ever
    // compete for the slot.
    let fork = known.and_then(|a| model.slot(a, seq));
    let start_op = change.start_op().get();
    let past_max = model.max_op_of(&deps);
    if start_op <= past_max || start_op - past_max - 1 > schema.start_op_slack() {
        return Err(bad("start op does not follow the ops in its past"));
    }
    let mut others = HashSet::new();
    for other in change.other_actor_ids() {
        if other == change.actor_id() || !others.insert(other) {
            return Err(bad("repeated actor"));
        }
        match model.actor(other) {
            Some(idx) if clock.seq(idx) > 0 => {}
            _ => return Err(bad("names an actor outside its causal past")),
        }
    }
    let expanded = expand(change).ok_or_else(|| bad("operations do not decode"))?;
    if expanded.operations.len() != change.len() {
        return Err(bad("operation count does not match"));
    }
    let resolve = |id: &ActorId| -> Option<ActorIdx> {
        if id == change.actor_id() {
            Some(actor)
        } else {
            model.actor(id).filter(|idx| clock.seq(*idx) > 0)
        }
    };
    let mut ops: Vec<ShapedOp> = Vec::with_capacity(change.len());
    let mut written: HashSet<(ObjRef, String)> = HashSet::new();
    for (i, op) in expanded.operations.into_iter().enumerate() {
        let id = Oid {
            counter: start_op + i as u64,
            actor,
        };
        if op.insert {
            return Err(bad("list insertion"));
        }
        let key = match op.key {
            Key::Map(k) => k.to_string(),
            Key::Seq(_) => return Err(bad("list key")),
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(bad("map key empty or too long"));
        }
        let (obj, obj_kind, obj_created_here) = match &op.obj {
            ObjectId::Root => (ObjRef::Root, None, false),
            ObjectId::Id(OpId(counter, obj_actor)) => {
                let target = Oid {
                    counter: *counter,
                    actor: resolve(obj_actor).ok_or_else(|| bad("unknown object"))?,
                };
                if let Some(made) = ops.iter().find(|o| o.id == target) {
                    let kind = made.creates.ok_or_else(|| bad("target is not an object"))?;
                    (ObjRef::Obj(target), Some(kind), true)
                } else {
                    let info = model
                        .object(target)
                        .filter(|_| model.in_past(target, &clock))
                        .ok_or_else(|| bad("unknown object"))?;
                    (ObjRef::Obj(target), Some(info.kind), false)
                }
            }
        };
        let (action, creates) = match op.action {
            OpType::Make(ObjType::Map) => {
                let kind = schema
                    .child_kind(obj_kind, &key)
                    .ok_or_else(|| bad(format!("no map belongs at {key:?}")))?;
                (Action::MakeMap, Some(kind))
            }
            OpType::Make(_) => return Err(bad("only maps may be created")),
            OpType::Delete => (Action::Delete, None),
            OpType::Put(value) => match value {
                ScalarValue::Str(_)
                | ScalarValue::Int(_)
                | ScalarValue::Uint(_)
                | ScalarValue::Timestamp(_)
                | ScalarValue::Boolean(_)
                | ScalarValue::Bytes(_) => (Action::Put(value), None),
                _ => return Err(bad("value type not allowed")),
            },
            _ => return Err(bad("operation type not allowed")),
        };
        if !written.insert((obj, key.clone())) {
            return Err(bad("a key is written twice in one change"));
        }
        let mut pred = Vec::with_capacity(op.pred.len());
        for p in op.pred.iter() {
            pred.push(Oid {
                counter: p.counter(),
                actor: resolve(p.actor()).ok_or_else(|| bad("predecessor outside its past"))?,
            });
        }
        if obj_created_here {
            if !pred.is_empty() {
                return Err(bad("predecessor on a new object"));
            }
        } else if schema.tracked(obj_kind, &key) {
            let mut visible = model.visible(obj, &key, &clock);
            visible.sort();
            let mut named = pred.clone();
            named.sort();
            named.dedup();
            if named.len() != pred.len() || named != visible {
                return Err(bad(
                    "predecessors are not the values visible at its dependencies",
                ));
            }
        } else {
            return Err(bad(format!("{key:?} cannot be written after creation")));
        }
        if action == Action::Delete && pred.is_empty() {
            return Err(bad("deletes nothing"));
        }
        ops.push(ShapedOp {
            id,
            obj,
            obj_kind,
            obj_created_here,
            key,
            action,
            pred,
            creates,
        });
    }
    Ok(Shaped {
        actor,
        actor_id: change.actor_id().clone(),
        author,
        seq,
        max_op: change.max_op(),
        deps,
        clock,
        ops,
        fork,
    })
}

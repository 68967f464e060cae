//! What a change may do to a chat's history, checked before it is applied.
//!
//! A history segment's root map holds one map per message, keyed by the
//! message id. The rules make authorship unforgeable and messages append-only
//! for everyone but their author:
//! - at the root, a change may only create a new message map under a message id
//!   (no overwrite, no delete: the op must have no predecessors);
//! - inside a message map, only the actor that created that map may write.

use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{
    legacy::{Key, ObjectId, OpType},
    ObjType,
};

use crate::ids::MessageId;

/// A rule a change broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleViolation {
    /// The change could not be expanded into operations.
    #[error("change could not be decoded")]
    Undecodable,
    /// A root operation other than creating a message map.
    #[error("only new message maps may be created at the root")]
    RootWrite,
    /// A root key that is not a message id.
    #[error("root key {0:?} is not a message id")]
    BadMessageKey(String),
    /// A write into a message the change's author did not create.
    #[error("writes into another author's message")]
    ForeignObject,
}

/// Checks every operation of `change` against the history rules.
pub(crate) fn check_history_change(change: &automerge::Change) -> Result<(), RuleViolation> {
    // `decode` is documented to panic on inconsistent input; parsing has already
    // validated the change, but a panic here must never take the node down.
    let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
        .map_err(|_| RuleViolation::Undecodable)?;
    let author = change.actor_id();
    for op in &expanded.operations {
        match &op.obj {
            ObjectId::Root => {
                let creates_map = matches!(op.action, OpType::Make(ObjType::Map));
                if !creates_map || op.insert || !op.pred.is_empty() {
                    return Err(RuleViolation::RootWrite);
                }
                match &op.key {
                    Key::Map(key) if key.parse::<MessageId>().is_ok() => {}
                    Key::Map(key) => return Err(RuleViolation::BadMessageKey(key.to_string())),
                    Key::Seq(_) => return Err(RuleViolation::RootWrite),
                }
            }
            ObjectId::Id(created_by) => {
                if created_by.actor() != author {
                    return Err(RuleViolation::ForeignObject);
                }
            }
        }
    }
    Ok(())
}

//! What a change may do to a chat's history, checked before it is applied.
//!
//! A history segment's root map holds one map per message, keyed by the
//! message id. The rules make authorship unforgeable and messages append-only
//! for everyone but their author:
//! - at the root, a change may only create a new message map under a message id
//!   (no overwrite, no delete: the op must have no predecessors);
//! - inside a message map, only the actor that created it may write (text,
//!   edits, its own deletion), except that an admin may set `deleted`;
//! - inside a message's `reactions` map, each member writes only its own key.
//!
//! The caller guarantees every dependency of the change is already in `doc`,
//! so every object the change touches exists there and the verdict is the
//! same on every replica.

use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{
    legacy::{Key, ObjectId, OpType},
    Automerge, ExpandedChange, ObjType, Prop, ReadDoc, ScalarValue, ROOT,
};

use crate::{
    ids::{MessageId, PublicKey},
    message::{DELETED, MAX_REACTION_BYTES, REACTIONS},
};

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
    /// The author is not a member (in the state the change was made in).
    #[error("author is not a member")]
    NotMember,
    /// The author's role does not allow this.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The change touches an object this replica does not have yet.
    #[error("refers to an unknown object")]
    UnknownObject,
}

/// Expands a change into operations without ever panicking.
pub(crate) fn expand(change: &automerge::Change) -> Result<ExpandedChange, RuleViolation> {
    // `decode` is documented to panic on inconsistent input; parsing has already
    // validated the change, but a panic here must never take the node down.
    catch_unwind(AssertUnwindSafe(|| change.decode())).map_err(|_| RuleViolation::Undecodable)
}

/// Checks every operation of a history change by `author`, whose role allows
/// admin actions when `is_admin`.
pub(crate) fn check_history_change(
    doc: &Automerge,
    change: &automerge::Change,
    is_admin: bool,
) -> Result<(), RuleViolation> {
    let author = change.actor_id();
    let author_key: [u8; 32] = author
        .to_bytes()
        .try_into()
        .map_err(|_| RuleViolation::NotMember)?;
    let author_hex = PublicKey::from_bytes(author_key).to_string();
    for op in &expand(change)?.operations {
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
            ObjectId::Id(created_by) if created_by.actor() == author => {}
            ObjectId::Id(created_by) => {
                let id = format!("{}@{}", created_by.counter(), created_by.actor());
                let obj = doc
                    .import_obj(&id)
                    .map_err(|_| RuleViolation::UnknownObject)?;
                let parent = doc
                    .parents(&obj)
                    .ok()
                    .and_then(|mut p| p.next())
                    .ok_or(RuleViolation::UnknownObject)?;
                let key = match &op.key {
                    Key::Map(k) => k.as_str(),
                    Key::Seq(_) => return Err(RuleViolation::ForeignObject),
                };
                let in_message = parent.obj == ROOT;
                let in_reactions = parent.prop == Prop::Map(REACTIONS.into())
                    && doc
                        .parents(&parent.obj)
                        .ok()
                        .and_then(|mut p| p.next())
                        .is_some_and(|grand| grand.obj == ROOT);
                let allowed = if in_message {
                    // Delete for everyone by an admin.
                    is_admin
                        && key == DELETED
                        && matches!(op.action, OpType::Put(ScalarValue::Boolean(true)))
                } else if in_reactions {
                    key == author_hex
                        && match &op.action {
                            OpType::Put(ScalarValue::Str(s)) => s.len() <= MAX_REACTION_BYTES,
                            OpType::Delete => true,
                            _ => false,
                        }
                } else {
                    false
                };
                if !allowed {
                    return Err(RuleViolation::ForeignObject);
                }
            }
        }
    }
    Ok(())
}

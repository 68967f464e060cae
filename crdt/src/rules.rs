//! What a change may do to a chat's history: the schema of a history segment
//! and who may write where, checked on every change after its structure
//! (`structure.rs`) and before it touches a document.
//!
//! A segment's root map holds one map per message, keyed by the message id:
//! - at the root, a change may only create a message map under an id that
//!   carries its author's tag ([`MessageId::is_by`]) and is not in use in the
//!   change's causal past: a message id is created once, by its author;
//! - a new message has exactly `author` (the signer), `sent_at`, `text`, a
//!   `reactions` map, and optionally `reply_to` and an `attachment` map with
//!   `hash`, `size`, `mime`, `name` and optionally `preview` and `key`
//!   (exactly 32 bytes: the file's key);
//! - afterwards, only its author writes `text` and `edited_at` (not once it is
//!   deleted) and sets `deleted` to true; an admin may set `deleted` to true on
//!   anyone's message; `deleted` can never be set back;
//! - in a message's `reactions` map each member writes only under its own key;
//! - nothing else is ever written.

use automerge::ScalarValue;

use crate::{
    attachment::{MAX_FILE_NAME_BYTES, MAX_MIME_BYTES, MAX_PREVIEW_BYTES},
    file_key::FILE_KEY_BYTES,
    ids::{BlobHash, MessageId, PublicKey},
    message::{self, MAX_REACTION_BYTES, MAX_TEXT_BYTES},
    model::{Effects, Model, ObjInfo, ObjKind, ObjRef, Write},
    structure::{Action, Schema, Shaped, ShapedOp},
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
    /// A root key that is not a message id of the change's author.
    #[error("root key {0:?} is not a message id of the author's")]
    BadMessageKey(String),
    /// The message id is already in use.
    #[error("message id {0} is already in use")]
    MessageIdTaken(String),
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
    /// A field or value the schema does not allow.
    #[error("schema: {0}")]
    Schema(String),
}

fn schema(reason: impl Into<String>) -> RuleViolation {
    RuleViolation::Schema(reason.into())
}

/// The schema of a history segment.
pub(crate) struct HistorySchema;

impl Schema for HistorySchema {
    fn child_kind(&self, parent: Option<ObjKind>, key: &str) -> Option<ObjKind> {
        match (parent, key) {
            (None, _) => Some(ObjKind::Message),
            (Some(ObjKind::Message), message::REACTIONS) => Some(ObjKind::Reactions),
            (Some(ObjKind::Message), crate::attachment::ATTACHMENT) => Some(ObjKind::Attachment),
            _ => None,
        }
    }

    fn tracked(&self, parent: Option<ObjKind>, key: &str) -> bool {
        match parent {
            None => true,
            Some(ObjKind::Message) => {
                matches!(key, message::TEXT | message::EDITED_AT | message::DELETED)
            }
            Some(ObjKind::Reactions) => true,
            _ => false,
        }
    }

    fn start_op_slack(&self) -> u64 {
        MAX_START_OP_SLACK
    }
}

/// How far above its causal past a history change's start op may lie. A new
/// message is built on its author's own last change only (`ops.rs`, lean
/// writes), but Automerge numbers its ops above everything the writer holds:
/// the slack is the ops of the segment outside that past (a full segment of
/// 1,000 messages has about 7,000). Automerge 0.12 keeps op counters in a
/// `u32` and panics beyond it, so the slack is small: each change can move
/// the counters at most 2^16 + its ops up, 65,000 changes from overflow.
pub(crate) const MAX_START_OP_SLACK: u64 = 1 << 16;

/// Parses a canonical (lowercase hex) id: the form every writer uses, so two
/// spellings of one id can never be two keys.
pub(crate) fn canonical<T: std::str::FromStr + std::fmt::Display>(s: &str) -> Option<T> {
    let value: T = s.parse().ok()?;
    (value.to_string() == s).then_some(value)
}

/// Checks every operation of a structurally valid history change by
/// `author` (an admin when `is_admin`), and returns its effects on the model.
pub(crate) fn check_history(
    model: &Model,
    shaped: &Shaped,
    is_admin: bool,
) -> Result<Effects, RuleViolation> {
    let author = shaped.author;
    let author_hex = author.to_string();
    let mut effects = Effects::default();
    let mut new_messages: Vec<(crate::model::Oid, Vec<&str>)> = Vec::new();
    let mut new_attachments: Vec<(crate::model::Oid, Vec<&str>)> = Vec::new();
    for op in &shaped.ops {
        match (op.obj, op.obj_kind) {
            (ObjRef::Root, _) => {
                if op.action != Action::MakeMap {
                    return Err(RuleViolation::RootWrite);
                }
                let id: MessageId = canonical(&op.key)
                    .ok_or_else(|| RuleViolation::BadMessageKey(op.key.clone()))?;
                if !id.is_by(&author) {
                    return Err(RuleViolation::BadMessageKey(op.key.clone()));
                }
                if !op.pred.is_empty() {
                    return Err(RuleViolation::MessageIdTaken(op.key.clone()));
                }
                new_messages.push((op.id, Vec::new()));
            }
            (ObjRef::Obj(obj), Some(ObjKind::Message)) if op.obj_created_here => {
                new_field(op, &author_hex)?;
                if let Some((_, fields)) = new_messages.iter_mut().find(|(m, _)| *m == obj) {
                    fields.push(op.key.as_str());
                }
                if op.creates == Some(ObjKind::Attachment) {
                    new_attachments.push((op.id, Vec::new()));
                }
            }
            (ObjRef::Obj(obj), Some(ObjKind::Message)) => {
                let info = model.object(obj).ok_or(RuleViolation::UnknownObject)?;
                let own = info.creator == author;
                let deleting = op.key == message::DELETED
                    && op.action == Action::Put(ScalarValue::Boolean(true));
                if deleting {
                    if !own && !is_admin {
                        return Err(RuleViolation::ForeignObject);
                    }
                } else {
                    if !own {
                        return Err(RuleViolation::ForeignObject);
                    }
                    match (op.key.as_str(), &op.action) {
                        (message::TEXT, Action::Put(ScalarValue::Str(s)))
                            if s.len() <= MAX_TEXT_BYTES => {}
                        (message::EDITED_AT, Action::Put(ScalarValue::Timestamp(_))) => {}
                        _ => {
                            return Err(schema(format!(
                                "message field {:?} not editable so",
                                op.key
                            )))
                        }
                    }
                    let deleted = model.visible(ObjRef::Obj(obj), message::DELETED, &shaped.clock);
                    if !deleted.is_empty() {
                        return Err(RuleViolation::NotAllowed(
                            "a deleted message cannot be edited",
                        ));
                    }
                }
            }
            (ObjRef::Obj(_), Some(ObjKind::Reactions)) => {
                if op.obj_created_here {
                    return Err(schema("a new message has no reactions"));
                }
                if op.key != author_hex {
                    return Err(RuleViolation::ForeignObject);
                }
                match &op.action {
                    Action::Put(ScalarValue::Str(s))
                        if !s.is_empty() && s.len() <= MAX_REACTION_BYTES => {}
                    Action::Delete => {}
                    _ => return Err(schema("a reaction is 1 to 64 bytes of text")),
                }
            }
            (ObjRef::Obj(obj), Some(ObjKind::Attachment)) if op.obj_created_here => {
                attachment_field(op)?;
                if let Some((_, fields)) = new_attachments.iter_mut().find(|(a, _)| *a == obj) {
                    fields.push(op.key.as_str());
                }
            }
            _ => return Err(RuleViolation::ForeignObject),
        }
        let message = message_of(op, shaped, model);
        if let Some(id) = message.filter(|_| !op.obj_created_here && op.obj != ObjRef::Root) {
            if !effects.touched.contains(&id) {
                effects.touched.push(id);
            }
        }
        record(&mut effects, op, author, &HistorySchema, message);
    }
    for (_, fields) in &new_messages {
        for required in [
            message::AUTHOR,
            message::SENT_AT,
            message::TEXT,
            message::REACTIONS,
        ] {
            if !fields.contains(&required) {
                return Err(schema(format!("a new message needs {required:?}")));
            }
        }
    }
    for (_, fields) in &new_attachments {
        for required in ["hash", "size", "mime", "name"] {
            if !fields.contains(&required) {
                return Err(schema(format!("an attachment needs {required:?}")));
            }
        }
    }
    Ok(effects)
}

/// The message an op creates or writes into.
fn message_of(op: &ShapedOp, shaped: &Shaped, model: &Model) -> Option<MessageId> {
    let obj = match op.obj {
        ObjRef::Root => return op.key.parse().ok(),
        ObjRef::Obj(obj) => obj,
    };
    if let Some(info) = model.object(obj) {
        return info.message;
    }
    // Created earlier in this change: a message map at the root, or a map
    // inside a new message.
    let maker = shaped.ops.iter().find(|o| o.id == obj)?;
    message_of(maker, shaped, model)
}

/// A field of a message created in this change.
fn new_field(op: &ShapedOp, author_hex: &str) -> Result<(), RuleViolation> {
    let ok = match (op.key.as_str(), &op.action) {
        (message::AUTHOR, Action::Put(ScalarValue::Str(s))) => s.as_str() == author_hex,
        (message::SENT_AT, Action::Put(ScalarValue::Timestamp(_))) => true,
        (message::TEXT, Action::Put(ScalarValue::Str(s))) => s.len() <= MAX_TEXT_BYTES,
        (message::REPLY_TO, Action::Put(ScalarValue::Str(s))) => {
            canonical::<MessageId>(s).is_some()
        }
        (message::REACTIONS, Action::MakeMap) => true,
        (crate::attachment::ATTACHMENT, Action::MakeMap) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(schema(format!("message field {:?} not allowed so", op.key)))
    }
}

/// A field of an attachment created in this change.
fn attachment_field(op: &ShapedOp) -> Result<(), RuleViolation> {
    let ok = match (op.key.as_str(), &op.action) {
        ("hash", Action::Put(ScalarValue::Str(s))) => canonical::<BlobHash>(s).is_some(),
        ("size", Action::Put(ScalarValue::Uint(_))) => true,
        ("mime", Action::Put(ScalarValue::Str(s))) => !s.is_empty() && s.len() <= MAX_MIME_BYTES,
        ("name", Action::Put(ScalarValue::Str(s))) => {
            !s.is_empty() && s.len() <= MAX_FILE_NAME_BYTES && !s.contains(['/', '\\', '\0'])
        }
        ("preview", Action::Put(ScalarValue::Bytes(b))) => b.len() <= MAX_PREVIEW_BYTES,
        (crate::attachment::KEY, Action::Put(ScalarValue::Bytes(b))) => b.len() == FILE_KEY_BYTES,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(schema(format!(
            "attachment field {:?} not allowed so",
            op.key
        )))
    }
}

/// Records an accepted op's effects: the object it creates, and its write if
/// the key is tracked.
pub(crate) fn record(
    effects: &mut Effects,
    op: &ShapedOp,
    author: PublicKey,
    schema: &dyn Schema,
    message: Option<MessageId>,
) {
    if let Some(kind) = op.creates {
        effects.objects.push((
            op.id,
            ObjInfo {
                kind,
                creator: author,
                message,
            },
        ));
    }
    if schema.tracked(op.obj_kind, &op.key) {
        effects.writes.push((
            op.obj,
            op.key.clone(),
            Write {
                id: op.id,
                pred: op.pred.clone(),
                delete: op.action == Action::Delete,
            },
        ));
    }
}

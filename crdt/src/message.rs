//! A message as a reader sees it, read back from a history segment.
//!
//! Schema of one message (a map at the segment root, under its id):
//! `author` (hex key), `sent_at` (timestamp ms), `text` (str), `reply_to`
//! (hex message id, optional), `edited_at` (timestamp, after an edit),
//! `deleted` (bool, after a deletion), `reactions` (map: hex key → emoji),
//! `attachment` (map, optional: see [`Attachment`]).

use std::collections::BTreeMap;

use automerge::{ObjId as ExId, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};

use crate::{
    attachment::Attachment,
    ids::{MessageId, PublicKey},
    signed::SegmentIndex,
};

/// Longest message text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest reaction accepted, in bytes (an emoji with modifiers fits easily).
pub const MAX_REACTION_BYTES: usize = 64;

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique within the chat.
    pub id: MessageId,
    /// Who wrote it: the actor that created the message (authenticated).
    pub author: PublicKey,
    /// The author's clock when sent, in milliseconds since the Unix epoch.
    /// Shown to users; never trusted for anything else.
    pub sent_at_ms: i64,
    /// The text (empty once deleted).
    pub text: String,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// When the author last edited it (author's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at_ms: Option<i64>,
    /// Deleted for everyone (by its author or an admin).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// One reaction per member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<PublicKey, String>,
    /// A file attached to it (hidden once deleted). Boxed: most messages
    /// have none, and a message stays small in memory and in events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<Attachment>>,
    /// The history segment holding it.
    pub segment: SegmentIndex,
}

pub(crate) const AUTHOR: &str = "author";
pub(crate) const SENT_AT: &str = "sent_at";
pub(crate) const TEXT: &str = "text";
pub(crate) const REPLY_TO: &str = "reply_to";
pub(crate) const EDITED_AT: &str = "edited_at";
pub(crate) const DELETED: &str = "deleted";
pub(crate) const REACTIONS: &str = "reactions";

/// Tells whether an op of the document was written by a void change (one that
/// stays in the document but takes no effect); such values are skipped.
pub(crate) type IsVoid<'a> = &'a dyn Fn(&ExId) -> bool;

/// Reads the message stored under `key` at the root of `doc`, or `None` if the
/// entry is not a well-formed message (those are skipped, never shown) or was
/// created by a void change.
pub(crate) fn read_message<D: ReadDoc>(
    doc: &D,
    key: &str,
    segment: SegmentIndex,
    is_void: IsVoid<'_>,
) -> Option<Message> {
    let id: MessageId = key.parse().ok()?;
    let (Value::Object(ObjType::Map), obj) = winner(doc, &ROOT, key, is_void)? else {
        return None;
    };
    let ObjId::Id(_, creator, _) = &obj else {
        return None;
    };
    let creator = crate::identity::author_of(creator)?;
    let author: PublicKey = scalar_str(doc, &obj, AUTHOR, is_void)?.parse().ok()?;
    if author != creator {
        return None;
    }
    let sent_at_ms = timestamp(doc, &obj, SENT_AT, is_void)?;
    let deleted = doc
        .get_all(&obj, DELETED)
        .unwrap_or_default()
        .iter()
        .any(|(v, op)| {
            !is_void(op)
                && matches!(v, Value::Scalar(s) if s.as_ref() == &ScalarValue::Boolean(true))
        });
    let text = if deleted {
        String::new()
    } else {
        scalar_str(doc, &obj, TEXT, is_void).unwrap_or_default()
    };
    let reply_to = scalar_str(doc, &obj, REPLY_TO, is_void).and_then(|s| s.parse().ok());
    let edited_at_ms = timestamp(doc, &obj, EDITED_AT, is_void);
    let mut reactions = BTreeMap::new();
    if let Some((Value::Object(ObjType::Map), map)) = winner(doc, &obj, REACTIONS, is_void) {
        for member in doc.keys(&map) {
            let (Ok(key), Some(emoji)) = (member.parse(), scalar_str(doc, &map, &member, is_void))
            else {
                continue;
            };
            if !emoji.is_empty() && emoji.len() <= MAX_REACTION_BYTES {
                reactions.insert(key, emoji);
            }
        }
    }
    let attachment = if deleted {
        None
    } else {
        Attachment::read(doc, &obj).map(Box::new)
    };
    Some(Message {
        attachment,
        id,
        author,
        sent_at_ms,
        text,
        reply_to,
        edited_at_ms,
        deleted,
        reactions,
        segment,
    })
}

/// The value shown at `key`: Automerge's winner among the values not written
/// by void changes (the greatest op id, as Automerge itself picks).
fn winner<D: ReadDoc>(
    doc: &D,
    obj: &ObjId,
    key: &str,
    is_void: IsVoid<'_>,
) -> Option<(Value<'static>, ExId)> {
    let (value, id) = doc.get(obj, key).ok()??;
    if !is_void(&id) {
        return Some((value.to_owned(), id));
    }
    doc.get_all(obj, key)
        .ok()?
        .into_iter()
        .filter(|(_, id)| !is_void(id))
        .max_by(|(_, a), (_, b)| op_order(a, b))
        .map(|(v, id)| (v.to_owned(), id))
}

fn op_order(a: &ExId, b: &ExId) -> std::cmp::Ordering {
    match (a, b) {
        (ExId::Id(ca, aa, _), ExId::Id(cb, ab, _)) => ca.cmp(cb).then_with(|| aa.cmp(ab)),
        _ => std::cmp::Ordering::Equal,
    }
}

fn scalar<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str, is_void: IsVoid<'_>) -> Option<ScalarValue> {
    match winner(doc, obj, key, is_void)? {
        (Value::Scalar(s), _) => Some(s.into_owned()),
        _ => None,
    }
}

fn scalar_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str, is_void: IsVoid<'_>) -> Option<String> {
    match scalar(doc, obj, key, is_void)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn timestamp<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str, is_void: IsVoid<'_>) -> Option<i64> {
    match scalar(doc, obj, key, is_void)? {
        ScalarValue::Timestamp(t) | ScalarValue::Int(t) => Some(t),
        _ => None,
    }
}

//! A message as a reader sees it, read back from a history segment.

use automerge::{ObjId, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};

use crate::{
    ids::{MessageId, PublicKey},
    signed::SegmentIndex,
};

/// Longest message text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

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
    /// The text.
    pub text: String,
    /// The history segment holding it.
    pub segment: SegmentIndex,
}

pub(crate) const AUTHOR: &str = "author";
pub(crate) const SENT_AT: &str = "sent_at";
pub(crate) const TEXT: &str = "text";

/// Reads the message stored under `key` at the root of `doc`, or `None` if the
/// entry is not a well-formed message (those are skipped, never shown).
pub(crate) fn read_message<D: ReadDoc>(
    doc: &D,
    key: &str,
    segment: SegmentIndex,
) -> Option<Message> {
    let id: MessageId = key.parse().ok()?;
    let (Value::Object(automerge::ObjType::Map), obj) = doc.get(ROOT, key).ok()?? else {
        return None;
    };
    let ObjId::Id(_, creator, _) = &obj else {
        return None;
    };
    let creator: [u8; 32] = creator.to_bytes().try_into().ok()?;
    let author: PublicKey = scalar_str(doc, &obj, AUTHOR)?.parse().ok()?;
    if author.as_bytes() != &creator {
        return None;
    }
    let sent_at_ms = match scalar(doc, &obj, SENT_AT)? {
        ScalarValue::Timestamp(t) | ScalarValue::Int(t) => t,
        _ => return None,
    };
    let text = scalar_str(doc, &obj, TEXT)?;
    Some(Message {
        id,
        author,
        sent_at_ms,
        text,
        segment,
    })
}

fn scalar<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<ScalarValue> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => Some(s.into_owned()),
        _ => None,
    }
}

fn scalar_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<String> {
    match scalar(doc, obj, key)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

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
    let fields = Fields::read(doc, &obj, is_void);
    let author: PublicKey = fields.str(AUTHOR)?.parse().ok()?;
    if author != creator {
        return None;
    }
    let sent_at_ms = fields.timestamp(SENT_AT)?;
    // Deleted if any of the concurrent values says so, not only the winner.
    let deleted = fields.listed(DELETED)
        && doc
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
        fields.str(TEXT).unwrap_or_default()
    };
    let reply_to = fields.str(REPLY_TO).and_then(|s| s.parse().ok());
    let edited_at_ms = fields.timestamp(EDITED_AT);
    let mut reactions = BTreeMap::new();
    if let Some((Value::Object(ObjType::Map), map)) = fields.get(REACTIONS) {
        for (member, (value, _)) in Fields::read(doc, map, is_void).winners {
            let (Ok(key), Some(emoji)) = (member.parse(), as_str(&value)) else {
                continue;
            };
            if !emoji.is_empty() && emoji.len() <= MAX_REACTION_BYTES {
                reactions.insert(key, emoji);
            }
        }
    }
    let attachment = if deleted || !fields.listed(crate::attachment::ATTACHMENT) {
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

/// The values shown in one map, read in one pass over it (a lookup per key
/// costs about as much as the whole pass in Automerge 0.12): each key's
/// winner among the values not written by void changes.
struct Fields {
    /// Every key the map shows a value under, void or not.
    listed: Vec<String>,
    winners: Vec<(String, (Value<'static>, ExId))>,
}

impl Fields {
    fn read<D: ReadDoc>(doc: &D, obj: &ObjId, is_void: IsVoid<'_>) -> Self {
        let mut fields = Fields {
            listed: Vec::new(),
            winners: Vec::new(),
        };
        for item in doc.map_range(obj, ..) {
            let id = item.id();
            let key = item.key.into_owned();
            // The same winner as `winner` finds; only a void one needs
            // the key's other values.
            let shown = if is_void(&id) {
                winner(doc, obj, &key, is_void)
            } else {
                Some((Value::from(item.value), id))
            };
            if let Some(shown) = shown {
                fields.winners.push((key.clone(), shown));
            }
            fields.listed.push(key);
        }
        fields
    }

    fn listed(&self, key: &str) -> bool {
        self.listed.iter().any(|k| k == key)
    }

    fn get(&self, key: &str) -> Option<&(Value<'static>, ExId)> {
        self.winners.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn scalar(&self, key: &str) -> Option<&ScalarValue> {
        match self.get(key)? {
            (Value::Scalar(s), _) => Some(s.as_ref()),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<String> {
        as_str(&self.get(key)?.0)
    }

    fn timestamp(&self, key: &str) -> Option<i64> {
        match self.scalar(key)? {
            ScalarValue::Timestamp(t) | ScalarValue::Int(t) => Some(*t),
            _ => None,
        }
    }
}

fn as_str(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use automerge::{transaction::Transactable, ActorId, Automerge};
    use proptest::prelude::*;

    use super::*;
    use crate::identity::Identity;

    /// The reader as it was before [`Fields`]: one lookup per key. The
    /// one-pass reader must show exactly what it shows.
    fn reference<D: ReadDoc>(
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
                let (Ok(key), Some(emoji)) =
                    (member.parse(), scalar_str(doc, &map, &member, is_void))
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

    fn scalar<D: ReadDoc>(
        doc: &D,
        obj: &ObjId,
        key: &str,
        is_void: IsVoid<'_>,
    ) -> Option<ScalarValue> {
        match winner(doc, obj, key, is_void)? {
            (Value::Scalar(s), _) => Some(s.into_owned()),
            _ => None,
        }
    }

    fn scalar_str<D: ReadDoc>(
        doc: &D,
        obj: &ObjId,
        key: &str,
        is_void: IsVoid<'_>,
    ) -> Option<String> {
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

    /// One write by one of three writers, into its own fork of the document
    /// (forks merge before the next round, so writes of a round are
    /// concurrent and conflict).
    #[derive(Debug, Clone)]
    enum Write {
        Text(u8, String),
        SentAt(u8, i64),
        Deleted(u8, bool),
        Edited(u8, i64),
        ReplyTo(u8, bool),
        React(u8, u8, String),
        AuthorOf(u8, u8),
        Attach(u8, String),
        DeleteKey(u8, &'static str),
    }

    fn write() -> impl Strategy<Value = Write> {
        let who = 0u8..3;
        prop_oneof![
            (who.clone(), "[a-c]{0,3}").prop_map(|(w, t)| Write::Text(w, t)),
            (who.clone(), 0i64..4).prop_map(|(w, t)| Write::SentAt(w, t)),
            (who.clone(), any::<bool>()).prop_map(|(w, d)| Write::Deleted(w, d)),
            (who.clone(), 0i64..4).prop_map(|(w, t)| Write::Edited(w, t)),
            (who.clone(), any::<bool>()).prop_map(|(w, ok)| Write::ReplyTo(w, ok)),
            (who.clone(), 0u8..3, "[xy]{0,2}").prop_map(|(w, m, e)| Write::React(w, m, e)),
            (who.clone(), 0u8..3).prop_map(|(w, a)| Write::AuthorOf(w, a)),
            (who.clone(), "[a-b/]{0,2}").prop_map(|(w, n)| Write::Attach(w, n)),
            (
                who,
                prop_oneof![
                    Just(TEXT),
                    Just(DELETED),
                    Just(REACTIONS),
                    Just(crate::attachment::ATTACHMENT)
                ]
            )
                .prop_map(|(w, k)| Write::DeleteKey(w, k)),
        ]
    }

    fn apply(tx: &mut impl Transactable, obj: &ObjId, write: &Write, keys: &[PublicKey]) {
        let parent = MessageId::with_prefix(&keys[1], [7; 8]).to_string();
        let _ = match write {
            Write::Text(_, t) => tx.put(obj, TEXT, t.as_str()),
            Write::SentAt(_, t) => tx.put(obj, SENT_AT, ScalarValue::Timestamp(*t)),
            Write::Deleted(_, d) => tx.put(obj, DELETED, *d),
            Write::Edited(_, t) => tx.put(obj, EDITED_AT, ScalarValue::Timestamp(*t)),
            Write::ReplyTo(_, true) => tx.put(obj, REPLY_TO, parent),
            Write::ReplyTo(_, false) => tx.put(obj, REPLY_TO, 5),
            Write::React(_, m, e) => match tx.get(obj, REACTIONS) {
                Ok(Some((Value::Object(ObjType::Map), map))) => {
                    tx.put(&map, keys[*m as usize].to_string(), e.as_str())
                }
                _ => tx
                    .put_object(obj, REACTIONS, ObjType::Map)
                    .and_then(|map| tx.put(&map, keys[*m as usize].to_string(), e.as_str())),
            },
            Write::AuthorOf(_, a) => tx.put(obj, AUTHOR, keys[*a as usize].to_string()),
            // A name may be empty or hold a '/': a malformed attachment.
            Write::Attach(_, name) => Attachment {
                hash: crate::BlobHash::from_bytes([3; 32]),
                size: 5,
                mime: "text/plain".into(),
                name: name.clone(),
                preview: Vec::new(),
                key: None,
            }
            .write(tx, obj),
            Write::DeleteKey(_, k) => tx.delete(obj, *k),
        };
    }

    fn writer(write: &Write) -> u8 {
        match write {
            Write::Text(w, _)
            | Write::SentAt(w, _)
            | Write::Deleted(w, _)
            | Write::Edited(w, _)
            | Write::ReplyTo(w, _)
            | Write::React(w, _, _)
            | Write::AuthorOf(w, _)
            | Write::Attach(w, _)
            | Write::DeleteKey(w, _) => *w,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The one-pass reader shows what one lookup per key showed, with
        /// concurrent values, deleted keys and any op counted void.
        #[test]
        fn one_pass_reads_what_lookups_read(
            rounds in prop::collection::vec(prop::collection::vec(write(), 0..4), 0..5),
            void_writer in 1u8..4,
            void_parity in 0u64..3,
        ) {
            let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
            let keys: Vec<PublicKey> = ids.iter().map(Identity::public).collect();
            let id = MessageId::with_prefix(&keys[0], [1; 8]).to_string();
            let mut doc = Automerge::new().with_actor(ids[0].actor());
            let mut tx = doc.transaction();
            let obj = tx.put_object(ROOT, &id, ObjType::Map).unwrap();
            tx.put(&obj, AUTHOR, keys[0].to_string()).unwrap();
            tx.put(&obj, SENT_AT, ScalarValue::Timestamp(1)).unwrap();
            tx.put(&obj, TEXT, "hello").unwrap();
            tx.put_object(&obj, REACTIONS, ObjType::Map).unwrap();
            tx.commit();
            for round in &rounds {
                let mut forks: Vec<Automerge> = ids
                    .iter()
                    .map(|w| doc.fork().with_actor(w.actor()))
                    .collect();
                for write in round {
                    let fork = &mut forks[writer(write) as usize];
                    let mut tx = fork.transaction();
                    apply(&mut tx, &obj, write, &keys);
                    tx.commit();
                }
                for fork in &mut forks {
                    doc.merge(fork).unwrap();
                }
            }
            let void_actor: Option<ActorId> = ids.get(void_writer as usize).map(Identity::actor);
            let is_void = |op: &ExId| match op {
                ExId::Id(counter, actor, _) => {
                    Some(actor) == void_actor.as_ref() || (void_parity > 0 && counter % 3 == void_parity)
                }
                ExId::Root => false,
            };
            prop_assert_eq!(
                read_message(&doc, &id, 0, &is_void),
                reference(&doc, &id, 0, &is_void)
            );
            prop_assert_eq!(
                read_message(&doc, &id, 0, &|_| false),
                reference(&doc, &id, 0, &|_| false)
            );
        }
    }
}

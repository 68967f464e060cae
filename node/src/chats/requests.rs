//! Message requests: what strangers send before the user says yes.
//!
//! A stranger's first direct message (from someone who is not a contact and
//! has no chat with this node), and an invitation to a group by someone who is
//! not a contact, do not create a chat. They are judged like any change (on a
//! scratch replica), kept in the `requests` tree within a fixed budget, shown
//! apart (`meshchat requests`), and either accepted (the chat is created from
//! what was kept) or deleted. Nothing a stranger sends can cost more than
//! [`MAX_REQUESTS`] × [`MAX_REQUEST_BYTES`] of disk.

use meshchat_crdt::{ChatId, ChatKind, ChatReplica, Message, PublicKey, SignedChange};
use serde::{Deserialize, Serialize};

use crate::store::{DbHandle, StoreError};

/// Requests kept at once; beyond this, new strangers are refused.
pub const MAX_REQUESTS: usize = 64;
/// Bytes of changes kept per request.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Changes kept per request.
pub const MAX_REQUEST_CHANGES: usize = 64;

/// A request as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RequestRecord {
    pub(crate) kind: ChatKind,
    /// The stranger: the direct chat's peer, or who added this node to the group.
    pub(crate) from: PublicKey,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    /// Judged changes, in the order they were accepted.
    pub(crate) changes: Vec<SignedChange>,
}

impl RequestRecord {
    pub(crate) fn bytes(&self) -> usize {
        self.changes.iter().map(SignedChange::wire_size).sum()
    }

    /// A scratch replica holding what was kept.
    pub(crate) fn replica(&self) -> ChatReplica {
        let mut replica = ChatReplica::new(self.kind.clone());
        replica.load(self.changes.clone());
        replica
    }
}

/// A pending request, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// The chat it would become.
    pub chat: ChatId,
    /// Who: the stranger writing, or the one who added you to the group.
    pub from: PublicKey,
    /// For a group invitation: the group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// When the first change arrived (this node's clock).
    pub first_seen_ms: i64,
    /// The messages so far (a direct request), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
}

/// The stored requests.
#[derive(Clone)]
pub(crate) struct Requests {
    db: DbHandle,
}

fn encode(record: &RequestRecord) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).map_err(|e| StoreError::Corrupt {
        tree: "requests",
        message: e.to_string(),
    })?;
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<RequestRecord, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        tree: "requests",
        message: e.to_string(),
    })
}

impl Requests {
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.tree("requests")
    }

    pub(crate) fn open(db: DbHandle) -> Result<Self, StoreError> {
        Ok(Self { db })
    }

    pub(crate) fn get(&self, chat: &ChatId) -> Result<Option<RequestRecord>, StoreError> {
        self.tree()?
            .get(chat.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub(crate) fn put(&self, chat: &ChatId, record: &RequestRecord) -> Result<(), StoreError> {
        self.tree()?.insert(chat.as_bytes(), encode(record)?)?;
        Ok(())
    }

    pub(crate) fn remove(&self, chat: &ChatId) -> Result<Option<RequestRecord>, StoreError> {
        self.tree()?
            .remove(chat.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub(crate) fn len(&self) -> usize {
        self.tree().map_or(0, |tree| tree.len())
    }

    pub(crate) fn all(&self) -> Result<Vec<(ChatId, RequestRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree()?.iter() {
            let (key, value) = item?;
            let Ok(bytes) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            out.push((ChatId::from_bytes(bytes), decode(&value)?));
        }
        Ok(out)
    }

    pub(crate) fn summary(chat: ChatId, record: &RequestRecord) -> RequestSummary {
        let replica = record.replica();
        RequestSummary {
            chat,
            from: record.from,
            group: replica.group_info().map(|i| i.name),
            first_seen_ms: record.first_seen_ms,
            messages: replica.messages(),
        }
    }
}

/// Why a stranger's changes were not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestRefusal {
    #[error("too many message requests are waiting; the user has to answer some first")]
    Full,
    #[error("this message request is over its size budget")]
    TooLarge,
}

/// Adds `stored` (already judged) to a request, within its budget.
pub(crate) fn admit(
    record: &mut RequestRecord,
    stored: Vec<SignedChange>,
) -> Result<(), RequestRefusal> {
    let bytes: usize = stored.iter().map(SignedChange::wire_size).sum();
    if record.changes.len() + stored.len() > MAX_REQUEST_CHANGES
        || record.bytes() + bytes > MAX_REQUEST_BYTES
    {
        return Err(RequestRefusal::TooLarge);
    }
    record.changes.extend(stored);
    Ok(())
}

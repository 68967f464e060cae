//! A replica of one chat: its members and history segments. Sans-I/O: the
//! node feeds it signed changes and persists what it is told to.
//!
//! Receiving is two steps so that nothing is acknowledged before it is durable:
//! [`ChatReplica::check`] verifies and filters without touching the documents,
//! the node persists the accepted changes, then [`ChatReplica::apply`] merges them.

use std::collections::{BTreeMap, HashSet};

use automerge::{transaction::Transactable, ActorId, ObjType, ScalarValue, ROOT};
use serde::{Deserialize, Serialize};

use crate::{
    identity::Identity,
    ids::{ChangeHash, ChatId, MessageId, PublicKey},
    message::{self, Message, MAX_TEXT_BYTES},
    rules::{check_history_change, RuleViolation},
    segment::Segment,
    signed::{SegmentIndex, SignedChange, VerifiedChange, VerifyError},
};

/// Messages per history segment before a writer starts the next one. Keeps
/// every Automerge document small, so applying a remote change stays cheap.
pub const DEFAULT_SEGMENT_CAPACITY: usize = 1000;

/// The heads of one segment, exchanged by anti-entropy sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeads {
    /// Which segment.
    pub segment: SegmentIndex,
    /// Its Automerge heads.
    pub heads: Vec<ChangeHash>,
}

/// Why a local write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The writer is not a member of the chat.
    #[error("you are not a member of this chat")]
    NotMember,
    /// The text is longer than [`MAX_TEXT_BYTES`].
    #[error("message is {len} bytes; the limit is {MAX_TEXT_BYTES}")]
    TooLong {
        /// Bytes in the text.
        len: usize,
    },
    /// Automerge refused the transaction (a bug, reported rather than hidden).
    #[error("automerge: {0}")]
    Automerge(String),
}

/// Why a received change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The change claims another chat.
    #[error("change is for chat {0}, not this one")]
    WrongChat(ChatId),
    /// Signature, encoding or actor check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The signer is not a member.
    #[error("author {0} is not a member of the chat")]
    NotMember(PublicKey),
    /// The change breaks the history rules.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
}

/// A received change that was refused, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The change's hash when it could be decoded.
    pub hash: Option<ChangeHash>,
    /// Why.
    pub reason: RejectReason,
}

/// The outcome of [`ChatReplica::check`].
#[derive(Debug, Default)]
pub struct Checked {
    /// New, valid changes: persist them, then pass them to [`ChatReplica::apply`].
    pub accepted: Vec<VerifiedChange>,
    /// Changes this replica already holds (harmless: delivery is at-least-once).
    pub duplicates: Vec<ChangeHash>,
    /// Refused changes.
    pub rejected: Vec<Rejected>,
}

/// A message written locally, and the signed change that carries it.
#[derive(Debug, Clone)]
pub struct Written {
    /// The new message.
    pub message: Message,
    /// The change to persist and send.
    pub change: SignedChange,
    /// Its hash.
    pub hash: ChangeHash,
}

/// The members of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChatKind {
    /// A conversation between two keys (the same key twice is a note-to-self).
    Direct {
        /// The smaller key.
        a: PublicKey,
        /// The larger key.
        b: PublicKey,
    },
}

impl ChatKind {
    /// The direct chat between two keys, in canonical order.
    pub fn direct(x: PublicKey, y: PublicKey) -> Self {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Self::Direct { a, b }
    }

    /// The chat id this kind implies.
    pub fn chat_id(&self) -> ChatId {
        match self {
            Self::Direct { a, b } => ChatId::direct(a, b),
        }
    }

    /// Whether `key` may write.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        match self {
            Self::Direct { a, b } => key == a || key == b,
        }
    }

    /// For a direct chat, the member that is not `me`.
    pub fn peer_of(&self, me: &PublicKey) -> Option<PublicKey> {
        match self {
            Self::Direct { a, b } if a == me => Some(*b),
            Self::Direct { a, b } if b == me => Some(*a),
            Self::Direct { .. } => None,
        }
    }
}

/// An in-memory replica of one chat.
pub struct ChatReplica {
    id: ChatId,
    kind: ChatKind,
    pub(crate) segments: BTreeMap<SegmentIndex, Segment>,
    segment_capacity: usize,
}

impl std::fmt::Debug for ChatReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatReplica")
            .field("id", &self.id)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl ChatReplica {
    /// An empty replica of the chat `kind` describes.
    pub fn new(kind: ChatKind) -> Self {
        Self {
            id: kind.chat_id(),
            kind,
            segments: BTreeMap::new(),
            segment_capacity: DEFAULT_SEGMENT_CAPACITY,
        }
    }

    /// Sets how many messages a segment holds before writers start the next one.
    pub fn with_segment_capacity(mut self, capacity: usize) -> Self {
        self.segment_capacity = capacity.max(1);
        self
    }

    /// The chat id.
    pub fn id(&self) -> ChatId {
        self.id
    }

    /// Who is in the chat.
    pub fn kind(&self) -> &ChatKind {
        &self.kind
    }

    /// Number of history segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Writes a new message as `identity`.
    pub fn write_message(
        &mut self,
        identity: &Identity,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<Written, WriteError> {
        let author = identity.public();
        if !self.kind.is_member(&author) {
            return Err(WriteError::NotMember);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(WriteError::TooLong { len: text.len() });
        }
        let index = self.segment_for_write();
        let segment = self
            .segments
            .entry(index)
            .or_insert_with(|| Segment::new(index));
        let id = MessageId::random();
        segment
            .doc
            .set_actor(ActorId::from(author.as_bytes().as_slice()));
        let mut tx = segment.doc.transaction();
        let am = |e: automerge::AutomergeError| WriteError::Automerge(e.to_string());
        let obj = tx
            .put_object(ROOT, id.to_string(), ObjType::Map)
            .map_err(am)?;
        tx.put(&obj, message::AUTHOR, author.to_string())
            .map_err(am)?;
        tx.put(&obj, message::SENT_AT, ScalarValue::Timestamp(sent_at_ms))
            .map_err(am)?;
        tx.put(&obj, message::TEXT, text).map_err(am)?;
        tx.commit();
        let change = segment
            .doc
            .get_last_local_change()
            .ok_or_else(|| WriteError::Automerge("commit produced no change".into()))?;
        let signed = SignedChange::sign(identity, self.id, index, &change);
        let hash = ChangeHash::from(change.hash());
        segment.signed.insert(hash, signed.clone());
        let message = Message {
            id,
            author,
            sent_at_ms,
            text: text.to_owned(),
            segment: index,
        };
        Ok(Written {
            message,
            change: signed,
            hash,
        })
    }

    /// The newest segment, or the next one once it is full.
    fn segment_for_write(&self) -> SegmentIndex {
        match self.segments.last_key_value() {
            None => 0,
            Some((index, seg)) if seg.message_count() >= self.segment_capacity => {
                index.saturating_add(1)
            }
            Some((index, _)) => *index,
        }
    }

    /// Verifies received changes (signature, actor = signer, membership, history
    /// rules) without applying them.
    pub fn check(&self, changes: impl IntoIterator<Item = SignedChange>) -> Checked {
        let mut out = Checked::default();
        let mut seen = HashSet::new();
        for signed in changes {
            if signed.chat != self.id {
                out.rejected.push(Rejected {
                    hash: None,
                    reason: RejectReason::WrongChat(signed.chat),
                });
                continue;
            }
            let verified = match signed.verify() {
                Ok(v) => v,
                Err(e) => {
                    out.rejected.push(Rejected {
                        hash: None,
                        reason: e.into(),
                    });
                    continue;
                }
            };
            if self.holds(verified.signed.segment, &verified.hash) || !seen.insert(verified.hash) {
                out.duplicates.push(verified.hash);
                continue;
            }
            let reason = if !self.kind.is_member(&verified.author) {
                Some(RejectReason::NotMember(verified.author))
            } else {
                check_history_change(&verified.change).err().map(Into::into)
            };
            match reason {
                Some(reason) => out.rejected.push(Rejected {
                    hash: Some(verified.hash),
                    reason,
                }),
                None => out.accepted.push(verified),
            }
        }
        out
    }

    /// Whether this replica holds the change (applied or waiting for its dependencies).
    pub fn holds(&self, segment: SegmentIndex, hash: &ChangeHash) -> bool {
        self.segments
            .get(&segment)
            .is_some_and(|s| s.signed.contains_key(hash))
    }

    /// Merges changes that passed [`ChatReplica::check`] (or were loaded from
    /// this node's own store), batched per segment. Returns the messages that
    /// became visible, each exactly once.
    pub fn apply(&mut self, changes: Vec<VerifiedChange>) -> Vec<Message> {
        let mut by_segment: BTreeMap<SegmentIndex, Vec<VerifiedChange>> = BTreeMap::new();
        for change in changes {
            by_segment
                .entry(change.signed.segment)
                .or_default()
                .push(change);
        }
        let mut new_messages = Vec::new();
        for (index, batch) in by_segment {
            let segment = self
                .segments
                .entry(index)
                .or_insert_with(|| Segment::new(index));
            let before = segment.message_ids();
            let mut raw = Vec::with_capacity(batch.len());
            for change in batch {
                segment.signed.insert(change.hash, change.signed);
                raw.push(change.change);
            }
            if let Err(error) = segment.doc.apply_changes(raw) {
                // Each change was parsed and checked, so this is an Automerge
                // invariant breaking. The signed copies are kept (they are
                // persisted) so sync still forwards them.
                tracing::error!(chat = %self.id, segment = index, %error, "automerge refused a checked batch");
            }
            new_messages.extend(
                segment
                    .message_ids()
                    .difference(&before)
                    .filter_map(|id| segment.message(id)),
            );
        }
        new_messages.sort_by_key(|m| (m.sent_at_ms, m.id));
        new_messages
    }

    /// The heads of every segment.
    pub fn heads(&self) -> Vec<SegmentHeads> {
        self.segments
            .values()
            .map(|s| SegmentHeads {
                segment: s.index,
                heads: s.heads(),
            })
            .collect()
    }

    /// The signed changes this replica has that a replica with `their_heads`
    /// lacks (possibly a few more; never fewer).
    pub fn changes_missing_from(&self, their_heads: &[SegmentHeads]) -> Vec<SignedChange> {
        let mut out = Vec::new();
        for segment in self.segments.values() {
            let theirs = their_heads
                .iter()
                .find(|h| h.segment == segment.index)
                .map(|h| h.heads.as_slice())
                .unwrap_or_default();
            out.extend(segment.changes_not_in(theirs));
        }
        out
    }

    /// Every visible message, oldest first (by the authors' clocks, then id).
    pub fn messages(&self) -> Vec<Message> {
        let mut all: Vec<Message> = self.segments.values().flat_map(|s| s.messages()).collect();
        all.sort_by_key(|m| (m.sent_at_ms, m.id));
        all
    }

    /// Number of visible messages.
    pub fn message_count(&self) -> usize {
        self.segments.values().map(Segment::message_count).sum()
    }

    /// The Automerge document of a segment, saved in the standard binary format.
    pub fn save_segment(&self, segment: SegmentIndex) -> Option<Vec<u8>> {
        self.segments.get(&segment).map(|s| s.doc.save())
    }
}

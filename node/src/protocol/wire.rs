//! Messages of `/meshchat/sync/1`, the peer-to-peer request-response protocol
//! that carries changes (push, answered once durable), anti-entropy (sync)
//! and read receipts. Profiles, heartbeats and typing go on
//! `/meshchat/notice/1` (`notice.rs`).
//!
//! A frame is one byte of wire version followed by a CBOR body; one frame per
//! stream direction. See `docs/PROTOCOL.md`.

use libp2p::StreamProtocol;
use meshchat_crdt::{
    e2e::SealedChange, ChangeHash, ChatId, KeyId, PublicKey, SegmentHeads, SignedChange,
};
use serde::{Deserialize, Serialize};

/// The protocol id.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshchat/sync/1");
/// The wire version this node speaks inside the protocol.
pub const WIRE_VERSION: u8 = 1;
/// Largest request frame accepted.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest response frame accepted.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A request from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// New signed changes for the receiver; answered with [`Response::Pushed`]
    /// once they are durably stored.
    Push {
        /// The changes (any chats the two share).
        changes: Vec<SignedChange>,
    },
    /// Read receipts: the sender displayed these messages of `chat`.
    Read {
        /// The chat.
        chat: ChatId,
        /// Messages the receiver wrote that the sender has now seen.
        messages: Vec<meshchat_crdt::MessageId>,
    },
    /// Anti-entropy: "these are my heads for this chat; send what I lack".
    Sync {
        /// The chat.
        chat: ChatId,
        /// The sender's heads per segment.
        heads: Vec<SegmentHeads>,
    },
    /// A group's gossip came sealed under a sender key this node lacks: "give
    /// me the key `key_id` of `chat`". Answered with [`Response::Key`] to a
    /// member only (in the answerer's view).
    Key {
        /// The group.
        chat: ChatId,
        /// The key wanted.
        key_id: KeyId,
    },
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The outcome of a push: `stored` are durable on the receiver (new or
    /// already held); `rejected` will never be accepted.
    Pushed {
        /// Durably stored (acknowledged).
        stored: Vec<ChangeHash>,
        /// Refused, with the reason.
        rejected: Vec<RejectedChange>,
    },
    /// The answer to a sync: changes the requester lacks, and the responder's heads.
    Synced {
        /// Changes the requester lacks (possibly a few it has).
        changes: Vec<SignedChange>,
        /// The responder's heads, so the requester can push what the responder lacks.
        heads: Vec<SegmentHeads>,
        /// More changes remain: sync again.
        more: bool,
    },
    /// Read receipts recorded.
    ReadNoted,
    /// A sender key: the requester checks that it hashes to the id it asked
    /// for (`SenderKey::key_id`), so no answerer can hand it another.
    Key {
        /// Whose key it is (the member who sealed with it).
        author: PublicKey,
        /// Its epoch in the author's sequence.
        epoch: u32,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: [u8; 32],
        /// The history segment the key's epoch began in (as the answerer
        /// holds it); absent from older nodes: 0.
        #[serde(default)]
        segment: meshchat_crdt::SegmentIndex,
    },
    /// The request could not be served.
    Error(WireError),
}

/// A change the receiver refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedChange {
    /// Its hash, when it could be decoded.
    pub hash: Option<ChangeHash>,
    /// Why, for the sender's log.
    pub reason: String,
}

/// Why a request was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame's wire version is not one this node speaks.
    #[error("unsupported wire version {got} (this node speaks {supported})")]
    UnsupportedVersion {
        /// Version received.
        got: u8,
        /// Version spoken here.
        supported: u8,
    },
    /// The frame could not be decoded.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame is larger than the limit.
    #[error("frame larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The requester is not a member of the chat it asked about.
    #[error("not a member of that chat")]
    NotMember,
    /// The answerer holds no such sender key.
    #[error("unknown sender key")]
    UnknownKey,
    /// The receiver could not store the changes (disk full, I/O error): retry later.
    #[error("receiver storage unavailable: {0}")]
    Storage(String),
}

/// What a group's gossipsub topic carries (as a frame: version byte + CBOR).
/// Only sealed: a plaintext frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GossipMessage {
    /// A [`GossipPayload`] frame sealed under the publisher's sender key for
    /// the group (associated data: the chat and the key id).
    Sealed(SealedChange),
}

/// What a sealed gossip message holds once opened (as a frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPayload {
    /// Signed changes of the topic's group (by any author: a member passes
    /// on what it learned by sync under its own key).
    pub changes: Vec<SignedChange>,
}

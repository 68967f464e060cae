//! Messages of `/meshchat/sync/1`, the peer-to-peer request-response protocol
//! that carries changes (push, answered once durable), anti-entropy (sync)
//! and read receipts. Profiles, heartbeats and typing go on
//! `/meshchat/notice/1` (`notice_wire.rs`).
//!
//! A frame is one byte of wire version followed by a CBOR body; one frame per
//! stream direction. See `docs/PROTOCOL.md`.

use libp2p::StreamProtocol;
use meshchat_crdt::{ChangeHash, ChatId, KeyId, PublicKey, SegmentHeads, SignedChange};
use serde::{Deserialize, Serialize};

use crate::framing::{frame_codec, WireError};

/// The protocol id.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshchat/sync/1");
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

/// The codec of `/meshchat/sync/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCodec;

frame_codec!(
    SyncCodec,
    Request,
    Response,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES
);

#[cfg(test)]
mod tests {
    use libp2p::request_response;
    use meshchat_crdt::ChatId;

    use super::*;
    use crate::framing::{decode_frame, encode_frame, Inbound, WireError};

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let req = Request::Sync {
            chat: ChatId::from_bytes([3; 32]),
            heads: vec![],
        };
        let frame = encode_frame(&req);
        assert_eq!(decode_frame::<Request>(&frame), Ok(req));
        assert!(matches!(
            decode_frame::<Request>(&[]),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            decode_frame::<Request>(&[9, 1, 2]),
            Err(WireError::UnsupportedVersion {
                got: 9,
                supported: 1
            })
        );
        assert!(matches!(
            decode_frame::<Request>(&[1, 0xff, 0x00, 0x13]),
            Err(WireError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn oversize_frames_are_refused() {
        let big = vec![0u8; MAX_REQUEST_BYTES + 10];
        let mut reader = futures::io::Cursor::new(big);
        let mut codec = SyncCodec;
        let got = request_response::Codec::read_request(&mut codec, &SYNC_PROTOCOL, &mut reader)
            .await
            .unwrap();
        assert_eq!(
            got,
            Inbound::Refused(WireError::TooLarge {
                limit: MAX_REQUEST_BYTES as u64
            })
        );
    }
}

//! Messages of `/meshchat/notice/1`: small, unacknowledged-in-substance
//! notices between peers — profiles, presence heartbeats, typing. Kept apart
//! from `/meshchat/sync/1` (changes, which must be durable before they are
//! answered) so each has its own frame bound: a notice frame is at most
//! [`MAX_NOTICE_BYTES`], where a push may be 4 MiB.
//!
//! A frame is one byte of wire version followed by a CBOR body, as on every
//! meshchat protocol. See `docs/PROTOCOL.md`.

use libp2p::StreamProtocol;
use meshchat_crdt::ChatId;
use serde::{Deserialize, Serialize};

use crate::{
    framing::{frame_codec, WireError},
    social::records::{Heartbeat, SignedProfile, MAX_PROFILE_RECORD_BYTES},
};

/// The protocol id.
pub const NOTICE_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshchat/notice/1");
/// Largest notice frame (request or response) accepted: a signed profile
/// and its framing fit with room to spare.
pub const MAX_NOTICE_BYTES: usize = MAX_PROFILE_RECORD_BYTES + 1024;

/// A notice from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The sender's current signed profile; answered with [`NoticeResponse::Noted`].
    Profile(SignedProfile),
    /// "Send me your current profile"; answered with [`NoticeResponse::Profile`].
    GetProfile,
    /// A presence heartbeat; answered with [`NoticeResponse::Noted`].
    Heartbeat(Heartbeat),
    /// The sender is typing in `chat` (ephemeral, never stored).
    Typing {
        /// The chat.
        chat: ChatId,
    },
}

/// The answer to a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeResponse {
    /// The notice was received.
    Noted,
    /// The responder's current signed profile.
    Profile(Option<SignedProfile>),
    /// The notice could not be used.
    Error(WireError),
}

/// The codec of `/meshchat/notice/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoticeCodec;

frame_codec!(
    NoticeCodec,
    Notice,
    NoticeResponse,
    MAX_NOTICE_BYTES,
    MAX_NOTICE_BYTES
);

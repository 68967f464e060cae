//! Wire formats: the `/meshchat/direct/1` request-response protocol (messages
//! and codec) and what group topics carry.

mod codec;
mod mailbox;
mod records;
mod topic;
mod wire;

pub use codec::{decode_frame, encode_frame, DirectCodec, Inbound, MailboxCodec};
pub use mailbox::{
    Envelope, MailboxRequest, MailboxResponse, MAILBOX_MAX_REQUEST_BYTES,
    MAILBOX_MAX_RESPONSE_BYTES, MAILBOX_PAGE_BYTES, MAILBOX_PROTOCOL, MAX_TOKENS_PER_REQUEST,
};
pub use records::{
    peer_of_profile_key, profile_dht_key, Heartbeat, Profile, RecordError, SignedProfile,
    MAX_NAME_CHARS, MAX_PROFILE_BYTES, MAX_PROFILE_RECORD_BYTES, MAX_PROFILE_RELAYS,
    MAX_STATUS_CHARS,
};
pub use topic::group_topic;
pub use wire::{
    GossipMessage, RejectedChange, Request, Response, WireError, DIRECT_PROTOCOL,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, WIRE_VERSION,
};

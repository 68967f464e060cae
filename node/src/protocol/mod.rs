//! Wire formats: the `/meshchat/direct/1` request-response protocol (messages
//! and codec) and what group topics carry.

pub use crate::actor::group_topic;

mod codec;
mod mailbox;
mod wire;

pub use codec::{decode_frame, encode_frame, DirectCodec, Inbound, MailboxCodec};
pub use mailbox::{
    Envelope, MailboxRequest, MailboxResponse, MAILBOX_MAX_REQUEST_BYTES,
    MAILBOX_MAX_RESPONSE_BYTES, MAILBOX_PAGE_BYTES, MAILBOX_PROTOCOL,
};
pub use wire::{
    GossipMessage, RejectedChange, Request, Response, WireError, DIRECT_PROTOCOL,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, WIRE_VERSION,
};

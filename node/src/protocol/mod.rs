//! The `/meshchat/direct/1` request-response protocol: wire messages and codec.

mod codec;
mod wire;

pub use codec::{decode_frame, encode_frame, DirectCodec, Inbound};
pub use wire::{
    RejectedChange, Request, Response, WireError, DIRECT_PROTOCOL, MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES, WIRE_VERSION,
};

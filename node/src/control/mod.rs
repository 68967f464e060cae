//! The daemon's local control API: newline-delimited JSON over a Unix socket
//! with mode 0600 in the data directory. Request/response plus an event stream.

mod calls;
mod client;
mod media;
mod resolve;
mod server;
mod wire;

pub use calls::call;
pub use client::{ClientError, ControlClient, EventStream, WatchItem};
pub use server::{bind, serve};
pub use wire::{ControlError, ControlRequest, RequestLine, ResponseLine, MAX_LINE_BYTES};

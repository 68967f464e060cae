//! Between two peers directly: `/meshchat/sync/1` (changes pushed and
//! acknowledged once durable, anti-entropy sync, read receipts, sender
//! keys) and `/meshchat/notice/1` (profiles, presence heartbeats, typing:
//! small, answered at once), each with its messages and its handler.

pub(crate) mod notice_wire;
mod notices;
mod sync;
pub(crate) mod sync_wire;

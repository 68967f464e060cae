//! Groups on gossipsub: the topic and frames (`wire.rs`), the sender keys
//! gossip is sealed under (`sender_keys.rs`), when each topic last brought
//! news (`topic_news.rs`), and their handlers.

mod gossip;
pub(crate) mod held_verdicts;
mod key_requests;
pub(crate) mod key_waits;
pub(crate) mod sender_keys;
pub(crate) mod topic_news;
pub(crate) mod unechoed;
pub(crate) mod wire;

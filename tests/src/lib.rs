//! Shared scaffolding for meshchat's integration tests and benchmarks.
//!
//! - [`peer`]: real nodes in temp data dirs, on loopback TCP or on libp2p's
//!   in-memory transport ([`Net`]), with waits for their events.
//! - [`direct`]: two nodes in a direct chat, timed by their events (one
//!   message in flight, or many back to back).
//! - [`relay`]: a relay with its quotas lifted, delivery tokens, and a
//!   returning peer fetching the mail queued for it.
//! - [`xmpp`]: a minimal XMPP client (plain TCP, SASL PLAIN), to drive an
//!   XMPP server as a baseline.
//! - [`net`]: bare libp2p swarms on the same transports as a node.
//! - [`raw`]: a request-response codec that moves any bytes, to put
//!   arbitrary frames on meshchat's protocols (or to be a bare baseline).
//! - [`client`]: a bare request-response client of one node: an attacker
//!   on the direct protocol, a mailbox client of a relay.
//! - [`gossip`]: a bare member of a group's gossip (sealed publishing, key
//!   requests both ways), or a raw listener on a topic.
//! - [`wait`]: waiting for an event with a timeout; never sleeping for the
//!   network.
//! - [`durable`]: the bare floor of a durable write (`fdatasync`), for
//!   benches.
//! - [`stats`]: percentiles, rates and ratios printed by benches.

pub mod client;
pub mod direct;
pub mod durable;
pub mod gossip;
pub mod net;
pub mod peer;
pub mod raw;
pub mod relay;
pub mod stats;
pub mod wait;
pub mod xmpp;

pub use client::{BareClient, MailboxClient};
pub use net::Net;
pub use peer::{init_tracing, key_of, Peer};
pub use raw::RawCodec;
pub use wait::{within, WAIT};

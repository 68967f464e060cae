//! The node's social state: who is online, this node's last-seen privacy,
//! its heartbeat count, and the DHT profile lookups under way.

use std::{collections::HashMap, time::Duration};

use libp2p::kad;
use meshchat_crdt::PublicKey;

use super::presence::{LastSeenPrivacy, PresenceBook};
use crate::{config::NodeConfig, store::Store};

/// The actor's social state.
pub(crate) struct Social {
    pub(crate) presence: PresenceBook,
    pub(crate) privacy: LastSeenPrivacy,
    pub(crate) heartbeat_seq: u64,
    pub(crate) lookups: HashMap<kad::QueryId, PublicKey>,
    /// Per peer: when a lookup may run again, and the wait after that one.
    pub(crate) looked_up: HashMap<PublicKey, (tokio::time::Instant, Duration)>,
}

impl Social {
    pub(crate) fn new(config: &NodeConfig, store: &Store) -> Self {
        Self {
            presence: PresenceBook::new(config.presence_window_ms()),
            privacy: store.last_seen_privacy().unwrap_or_default(),
            heartbeat_seq: 0,
            lookups: HashMap::new(),
            looked_up: HashMap::new(),
        }
    }
}

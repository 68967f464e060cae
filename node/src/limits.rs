//! How much of the node one remote party can take: connections (in total,
//! from strangers, per peer, in handshake), new connections while memory is
//! short, and requests in flight on one connection.
//!
//! Every limit is a key under `[limits]` in `config.toml`. A key left unset
//! takes the default of the node's role: a relay (a node with `[mailbox]`)
//! serves many peers and gets higher connection limits than a desktop peer.
//!
//! Contacts and the node's own relays bypass the total, incoming and
//! pending-outgoing limits, so strangers filling every slot cannot cut a user
//! off from the people they talk to; nobody bypasses the per-peer limit.

use libp2p::{
    connection_limits::{self, ConnectionLimits},
    memory_connection_limits,
};
use serde::{Deserialize, Serialize};

/// `[limits]` in `config.toml`. `None` means "the default for this node's role".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Established connections, inbound and outbound together.
    pub max_connections: Option<u32>,
    /// Established inbound connections (what strangers can fill).
    pub max_incoming: Option<u32>,
    /// Established connections with any one peer.
    pub max_per_peer: Option<u32>,
    /// Inbound connections still in their handshake.
    pub max_pending_incoming: Option<u32>,
    /// Outbound dials in progress.
    pub max_pending_outgoing: Option<u32>,
    /// Requests in flight on one connection, per request-response protocol
    /// (`/meshchat/sync/1`, `/meshchat/notice/1`, `/meshchat/mailbox/2`), both directions together.
    pub max_streams_per_connection: Option<usize>,
    /// New connections are refused while the process uses more than this
    /// fraction of the machine's physical memory (1.0 turns the check off).
    pub max_memory_fraction: Option<f64>,
}

/// The limits in force: [`LimitsConfig`] with the role's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// See [`LimitsConfig::max_connections`].
    pub max_connections: u32,
    /// See [`LimitsConfig::max_incoming`].
    pub max_incoming: u32,
    /// See [`LimitsConfig::max_per_peer`].
    pub max_per_peer: u32,
    /// See [`LimitsConfig::max_pending_incoming`].
    pub max_pending_incoming: u32,
    /// See [`LimitsConfig::max_pending_outgoing`].
    pub max_pending_outgoing: u32,
    /// See [`LimitsConfig::max_streams_per_connection`].
    pub max_streams_per_connection: usize,
    /// See [`LimitsConfig::max_memory_fraction`].
    pub max_memory_fraction: f64,
}

impl Limits {
    /// A desktop peer: a few hundred contacts and group members.
    pub const PEER: Limits = Limits {
        max_connections: 512,
        max_incoming: 256,
        max_per_peer: 3,
        max_pending_incoming: 64,
        max_pending_outgoing: 128,
        max_streams_per_connection: 16,
        max_memory_fraction: 0.9,
    };

    /// A relay: every peer that uses it stays connected.
    pub const RELAY: Limits = Limits {
        max_connections: 8192,
        max_incoming: 8192,
        max_per_peer: 3,
        max_pending_incoming: 512,
        max_pending_outgoing: 256,
        max_streams_per_connection: 16,
        max_memory_fraction: 0.9,
    };
}

impl LimitsConfig {
    /// The limits in force for a relay (`relay = true`) or a peer.
    pub fn resolve(&self, relay: bool) -> Limits {
        let d = if relay { Limits::RELAY } else { Limits::PEER };
        Limits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_incoming: self.max_incoming.unwrap_or(d.max_incoming),
            max_per_peer: self.max_per_peer.unwrap_or(d.max_per_peer).max(1),
            max_pending_incoming: self.max_pending_incoming.unwrap_or(d.max_pending_incoming),
            max_pending_outgoing: self.max_pending_outgoing.unwrap_or(d.max_pending_outgoing),
            max_streams_per_connection: self
                .max_streams_per_connection
                .unwrap_or(d.max_streams_per_connection)
                .max(1),
            max_memory_fraction: self
                .max_memory_fraction
                .filter(|f| f.is_finite() && *f > 0.0)
                .unwrap_or(d.max_memory_fraction)
                .min(1.0),
        }
    }
}

impl Limits {
    /// The limits contacts and relays bypass: total, inbound, dials.
    pub(crate) fn shared(&self) -> connection_limits::Behaviour {
        connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established(Some(self.max_connections))
                .with_max_established_incoming(Some(self.max_incoming))
                .with_max_pending_outgoing(Some(self.max_pending_outgoing)),
        )
    }

    /// The limits everyone obeys: per peer, and handshakes in progress
    /// (the remote is not authenticated yet, so nobody can be exempt).
    pub(crate) fn everyone(&self) -> connection_limits::Behaviour {
        connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established_per_peer(Some(self.max_per_peer))
                .with_max_pending_incoming(Some(self.max_pending_incoming)),
        )
    }

    /// Refuses new connections while memory is short.
    pub(crate) fn memory(&self) -> memory_connection_limits::Behaviour {
        memory_connection_limits::Behaviour::with_max_percentage(self.max_memory_fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_keys_take_the_roles_defaults() {
        let config = LimitsConfig {
            max_per_peer: Some(2),
            ..Default::default()
        };
        let peer = config.resolve(false);
        assert_eq!(peer.max_per_peer, 2);
        assert_eq!(peer.max_incoming, Limits::PEER.max_incoming);
        let relay = config.resolve(true);
        assert_eq!(relay.max_per_peer, 2);
        assert_eq!(relay.max_incoming, Limits::RELAY.max_incoming);
        const { assert!(Limits::RELAY.max_connections > Limits::PEER.max_connections) };
    }

    #[test]
    fn nonsense_values_are_clamped() {
        let config = LimitsConfig {
            max_per_peer: Some(0),
            max_streams_per_connection: Some(0),
            max_memory_fraction: Some(f64::NAN),
            ..Default::default()
        };
        let limits = config.resolve(false);
        assert_eq!(limits.max_per_peer, 1);
        assert_eq!(limits.max_streams_per_connection, 1);
        assert_eq!(limits.max_memory_fraction, Limits::PEER.max_memory_fraction);
        let over = LimitsConfig {
            max_memory_fraction: Some(7.0),
            ..Default::default()
        };
        assert_eq!(over.resolve(false).max_memory_fraction, 1.0);
    }
}

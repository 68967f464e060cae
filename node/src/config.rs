//! Node configuration: defaults, and the commented `config.toml` in the data dir.

use std::{path::Path, time::Duration};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::{
    limits::{Limits, LimitsConfig},
    mailbox::MailboxConfig,
    media::BlobConfig,
};

/// How a node runs. `Default` is a desktop peer on all interfaces with mDNS on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Addresses to listen on (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start, to join the DHT (each with `/p2p/<PEER_ID>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Relay nodes holding mail for this peer while it is offline.
    pub relays: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Seconds between attempts to reach contacts that have undelivered messages.
    pub redial_secs: u64,
    /// Seconds between anti-entropy syncs with each connected contact.
    pub resync_secs: u64,
    /// Seconds a connection with no open stream is kept.
    pub idle_timeout_secs: u64,
    /// Seconds between presence heartbeats to contacts; a contact not heard
    /// from for 2.5 periods shows as offline.
    pub presence_secs: u64,
    /// Run a mailbox service for other peers (relay mode) with these limits.
    pub mailbox: Option<MailboxConfig>,
    /// Media: the iroh endpoint, size limits, auto-download.
    pub blobs: BlobConfig,
    /// Connection and request limits (unset keys: the role's defaults).
    pub limits: LimitsConfig,
    /// Where the daemon serves the desktop app (`meshchat ui`); a loopback
    /// address only. The node itself does not use it; the daemon does.
    pub ui_listen: std::net::SocketAddr,
}

/// The desktop app's default address: this machine only.
pub const DEFAULT_UI_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4780),
);

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4701".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/4701/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            redial_secs: 10,
            resync_secs: 300,
            idle_timeout_secs: 600,
            presence_secs: 60,
            mailbox: None,
            blobs: BlobConfig::default(),
            limits: LimitsConfig::default(),
            ui_listen: DEFAULT_UI_LISTEN,
        }
    }
}

impl NodeConfig {
    /// A node for tests and the demo: loopback only, ephemeral ports, no mDNS
    /// (multicast would leave the loopback interface).
    pub fn loopback() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            mdns: false,
            redial_secs: 1,
            blobs: BlobConfig::loopback(),
            ..Self::default()
        }
    }

    /// The PeerIds of this node's relays.
    pub(crate) fn relay_peers(&self) -> Vec<PeerId> {
        self.relays.iter().filter_map(peer_of).collect()
    }

    pub(crate) fn redial_interval(&self) -> Duration {
        Duration::from_secs(self.redial_secs.max(1))
    }

    pub(crate) fn resync_interval(&self) -> Duration {
        Duration::from_secs(self.resync_secs.max(1))
    }

    pub(crate) fn presence_interval(&self) -> Duration {
        Duration::from_secs(self.presence_secs.max(1))
    }

    /// Silence after which a peer shows as offline: 2.5 heartbeat periods.
    pub(crate) fn presence_window_ms(&self) -> i64 {
        self.presence_interval().as_millis() as i64 * 5 / 2
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Reads `config.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The commented `config.toml` that `meshchat init` writes.
    pub fn commented_toml(&self) -> String {
        let list = |v: &[Multiaddr]| {
            v.iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            r#"# meshchat peer configuration. Every key is optional; shown are the defaults.

# Where this node listens. TCP and QUIC; port 4701 by default. Use 127.0.0.1 to
# stay invisible to the local network, or port 0 for a random port.
listen = [{listen}]

# Peers to connect to at start to join the network's DHT, each ending in
# /p2p/<PEER_ID>, e.g. "/ip4/203.0.113.5/tcp/4701/p2p/12D3KooW...".
bootstrap = [{bootstrap}]

# The desktop app (`meshchat ui`): a web server on this machine only (127.0.0.1
# or [::1]). Port 0 picks a free port; `meshchat ui` finds it either way.
ui_listen = "{ui_listen}"

# Relay nodes that hold your mail while you are offline (used once relays land).
relays = [{relays}]

# Find other meshchat peers on the local network by multicast DNS.
mdns = {mdns}

# Seconds between attempts to reach contacts with undelivered messages.
redial_secs = {redial}

# Seconds between background anti-entropy syncs with each connected contact.
resync_secs = {resync}

# Seconds an unused connection is kept open.
idle_timeout_secs = {idle}

# Seconds between presence heartbeats to connected contacts. A contact not
# heard from for 2.5 periods shows as offline ("last seen ...").
presence_secs = {presence}
# Media: photos, videos and files travel as iroh-blobs over UDP.
[blobs]
# UDP address of the blob endpoint (open it next to the TCP port).
bind = "{blob_bind}"
# Largest file sent or fetched, in bytes.
max_file_bytes = {blob_max}
# Received files up to this size download by themselves (0: never).
auto_download_bytes = {blob_auto}
# Upload limit while serving files, in bytes per second (unset: none).
# serve_bytes_per_sec = 10485760
# Which received files download by themselves: in direct chats with contacts,
# in groups you created or a contact added you to. Strangers' files never do.
# `meshchat auto-download` shows and changes these.
auto_download_contacts = {blob_auto_contacts}
auto_download_groups = {blob_auto_groups}
# Disk space auto-downloaded files may take in total, and per sender; past
# it, files wait for `meshchat fetch`.
auto_download_budget_bytes = {blob_auto_budget}
auto_download_per_sender_bytes = {blob_auto_per_sender}

# How much of this node other peers can take. Unset keys take the default of
# the node's role, shown as "peer / relay". Your contacts and relays are
# exempt from the connection counts (not from the per-peer limit), so
# strangers filling them cannot cut you off from the people you talk to.
[limits]
# Established connections, in and out together ({peer_conn} / {relay_conn}).
# max_connections = {peer_conn}
# Established inbound connections ({peer_in} / {relay_in}).
# max_incoming = {peer_in}
# Connections with any one peer ({peer_pp} / {relay_pp}).
# max_per_peer = {peer_pp}
# Inbound connections still in their handshake ({peer_pin} / {relay_pin}).
# max_pending_incoming = {peer_pin}
# Dials in progress ({peer_pout} / {relay_pout}).
# max_pending_outgoing = {peer_pout}
# Requests in flight per connection and protocol, both directions ({peer_streams}).
# max_streams_per_connection = {peer_streams}
# Refuse new connections while meshchat uses more than this fraction of the
# machine's memory ({peer_mem}; 1.0 turns it off).
# max_memory_fraction = {peer_mem}
"#,
            listen = list(&self.listen),
            bootstrap = list(&self.bootstrap),
            ui_listen = self.ui_listen,
            relays = list(&self.relays),
            mdns = self.mdns,
            redial = self.redial_secs,
            resync = self.resync_secs,
            idle = self.idle_timeout_secs,
            presence = self.presence_secs,
            blob_bind = self.blobs.bind,
            blob_max = self.blobs.max_file_bytes,
            blob_auto = self.blobs.auto_download_bytes,
            blob_auto_contacts = self.blobs.auto_download_contacts,
            blob_auto_groups = self.blobs.auto_download_groups,
            blob_auto_budget = self.blobs.auto_download_budget_bytes,
            blob_auto_per_sender = self.blobs.auto_download_per_sender_bytes,
            peer_conn = Limits::PEER.max_connections,
            relay_conn = Limits::RELAY.max_connections,
            peer_in = Limits::PEER.max_incoming,
            relay_in = Limits::RELAY.max_incoming,
            peer_pp = Limits::PEER.max_per_peer,
            relay_pp = Limits::RELAY.max_per_peer,
            peer_pin = Limits::PEER.max_pending_incoming,
            relay_pin = Limits::RELAY.max_pending_incoming,
            peer_pout = Limits::PEER.max_pending_outgoing,
            relay_pout = Limits::RELAY.max_pending_outgoing,
            peer_streams = Limits::PEER.max_streams_per_connection,
            peer_mem = Limits::PEER.max_memory_fraction,
        )
    }
}

/// Parses a relay's `relay.toml` (mailbox limits).
pub fn parse_mailbox_toml(text: &str) -> Result<MailboxConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "relay.toml".into(),
        message: e.to_string(),
    })
}

/// Whether `addr` names an unspecified IP (0.0.0.0 or ::): a listen
/// address, not one to dial.
pub(crate) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// The PeerId an address ends with (`/p2p/<PEER_ID>`).
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_toml_parses_back_to_the_same_config() {
        let config = NodeConfig::default();
        let parsed: NodeConfig = toml::from_str(&config.commented_toml()).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn unknown_keys_are_an_error() {
        assert!(toml::from_str::<NodeConfig>("listn = []").is_err());
    }
}

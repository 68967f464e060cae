//! Blob settings: where iroh listens, how large a file may be, what downloads
//! by itself.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Default largest file a node sends or fetches: 2 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default size under which received files download by themselves: 16 MiB.
pub const DEFAULT_AUTO_DOWNLOAD_BYTES: u64 = 16 * 1024 * 1024;
/// Default iroh UDP port, next to libp2p's 4701.
pub const DEFAULT_BLOB_PORT: u16 = 4702;

/// How the node stores, serves and fetches media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobConfig {
    /// UDP address the iroh endpoint binds (port 0: any free port).
    pub bind: SocketAddr,
    /// Largest file accepted for sending or fetching, in bytes.
    pub max_file_bytes: u64,
    /// Received files up to this size download without being asked
    /// (like a messenger's media auto-download setting); 0 turns it off.
    pub auto_download_bytes: u64,
    /// Upload limit in bytes per second while serving blobs (none if unset).
    pub serve_bytes_per_sec: Option<u64>,
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], DEFAULT_BLOB_PORT)),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            auto_download_bytes: DEFAULT_AUTO_DOWNLOAD_BYTES,
            serve_bytes_per_sec: None,
        }
    }
}

impl BlobConfig {
    /// Follows listen addresses given on the command line: a loopback
    /// listener keeps blobs on loopback too, and a random TCP port (0) means
    /// a random UDP port, so several nodes can share one machine.
    pub fn follow_listen(&mut self, listen: &[libp2p::Multiaddr]) {
        use libp2p::multiaddr::Protocol;
        let Some(first) = listen.first() else {
            return;
        };
        for part in first.iter() {
            match part {
                Protocol::Ip4(ip) if ip.is_loopback() => self.bind.set_ip(ip.into()),
                Protocol::Ip6(ip) if ip.is_loopback() => self.bind.set_ip(ip.into()),
                Protocol::Tcp(0) | Protocol::Udp(0) => self.bind.set_port(0),
                _ => {}
            }
        }
    }

    /// Loopback only, any free port: for tests and the demo.
    pub fn loopback() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_follow_a_loopback_random_port_listener() {
        let mut config = BlobConfig::default();
        config.follow_listen(&["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut config = BlobConfig::default();
        config.follow_listen(&["/ip4/0.0.0.0/tcp/4701".parse().unwrap()]);
        assert_eq!(config, BlobConfig::default());
    }
}

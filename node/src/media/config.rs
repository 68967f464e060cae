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
/// Default disk budget for auto-downloaded files: 2 GiB.
pub const DEFAULT_AUTO_DOWNLOAD_BUDGET_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default share of that budget one sender may fill: 256 MiB.
pub const DEFAULT_AUTO_DOWNLOAD_PER_SENDER_BYTES: u64 = 256 * 1024 * 1024;

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
    /// Auto-download in direct chats with contacts (strangers: never).
    pub auto_download_contacts: bool,
    /// Auto-download in groups the user created or a contact added them to.
    pub auto_download_groups: bool,
    /// Bytes of auto-downloaded files kept on disk in total; past it, files
    /// wait for `meshchat fetch`.
    pub auto_download_budget_bytes: u64,
    /// Bytes of that budget one sender may fill.
    pub auto_download_per_sender_bytes: u64,
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], DEFAULT_BLOB_PORT)),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            auto_download_bytes: DEFAULT_AUTO_DOWNLOAD_BYTES,
            serve_bytes_per_sec: None,
            auto_download_contacts: true,
            auto_download_groups: true,
            auto_download_budget_bytes: DEFAULT_AUTO_DOWNLOAD_BUDGET_BYTES,
            auto_download_per_sender_bytes: DEFAULT_AUTO_DOWNLOAD_PER_SENDER_BYTES,
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

    /// Takes over an auto-download policy (set from the CLI).
    pub fn set_auto_download(&mut self, policy: &super::AutoDownload) {
        self.auto_download_bytes = policy.max_bytes;
        self.auto_download_contacts = policy.contacts;
        self.auto_download_groups = policy.groups;
        self.auto_download_budget_bytes = policy.budget_bytes;
        self.auto_download_per_sender_bytes = policy.per_sender_bytes;
    }

    /// Loopback only, any free port: for tests and the demo.
    pub fn loopback() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default()
        }
    }
}

/// The keys of `[blobs]` that hold the auto-download policy, with their
/// values in `policy`.
fn auto_download_keys(policy: &super::AutoDownload) -> [(&'static str, String); 5] {
    [
        ("auto_download_bytes", policy.max_bytes.to_string()),
        ("auto_download_contacts", policy.contacts.to_string()),
        ("auto_download_groups", policy.groups.to_string()),
        (
            "auto_download_budget_bytes",
            policy.budget_bytes.to_string(),
        ),
        (
            "auto_download_per_sender_bytes",
            policy.per_sender_bytes.to_string(),
        ),
    ]
}

/// `config.toml`'s text with the `[blobs]` auto-download keys set to
/// `policy`, everything else (comments included) left as it was.
pub fn with_auto_download(text: &str, policy: &super::AutoDownload) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let start = match lines.iter().position(|l| l.trim() == "[blobs]") {
        Some(start) => start,
        None => {
            lines.push("[blobs]".to_owned());
            lines.len() - 1
        }
    };
    let mut end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |n| start + 1 + n);
    for (key, value) in auto_download_keys(policy) {
        let line = format!("{key} = {value}");
        let existing = lines[start + 1..end].iter().position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        match existing {
            Some(n) => lines[start + 1 + n] = line,
            None => {
                lines.insert(end, line);
                end += 1;
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_download_policy_is_written_into_the_blobs_table() {
        let policy = crate::media::AutoDownload {
            max_bytes: 5,
            contacts: false,
            groups: true,
            budget_bytes: 100,
            per_sender_bytes: 10,
        };
        let text = crate::NodeConfig::default().commented_toml();
        let edited = with_auto_download(&text, &policy);
        let config: crate::NodeConfig = toml::from_str(&edited).unwrap();
        assert_eq!(crate::media::AutoDownload::from(&config.blobs), policy);
        assert_eq!(
            edited.lines().filter(|l| l.starts_with('#')).count(),
            text.lines().filter(|l| l.starts_with('#')).count(),
            "comments kept"
        );
        // Keys missing, or no table at all, are added.
        let bare = with_auto_download("mdns = false\n", &policy);
        let config: crate::NodeConfig = toml::from_str(&bare).unwrap();
        assert!(!config.mdns);
        assert_eq!(crate::media::AutoDownload::from(&config.blobs), policy);
        let before_next_table =
            with_auto_download("[blobs]\nbind = \"127.0.0.1:1\"\n[mailbox]\n", &policy);
        let config: crate::NodeConfig = toml::from_str(&before_next_table).unwrap();
        assert_eq!(crate::media::AutoDownload::from(&config.blobs), policy);
    }

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

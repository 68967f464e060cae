//! The scenario file (TOML): who takes part, what they do, what the network
//! does to them. Parsing checks every value and says what to fix.
//! docs/SIMULATIONS.md documents each key with examples.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::duration::Span;

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, used in the report.
    pub name: String,
    /// Seed of every random choice (overridden by `--seed`).
    #[serde(default)]
    pub seed: u64,
    /// How long people write (and churn and partitions happen).
    pub duration: Span,
    /// After `duration`, how long to wait at most for outstanding deliveries.
    #[serde(default = "default_drain")]
    pub drain: Span,
    /// How long setup may wait for every member to join its group
    /// (default: 60 s plus 0.1 s per node).
    #[serde(default)]
    pub setup_timeout: Option<Span>,
    /// Peers (users) and relays.
    pub network: Network,
    /// The groups people write in.
    pub groups: Groups,
    /// How much people write.
    #[serde(default)]
    pub workload: Workload,
    /// People going offline and coming back.
    #[serde(default)]
    pub churn: Churn,
    /// Network splits.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// What every link does to traffic.
    #[serde(default)]
    pub links: Links,
    /// Node settings.
    #[serde(default)]
    pub node: NodeSettings,
}

fn default_drain() -> Span {
    Span(std::time::Duration::from_secs(30))
}

/// Peers and relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Users, each a full meshchat node.
    pub peers: usize,
    /// Relay nodes (mailbox + circuit relay); peers are assigned round-robin.
    #[serde(default)]
    pub relays: usize,
}

/// Groups and how members reach each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    /// How many groups.
    pub count: usize,
    /// Members per group: a number, or `{ min, max }` (uniform).
    pub size: SizeDist,
    /// How a message reaches the members.
    #[serde(default)]
    pub fanout: Fanout,
    /// `gossip` fan-out: how many random fellow members each peer connects to.
    #[serde(default = "default_degree")]
    pub degree: usize,
}

fn default_degree() -> usize {
    6
}

/// A group size distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeDist {
    /// Every group has this many members.
    Fixed(usize),
    /// Uniform between `min` and `max` inclusive.
    Uniform {
        /// Smallest group.
        min: usize,
        /// Largest group.
        max: usize,
    },
}

/// How group messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fanout {
    /// Every member has every other as a contact with its relay: each message
    /// is gossiped *and* pushed to each member (outbox), deposited at the
    /// relay of members that are away. Connections: a full mesh per group.
    #[default]
    Pairwise,
    /// Only the creator knows the members (to invite them); each member
    /// connects to `degree` random members and messages travel by gossipsub
    /// and anti-entropy alone.
    Gossip,
}

/// How much people write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Messages each user writes per minute while online (Poisson).
    pub messages_per_user_per_minute: f64,
    /// Share of messages with media. Not simulated yet (media is not in the
    /// node); recorded in the report.
    #[serde(default)]
    pub media_share: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            messages_per_user_per_minute: 1.0,
            media_share: 0.0,
        }
    }
}

/// Users going offline and coming back (their node loses the network).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Long-run share of time a user is offline (0 = no churn).
    #[serde(default)]
    pub offline_fraction: f64,
    /// Mean length of an online session (exponential).
    #[serde(default)]
    pub mean_session: Option<Span>,
}

/// A network split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it starts (from the start of the workload).
    pub at: Span,
    /// When it heals; never if absent.
    #[serde(default)]
    pub heal: Option<Span>,
    /// Share of the nodes (peers and relays) on the first side, picked at random.
    #[serde(default)]
    pub split: Option<f64>,
    /// Or: exactly these peer indices (0-based) on the first side; relays stay on the second.
    #[serde(default)]
    pub side: Option<Vec<usize>>,
}

/// What links do to traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// One-way latency per link, drawn once per pair of nodes.
    #[serde(default)]
    pub latency: LatencyDist,
    /// Probability that a chunk written on a link is lost (0..1); modelled
    /// as a retransmission: it and everything behind it arrive `rto` late.
    #[serde(default)]
    pub loss: f64,
    /// Retransmission timeout charged per lost chunk.
    #[serde(default)]
    pub rto: Option<Span>,
}

/// One-way latency of a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LatencyDist {
    /// The same for every link.
    Constant {
        /// Latency.
        value: Span,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lowest.
        min: Span,
        /// Highest.
        max: Span,
    },
}

impl Default for LatencyDist {
    fn default() -> Self {
        Self::Constant {
            value: Span::default(),
        }
    }
}

/// Node settings that matter for the network's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Seconds between redials of unreachable contacts (doubles up to 5 min).
    #[serde(default = "default_redial")]
    pub redial_secs: u64,
    /// Seconds between anti-entropy syncs with connected members.
    #[serde(default = "default_resync")]
    pub resync_secs: u64,
    /// sled page cache per node, in MiB.
    #[serde(default = "default_cache")]
    pub store_cache_mib: u64,
}

fn default_redial() -> u64 {
    1
}
fn default_resync() -> u64 {
    30
}
fn default_cache() -> u64 {
    4
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            redial_secs: default_redial(),
            resync_secs: default_resync(),
            store_cache_mib: default_cache(),
        }
    }
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("scenario {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("scenario {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What to fix.
        message: String,
    },
}

impl Scenario {
    /// How long setup may wait for `nodes` nodes: `setup_timeout`, or 60 s
    /// plus 0.1 s per node.
    pub fn setup_limit(&self, nodes: usize) -> std::time::Duration {
        self.setup_timeout.map_or_else(
            || std::time::Duration::from_secs(60 + nodes as u64 / 10),
            |span| span.0,
        )
    }

    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        scenario.check().map_err(|message| ScenarioError::Invalid {
            path: origin.into(),
            message,
        })?;
        Ok(scenario)
    }

    /// Every rule a parsed scenario must also meet; the message says what to fix.
    fn check(&self) -> Result<(), String> {
        let peers = self.network.peers;
        if peers < 2 {
            return Err(format!("network.peers = {peers}: need at least 2 peers"));
        }
        if self.duration.0.is_zero() {
            return Err("duration must be more than 0s".into());
        }
        if self.groups.count == 0 {
            return Err("groups.count must be at least 1".into());
        }
        let (min, max) = match self.groups.size {
            SizeDist::Fixed(n) => (n, n),
            SizeDist::Uniform { min, max } => (min, max),
        };
        if min < 2 || min > max {
            return Err(format!(
                "groups.size {min}..{max}: need 2 <= min <= max (a group has at least 2 members)"
            ));
        }
        if max > peers {
            return Err(format!(
                "groups.size up to {max} but network.peers = {peers}: a group cannot be larger than the network"
            ));
        }
        if self.groups.fanout == Fanout::Gossip && self.groups.degree == 0 {
            return Err("groups.degree must be at least 1 with fanout = \"gossip\"".into());
        }
        let rate = self.workload.messages_per_user_per_minute;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!(
                "workload.messages_per_user_per_minute = {rate}: must be 0 or more"
            ));
        }
        fraction("workload.media_share", self.workload.media_share)?;
        fraction("churn.offline_fraction", self.churn.offline_fraction)?;
        if self.churn.offline_fraction >= 1.0 {
            return Err("churn.offline_fraction must be below 1 (someone must be online)".into());
        }
        if self.churn.offline_fraction > 0.0
            && self.churn.mean_session.is_none_or(|s| s.0.is_zero())
        {
            return Err(
                "churn.mean_session (e.g. \"30s\") is needed when churn.offline_fraction > 0"
                    .into(),
            );
        }
        fraction("links.loss", self.links.loss)?;
        if self.links.loss >= 1.0 {
            return Err("links.loss must be below 1 (nothing would arrive)".into());
        }
        if let LatencyDist::Uniform { min, max } = &self.links.latency {
            if min > max {
                return Err("links.latency: min must not exceed max".into());
            }
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let at = format!("partitions[{i}]");
            if let Some(heal) = p.heal {
                if heal <= p.at {
                    return Err(format!("{at}: heal ({heal}) must come after at ({})", p.at));
                }
            }
            match (&p.split, &p.side) {
                (Some(split), None) => {
                    if !(*split > 0.0 && *split < 1.0) {
                        return Err(format!("{at}.split = {split}: must be between 0 and 1"));
                    }
                }
                (None, Some(side)) => {
                    if side.is_empty() || side.iter().any(|&i| i >= peers) {
                        return Err(format!(
                            "{at}.side: list peer indices 0..{} (at least one)",
                            peers - 1
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of split (a share, e.g. 0.5) or side (peer indices)"
                    ))
                }
            }
        }
        if self.node.redial_secs == 0 || self.node.resync_secs == 0 {
            return Err("node.redial_secs and node.resync_secs must be at least 1".into());
        }
        Ok(())
    }
}

fn fraction(name: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("{name} = {value}: must be between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "t"
        duration = "10s"
        network = { peers = 4 }
        groups = { count = 1, size = 3 }
    "#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.drain.ms(), 30_000);
        assert_eq!(s.groups.fanout, Fanout::Pairwise);
        assert_eq!(s.node.redial_secs, 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\nchurn = {{ ofline_fraction = 0.1 }}");
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("ofline_fraction"), "{err}");
    }

    #[test]
    fn group_larger_than_network_is_refused_with_the_fix() {
        let text = MINIMAL.replace("size = 3", "size = 9");
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("cannot be larger than the network"), "{err}");
    }

    #[test]
    fn heal_before_partition_is_refused() {
        let text = format!("{MINIMAL}\n[[partitions]]\nat = \"5s\"\nheal = \"2s\"\nsplit = 0.5\n");
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("must come after"), "{err}");
    }

    #[test]
    fn churn_without_session_length_is_refused() {
        let text = format!("{MINIMAL}\nchurn = {{ offline_fraction = 0.2 }}");
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("mean_session"), "{err}");
    }

    #[test]
    fn bad_duration_says_which_units_work() {
        let text = MINIMAL.replace("\"10s\"", "\"10\"");
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("no unit"), "{err}");
    }
}

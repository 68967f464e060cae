//! The whole run, decided up front from the scenario and the seed: who is in
//! which group, who uses which relay, every link's latency, and every timed
//! event (messages, people going offline and back, splits and heals).
//! A pure function: the same scenario and seed give the same schedule.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::scenario::{Fanout, LatencyDist, Scenario, SizeDist};

/// A node index: peers are `0..peers`, relays `peers..peers + relays`.
pub type NodeIx = usize;

/// A group: its members (the first is the creator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// Members, creator first.
    pub members: Vec<NodeIx>,
}

/// What happens at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `author` writes message number `seq` in `group`.
    Send {
        /// Message sequence number (unique in the run).
        seq: u64,
        /// Writer.
        author: NodeIx,
        /// Group index.
        group: usize,
    },
    /// A peer loses the network.
    Offline {
        /// The peer.
        node: NodeIx,
    },
    /// A peer gets the network back.
    Online {
        /// The peer.
        node: NodeIx,
    },
    /// The network splits: `side` cannot reach the rest.
    Partition {
        /// Partition index in the scenario.
        id: usize,
        /// Nodes on the first side (peers and relays).
        side: Vec<NodeIx>,
    },
    /// A split heals.
    Heal {
        /// Partition index in the scenario.
        id: usize,
    },
}

/// An action at a time (milliseconds after the workload starts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timed {
    /// When.
    pub at_ms: u64,
    /// What.
    pub action: Action,
}

/// Everything decided before the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// The seed used.
    pub seed: u64,
    /// Number of peers.
    pub peers: usize,
    /// Number of relays.
    pub relays: usize,
    /// Groups.
    pub groups: Vec<GroupPlan>,
    /// Each peer's relay (a node index), if there are relays.
    pub relay_of: Vec<Option<NodeIx>>,
    /// `gossip` fan-out: the connections each peer opens at start.
    pub initial_links: Vec<(NodeIx, NodeIx)>,
    /// Timed actions, in time order.
    pub events: Vec<Timed>,
}

impl Schedule {
    /// All nodes.
    pub fn nodes(&self) -> usize {
        self.peers + self.relays
    }

    /// The messages the schedule writes.
    pub fn sends(&self) -> impl Iterator<Item = (u64, u64, NodeIx, usize)> + '_ {
        self.events.iter().filter_map(|t| match t.action {
            Action::Send { seq, author, group } => Some((t.at_ms, seq, author, group)),
            _ => None,
        })
    }
}

impl Schedule {
    /// Whether `a` and `b` could reach each other at `t_ms` by the plan:
    /// both online and on the same side of every split in force.
    pub fn reachable_at(&self, a: NodeIx, b: NodeIx, t_ms: u64) -> bool {
        reachable_at(self.network_changes().as_slice(), a, b, t_ms)
    }

    /// The actions that change who can reach whom (everything but sends).
    pub fn network_changes(&self) -> Vec<&Timed> {
        self.events
            .iter()
            .filter(|t| !matches!(t.action, Action::Send { .. }))
            .collect()
    }
}

/// [`Schedule::reachable_at`] over precomputed [`Schedule::network_changes`].
pub fn reachable_at(changes: &[&Timed], a: NodeIx, b: NodeIx, t_ms: u64) -> bool {
    let mut online = [true, true];
    let mut splits: Vec<(usize, &Vec<NodeIx>)> = Vec::new();
    for timed in changes.iter().take_while(|t| t.at_ms <= t_ms) {
        match &timed.action {
            Action::Offline { node } | Action::Online { node } => {
                let up = matches!(timed.action, Action::Online { .. });
                if *node == a {
                    online[0] = up;
                }
                if *node == b {
                    online[1] = up;
                }
            }
            Action::Partition { id, side } => splits.push((*id, side)),
            Action::Heal { id } => splits.retain(|(i, _)| i != id),
            Action::Send { .. } => {}
        }
    }
    online[0]
        && online[1]
        && splits
            .iter()
            .all(|(_, side)| side.contains(&a) == side.contains(&b))
}

/// Independent random streams, so that changing one part of a scenario (say
/// the message rate) does not reshuffle another (the groups).
fn stream(seed: u64, part: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(part);
    rng
}

/// The one-way latency of the link between `a` and `b`, in microseconds:
/// drawn from the scenario's distribution, fixed per pair and seed.
pub fn link_latency_us(scenario: &Scenario, seed: u64, a: NodeIx, b: NodeIx) -> u64 {
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    match &scenario.links.latency {
        LatencyDist::Constant { value } => value.0.as_micros() as u64,
        LatencyDist::Uniform { min, max } => {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (lo << 32 | hi).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            rng.set_stream(5);
            rng.gen_range(min.0.as_micros() as u64..=max.0.as_micros() as u64)
        }
    }
}

/// Plans the run. Pure: depends only on its arguments.
pub fn plan(scenario: &Scenario, seed: u64) -> Schedule {
    let peers = scenario.network.peers;
    let relays = scenario.network.relays;
    let duration_ms = scenario.duration.ms();

    // Groups: random members, creator first.
    let mut rng = stream(seed, 1);
    let all: Vec<NodeIx> = (0..peers).collect();
    let groups: Vec<GroupPlan> = (0..scenario.groups.count)
        .map(|_| {
            let size = match scenario.groups.size {
                SizeDist::Fixed(n) => n,
                SizeDist::Uniform { min, max } => rng.gen_range(min..=max),
            };
            let mut members: Vec<NodeIx> = all.choose_multiple(&mut rng, size).copied().collect();
            members.sort_unstable();
            let creator = rng.gen_range(0..members.len());
            members.swap(0, creator);
            GroupPlan { members }
        })
        .collect();
    let relay_of = (0..peers)
        .map(|p| (relays > 0).then(|| peers + p % relays))
        .collect();

    // Gossip fan-out: each member links to `degree` random fellow members.
    let mut initial_links = Vec::new();
    if scenario.groups.fanout == Fanout::Gossip {
        let mut rng = stream(seed, 2);
        for group in &groups {
            for &member in &group.members {
                let others: Vec<NodeIx> = group
                    .members
                    .iter()
                    .copied()
                    .filter(|&m| m != member)
                    .collect();
                for &other in others.choose_multiple(&mut rng, scenario.groups.degree) {
                    initial_links.push((member, other));
                }
            }
        }
    }

    let mut events = Vec::new();
    // Churn: alternating online and offline sessions per peer.
    let offline_spans = churn(scenario, seed, peers, duration_ms, &mut events);
    // Partitions.
    let mut rng = stream(seed, 3);
    for (id, p) in scenario.partitions.iter().enumerate() {
        let side = match (&p.split, &p.side) {
            (_, Some(side)) => side.clone(),
            (Some(split), None) => {
                let nodes: Vec<NodeIx> = (0..peers + relays).collect();
                let count =
                    ((nodes.len() as f64 * split).round() as usize).clamp(1, nodes.len() - 1);
                let mut side: Vec<NodeIx> =
                    nodes.choose_multiple(&mut rng, count).copied().collect();
                side.sort_unstable();
                side
            }
            (None, None) => Vec::new(),
        };
        events.push(Timed {
            at_ms: p.at.ms(),
            action: Action::Partition { id, side },
        });
        if let Some(heal) = p.heal {
            events.push(Timed {
                at_ms: heal.ms(),
                action: Action::Heal { id },
            });
        }
    }
    // Workload: a Poisson process per peer over its online time; each
    // message goes to one of the peer's groups at random.
    let mut memberships: Vec<Vec<usize>> = vec![Vec::new(); peers];
    for (g, group) in groups.iter().enumerate() {
        for &m in &group.members {
            memberships[m].push(g);
        }
    }
    let rate_per_ms = scenario.workload.messages_per_user_per_minute / 60_000.0;
    let mut sends = Vec::new();
    if rate_per_ms > 0.0 {
        let mut rng = stream(seed, 4);
        for (peer, groups_of) in memberships.iter().enumerate() {
            if groups_of.is_empty() {
                continue;
            }
            let mut t = 0.0f64;
            loop {
                t += exponential(&mut rng, 1.0 / rate_per_ms);
                if t >= duration_ms as f64 {
                    break;
                }
                let at_ms = t as u64;
                let group = groups_of[rng.gen_range(0..groups_of.len())];
                let offline = offline_spans[peer]
                    .iter()
                    .any(|&(from, to)| from <= at_ms && at_ms < to);
                if !offline {
                    sends.push((at_ms, peer, group));
                }
            }
        }
    }
    sends.sort_unstable();
    for (seq, (at_ms, author, group)) in sends.into_iter().enumerate() {
        events.push(Timed {
            at_ms,
            action: Action::Send {
                seq: seq as u64,
                author,
                group,
            },
        });
    }
    // Stable: actions at the same millisecond keep their insertion order.
    events.sort_by_key(|t| t.at_ms);
    Schedule {
        seed,
        peers,
        relays,
        groups,
        relay_of,
        initial_links,
        events,
    }
}

/// Adds churn events; returns each peer's offline spans `[from, to)`.
fn churn(
    scenario: &Scenario,
    seed: u64,
    peers: usize,
    duration_ms: u64,
    events: &mut Vec<Timed>,
) -> Vec<Vec<(u64, u64)>> {
    let mut spans = vec![Vec::new(); peers];
    let f = scenario.churn.offline_fraction;
    let Some(session) = scenario.churn.mean_session.filter(|_| f > 0.0) else {
        return spans;
    };
    let online_mean = session.ms() as f64;
    let offline_mean = online_mean * f / (1.0 - f);
    let mut rng = stream(seed, 6);
    for (peer, spans) in spans.iter_mut().enumerate() {
        let mut t = 0.0f64;
        let mut online = rng.gen::<f64>() >= f;
        if !online {
            events.push(Timed {
                at_ms: 0,
                action: Action::Offline { node: peer },
            });
        }
        while t < duration_ms as f64 {
            let mean = if online { online_mean } else { offline_mean };
            let next = (t + exponential(&mut rng, mean)).min(duration_ms as f64);
            if !online {
                spans.push((t as u64, next as u64));
            }
            t = next;
            online = !online;
            // Everyone is back when the workload ends, so the drain can deliver.
            let at_ms = t as u64;
            if online {
                events.push(Timed {
                    at_ms,
                    action: Action::Online { node: peer },
                });
            } else if t < duration_ms as f64 {
                events.push(Timed {
                    at_ms,
                    action: Action::Offline { node: peer },
                });
            }
        }
    }
    spans
}

fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    -mean * u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::parse(
            r#"
            name = "t"
            duration = "60s"
            network = { peers = 30, relays = 2 }
            groups = { count = 5, size = { min = 3, max = 8 } }
            workload = { messages_per_user_per_minute = 4 }
            churn = { offline_fraction = 0.3, mean_session = "10s" }
            links = { latency = { dist = "uniform", min = "5ms", max = "50ms" } }
            [[partitions]]
            at = "10s"
            heal = "20s"
            split = 0.5
            "#,
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn same_seed_same_schedule() {
        let s = scenario();
        assert_eq!(plan(&s, 42), plan(&s, 42));
        assert_eq!(link_latency_us(&s, 42, 3, 9), link_latency_us(&s, 42, 9, 3));
    }

    #[test]
    fn different_seed_different_schedule() {
        let s = scenario();
        assert_ne!(plan(&s, 1).events, plan(&s, 2).events);
    }

    #[test]
    fn nobody_writes_while_offline_and_everyone_ends_online() {
        let schedule = plan(&scenario(), 7);
        let mut online = vec![true; schedule.peers];
        let mut sends = 0;
        for t in &schedule.events {
            match t.action {
                Action::Offline { node } => online[node] = false,
                Action::Online { node } => online[node] = true,
                Action::Send { author, group, .. } => {
                    sends += 1;
                    assert!(online[author], "peer {author} writes while offline");
                    assert!(schedule.groups[group].members.contains(&author));
                }
                _ => {}
            }
        }
        assert!(sends > 0);
        assert!(
            online.iter().all(|&o| o),
            "someone is still offline at the end"
        );
    }

    #[test]
    fn reachability_follows_outages_and_splits() {
        let schedule = plan(&scenario(), 7);
        let changes = schedule.network_changes();
        let (side, at, heal) = schedule
            .events
            .iter()
            .find_map(|t| match &t.action {
                Action::Partition { side, .. } => Some((side.clone(), t.at_ms, 20_000)),
                _ => None,
            })
            .unwrap();
        let a = side[0];
        let b = (0..schedule.peers).find(|n| !side.contains(n)).unwrap();
        let online_both = |t: u64| {
            [a, b].iter().all(|&n| {
                let mut up = true;
                for c in &changes {
                    if c.at_ms > t {
                        break;
                    }
                    match c.action {
                        Action::Offline { node } if node == n => up = false,
                        Action::Online { node } if node == n => up = true,
                        _ => {}
                    }
                }
                up
            })
        };
        let mid = (at + heal) / 2;
        assert!(!reachable_at(&changes, a, b, mid));
        assert_eq!(
            reachable_at(&changes, a, b, heal + 1),
            online_both(heal + 1)
        );
    }

    #[test]
    fn events_are_in_time_order_and_groups_have_their_sizes() {
        let schedule = plan(&scenario(), 3);
        assert!(schedule.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        for g in &schedule.groups {
            assert!((3..=8).contains(&g.members.len()));
        }
        let partitions = schedule
            .events
            .iter()
            .filter(|t| matches!(t.action, Action::Partition { .. }))
            .count();
        assert_eq!(partitions, 1);
    }
}

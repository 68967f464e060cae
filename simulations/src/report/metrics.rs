//! The numbers of a run: delivery, latency percentiles, convergence after
//! each heal, bytes per delivered message, duplicates, relay storage, memory,
//! CPU.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::{
    run::{Played, Records},
    schedule::{NodeIx, Schedule},
};

/// The report (report.json).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Peers.
    pub peers: usize,
    /// Relays.
    pub relays: usize,
    /// Groups and their sizes.
    pub group_sizes: Vec<usize>,
    /// Seconds spent starting nodes and setting up groups.
    pub setup_secs: f64,
    /// Seconds from the workload's start to the end of the drain.
    pub run_secs: f64,
    /// Messages written.
    pub messages_sent: u64,
    /// `send` calls that failed.
    pub send_errors: u64,
    /// Member receptions expected (each message × its group's other members).
    pub expected_deliveries: u64,
    /// Receptions seen as events before the drain ended.
    pub delivered: u64,
    /// Receptions found in the members' histories at the end (the truth
    /// when a subscriber lagged).
    pub delivered_in_history: u64,
    /// `delivered_in_history / expected_deliveries`.
    pub delivery_ratio: f64,
    /// Whether every expected reception happened before the drain ended.
    pub all_delivered: bool,
    /// Up to 50 missing receptions: message and member.
    pub undelivered_sample: Vec<Undelivered>,
    /// Send → member's `Event::Message`, milliseconds, every reception.
    pub latency_ms: Percentiles,
    /// The same, only for receptions by members that the plan had online and
    /// on the author's side of every split when the message was written (the
    /// live path; the rest waited for a return or a heal by design).
    pub latency_ms_reachable: Percentiles,
    /// One entry per split.
    pub convergence: Vec<Convergence>,
    /// Network use.
    pub bytes: Bytes,
    /// Receptions of a message already received (display is exactly-once: expect 0).
    pub duplicates: u64,
    /// Events missed by the simulator's subscribers (latency data lost, not messages).
    pub events_lagged: u64,
    /// Relay storage high-water mark, all relays together.
    pub relay_high_water: RelayStorage,
    /// Memory.
    pub memory: Memory,
    /// CPU time of the whole simulator process (every node shares it).
    pub cpu: Cpu,
    /// Signed changes sent and received during the workload, all nodes
    /// together, by path; each copy counts (a change received twice counts
    /// twice), so `received_by_* / delivered` is the copies per reception.
    pub changes: meshchat_node::Traffic,
    /// Connections opened, and refused by splits or outages.
    pub connections: Connections,
    /// What the workload's media share did.
    pub media: String,
    /// The same messages over bare gossipsub on the same network, run just
    /// before (`run --floor`, gossip scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<crate::floor::FloorReport>,
}

/// A missing reception.
#[derive(Debug, Clone, Serialize)]
pub struct Undelivered {
    /// Message sequence number.
    pub seq: u64,
    /// Author.
    pub author: NodeIx,
    /// Member that does not have it.
    pub member: NodeIx,
    /// When it was written, seconds after the workload started.
    pub sent_s: f64,
}

/// Latency percentiles.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 95th.
    pub p95: Option<f64>,
    /// 99th.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// How long after a heal until everyone agreed.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// Partition index.
    pub partition: usize,
    /// When it started, seconds after the workload started.
    pub at_s: f64,
    /// When it healed, if it did.
    pub healed_s: Option<f64>,
    /// Receptions of messages written before the heal that were still
    /// missing at the heal.
    pub missing_at_heal: u64,
    /// Seconds after the heal until every message written before it had
    /// reached every member; `None` if that never happened in the run.
    pub converged_after_s: Option<f64>,
}

/// Network use.
#[derive(Debug, Clone, Serialize)]
pub struct Bytes {
    /// Written by all nodes during setup.
    pub setup: u64,
    /// Written by all nodes from the workload's start to the end.
    pub workload: u64,
    /// `workload / delivered_in_history`.
    pub per_delivered_message: Option<f64>,
    /// The workload's bytes by application protocol, most first, with the
    /// connection layer's share (noise, yamux, handshakes) as its own line.
    pub by_protocol: Vec<ProtocolUse>,
}

/// What one protocol wrote during the workload.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolUse {
    /// The protocol multistream-select agreed on, or [`CONNECTION`].
    pub protocol: String,
    /// Bytes all nodes wrote on its substreams.
    pub bytes: u64,
    /// `bytes / delivered_in_history`.
    pub per_delivered_message: Option<f64>,
    /// Share of the workload's bytes.
    pub share: f64,
}

/// The line for what the connections wrote beyond their substreams: yamux
/// frame headers and window updates, noise framing and handshakes, the
/// connection's own negotiation and the simulator's 4-byte preamble.
pub const CONNECTION: &str = "(connection: noise + yamux framing, handshakes)";

/// The workload's bytes by protocol: `by_protocol` counted on substreams,
/// and `total` minus their sum as the [`CONNECTION`] line.
pub fn protocol_breakdown(
    total: u64,
    by_protocol: &BTreeMap<String, u64>,
    delivered: u64,
) -> Vec<ProtocolUse> {
    let on_substreams: u64 = by_protocol.values().sum();
    let mut lines: Vec<(String, u64)> = by_protocol
        .iter()
        .filter(|(_, b)| **b > 0)
        .map(|(p, b)| (p.clone(), *b))
        .collect();
    lines.push((CONNECTION.to_owned(), total.saturating_sub(on_substreams)));
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    lines
        .into_iter()
        .map(|(protocol, bytes)| ProtocolUse {
            protocol,
            bytes,
            per_delivered_message: (delivered > 0)
                .then(|| (bytes as f64 / delivered as f64 * 10.0).round() / 10.0),
            share: if total == 0 {
                0.0
            } else {
                (bytes as f64 / total as f64 * 10_000.0).round() / 10_000.0
            },
        })
        .collect()
}

/// Relay storage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayStorage {
    /// Envelopes held at the peak.
    pub messages: u64,
    /// Envelope bytes held at the peak.
    pub bytes: u64,
}

/// Memory.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Process RSS before any node started.
    pub baseline_rss_bytes: u64,
    /// Highest RSS seen.
    pub peak_rss_bytes: u64,
    /// `(peak - baseline) / nodes`.
    pub per_node_bytes: u64,
    /// The nodes' databases on disk (tmpfs counts as memory), per node.
    pub store_bytes_per_node: u64,
}

/// CPU time of the simulator's process: every node runs in it, so this is
/// the machine's budget the scenario used, and whether it ran out.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// Logical cores this process could use.
    pub cores: usize,
    /// CPU seconds (user + system, all threads) spent starting nodes and
    /// setting up groups; `None` where /proc is not there.
    pub setup_secs: Option<f64>,
    /// CPU seconds from the workload's start to the end of the drain.
    pub workload_secs: Option<f64>,
    /// `workload_secs / (run_secs × cores)`: near 1, the machine was
    /// saturated and latencies include waiting for a core.
    pub workload_busy: Option<f64>,
    /// `workload_secs / delivered`, in milliseconds: what one reception
    /// cost the machine, everything of the run included.
    pub ms_per_delivery: Option<f64>,
}

/// Connections.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Connection ends opened.
    pub opened: u64,
    /// Attempts refused by a split or an outage.
    pub refused: u64,
}

/// Percentiles of `values` (sorted in place).
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        Some((values[i] * 10.0).round() / 10.0)
    };
    Percentiles {
        count: values.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: values.last().map(|v| (v * 10.0).round() / 10.0),
    }
}

/// Latencies of every recorded reception, in milliseconds.
pub fn latencies(records: &Records) -> Vec<f64> {
    records
        .received
        .iter()
        .filter_map(|((seq, _), at)| records.sent.get(seq).map(|s| (at - s.at_ms).max(0.0)))
        .collect()
}

/// Latencies of receptions by members reachable from the author when it wrote.
pub fn reachable_latencies(records: &Records, schedule: &Schedule) -> Vec<f64> {
    let changes = schedule.network_changes();
    let planned: std::collections::HashMap<u64, u64> =
        schedule.sends().map(|(at, seq, _, _)| (seq, at)).collect();
    records
        .received
        .iter()
        .filter_map(|((seq, member), at)| {
            let sent = records.sent.get(seq)?;
            let when = *planned.get(seq)?;
            crate::schedule::reachable_at(&changes, sent.author, *member, when)
                .then(|| (at - sent.at_ms).max(0.0))
        })
        .collect()
}

/// Convergence after each split's heal.
pub fn convergence(
    records: &Records,
    played: &Played,
    in_history: &HashSet<(u64, NodeIx)>,
) -> Vec<Convergence> {
    played
        .splits
        .iter()
        .map(|split| {
            let Some(heal) = split.healed_ms else {
                return Convergence {
                    partition: split.id,
                    at_s: split.at_ms / 1_000.0,
                    healed_s: None,
                    missing_at_heal: 0,
                    converged_after_s: None,
                };
            };
            let mut missing = 0;
            let mut last: Option<f64> = Some(heal);
            for (seq, sent) in records.sent.iter().filter(|(_, s)| s.at_ms < heal) {
                for member in &sent.recipients {
                    match records.received.get(&(*seq, *member)) {
                        Some(&at) if at <= heal => {}
                        Some(&at) => {
                            missing += 1;
                            last = last.map(|l| l.max(at));
                        }
                        None => {
                            missing += 1;
                            // Arrived without an event seen (lag): no time known.
                            if !in_history.contains(&(*seq, *member)) {
                                last = None;
                            }
                        }
                    }
                }
            }
            Convergence {
                partition: split.id,
                at_s: split.at_ms / 1_000.0,
                healed_s: Some(heal / 1_000.0),
                missing_at_heal: missing,
                converged_after_s: last.map(|l| ((l - heal) / 1_000.0 * 1000.0).round() / 1000.0),
            }
        })
        .collect()
}

/// Missing receptions (by the histories), first 50 by time.
pub fn undelivered(records: &Records, in_history: &HashSet<(u64, NodeIx)>) -> Vec<Undelivered> {
    let mut out: Vec<Undelivered> = records
        .sent
        .iter()
        .flat_map(|(seq, s)| {
            s.recipients
                .iter()
                .filter(|m| !in_history.contains(&(*seq, **m)))
                .map(|&member| Undelivered {
                    seq: *seq,
                    author: s.author,
                    member,
                    sent_s: s.at_ms / 1_000.0,
                })
        })
        .collect();
    out.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s).then(a.member.cmp(&b.member)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!(p.p50, Some(50.0));
        assert_eq!(p.p95, Some(95.0));
        assert_eq!(p.p99, Some(99.0));
        assert_eq!(p.max, Some(100.0));
        assert_eq!(percentiles(&mut []).p50, None);
    }

    #[test]
    fn breakdown_sorts_protocols_and_charges_the_rest_to_the_connection() {
        let by: BTreeMap<String, u64> = [("/a".to_string(), 300), ("/b".to_string(), 500)]
            .into_iter()
            .collect();
        let lines = protocol_breakdown(1_000, &by, 10);
        let names: Vec<&str> = lines.iter().map(|l| l.protocol.as_str()).collect();
        assert_eq!(names, ["/b", "/a", CONNECTION]);
        assert_eq!(lines[2].bytes, 200);
        assert_eq!(lines[0].per_delivered_message, Some(50.0));
        assert_eq!(lines[0].share, 0.5);
    }
}

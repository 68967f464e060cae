//! Playing the schedule in real time: each action at its moment (the
//! schedule's own timing, not a wait for the network), a sampler taking the
//! network's pulse every second, then a drain that waits, event by event,
//! for outstanding deliveries up to the scenario's limit.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use indicatif::ProgressBar;
use meshchat_node::crdt::ChatId;
use serde::Serialize;
use tokio::{task::JoinSet, time::Instant};

use super::{
    memory::rss_bytes,
    nodes::SimNode,
    recorder::{Recorder, SentRecord, TEXT_PREFIX},
};
use crate::{
    fault::FaultNet,
    schedule::{Action, Schedule},
};

/// At most this many `send` calls in flight; the schedule waits beyond it.
const MAX_SENDS_IN_FLIGHT: usize = 4096;

/// One sample of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds after the workload started.
    pub t_s: f64,
    /// Messages written so far.
    pub sent: u64,
    /// Receptions expected for them.
    pub expected: u64,
    /// Receptions so far.
    pub delivered: u64,
    /// Bytes all nodes have written since the workload started.
    pub bytes: u64,
    /// The same, per application protocol (on its substreams; the rest of
    /// `bytes` is the connection layer's).
    pub by_protocol: BTreeMap<String, u64>,
    /// Nodes online.
    pub online: usize,
    /// Envelopes held by all relays.
    pub relay_messages: u64,
    /// Envelope bytes held by all relays.
    pub relay_bytes: u64,
    /// Resident memory of the process.
    pub rss_bytes: u64,
}

/// When each split started and healed, ms after the workload started.
#[derive(Debug, Clone, Serialize)]
pub struct SplitTimes {
    /// Partition index.
    pub id: usize,
    /// Nodes on the first side.
    pub side: Vec<usize>,
    /// Start.
    pub at_ms: f64,
    /// Heal, if it healed.
    pub healed_ms: Option<f64>,
}

/// What playing the schedule produced beyond the recorder's records.
#[derive(Debug, Default)]
pub struct Played {
    /// The time series.
    pub samples: Vec<Sample>,
    /// Splits.
    pub splits: Vec<SplitTimes>,
    /// Whether every expected reception happened before the drain ended.
    pub drained: bool,
    /// Milliseconds from the workload's start to the end of the drain.
    pub end_ms: f64,
}

/// Plays `schedule` from now on; `bar` counts milliseconds.
pub(super) async fn play(
    schedule: &Schedule,
    nodes: &[SimNode],
    chats: &[ChatId],
    net: &Arc<FaultNet>,
    recorder: &Recorder,
    (duration, drain): (Duration, Duration),
    bar: &ProgressBar,
) -> Played {
    let start = Instant::now();
    let bytes_at_start = Baseline {
        total: net.bytes_total(),
        by_protocol: net.bytes_by_protocol(),
    };
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_every_second(
        nodes[schedule.peers..].to_vec(),
        net.clone(),
        recorder.clone(),
        bytes_at_start.clone(),
        samples.clone(),
    ));
    let mut splits: Vec<SplitTimes> = Vec::new();
    let mut sends = JoinSet::new();
    for timed in &schedule.events {
        tokio::time::sleep_until(start + Duration::from_millis(timed.at_ms)).await;
        bar.set_position(timed.at_ms);
        match &timed.action {
            Action::Send { seq, author, group } => {
                while sends.len() >= MAX_SENDS_IN_FLIGHT {
                    let _ = sends.join_next().await;
                }
                while sends.try_join_next().is_some() {}
                let recipients = schedule.groups[*group]
                    .members
                    .iter()
                    .copied()
                    .filter(|m| m != author)
                    .collect();
                recorder.sent(
                    *seq,
                    SentRecord {
                        at_ms: recorder.now_ms(),
                        author: *author,
                        group: *group,
                        recipients,
                    },
                );
                let node = nodes[*author].node.clone();
                let chat = chats[*group];
                let text = format!("{TEXT_PREFIX}{seq}");
                let recorder = recorder.clone();
                sends.spawn(async move {
                    if let Err(error) = node.chats().send(chat, text).await {
                        tracing::warn!(%error, "send failed");
                        recorder.with(|r| r.send_errors += 1);
                    }
                });
            }
            Action::Offline { node } => net.set_online(*node, false),
            Action::Online { node } => net.set_online(*node, true),
            Action::Partition { id, side } => {
                net.split(*id, side);
                splits.push(SplitTimes {
                    id: *id,
                    side: side.clone(),
                    at_ms: recorder.now_ms(),
                    healed_ms: None,
                });
            }
            Action::Heal { id } => {
                net.heal(*id);
                let now = recorder.now_ms();
                if let Some(split) = splits.iter_mut().find(|s| s.id == *id) {
                    split.healed_ms = Some(now);
                }
            }
        }
    }
    tokio::time::sleep_until(start + duration).await;
    while sends.join_next().await.is_some() {}
    // Drain: wait for the outstanding deliveries, event by event.
    let deadline = start + duration + drain;
    let ticker = {
        let bar = bar.clone();
        let total = (duration + drain).as_millis() as u64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                bar.set_position((start.elapsed().as_millis() as u64).min(total));
            }
        })
    };
    let drained = recorder
        .wait_until(deadline, |r| r.delivered >= r.expected)
        .await;
    ticker.abort();
    sampler.abort();
    let _ = sampler.await;
    let end_ms = recorder.now_ms();
    // One last sample at the end.
    let last = take_sample(&nodes[schedule.peers..], net, recorder, &bytes_at_start).await;
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    samples.push(last);
    Played {
        samples,
        splits,
        drained,
        end_ms,
    }
}

/// The byte counters when the workload started.
#[derive(Debug, Clone)]
struct Baseline {
    total: u64,
    by_protocol: BTreeMap<String, u64>,
}

async fn sample_every_second(
    relays: Vec<SimNode>,
    net: Arc<FaultNet>,
    recorder: Recorder,
    bytes_at_start: Baseline,
    out: Arc<Mutex<Vec<Sample>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let sample = take_sample(&relays, &net, &recorder, &bytes_at_start).await;
        out.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
    }
}

async fn take_sample(
    relays: &[SimNode],
    net: &FaultNet,
    recorder: &Recorder,
    bytes_at_start: &Baseline,
) -> Sample {
    let (mut relay_messages, mut relay_bytes) = (0, 0);
    for relay in relays {
        if let Ok(Some(stats)) = relay.node.network().status().await.map(|s| s.mailbox) {
            relay_messages += stats.messages;
            relay_bytes += stats.bytes;
        }
    }
    let (sent, expected, delivered) =
        recorder.with(|r| (r.sent.len() as u64, r.expected, r.delivered));
    Sample {
        t_s: recorder.now_ms() / 1_000.0,
        sent,
        expected,
        delivered,
        bytes: net.bytes_total().saturating_sub(bytes_at_start.total),
        by_protocol: net
            .bytes_by_protocol()
            .into_iter()
            .map(|(p, b)| {
                let before = bytes_at_start.by_protocol.get(&p).copied().unwrap_or(0);
                (p, b.saturating_sub(before))
            })
            .collect(),
        online: net.online_count(),
        relay_messages,
        relay_bytes,
        rss_bytes: rss_bytes().unwrap_or(0),
    }
}

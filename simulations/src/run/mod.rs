//! Running a scenario: plan, start the nodes on the fault network, set up
//! groups, play the schedule, read the truth from every member's history,
//! stop the nodes and compute the report.

mod cpu;
mod execute;
mod memory;
mod nodes;
mod recorder;
mod setup;
mod traffic;

use std::{collections::HashSet, path::PathBuf, sync::Arc, time::Duration};

use futures::{stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use meshchat_node::crdt::ChatId;
use tokio::time::Instant;

pub use cpu::cpu_secs;
pub use execute::{Played, Sample, SplitTimes};
pub use nodes::{SimNode, StartError};
pub use recorder::{Recorder, Records, SentRecord, TEXT_PREFIX};
pub use setup::SetupError;

use crate::{
    fault::{FaultNet, LinkModel},
    report::{self, Report},
    scenario::Scenario,
    schedule::{link_latency_us, plan, NodeIx, Schedule},
};

/// How a run is done.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Where the nodes' data dirs go (default: /dev/shm if present, else the system temp dir).
    pub data_root: Option<PathBuf>,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The schedule that was played.
    pub schedule: Schedule,
    /// The time series.
    pub samples: Vec<Sample>,
    /// Every recorded latency, ms.
    pub latencies_ms: Vec<f64>,
    /// When each split started and healed.
    pub splits: Vec<SplitTimes>,
}

/// A run that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// No temporary directory for the nodes' data.
    #[error("cannot create a temporary directory for the nodes: {0}")]
    TempDir(std::io::Error),
    /// Nodes did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Setup failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Runs `scenario` to the end and returns its report.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Outcome, RunError> {
    let seed = options.seed.unwrap_or(scenario.seed);
    let schedule = plan(scenario, seed);
    let baseline_rss = memory::rss_bytes().unwrap_or(0);
    let root = temp_root(options)?;
    let net = network(scenario, seed, schedule.nodes());
    let bar = progress_bar(options.progress, scenario);
    let setup_start = Instant::now();
    let cpu_start = cpu::cpu_secs();
    bar.set_message("starting nodes");
    let nodes = nodes::start_nodes(scenario, &schedule, &net, root.path()).await?;
    tracing::info!(secs = setup_start.elapsed().as_secs_f64(), "nodes started");
    let recorder = Recorder::new(setup_start);
    let watchers: Vec<_> = nodes
        .iter()
        .map(|n| recorder.watch(n.ix, &n.node))
        .collect();
    bar.set_message("setting up groups");
    let chats = match setup::set_up(scenario, &schedule, &nodes, &recorder).await {
        Ok(chats) => chats,
        Err(e) => {
            nodes::stop_nodes(&nodes).await;
            return Err(e.into());
        }
    };
    let setup_bytes = net.bytes_total();
    let setup_secs = setup_start.elapsed().as_secs_f64();
    let cpu_setup_end = cpu::cpu_secs();
    let traffic_at_start = traffic::total(&nodes).await;
    recorder.restart_clock(Instant::now());
    bar.set_message("running");
    let played = execute::play(
        &schedule,
        &nodes,
        &chats,
        &net,
        &recorder,
        (scenario.duration.0, scenario.drain.0),
        &bar,
    )
    .await;
    let cpu_run_end = cpu::cpu_secs();
    let changes = traffic::since(&traffic_at_start, &traffic::total(&nodes).await);
    bar.set_message("checking histories");
    let in_history = holdings(&schedule, &nodes, &chats).await;
    let peak_rss = played
        .samples
        .iter()
        .map(|s| s.rss_bytes)
        .max()
        .unwrap_or(0)
        .max(memory::rss_bytes().unwrap_or(0));
    let store_bytes = memory::dir_bytes(root.path());
    bar.set_message("stopping nodes");
    nodes::stop_nodes(&nodes).await;
    for w in watchers {
        w.abort();
    }
    bar.finish_with_message("done");
    let latencies_ms = recorder.with(|r| report::latencies(r));
    let report = recorder.with(|records| Report {
        scenario: scenario.name.clone(),
        seed,
        peers: schedule.peers,
        relays: schedule.relays,
        group_sizes: schedule.groups.iter().map(|g| g.members.len()).collect(),
        setup_secs: round3(setup_secs),
        run_secs: round3(played.end_ms / 1_000.0),
        messages_sent: records.sent.len() as u64,
        send_errors: records.send_errors,
        expected_deliveries: records.expected,
        delivered: records.delivered,
        delivered_in_history: expected_in_history(records, &in_history),
        delivery_ratio: ratio(expected_in_history(records, &in_history), records.expected),
        all_delivered: played.drained,
        undelivered_sample: report::undelivered(records, &in_history)
            .into_iter()
            .take(50)
            .collect(),
        latency_ms: report::percentiles(&mut latencies_ms.clone()),
        latency_ms_reachable: report::percentiles(&mut report::reachable_latencies(
            records, &schedule,
        )),
        convergence: report::convergence(records, &played, &in_history),
        bytes: report::Bytes {
            setup: setup_bytes,
            workload: played.samples.last().map(|s| s.bytes).unwrap_or(0),
            per_delivered_message: {
                let delivered = expected_in_history(records, &in_history);
                let bytes = played.samples.last().map(|s| s.bytes).unwrap_or(0);
                (delivered > 0).then(|| (bytes as f64 / delivered as f64).round())
            },
            by_protocol: played
                .samples
                .last()
                .map(|s| {
                    report::protocol_breakdown(
                        s.bytes,
                        &s.by_protocol,
                        expected_in_history(records, &in_history),
                    )
                })
                .unwrap_or_default(),
        },
        duplicates: records.duplicates,
        events_lagged: records.lagged,
        relay_high_water: report::RelayStorage {
            messages: played.samples.iter().map(|s| s.relay_messages).max().unwrap_or(0),
            bytes: played.samples.iter().map(|s| s.relay_bytes).max().unwrap_or(0),
        },
        memory: report::Memory {
            baseline_rss_bytes: baseline_rss,
            peak_rss_bytes: peak_rss,
            per_node_bytes: peak_rss.saturating_sub(baseline_rss) / schedule.nodes() as u64,
            store_bytes_per_node: store_bytes / schedule.nodes() as u64,
        },
        cpu: cpu_used(
            cpu_start.zip(cpu_setup_end).map(|(a, b)| b - a),
            cpu_setup_end.zip(cpu_run_end).map(|(a, b)| b - a),
            played.end_ms / 1_000.0,
            records.delivered,
        ),
        changes,
        connections: report::Connections {
            opened: net.connections(),
            refused: net.refused(),
        },
        media: if scenario.workload.media_share > 0.0 {
            format!(
                "media_share = {} not simulated yet (media is not in the node); every message is text",
                scenario.workload.media_share
            )
        } else {
            "none".into()
        },
        floor: None,
    });
    Ok(Outcome {
        report,
        schedule,
        samples: played.samples,
        latencies_ms,
        splits: played.splits,
    })
}

/// The report's CPU section: seconds of setup and of the workload (with
/// its drain), and what they say about the run.
fn cpu_used(
    setup_secs: Option<f64>,
    workload_secs: Option<f64>,
    run_secs: f64,
    delivered: u64,
) -> report::Cpu {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    report::Cpu {
        cores,
        setup_secs: setup_secs.map(round3),
        workload_secs: workload_secs.map(round3),
        workload_busy: workload_secs
            .filter(|_| run_secs > 0.0)
            .map(|s| round3(s / (run_secs * cores as f64))),
        ms_per_delivery: workload_secs
            .filter(|_| delivered > 0)
            .map(|s| round3(s * 1e3 / delivered as f64)),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn expected_in_history(records: &Records, in_history: &HashSet<(u64, NodeIx)>) -> u64 {
    records
        .sent
        .iter()
        .map(|(seq, s)| {
            s.recipients
                .iter()
                .filter(|m| in_history.contains(&(*seq, **m)))
                .count() as u64
        })
        .sum()
}

/// Which (message, member) pairs each member's history holds at the end.
async fn holdings(
    schedule: &Schedule,
    nodes: &[SimNode],
    chats: &[ChatId],
) -> HashSet<(u64, NodeIx)> {
    let pairs: Vec<(NodeIx, ChatId)> = schedule
        .groups
        .iter()
        .zip(chats)
        .flat_map(|(g, chat)| g.members.iter().map(move |&m| (m, *chat)))
        .collect();
    let found: Vec<Vec<(u64, NodeIx)>> = stream::iter(pairs)
        .map(|(m, chat)| async move {
            match nodes[m].node.chats().history_quiet(chat).await {
                Ok(history) => history
                    .into_iter()
                    .filter_map(|e| {
                        e.message
                            .text
                            .strip_prefix(TEXT_PREFIX)
                            .and_then(|s| s.parse::<u64>().ok())
                            .map(|seq| (seq, m))
                    })
                    .collect(),
                Err(error) => {
                    tracing::warn!(node = m, %error, "cannot read history");
                    Vec::new()
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    found.into_iter().flatten().collect()
}

/// The simulated network of `scenario`: its nodes and links.
pub(crate) fn network(scenario: &Scenario, seed: u64, nodes: usize) -> Arc<FaultNet> {
    let latency_scenario = scenario.clone();
    FaultNet::new(
        nodes,
        LinkModel {
            latency_us: Arc::new(move |a, b| link_latency_us(&latency_scenario, seed, a, b)),
            loss: scenario.links.loss,
            rto: scenario
                .links
                .rto
                .map(|s| s.0)
                .unwrap_or(Duration::from_millis(200)),
        },
        seed,
    )
}

fn temp_root(options: &RunOptions) -> Result<tempfile::TempDir, RunError> {
    let shm = std::path::Path::new("/dev/shm");
    let base = options
        .data_root
        .clone()
        .or_else(|| shm.is_dir().then(|| shm.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("meshchat-sim-")
        .tempdir_in(base)
        .map_err(RunError::TempDir)
}

fn progress_bar(show: bool, scenario: &Scenario) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let total = (scenario.duration.0 + scenario.drain.0).as_millis() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

//! End-to-end runs of scenarios over real nodes (libp2p on the in-memory
//! fault network, Automerge, sled): the shipped smoke scenario delivers
//! everything and converges after its heal; a permanent split is reported
//! honestly as undelivered messages.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_sim::{report, run, schedule::Action, RunOptions, Scenario};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_delivers_everything_and_converges_after_its_heal() {
    init_tracing();
    let scenario = Scenario::parse(include_str!("../scenarios/smoke.toml"), "smoke.toml").unwrap();
    let outcome = run(&scenario, &RunOptions::default()).await.unwrap();
    let report = &outcome.report;
    assert!(report.messages_sent > 0);
    assert_eq!(report.send_errors, 0);
    assert_eq!(
        report.delivery_ratio, 1.0,
        "undelivered: {:?}",
        report.undelivered_sample
    );
    assert!(report.all_delivered);
    assert_eq!(report.delivered, report.expected_deliveries);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.convergence.len(), 1);
    let split = &report.convergence[0];
    assert!(split.healed_s.is_some());
    assert!(
        split.converged_after_s.is_some(),
        "no convergence after the heal: {split:?}"
    );
    // The fault layer carried the traffic and the split refused connections.
    assert!(report.bytes.workload > 0);
    assert!(report.connections.refused > 0);
    bytes_are_broken_down_by_protocol(&outcome);
    // The output directory holds every file and plot.
    let dir = tempfile::tempdir().unwrap();
    report::write_all(dir.path(), &outcome).unwrap();
    for file in [
        "report.json",
        "protocols.csv",
        "timeseries.csv",
        "latencies.csv",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    for plot in [
        "latency_cdf",
        "delivery",
        "bandwidth",
        "bandwidth_by_protocol",
    ] {
        for ext in ["png", "svg"] {
            let path = dir.path().join(format!("{plot}.{ext}"));
            assert!(std::fs::metadata(&path).unwrap().len() > 1_000, "{path:?}");
        }
    }
}

/// The workload's bytes split into the protocols that wrote them: the
/// message paths are there, and the lines add up to the total.
fn bytes_are_broken_down_by_protocol(outcome: &meshchat_sim::Outcome) {
    let bytes = &outcome.report.bytes;
    let line = |name: &str| {
        bytes
            .by_protocol
            .iter()
            .find(|l| l.protocol == name)
            .map_or(0, |l| l.bytes)
    };
    assert!(line("/meshchat/sync/1") > 0, "{:?}", bytes.by_protocol);
    assert!(
        bytes
            .by_protocol
            .iter()
            .any(|l| l.protocol.starts_with("/meshsub/") && l.bytes > 0),
        "{:?}",
        bytes.by_protocol
    );
    assert!(line(report::CONNECTION) > 0);
    let sum: u64 = bytes.by_protocol.iter().map(|l| l.bytes).sum();
    assert_eq!(sum, bytes.workload);
    // Unattributed substream bytes (refused negotiations) stay a small share.
    assert!(line(meshchat_sim::fault::UNNEGOTIATED) * 20 < bytes.workload);
    // And over time: the last sample holds the same per-protocol counts.
    let last = outcome.samples.last().unwrap();
    assert_eq!(
        last.by_protocol.get("/meshchat/sync/1").copied(),
        Some(line("/meshchat/sync/1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_split_is_reported_as_undelivered_messages() {
    init_tracing();
    let scenario = Scenario::parse(
        r#"
        name = "permanent-split"
        seed = 3
        duration = "6s"
        drain = "4s"
        network = { peers = 6 }
        groups = { count = 1, size = 6 }
        workload = { messages_per_user_per_minute = 30 }
        [[partitions]]
        at = "1s"
        side = [0, 1, 2]
        "#,
        "permanent.toml",
    )
    .unwrap();
    let outcome = run(&scenario, &RunOptions::default()).await.unwrap();
    let report = &outcome.report;
    let side: Vec<usize> = outcome
        .schedule
        .events
        .iter()
        .find_map(|t| match &t.action {
            Action::Partition { side, .. } => Some(side.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!report.all_delivered);
    assert!(report.delivery_ratio < 1.0, "{report:?}");
    assert!(report.delivered_in_history < report.expected_deliveries);
    let missing = report.expected_deliveries - report.delivered_in_history;
    assert!(missing > 0);
    // Every missing reception is across the split: nothing within a side
    // was lost. (A message written just before the split may have been in
    // flight when it started, so the time it was written is not asserted.)
    for u in &report.undelivered_sample {
        assert_ne!(
            side.contains(&u.author),
            side.contains(&u.member),
            "{u:?} is within one side"
        );
    }
    assert_eq!(report.convergence.len(), 1);
    assert_eq!(report.convergence[0].healed_s, None);
    assert_eq!(report.convergence[0].converged_after_s, None);
}

/// Peers connect to their contacts and their relay, not to everyone the
/// relay has met: a DHT lookup must not hand out (and so dial) peers that
/// are not DHT servers. Each wanted link may be opened from both sides
/// (simultaneous dials) and is counted at both ends, and a reconnect or two
/// is fine; a full mesh is far above that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_to_their_contacts_and_relays_not_to_everyone() {
    init_tracing();
    let scenario = Scenario::parse(
        r#"
        name = "few-links"
        seed = 5
        duration = "8s"
        drain = "4s"
        network = { peers = 24, relays = 1 }
        groups = { count = 3, size = 3, fanout = "pairwise" }
        workload = { messages_per_user_per_minute = 20 }
        "#,
        "few-links.toml",
    )
    .unwrap();
    let outcome = run(&scenario, &RunOptions::default()).await.unwrap();
    let schedule = &outcome.schedule;
    let mut wanted = std::collections::HashSet::new();
    for group in &schedule.groups {
        for &a in &group.members {
            for &b in &group.members {
                if a < b {
                    wanted.insert((a, b));
                }
            }
        }
    }
    for (peer, relay) in schedule.relay_of.iter().enumerate() {
        if let Some(relay) = relay {
            wanted.insert((peer.min(*relay), peer.max(*relay)));
        }
    }
    let opened = outcome.report.connections.opened;
    let full_mesh = (schedule.nodes() * (schedule.nodes() - 1)) as u64;
    assert!(
        opened <= 6 * wanted.len() as u64,
        "{opened} connection ends for {} wanted links (a full mesh is {full_mesh} ends)",
        wanted.len()
    );
}

/// The floor plays a gossip scenario's messages over bare gossipsub on the
/// same network: every member receives every message of its group, and
/// the latencies are no less than the links' (10 ms at least here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_delivers_every_message_over_bare_gossipsub() {
    init_tracing();
    let scenario = Scenario::parse(
        r#"
        name = "floor"
        seed = 9
        duration = "4s"
        drain = "10s"
        network = { peers = 12 }
        groups = { count = 2, size = 6, fanout = "gossip", degree = 3 }
        workload = { messages_per_user_per_minute = 30 }
        links = { latency = { dist = "uniform", min = "10ms", max = "20ms" } }
        "#,
        "floor.toml",
    )
    .unwrap();
    let floor = meshchat_sim::floor::floor(&scenario, scenario.seed)
        .await
        .unwrap();
    assert!(floor.messages > 0);
    assert_eq!(floor.expected_deliveries, floor.messages as u64 * 5);
    assert_eq!(floor.delivered, floor.expected_deliveries, "{floor:?}");
    assert!(floor.latency_ms.p50.unwrap() >= 10.0, "{floor:?}");
}

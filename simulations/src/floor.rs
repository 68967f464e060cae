//! The floor under a gossip scenario: the same network (nodes, links and
//! their latencies, the same initial connections) and the same messages at
//! the same moments, carried by bare gossipsub swarms with the nodes'
//! gossipsub settings, and nothing of meshchat (no signatures, sealing,
//! Automerge, storage or sync). What the group's latency and CPU cost
//! would be if meshchat cost nothing above its transport; the scenario's
//! `run` report reads against it (docs/SIMULATIONS.md).
//!
//! Churn and splits are not played: for a scenario with them this is the
//! floor of its live path. Every member of every group subscribes to one
//! topic per group; a
//! message is a frame of the scenario's typical sealed size, unique per
//! message (gossipsub's ids are content hashes, as the nodes').

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode},
    identity::Keypair,
    swarm::SwarmEvent,
    Swarm,
};
use serde::Serialize;
use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior},
};

use crate::{
    fault::{fault_transport, FaultNet},
    report::{percentiles, Percentiles},
    run::{cpu_secs, network},
    scenario::{Fanout, Scenario},
    schedule::{plan, NodeIx},
};

/// Bytes of one message frame: a sealed one-change frame of the nodes
/// (`big-group`'s gossip bytes per published frame are 0.6–0.7 kB).
pub const FRAME_BYTES: usize = 700;

/// Receptions waiting for the collector (a swarm waits beyond it).
const RECEPTIONS_QUEUED: usize = 65_536;
/// Publishes waiting for one swarm.
const COMMANDS_QUEUED: usize = 64;

/// What the floor run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Swarms (the scenario's peers; relays take no part in gossip).
    pub peers: usize,
    /// Messages published.
    pub messages: usize,
    /// Receptions expected: every other member of the message's group.
    pub expected_deliveries: u64,
    /// Receptions seen by the end of the drain.
    pub delivered: u64,
    /// From publish to reception, ms.
    pub latency_ms: Percentiles,
    /// Seconds from the start until every member's mesh had a peer.
    pub mesh_secs: f64,
    /// CPU seconds of the workload and drain (all threads).
    pub workload_cpu_secs: Option<f64>,
    /// The same per reception, ms.
    pub cpu_ms_per_delivery: Option<f64>,
}

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FloorError {
    /// The scenario's groups do not use gossip.
    #[error("the floor covers gossip groups only (fanout = \"gossip\")")]
    NotGossip,
    /// A swarm could not listen on its simulated address.
    #[error("node {0} could not listen: {1}")]
    Listen(NodeIx, String),
    /// A dial could not start.
    #[error("node {0} could not dial node {1}: {2}")]
    Dial(NodeIx, NodeIx, String),
    /// Some member never had a mesh peer.
    #[error("the members' meshes did not form within {0:?}")]
    NoMesh(Duration),
}

enum Command {
    Publish { group: usize, data: Vec<u8> },
}

/// A reception: which message, when.
type Reception = (u64, Instant);

/// Runs the scenario's messages over bare gossipsub.
pub async fn floor(scenario: &Scenario, seed: u64) -> Result<FloorReport, FloorError> {
    if scenario.groups.fanout != Fanout::Gossip {
        return Err(FloorError::NotGossip);
    }
    let schedule = plan(scenario, seed);
    let nodes = schedule.peers;
    let net = network(scenario, seed, schedule.nodes());
    let started = Instant::now();
    let mut groups_of: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    for (g, group) in schedule.groups.iter().enumerate() {
        for &m in &group.members {
            groups_of[m].push(g);
        }
    }
    let mut swarms = Vec::with_capacity(nodes);
    for (ix, groups) in groups_of.iter().enumerate() {
        let mut swarm = bare_swarm(&net, ix);
        for &g in groups {
            let _ = swarm.behaviour_mut().subscribe(&topic(g));
        }
        swarm
            .listen_on(net.addr(ix))
            .map_err(|e| FloorError::Listen(ix, e.to_string()))?;
        swarms.push(swarm);
    }
    // The nodes' connections: each creator to its members, then the links.
    let mut dials: Vec<(NodeIx, NodeIx)> = Vec::new();
    for group in &schedule.groups {
        for &b in &group.members[1..] {
            dials.push((group.members[0], b));
        }
    }
    dials.extend(schedule.initial_links.iter().copied());
    for (a, b) in dials {
        if a < nodes && b < nodes {
            swarms[a]
                .dial(net.addr(b))
                .map_err(|e| FloorError::Dial(a, b, e.to_string()))?;
        }
    }
    // One task per swarm; each says when its meshes have a peer.
    let (ready_tx, mut ready_rx) = mpsc::channel::<NodeIx>(nodes.max(1));
    let (seen_tx, mut seen_rx) = mpsc::channel::<Reception>(RECEPTIONS_QUEUED);
    let mut commands = Vec::with_capacity(nodes);
    let mut tasks = tokio::task::JoinSet::new();
    for (ix, swarm) in swarms.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(COMMANDS_QUEUED);
        commands.push(tx);
        tasks.spawn(run_swarm(
            swarm,
            groups_of[ix].clone(),
            ix,
            rx,
            ready_tx.clone(),
            seen_tx.clone(),
        ));
    }
    drop((ready_tx, seen_tx));
    let mesh_limit = scenario.setup_limit(nodes);
    let members = groups_of.iter().filter(|g| !g.is_empty()).count();
    let mut ready = 0;
    let waited = tokio::time::timeout(mesh_limit, async {
        while ready < members {
            if ready_rx.recv().await.is_none() {
                break;
            }
            ready += 1;
        }
    })
    .await;
    if waited.is_err() || ready < members {
        return Err(FloorError::NoMesh(mesh_limit));
    }
    let mesh_secs = started.elapsed().as_secs_f64();

    // The schedule's messages at their moments.
    let sends: Vec<(u64, u64, NodeIx, usize)> = schedule.sends().collect();
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let expected: u64 = sends
        .iter()
        .map(|(_, _, _, g)| schedule.groups[*g].members.len() as u64 - 1)
        .sum();
    let cpu_start = cpu_secs();
    let workload_start = Instant::now();
    let player = {
        let sent_at = sent_at.clone();
        let commands = commands.clone();
        let sends = sends.clone();
        tokio::spawn(async move {
            for (at_ms, seq, author, group) in sends {
                tokio::time::sleep_until(workload_start + Duration::from_millis(at_ms)).await;
                let mut data = seq.to_be_bytes().to_vec();
                data.resize(FRAME_BYTES, 0xa5);
                sent_at
                    .lock()
                    .expect("not poisoned")
                    .insert(seq, Instant::now());
                let _ = commands[author]
                    .send(Command::Publish { group, data })
                    .await;
            }
        })
    };
    let deadline = workload_start + scenario.duration.0 + scenario.drain.0;
    let mut latencies: Vec<f64> = Vec::with_capacity(expected as usize);
    let mut pending: Vec<Reception> = Vec::new();
    while (latencies.len() as u64) < expected {
        let Ok(Some(reception)) = tokio::time::timeout_at(deadline, seen_rx.recv()).await else {
            break;
        };
        pending.push(reception);
        // A reception may overtake the record of its send by a hair.
        let sent = sent_at.lock().expect("not poisoned");
        pending.retain(|(seq, at)| match sent.get(seq) {
            Some(sent) => {
                latencies.push(at.saturating_duration_since(*sent).as_secs_f64() * 1e3);
                false
            }
            None => true,
        });
    }
    let cpu_end = cpu_secs();
    player.abort();
    tasks.abort_all();
    let delivered = latencies.len() as u64;
    let workload_cpu_secs = cpu_start.zip(cpu_end).map(|(a, b)| b - a);
    Ok(FloorReport {
        scenario: scenario.name.clone(),
        seed,
        peers: nodes,
        messages: sends.len(),
        expected_deliveries: expected,
        delivered,
        latency_ms: percentiles(&mut latencies),
        mesh_secs,
        workload_cpu_secs,
        cpu_ms_per_delivery: workload_cpu_secs
            .filter(|_| delivered > 0)
            .map(|s| s * 1e3 / delivered as f64),
    })
}

fn topic(group: usize) -> IdentTopic {
    IdentTopic::new(format!("/meshchat-floor/group/{group}"))
}

/// A gossipsub-only swarm on the simulated network, configured as the
/// nodes configure theirs (content ids, no gossipsub signatures, 1 MiB
/// frames), without validation (the floor judges nothing).
fn bare_swarm(net: &Arc<FaultNet>, ix: NodeIx) -> Swarm<gossipsub::Behaviour> {
    let key = Keypair::generate_ed25519();
    let net = net.clone();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(move |key| fault_transport(net, ix, key))
        .expect("the fault transport")
        .with_behaviour(|_| {
            let config = gossipsub::ConfigBuilder::default()
                .message_id_fn(|m| {
                    use sha2::Digest;
                    gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                })
                .validation_mode(ValidationMode::Anonymous)
                .max_transmit_size(1024 * 1024)
                .build()
                .expect("valid gossipsub settings");
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
                .expect("valid gossipsub behaviour")
        })
        .expect("the behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

async fn run_swarm(
    mut swarm: Swarm<gossipsub::Behaviour>,
    groups: Vec<usize>,
    ix: NodeIx,
    mut commands: mpsc::Receiver<Command>,
    ready: mpsc::Sender<NodeIx>,
    seen: mpsc::Sender<Reception>,
) {
    // The mesh grows on gossipsub's heartbeat, which emits no event.
    let mut check = tokio::time::interval(Duration::from_millis(100));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut announced = groups.is_empty();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                    let seq = message.data.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
                    if let Some(seq) = seq {
                        let _ = seen.send((seq, Instant::now())).await;
                    }
                }
            }
            command = commands.recv() => match command {
                Some(Command::Publish { group, data }) => {
                    let _ = swarm.behaviour_mut().publish(topic(group), data);
                }
                None => return,
            },
            _ = check.tick(), if !announced => {
                let behaviour = swarm.behaviour();
                if groups.iter().all(|g| behaviour.mesh_peers(&topic(*g).hash()).next().is_some()) {
                    announced = true;
                    let _ = ready.send(ix).await;
                }
            }
        }
    }
}

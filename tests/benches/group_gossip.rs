//! Group delivery over gossipsub: a group of real meshchat nodes on loopback,
//! measured in the same run and the same harness as bare libp2p gossipsub
//! swarms (TCP + noise + yamux on 127.0.0.1, one topic, signed messages,
//! validated before forwarding, same topology, same payload size), bare
//! gossipsub that appends each message to a file and `fdatasync`s it before
//! accepting it (the floor of a durable delivery), and bare gossipsub that
//! writes and flushes each message to sled before accepting it (what a
//! meshchat node's store does before it forwards; sled's flush is no fsync).
//!
//! Every node runs in its own OS process (this binary, started again as a
//! child; the parent drives the children over stdin/stdout), as real nodes
//! do. This also keeps each process at one sled database: with many in one
//! process, sled 0.34's shared thread pool deadlocks in `flush_async`
//! (spacejam/sled#1241), which stalled an in-process version of this bench.
//! Timestamps are taken inside the nodes' processes from the system clock.
//!
//! Topology: full mesh (every pair of nodes connected; meshchat nodes through
//! `add_contact`). Measuring starts once the gossipsub meshes are built: a
//! bare child reports its mesh size for the topic and the parent waits for
//! every member's to reach `mesh_n_low` (or all its peers); a meshchat node
//! does not expose its mesh, so its cluster waits until gossipsub's schedule
//! (first heartbeat 5 s after start, then every second) has run two
//! heartbeats after the last member joined the group. Measurements:
//! - latency: one message in flight at a time (the next is sent once every
//!   member has the previous one, after a pause), senders taking turns; the
//!   time from `send` to each other member's `Event::Message`;
//! - throughput: several senders send their share back to back (a meshchat
//!   child keeps up to 64 `send`s in flight); the time until every member
//!   has every message.
//!
//! Run: `cargo bench -p meshchat-tests --bench group_gossip`
//!
//! Environment (all optional):
//! - `MESHCHAT_BENCH_NODES`          group size (default 20)
//! - `MESHCHAT_BENCH_LAT_MSGS`       messages in the latency run (default 200)
//! - `MESHCHAT_BENCH_LAT_GAP_MS`     pause between latency messages (default 10)
//! - `MESHCHAT_BENCH_TPUT_MSGS`      messages in the throughput run (default 100)
//! - `MESHCHAT_BENCH_SENDERS`        senders in the throughput run (default 4)
//! - `MESHCHAT_BENCH_TIMEOUT_S`      longest wait for one latency message (default 20)
//! - `MESHCHAT_BENCH_LAT_BUDGET_S`   the latency run stops sending after this long (default 120)
//! - `MESHCHAT_BENCH_TPUT_TIMEOUT_S` longest wait for the throughput run (default 60)
//! - `RUST_LOG`                      enables the nodes' logs on stderr
//!
//! Timings are printed, never asserted.

use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode},
    swarm::SwarmEvent,
    Multiaddr, PeerId,
};
use meshchat_node::{
    crdt::{
        e2e::{SealedChange, SenderKey},
        ChatId, ChatReplica, GroupSettings, Identity,
    },
    protocol::{encode_frame, GossipMessage, GossipPayload},
    DataDir, Event, NodeConfig,
};
use meshchat_tests::{
    durable::SyncedLog,
    net::{bare_swarm, listen},
    stats::{env_or, ms, ratio, ratio_line, Stats, Target},
    Net,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin},
    sync::{broadcast, mpsc},
};

/// About 120 bytes; the first 9 carry the message's sequence number.
const TEXT: &str = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. 0123456789 abcdefghij klmnopqrstu";
/// gossipsub's default schedule (the node's and the bare swarms'): the first
/// heartbeat, which builds the meshes, 5 s after the swarm starts, then one
/// a second.
const HEARTBEAT_INITIAL_DELAY: Duration = Duration::from_secs(5);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// gossipsub's default `mesh_n_low`: below it a heartbeat grafts more peers.
const MESH_N_LOW: usize = 5;
/// How often a bare child looks at its mesh size (heartbeats change it
/// without a swarm event).
const MESH_POLL: Duration = Duration::from_millis(50);
/// Sends a meshchat child keeps going at once (each `send` returns after
/// the flush covering it; group commit covers the overlapping ones).
const SENDS_IN_FLIGHT: usize = 64;
/// Lines buffered between the children and the parent.
const LINE_CAPACITY: usize = 1 << 16;
/// Set in a child's environment: which kind of node it runs.
const CHILD_ENV: &str = "MESHCHAT_BENCH_CHILD";
/// Set in a bare child's environment: the payload size.
const PAYLOAD_ENV: &str = "MESHCHAT_BENCH_PAYLOAD";
const TOPIC: &str = "/bench/group/1";

fn env_u64(name: &str, default: u64) -> u64 {
    env_or(name, default)
}

/// Nanoseconds since the Unix epoch: one clock shared by all processes.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn since(from_ns: u64, to_ns: u64) -> Duration {
    Duration::from_nanos(to_ns.saturating_sub(from_ns))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Meshchat,
    Bare,
    BareFsync,
    BareFlush,
}

impl Kind {
    const ALL: [Self; 4] = [Self::Meshchat, Self::Bare, Self::BareFsync, Self::BareFlush];

    fn name(self) -> &'static str {
        match self {
            Self::Meshchat => "meshchat",
            Self::Bare => "bare gossipsub",
            Self::BareFsync => "bare gossipsub + fdatasync",
            Self::BareFlush => "bare gossipsub + sled flush",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Meshchat => "meshchat",
            Self::Bare => "bare",
            Self::BareFsync => "bare-fsync",
            Self::BareFlush => "bare-flush",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

#[derive(Clone, Copy)]
struct Params {
    nodes: usize,
    lat_msgs: u64,
    lat_gap: Duration,
    tput_msgs: u64,
    senders: usize,
    msg_timeout: Duration,
    tput_timeout: Duration,
    lat_budget: Duration,
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Ok(tag) = std::env::var(CHILD_ENV) {
        let kind = Kind::from_tag(&tag).expect("known child kind");
        // Each node gets what a small desktop daemon would: its own runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(child(kind));
        return;
    }
    let nodes = (env_u64("MESHCHAT_BENCH_NODES", 20) as usize).max(2);
    let params = Params {
        nodes,
        lat_msgs: env_u64("MESHCHAT_BENCH_LAT_MSGS", 200).max(1),
        lat_gap: Duration::from_millis(env_u64("MESHCHAT_BENCH_LAT_GAP_MS", 10)),
        tput_msgs: env_u64("MESHCHAT_BENCH_TPUT_MSGS", 100).max(1),
        senders: (env_u64("MESHCHAT_BENCH_SENDERS", 4) as usize).clamp(1, nodes),
        msg_timeout: Duration::from_secs(env_u64("MESHCHAT_BENCH_TIMEOUT_S", 20).max(1)),
        tput_timeout: Duration::from_secs(env_u64("MESHCHAT_BENCH_TPUT_TIMEOUT_S", 60).max(1)),
        lat_budget: Duration::from_secs(env_u64("MESHCHAT_BENCH_LAT_BUDGET_S", 120).max(1)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(params));
}

async fn run(p: Params) {
    let started = Instant::now();
    let frame = gossip_frame_len();
    println!(
        "group_gossip: {} nodes (one process each, 2 tokio workers each), full mesh ({} connections), \
         one group/topic; latency {} msgs (one in flight, {} ms pause); throughput {} msgs from {} \
         senders; {} cores",
        p.nodes,
        p.nodes * (p.nodes - 1) / 2,
        p.lat_msgs,
        p.lat_gap.as_millis(),
        p.tput_msgs,
        p.senders,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "payload: meshchat text {} bytes -> gossip frame {frame} bytes; bare payload {frame} bytes",
        TEXT.len()
    );
    println!();

    let mut results = Vec::new();
    for kind in Kind::ALL {
        let mut cluster = Cluster::start(kind, p.nodes, frame).await;
        let r = measure(&mut cluster, p).await;
        cluster.stop().await;
        results.push(r);
    }
    let [ours, bare, bare_fsync, bare_flush] = <[Results; 4]>::try_from(results)
        .ok()
        .expect("four clusters");
    // The latency run starts after the warm-up (one message per member),
    // the throughput run after both: each floor is measured at the history
    // its run had, since a remote apply grows with the document.
    let model = data_model_cost(p.nodes, p.nodes, p.lat_msgs as usize);
    let model_tput = data_model_cost(p.nodes, p.nodes + p.lat_msgs as usize, p.tput_msgs as usize);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = Floor::of(&model, &model_tput, p.nodes - 1, cores);

    println!();
    println!(
        "Latency: send -> each other member's delivery, one message in flight ({} members each)",
        p.nodes - 1
    );
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>6}",
        "", "msgs", "p50", "p99", "mean", "max", "p50 1st 10%", "p50 last 10%", "lost"
    );
    let row = |name: &str, r: &Results| {
        println!(
            "{:<34} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>6}",
            name,
            r.lat_msgs,
            ms(r.latency.p50),
            ms(r.latency.p99),
            ms(r.latency.mean),
            ms(r.latency.max),
            ms(r.first_tenth.p50),
            ms(r.last_tenth.p50),
            r.lost
        )
    };
    row("meshchat (send -> Event::Message)", &ours);
    row("bare gossipsub", &bare);
    row("bare gossipsub + fdatasync", &bare_fsync);
    row("bare gossipsub + sled flush", &bare_flush);
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "meshchat send() returns",
        "",
        ms(ours.send_returns.p50),
        ms(ours.send_returns.p99),
        ms(ours.send_returns.mean),
        ms(ours.send_returns.max),
    );
    println!(
        "ratio meshchat / bare: p50 {:.1}x, p99 {:.1}x; meshchat / (bare + sled flush): p50 {:.1}x, p99 {:.1}x",
        ratio(ours.latency.p50, bare.latency.p50),
        ratio(ours.latency.p99, bare.latency.p99),
        ratio(ours.latency.p50, bare_flush.latency.p50),
        ratio(ours.latency.p99, bare_flush.latency.p99),
    );
    println!(
        "{}",
        ratio_line(
            "meshchat p50 / (bare + fdatasync) p50",
            ratio(ours.latency.p50, bare_fsync.latency.p50),
            Target::AtMost(1.3),
        )
    );
    println!(
        "data model alone, no I/O: author writes+signs {} (p50), a member verifies+judges+applies {} (p50)",
        ms(model.write.p50),
        ms(model.receive.p50),
    );
    let latency_floor = bare_fsync.latency.p50 + floor.median_member;
    println!(
        "floor: bare + fdatasync p50 + the data model's work before the median member has it \
         (write, then {} members' applies on {cores} cores) = {}; meshchat p50 / floor: {:.2}x; \
         the target, 1.3x of bare + fdatasync, is {:.2}x of this floor",
        floor.members_before_median,
        ms(latency_floor),
        ratio(ours.latency.p50, latency_floor),
        1.3 * bare_fsync.latency.p50.as_secs_f64() / latency_floor.as_secs_f64(),
    );
    println!();
    println!(
        "Throughput: {} msgs sent back to back by {} senders, until all {} other members have each",
        p.tput_msgs,
        p.senders,
        p.nodes - 1
    );
    let trow = |name: &str, t: &Throughput| {
        println!(
            "{:<34} sends done {:>10}, all delivered {:>10}: {:>8.1} msg/s ({:.0} deliveries/s){}",
            name,
            ms(t.sends_done),
            ms(t.elapsed),
            t.msgs_per_sec(),
            t.delivered as f64 / t.elapsed.as_secs_f64(),
            if t.complete() {
                String::new()
            } else {
                format!(" INCOMPLETE: {} of {} deliveries", t.delivered, t.expected)
            },
        )
    };
    trow("meshchat", &ours.throughput);
    trow("bare gossipsub", &bare.throughput);
    trow("bare gossipsub + fdatasync", &bare_fsync.throughput);
    trow("bare gossipsub + sled flush", &bare_flush.throughput);
    println!(
        "ratio meshchat / (bare + fdatasync): {:.3}x; meshchat / (bare + sled flush): {:.3}x (msg/s)",
        ours.throughput.msgs_per_sec() / bare_fsync.throughput.msgs_per_sec(),
        ours.throughput.msgs_per_sec() / bare_flush.throughput.msgs_per_sec(),
    );
    println!(
        "{}",
        ratio_line(
            "meshchat msg/s / bare gossipsub msg/s",
            ours.throughput.msgs_per_sec() / bare.throughput.msgs_per_sec(),
            Target::AtLeast(0.5),
        )
    );
    println!(
        "floor: the data model alone on {cores} cores (one write + {} applies per message, mean, \
         at the run's history: write {}, apply {}) = {:.1} msg/s, {:.2}x bare gossipsub; \
         meshchat / that: {:.2}x",
        p.nodes - 1,
        ms(model_tput.write.mean),
        ms(model_tput.receive.mean),
        floor.msgs_per_sec,
        floor.msgs_per_sec / bare.throughput.msgs_per_sec(),
        ours.throughput.msgs_per_sec() / floor.msgs_per_sec,
    );
    println!();
    println!(
        "meshchat event watchers lagged: {}; gossipsub SlowPeer events (bare): {}",
        ours.lagged,
        bare.slow_peers + bare_fsync.slow_peers + bare_flush.slow_peers
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

/// The data model's own CPU per group message, no network and no disk.
struct ModelCost {
    /// The author writes and signs it (once per message).
    write: Stats,
    /// A member verifies, judges and applies it (once per member).
    receive: Stats,
}

/// [`ModelCost`] in a group of `members`, measured over `msgs` messages at
/// one member (every member's replica does the same work) after `history`
/// messages that are not timed.
fn data_model_cost(members: usize, history: usize, msgs: usize) -> ModelCost {
    let author = Identity::generate();
    let others: Vec<_> = (1..members)
        .map(|_| Identity::generate().public())
        .collect();
    let (mut replica, genesis) =
        ChatReplica::create_group(&author, "bench", &others, GroupSettings::default())
            .expect("create group");
    let mut member = ChatReplica::new(replica.kind().clone());
    member.receive([genesis.change], 0);
    let (mut write, mut receive) = (Vec::new(), Vec::new());
    for seq in 0..(history + msgs) as u64 {
        let t0 = Instant::now();
        let written = replica
            .write_message(&author, &text_for(seq), None, 1_700_000_000_000)
            .expect("write");
        let t1 = Instant::now();
        let ingested = member.receive([written.change], 0);
        let t2 = Instant::now();
        assert_eq!(ingested.stored.len(), 1, "the member applies it");
        if seq >= history as u64 {
            write.push(t1 - t0);
            receive.push(t2 - t1);
        }
    }
    ModelCost {
        write: Stats::of(write),
        receive: Stats::of(receive),
    }
}

/// What the data model alone allows on this machine, with every member's
/// work spread perfectly over its cores.
struct Floor {
    /// Applies done, `cores` at a time, before the median member has it.
    members_before_median: usize,
    /// Write, then those applies, `cores` at a time (p50 costs).
    median_member: Duration,
    /// Messages per second if the cores did nothing but write and apply.
    msgs_per_sec: f64,
}

impl Floor {
    /// `model` at the latency run's history, `model_tput` at the
    /// throughput run's.
    fn of(model: &ModelCost, model_tput: &ModelCost, receivers: usize, cores: usize) -> Self {
        let members_before_median = receivers.div_ceil(2);
        let rounds = members_before_median.div_ceil(cores) as u32;
        let per_message = model_tput.write.mean + model_tput.receive.mean * receivers as u32;
        Self {
            members_before_median,
            median_member: model.write.p50 + model.receive.p50 * rounds,
            msgs_per_sec: cores as f64 / per_message.as_secs_f64(),
        }
    }
}

/// The size of the gossip frame carrying one group message: the node's
/// `GossipMessage::Sealed` of a `GossipPayload` holding the change.
fn gossip_frame_len() -> usize {
    let admin = Identity::generate();
    let others: Vec<Identity> = (0..2).map(|_| Identity::generate()).collect();
    let keys: Vec<_> = others.iter().map(Identity::public).collect();
    let (mut replica, _) =
        ChatReplica::create_group(&admin, "bench", &keys, GroupSettings::default())
            .expect("create group");
    let mut change = None;
    for seq in 0..2 {
        change = Some(
            replica
                .write_message(&admin, &text_for(seq), None, 1_700_000_000_000)
                .expect("write")
                .change,
        );
    }
    let payload = encode_frame(&GossipPayload {
        changes: vec![change.expect("a change")],
    });
    let key = SenderKey::generate(replica.id(), admin.public(), 0);
    let sealed = SealedChange::seal(&key, &payload).expect("seal");
    encode_frame(&GossipMessage::Sealed(sealed)).len()
}

fn text_for(seq: u64) -> String {
    format!("#{seq:07};{}", &TEXT[9..])
}

fn seq_of_text(text: &str) -> Option<u64> {
    text.strip_prefix('#')?.get(..7)?.parse().ok()
}

fn payload_for(seq: u64, len: usize) -> Vec<u8> {
    let mut data = seq.to_be_bytes().to_vec();
    data.resize(len.max(8), b'x');
    data
}

fn seq_of_payload(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

// ---------------------------------------------------------------- statistics

#[derive(Default)]
struct Throughput {
    sends_done: Duration,
    elapsed: Duration,
    msgs: u64,
    delivered: usize,
    expected: usize,
}

impl Throughput {
    fn complete(&self) -> bool {
        self.expected > 0 && self.delivered == self.expected
    }

    /// Messages per second (an incomplete run counts its deliveries pro rata).
    fn msgs_per_sec(&self) -> f64 {
        let msgs = self.msgs as f64 * self.delivered as f64 / self.expected.max(1) as f64;
        msgs / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Results {
    lat_msgs: usize,
    latency: Stats,
    first_tenth: Stats,
    last_tenth: Stats,
    send_returns: Stats,
    lost: usize,
    throughput: Throughput,
    lagged: usize,
    slow_peers: usize,
}

// ---------------------------------------------------------------- parent

/// What a child reports, one line each.
enum Report {
    /// Started: its peer id and listen addresses.
    Ready(PeerId, Vec<Multiaddr>),
    /// Peers it is connected to (meshchat) or that subscribed to the topic (bare).
    Peers(usize),
    /// Peers in its gossipsub mesh for the topic (bare only).
    Mesh(usize),
    /// It created the group.
    Created(ChatId),
    /// It joined the group.
    Joined(ChatId),
    /// It sent message `seq`: the send started and returned at these times.
    Sent(u64, u64, u64),
    /// It received message `seq` at this time.
    Received(u64, u64),
    Lagged(usize),
    SlowPeer,
}

fn parse_report(line: &str) -> Option<Report> {
    let mut w = line.split_whitespace();
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
    Some(match w.next()? {
        "ready" => {
            let peer = w.next()?.parse().ok()?;
            Report::Ready(peer, w.filter_map(|a| a.parse().ok()).collect())
        }
        "peers" => Report::Peers(num(w.next())? as usize),
        "mesh" => Report::Mesh(num(w.next())? as usize),
        "created" => Report::Created(w.next()?.parse().ok()?),
        "joined" => Report::Joined(w.next()?.parse().ok()?),
        "sent" => Report::Sent(num(w.next())?, num(w.next())?, num(w.next())?),
        "msg" => Report::Received(num(w.next())?, num(w.next())?),
        "lagged" => Report::Lagged(num(w.next())? as usize),
        "slow" => Report::SlowPeer,
        _ => return None,
    })
}

/// The children of one kind, and the merged stream of their reports.
struct Cluster {
    kind: Kind,
    children: Vec<(Child, ChildStdin)>,
    reports: mpsc::Receiver<(usize, Report)>,
    lagged: usize,
    slow_peers: usize,
    /// Each child's last reported mesh size (bare children only).
    mesh: Vec<usize>,
    /// A child stopped answering: the measurements were cut short.
    stalled: bool,
}

impl Cluster {
    /// Starts `n` children, connects them in a full mesh and, for meshchat,
    /// creates the group with all of them.
    async fn start(kind: Kind, n: usize, payload: usize) -> Self {
        let t = Instant::now();
        let exe = std::env::current_exe().expect("own executable");
        let (tx, reports) = mpsc::channel(LINE_CAPACITY);
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let mut child = tokio::process::Command::new(&exe)
                .env(CHILD_ENV, kind.tag())
                .env(PAYLOAD_ENV, payload.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("start child node");
            let stdin = child.stdin.take().expect("child stdin");
            let stdout = child.stdout.take().expect("child stdout");
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(report) = parse_report(&line) {
                        if tx.send((i, report)).await.is_err() {
                            return;
                        }
                    }
                }
            });
            children.push((child, stdin));
        }
        let mut cluster = Self {
            kind,
            children,
            reports,
            lagged: 0,
            slow_peers: 0,
            mesh: vec![0; n],
            stalled: false,
        };
        let setup = Duration::from_secs(60);
        let mut ready: Vec<Option<(PeerId, Vec<Multiaddr>)>> = vec![None; n];
        while ready.iter().any(Option::is_none) {
            if let (i, Report::Ready(peer, addrs)) = cluster.next(setup, "start").await {
                ready[i] = Some((peer, addrs));
            }
        }
        // Every swarm (and so its gossipsub heartbeat timer) exists by now.
        let all_ready = tokio::time::Instant::now();
        let ready: Vec<(PeerId, Vec<Multiaddr>)> = ready.into_iter().flatten().collect();
        for i in 0..n {
            // Bare swarms dial once per pair. Meshchat members add each
            // other both ways, as people in a group who know each other do:
            // an invitation from someone who is not a contact is only a
            // message request, and the member would never join.
            let first = if kind == Kind::Meshchat { 0 } else { i + 1 };
            for (j, (peer, addrs)) in ready.iter().enumerate().skip(first) {
                if j == i {
                    continue;
                }
                for addr in addrs {
                    cluster.command(i, &format!("contact {peer} {addr}")).await;
                }
            }
        }
        let mut peers = vec![0; n];
        while peers.iter().any(|k| *k < n - 1) {
            if let (i, Report::Peers(k)) = cluster.next(setup, "full mesh").await {
                peers[i] = k;
            }
        }
        let connected_at = t.elapsed();
        if kind == Kind::Meshchat {
            let members: Vec<String> = ready[1..].iter().map(|(p, _)| p.to_string()).collect();
            cluster
                .command(0, &format!("create {}", members.join(" ")))
                .await;
            let mut joined: HashMap<ChatId, HashSet<usize>> = HashMap::new();
            let mut chat = None;
            while chat.is_none_or(|c| joined.get(&c).map_or(0, HashSet::len) < n) {
                match cluster.next(setup, "group join").await {
                    (i, Report::Joined(c)) => {
                        joined.entry(c).or_default().insert(i);
                    }
                    (_, Report::Created(c)) => chat = Some(c),
                    _ => {}
                }
            }
            let chat = chat.expect("group created");
            for i in 0..n {
                cluster.command(i, &format!("chat {chat}")).await;
            }
        }
        let joined_at = t.elapsed();
        let how = if kind == Kind::Meshchat {
            // No mesh to watch: two heartbeats after the last join, by
            // gossipsub's own schedule.
            let first_heartbeat = all_ready + HEARTBEAT_INITIAL_DELAY;
            let settled = first_heartbeat.max(tokio::time::Instant::now()) + HEARTBEAT_INTERVAL * 2;
            tokio::time::sleep_until(settled).await;
            "two gossipsub heartbeats after the last join"
        } else {
            let want = MESH_N_LOW.min(n - 1);
            while cluster.mesh.iter().any(|m| *m < want) {
                if cluster.next_within(setup).await.is_none() {
                    panic!(
                        "{}: meshes not built within {setup:?}: {:?}",
                        kind.name(),
                        cluster.mesh
                    );
                }
            }
            "every member's mesh at mesh_n_low"
        };
        println!(
            "{}: {n} nodes connected in {:.1} s, ready (group joined) at {:.1} s, meshes built at {:.1} s ({how})",
            kind.name(),
            connected_at.as_secs_f64(),
            joined_at.as_secs_f64(),
            t.elapsed().as_secs_f64(),
        );
        cluster
    }

    fn len(&self) -> usize {
        self.children.len()
    }

    async fn command(&mut self, i: usize, line: &str) {
        let stdin = &mut self.children[i].1;
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        written.await.expect("child alive");
    }

    /// The next report, counting the diagnostic ones; panics after `wait`.
    async fn next(&mut self, wait: Duration, what: &str) -> (usize, Report) {
        match self.next_within(wait).await {
            Some(r) => r,
            None => panic!("{}: {what} took longer than {wait:?}", self.kind.name()),
        }
    }

    async fn next_within(&mut self, wait: Duration) -> Option<(usize, Report)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some((_, Report::Lagged(k)))) => self.lagged += k,
                Ok(Some((_, Report::SlowPeer))) => self.slow_peers += 1,
                Ok(Some((i, Report::Mesh(k)))) => {
                    self.mesh[i] = k;
                    return Some((i, Report::Mesh(k)));
                }
                Ok(Some(r)) => return Some(r),
                Ok(None) => panic!("every child stopped"),
                Err(_) => return None,
            }
        }
    }

    async fn stop(self) {
        let Self {
            kind,
            children,
            stalled,
            ..
        } = self;
        for (mut child, mut stdin) in children {
            if !stalled {
                let _ = stdin.write_all(b"quit\n").await;
                let _ = stdin.flush().await;
            }
            drop(stdin);
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                eprintln!("{}: a child did not stop; killing it", kind.name());
                let _ = child.kill().await;
            }
        }
    }
}

/// Warm-up, latency (closed loop, senders taking turns), then throughput.
async fn measure(cluster: &mut Cluster, p: Params) -> Results {
    let name = cluster.kind.name();
    let n = cluster.len();
    let t = Instant::now();
    // Warm-up: one message from every member, each delivered everywhere.
    let mut seq = 0;
    let mut warm_lost = 0;
    for from in 0..n {
        let Some((_, _, lost)) = one_message(cluster, from, seq, p.msg_timeout).await else {
            println!("{name}: STALLED during the warm-up (a send did not return)");
            cluster.stalled = true;
            return Results::default();
        };
        warm_lost += lost;
        seq += 1;
    }
    println!(
        "{name}: warm-up of {n} messages in {:.1} s ({warm_lost} deliveries lost)",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut samples = Vec::new();
    let mut per_msg = Vec::new();
    let mut send_returns = Vec::new();
    let mut lost = 0;
    for k in 0..p.lat_msgs {
        if t.elapsed() > p.lat_budget {
            println!(
                "{name}: latency run stopped after {k} messages (budget {} s)",
                p.lat_budget.as_secs()
            );
            break;
        }
        let from = (k as usize) % n;
        let Some((latencies, returned, l)) = one_message(cluster, from, seq, p.msg_timeout).await
        else {
            println!("{name}: STALLED in the latency run (a send did not return)");
            cluster.stalled = true;
            break;
        };
        seq += 1;
        lost += l;
        send_returns.push(returned);
        samples.extend(latencies.iter().copied());
        per_msg.push(latencies);
        tokio::time::sleep(p.lat_gap).await;
    }
    let tenth = (per_msg.len() / 10).max(1).min(per_msg.len());
    let first_tenth = Stats::of(per_msg[..tenth].concat());
    let last_tenth = Stats::of(per_msg[per_msg.len() - tenth..].concat());
    println!(
        "{name}: latency run of {} messages in {:.1} s ({lost} deliveries lost)",
        per_msg.len(),
        t.elapsed().as_secs_f64()
    );

    let throughput = if cluster.stalled {
        Throughput::default()
    } else {
        let tp = throughput(cluster, seq, p).await;
        println!(
            "{name}: throughput run of {} messages in {:.1} s ({} of {} deliveries)",
            p.tput_msgs,
            tp.elapsed.as_secs_f64(),
            tp.delivered,
            tp.expected
        );
        tp
    };
    Results {
        lat_msgs: per_msg.len(),
        latency: Stats::of(samples),
        first_tenth,
        last_tenth,
        send_returns: Stats::of(send_returns),
        lost,
        throughput,
        lagged: cluster.lagged,
        slow_peers: cluster.slow_peers,
    }
}

/// Sends message `seq` from member `from` and waits until every other member
/// has it (or `timeout`). Returns the delivery latencies, how long the send
/// call took, and how many deliveries were missing; `None` if the sender
/// never reported the send (the node is stuck).
async fn one_message(
    cluster: &mut Cluster,
    from: usize,
    seq: u64,
    timeout: Duration,
) -> Option<(Vec<Duration>, Duration, usize)> {
    let want = cluster.len() - 1;
    cluster.command(from, &format!("send {seq}")).await;
    let deadline = Instant::now() + timeout;
    let mut sent = None;
    let mut received: HashMap<usize, u64> = HashMap::new();
    while sent.is_none() || received.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match cluster.next_within(left).await {
            Some((_, Report::Sent(s, t0, t1))) if s == seq => sent = Some((t0, t1)),
            Some((i, Report::Received(s, at))) if s == seq => {
                received.entry(i).or_insert(at);
            }
            Some(_) => {} // late deliveries of earlier messages
            None => break,
        }
    }
    let (t0, t1) = sent?;
    let latencies = received.values().map(|at| since(t0, *at)).collect();
    Some((latencies, since(t0, t1), want - received.len()))
}

/// `p.tput_msgs` messages from `p.senders` members, each sending its share
/// back to back; waits until every other member has every message.
async fn throughput(cluster: &mut Cluster, first_seq: u64, p: Params) -> Throughput {
    let n = cluster.len();
    let total = p.tput_msgs;
    let expected = total as usize * (n - 1);
    // Senders spread over the group; all their commands go out at once.
    let senders: Vec<usize> = (0..p.senders).map(|i| i * n / p.senders).collect();
    for k in 0..total {
        let from = senders[k as usize % p.senders];
        cluster
            .command(from, &format!("send {}", first_seq + k))
            .await;
    }
    let range = first_seq..first_seq + total;
    let deadline = Instant::now() + p.tput_timeout;
    let mut sent: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut seen: HashMap<u64, HashSet<usize>> = HashMap::new();
    let mut delivered = 0;
    let mut last = 0;
    while delivered < expected || sent.len() < total as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        match cluster.next_within(left).await {
            Some((_, Report::Sent(s, t0, t1))) if range.contains(&s) => {
                sent.insert(s, (t0, t1));
            }
            Some((i, Report::Received(s, at))) if range.contains(&s) => {
                if seen.entry(s).or_default().insert(i) {
                    delivered += 1;
                    last = last.max(at);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let start = sent.values().map(|(t0, _)| *t0).min().unwrap_or(0);
    let sends_done = sent.values().map(|(_, t1)| *t1).max().unwrap_or(0);
    if delivered < expected {
        let mut per_node = vec![0; n];
        for nodes in seen.values() {
            for node in nodes {
                per_node[*node] += 1;
            }
        }
        let complete = seen.values().filter(|s| s.len() == n - 1).count();
        println!(
            "  incomplete after {:?}: {} of {total} sends returned, {complete} messages reached \
             every member; messages received per node (senders {senders:?}): {per_node:?}",
            p.tput_timeout,
            sent.len()
        );
        if sent.len() < total as usize {
            cluster.stalled = true;
        }
    }
    Throughput {
        sends_done: since(start, sends_done),
        elapsed: if delivered == expected {
            since(start, last)
        } else {
            since(start, now_ns())
        },
        msgs: total,
        delivered,
        expected,
    }
}

// ---------------------------------------------------------------- children

/// A child: one node, driven by lines on stdin, reporting lines on stdout
/// (both through plain threads: the workspace's tokio has no `io-std`).
async fn child(kind: Kind) {
    let (out, mut out_rx) = mpsc::channel::<String>(LINE_CAPACITY);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        while let Some(line) = out_rx.blocking_recv() {
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return;
            }
        }
    });
    let (command_tx, commands) = mpsc::channel::<String>(1024);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if command_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    match kind {
        Kind::Meshchat => meshchat_child(out, commands).await,
        Kind::Bare | Kind::BareFsync | Kind::BareFlush => bare_child(kind, out, commands).await,
    }
    // Every reporting sender is gone once the node stopped: the writer drains and ends.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await;
}

async fn report(out: &mpsc::Sender<String>, line: String) {
    let _ = out.send(line).await;
}

async fn meshchat_child(out: mpsc::Sender<String>, mut commands: mpsc::Receiver<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::new(tmp.path().join("node"));
    let config = NodeConfig::loopback();
    dir.init(Some("node"), &config).expect("init data dir");
    let node = meshchat_node::spawn(&dir, config).await.expect("spawn");
    let events = node.subscribe();
    let status = node.network().status().await.expect("status");
    let addrs: Vec<String> = status.listen_addrs.iter().map(|a| a.to_string()).collect();
    report(
        &out,
        format!("ready {} {}", node.peer_id(), addrs.join(" ")),
    )
    .await;
    tokio::spawn(watch_node(events, out.clone()));
    let mut chat: Option<ChatId> = None;
    let sends = std::sync::Arc::new(tokio::sync::Semaphore::new(SENDS_IN_FLIGHT));
    while let Some(line) = commands.recv().await {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("contact") => {
                let peer: PeerId = w.next().and_then(|p| p.parse().ok()).expect("peer id");
                let addrs: Vec<Multiaddr> = w.filter_map(|a| a.parse().ok()).collect();
                node.contacts()
                    .add(peer, None, addrs)
                    .await
                    .expect("add contact");
            }
            Some("create") => {
                let members: Vec<PeerId> = w.filter_map(|p| p.parse().ok()).collect();
                let c = node
                    .groups()
                    .create("bench", members)
                    .await
                    .expect("create group");
                report(&out, format!("created {c}")).await;
            }
            Some("chat") => chat = w.next().and_then(|c| c.parse().ok()),
            Some("send") => {
                // Sends overlap (up to SENDS_IN_FLIGHT), as the bare
                // children's publishes do: a user does not wait for one
                // message to be on disk before typing the next.
                let seq: u64 = w.next().and_then(|s| s.parse().ok()).expect("seq");
                let chat = chat.expect("chat set before send");
                let permit = sends.clone().acquire_owned().await.expect("semaphore");
                let (node, out) = (node.clone(), out.clone());
                tokio::spawn(async move {
                    let t0 = now_ns();
                    node.chats().send(chat, text_for(seq)).await.expect("send");
                    let t1 = now_ns();
                    drop(permit);
                    report(&out, format!("sent {seq} {t0} {t1}")).await;
                });
            }
            Some("quit") | None => break,
            Some(other) => panic!("unknown command {other}"),
        }
    }
    node.shutdown().await;
}

/// Reports the node's incoming messages (with the time it emitted them),
/// group joins and connection count.
async fn watch_node(mut events: broadcast::Receiver<Event>, out: mpsc::Sender<String>) {
    let mut connected: usize = 0;
    loop {
        let line = match events.recv().await {
            Ok(Event::Message {
                message,
                outgoing: false,
                ..
            }) => {
                let at = now_ns();
                match seq_of_text(&message.text) {
                    Some(seq) => format!("msg {seq} {at}"),
                    None => continue,
                }
            }
            Ok(Event::GroupJoined { chat }) => format!("joined {chat}"),
            Ok(Event::PeerConnected { .. }) => {
                connected += 1;
                format!("peers {connected}")
            }
            Ok(Event::PeerDisconnected { .. }) => {
                connected = connected.saturating_sub(1);
                format!("peers {connected}")
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(k)) => format!("lagged {k}"),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if out.send(line).await.is_err() {
            return;
        }
    }
}

/// The same gossipsub configuration as a meshchat node, except the message id
/// hashes with SipHash instead of SHA-256 (no extra dependency; both are
/// content-addressed).
fn bare_behaviour(_key: &libp2p::identity::Keypair) -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .validate_messages()
        .message_id_fn(meshchat_tests::gossip::content_id)
        .validation_mode(ValidationMode::Anonymous)
        .max_transmit_size(1024 * 1024)
        .build()
        .expect("gossipsub config");
    gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config).expect("gossipsub behaviour")
}

/// What a bare child writes per delivered message before accepting it (and
/// so forwarding it).
enum Store {
    None,
    /// Appended to a file and `fdatasync`ed.
    Fsync(SyncedLog),
    /// Inserted into sled and flushed.
    Sled(sled::Db),
}

impl Store {
    async fn write(&mut self, id: &[u8], data: &[u8]) {
        match self {
            Self::None => {}
            Self::Fsync(log) => log.append_synced(data).expect("fdatasync"),
            Self::Sled(db) => {
                db.insert(id, data).expect("sled insert");
                // What the node's store does before acknowledging.
                db.flush_async().await.expect("sled flush");
            }
        }
    }
}

/// A bare gossipsub swarm, storing each message as `kind` says before it
/// accepts it; reports its mesh size for the topic whenever it changes.
async fn bare_child(kind: Kind, out: mpsc::Sender<String>, mut commands: mpsc::Receiver<String>) {
    let payload = env_u64(PAYLOAD_ENV, 512) as usize;
    let topic = IdentTopic::new(TOPIC);
    let mut swarm = bare_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        Net::Loopback,
        Duration::from_secs(600),
        bare_behaviour,
    );
    swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
    let addr = listen(&mut swarm, Net::Loopback).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = match kind {
        Kind::BareFsync => Store::Fsync(SyncedLog::create(&tmp.path().join("log")).expect("log")),
        Kind::BareFlush => Store::Sled(sled::open(tmp.path().join("db")).expect("sled")),
        _ => Store::None,
    };
    report(&out, format!("ready {} {addr}", swarm.local_peer_id())).await;
    let mut subscribed: usize = 0;
    let mut mesh = 0;
    let mut look = tokio::time::interval(MESH_POLL);
    loop {
        let now = swarm.behaviour().mesh_peers(&topic.hash()).count();
        if now != mesh {
            mesh = now;
            report(&out, format!("mesh {mesh}")).await;
        }
        tokio::select! {
            _ = look.tick() => {}
            line = commands.recv() => {
                let line = line.unwrap_or_else(|| "quit".into());
                let mut w = line.split_whitespace();
                match w.next() {
                    Some("contact") => {
                        let _peer = w.next();
                        for addr in w.filter_map(|a| a.parse::<Multiaddr>().ok()) {
                            swarm.dial(addr).expect("dial");
                        }
                    }
                    Some("send") => {
                        let seq: u64 = w.next().and_then(|s| s.parse().ok()).expect("seq");
                        let t0 = now_ns();
                        if let Err(error) = swarm.behaviour_mut().publish(topic.clone(), payload_for(seq, payload)) {
                            eprintln!("bare swarm: publish failed: {error}");
                        }
                        let t1 = now_ns();
                        report(&out, format!("sent {seq} {t0} {t1}")).await;
                    }
                    Some("quit") | None => break,
                    Some(other) => panic!("unknown command {other}"),
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                }) => {
                    store.write(&message_id.0, &message.data).await;
                    let at = now_ns();
                    swarm.behaviour_mut().report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Accept,
                    );
                    if let Some(seq) = seq_of_payload(&message.data) {
                        report(&out, format!("msg {seq} {at}")).await;
                    }
                }
                SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) => {
                    subscribed += 1;
                    report(&out, format!("peers {subscribed}")).await;
                }
                SwarmEvent::Behaviour(gossipsub::Event::SlowPeer { .. }) => {
                    report(&out, "slow".into()).await;
                }
                _ => {}
            },
        }
    }
}

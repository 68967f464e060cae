//! Direct-message latency and throughput between two real meshchat nodes on
//! loopback, measured in the same run as a bare libp2p request-response round
//! trip over the same transport (TCP + noise + yamux on 127.0.0.1), that bare
//! round trip with one real `fdatasync` on the receiver before it answers
//! (the floor a durable messenger pays), and with sled writes, to show where
//! the time goes. The node's figures are printed as ratios against the
//! bare ones, beside the targets of issue 15.
//!
//! Run: `cargo bench -p meshchat-tests --bench direct_latency`
//! (`MESHCHAT_BENCH_N` sets the number of messages per measurement, default 500).
//! Timings are printed, never asserted.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
    Multiaddr, PeerId, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::{ChatKind, ChatReplica, Identity},
    protocol::{encode_frame, Request},
};
use meshchat_tests::{
    direct::{self, SENDS_IN_FLIGHT, WARMUP},
    durable::{SyncedLog, SyncedSled},
    net::{bare_swarm, connect, listen},
    stats::{env_or, ms, per_sec, ratio, ratio_line, runtime, Stats, Target},
    Net, RawCodec, WAIT,
};

const BARE_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/bytes/1");
/// Size of the bare response: about what a one-change `Pushed` answer takes.
const BARE_RESPONSE_BYTES: usize = 48;

fn main() {
    runtime(2).block_on(run());
}

async fn run() {
    let n: usize = env_or("MESHCHAT_BENCH_N", 500).max(1);
    let text = direct::message_text();
    let frame = push_frame_len(&text);
    let started = Instant::now();
    println!("direct_latency: n = {n} per measurement (+{WARMUP} warm-up), 2 tokio workers");
    println!(
        "machine: {} logical cores, temp dir {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::temp_dir().display()
    );
    println!(
        "message text {} bytes -> push frame {frame} bytes; bare request {frame} bytes, response {BARE_RESPONSE_BYTES} bytes",
        text.len()
    );
    println!();

    let ours = meshchat_latency(n, &text).await;
    let bare = bare_latency(n, frame, Durability::None).await;
    let bare_fsync = bare_latency(n, frame, Durability::ReceiverFsync).await;
    let bare_recv_flush = bare_latency(n, frame, Durability::ReceiverSled).await;
    let bare_both_flush = bare_latency(n, frame, Durability::BothSled).await;
    let bare_both_fsync = bare_latency(n, frame, Durability::BothFsync).await;
    let bare_both_sled_fsync = bare_latency(n, frame, Durability::BothSledFsync).await;
    let model = data_model_floor(n, &text);
    let ours_tput = direct::back_to_back(n, &text).await;
    let bare_tput = bare_throughput(n, frame).await;

    println!("Latency ({n} sequential messages, one in flight)");
    println!(
        "{:<58} {:>10} {:>10} {:>10}",
        "measurement", "p50", "p99", "mean"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<58} {:>10} {:>10} {:>10}",
            name,
            ms(s.p50),
            ms(s.p99),
            ms(s.mean)
        )
    };
    row("meshchat: send() returns (local write + fsync)", &ours.send);
    row(
        "meshchat: send -> receiver's Event::Message",
        &ours.received,
    );
    row(
        "meshchat: send -> sender's Delivery::Delivered",
        &ours.acked,
    );
    let tenth = (n / 10).max(1);
    row(
        &format!("  send -> Event::Message, first {tenth} (chat is small)"),
        &ours.received_first,
    );
    row(
        &format!("  send -> Event::Message, last {tenth} (chat is large)"),
        &ours.received_last,
    );
    row("bare libp2p request-response round trip", &bare);
    row("bare round trip + receiver append+fdatasync", &bare_fsync);
    row(
        "  same, sender's own append+fdatasync at the same time",
        &bare_both_fsync,
    );
    row(
        "bare + sled insert+flush+fdatasync, both ends at once",
        &bare_both_sled_fsync,
    );
    row(
        "bare round trip + sled insert+flush on receiver",
        &bare_recv_flush,
    );
    row(
        "bare round trip + sled insert+flush on sender and receiver",
        &bare_both_flush,
    );
    row("data model alone: write+sign, verify+judge+apply", &model);
    println!();
    let to_bare = |a: &Stats| ratio(a.p50, bare.p50);
    println!(
        "ratio (p50 / bare p50): received {:.1}x, delivered {:.1}x; bare+fdatasync {:.1}x, bare+1 sled flush {:.1}x, bare+2 sled flushes {:.1}x",
        to_bare(&ours.received),
        to_bare(&ours.acked),
        to_bare(&bare_fsync),
        to_bare(&bare_recv_flush),
        to_bare(&bare_both_flush),
    );
    println!(
        "{}",
        ratio_line(
            "delivered p50 / (bare + receiver fdatasync) p50",
            ratio(ours.acked.p50, bare_fsync.p50),
            Target::AtMost(1.3),
        )
    );
    let floor = bare_fsync.p50 + model.p50;
    println!(
        "floor: bare + receiver fdatasync + data model = {}; delivered p50 / floor: {:.2}x",
        ms(floor),
        ratio(ours.acked.p50, floor),
    );
    let same_disk_floor = bare_both_fsync.p50 + model.p50;
    println!(
        "floor with both ends' fdatasyncs on this one disk + data model = {}; delivered p50 / that: {:.2}x",
        ms(same_disk_floor),
        ratio(ours.acked.p50, same_disk_floor),
    );
    let sled_floor = bare_both_sled_fsync.p50 + model.p50;
    println!(
        "floor of sled made durable (both ends at once) + data model = {}; delivered p50 / that: {:.2}x",
        ms(sled_floor),
        ratio(ours.acked.p50, sled_floor),
    );
    println!();
    println!("Throughput ({n} messages back to back, {SENDS_IN_FLIGHT} sends in flight)");
    println!(
        "meshchat: {n} sends returned in {}; all received in {} ({:.0} msg/s); all delivered in {} ({:.0} msg/s)",
        ms(ours_tput.sends_done),
        ms(ours_tput.all_received),
        per_sec(n, ours_tput.all_received),
        ms(ours_tput.all_delivered),
        per_sec(n, ours_tput.all_delivered),
    );
    println!(
        "bare:     {n} requests pipelined, all answered in {} ({:.0} req/s)",
        ms(bare_tput),
        per_sec(n, bare_tput)
    );
    println!(
        "{}",
        ratio_line(
            "delivered msg/s / bare pipelined req/s",
            per_sec(n, ours_tput.all_delivered) / per_sec(n, bare_tput),
            Target::AtLeast(0.5),
        )
    );
    println!(
        "data model alone, one core: {:.0} msg/s (mean {}); meshchat delivered / that: {:.2}x",
        per_sec(1, model.mean),
        ms(model.mean),
        per_sec(n, ours_tput.all_delivered) / per_sec(1, model.mean),
    );
    println!();
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

/// The data model's own work per message, no I/O: the sender writes and
/// signs it in its replica, the receiver verifies, judges and applies it in
/// its own (what every meshchat delivery costs on top of the network and
/// the disk).
fn data_model_floor(n: usize, text: &str) -> Stats {
    let alice = Identity::generate();
    let bob = Identity::generate();
    let kind = ChatKind::direct(alice.public(), bob.public());
    let mut sender = ChatReplica::new(kind.clone());
    let mut receiver = ChatReplica::new(kind);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + WARMUP {
        let t0 = Instant::now();
        let written = sender
            .write_message(&alice, text, None, 1_700_000_000_000 + i as i64)
            .expect("write");
        let ingested = receiver.receive([written.change], 0);
        let took = t0.elapsed();
        assert_eq!(ingested.stored.len(), 1, "the receiver applies it");
        if i >= WARMUP {
            samples.push(took);
        }
    }
    Stats::of(samples)
}

/// The size of a one-change push frame carrying `text`.
fn push_frame_len(text: &str) -> usize {
    let me = Identity::generate();
    let other = Identity::generate();
    let mut replica = ChatReplica::new(ChatKind::direct(me.public(), other.public()));
    let written = replica
        .write_message(&me, text, None, 1_700_000_000_000)
        .expect("write");
    encode_frame(&Request::Push {
        changes: vec![written.change],
    })
    .len()
}

// ---------------------------------------------------------------- meshchat

struct Ours {
    send: Stats,
    received: Stats,
    acked: Stats,
    /// Receive latency over the first and the last tenth of the messages, to
    /// show whether the cost grows with the chat's size.
    received_first: Stats,
    received_last: Stats,
}

async fn meshchat_latency(n: usize, text: &str) -> Ours {
    let samples = direct::one_in_flight(n, text).await;
    let tenth = (n / 10).max(1);
    Ours {
        send: Stats::of(samples.send),
        received_first: Stats::of(samples.received[..tenth].to_vec()),
        received_last: Stats::of(samples.received[n - tenth..].to_vec()),
        received: Stats::of(samples.received),
        acked: Stats::of(samples.delivered),
    }
}

// ---------------------------------------------------------------- bare libp2p

type BareSwarm = Swarm<request_response::Behaviour<RawCodec>>;

/// The same transport stack as a meshchat node (TCP with nodelay, noise, yamux).
fn new_bare_swarm() -> BareSwarm {
    bare_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        Net::Loopback,
        Duration::from_secs(60),
        |_| {
            request_response::Behaviour::with_codec(
                RawCodec::with_limit(1 << 20),
                [(BARE_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(WAIT)
                    .with_max_concurrent_streams(1024),
            )
        },
    )
}

/// What the bare stack writes durably per message, and where.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    None,
    /// The receiver appends the request to a file and `fdatasync`s it
    /// before answering: the floor of "acknowledged means on disk".
    ReceiverFsync,
    /// The receiver inserts into sled and flushes (sled's flush is
    /// `sync_file_range`, not an fsync) before answering.
    ReceiverSled,
    /// Sled insert + flush on the sender before sending too.
    BothSled,
    /// As `ReceiverFsync`, while the sender appends and `fdatasync`s its own
    /// copy at the same time (not waited for before sending): what meshchat
    /// does, both ends on this machine's one disk.
    BothFsync,
    /// meshchat's storage without meshchat: the receiver inserts into sled,
    /// flushes and `fdatasync`s before answering, while the sender does the
    /// same with its own copy at the same time.
    BothSledFsync,
}

/// The receiver's durable write per request.
enum Store {
    None,
    Log(SyncedLog),
    Sled(sled::Db, u64),
    SyncedSled(SyncedSled, u64),
}

impl Store {
    fn open(durability: Durability, dir: &Path) -> Self {
        match durability {
            Durability::None => Self::None,
            Durability::ReceiverFsync | Durability::BothFsync => {
                Self::Log(SyncedLog::create(&dir.join("receiver.log")).expect("log"))
            }
            Durability::ReceiverSled | Durability::BothSled => {
                Self::Sled(open_sled(&dir.join("receiver")), 0)
            }
            Durability::BothSledFsync => {
                Self::SyncedSled(SyncedSled::open(&dir.join("receiver")).expect("sled"), 0)
            }
        }
    }

    /// Inline in the responder's loop, as the node's actor does.
    async fn write(&mut self, request: Vec<u8>) {
        match self {
            Self::None => {}
            Self::Log(log) => log.append_synced(&request).expect("fdatasync"),
            Self::Sled(db, seq) => {
                *seq += 1;
                db.insert(seq.to_be_bytes(), request).expect("insert");
                db.flush_async().await.expect("flush");
            }
            Self::SyncedSled(db, seq) => {
                *seq += 1;
                db.insert(&seq.to_be_bytes(), &request).expect("insert");
                db.commit().expect("flush + fdatasync");
            }
        }
    }
}

fn open_sled(dir: &Path) -> sled::Db {
    sled::Config::new().path(dir).open().expect("sled")
}

/// Starts an echo server; it writes each request to `store` before
/// answering.
async fn spawn_responder(mut store: Store) -> (PeerId, Multiaddr) {
    let mut swarm = new_bare_swarm();
    let addr = listen(&mut swarm, Net::Loopback).await;
    let peer = *swarm.local_peer_id();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = swarm.select_next_some().await
            {
                store.write(request).await;
                let _ = swarm
                    .behaviour_mut()
                    .send_response(channel, vec![0u8; BARE_RESPONSE_BYTES]);
            }
        }
    });
    (peer, addr)
}

/// Drives the requester until `wanted` responses arrived; returns their instants.
async fn await_responses(
    swarm: &mut BareSwarm,
    wanted: usize,
) -> Vec<(request_response::OutboundRequestId, Instant)> {
    let mut out = Vec::with_capacity(wanted);
    tokio::time::timeout(WAIT * 3, async {
        while out.len() < wanted {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, .. },
                    ..
                }) => out.push((request_id, Instant::now())),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => panic!("bare request failed: {error}"),
                _ => {}
            }
        }
    })
    .await
    .expect("timed out waiting for bare responses");
    out
}

async fn bare_latency(n: usize, frame: usize, durability: Durability) -> Stats {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sender_db =
        (durability == Durability::BothSled).then(|| open_sled(&tmp.path().join("sender")));
    let sender_log = (durability == Durability::BothFsync).then(|| {
        std::sync::Arc::new(std::sync::Mutex::new(
            SyncedLog::create(&tmp.path().join("sender.log")).expect("log"),
        ))
    });
    let sender_sled = (durability == Durability::BothSledFsync)
        .then(|| std::sync::Arc::new(SyncedSled::open(&tmp.path().join("sender")).expect("sled")));
    let (peer, addr) = spawn_responder(Store::open(durability, tmp.path())).await;
    let mut swarm = new_bare_swarm();
    connect(&mut swarm, addr, Some(peer), WAIT).await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let payload = vec![(i % 251) as u8; frame];
        let t0 = Instant::now();
        if let Some(db) = &sender_db {
            db.insert((i as u64).to_be_bytes(), payload.clone())
                .expect("insert");
            db.flush_async().await.expect("flush");
        }
        let own_copy = sender_log
            .clone()
            .map(|log| {
                let payload = payload.clone();
                tokio::task::spawn_blocking(move || {
                    log.lock()
                        .expect("sender log")
                        .append_synced(&payload)
                        .expect("fdatasync");
                })
            })
            .or_else(|| {
                let db = sender_sled.clone()?;
                let payload = payload.clone();
                Some(tokio::task::spawn_blocking(move || {
                    db.insert(&(i as u64).to_be_bytes(), &payload)
                        .expect("insert");
                    db.commit().expect("flush + fdatasync");
                }))
            });
        swarm.behaviour_mut().send_request(&peer, payload);
        let (_, at) = await_responses(&mut swarm, 1).await[0];
        if let Some(own_copy) = own_copy {
            own_copy.await.expect("sender fdatasync");
        }
        if i >= WARMUP {
            samples.push(at - t0);
        }
    }
    Stats::of(samples)
}

async fn bare_throughput(n: usize, frame: usize) -> Duration {
    let (peer, addr) = spawn_responder(Store::None).await;
    let mut swarm = new_bare_swarm();
    connect(&mut swarm, addr, Some(peer), WAIT).await;
    swarm.behaviour_mut().send_request(&peer, vec![1; frame]);
    await_responses(&mut swarm, 1).await;
    let t0 = Instant::now();
    for i in 0..n {
        swarm
            .behaviour_mut()
            .send_request(&peer, vec![(i % 251) as u8; frame]);
    }
    let done = await_responses(&mut swarm, n).await;
    done.last().map_or(Duration::ZERO, |(_, at)| *at - t0)
}

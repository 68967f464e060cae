//! Relay benchmarks, each next to the bare dependency in the same run:
//!
//! 1. **Durable deposits per second**: bare libp2p clients deposit envelopes
//!    at a meshchat relay, each with the recipient's delivery token
//!    (acknowledged only after a flush; the relay group-commits), next to
//!    raw sled insert + flush per item and per 64 items (sled's flush is
//!    `sync_file_range`, no fsync), and the same with a real `fdatasync` of
//!    sled's file after each flush: the floor of durable deposits, one
//!    insert at a time and group-committed.
//! 2. **Fetch of 10k queued messages**: a returning peer's node starts and
//!    fetches, verifies, applies and stores 10 000 messages waiting at its
//!    relay, until the last is applied; next to bare request-response moving
//!    the same bytes in the same pages plus raw Automerge applying the same
//!    changes in one batch per history segment.
//! 3. **Memory per idle connected peer**: RSS growth of a relay process per
//!    connected idle peer (thousands of peers, arriving 256 at a time), next
//!    to a bare libp2p process (TCP + noise + yamux + identify) and a
//!    bare libp2p process with every protocol a relay speaks, with the same
//!    peers.
//!
//! Run: `cargo bench -p meshchat-tests --bench relay`
//!
//! Environment (optional): `MESHCHAT_BENCH_DEPOSITS` (default 20000),
//! `MESHCHAT_BENCH_FETCH` (default 10000), `MESHCHAT_BENCH_IDLE_PEERS`
//! (default 2000). Timings are printed, never asserted.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    identify,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    Multiaddr, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::{Identity, PublicKey, SignedChange},
    mailbox::DeliveryToken,
    protocol::{MailboxCodec, MAILBOX_PROTOCOL, MAX_DEPOSITS_PER_BATCH},
};
use meshchat_tests::{
    client::Deposit,
    durable::SyncedSled,
    net::{bare_swarm, connect, listen},
    relay::{returning_peer_fetch, start_relay, token, Fetched},
    stats::{env_or, runtime},
    MailboxClient, Net, RawCodec,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_ENV: &str = "MESHCHAT_BENCH_CHILD";
const ENVELOPE_BYTES: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    env_or(name, default)
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Ok(role) = std::env::var(CHILD_ENV) {
        runtime(2).block_on(child(&role));
        return;
    }
    runtime(2).block_on(async {
        println!(
            "relay benchmarks on {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        deposits(env_usize("MESHCHAT_BENCH_DEPOSITS", 20_000)).await;
        fetch(env_usize("MESHCHAT_BENCH_FETCH", 10_000)).await;
        idle_memory(env_usize("MESHCHAT_BENCH_IDLE_PEERS", 2000)).await;
    });
}

// ---------------------------------------------------------------------------
// 1. Deposits

/// A bare libp2p client of the mailbox protocol, connected to `relay`.
async fn mailbox_client(identity: Identity, relay: &Multiaddr) -> MailboxClient {
    MailboxClient::dial(
        identity,
        MailboxCodec,
        MAILBOX_PROTOCOL,
        Net::Loopback,
        relay.clone(),
        TIMEOUT,
    )
    .await
}

/// Requests in flight per connection: a relay serves 16 streams per
/// connection and protocol (`[limits] max_streams_per_connection`).
const WINDOW: usize = 16;

/// How the bench's senders deposit.
#[derive(Clone, Copy)]
enum Deposits {
    /// One `Deposit` request per envelope.
    One,
    /// `DepositBatch` requests of this many envelopes.
    Batched(usize),
}

async fn deposits(total: usize) {
    println!("\n== durable deposits: {total} envelopes of {ENVELOPE_BYTES} bytes, {CLIENTS} senders x {WINDOW} requests in flight ==");
    let meshchat = relay_deposit_rate(total, Deposits::One).await;
    let batched = relay_deposit_rate(total, Deposits::Batched(MAX_DEPOSITS_PER_BATCH)).await;

    let rows = [
        (
            "raw sled insert+flush each",
            raw_sled(total.min(2000), 1, Sync::Flush),
        ),
        (
            "raw sled insert, flush per 64",
            raw_sled(total, 64, Sync::Flush),
        ),
        (
            "raw sled insert+flush+fdatasync each",
            raw_sled(total.min(2000), 1, Sync::Fdatasync),
        ),
        (
            "raw sled insert, flush+fdatasync per 64",
            raw_sled(total, 64, Sync::Fdatasync),
        ),
    ];

    println!("meshchat relay (group commit)            {meshchat:>9.0} deposits/s");
    println!(
        "meshchat relay, batches of {MAX_DEPOSITS_PER_BATCH}            {batched:>9.0} deposits/s"
    );
    for (name, rate) in rows {
        println!(
            "{name:<40} {rate:>9.0} ops/s   (meshchat = {:.2}x, batched = {:.2}x)",
            meshchat / rate,
            batched / rate
        );
    }
    let best = meshchat.max(batched);
    println!(
        "target: >= 20,000 durable deposits/s ({})",
        if best >= 20_000.0 { "met" } else { "not met" }
    );
}

const CLIENTS: usize = 8;

/// Durable deposits per second at a fresh relay: `CLIENTS` bare senders,
/// `WINDOW` requests in flight each, to 100 recipients with their tokens.
async fn relay_deposit_rate(total: usize, how: Deposits) -> f64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let (relay, addr) = start_relay(&tmp).await;
    let recipients: Vec<(PublicKey, DeliveryToken)> = (0..100)
        .map(|_| {
            let recipient = Identity::generate();
            (recipient.public(), token(&recipient, &addr))
        })
        .collect();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(mailbox_client(Identity::generate(), &addr).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        let items: Vec<Deposit> = (0..total / CLIENTS)
            .map(|i| {
                let (recipient, token) = &recipients[(c + i) % recipients.len()];
                (
                    *recipient,
                    vec![(i % 251) as u8; ENVELOPE_BYTES],
                    token.clone(),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            match how {
                Deposits::One => client.deposit_all(items, WINDOW).await,
                Deposits::Batched(size) => client.deposit_batches(items, size, WINDOW).await,
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let rate = (total / CLIENTS * CLIENTS) as f64 / started.elapsed().as_secs_f64();
    relay.shutdown().await;
    rate
}

/// What ends a group of raw sled inserts.
#[derive(Clone, Copy)]
enum Sync {
    /// sled's flush: `pwrite` + `sync_file_range`, no fsync.
    Flush,
    /// sled's flush, then `fdatasync` of its data file: really durable.
    Fdatasync,
}

/// Raw sled: `n` inserts of an envelope-sized value, a `sync` every `batch`.
fn raw_sled(n: usize, batch: usize, sync: Sync) -> f64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = SyncedSled::open(tmp.path()).expect("sled");
    let commit = || match sync {
        Sync::Flush => store.db.flush().map(drop).expect("flush"),
        Sync::Fdatasync => store.commit().expect("flush + fdatasync"),
    };
    let value = vec![7u8; ENVELOPE_BYTES];
    let started = Instant::now();
    for i in 0..n {
        store
            .insert(&(i as u64).to_be_bytes(), &value)
            .expect("insert");
        if (i + 1) % batch == 0 {
            commit();
        }
    }
    commit();
    n as f64 / started.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------
// 2. Fetch of queued mail

async fn fetch(n: usize) {
    println!("\n== fetch of {n} queued messages by a returning peer ==");
    let Fetched {
        elapsed: meshchat,
        started,
        first,
        changes,
        envelopes,
    } = returning_peer_fetch(n, WINDOW, TIMEOUT).await;
    let bytes: usize = envelopes.iter().map(|(_, e, _)| e.len()).sum();
    println!(
        "queued: {n} envelopes, {:.1} MiB",
        bytes as f64 / (1 << 20) as f64
    );

    let transfer = bare_transfer(&envelopes).await;
    let apply = raw_automerge_apply(&changes);
    let bare = transfer + apply;
    println!(
        "meshchat: start, fetch, verify, apply, store, ack  {:>8.2} s  ({:.0} msgs/s)",
        meshchat.as_secs_f64(),
        n as f64 / meshchat.as_secs_f64()
    );
    println!(
        "  of which: node started {:.1} ms, first message applied {:.1} ms, the rest {:.1} ms",
        started.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        (meshchat - first).as_secs_f64() * 1e3
    );
    println!(
        "bare: request-response pages {:.2} s + raw Automerge batch apply {:.2} s = {:.2} s  (meshchat = {:.1}x)",
        transfer.as_secs_f64(),
        apply.as_secs_f64(),
        bare.as_secs_f64(),
        meshchat.as_secs_f64() / bare.as_secs_f64()
    );
}

/// Raw Automerge applying the same changes, one batch per history segment
/// (each segment is its own document: its changes restart their sequence
/// numbers, so applying two segments to one document is an error).
fn raw_automerge_apply(changes: &[SignedChange]) -> Duration {
    let mut segments: std::collections::BTreeMap<u32, Vec<automerge::Change>> =
        std::collections::BTreeMap::new();
    for c in changes {
        segments
            .entry(c.segment)
            .or_default()
            .push(automerge::Change::from_bytes(c.change.clone()).expect("change"));
    }
    let started = Instant::now();
    for (_, decoded) in segments {
        let mut doc = automerge::AutoCommit::new();
        doc.apply_changes(decoded).expect("apply");
    }
    started.elapsed()
}

const BYTES_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/bytes/1");

fn bytes_swarm(support: ProtocolSupport) -> Swarm<request_response::Behaviour<RawCodec>> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    bare_swarm(key, Net::Loopback, TIMEOUT, |_| {
        request_response::Behaviour::with_codec(
            RawCodec::with_limit(64 << 20),
            [(BYTES_PROTOCOL, support)],
            request_response::Config::default().with_request_timeout(TIMEOUT),
        )
    })
}

/// The same envelopes served in pages of 256 (as the relay pages them),
/// fetched one page at a time.
async fn bare_transfer(envelopes: &[Deposit]) -> Duration {
    let pages: Vec<Vec<u8>> = envelopes
        .chunks(256)
        .map(|c| c.iter().flat_map(|(_, e, _)| e.clone()).collect())
        .collect();
    let mut server = bytes_swarm(ProtocolSupport::Inbound);
    let addr = listen(&mut server, Net::Loopback).await;
    let server_id = *server.local_peer_id();
    let serving = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = server.select_next_some().await
            {
                let index = u32::from_be_bytes(request[..4].try_into().expect("4 bytes")) as usize;
                let page = pages.get(index).cloned().unwrap_or_default();
                let _ = server.behaviour_mut().send_response(channel, page);
            }
        }
    });
    let mut client = bytes_swarm(ProtocolSupport::Outbound);
    connect(&mut client, addr, Some(server_id), TIMEOUT).await;
    let page_count = envelopes.len().div_ceil(256);
    let started = Instant::now();
    for index in 0..page_count {
        client
            .behaviour_mut()
            .send_request(&server_id, (index as u32).to_be_bytes().to_vec());
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { .. },
                ..
            }) = client.select_next_some().await
            {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    serving.abort();
    elapsed
}

// ---------------------------------------------------------------------------
// 3. Memory per idle connected peer

#[derive(NetworkBehaviour)]
struct Idle {
    identify: identify::Behaviour,
}

/// Bare libp2p with the protocols a meshchat relay speaks, and nothing of
/// meshchat: the floor of a relay's memory per connected peer.
#[derive(NetworkBehaviour)]
struct RelayProtocols {
    identify: identify::Behaviour,
    kad: libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>,
    gossipsub: libp2p::gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    notice: request_response::Behaviour<RawCodec>,
    mailbox: request_response::Behaviour<RawCodec>,
    relay: libp2p::relay::Behaviour,
    dcutr: libp2p::dcutr::Behaviour,
    autonat: libp2p::autonat::Behaviour,
}

fn relay_protocols_swarm(key: libp2p::identity::Keypair) -> Swarm<RelayProtocols> {
    bare_swarm(key, Net::Loopback, TIMEOUT, |key| {
        let id = key.public().to_peer_id();
        let mut kad = libp2p::kad::Behaviour::with_config(
            id,
            libp2p::kad::store::MemoryStore::new(id),
            libp2p::kad::Config::new(StreamProtocol::new("/meshchat/kad/1")),
        );
        kad.set_mode(Some(libp2p::kad::Mode::Server));
        let gossipsub = libp2p::gossipsub::Behaviour::new(
            libp2p::gossipsub::MessageAuthenticity::Anonymous,
            libp2p::gossipsub::ConfigBuilder::default()
                .validate_messages()
                .validation_mode(libp2p::gossipsub::ValidationMode::Anonymous)
                .build()
                .expect("gossipsub config"),
        )
        .expect("gossipsub");
        let rr = |name: &'static str| {
            request_response::Behaviour::with_codec(
                RawCodec::with_limit(1 << 20),
                [(StreamProtocol::new(name), ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        };
        RelayProtocols {
            identify: identify::Behaviour::new(identify::Config::new(
                "/meshchat/id/1".to_owned(),
                key.public(),
            )),
            kad,
            gossipsub,
            sync: rr("/meshchat/sync/1"),
            notice: rr("/meshchat/notice/1"),
            mailbox: rr("/meshchat/mailbox/2"),
            relay: libp2p::relay::Behaviour::new(id, Default::default()),
            dcutr: libp2p::dcutr::Behaviour::new(id),
            autonat: libp2p::autonat::Behaviour::new(id, Default::default()),
        }
    })
}

fn idle_swarm(key: libp2p::identity::Keypair, protocol: &str) -> Swarm<Idle> {
    bare_swarm(key, Net::Loopback, TIMEOUT, |key| Idle {
        identify: identify::Behaviour::new(identify::Config::new(
            protocol.to_owned(),
            key.public(),
        )),
    })
}

/// Child process: a meshchat relay or a bare libp2p server; prints its address.
async fn child(role: &str) {
    match role {
        "relay" => {
            let tmp = tempfile::tempdir().expect("tmp");
            let (node, addr) = start_relay(&tmp).await;
            println!("ADDR {addr}");
            std::future::pending::<()>().await;
            drop(node);
        }
        "bare" => {
            let mut swarm = idle_swarm(
                libp2p::identity::Keypair::generate_ed25519(),
                "/meshchat/id/1",
            );
            let me = *swarm.local_peer_id();
            let address = listen(&mut swarm, Net::Loopback).await;
            println!(
                "ADDR {}",
                address.with(libp2p::multiaddr::Protocol::P2p(me))
            );
            loop {
                swarm.select_next_some().await;
            }
        }
        "protocols" => {
            let mut swarm = relay_protocols_swarm(libp2p::identity::Keypair::generate_ed25519());
            let me = *swarm.local_peer_id();
            let address = listen(&mut swarm, Net::Loopback).await;
            println!(
                "ADDR {}",
                address.with(libp2p::multiaddr::Protocol::P2p(me))
            );
            loop {
                swarm.select_next_some().await;
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn idle_memory(peers: usize) {
    println!(
        "\n== memory per idle connected peer: {peers} peers (TCP + noise + yamux + identify) =="
    );
    let mut results = Vec::new();
    for role in ["relay", "bare", "protocols"] {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = tokio::process::Command::new(exe)
            .env(CHILD_ENV, role)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("child");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr: Multiaddr = loop {
            let line = lines
                .next_line()
                .await
                .expect("read")
                .expect("child exited");
            if let Some(a) = line.strip_prefix("ADDR ") {
                break a.parse().expect("addr");
            }
        };
        let before = rss_kib(pid);
        let (tx, mut connected) = tokio::sync::mpsc::channel::<()>(peers.max(1));
        // Peers arrive in waves, as a relay's clients do (a relay admits
        // `max_pending_incoming` = 512 handshakes at once; more are refused).
        let arriving = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::new();
        for _ in 0..peers {
            let addr = addr.clone();
            let tx = tx.clone();
            let arriving = arriving.clone();
            tasks.push(tokio::spawn(async move {
                let mut arrival = Some(arriving.acquire_owned().await.expect("semaphore"));
                let mut swarm = idle_swarm(
                    libp2p::identity::Keypair::generate_ed25519(),
                    "/meshchat/id/1",
                );
                swarm.dial(addr).expect("dial");
                // Idle means: connected and identified (meshchat runs no
                // libp2p ping; yamux keeps the connection alive).
                let mut told = false;
                loop {
                    let event = swarm.select_next_some().await;
                    let identified = matches!(
                        event,
                        SwarmEvent::Behaviour(IdleEvent::Identify(
                            identify::Event::Received { .. }
                        ))
                    );
                    if identified && !told {
                        let _ = tx.send(()).await;
                        told = true;
                        arrival.take();
                    }
                }
            }));
        }
        let started = Instant::now();
        for _ in 0..peers {
            tokio::time::timeout(TIMEOUT, connected.recv())
                .await
                .expect("all peers connect and identify")
                .expect("channel");
        }
        let connect_time = started.elapsed();
        let after = rss_kib(pid);
        let per_peer = (after.saturating_sub(before)) as f64 / peers as f64;
        println!(
            "{role:<9} RSS {before:>7} KiB -> {after:>7} KiB with {peers} peers: {per_peer:.1} KiB per peer (connected in {:.1} s)",
            connect_time.as_secs_f64()
        );
        results.push(per_peer);
        for task in tasks {
            task.abort();
        }
        let _ = child.kill().await;
    }
    println!(
        "meshchat relay per idle peer = {:.2}x bare libp2p (target 1.1x); {:.2}x bare libp2p \
         with the relay's protocols (\"protocols\": + kad, gossipsub, 3 request-response, \
         relay server, dcutr, autonat)",
        results[0] / results[1].max(0.001),
        results[0] / results[2].max(0.001),
    );
}

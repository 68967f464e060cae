//! Relay benchmarks, each next to the bare dependency in the same run:
//!
//! 1. **Durable deposits per second**: bare libp2p clients deposit envelopes
//!    at a meshchat relay, each with the recipient's delivery token
//!    (acknowledged only after an fsync; the relay group-commits), next to
//!    raw sled insert + flush per item, and raw sled with batches of 64 per
//!    flush.
//! 2. **Fetch of 10k queued messages**: a returning peer's node starts and
//!    fetches, verifies, applies and stores 10 000 messages waiting at its
//!    relay, until the last is applied; next to bare request-response moving
//!    the same bytes in the same pages plus raw Automerge applying the same
//!    changes in one batch per history segment.
//! 3. **Memory per idle connected peer**: RSS growth of a relay process per
//!    connected idle peer (thousands of peers), next to a bare libp2p process
//!    (TCP + noise + yamux + identify + ping) with the same peers.
//!
//! Run: `cargo bench -p meshchat-tests --bench relay`
//!
//! Environment (optional): `MESHCHAT_BENCH_DEPOSITS` (default 4000),
//! `MESHCHAT_BENCH_FETCH` (default 10000), `MESHCHAT_BENCH_IDLE_PEERS`
//! (default 2000). Timings are printed, never asserted.

use std::{
    io,
    process::Stdio,
    time::{Duration, Instant},
};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    identify, noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::{ChatKind, ChatReplica, Identity, PublicKey, SignedChange},
    mailbox::{DeliveryToken, MailboxConfig},
    protocol::{
        encode_frame, Envelope, Inbound, MailboxCodec, MailboxRequest, MailboxResponse,
        MAILBOX_PROTOCOL,
    },
    DataDir, Event, NodeConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_ENV: &str = "MESHCHAT_BENCH_CHILD";
const ENVELOPE_BYTES: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn keypair(identity: &Identity) -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_bytes()).expect("ed25519 secret")
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(child(&role));
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "relay benchmarks on {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        deposits(env_usize("MESHCHAT_BENCH_DEPOSITS", 4000)).await;
        fetch(env_usize("MESHCHAT_BENCH_FETCH", 10_000)).await;
        idle_memory(env_usize("MESHCHAT_BENCH_IDLE_PEERS", 2000)).await;
    });
}

fn relay_config() -> NodeConfig {
    NodeConfig {
        mailbox: Some(MailboxConfig {
            deposits_per_sender_per_minute: u32::MAX,
            deposits_per_token_per_minute: u32::MAX,
            max_messages_per_recipient: 1_000_000,
            max_bytes_per_recipient: 1 << 34,
            max_total_bytes: 1 << 40,
            ..MailboxConfig::default()
        }),
        ..NodeConfig::loopback()
    }
}

/// `recipient`'s delivery token for the relay at `relay`.
fn token(recipient: &Identity, relay: &Multiaddr) -> DeliveryToken {
    let relay = match relay.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("relay address without /p2p"),
    };
    let relay = meshchat_node::public_key_of(&relay).expect("ed25519 relay");
    DeliveryToken::issue(recipient, Some(relay), None, i64::MAX)
}

/// One deposit: recipient, envelope, token.
type Item = (PublicKey, Vec<u8>, DeliveryToken);

async fn start_relay(tmp: &tempfile::TempDir) -> (meshchat_node::Node, Multiaddr) {
    let dir = DataDir::new(tmp.path().join("relay"));
    dir.init(None, &relay_config()).expect("init relay");
    let relay = meshchat_node::spawn(&dir, relay_config())
        .await
        .expect("spawn relay");
    let addr = relay.status().await.expect("status").listen_addrs[0].clone();
    (relay, addr)
}

// ---------------------------------------------------------------------------
// 1. Deposits

/// A bare libp2p client of the mailbox protocol.
struct MailboxClient {
    swarm: Swarm<request_response::Behaviour<MailboxCodec>>,
    relay: PeerId,
}

impl MailboxClient {
    async fn connect(identity: &Identity, relay: &Multiaddr) -> Self {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(identity))
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    MailboxCodec,
                    [(MAILBOX_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(TIMEOUT)
                        .with_max_concurrent_streams(256),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
            .build();
        let relay_id = match relay.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
            _ => panic!("relay address without /p2p"),
        };
        swarm.dial(relay.clone()).expect("dial");
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
            {
                if peer_id == relay_id {
                    break;
                }
            }
        }
        Self {
            swarm,
            relay: relay_id,
        }
    }

    /// Deposits every envelope, `window` in flight; returns once all are acknowledged.
    async fn deposit_all(&mut self, items: Vec<Item>, window: usize) {
        let total = items.len();
        let mut items = items.into_iter();
        let mut in_flight = 0;
        let mut done = 0;
        while done < total {
            while in_flight < window {
                let Some((recipient, envelope, token)) = items.next() else {
                    break;
                };
                let relay = self.relay;
                self.swarm.behaviour_mut().send_request(
                    &relay,
                    Inbound::Request(MailboxRequest::Deposit {
                        recipient,
                        envelope,
                        token: Some(token),
                    }),
                );
                in_flight += 1;
            }
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    assert!(
                        matches!(response, MailboxResponse::Deposited(_)),
                        "deposit refused: {response:?}"
                    );
                    in_flight -= 1;
                    done += 1;
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => panic!("deposit failed: {error}"),
                _ => {}
            }
        }
    }
}

/// Requests in flight per connection: a relay serves 16 streams per
/// connection and protocol (`[limits] max_streams_per_connection`).
const WINDOW: usize = 16;

async fn deposits(total: usize) {
    const CLIENTS: usize = 8;
    println!("\n== durable deposits: {total} envelopes of {ENVELOPE_BYTES} bytes, {CLIENTS} senders x {WINDOW} in flight ==");
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
        clients.push(MailboxClient::connect(&Identity::generate(), &addr).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        let items: Vec<Item> = (0..total / CLIENTS)
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
            client.deposit_all(items, WINDOW).await;
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let meshchat = (total / CLIENTS * CLIENTS) as f64 / started.elapsed().as_secs_f64();
    relay.shutdown().await;

    let per_item = raw_sled(total.min(2000), 1);
    let batched = raw_sled(total, 64);

    println!("meshchat relay (group commit)   {meshchat:>9.0} deposits/s");
    println!(
        "raw sled insert+flush each      {per_item:>9.0} ops/s   (meshchat = {:.2}x)",
        meshchat / per_item
    );
    println!(
        "raw sled insert, flush per 64   {batched:>9.0} ops/s   (meshchat = {:.2}x)",
        meshchat / batched
    );
}

/// Raw sled: `n` inserts of an envelope-sized value, a flush every `batch`.
fn raw_sled(n: usize, batch: usize) -> f64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = sled::open(tmp.path()).expect("sled");
    let tree = db.open_tree("items").expect("tree");
    let value = vec![7u8; ENVELOPE_BYTES];
    let started = Instant::now();
    for i in 0..n {
        tree.insert((i as u64).to_be_bytes(), value.as_slice())
            .expect("insert");
        if (i + 1) % batch == 0 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    n as f64 / started.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------
// 2. Fetch of queued mail

async fn fetch(n: usize) {
    println!("\n== fetch of {n} queued messages by a returning peer ==");
    let tmp = tempfile::tempdir().expect("tmp");
    let (relay, relay_addr) = start_relay(&tmp).await;
    let bob_dir = DataDir::new(tmp.path().join("bob"));
    let bob_config = NodeConfig {
        relays: vec![relay_addr.clone()],
        ..NodeConfig::loopback()
    };
    bob_dir.init(Some("bob"), &bob_config).expect("init bob");
    let bob_identity = bob_dir.identity().expect("bob identity");
    let bob = bob_identity.public();
    let bob_token = token(&bob_identity, &relay_addr);
    let alice = Identity::generate();

    let changes = write_messages(&alice, bob, n);
    let envelopes: Vec<Item> = changes
        .iter()
        .map(|c| {
            (
                bob,
                encode_frame(&Envelope::Changes(vec![c.clone()])),
                bob_token.clone(),
            )
        })
        .collect();
    let bytes: usize = envelopes.iter().map(|(_, e, _)| e.len()).sum();
    let mut depositor = MailboxClient::connect(&alice, &relay_addr).await;
    depositor.deposit_all(envelopes.clone(), WINDOW).await;
    drop(depositor);
    println!(
        "queued: {n} envelopes, {:.1} MiB",
        bytes as f64 / (1 << 20) as f64
    );

    let started = Instant::now();
    let node = meshchat_node::spawn(&bob_dir, bob_config)
        .await
        .expect("spawn bob");
    let mut events = node.subscribe();
    let mut got = 0;
    let chat = meshchat_node::crdt::ChatId::direct(&alice.public(), &bob);
    tokio::time::timeout(TIMEOUT, async {
        while got < n {
            match events.recv().await {
                Ok(Event::Message { .. }) => got += 1,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    got = node.history_quiet(chat).await.map_or(got, |h| h.len());
                }
                _ => {}
            }
        }
    })
    .await
    .expect("all mail applied in time");
    let meshchat = started.elapsed();
    node.shutdown().await;
    relay.shutdown().await;

    let transfer = bare_transfer(&envelopes).await;
    let apply = raw_automerge_apply(&changes);
    let bare = transfer + apply;
    println!(
        "meshchat: start, fetch, verify, apply, store, ack  {:>8.2} s  ({:.0} msgs/s)",
        meshchat.as_secs_f64(),
        n as f64 / meshchat.as_secs_f64()
    );
    println!(
        "bare: request-response pages {:.2} s + raw Automerge batch apply {:.2} s = {:.2} s  (meshchat = {:.1}x)",
        transfer.as_secs_f64(),
        apply.as_secs_f64(),
        bare.as_secs_f64(),
        meshchat.as_secs_f64() / bare.as_secs_f64()
    );
}

fn write_messages(alice: &Identity, bob: PublicKey, n: usize) -> Vec<SignedChange> {
    let mut chat = ChatReplica::new(ChatKind::direct(alice.public(), bob));
    let t0 = 1_700_000_000_000;
    (0..n)
        .map(|i| {
            chat.write_message(
                alice,
                &format!("message {i}: a line of ordinary chat text"),
                None,
                t0 + i as i64,
            )
            .expect("write")
            .change
        })
        .collect()
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

/// Raw bytes over request-response (for the bare side of the fetch).
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

async fn read_all<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(64 << 20).read_to_end(&mut buf).await?;
    Ok(buf)
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

const BYTES_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/bytes/1");

fn bytes_swarm(support: ProtocolSupport) -> Swarm<request_response::Behaviour<BytesCodec>> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                BytesCodec,
                [(BYTES_PROTOCOL, support)],
                request_response::Config::default().with_request_timeout(TIMEOUT),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
        .build()
}

/// The same envelopes served in pages of 256 (as the relay pages them),
/// fetched one page at a time.
async fn bare_transfer(envelopes: &[Item]) -> Duration {
    let pages: Vec<Vec<u8>> = envelopes
        .chunks(256)
        .map(|c| c.iter().flat_map(|(_, e, _)| e.clone()).collect())
        .collect();
    let mut server = bytes_swarm(ProtocolSupport::Inbound);
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
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
    client.dial(addr).expect("dial");
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
            break;
        }
    }
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
    ping: ping::Behaviour,
}

fn idle_swarm(key: libp2p::identity::Keypair, protocol: &str) -> Swarm<Idle> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Idle {
            identify: identify::Behaviour::new(identify::Config::new(
                protocol.to_owned(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
        .build()
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
            swarm
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
                .expect("listen");
            let me = *swarm.local_peer_id();
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    println!(
                        "ADDR {}",
                        address.with(libp2p::multiaddr::Protocol::P2p(me))
                    );
                    break;
                }
            }
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
    println!("\n== memory per idle connected peer: {peers} peers (TCP + noise + yamux + identify + ping) ==");
    let mut results = Vec::new();
    for role in ["relay", "bare"] {
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
        let mut tasks = Vec::new();
        for _ in 0..peers {
            let addr = addr.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut swarm = idle_swarm(
                    libp2p::identity::Keypair::generate_ed25519(),
                    "/meshchat/id/1",
                );
                swarm.dial(addr).expect("dial");
                // Idle means: connected, identified and pinged once.
                let (mut identified, mut pinged, mut told) = (false, false, false);
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::Behaviour(IdleEvent::Identify(identify::Event::Received {
                            ..
                        })) => identified = true,
                        SwarmEvent::Behaviour(IdleEvent::Ping(ping::Event {
                            result: Ok(_),
                            ..
                        })) => pinged = true,
                        _ => {}
                    }
                    if identified && pinged && !told {
                        let _ = tx.send(()).await;
                        told = true;
                    }
                }
            }));
        }
        let started = Instant::now();
        for _ in 0..peers {
            tokio::time::timeout(TIMEOUT, connected.recv())
                .await
                .expect("all peers connect, identify and ping")
                .expect("channel");
        }
        let connect_time = started.elapsed();
        let after = rss_kib(pid);
        let per_peer = (after.saturating_sub(before)) as f64 / peers as f64;
        println!(
            "{role:<6} RSS {before:>7} KiB -> {after:>7} KiB with {peers} peers: {per_peer:.1} KiB per peer (connected in {:.1} s)",
            connect_time.as_secs_f64()
        );
        results.push(per_peer);
        for task in tasks {
            task.abort();
        }
        let _ = child.kill().await;
    }
    println!(
        "meshchat relay per idle peer = {:.2}x bare libp2p",
        results[0] / results[1].max(0.001)
    );
}

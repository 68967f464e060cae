//! Presence cost: a meshchat node with N connected contacts (default 1,000)
//! sends them signed heartbeats. Measured in one run: the node's CPU time and
//! the bytes on its TCP sockets (kernel counters via `ss`) over a window with
//! heartbeats every second, and over a window with presence off (privacy
//! `nobody`: what remains is what an idle connection carries, the bare
//! dependency: since the node runs no libp2p ping, nothing at all, as
//! yamux measures round trips only while data flows). Both are
//! scaled to the default 60 s period: bytes per contact per hour and CPU per
//! hour.
//!
//! The node runs in its own process (this binary, started again as a child);
//! the contacts are bare libp2p swarms (TCP + noise + yamux + identify +
//! `/meshchat/notice/1`) in the parent that answer heartbeats.
//!
//! Run: `cargo bench -p meshchat-tests --bench presence`
//! Environment (optional): `MESHCHAT_BENCH_CONTACTS` (default 1000),
//! `MESHCHAT_BENCH_WINDOW_S` (default 20). Figures are printed, never asserted.

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    identify,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    Multiaddr,
};
use meshchat_node::{
    crdt::Identity,
    protocol::{Inbound, Notice, NoticeCodec, NoticeResponse, WireError, NOTICE_PROTOCOL},
    DataDir, LastSeenPrivacy, NodeConfig,
};
use meshchat_tests::{
    net::{bare_swarm, keypair_of},
    stats::{env_or, runtime},
    Net,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CHILD_ENV: &str = "MESHCHAT_BENCH_CHILD";
const CONTACTS_ENV: &str = "MESHCHAT_BENCH_CONTACTS";
const TIMEOUT: Duration = Duration::from_secs(600);
/// The default heartbeat period the figures are scaled to.
const DEFAULT_PERIOD_S: f64 = 60.0;

fn env_usize(name: &str, default: usize) -> usize {
    env_or(name, default)
}

/// Contact `i`'s identity, the same in the parent and the child.
fn contact(i: usize) -> Identity {
    let mut secret = [0x5a; 32];
    secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Identity::from_secret_bytes(secret)
}

fn main() {
    let runtime = runtime(2);
    let contacts = env_usize(CONTACTS_ENV, 1000);
    if std::env::var_os(CHILD_ENV).is_some() {
        runtime.block_on(child(contacts));
    } else {
        runtime.block_on(parent(
            contacts,
            env_usize("MESHCHAT_BENCH_WINDOW_S", 20) as u64,
        ));
    }
}

/// The measured node: adds the contacts, prints its address, then obeys
/// `nobody` on stdin (presence off) until stdin closes.
async fn child(contacts: usize) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::new(tmp.path().join("node"));
    let config = NodeConfig {
        presence_secs: 1,
        redial_secs: 3600,
        ..NodeConfig::loopback()
    };
    dir.init(Some("node"), &config).expect("init");
    let node = meshchat_node::spawn(&dir, config).await.expect("spawn");
    for i in 0..contacts {
        let peer = meshchat_node::peer_id_of(&contact(i).public()).expect("peer id");
        node.contacts()
            .add(peer, None, Vec::new())
            .await
            .expect("add contact");
    }
    let addr = node.network().status().await.expect("status").listen_addrs[0].clone();
    println!("ADDR {addr}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        if line == "nobody" {
            node.profiles()
                .set_last_seen_privacy(LastSeenPrivacy::Nobody)
                .await
                .expect("privacy");
            println!("OK");
        }
    }
    node.shutdown().await;
}

#[derive(NetworkBehaviour)]
struct ContactBehaviour {
    identify: identify::Behaviour,
    notice: request_response::Behaviour<NoticeCodec>,
}

/// A bare contact: connects, answers heartbeats and profiles, refuses the rest.
async fn run_contact(
    i: usize,
    addr: Multiaddr,
    connected: tokio::sync::mpsc::Sender<()>,
    heartbeats: Arc<AtomicU64>,
) {
    let mut swarm = bare_swarm(keypair_of(&contact(i)), Net::Loopback, TIMEOUT, |key| {
        ContactBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/meshchat/id/1".into(),
                key.public(),
            )),
            notice: request_response::Behaviour::new(
                [(NOTICE_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(TIMEOUT),
            ),
        }
    });
    swarm.dial(addr.clone()).expect("dial");
    let mut told = false;
    loop {
        let (request, channel) = match swarm.select_next_some().await {
            SwarmEvent::Behaviour(ContactBehaviourEvent::Notice(
                request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) => (request, channel),
            // The node admits 64 handshakes at once (`max_pending_incoming`,
            // which contacts do not bypass): a thousand contacts dialling
            // together are partly refused, and dial again.
            SwarmEvent::OutgoingConnectionError { .. }
            | SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => {
                swarm.dial(addr.clone()).expect("dial");
                continue;
            }
            _ => continue,
        };
        {
            let response = match request {
                Inbound::Request(Notice::Heartbeat(_)) => {
                    heartbeats.fetch_add(1, Ordering::Relaxed);
                    // The node greets a new contact with a heartbeat:
                    // from then on this contact is connected and idle.
                    if !told {
                        told = true;
                        let _ = connected.send(()).await;
                    }
                    NoticeResponse::Noted
                }
                Inbound::Request(Notice::Profile(_) | Notice::Typing { .. }) => {
                    NoticeResponse::Noted
                }
                _ => NoticeResponse::Error(WireError::NotMember),
            };
            let _ = swarm
                .behaviour_mut()
                .notice
                .send_response(channel, response);
        }
    }
}

/// (utime + stime) of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports them in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes sent + received on the TCP sockets bound to `port` (kernel counters).
fn socket_bytes(port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    for word in text.split_whitespace() {
        for prefix in ["bytes_sent:", "bytes_received:"] {
            if let Some(v) = word.strip_prefix(prefix) {
                total += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

struct Window {
    cpu_s: f64,
    bytes: u64,
    heartbeats: u64,
    secs: f64,
}

async fn measure(pid: u32, port: u16, heartbeats: &AtomicU64, secs: u64) -> Window {
    let (cpu0, bytes0, beats0, t0) = (
        cpu_seconds(pid),
        socket_bytes(port),
        heartbeats.load(Ordering::Relaxed),
        Instant::now(),
    );
    // The measurement window itself (not a wait for the network).
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Window {
        cpu_s: cpu_seconds(pid) - cpu0,
        bytes: socket_bytes(port) - bytes0,
        heartbeats: heartbeats.load(Ordering::Relaxed) - beats0,
        secs: t0.elapsed().as_secs_f64(),
    }
}

async fn parent(contacts: usize, window_s: u64) {
    println!(
        "presence: one meshchat node with {contacts} connected contacts, heartbeats every 1 s \
         for {window_s} s, scaled to the default {DEFAULT_PERIOD_S} s; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let exe = std::env::current_exe().expect("own executable");
    let mut child = tokio::process::Command::new(exe)
        .env(CHILD_ENV, "node")
        .env(CONTACTS_ENV, contacts.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("child");
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");
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
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("tcp port");

    let heartbeats = Arc::new(AtomicU64::new(0));
    let (tx, mut connected) = tokio::sync::mpsc::channel(contacts.max(1));
    let mut tasks = Vec::new();
    for i in 0..contacts {
        tasks.push(tokio::spawn(run_contact(
            i,
            addr.clone(),
            tx.clone(),
            heartbeats.clone(),
        )));
    }
    for _ in 0..contacts {
        tokio::time::timeout(TIMEOUT, connected.recv())
            .await
            .expect("every contact connects and hears a first heartbeat")
            .expect("channel");
    }

    let on = measure(pid, port, &heartbeats, window_s).await;
    stdin.write_all(b"nobody\n").await.expect("stdin");
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("child exited");
        if line == "OK" {
            break;
        }
    }
    let off = measure(pid, port, &heartbeats, window_s).await;

    let per = |w: &Window| {
        let per_contact_s = w.bytes as f64 / w.secs / contacts as f64;
        let cpu_share = w.cpu_s / w.secs;
        (per_contact_s, cpu_share)
    };
    let (on_bytes, on_cpu) = per(&on);
    let (off_bytes, off_cpu) = per(&off);
    let beats_per_s = on.heartbeats as f64 / on.secs;
    let bytes_per_beat = (on_bytes - off_bytes).max(0.0) * contacts as f64 / beats_per_s.max(1.0);
    let cpu_per_beat = (on_cpu - off_cpu).max(0.0) / beats_per_s.max(1.0);
    let hour_beats = 3600.0 / DEFAULT_PERIOD_S;
    let presence_bytes_hour = bytes_per_beat * hour_beats;
    let keepalive_bytes_hour = off_bytes * 3600.0;
    println!(
        "heartbeats delivered: {:.0}/s ({} contacts)",
        beats_per_s, contacts
    );
    println!(
        "with presence:    {:>8.1} bytes/s per contact, node CPU {:>5.1}% of a core",
        on_bytes,
        on_cpu * 100.0
    );
    println!(
        "presence off:     {:>8.1} bytes/s per contact, node CPU {:>5.1}% of a core  (an idle connection: the bare floor)",
        off_bytes,
        off_cpu * 100.0
    );
    println!(
        "one heartbeat exchange: {bytes_per_beat:.0} bytes on the wire, {:.1} µs of node CPU",
        cpu_per_beat * 1e6
    );
    // An idle connection may carry nothing at all (no libp2p ping; yamux
    // measures its round trip only while data flows): no ratio then.
    let against_idle = if keepalive_bytes_hour >= 1024.0 {
        format!(
            "{:.2}x the idle connection's {:.1} KiB",
            presence_bytes_hour / keepalive_bytes_hour,
            keepalive_bytes_hour / 1024.0
        )
    } else {
        format!(
            "the idle connection carries {:.0} bytes an hour",
            keepalive_bytes_hour
        )
    };
    println!(
        "at the default {DEFAULT_PERIOD_S} s: presence {:.1} KiB per contact per hour ({against_idle}); \
         {contacts} contacts cost {:.2} CPU-seconds per hour ({:.3}% of a core)",
        presence_bytes_hour / 1024.0,
        cpu_per_beat * contacts as f64 * hour_beats,
        cpu_per_beat * contacts as f64 / DEFAULT_PERIOD_S * 100.0
    );
    for task in tasks {
        task.abort();
    }
    drop(stdin);
    let _ = child.kill().await;
}

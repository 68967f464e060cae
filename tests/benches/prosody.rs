//! meshchat against a server people run instead: prosody (XMPP), on the
//! same machine, in the same run (issue 15).
//!
//! The bench starts its own prosody on 127.0.0.1 (a free port; config,
//! data, pid file and log in a temp dir; c2s without TLS, SASL PLAIN
//! allowed, mod_offline on, no s2s), registers two users with
//! `prosodyctl`, and drives it with the minimal client of
//! `meshchat_tests::xmpp`. Three figures on each side:
//!
//! 1. **Receipt latency, one message in flight.** prosody: A sends a
//!    `<message>` asking for an XEP-0184 receipt, B's client answers
//!    `<received/>` as soon as it reads it, A times until it reads the
//!    receipt. meshchat: `send` until the sender's `Delivered` receipt
//!    (the receiver has verified, stored, fsynced and applied it).
//! 2. **Throughput back to back.** prosody: A writes N messages at once,
//!    B answers each; msg/s until A has every receipt. meshchat: as
//!    `direct_latency` measures it, until every `Delivered` receipt.
//! 3. **Offline catch-up.** prosody: B offline, A sends 1,000 messages
//!    (mod_offline stores them), then from B's TCP connect (login, bind,
//!    presence) until B has read all 1,000. meshchat: a returning peer's
//!    node, from its start until it has applied 1,000 messages queued at
//!    its relay (as the `relay` bench measures it).
//!
//! Then, untimed, it attaches `strace` (if installed) to prosody while the
//! same kinds of traffic run again, and counts the sync calls and the file
//! writes prosody makes: what it does and does not make durable.
//!
//! Without a `prosody` on `PATH` it says so and exits 0.
//!
//! Run: `cargo bench -p meshchat-tests --bench prosody`
//!
//! Environment (optional): `MESHCHAT_BENCH_LAT_MSGS` (one-in-flight
//! samples per side, default 1000), `MESHCHAT_BENCH_TPUT_MSGS` (back-to-back
//! messages, default 5000), `MESHCHAT_BENCH_FETCH` (offline messages,
//! default 1000). Timings are printed, never asserted.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use meshchat_tests::{
    direct::{self, WARMUP},
    relay::returning_peer_fetch,
    stats::{env_or, ms, per_sec, percentile, runtime},
    within,
    xmpp::{attr, escape, Client, Item},
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
    task::JoinHandle,
};

/// The virtual host the bench's prosody serves.
const HOST: &str = "localhost";
const PASSWORD: &str = "bench-password";
/// Bound on the offline catch-up and the back-to-back runs, each side.
const TIMEOUT: Duration = Duration::from_secs(600);
/// Deposits in flight at the relay while mail is queued (as `relay` does).
const DEPOSIT_WINDOW: usize = 16;
/// Online messages with receipts sent while strace watches.
const TRACED_ONLINE: usize = 100;

fn main() {
    let (Some(prosody), Some(prosodyctl)) = (on_path("prosody"), on_path("prosodyctl")) else {
        println!(
            "prosody bench: no `prosody` (and `prosodyctl`) on PATH; skipped. \
             Install it with `apt-get install -y prosody` (Debian 12: 0.12.3) to compare."
        );
        return;
    };
    // The nodes' warnings only (a lone node's Kademlia has no one to
    // bootstrap from, and says so), unless RUST_LOG asks for more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,libp2p_kad=error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    runtime(2).block_on(run(prosody, prosodyctl));
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

async fn run(prosody: PathBuf, prosodyctl: PathBuf) {
    let lat_n: usize = env_or("MESHCHAT_BENCH_LAT_MSGS", 1000).max(1);
    let tput_n: usize = env_or("MESHCHAT_BENCH_TPUT_MSGS", 5000).max(1);
    let offline_n: usize = env_or("MESHCHAT_BENCH_FETCH", 1000).max(1);
    let text = direct::message_text();
    let started = Instant::now();
    println!(
        "prosody bench: {lat_n} one-in-flight messages (+{WARMUP} warm-up), {tput_n} back to back, \
         {offline_n} offline; {} logical cores, 2 tokio workers",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // prosody first, alone on the machine; stopped before meshchat runs.
    let server = Server::start(&prosody, &prosodyctl).await;
    println!(
        "{} on {} (data and log in {})",
        server.version,
        server.addr,
        server.dir.path().display()
    );
    let xmpp = Figures {
        receipts: xmpp_latency(&server, lat_n, &text).await,
        back_to_back: xmpp_throughput(&server, tput_n, &text).await,
        offline: xmpp_offline(&server, offline_n).await,
    };
    let trace = traced_traffic(&server, offline_n, &text).await;
    drop(server);

    let samples = direct::one_in_flight(lat_n, &text).await;
    let tput = direct::back_to_back(tput_n, &text).await;
    let fetched = returning_peer_fetch(offline_n, DEPOSIT_WINDOW, TIMEOUT).await;
    println!(
        "meshchat offline: node started {}, first message applied {}, all {}",
        ms(fetched.started),
        ms(fetched.first),
        ms(fetched.elapsed)
    );
    let ours = Figures {
        receipts: samples.delivered,
        back_to_back: tput.all_delivered,
        offline: Offline {
            until_login: None,
            until_all: fetched.elapsed,
        },
    };

    report(&xmpp, &ours, lat_n, tput_n, offline_n, &trace);
    println!();
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- figures

/// One side's three measurements.
struct Figures {
    /// Send → receipt, one in flight.
    receipts: Vec<Duration>,
    /// First send → last receipt, all back to back.
    back_to_back: Duration,
    offline: Offline,
}

struct Offline {
    /// Connect → logged in and bound (prosody only).
    until_login: Option<Duration>,
    /// Start → every queued message read (prosody) or applied (meshchat).
    until_all: Duration,
}

fn report(
    xmpp: &Figures,
    ours: &Figures,
    lat_n: usize,
    tput_n: usize,
    offline_n: usize,
    trace: &str,
) {
    let mut a = xmpp.receipts.clone();
    let mut b = ours.receipts.clone();
    a.sort();
    b.sort();
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>27}",
        "measurement", "prosody", "meshchat", "ratio (>1: meshchat behind)"
    );
    let verdict = |behind: f64| {
        if behind < 1.0 {
            "meshchat ahead"
        } else {
            "prosody ahead"
        }
    };
    for (q, name) in [(0.50, "p50"), (0.90, "p90"), (0.99, "p99")] {
        let (p, m) = (percentile(&a, q), percentile(&b, q));
        let r = m.as_secs_f64() / p.as_secs_f64().max(1e-12);
        println!(
            "{:<44} {:>14} {:>14} {:>12.2}x {:>13}",
            format!("receipt {name}, one in flight ({lat_n})"),
            ms(p),
            ms(m),
            r,
            verdict(r)
        );
    }
    let (p, m) = (
        per_sec(tput_n, xmpp.back_to_back),
        per_sec(tput_n, ours.back_to_back),
    );
    println!(
        "{:<44} {:>11.0} /s {:>11.0} /s {:>12.2}x {:>13}",
        format!("back to back, all receipts ({tput_n})"),
        p,
        m,
        p / m,
        verdict(p / m)
    );
    let (p, m) = (xmpp.offline.until_all, ours.offline.until_all);
    let r = m.as_secs_f64() / p.as_secs_f64().max(1e-12);
    println!(
        "{:<44} {:>12.3} s {:>12.3} s {:>12.2}x {:>13}",
        format!("{offline_n} offline, start/connect -> all read"),
        p.as_secs_f64(),
        m.as_secs_f64(),
        r,
        verdict(r)
    );
    if let Some(login) = xmpp.offline.until_login {
        println!(
            "  of which prosody's connect + SASL PLAIN + bind: {}",
            ms(login)
        );
    }
    println!("  ratios: meshchat/prosody for times, prosody/meshchat for msg/s");
    println!();
    println!(
        "Durability: a meshchat receipt means the receiver's node has the message on disk \
         (sled flush + fdatasync before it answers; the sender fdatasyncs its own copy too), \
         and a relay acknowledges queued mail after flush + fdatasync. prosody routes an online \
         message in memory and stores nothing for it; an offline message is appended to a file \
         under data_path (mod_offline -> storage \"internal\"), with no fsync:"
    );
    println!("{trace}");
}

// ---------------------------------------------------------------- prosody

/// A prosody process of the bench's own, killed when dropped (also when
/// the bench panics).
struct Server {
    dir: TempDir,
    addr: SocketAddr,
    child: Child,
    version: String,
    log_drain: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.log_drain.abort();
    }
}

impl Server {
    async fn start(prosody: &Path, prosodyctl: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("prosody.cfg.lua");
        for sub in ["data", "certs"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(&config, prosody_config(dir.path(), port)).expect("write config");
        for user in ["alice", "bob"] {
            let status = within(
                "prosodyctl register",
                Command::new(prosodyctl)
                    .arg("--config")
                    .arg(&config)
                    .args(["register", user, HOST, PASSWORD])
                    .stdout(Stdio::null())
                    .status(),
            )
            .await
            .expect("run prosodyctl");
            assert!(status.success(), "prosodyctl register {user}: {status}");
        }
        let version = within(
            "prosodyctl about",
            Command::new(prosodyctl)
                .arg("--config")
                .arg(&config)
                .arg("about")
                .stderr(Stdio::null())
                .output(),
        )
        .await
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.starts_with("Prosody "))
                .unwrap_or("prosody (version unknown)")
                .to_owned()
        })
        .unwrap_or_else(|_| "prosody (version unknown)".to_owned());

        let mut child = Command::new(prosody)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prosody");
        // It logs to stdout too: ready once c2s listens.
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = Vec::new();
        within("prosody's c2s listener", async {
            loop {
                match lines.next_line().await.expect("prosody's stdout") {
                    Some(line) if line.contains("Activated service 'c2s' on") => break,
                    Some(line) => seen.push(line),
                    None => panic!("prosody exited:\n{}", seen.join("\n")),
                }
            }
        })
        .await;
        let log_drain =
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            dir,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            child,
            version,
            log_drain,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("prosody running")
    }

    async fn login(&self, user: &str) -> Client {
        within("xmpp login", Client::login(self.addr, HOST, user, PASSWORD))
            .await
            .expect("login")
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The config: everything in `dir`, c2s on 127.0.0.1:`port` without TLS,
/// SASL PLAIN allowed in the clear, the default ("internal") storage with
/// hashed passwords, mod_offline on, s2s off.
fn prosody_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"-- Written by meshchat's prosody bench; everything stays in this directory.
-- A bench may run as root (in a container): prosody refuses to unless told.
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{
    {{ levels = {{ min = "info" }}, to = "console" }};
    {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }};
}}
modules_enabled = {{ "roster", "saslauth", "disco", "ping", "offline" }}
modules_disabled = {{ "s2s", "s2s_auth_certs" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
VirtualHost "{HOST}"
"#
    )
}

fn jid(user: &str) -> String {
    format!("{user}@{HOST}")
}

/// A chat message to `to` asking for an XEP-0184 receipt.
fn message(to: &str, id: &str, text: &str) -> String {
    format!(
        "<message to='{to}' id='{id}' type='chat'><body>{}</body><request xmlns='urn:xmpp:receipts'/></message>",
        escape(text)
    )
}

/// The id a receipt acknowledges, if `element` is one.
fn receipt_of(element: &str) -> Option<&str> {
    element
        .starts_with("<message")
        .then(|| attr(element, "received", "id"))
        .flatten()
}

/// B's client: answers every message that asks for a receipt with
/// `<received/>`, as soon as it has read it (all answers to one read go in
/// one write), until told to stop; then hands the client back.
fn answer_receipts(mut bob: Client) -> (oneshot::Sender<()>, JoinHandle<Client>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut out = String::new();
        loop {
            while let Some(item) = bob.reader.buffered().expect("bob reads") {
                let Item::Element(e) = item else {
                    panic!("bob's stream ended: {item:?}")
                };
                if e.starts_with("<message") && e.contains("<request xmlns='urn:xmpp:receipts'") {
                    let (Some(from), Some(id)) =
                        (attr(&e, "message", "from"), attr(&e, "message", "id"))
                    else {
                        panic!("a message without from or id: {e}")
                    };
                    out.push_str(&format!(
                        "<message to='{from}' id='r-{id}'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
                    ));
                }
            }
            if !out.is_empty() {
                bob.writer
                    .write_all(out.as_bytes())
                    .await
                    .expect("bob writes");
                out.clear();
            }
            tokio::select! {
                _ = &mut stopped => return bob,
                read = bob.reader.read_more() => read.expect("bob reads"),
            }
        }
    });
    (stop, task)
}

async fn stop_answering(stop: oneshot::Sender<()>, task: JoinHandle<Client>) {
    let _ = stop.send(());
    let bob = task.await.expect("bob's task");
    within("bob's logout", bob.logout()).await.expect("logout");
}

/// Reads until the receipt for `id`; returns when it was read.
async fn receipt_for(alice: &mut Client, id: &str) -> Instant {
    within("a receipt", async {
        loop {
            let e = alice.reader.element().await.expect("alice reads");
            if receipt_of(&e) == Some(id) {
                return Instant::now();
            }
        }
    })
    .await
}

async fn xmpp_latency(server: &Server, n: usize, text: &str) -> Vec<Duration> {
    let mut alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let (stop, task) = answer_receipts(bob);
    let to = jid("bob");
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let id = format!("l{i}");
        let stanza = message(&to, &id, text);
        let t0 = Instant::now();
        alice.send(&stanza).await.expect("alice writes");
        let at = receipt_for(&mut alice, &id).await;
        if i >= WARMUP {
            samples.push(at - t0);
        }
    }
    stop_answering(stop, task).await;
    within("alice's logout", alice.logout())
        .await
        .expect("logout");
    samples
}

async fn xmpp_throughput(server: &Server, n: usize, text: &str) -> Duration {
    let mut alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let (stop, task) = answer_receipts(bob);
    let to = jid("bob");
    // Warm the path with one receipted message.
    alice
        .send(&message(&to, "warm", text))
        .await
        .expect("alice writes");
    receipt_for(&mut alice, "warm").await;

    let burst: String = (0..n)
        .map(|i| message(&to, &format!("t{i}"), text))
        .collect();
    let Client { reader, writer, .. } = &mut alice;
    let t0 = Instant::now();
    let (written, last) = tokio::join!(writer.write_all(burst.as_bytes()), async {
        tokio::time::timeout(TIMEOUT, async {
            let mut got = 0;
            loop {
                let e = reader.element().await.expect("alice reads");
                if receipt_of(&e).is_some() {
                    got += 1;
                    if got == n {
                        return Instant::now();
                    }
                }
            }
        })
        .await
        .expect("every receipt in time")
    });
    written.expect("alice writes");
    stop_answering(stop, task).await;
    within("alice's logout", alice.logout())
        .await
        .expect("logout");
    last - t0
}

/// Queues `n` messages for offline B (acknowledged by the server once a ping
/// after them is answered), then logs B in and reads them all.
async fn xmpp_offline(server: &Server, n: usize) -> Offline {
    let mut alice = server.login("alice").await;
    let to = jid("bob");
    let burst: String = (0..n)
        .map(|i| {
            format!(
                "<message to='{to}' id='o{i}' type='chat'><body>message {i}: a line of ordinary chat text</body></message>"
            )
        })
        .collect();
    alice.send(&burst).await.expect("alice writes");
    within("prosody stores the burst", alice.ping())
        .await
        .expect("ping");

    let t0 = Instant::now();
    let mut bob = within(
        "bob connects",
        Client::connect(server.addr, HOST, "bob", PASSWORD),
    )
    .await
    .expect("bob connects");
    let until_login = t0.elapsed();
    bob.send("<presence/>").await.expect("bob writes");
    let mut delayed = 0;
    tokio::time::timeout(TIMEOUT, async {
        let mut got = 0;
        while got < n {
            let e = bob.reader.element().await.expect("bob reads");
            if e.starts_with("<message") && e.contains("<body>") {
                got += 1;
                delayed += usize::from(e.contains("urn:xmpp:delay"));
            }
        }
    })
    .await
    .expect("every offline message in time");
    let until_all = t0.elapsed();
    assert_eq!(delayed, n, "every message came from offline storage");
    within("bob's logout", bob.logout()).await.expect("logout");
    within("alice's logout", alice.logout())
        .await
        .expect("logout");
    Offline {
        until_login: Some(until_login),
        until_all,
    }
}

// ---------------------------------------------------------------- strace

/// The calls strace watches: every way to sync, and the file operations
/// storage makes.
const TRACED: &str = "fsync,fdatasync,sync_file_range,syncfs,sync,msync,fallocate,openat,rename,renameat,renameat2,unlink,unlinkat";

/// Runs online and offline traffic again (untimed), each with strace
/// attached to prosody; returns a summary of the calls it saw.
async fn traced_traffic(server: &Server, offline_n: usize, text: &str) -> String {
    let Some(strace) = on_path("strace") else {
        return "  (strace not on PATH: `apt-get install -y strace` to see prosody's syncs)".into();
    };
    let online = match Tracer::attach(&strace, server, "online").await {
        Ok(tracer) => {
            online_traffic(server, TRACED_ONLINE, text).await;
            tracer.detach().await
        }
        Err(why) => return format!("  (strace could not attach to prosody: {why})"),
    };
    let offline = match Tracer::attach(&strace, server, "offline").await {
        Ok(tracer) => {
            xmpp_offline(server, offline_n).await;
            tracer.detach().await
        }
        Err(why) => return format!("  (strace could not attach to prosody: {why})"),
    };
    format!(
        "  strace -f -y -e trace={TRACED} -p <prosody>\n  \
         {TRACED_ONLINE} online messages with receipts (logins included): {}\n  \
         {offline_n} offline messages stored, then read by a returning user (logins included): {}",
        online.summary(),
        offline.summary(),
    )
}

/// `n` messages with receipts, one at a time, untimed.
async fn online_traffic(server: &Server, n: usize, text: &str) {
    let mut alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let (stop, task) = answer_receipts(bob);
    let to = jid("bob");
    for i in 0..n {
        let id = format!("s{i}");
        alice
            .send(&message(&to, &id, text))
            .await
            .expect("alice writes");
        receipt_for(&mut alice, &id).await;
    }
    stop_answering(stop, task).await;
    within("alice's logout", alice.logout())
        .await
        .expect("logout");
}

/// strace attached to prosody, writing to a file in its temp dir.
struct Tracer {
    child: Child,
    out: PathBuf,
}

impl Tracer {
    /// Attaches; returns once strace says it has.
    async fn attach(strace: &Path, server: &Server, label: &str) -> Result<Self, String> {
        let out = server.dir.path().join(format!("strace-{label}.txt"));
        let mut child = Command::new(strace)
            .args(["-f", "-y", "-e"])
            .arg(format!("trace={TRACED}"))
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(server.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
        within("strace attaches", async {
            while let Ok(Some(line)) = errors.next_line().await {
                if line.contains("attached") {
                    return Ok(());
                }
                if !line.trim().is_empty() {
                    return Err(line);
                }
            }
            Err("strace exited".to_owned())
        })
        .await?;
        // Its stderr must not fill up (it says "detached" at the end).
        tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
        Ok(Self { child, out })
    }

    /// Detaches (SIGINT: strace writes everything out and lets go) and
    /// reads what it saw.
    async fn detach(mut self) -> Calls {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        let _ = within("strace exits", self.child.wait()).await;
        Calls::read(&self.out)
    }
}

/// What strace saw: calls per name, and the files opened for writing.
struct Calls {
    counts: BTreeMap<String, usize>,
    written: Vec<String>,
}

impl Calls {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut counts = BTreeMap::new();
        let mut written = Vec::new();
        for line in text.lines() {
            // "<pid> name(args) = result"
            let Some(call) = line.split_whitespace().nth(1) else {
                continue;
            };
            let Some((name, _)) = call.split_once('(') else {
                continue;
            };
            *counts.entry(name.to_owned()).or_insert(0) += 1;
            if name == "openat" && (line.contains("O_WRONLY") || line.contains("O_RDWR")) {
                if let Some(file) = line.split('"').nth(1) {
                    let file = file.rsplit("/data/").next().unwrap_or(file).to_owned();
                    if !written.contains(&file) {
                        written.push(file);
                    }
                }
            }
        }
        Self { counts, written }
    }

    fn summary(&self) -> String {
        let syncs: usize = [
            "fsync",
            "fdatasync",
            "sync_file_range",
            "syncfs",
            "sync",
            "msync",
        ]
        .iter()
        .map(|s| self.counts.get(*s).copied().unwrap_or(0))
        .sum();
        let calls: Vec<String> = self
            .counts
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        format!(
            "{syncs} sync calls; {}; opened for writing under data_path: {}",
            if calls.is_empty() {
                "no traced calls".to_owned()
            } else {
                calls.join(", ")
            },
            if self.written.is_empty() {
                "nothing".to_owned()
            } else {
                self.written.join(", ")
            }
        )
    }
}

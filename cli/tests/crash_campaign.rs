//! Crash campaign: real `meshchat` processes (a relay and two peers, each
//! with its own data dir, on loopback) killed with SIGKILL at random points
//! of send, push and acknowledgement, relay deposit, mail fetch and
//! acknowledgement, and sync; restarted; and checked after every cycle:
//! every acknowledged message (the CLI said it was sent, or the sender's
//! history shows it) is in both peers' histories exactly once, nothing is
//! shown twice, and both histories are the same once everyone is back.
//!
//! `cargo test` runs a short campaign (20 cycles). The full one:
//! `CRASH_CYCLES=1000 cargo test -p meshchat-cli --test crash_campaign -- --nocapture`
//! (`CRASH_SEED=N` picks another seed; `CRASH_KEEP=1` keeps the data dirs and
//! logs). Results are in docs/CRASH.md.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        mpsc::{sync_channel, Receiver, SyncSender},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long everyone may take to agree after a cycle's restarts.
const CONVERGE: Duration = Duration::from_secs(90);
/// How long a process may take to start.
const START: Duration = Duration::from_secs(30);

/// SplitMix64: small, seedable, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

fn meshchat(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshchat"));
    cmd.arg("--data-dir").arg(dir).env("MESHCHAT_LOG", "warn");
    cmd
}

/// Runs a CLI command with `--json`; its output lines, or its error.
fn cli(dir: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = meshchat(dir)
        .args(args)
        .arg("--json")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `meshchat` daemon or relay, restartable on the same dir and port.
struct Proc {
    name: &'static str,
    dir: PathBuf,
    relay: bool,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(root: &Path, name: &'static str, relay: bool) -> Self {
        Self {
            name,
            dir: root.join(name),
            relay,
            log: root.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Creates the identity; returns the peer id.
    fn init(&self) -> String {
        cli(&self.dir, &["init", "--name", self.name]).unwrap()[0]["peer_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn configure(&self, port: u16, relays: &[String]) {
        let relays: Vec<String> = relays.iter().map(|r| format!("\"{r}\"")).collect();
        std::fs::write(
            self.dir.join("config.toml"),
            format!(
                "listen = [\"/ip4/127.0.0.1/tcp/{port}\"]\nrelays = [{}]\nmdns = false\n\
                 redial_secs = 1\n[blobs]\nbind = \"127.0.0.1:0\"\n",
                relays.join(", ")
            ),
        )
        .unwrap();
    }

    /// Starts the process and waits for its "ready" line.
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = meshchat(&self.dir)
            .arg(if self.relay { "relay" } else { "daemon" })
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = sync_channel(1);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        match rx.recv_timeout(START) {
            Ok(Some(Ok(_ready))) => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not start ({other:?}); log: {}",
                    self.name,
                    tail(&self.log)
                );
            }
        }
        self.child = Some(child);
    }

    /// Starts the process without waiting for it to be ready (to kill it
    /// while it opens its database).
    fn start_unready(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = meshchat(&self.dir)
            .arg(if self.relay { "relay" } else { "daemon" })
            .arg("--json")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILLs the process; returns whether it was running.
    fn kill(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// What one peer's history with the other shows.
#[derive(Debug, Default)]
struct View {
    ids: Vec<String>,
    texts: Vec<String>,
    /// Outgoing messages not yet acknowledged by the other peer.
    undelivered: Vec<String>,
}

impl View {
    fn read(dir: &Path, other: &str) -> Result<Self, String> {
        let mut view = Self::default();
        for entry in cli(dir, &["history", other])? {
            let text = entry["message"]["text"].as_str().unwrap_or("").to_owned();
            view.ids
                .push(entry["message"]["id"].as_str().unwrap_or("").to_owned());
            let delivered = matches!(entry["delivery"].as_str(), Some("delivered" | "read"));
            if entry["outgoing"] == true && !delivered {
                view.undelivered.push(text.clone());
            }
            view.texts.push(text);
        }
        Ok(view)
    }

    fn duplicates(&self) -> usize {
        let ids: BTreeSet<&String> = self.ids.iter().collect();
        let texts: BTreeSet<&String> = self.texts.iter().collect();
        (self.ids.len() - ids.len()).max(self.texts.len() - texts.len())
    }

    fn has(&self, text: &str) -> bool {
        self.texts.iter().any(|t| t == text)
    }
}

/// The three processes and who is who.
struct Net {
    relay: Proc,
    peers: [Proc; 2],
    ids: [String; 2],
}

impl Net {
    fn setup(root: &Path) -> Self {
        let mut relay = Proc::new(root, "relay", true);
        let mut peers = [Proc::new(root, "a", false), Proc::new(root, "b", false)];
        let ports = [free_port(), free_port(), free_port()];
        let relay_id = relay.init();
        relay.configure(ports[0], &[]);
        let relay_addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{relay_id}", ports[0]);
        let ids = [peers[0].init(), peers[1].init()];
        for (i, peer) in peers.iter().enumerate() {
            peer.configure(ports[i + 1], std::slice::from_ref(&relay_addr));
        }
        relay.start();
        for peer in &mut peers {
            peer.start();
        }
        for i in 0..2 {
            let other = 1 - i;
            let addr = format!("/ip4/127.0.0.1/tcp/{}", ports[other + 1]);
            cli(
                &peers[i].dir,
                &[
                    "contacts",
                    "add",
                    &ids[other],
                    "--name",
                    peers[other].name,
                    "--addr",
                    &addr,
                    "--relay",
                    &relay_addr,
                ],
            )
            .unwrap();
        }
        Self { relay, peers, ids }
    }

    fn proc(&mut self, who: Who) -> &mut Proc {
        match who {
            Who::Relay => &mut self.relay,
            Who::Peer(i) => &mut self.peers[i],
        }
    }

    fn restart_all(&mut self) {
        if !self.relay.running() {
            self.relay.start();
        }
        for peer in &mut self.peers {
            if !peer.running() {
                peer.start();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Relay,
    Peer(usize),
}

/// Where in the message's life the kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Phase {
    /// While the sender writes and pushes.
    Send,
    /// While the recipient stores and acknowledges a push.
    Ack,
    /// While the sender deposits at the relay for an offline recipient.
    Deposit,
    /// While the recipient fetches its mail and acknowledges it to the relay.
    Fetch,
    /// While the two peers reconnect and sync.
    Sync,
    /// While a process starts: recovers its database, writes a snapshot.
    Start,
    /// Just after the recipient acknowledged: with the sender and the relay
    /// gone too, the recipient alone must hold every message shown
    /// `delivered`.
    Delivered,
    /// Just after the relay signed for the mail: with the sender gone, the
    /// relay alone must hand the recipient every message shown `sent`.
    Custody,
}

const PHASES: [Phase; 8] = [
    Phase::Send,
    Phase::Ack,
    Phase::Deposit,
    Phase::Fetch,
    Phase::Sync,
    Phase::Start,
    Phase::Delivered,
    Phase::Custody,
];

/// Sends `texts` one after the other on a thread; the texts the CLI
/// acknowledged go to `acked`.
fn send_in_background(
    dir: PathBuf,
    to: String,
    texts: Vec<String>,
    acked: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for text in texts {
            if cli(&dir, &["send", &to, &text]).is_ok() {
                acked.lock().unwrap().push(text);
            }
        }
    })
}

/// Delivery states that mean a relay holds the message (or better).
const HELD: &[&str] = &["sent", "delivered", "read"];
/// Delivery states that mean the recipient stored it durably.
const DELIVERED: &[&str] = &["delivered", "read"];

/// Waits (bounded, following events) until the sender's history shows every
/// text in one of `states`. Returns whether it did.
fn wait_states(net: &Net, sender: usize, texts: &[String], states: &[&str]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = Watch::start(&[&net.peers[sender].dir]);
    while Instant::now() < deadline {
        let Ok(entries) = cli(&net.peers[sender].dir, &["history", &net.ids[1 - sender]]) else {
            return false;
        };
        let reached = texts.iter().all(|t| {
            entries.iter().any(|e| {
                e["message"]["text"] == t.as_str()
                    && e["delivery"].as_str().is_some_and(|s| states.contains(&s))
            })
        });
        if reached {
            return true;
        }
        events.next_within(Duration::from_secs(1));
    }
    false
}

/// Waits (bounded, following events) until `peer`'s history with `other`
/// holds every text; returns the ones still missing.
fn wait_holds(dir: &Path, other: &str, texts: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = Watch::start(&[dir]);
    loop {
        let view = View::read(dir, other).unwrap_or_default();
        let missing: Vec<String> = texts.iter().filter(|t| !view.has(t)).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        events.next_within(Duration::from_secs(1));
    }
}

/// `meshchat watch` on some peers, their events on one channel: a reason to
/// look again, so waits follow events instead of sleeping.
struct Watch {
    children: Vec<Child>,
    events: Receiver<()>,
}

impl Watch {
    fn start(dirs: &[&Path]) -> Self {
        let (tx, events): (SyncSender<()>, Receiver<()>) = sync_channel(1024);
        let mut children = Vec::new();
        for dir in dirs {
            let Ok(mut child) = meshchat(dir)
                .args(["watch", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let stdout = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.try_send(());
                }
            });
            children.push(child);
        }
        Self { children, events }
    }

    /// Waits for an event, at most `d` (events that fired before the watch
    /// started are caught by looking again anyway).
    fn next_within(&self, d: Duration) {
        let _ = self.events.recv_timeout(d);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Totals over the campaign.
#[derive(Debug, Default)]
struct Tally {
    cycles: usize,
    kills: usize,
    attempted: usize,
    acknowledged: BTreeSet<String>,
    losses: usize,
    duplicates: usize,
    setups_incomplete: usize,
    per_phase: HashMap<Phase, usize>,
    /// Losses found by the checks of one node on its own (Delivered, Custody).
    isolated_failures: Vec<String>,
}

/// The outcome of checking one cycle.
enum Check {
    Converged,
    Failed(String),
}

/// Waits until both peers show the same messages, each once, including every
/// acknowledged one, all delivered. Counts losses and duplicates if not.
fn converge(net: &Net, tally: &mut Tally) -> Check {
    let watch = Watch::start(&[&net.peers[0].dir, &net.peers[1].dir]);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let views = (
            View::read(&net.peers[0].dir, &net.ids[1]),
            View::read(&net.peers[1].dir, &net.ids[0]),
        );
        if let (Ok(a), Ok(b)) = &views {
            // What a sender's history shows was acknowledged to its user.
            for view in [a, b] {
                tally.acknowledged.extend(view.texts.iter().cloned());
            }
            let missing: Vec<&String> = tally
                .acknowledged
                .iter()
                .filter(|t| !a.has(t) || !b.has(t))
                .collect();
            let duplicates = a.duplicates() + b.duplicates();
            let same = a.ids.iter().collect::<BTreeSet<_>>() == b.ids.iter().collect();
            let delivered = a.undelivered.is_empty() && b.undelivered.is_empty();
            if duplicates > 0 {
                tally.duplicates += duplicates;
                return Check::Failed(format!("duplicates shown: a {a:?}, b {b:?}"));
            }
            if missing.is_empty() && same && delivered {
                return Check::Converged;
            }
            if Instant::now() >= deadline {
                tally.losses += missing.len();
                return Check::Failed(format!(
                    "not converged after {CONVERGE:?}: missing {missing:?}, same ids {same}, \
                     undelivered a {:?} b {:?}",
                    a.undelivered, b.undelivered
                ));
            }
        } else if Instant::now() >= deadline {
            return Check::Failed(format!("cannot read histories: {views:?}"));
        }
        watch.next_within(Duration::from_secs(1));
    }
}

/// One cycle: set the scene for `phase`, act, kill at a random moment,
/// restart everyone.
fn cycle(net: &mut Net, rng: &mut Rng, n: usize, phase: Phase, tally: &mut Tally) {
    let sender = rng.below(2) as usize;
    let recipient = 1 - sender;
    let count = 1 + rng.below(4) as usize;
    let texts: Vec<String> = (0..count)
        .map(|i| format!("c{n}-{}-{i}", net.peers[sender].name))
        .collect();
    tally.attempted += count;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let to = net.ids[recipient].clone();
    let sender_dir = net.peers[sender].dir.clone();
    let mut victims: Vec<Who> = Vec::new();
    let send = |acked: &Arc<Mutex<Vec<String>>>| {
        send_in_background(sender_dir.clone(), to.clone(), texts.clone(), acked.clone())
    };
    match phase {
        Phase::Send | Phase::Ack => {
            let sending = send(&acked);
            // Send: early, while the sender writes; Ack: a little later, while
            // the recipient stores and answers.
            let window = if phase == Phase::Send { 150 } else { 400 };
            std::thread::sleep(rng.millis(window));
            victims.push(if phase == Phase::Send || rng.chance(30) {
                Who::Peer(sender)
            } else {
                Who::Peer(recipient)
            });
            if rng.chance(25) {
                victims.push(Who::Relay);
            }
            tally.kills += kill(net, &victims);
            sending.join().unwrap();
        }
        Phase::Deposit => {
            // The recipient is away: the sender deposits at the relay on its
            // next redial tick (every second).
            tally.kills += usize::from(net.peers[recipient].kill());
            send(&acked).join().unwrap();
            std::thread::sleep(rng.millis(1500));
            victims.push(if rng.chance(50) {
                Who::Relay
            } else {
                Who::Peer(sender)
            });
            if rng.chance(25) {
                victims.push(Who::Peer(sender));
                victims.push(Who::Relay);
            }
            tally.kills += kill(net, &victims);
        }
        Phase::Fetch => {
            // The relay holds the mail; the recipient comes back and fetches.
            tally.kills += usize::from(net.peers[recipient].kill());
            send(&acked).join().unwrap();
            if !wait_states(net, sender, &acked.lock().unwrap(), HELD) {
                tally.setups_incomplete += 1;
            }
            net.peers[recipient].start();
            std::thread::sleep(rng.millis(600));
            victims.push(if rng.chance(60) {
                Who::Peer(recipient)
            } else {
                Who::Relay
            });
            tally.kills += kill(net, &victims);
        }
        Phase::Sync => {
            // Both have news for the other, no relay: they exchange it when
            // they reconnect (sync and outbox push).
            tally.kills += usize::from(net.peers[recipient].kill());
            tally.kills += usize::from(net.relay.kill());
            send(&acked).join().unwrap();
            let back = format!("c{n}-{}-back", net.peers[recipient].name);
            net.peers[recipient].start();
            tally.kills += usize::from(net.peers[sender].kill());
            if cli(
                &net.peers[recipient].dir,
                &["send", &net.ids[sender], &back],
            )
            .is_ok()
            {
                acked.lock().unwrap().push(back);
            }
            tally.attempted += 1;
            net.peers[sender].start();
            std::thread::sleep(rng.millis(800));
            victims.push(Who::Peer(if rng.chance(50) { sender } else { recipient }));
            tally.kills += kill(net, &victims);
        }
        Phase::Start => {
            // Messages while the recipient is away, then a restart cut short.
            tally.kills += usize::from(net.peers[recipient].kill());
            send(&acked).join().unwrap();
            let who = match rng.below(3) {
                0 => Who::Relay,
                i => Who::Peer(i as usize - 1),
            };
            let proc = net.proc(who);
            tally.kills += usize::from(proc.kill());
            proc.start_unready();
            std::thread::sleep(rng.millis(400));
            victims.push(who);
            tally.kills += kill(net, &victims);
        }
        Phase::Delivered => {
            send(&acked).join().unwrap();
            let acked_now = acked.lock().unwrap().clone();
            if !wait_states(net, sender, &acked_now, DELIVERED) {
                tally.setups_incomplete += 1;
            }
            std::thread::sleep(rng.millis(300));
            let delivered = shown_in(net, sender, &acked_now, DELIVERED);
            victims.extend([Who::Peer(recipient), Who::Peer(sender), Who::Relay]);
            tally.kills += kill(net, &victims);
            net.peers[recipient].start();
            let missing = wait_holds(&net.peers[recipient].dir, &net.ids[sender], &delivered);
            if !missing.is_empty() {
                tally.losses += missing.len();
                tally.isolated_failures.push(format!(
                    "cycle {n}: shown delivered, gone from the recipient after its crash: {missing:?}"
                ));
            }
        }
        Phase::Custody => {
            tally.kills += usize::from(net.peers[recipient].kill());
            send(&acked).join().unwrap();
            let acked_now = acked.lock().unwrap().clone();
            if !wait_states(net, sender, &acked_now, HELD) {
                tally.setups_incomplete += 1;
            }
            std::thread::sleep(rng.millis(300));
            let held = shown_in(net, sender, &acked_now, HELD);
            victims.extend([Who::Relay, Who::Peer(sender)]);
            tally.kills += kill(net, &victims);
            net.relay.start();
            net.peers[recipient].start();
            let missing = wait_holds(&net.peers[recipient].dir, &net.ids[sender], &held);
            if !missing.is_empty() {
                tally.losses += missing.len();
                tally.isolated_failures.push(format!(
                    "cycle {n}: shown sent (relay custody), not handed over by the relay after its crash: {missing:?}"
                ));
            }
        }
    }
    tally
        .acknowledged
        .extend(acked.lock().unwrap().iter().cloned());
    net.restart_all();
}

/// Which of `texts` the sender's history shows in one of `states` (read just
/// before a kill: states only move forward, so this is what the user saw).
fn shown_in(net: &Net, sender: usize, texts: &[String], states: &[&str]) -> Vec<String> {
    let entries =
        cli(&net.peers[sender].dir, &["history", &net.ids[1 - sender]]).unwrap_or_default();
    texts
        .iter()
        .filter(|t| {
            entries.iter().any(|e| {
                e["message"]["text"] == t.as_str()
                    && e["delivery"].as_str().is_some_and(|s| states.contains(&s))
            })
        })
        .cloned()
        .collect()
}

/// SIGKILLs the victims; returns how many were running.
fn kill(net: &mut Net, victims: &[Who]) -> usize {
    victims.iter().filter(|who| net.proc(**who).kill()).count()
}

#[test]
fn crash_campaign() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    // Kept if anything panics (a process that does not start again, say);
    // removed at the end of a clean run.
    let root = tempfile::Builder::new()
        .prefix("crash-campaign")
        .tempdir()
        .unwrap()
        .keep();
    println!(
        "crash campaign: seed {seed}, {cycles} cycles, data dirs and logs in {}",
        root.display()
    );
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut net = Net::setup(&root);
    let mut tally = Tally::default();
    let mut failure = None;
    for n in 0..cycles {
        let phase = PHASES[rng.below(PHASES.len() as u64) as usize];
        cycle(&mut net, &mut rng, n, phase, &mut tally);
        *tally.per_phase.entry(phase).or_default() += 1;
        tally.cycles += 1;
        if let Some(why) = tally.isolated_failures.first() {
            failure = Some(format!("{phase:?}: {why}"));
            break;
        }
        if let Check::Failed(why) = converge(&net, &mut tally) {
            failure = Some(format!("cycle {n} ({phase:?}): {why}"));
            break;
        }
    }
    let mut phases: Vec<_> = tally.per_phase.iter().collect();
    phases.sort();
    println!(
        "crash campaign: seed {seed}, cycles {}, processes killed {}, messages {} sent, {} \
         acknowledged, losses {}, duplicates {}, setups incomplete {}, wall {:.1} s; per phase {phases:?}",
        tally.cycles,
        tally.kills,
        tally.attempted,
        tally.acknowledged.len(),
        tally.losses,
        tally.duplicates,
        tally.setups_incomplete,
        started.elapsed().as_secs_f64(),
    );
    drop(net);
    if let Some(why) = failure {
        panic!(
            "crash campaign failed (seed {seed}): {why}\ndata dirs and logs kept in {}",
            root.display()
        );
    }
    if std::env::var("CRASH_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(&root);
    }
    assert_eq!(tally.losses, 0);
    assert_eq!(tally.duplicates, 0);
}

//! The `meshchat` binary as a user runs it: init, two daemons on loopback,
//! contacts, send, watch, history, stop, and the errors that say what to do.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{sync_channel, Receiver},
    time::Duration,
};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn meshchat(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshchat"));
    cmd.arg("--data-dir").arg(dir).env("MESHCHAT_LOG", "warn");
    cmd
}

/// Runs a command to completion; returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run meshchat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_json(cmd: &mut Command) -> Value {
    let (ok, stdout, stderr) = run(cmd.arg("--json"));
    assert!(ok, "command failed: {stderr}");
    serde_json::from_str(stdout.lines().next().expect("a line")).expect("json")
}

/// A child process killed on drop, with its stdout lines on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = sync_channel(1024);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next_json(&self) -> Value {
        let line = self.lines.recv_timeout(WAIT).expect("a line in time");
        serde_json::from_str(&line).expect("json line")
    }

    /// The next line within `d`, if any.
    fn next_json_within(&self, d: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(d).ok()?;
        Some(serde_json::from_str(&line).expect("json line"))
    }

    /// Waits for the process to end: its stdout closes (the reader thread
    /// drops the channel), then reaps it.
    fn wait_exit(&mut self) -> bool {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("process did not exit"),
            }
        }
        self.child.wait().expect("wait").success()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `dir`'s history with `chat` shows `n` outgoing messages
/// delivered, re-reading history whenever `watch` reports an event (and at
/// least every second, for events that fired before it subscribed).
fn wait_all_delivered(dir: &Path, chat: &str, n: usize, watch: &Running) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ok, stdout, stderr) = run(meshchat(dir).args(["history", chat, "--json"]));
        assert!(ok, "{stderr}");
        let delivered = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["delivery"] == "delivered" || e["delivery"] == "read")
            .count();
        if delivered >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {delivered} of {n} delivered"
        );
        let _ = watch.next_json_within(Duration::from_secs(1));
    }
}

fn start_daemon(dir: &Path) -> (Running, String) {
    let daemon = Running::spawn(meshchat(dir).args([
        "daemon",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--json",
    ]));
    let ready = daemon.next_json();
    let addr = ready["listen_addrs"][0]
        .as_str()
        .expect("an address")
        .to_owned();
    (daemon, addr)
}

#[test]
fn two_daemons_chat_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));

    // Before init, commands say what to do.
    let (ok, _, stderr) = run(meshchat(&a).arg("status"));
    assert!(!ok);
    assert!(stderr.contains("meshchat init"), "{stderr}");

    let alice_id = ok_json(meshchat(&a).args(["init", "--name", "alice"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = ok_json(meshchat(&b).args(["init", "--name", "bob"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Initialised but not running: a clear hint.
    let (ok, _, stderr) = run(meshchat(&a).arg("status"));
    assert!(!ok);
    assert!(stderr.contains("meshchat daemon"), "{stderr}");
    // `id` works offline too.
    assert_eq!(
        ok_json(meshchat(&a).arg("id"))["peer_id"],
        alice_id.as_str()
    );

    let (mut alice, alice_addr) = start_daemon(&a);
    let (mut bob, bob_addr) = start_daemon(&b);

    // A second daemon on the same directory is refused.
    let (ok, _, stderr) =
        run(meshchat(&a).args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]));
    assert!(!ok);
    assert!(stderr.contains("already running"), "{stderr}");

    let watch = Running::spawn(meshchat(&b).args(["watch", "--json"]));
    let contact = ok_json(meshchat(&a).args([
        "contacts", "add", &bob_id, "--name", "bob", "--addr", &bob_addr,
    ]));
    assert_eq!(contact["name"], "bob");

    let sent = ok_json(meshchat(&a).args(["send", "bob", "hello from the cli"]));
    let message_id = sent["message"]["id"].as_str().unwrap().to_owned();

    // To Bob, Alice is a stranger: her message waits as a request.
    loop {
        let event = watch.next_json();
        assert_ne!(
            event["type"], "message",
            "a stranger's message opened a chat"
        );
        if event["type"] == "message_request" {
            break;
        }
    }
    let (ok, stdout, _) = run(meshchat(&b).arg("requests"));
    assert!(ok);
    assert!(stdout.contains("hello from the cli"), "{stdout}");
    assert!(stdout.contains(&alice_id), "{stdout}");
    assert!(run(meshchat(&b).args(["requests", "accept", &alice_id])).0);
    // Accepting shows the message.
    loop {
        let event = watch.next_json();
        if event["type"] == "message" && event["outgoing"] == false {
            assert_eq!(event["message"]["text"], "hello from the cli");
            assert_eq!(event["message"]["id"], message_id.as_str());
            break;
        }
    }
    let (ok, stdout, _) = run(meshchat(&b).arg("requests"));
    assert!(ok);
    assert!(stdout.contains("No message requests"), "{stdout}");
    // Not in Bob's contacts, Alice shows by her profile's name marked `~`,
    // and that name finds her chat.
    let (ok, stdout, stderr) = run(meshchat(&b).arg("chats"));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("~alice"), "{stdout}");
    let (ok, stdout, stderr) = run(meshchat(&b).args(["history", "~alice"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("hello from the cli"), "{stdout}");
    // Bob adds Alice, so her group invitation is not a request.
    ok_json(meshchat(&b).args([
        "contacts",
        "add",
        &alice_id,
        "--name",
        "alice",
        "--addr",
        &alice_addr,
    ]));

    // History, human and JSON, on Bob's side by Alice's PeerId.
    let (ok, stdout, _) = run(meshchat(&b).args(["history", &alice_id, "--json"]));
    assert!(ok);
    let entries: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["message"]["text"], "hello from the cli");
    let (ok, stdout, _) = run(meshchat(&a).args(["history", "bob"]));
    assert!(ok);
    assert!(stdout.contains("you: hello from the cli"), "{stdout}");

    let (ok, stdout, _) = run(meshchat(&a).arg("chats"));
    assert!(ok);
    assert!(stdout.contains("bob"), "{stdout}");

    // Unknown names get a clear error.
    let (ok, _, stderr) = run(meshchat(&a).args(["send", "nobody", "x"]));
    assert!(!ok);
    assert!(
        stderr.contains("no chat, contact or peer matches"),
        "{stderr}"
    );

    // A group: create, message, reply, react, edit, info, export.
    let group = ok_json(meshchat(&a).args(["group", "create", "climbers", "bob"]))["chat"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let event = watch.next_json();
        if event["type"] == "group_joined" {
            assert_eq!(event["chat"], group.as_str());
            break;
        }
    }
    let first = ok_json(meshchat(&a).args(["send", "climbers", "crag on sunday?"]));
    let short = first["message"]["id"].as_str().unwrap()[..8].to_owned();
    loop {
        let event = watch.next_json();
        if event["type"] == "message" && event["message"]["text"] == "crag on sunday?" {
            break;
        }
    }
    assert!(run(meshchat(&b).args(["send", "climbers", "yes!", "--reply-to", &short])).0);
    assert!(run(meshchat(&b).args(["react", "climbers", &short, "🧗"])).0);
    let (ok, _, stderr) = run(meshchat(&b).args(["edit", "climbers", &short, "not mine"]));
    assert!(!ok, "editing someone else's message must fail");
    assert!(stderr.contains("only the author"), "{stderr}");
    let info = ok_json(meshchat(&b).args(["group", "info", "climbers"]));
    assert_eq!(info["members"].as_array().unwrap().len(), 2);
    let (ok, stdout, _) = run(meshchat(&b).args(["history", "climbers"]));
    assert!(ok);
    assert!(stdout.contains("↪"), "{stdout}");
    assert!(stdout.contains("🧗"), "{stdout}");
    let (ok, stdout, _) = run(meshchat(&a).arg("chats"));
    assert!(ok);
    assert!(stdout.contains("# climbers"), "{stdout}");
    let out = tmp.path().join("export");
    let summary = ok_json(meshchat(&b).args(["export", "climbers"]).arg(&out));
    assert_eq!(summary["messages"], 2);
    let meta = std::fs::read(out.join("meta.automerge")).unwrap();
    assert!(!meta.is_empty());
    assert!(std::fs::read_to_string(out.join("transcript.txt"))
        .unwrap()
        .contains("crag on sunday?"));

    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(run(meshchat(&b).arg("stop")).0);
    assert!(alice.wait_exit());
    assert!(bob.wait_exit());
}

#[test]
fn invite_profile_presence_and_blocking_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    assert!(run(meshchat(&a).args(["init", "--name", "alice"])).0);
    assert!(run(meshchat(&b).args(["init", "--name", "bob"])).0);
    let (mut alice, _) = start_daemon(&a);
    let (mut bob, _) = start_daemon(&b);
    let watch = Running::spawn(meshchat(&a).args(["watch", "--json"]));

    // The human invite prints a QR code and the string; --json the string alone.
    let (ok, stdout, _) = run(meshchat(&b).arg("invite"));
    assert!(ok);
    assert!(
        stdout.contains('█') || stdout.contains('▀'),
        "no QR code:\n{stdout}"
    );
    let invite = ok_json(meshchat(&b).arg("invite"))["invite"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(invite.starts_with("MC1:"), "{invite}");
    assert!(stdout.contains(&invite));

    // Alice adds Bob from the invite alone: name and address come with it.
    let contact = ok_json(meshchat(&a).args(["contacts", "add", &invite]));
    assert_eq!(contact["name"], "bob");
    let (ok, _, stderr) = run(meshchat(&a).args(["contacts", "add", "not-an-invite"]));
    assert!(!ok);
    assert!(stderr.contains("meshchat invite"), "{stderr}");
    assert!(run(meshchat(&a).args(["send", "bob", "hi from your invite"])).0);
    wait_all_delivered(&a, "bob", 1, &watch);

    // Bob's profile change reaches Alice.
    assert!(run(meshchat(&b).args(["profile", "set", "--status", "hiking"])).0);
    loop {
        let event = watch.next_json();
        if event["type"] == "profile_changed" {
            let profile = ok_json(meshchat(&a).args(["profile", "show", "bob"]));
            if profile["profile"]["status"] == "hiking" {
                break;
            }
        }
    }
    // The safety number: the same 60 digits on both sides; the human form
    // has the QR code and the digits in groups of 5.
    let alice_id = ok_json(meshchat(&a).arg("id"))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let at_alice = ok_json(meshchat(&a).args(["contacts", "verify", "bob"]));
    let at_bob = ok_json(meshchat(&b).args(["contacts", "verify", &alice_id]));
    assert_eq!(at_alice["digits"].as_str().unwrap().len(), 60);
    assert_eq!(at_alice["safety_number"], at_bob["safety_number"]);
    assert_eq!(
        at_alice["their_encryption_key"],
        at_bob["my_encryption_key"]
    );
    let (ok, stdout, stderr) = run(meshchat(&a).args(["contacts", "verify", "bob"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains('█') || stdout.contains('▀'), "{stdout}");
    let first_group = &at_alice["digits"].as_str().unwrap()[..5];
    assert!(stdout.contains(first_group), "{stdout}");

    let (ok, stdout, _) = run(meshchat(&a).args(["last-seen", "bob"]));
    assert!(ok);
    assert!(stdout.contains("online"), "{stdout}");
    // With no argument: every contact.
    let (ok, stdout, stderr) = run(meshchat(&a).arg("last-seen"));
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bob") && l.contains("online")),
        "{stdout}"
    );

    // Privacy and blocking.
    let privacy = ok_json(meshchat(&a).args(["privacy", "--last-seen", "nobody"]));
    assert_eq!(privacy["last_seen"], "nobody");
    let (ok, stdout, _) = run(meshchat(&a).args(["last-seen", "bob"]));
    assert!(ok);
    assert!(stdout.contains("hidden"), "{stdout}");
    assert!(run(meshchat(&a).args(["contacts", "block", "bob"])).0);
    let (ok, stdout, _) = run(meshchat(&a).args(["contacts", "list"]));
    assert!(ok);
    assert!(stdout.contains("(blocked)"), "{stdout}");
    // Removing a blocked contact keeps the block.
    assert!(run(meshchat(&a).args(["contacts", "remove", "bob"])).0);
    let (ok, stdout, _) = run(meshchat(&a).args(["contacts", "list"]));
    assert!(ok);
    assert!(stdout.contains("(blocked)"), "{stdout}");

    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(run(meshchat(&b).arg("stop")).0);
    assert!(alice.wait_exit());
    assert!(bob.wait_exit());
}

#[test]
fn help_is_everywhere() {
    for args in [
        vec!["--help"],
        vec!["send", "--help"],
        vec!["contacts", "add", "--help"],
        vec!["history", "--help"],
        vec!["invite", "--help"],
        vec!["profile", "set", "--help"],
        vec!["contacts", "block", "--help"],
        vec!["last-seen", "--help"],
        vec!["privacy", "--help"],
        vec!["send-file", "--help"],
        vec!["fetch", "--help"],
        vec!["share", "--help"],
        vec!["fetch-ticket", "--help"],
        vec!["auto-download", "--help"],
    ] {
        let (ok, stdout, _) = run(Command::new(env!("CARGO_BIN_EXE_meshchat")).args(&args));
        assert!(ok, "{args:?}");
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
    }
}

#[test]
fn demo_runs_to_completion() {
    // The nodes' debug log goes to stderr, which a failure prints.
    let (ok, stdout, stderr) = run(Command::new(env!("CARGO_BIN_EXE_meshchat"))
        .args(["demo", "--json"])
        .env("MESHCHAT_LOG", "meshchat_node=debug"));
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().expect("output")).unwrap();
    assert_eq!(summary["converged"], true);
    assert_eq!(summary["messages"], 7);
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let alice_id = ok_json(meshchat(&a).args(["init", "--name", "alice"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = ok_json(meshchat(&b).args(["init", "--name", "bob"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut alice, alice_addr) = start_daemon(&a);
    let (mut bob, bob_addr) = start_daemon(&b);
    ok_json(meshchat(&a).args([
        "contacts", "add", &bob_id, "--name", "bob", "--addr", &bob_addr,
    ]));
    ok_json(meshchat(&b).args([
        "contacts",
        "add",
        &alice_id,
        "--name",
        "alice",
        "--addr",
        &alice_addr,
    ]));
    let watch = Running::spawn(meshchat(&a).args(["watch", "--json"]));
    let total = 20;
    for i in 0..total {
        ok_json(meshchat(&a).args(["send", "bob", &format!("m{i}")]));
    }
    // Wait for Bob's acknowledgements ("delivered" means durably stored
    // there). Events that fired before `watch` subscribed are seen in history.
    wait_all_delivered(&a, "bob", total, &watch);
    // Kill Bob without a chance to flush anything more, then restart him.
    bob.child.kill().unwrap();
    bob.child.wait().unwrap();
    let (mut bob, _) = start_daemon(&b);
    let (ok, stdout, stderr) = run(meshchat(&b).args(["history", &alice_id, "--json"]));
    assert!(ok, "{stderr}");
    let texts: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts.len(), total, "{texts:?}");
    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(run(meshchat(&b).arg("stop")).0);
    assert!(alice.wait_exit());
    assert!(bob.wait_exit());
}

#[test]
fn relay_serves_metrics_and_stops_on_request() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("relay");
    let relay = Running::spawn(meshchat(&r).args([
        "relay",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--metrics",
        "127.0.0.1:0",
        "--json",
    ]));
    let ready = relay.next_json();
    assert!(ready["addrs"][0].as_str().unwrap().contains("/p2p/"));
    assert!(
        r.join("relay.toml").exists(),
        "a commented relay.toml is written"
    );
    let metrics = ready["metrics"].as_str().unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&metrics).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("meshchat_mailbox_messages 0"), "{body}");
    assert!(
        body.contains("meshchat_refusals_total{reason=\"quota\"} 0"),
        "{body}"
    );
    let mut relay = relay;
    assert!(run(meshchat(&r).arg("stop")).0);
    assert!(relay.wait_exit());
}

#[test]
fn files_travel_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let alice_id = ok_json(meshchat(&a).args(["init", "--name", "alice"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = ok_json(meshchat(&b).args(["init", "--name", "bob"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut alice, _) = start_daemon(&a);
    let (mut bob, bob_addr) = start_daemon(&b);
    let watch = Running::spawn(meshchat(&b).args(["watch", "--json"]));
    // Files from strangers never download by themselves: Bob knows Alice.
    ok_json(meshchat(&b).args(["contacts", "add", &alice_id, "--name", "alice"]));
    ok_json(meshchat(&a).args([
        "contacts", "add", &bob_id, "--name", "bob", "--addr", &bob_addr,
    ]));

    let file = tmp.path().join("report.txt");
    std::fs::write(&file, "quarterly numbers\n".repeat(1000)).unwrap();
    let sent = ok_json(
        meshchat(&a)
            .args(["send-file", "bob"])
            .arg(&file)
            .args(["--caption", "see attached"]),
    );
    let attachment = &sent["message"]["attachment"];
    assert_eq!(attachment["name"], "report.txt");
    assert_eq!(attachment["mime"], "text/plain");
    assert_eq!(attachment["size"], 18000);
    let id = sent["message"]["id"].as_str().unwrap().to_owned();
    // Small files download by themselves: wait for Bob's `ready`.
    loop {
        let event = watch.next_json();
        if event["type"] == "file" && event["status"]["state"] == "ready" {
            break;
        }
    }
    let (ok, stdout, _) = run(meshchat(&b).args(["history", &alice_id]));
    assert!(ok);
    assert!(stdout.contains("📎 report.txt"), "{stdout}");
    let out = tmp.path().join("got.txt");
    let (ok, stdout, stderr) = run(meshchat(&b)
        .args(["fetch", &alice_id, &id[..8], "--out"])
        .arg(&out));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    // Never over an existing file, unless asked.
    std::fs::write(&out, "mine").unwrap();
    let (ok, _, stderr) = run(meshchat(&b)
        .args(["fetch", &alice_id, &id[..8], "--out"])
        .arg(&out));
    assert!(!ok);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    let (ok, _, stderr) = run(meshchat(&b)
        .args(["fetch", &alice_id, &id[..8], "--force", "--out"])
        .arg(&out));
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    // Without --out: the Downloads folder (here under a scratch HOME), said out loud.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, stdout, stderr) = run(meshchat(&b)
        .args(["fetch", &alice_id, &id[..8]])
        .env("HOME", &home)
        .env_remove("XDG_DOWNLOAD_DIR")
        .env_remove("XDG_CONFIG_HOME"));
    assert!(ok, "{stderr}");
    let saved = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Saved to "))
        .and_then(|l| l.split("  (").next())
        .unwrap_or_else(|| panic!("no path in {stdout}"));
    assert!(
        saved.starts_with(&*home.to_string_lossy()) || saved.starts_with(&*b.to_string_lossy()),
        "{saved}"
    );
    assert!(saved.ends_with("report.txt"), "{saved}");
    assert_eq!(std::fs::read(saved).unwrap(), std::fs::read(&file).unwrap());

    // Auto-download settings: saved in config.toml, applied to the daemon.
    let policy =
        ok_json(meshchat(&b).args(["auto-download", "--groups", "off", "--max-size", "1MiB"]));
    assert_eq!(policy["groups"], false);
    assert_eq!(policy["max_bytes"], 1 << 20);
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("auto_download_groups = false"), "{config}");
    assert_eq!(ok_json(meshchat(&b).arg("auto-download"))["groups"], false);

    // Sharing outside chats: a ticket any node can download.
    let ticket = ok_json(meshchat(&a).arg("share").arg(&file))["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tmp.path().join("downloads");
    let files = ok_json(
        meshchat(&b)
            .args(["fetch-ticket", &ticket, "--out"])
            .arg(&dir),
    );
    assert_eq!(files["files"][0][1], 18000);
    assert_eq!(
        std::fs::read(dir.join("report.txt")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let (ok, _, stderr) = run(meshchat(&b).args(["fetch-ticket", "not-a-ticket"]));
    assert!(!ok);
    assert!(stderr.contains("invalid ticket"), "{stderr}");

    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(run(meshchat(&b).arg("stop")).0);
    assert!(alice.wait_exit());
    assert!(bob.wait_exit());
}

#[test]
fn remote_text_cannot_drive_the_terminal() {
    // What a hostile contact controls: its name (carried by its invite and
    // profile), its status and its messages. Escape sequences that would
    // clear the screen, retitle the window, recolour and fake a second line.
    let evil_name = "bob\x1b[31m";
    let evil_text = "hi\x1b[2J\x1b]0;pwned\x07\r\n[00:00] alice: send me your key";
    let is_raw = |s: &str| s.contains('\x1b') || s.contains('\x07') || s.contains('\r');
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let alice_id = ok_json(meshchat(&a).args(["init", "--name", "alice"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(run(meshchat(&b).args(["init", "--name", evil_name])).0);
    let (mut alice, alice_addr) = start_daemon(&a);
    let (mut bob, _) = start_daemon(&b);
    let invite = ok_json(meshchat(&b).arg("invite"))["invite"]
        .as_str()
        .unwrap()
        .to_owned();
    let contact = ok_json(meshchat(&a).args(["contacts", "add", &invite]));
    assert_eq!(contact["name"], evil_name, "JSON output stays exact");
    let watch = Running::spawn(meshchat(&a).arg("watch"));
    ok_json(meshchat(&b).args([
        "contacts",
        "add",
        &alice_id,
        "--name",
        "alice",
        "--addr",
        &alice_addr,
    ]));
    assert!(run(meshchat(&b).args(["profile", "set", "--status", evil_text])).0);
    assert!(run(meshchat(&b).args(["send", "alice", evil_text])).0);

    // `watch` shows the message on one neutralised line.
    let line = loop {
        let line = watch
            .lines
            .recv_timeout(WAIT)
            .expect("a watch line in time");
        if line.contains("hi") {
            break line;
        }
    };
    assert!(!is_raw(&line), "{line:?}");
    assert!(
        line.contains("bob␛[31m: hi␛[2J␛]0;pwned␇␍␤[00:00]"),
        "{line}"
    );

    // `history` and `chats`, human: nothing raw, one line per message.
    let (ok, stdout, _) = run(meshchat(&a).args(["history", evil_name]));
    assert!(ok);
    assert!(!is_raw(&stdout), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("hi␛[2J"), "{stdout}");
    let (ok, stdout, _) = run(meshchat(&a).arg("chats"));
    assert!(ok);
    assert!(!is_raw(&stdout), "{stdout:?}");
    assert!(stdout.contains("bob␛[31m"), "{stdout}");
    // JSON is exact.
    let (ok, stdout, _) =
        run(meshchat(&a).args(["history", contact["peer"].as_str().unwrap(), "--json"]));
    assert!(ok);
    let entry: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(entry["message"]["text"], evil_text);

    // The status arrives with the profile; `profile show` neutralises it.
    let shown = loop {
        let (ok, stdout, _) = run(meshchat(&a).args(["profile", "show", evil_name]));
        assert!(ok);
        if stdout.contains("Status:  hi") {
            break stdout;
        }
        let _ = watch.lines.recv_timeout(Duration::from_secs(1));
    };
    assert!(!is_raw(&shown), "{shown:?}");

    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(run(meshchat(&b).arg("stop")).0);
    assert!(alice.wait_exit());
    assert!(bob.wait_exit());
}

#[test]
fn the_daemon_keeps_its_data_dir_and_socket_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("alice");
    assert!(run(meshchat(&a).args(["init", "--name", "alice"])).0);
    assert_eq!(mode(&a), 0o700);

    // Others may not write in the data dir: the daemon refuses and says how to fix it.
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut refused = meshchat(&a)
        .args([
            "daemon",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that starts prints its ready line; one that refuses exits.
    let mut first = String::new();
    BufReader::new(refused.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    if !first.is_empty() {
        let _ = refused.kill();
        let _ = refused.wait();
        panic!("a world-writable data dir was accepted: {first}");
    }
    let out = refused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("chmod 700 {}", a.display())),
        "{stderr}"
    );

    // Readable by others is allowed; the socket is still out of their reach.
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut alice, _) = start_daemon(&a);
    let socket = std::fs::read_dir(&a)
        .unwrap()
        .filter_map(|e| e.ok())
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                std::fs::read_dir(&path)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .collect()
            } else {
                vec![path]
            }
        })
        .find(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            })
        })
        .expect("a control socket in the data dir");
    assert_eq!(mode(&socket), 0o600);
    let parent = socket.parent().unwrap();
    assert_eq!(
        mode(parent),
        0o700,
        "the socket's directory: {}",
        parent.display()
    );
    assert!(run(meshchat(&a).arg("stop")).0);
    assert!(alice.wait_exit());
}

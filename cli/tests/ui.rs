//! The desktop app as its users and its attackers meet it: real daemons on
//! loopback serving the web UI; the security checks spoken to over raw
//! HTTP, and two people chatting through headless Chromium pages.
//!
//! The browser tests need Chromium (`apt-get install -y chromium`, or
//! `MESHCHAT_CHROME=/path/to/chrome`); without one they say so loudly and
//! pass as skipped. CI installs it (`.ci/run`).

// Test helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{sync_channel, Receiver},
    time::{Duration, Instant},
};

use chromiumoxide::{
    browser::{Browser, BrowserConfig},
    cdp::browser_protocol::{
        browser::{
            DownloadProgressState, EventDownloadProgress, SetDownloadBehaviorBehavior,
            SetDownloadBehaviorParams,
        },
        emulation::{MediaFeature, SetDeviceMetricsOverrideParams},
        page::CaptureScreenshotFormat,
        target::CreateTargetParams,
    },
    page::ScreenshotParams,
    Page,
};
use futures::StreamExt;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn meshchat(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshchat"));
    cmd.arg("--data-dir").arg(dir).env("MESHCHAT_LOG", "warn");
    cmd
}

fn ok_stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run meshchat");
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon killed on drop.
struct Daemon {
    child: Child,
    _lines: Receiver<String>,
    dir: PathBuf,
    /// The UI's address, `127.0.0.1:PORT`.
    ui: String,
}

impl Daemon {
    fn start(dir: &Path, name: &str) -> Self {
        Self::start_with(dir, name, |text| text)
    }

    /// Starts a daemon after `tweak` edited its `config.toml`.
    fn start_with(dir: &Path, name: &str, tweak: impl Fn(String) -> String) -> Self {
        ok_stdout(meshchat(dir).args(["init", "--name", name]));
        // Presence every second, so "last seen" shows soon after a stop.
        let config = dir.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = tweak(text.replace("presence_secs = 60", "presence_secs = 1"));
        std::fs::write(&config, text).unwrap();
        Self::run(dir, &[])
    }

    /// Runs the daemon of an initialised `dir` with `extra` arguments.
    fn run(dir: &Path, extra: &[&str]) -> Self {
        let mut child = meshchat(dir)
            .args([
                "daemon",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--ui-listen",
                "127.0.0.1:0",
                "--json",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready: Value =
            serde_json::from_str(&lines.recv_timeout(WAIT).expect("daemon ready")).expect("json");
        let ui = ready["ui"].as_str().expect("the UI's address").to_owned();
        Self {
            child,
            _lines: lines,
            dir: dir.to_owned(),
            ui,
        }
    }

    /// Stops the daemon with `meshchat stop` and waits for it to exit.
    fn stop(mut self) {
        ok_stdout(meshchat(&self.dir).arg("stop"));
        self.child.wait().unwrap();
    }

    /// A fresh sign-in link from `meshchat ui --print-url`.
    fn login_url(&self) -> String {
        ok_stdout(meshchat(&self.dir).args(["ui", "--print-url"]))
            .trim()
            .to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 exchange: (status, head, body).
fn http(addr: &str, request: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the UI");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before it reads all of a large body.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

struct Req<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    origin: Option<&'a str>,
    cookie: Option<&'a str>,
    content_type: &'a str,
    body: &'a [u8],
}

impl<'a> Req<'a> {
    fn get(path: &'a str, host: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            host,
            origin: None,
            cookie: None,
            content_type: "application/json",
            body: b"",
        }
    }

    /// A POST as the app's own page sends it.
    fn api(
        method: &'a str,
        host: &'a str,
        origin: &'a str,
        cookie: &'a str,
        body: &'a [u8],
    ) -> Self {
        Self {
            method: "POST",
            path: method,
            host,
            origin: Some(origin),
            cookie: Some(cookie),
            content_type: "application/json",
            body,
        }
    }

    fn send(&self, addr: &str) -> (u16, String, String) {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.host,
            self.content_type,
            self.body.len()
        );
        if let Some(o) = self.origin {
            head.push_str(&format!("Origin: {o}\r\n"));
        }
        if let Some(c) = self.cookie {
            head.push_str(&format!("Cookie: {c}\r\n"));
        }
        head.push_str("\r\n");
        http(addr, &head, self.body)
    }
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_app_signs_in_once_and_refuses_other_sites_hosts_and_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    // Files up to 1000 bytes, to see the upload bound.
    let alice = Daemon::start_with(&tmp.path().join("alice"), "alice", |text| {
        text.lines()
            .map(|l| {
                if l.starts_with("max_file_bytes") {
                    "max_file_bytes = 1000"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let addr = alice.ui.clone();
    let host = addr.as_str();
    let origin = format!("http://{addr}");

    // The secret sits in a file only its owner can read.
    let login_file = alice.dir.join("run/ui-login.json");
    let mode = std::fs::metadata(&login_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The page itself: a strict CSP, no inline script.
    let (status, head, body) = Req::get("/", host).send(&addr);
    assert_eq!(status, 200);
    let csp = header(&head, "content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(body.contains(r#"<script type="module" src="/assets/app.js">"#));
    assert!(!body.contains("<script>"), "no inline script");

    // No cookie: no API, no events.
    let (status, _, body) = Req::api("/api/network_status", host, &origin, "", b"{}").send(&addr);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("meshchat ui"), "{body}");
    assert_eq!(Req::get("/api/events", host).send(&addr).0, 401);

    // A wrong secret is refused; the right one works once.
    assert_eq!(Req::get("/login?secret=00", host).send(&addr).0, 403);
    let url = alice.login_url();
    let path = url.strip_prefix(&origin).expect("a link to this daemon");
    let (status, head, _) = Req::get(path, host).send(&addr);
    assert_eq!(status, 303);
    let set_cookie = header(&head, "set-cookie").expect("a cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        Req::get(path, host).send(&addr).0,
        403,
        "the secret is one-time"
    );
    assert_ne!(alice.login_url(), url, "`meshchat ui` gets a new one");

    // Signed in, from the app's own origin: answers.
    let (status, _, body) =
        Req::api("/api/network_status", host, &origin, &cookie, b"{}").send(&addr);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["result"]["peer_id"].is_string(), "{answer}");
    // Via `localhost` too.
    let local = format!("localhost:{}", addr.rsplit(':').next().unwrap());
    let local_origin = format!("http://{local}");
    let (status, _, _) =
        Req::api("/api/network_status", &local, &local_origin, &cookie, b"{}").send(&addr);
    assert_eq!(status, 200);

    // The cookie is not enough from another site, another host name
    // (DNS rebinding), or without an Origin.
    let evil_host = format!("evil.example:{}", addr.rsplit(':').next().unwrap());
    let (status, _, _) =
        Req::api("/api/network_status", &evil_host, &origin, &cookie, b"{}").send(&addr);
    assert_eq!(status, 403, "foreign Host");
    let mut get = Req::get("/", &evil_host);
    assert_eq!(get.send(&addr).0, 403, "foreign Host, even for the page");
    get.host = host;
    get.path = "/api/events";
    get.origin = Some("http://evil.example");
    get.cookie = Some(&cookie);
    assert_eq!(get.send(&addr).0, 403, "foreign Origin on the event stream");
    let (status, _, _) = Req::api(
        "/api/network_status",
        host,
        "http://evil.example",
        &cookie,
        b"{}",
    )
    .send(&addr);
    assert_eq!(status, 403, "foreign Origin");
    let (status, _, _) = Req::api("/api/network_status", host, "null", &cookie, b"{}").send(&addr);
    assert_eq!(status, 403, "opaque Origin");
    let mut no_origin = Req::api("/api/network_status", host, &origin, &cookie, b"{}");
    no_origin.origin = None;
    assert_eq!(no_origin.send(&addr).0, 403, "no Origin on a POST");
    let mut form = Req::api("/api/network_status", host, &origin, &cookie, b"a=b");
    form.content_type = "application/x-www-form-urlencoded";
    assert_eq!(form.send(&addr).0, 415, "not JSON");

    // Bounded bodies, and no file names from the browser.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _, _) = Req::api("/api/chats_list", host, &origin, &cookie, &big).send(&addr);
    assert_eq!(status, 413, "a body above the bound");
    let passwd = br#"{"to": "alice", "path": "/etc/passwd"}"#;
    let (status, _, body) = Req::api("/api/files_send", host, &origin, &cookie, passwd).send(&addr);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not offered to the browser"), "{body}");
    let avatar = br#"{"avatar_path": "/etc/passwd"}"#;
    let (status, _, _) = Req::api("/api/profiles_set", host, &origin, &cookie, avatar).send(&addr);
    assert_eq!(status, 400);
    let (status, _, _) = Req::api("/api/shutdown", host, &origin, &cookie, b"{}").send(&addr);
    assert_eq!(status, 400);
    let (status, _, body) =
        Req::api("/api/chats_send", host, &origin, &cookie, b"{not json").send(&addr);
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = Req::api("/api/no_such_method", host, &origin, &cookie, b"{}").send(&addr);
    assert_eq!(status, 400);
    // Uploads: bounded by blobs.max_file_bytes, and they need a recipient.
    let mut up = Req::api(
        "/api/upload?to=alice&name=big.bin",
        host,
        &origin,
        &cookie,
        &[7u8; 2000],
    );
    up.content_type = "application/octet-stream";
    let (status, _, body) = up.send(&addr);
    assert_eq!(status, 413, "{body}");
    up.path = "/api/upload?name=small.bin";
    up.body = &[7u8; 10];
    assert_eq!(up.send(&addr).0, 400, "no recipient");
    up.path = "/api/upload?to=nobody&name=..%2F..%2Fevil";
    let (status, _, body) = up.send(&addr);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not_found"), "{body}");
    let mut file = Req::get("/api/file?chat=nothing&message=nothing", host);
    file.cookie = Some(&cookie);
    assert_eq!(file.send(&addr).0, 404);
    file.cookie = None;
    assert_eq!(file.send(&addr).0, 401, "files need the cookie too");

    // Still up after all that.
    let (status, _, _) = Req::api("/api/chats_list", host, &origin, &cookie, b"").send(&addr);
    assert_eq!(status, 200);

    // Once the daemon stops, `meshchat ui` says so instead of a dead link.
    ok_stdout(meshchat(&alice.dir).arg("stop"));
    let deadline = Instant::now() + WAIT;
    let stderr = loop {
        let out = meshchat(&alice.dir)
            .args(["ui", "--print-url"])
            .output()
            .unwrap();
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        assert!(Instant::now() < deadline, "`meshchat ui` still answers");
    };
    assert!(stderr.contains("meshchat daemon"), "{stderr}");
}

// ---------------------------------------------------------------- browser

fn chrome() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MESHCHAT_CHROME") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn skip_loudly(test: &str) {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPED {test}: no Chromium found.");
    eprintln!("Install it (apt-get install -y chromium) or set MESHCHAT_CHROME.");
    eprintln!("CI always runs these tests.");
    eprintln!("==================================================================");
    eprintln!();
}

async fn launch(chrome: &Path, profile: &Path) -> Browser {
    let config = BrowserConfig::builder()
        .chrome_executable(chrome)
        .no_sandbox()
        .new_headless_mode()
        .user_data_dir(profile)
        .window_size(1200, 800)
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("launch Chromium");
    tokio::spawn(async move { while handler.next().await.is_some() {} });
    browser
}

/// A signed-in page on `daemon`'s app, its first screen loaded.
async fn open_app(browser: &Browser, daemon: &Daemon) -> Page {
    // Each in its own window: a background tab gets no input events.
    let target = CreateTargetParams::builder()
        .url(daemon.login_url())
        .new_window(true)
        .build()
        .expect("target");
    let page = browser.new_page(target).await.expect("open the app");
    page.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(1200)
            .height(800)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .expect("metrics"),
    )
    .await
    .expect("viewport");
    wait_js(
        &page,
        "document.body.dataset.ready === '1'",
        "the app to load",
    )
    .await;
    page
}

/// Evaluates `expr` in the page.
async fn js(page: &Page, expr: &str) -> Value {
    page.evaluate(expr)
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
        .into_value()
        .unwrap_or(Value::Null)
}

/// Waits until `expr` is truthy in the page, re-checking after each
/// animation frame's worth of work (the page updates on server events).
async fn wait_js(page: &Page, expr: &str, what: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    let poll = format!(
        "new Promise((resolve) => {{ const end = Date.now() + 500; \
         const tick = () => {{ let v; try {{ v = ({expr}); }} catch (e) {{ v = null; }} \
         if (v || Date.now() > end) resolve(v || null); else setTimeout(tick, 20); }}; tick(); }})"
    );
    loop {
        let v = js(page, &poll).await;
        if !v.is_null() && v != Value::Bool(false) {
            return v;
        }
        if Instant::now() > deadline {
            let text = js(page, "location.href + '\\n' + document.body.innerText + '\\n--- toasts:\\n' + (window.__toasts || []).join('\\n')").await;
            panic!(
                "timed out waiting for {what}; the page shows:\n{}",
                text.as_str().unwrap_or("")
            );
        }
    }
}

/// Clicks the element `selector` (as a person would, through the page),
/// again if the page re-rendered it between finding and clicking.
async fn click(page: &Page, selector: &str) {
    let expr = format!("document.querySelector({selector:?})");
    let deadline = Instant::now() + WAIT;
    loop {
        wait_js(page, &expr, selector).await;
        page.bring_to_front().await.expect("bring to front");
        let clicked = match page.find_element(selector).await {
            Ok(el) => el.click().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("clicking {selector} again: {e}");
            }
            Err(e) => panic!("click {selector}: {e}"),
        }
    }
}

/// Types into the composer and presses Enter.
async fn type_and_enter(page: &Page, text: &str) {
    wait_js(
        page,
        "document.querySelector('#text').offsetParent !== null",
        "the composer",
    )
    .await;
    page.bring_to_front().await.expect("bring to front");
    let el = page.find_element("#text").await.expect("the composer");
    el.focus().await.expect("focus the composer");
    el.type_str(text).await.expect("type");
    el.press_key("Enter").await.expect("Enter");
}

async fn screenshot(page: &Page, name: &str) {
    js(
        page,
        "document.querySelectorAll('.toast').forEach(t => t.remove()); true",
    )
    .await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for (scheme, suffix) in [("light", "light"), ("dark", "dark")] {
        page.emulate_media_features(vec![MediaFeature {
            name: "prefers-color-scheme".into(),
            value: scheme.into(),
        }])
        .await
        .expect("color scheme");
        let shot = page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .build(),
            )
            .await
            .expect("screenshot");
        std::fs::write(dir.join(format!("{name}-{suffix}.png")), shot).unwrap();
    }
    page.emulate_media_features(vec![]).await.expect("reset");
}

/// Adds `other` as a contact in `page` through the "add a contact" screen,
/// pasting the invite `other`'s own page shows.
async fn add_by_invite(page: &Page, other_page: &Page) {
    click(other_page, "#new-chat").await;
    let invite = wait_js(
        other_page,
        "document.querySelector('#my-invite') && document.querySelector('#my-invite').value",
        "my invite",
    )
    .await;
    let invite = invite.as_str().expect("an invite").to_owned();
    assert!(invite.starts_with("MC1:"), "{invite}");
    wait_js(
        other_page,
        "document.querySelector('.qr canvas')",
        "the QR code",
    )
    .await;
    screenshot(other_page, "invite").await;
    click(page, "#new-chat").await;
    let set = format!(
        "document.querySelector('#invite-input').value = {}; true",
        serde_json::to_string(&invite).unwrap()
    );
    js(page, &set).await;
    click(page, "#invite-add").await;
    wait_js(
        page,
        "document.querySelector('.message-contact')",
        "the contact in the list",
    )
    .await;
}

/// Draws a picture on a canvas, drops it as a PNG file on the open
/// conversation (as a drag and drop does), and answers its bytes in base64.
const DROP_PICTURE: &str = r#"(async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 96; canvas.height = 64;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#1a7f64'; ctx.fillRect(0, 0, 96, 64);
  ctx.fillStyle = '#f5c542'; ctx.beginPath(); ctx.arc(48, 32, 20, 0, 7); ctx.fill();
  const blob = await new Promise((r) => canvas.toBlob(r, 'image/png'));
  const file = new File([blob], 'drawing.png', { type: 'image/png' });
  const dt = new DataTransfer();
  dt.items.add(file);
  const target = document.querySelector('#conversation');
  target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
  target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
})()"#;

/// Picks a drawn picture in the profile screen's file input.
const SET_PICTURE: &str = r#"(async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 64;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#c0392b'; ctx.fillRect(0, 0, 64, 64);
  ctx.fillStyle = '#ffffff'; ctx.fillRect(16, 16, 32, 32);
  const blob = await new Promise((r) => canvas.toBlob(r, 'image/png'));
  const dt = new DataTransfer();
  dt.items.add(new File([blob], 'me.png', { type: 'image/png' }));
  document.querySelector('#profile-picture').files = dt.files;
  return true;
})()"#;

fn decode_b64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The text of the newest message bubble matching `selector`.
fn last_text(selector: &str) -> String {
    format!(
        "(() => {{ const all = document.querySelectorAll({selector:?}); \
         return all.length ? all[all.length - 1].textContent : null; }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_the_browser_and_remote_html_stays_text() {
    let Some(chrome) = chrome() else {
        skip_loudly("two_people_chat_in_the_browser_and_remote_html_stays_text");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob = Daemon::start(&tmp.path().join("bob"), "Bob");
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    let b = open_app(&browser, &bob).await;
    eprintln!("alice at {}, bob at {}", alice.ui, bob.ui);

    // Each adds the other by the invite the other's app shows.
    add_by_invite(&b, &a).await;
    add_by_invite(&a, &b).await;
    screenshot(&a, "contacts").await;

    // Bob writes first, from his contact list.
    click(&b, "#show-contacts").await;
    click(&b, ".message-contact").await;
    wait_js(
        &b,
        "!document.querySelector('#conversation').hidden",
        "the conversation",
    )
    .await;
    assert_eq!(
        js(&b, "document.querySelector('#conv-name').textContent").await,
        "Alice"
    );
    type_and_enter(&b, "Hi Alice!").await;
    type_and_enter(&b, "How are you?").await;
    let out = last_text(".msg.out .text");
    let shown = wait_js(
        &b,
        &format!("{out} === 'How are you?' && {out}"),
        "Bob's message",
    )
    .await;
    assert_eq!(shown, "How are you?");
    // The composer empties: Enter sent, it did not add a line.
    wait_js(
        &b,
        "document.querySelector('#text').value === ''",
        "an empty composer",
    )
    .await;
    // Ticks reach ✓✓ once Alice's daemon has it.
    wait_js(
        &b,
        "[...document.querySelectorAll('.msg.out .tick')].every(t => ['delivered', 'read'].includes(t.dataset.state)) \
         && document.querySelectorAll('.msg.out .tick').length === 2",
        "✓✓ on both messages",
    )
    .await;
    assert_eq!(
        js(&b, "document.querySelector('.msg.out .tick').textContent").await,
        "✓✓"
    );

    // Alice sees the chat in her list, unread, and opens it.
    wait_js(
        &a,
        "document.querySelector('.chat-item .unread')",
        "an unread badge",
    )
    .await;
    click(&a, ".chat-item").await;
    let inbound = last_text(".msg.in .text");
    wait_js(
        &a,
        &format!("{inbound} === 'How are you?'"),
        "Bob's message at Alice's",
    )
    .await;
    assert_eq!(
        js(&a, "document.querySelector('#conv-name').textContent").await,
        "Bob"
    );

    // Alice starts typing: Bob sees it in the header.
    a.bring_to_front().await.expect("bring to front");
    let el = a.find_element("#text").await.expect("the composer");
    el.focus().await.expect("focus");
    el.type_str("typing").await.expect("type");
    wait_js(
        &b,
        "document.querySelector('#conv-status').textContent === 'typing…'",
        "the typing indicator",
    )
    .await;
    js(&a, "document.querySelector('#text').value = ''; true").await;

    // Alice answers with hostile markup: it arrives as text, and nothing runs.
    let hostile =
        "<img src=x onerror=\"window.__pwned=1\"> see javascript:window.__pwned=2 <b>bold</b>";
    type_and_enter(&a, hostile).await;
    let inbound_b = last_text(".msg.in .text");
    let expr = format!(
        "{inbound_b} === {}",
        serde_json::to_string(hostile).unwrap()
    );
    wait_js(&b, &expr, "the hostile message at Bob's").await;
    assert_eq!(js(&b, "window.__pwned === undefined").await, true);
    assert_eq!(
        js(
            &b,
            "document.querySelectorAll('.messages img, .messages b, .messages a').length"
        )
        .await,
        0
    );
    assert_eq!(
        js(
            &a,
            "document.querySelectorAll('.messages img, .messages b').length"
        )
        .await,
        0
    );
    // The chat list preview is text too.
    assert_eq!(
        js(&b, "document.querySelectorAll('.chat-preview *').length").await,
        0
    );
    screenshot(&b, "conversation").await;

    // Bob replies to it, quoting.
    js(
        &b,
        "[...document.querySelectorAll('.msg.in .act-reply')].pop().click(); true",
    )
    .await;
    wait_js(
        &b,
        "!document.querySelector('#reply-bar').hidden",
        "the reply bar",
    )
    .await;
    type_and_enter(&b, "That is just text.").await;
    let quote = "(() => { const q = [...document.querySelectorAll('.msg.in .quote')]; return q.length ? q[q.length - 1].textContent : null; })()";
    let quoted = wait_js(&a, quote, "the quote at Alice's").await;
    assert!(quoted.as_str().unwrap().contains("javascript:"), "{quoted}");

    // Alice reacts to Bob's first message; Bob sees it.
    js(&a, "document.querySelector('.msg.in .act-react').click(); document.querySelector('.msg.in .picker button').click(); true").await;
    wait_js(
        &b,
        "document.querySelector('.msg.out .reaction')",
        "the reaction at Bob's",
    )
    .await;
    assert!(js(
        &b,
        "document.querySelector('.msg.out .reaction').textContent"
    )
    .await
    .as_str()
    .unwrap()
    .starts_with("👍"));

    // Bob edits his first message, then deletes his second, for everyone.
    js(
        &b,
        "document.querySelector('.msg.out .act-edit').click(); true",
    )
    .await;
    wait_js(
        &b,
        "document.querySelector('#dialog[open] textarea')",
        "the edit box",
    )
    .await;
    js(
        &b,
        "document.querySelector('#dialog textarea').value = 'Hi Alice! (edited)'; true",
    )
    .await;
    click(&b, "#dialog .primary").await;
    wait_js(&a, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hi Alice! (edited)')", "the edit at Alice's").await;
    assert_eq!(
        js(&a, "document.querySelectorAll('.msg.in .edited').length").await,
        1
    );
    js(
        &b,
        "document.querySelectorAll('.msg.out .act-delete')[1].click(); true",
    )
    .await;
    wait_js(
        &b,
        "document.querySelector('#dialog[open] .primary')",
        "the delete question",
    )
    .await;
    click(&b, "#dialog .primary").await;
    wait_js(
        &a,
        "document.querySelector('.msg.in .text.deleted')",
        "the deletion at Alice's",
    )
    .await;
    assert_eq!(js(&a, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'How are you?')").await, false);
    screenshot(&a, "conversation-alice").await;

    // Bob drops a picture on the conversation: Alice sees its preview and
    // downloads it byte for byte.
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    browser
        .execute(
            SetDownloadBehaviorParams::builder()
                .behavior(SetDownloadBehaviorBehavior::Allow)
                .download_path(downloads.display().to_string())
                .events_enabled(true)
                .build()
                .expect("download behaviour"),
        )
        .await
        .expect("allow downloads");
    let sent_b64 = js(&b, DROP_PICTURE).await;
    let sent = decode_b64(sent_b64.as_str().expect("the picture's bytes"));
    assert!(sent.starts_with(b"\x89PNG"), "a PNG");
    wait_js(&a, "(() => { const i = document.querySelector('.msg.in img.preview'); return i && i.complete && i.naturalWidth > 0; })()", "the picture's preview at Alice's").await;
    assert_eq!(
        js(
            &a,
            "document.querySelector('.msg.in .file-name').textContent"
        )
        .await,
        "drawing.png"
    );
    screenshot(&a, "picture").await;
    let mut progress = browser
        .event_listener::<EventDownloadProgress>()
        .await
        .expect("download events");
    click(&a, ".msg.in a.download").await;
    tokio::time::timeout(WAIT, async {
        while let Some(event) = progress.next().await {
            match event.state {
                DownloadProgressState::Completed => return,
                DownloadProgressState::Canceled => panic!("the download was canceled"),
                DownloadProgressState::InProgress => {}
            }
        }
    })
    .await
    .expect("the download completes in time");
    let saved = downloads.join("drawing.png");
    assert_eq!(std::fs::read(&saved).unwrap(), sent, "byte-identical");
    // The card says where the transfer stands.
    wait_js(
        &a,
        "document.querySelector('.msg.in .file-progress').textContent === 'downloaded'",
        "'downloaded' on the card",
    )
    .await;

    // Alice changes her status and picture; Bob's app shows both.
    click(&a, "#me-button").await;
    wait_js(
        &a,
        "document.querySelector('#profile-name')",
        "the profile screen",
    )
    .await;
    js(
        &a,
        "document.querySelector('#profile-status').value = 'Out climbing'; true",
    )
    .await;
    js(&a, SET_PICTURE).await;
    wait_js(
        &a,
        "document.querySelector('#profile-picture').files.length === 1",
        "the picked picture",
    )
    .await;
    click(&a, "#profile-save").await;
    wait_js(&b, "(() => { const i = document.querySelector('.chat-item .avatar img'); return i && i.complete && i.naturalWidth > 0; })()", "Alice's picture at Bob's").await;
    screenshot(&a, "profile").await;
    click(&b, "#show-contacts").await;
    wait_js(
        &b,
        "[...document.querySelectorAll('.contact-status')].some(s => s.textContent.includes('Out climbing'))",
        "Alice's new status at Bob's",
    )
    .await;
    screenshot(&b, "contacts-list").await;

    // Alice's daemon stops: Bob's app shows when she was last seen, and
    // that no peer is reachable.
    drop(a);
    drop(alice);
    wait_js(
        &b,
        "[...document.querySelectorAll('.contact-status')].some(s => s.textContent.includes('last seen'))",
        "Alice's last seen at Bob's",
    )
    .await;
    wait_js(
        &b,
        "!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('No peer is reachable')",
        "the connection banner",
    )
    .await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
}

/// `who` adds `whom` from `whom`'s invite, through the CLI.
fn add_contact(who: &Daemon, whom: &Daemon) {
    let invite: Value =
        serde_json::from_str(ok_stdout(meshchat(&whom.dir).args(["invite", "--json"])).trim())
            .expect("invite json");
    let invite = invite["invite"].as_str().expect("an invite").to_owned();
    ok_stdout(meshchat(&who.dir).args(["contacts", "add", &invite]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_in_the_browser_with_a_removal() {
    let Some(chrome) = chrome() else {
        skip_loudly("a_group_of_three_in_the_browser_with_a_removal");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob = Daemon::start(&tmp.path().join("bob"), "Bob");
    let carol = Daemon::start(&tmp.path().join("carol"), "Carol");
    for (x, y) in [
        (&alice, &bob),
        (&alice, &carol),
        (&bob, &alice),
        (&carol, &alice),
    ] {
        add_contact(x, y);
    }
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    let b = open_app(&browser, &bob).await;
    let c = open_app(&browser, &carol).await;

    // Alice creates the group from the "new group" screen.
    click(&a, "#new-group").await;
    wait_js(
        &a,
        "document.querySelectorAll('.panel input[type=checkbox]').length === 2",
        "the contacts to pick",
    )
    .await;
    js(&a, "document.querySelector('.panel input.field').value = 'Climbers'; \
            document.querySelectorAll('.panel input[type=checkbox]').forEach(b => b.checked = true); true").await;
    js(&a, "[...document.querySelectorAll('.panel button.primary')].find(b => b.textContent === 'Create group').click(); true").await;
    wait_js(
        &a,
        "document.querySelector('#conv-name').textContent === '# Climbers'",
        "the group's conversation",
    )
    .await;
    type_and_enter(&a, "Welcome to the group").await;

    // Bob and Carol see it arrive in their lists and open it.
    for page in [&b, &c] {
        wait_js(page, "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '# Climbers')", "the group in the list").await;
        js(page, "[...document.querySelectorAll('.chat-item')].find(i => i.querySelector('.chat-name').textContent === '# Climbers').click(); true").await;
        wait_js(page, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Welcome to the group')", "Alice's message").await;
        assert_eq!(
            js(
                page,
                "document.querySelector('.msg.in .author').textContent"
            )
            .await,
            "Alice"
        );
    }
    type_and_enter(&b, "Hi all").await;
    wait_js(
        &c,
        "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hi all')",
        "Bob's message at Carol's",
    )
    .await;
    screenshot(&a, "group").await;

    // Alice removes Carol from the group's details.
    click(&a, "#conv-info").await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 3",
        "the member list",
    )
    .await;
    screenshot(&a, "group-info").await;
    // She makes Bob an admin and renames the group; Bob sees the new name.
    js(&a, "[...document.querySelectorAll('.member')].find(m => m.textContent.includes('Bob')).querySelector('button').click(); true").await;
    wait_js(&a, "[...document.querySelectorAll('.member')].some(m => m.textContent.includes('Bob') && m.textContent.includes('admin') && m.textContent.includes('Demote'))", "Bob as an admin").await;
    js(&a, "document.querySelector('.panel input.field').value = 'Crag crew'; [...document.querySelectorAll('.panel button')].find(b => b.textContent === 'Rename').click(); true").await;
    wait_js(
        &b,
        "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '# Crag crew')",
        "the new name at Bob's",
    )
    .await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 3",
        "the member list again",
    )
    .await;
    js(&a, "[...document.querySelectorAll('.member')].find(m => m.textContent.includes('Carol')).querySelector('.remove-member').click(); true").await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 2",
        "Carol gone from the list",
    )
    .await;

    // What Alice writes next reaches Bob, not Carol.
    js(&a, "[...document.querySelectorAll('.chat-item')].find(i => i.querySelector('.chat-name').textContent === '# Crag crew').click(); true").await;
    wait_js(
        &a,
        "!document.querySelector('#conversation').hidden",
        "the conversation",
    )
    .await;
    type_and_enter(&a, "Just us now").await;
    wait_js(&a, "[...document.querySelectorAll('.msg.out .text')].some(t => t.textContent === 'Just us now')", "the message at Alice's").await;
    wait_js(&b, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Just us now')", "the message at Bob's").await;
    // Carol's daemon learnt of her removal; her history has no new message.
    let carol_has = ok_stdout(meshchat(&carol.dir).args(["history", "Crag crew", "--json"]));
    assert!(!carol_has.contains("Just us now"), "{carol_has}");
    assert_eq!(
        js(&c, "[...document.querySelectorAll('.msg .text')].some(t => t.textContent === 'Just us now')").await,
        false
    );

    let _ = browser.close().await;
    let _ = browser.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_a_request_then_a_tilde_name_then_a_contact() {
    let Some(chrome) = chrome() else {
        skip_loudly("a_stranger_is_a_request_then_a_tilde_name_then_a_contact");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dave = Daemon::start(&tmp.path().join("dave"), "Dave");
    let erin = Daemon::start(&tmp.path().join("erin"), "Erin");
    // Erin has Dave's invite; Dave does not know her.
    add_contact(&erin, &dave);
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let d = open_app(&browser, &dave).await;
    ok_stdout(meshchat(&erin.dir).args(["send", "Dave", "Hello, we met at the crag"]));

    // Dave's app tells him, and the request waits in Contacts.
    wait_js(
        &d,
        "(window.__toasts || []).some(t => t.includes('message request'))",
        "the request's notice",
    )
    .await;
    click(&d, "#show-contacts").await;
    wait_js(&d, "document.querySelector('.request')", "the request").await;
    let request = js(&d, "document.querySelector('.request').textContent").await;
    assert!(
        request.as_str().unwrap().contains("wrote 1 message"),
        "{request}"
    );
    assert!(
        request.as_str().unwrap().contains("we met at the crag"),
        "{request}"
    );
    assert_eq!(
        js(&d, "document.querySelectorAll('.chat-item').length").await,
        0,
        "no chat before accepting"
    );
    click(&d, ".accept-request").await;

    // Accepted: the chat shows her by her profile name, marked as not a contact.
    wait_js(
        &d,
        "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '~Erin')",
        "~Erin in the list",
    )
    .await;
    js(&d, "document.querySelector('.chat-item').click(); true").await;
    wait_js(&d, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hello, we met at the crag')", "her message").await;
    let status = wait_js(&d, "document.querySelector('#conv-status').textContent.startsWith('not in your contacts') && document.querySelector('#conv-status').textContent", "the not-a-contact mark").await;
    assert!(
        status.as_str().unwrap().starts_with("not in your contacts"),
        "{status}"
    );
    screenshot(&d, "stranger").await;
    // Narrower than 800 px: one pane at a time, with a way back.
    d.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(600)
            .height(800)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .expect("metrics"),
    )
    .await
    .expect("viewport");
    wait_js(&d, "getComputedStyle(document.querySelector('.sidebar')).display === 'none' && document.querySelector('#back').offsetParent !== null", "the one-pane layout").await;
    screenshot(&d, "narrow").await;
    click(&d, "#back").await;
    wait_js(&d, "getComputedStyle(document.querySelector('.sidebar')).display !== 'none' && getComputedStyle(document.querySelector('.main')).display === 'none'", "the chat list alone").await;
    js(&d, "document.querySelector('.chat-item').click(); true").await;
    wait_js(
        &d,
        "!document.querySelector('#conversation').hidden",
        "the conversation again",
    )
    .await;
    d.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(1200)
            .height(800)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .expect("metrics"),
    )
    .await
    .expect("viewport");
    // One click makes her a contact.
    click(&d, ".add-contact").await;
    wait_js(
        &d,
        "document.querySelector('#conv-name').textContent === 'Erin'",
        "Erin as a contact",
    )
    .await;
    assert_eq!(
        js(&d, "document.querySelector('.add-contact') === null").await,
        true
    );

    // A long history comes in pages: the newest 50, then older ones when
    // scrolled to the top.
    for n in 0..60 {
        ok_stdout(meshchat(&erin.dir).args(["send", "Dave", &format!("line {n}")]));
    }
    wait_js(
        &d,
        "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'line 59')",
        "the last line",
    )
    .await;
    assert_eq!(js(&d, "document.querySelectorAll('.msg').length").await, 50);
    assert_eq!(
        js(&d, "document.querySelector('.older') !== null").await,
        true
    );
    js(&d, "document.querySelector('#messages').scrollTop = 0; document.querySelector('#messages').dispatchEvent(new Event('scroll')); true").await;
    wait_js(
        &d,
        "document.querySelectorAll('.msg').length === 61",
        "the older messages",
    )
    .await;
    assert_eq!(
        js(&d, "document.querySelector('.msg .text').textContent").await,
        "Hello, we met at the crag"
    );

    // Block and unblock from Contacts.
    click(&d, "#show-contacts").await;
    let block =
        "[...document.querySelectorAll('.list-item')].find(li => li.textContent.includes('Erin'))";
    wait_js(&d, block, "Erin in Contacts").await;
    js(&d, &format!("[...{block}.querySelectorAll('button')].find(b => b.textContent === 'Block').click(); true")).await;
    wait_js(&d, &format!("(() => {{ const li = {block}; return li && li.textContent.includes('blocked') && li.textContent.includes('Unblock'); }})()"), "Erin blocked").await;
    js(&d, &format!("[...{block}.querySelectorAll('button')].find(b => b.textContent === 'Unblock').click(); true")).await;
    wait_js(&d, &format!("(() => {{ const li = {block}; return li && !li.textContent.includes('blocked') && li.textContent.includes('Block'); }})()"), "Erin unblocked").await;

    // The keyboard: a focused chat opens with Enter.
    let item = d.find_element(".chat-item").await.expect("a chat");
    item.focus().await.expect("focus the chat");
    item.press_key("Enter").await.expect("Enter");
    wait_js(&d, "!document.querySelector('#conversation').hidden && document.querySelector('#conv-name').textContent === 'Erin'", "the chat opened by keyboard").await;

    // Network and relays.
    click(&d, "#show-settings").await;
    wait_js(
        &d,
        "document.querySelector('.panel').textContent.includes('Relays holding my mail')",
        "the relays screen",
    )
    .await;
    screenshot(&d, "settings").await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
}

/// A relay (`meshchat relay`) on loopback, killed on drop, and its address.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_relay(dir: &Path) -> (Relay, String) {
    let mut child = meshchat(dir)
        .args(["relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let addr = ready["addrs"][0].as_str().unwrap().to_owned();
    (Relay(child), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_held_by_a_relay_shows_one_tick_and_who_holds_it() {
    let Some(chrome) = chrome() else {
        skip_loudly("mail_held_by_a_relay_shows_one_tick_and_who_holds_it");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = start_relay(&tmp.path().join("relay"));
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob_dir = tmp.path().join("bob");
    ok_stdout(meshchat(&bob_dir).args(["init", "--name", "Bob"]));
    let bob = Daemon::run(&bob_dir, &["--relay", &relay_addr]);
    // Bob's invite carries his relay and a delivery token for it.
    add_contact(&alice, &bob);
    add_contact(&bob, &alice);
    bob.stop();

    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    wait_js(
        &a,
        "document.querySelector('.chat-item')",
        "the chat with Bob",
    )
    .await;
    click(&a, ".chat-item").await;
    type_and_enter(&a, "Held for you").await;
    // Bob is offline: the relay takes custody, one tick, and says until when.
    wait_js(&a, "document.querySelector('.msg.out .tick') && document.querySelector('.msg.out .tick').dataset.state === 'sent'", "✓ (at a relay)").await;
    assert_eq!(
        js(&a, "document.querySelector('.msg.out .tick').textContent").await,
        "✓"
    );
    js(&a, "document.querySelector('.msg.out .tick').dispatchEvent(new MouseEvent('mouseenter')); true").await;
    let title = wait_js(&a, "document.querySelector('.msg.out .tick').title.includes('held by') && document.querySelector('.msg.out .tick').title", "who holds it").await;
    assert!(
        title.as_str().unwrap().contains("held by 1 relay until"),
        "{title}"
    );
    screenshot(&a, "held-by-relay").await;

    // Alice goes offline too; Bob comes back and finds the message at the relay.
    let _ = browser.close().await;
    let _ = browser.wait().await;
    alice.stop();
    let bob = Daemon::run(&bob_dir, &["--relay", &relay_addr]);
    // Re-read the history whenever Bob's node reports something (and at
    // least every second, for what came before `watch` started).
    let mut watch = meshchat(&bob.dir)
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, events) = sync_channel(1024);
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let history = ok_stdout(meshchat(&bob.dir).args(["history", "Alice"]));
        if history.contains("Held for you") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message did not come from the relay: {history}"
        );
        let _ = events.recv_timeout(Duration::from_secs(1));
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn the_app_never_listens_beyond_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    ok_stdout(meshchat(&dir).args(["init", "--name", "alice"]));
    let mut child = meshchat(&dir)
        .args([
            "daemon",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--ui-listen",
            "0.0.0.0:0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    // The daemon runs without the app (it says why on stderr); `meshchat ui` finds none.
    assert!(ready["peer_id"].is_string(), "{ready}");
    assert!(ready["ui"].is_null(), "{ready}");
    let out = meshchat(&dir).args(["ui", "--print-url"]).output().unwrap();
    assert!(!out.status.success());
    let _ = child.kill();
    let _ = child.wait();
}

//! What the desktop app's tests share: daemons and a relay run as the
//! user runs them, raw HTTP, and a headless Chromium to drive pages.

pub(crate) use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{sync_channel, Receiver},
    time::{Duration, Instant},
};

pub(crate) use chromiumoxide::{
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
pub(crate) use futures::StreamExt;
pub(crate) use serde_json::Value;

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn meshchat(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshchat"));
    cmd.arg("--data-dir").arg(dir).env("MESHCHAT_LOG", "warn");
    cmd
}

pub(crate) fn ok_stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run meshchat");
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon killed on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) _lines: Receiver<String>,
    pub(crate) dir: PathBuf,
    /// The UI's address, `127.0.0.1:PORT`.
    pub(crate) ui: String,
}

impl Daemon {
    pub(crate) fn start(dir: &Path, name: &str) -> Self {
        Self::start_with(dir, name, |text| text)
    }

    /// Starts a daemon after `tweak` edited its `config.toml`.
    pub(crate) fn start_with(dir: &Path, name: &str, tweak: impl Fn(String) -> String) -> Self {
        ok_stdout(meshchat(dir).args(["init", "--name", name]));
        // Presence every second, so "last seen" shows soon after a stop.
        let config = dir.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = tweak(text.replace("presence_secs = 60", "presence_secs = 1"));
        std::fs::write(&config, text).unwrap();
        Self::run(dir, &[])
    }

    /// Runs the daemon of an initialised `dir` with `extra` arguments.
    pub(crate) fn run(dir: &Path, extra: &[&str]) -> Self {
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
    pub(crate) fn stop(mut self) {
        ok_stdout(meshchat(&self.dir).arg("stop"));
        self.child.wait().unwrap();
    }

    /// A fresh sign-in link from `meshchat ui --print-url`.
    pub(crate) fn login_url(&self) -> String {
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
pub(crate) fn http(addr: &str, request: &str, body: &[u8]) -> (u16, String, String) {
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

pub(crate) struct Req<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) host: &'a str,
    pub(crate) origin: Option<&'a str>,
    pub(crate) cookie: Option<&'a str>,
    pub(crate) content_type: &'a str,
    pub(crate) body: &'a [u8],
}

impl<'a> Req<'a> {
    pub(crate) fn get(path: &'a str, host: &'a str) -> Self {
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
    pub(crate) fn api(
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

    pub(crate) fn send(&self, addr: &str) -> (u16, String, String) {
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

pub(crate) fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------- browser

/// The browser to drive: `MESHCHAT_CHROME` (which must exist: asked for
/// by name, its absence is a failure), else the first one installed.
pub(crate) fn chrome() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MESHCHAT_CHROME") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "MESHCHAT_CHROME={} does not exist",
            path.display()
        );
        return Some(path);
    }
    CHROMES.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Where Debian, Ubuntu and Google install Chromium or Chrome.
const CHROMES: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// Says on the terminal, past the test harness's capture (which shows a
/// passing test's output only with `--nocapture`), that `test` did not run.
pub(crate) fn skip_loudly(test: &str) {
    let line = "=".repeat(66);
    let _ = writeln!(
        std::io::stderr(),
        "\n{line}\nSKIPPED {test}: no Chromium found.\n\
         Install it (apt-get install -y chromium) or set MESHCHAT_CHROME.\n\
         CI always runs these tests.\n{line}\n"
    );
}

pub(crate) async fn launch(chrome: &Path, profile: &Path) -> Browser {
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
pub(crate) async fn open_app(browser: &Browser, daemon: &Daemon) -> Page {
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
pub(crate) async fn js(page: &Page, expr: &str) -> Value {
    page.evaluate(expr)
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
        .into_value()
        .unwrap_or(Value::Null)
}

/// Waits until `expr` is truthy in the page, re-checking after each
/// animation frame's worth of work (the page updates on server events).
pub(crate) async fn wait_js(page: &Page, expr: &str, what: &str) -> Value {
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
pub(crate) async fn click(page: &Page, selector: &str) {
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
/// Opens the first chat of the list: clicks it and waits for the composer,
/// clicking again if the list re-rendered under the click (a server event
/// can redraw it between finding the item and the click landing).
pub(crate) async fn open_first_chat(page: &Page) {
    let deadline = Instant::now() + WAIT;
    let composer_within_2s = "new Promise((resolve) => { const end = Date.now() + 2000; \
        const tick = () => { const el = document.querySelector('#text'); \
        if (el && el.offsetParent !== null) resolve(true); \
        else if (Date.now() > end) resolve(false); else setTimeout(tick, 20); }; tick(); })";
    loop {
        click(page, ".chat-item").await;
        if js(page, composer_within_2s).await == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the chat never opened");
        eprintln!("the chat did not open: clicking it again");
    }
}

pub(crate) async fn type_and_enter(page: &Page, text: &str) {
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

pub(crate) async fn screenshot(page: &Page, name: &str) {
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
pub(crate) async fn add_by_invite(page: &Page, other_page: &Page) {
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
pub(crate) const DROP_PICTURE: &str = r#"(async () => {
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

/// Pastes a drawn picture into the composer, as Ctrl+V of a copied image does.
pub(crate) const PASTE_PICTURE: &str = r#"(async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 48; canvas.height = 48;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#2b8fd6'; ctx.fillRect(0, 0, 48, 48);
  const blob = await new Promise((r) => canvas.toBlob(r, 'image/png'));
  const dt = new DataTransfer();
  dt.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
  document.querySelector('#text').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  return true;
})()"#;

/// Picks a drawn picture in the profile screen's file input.
pub(crate) const SET_PICTURE: &str = r#"(async () => {
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

pub(crate) fn decode_b64(text: &str) -> Vec<u8> {
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
pub(crate) fn last_text(selector: &str) -> String {
    format!(
        "(() => {{ const all = document.querySelectorAll({selector:?}); \
         return all.length ? all[all.length - 1].textContent : null; }})()"
    )
}

/// `who` adds `whom` from `whom`'s invite, through the CLI.
pub(crate) fn add_contact(who: &Daemon, whom: &Daemon) {
    let invite: Value =
        serde_json::from_str(ok_stdout(meshchat(&whom.dir).args(["invite", "--json"])).trim())
            .expect("invite json");
    let invite = invite["invite"].as_str().expect("an invite").to_owned();
    ok_stdout(meshchat(&who.dir).args(["contacts", "add", &invite]));
}

/// A relay (`meshchat relay`) on loopback, killed on drop, and its address.
pub(crate) struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_relay(dir: &Path) -> (Relay, String) {
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

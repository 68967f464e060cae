//! Spoken to over raw HTTP: sign-in, refusals, bounds.

use super::support::*;

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

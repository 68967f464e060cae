//! Who may use the desktop app: whoever can read the login file (mode 0600
//! in the private `run/` directory) gets a one-time secret, which `/login`
//! exchanges for an HttpOnly, SameSite=Strict session cookie. Every request
//! must name this server in `Host` (no DNS rebinding) and, when the browser
//! sends one, in `Origin` (no cross-site requests); changes (`POST`) must
//! carry a same-origin `Origin`.

use std::{
    collections::VecDeque,
    io::Write,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context, Result};
use axum::http::{header, HeaderMap, Method};
use meshchat_node::DataDir;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Sessions kept at once; the oldest is forgotten first.
const MAX_SESSIONS: usize = 32;

/// The login file's contents: where the app is and the current one-time secret.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LoginFile {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The secret `/login` takes once.
    pub(crate) secret: String,
}

impl LoginFile {
    pub(crate) fn path(dir: &DataDir) -> PathBuf {
        dir.root().join("run").join("ui-login.json")
    }

    /// Reads the running daemon's login file.
    pub(crate) fn read(dir: &DataDir) -> Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no desktop app running for {} (start it with `meshchat daemon`)",
                dir.root().display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// The link that signs a browser in (once).
    pub(crate) fn url(&self) -> String {
        format!("http://{}/login?secret={}", self.addr, self.secret)
    }

    /// Writes the file with mode 0600 (a new file renamed over the old one).
    fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(serde_json::to_string(self).unwrap_or_default().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// A random 256-bit value, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Host` names another server: a DNS-rebinding page, or a proxy.
    Host,
    /// `Origin` is another site, or missing on a change.
    Origin,
    /// No valid session cookie.
    Session,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Host => "refused: this server answers to its own address only",
            Refusal::Origin => "refused: requests from other sites are not taken",
            Refusal::Session => "not signed in: run `meshchat ui` to open the app",
        }
    }
}

/// The server's secrets and sessions.
pub(crate) struct Auth {
    addr: SocketAddr,
    login_file: PathBuf,
    secret: Mutex<String>,
    sessions: Mutex<VecDeque<String>>,
}

impl Auth {
    /// A fresh secret, written to `login_file`.
    pub(crate) fn new(addr: SocketAddr, login_file: PathBuf) -> Result<Self> {
        let auth = Self {
            addr,
            login_file,
            secret: Mutex::new(random_token()),
            sessions: Mutex::new(VecDeque::new()),
        };
        auth.write_login_file()
            .with_context(|| format!("writing {}", auth.login_file.display()))?;
        Ok(auth)
    }

    fn write_login_file(&self) -> std::io::Result<()> {
        let secret = self.secret.lock().map(|s| s.clone()).unwrap_or_default();
        LoginFile {
            addr: self.addr,
            secret,
        }
        .write(&self.login_file)
    }

    /// The cookie's name: per port, since browsers share cookies between
    /// the ports of one host (two daemons on one machine stay apart).
    pub(crate) fn cookie_name(&self) -> String {
        format!("meshchat_ui_{}", self.addr.port())
    }

    /// Takes the one-time secret: a new session id, and a new secret in the
    /// login file for the next `meshchat ui`.
    pub(crate) fn login(&self, offered: &str) -> Option<String> {
        {
            let mut secret = self.secret.lock().ok()?;
            if !same(&secret, offered) {
                return None;
            }
            *secret = random_token();
        }
        if let Err(error) = self.write_login_file() {
            tracing::warn!(%error, "cannot rewrite the UI login file");
        }
        let session = random_token();
        let mut sessions = self.sessions.lock().ok()?;
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(session.clone());
        Some(session)
    }

    /// The `Set-Cookie` value for a session.
    pub(crate) fn set_cookie(&self, session: &str) -> String {
        format!(
            "{}={session}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name()
        )
    }

    /// Whether the request carries a live session cookie.
    pub(crate) fn has_session(&self, headers: &HeaderMap) -> bool {
        let name = self.cookie_name();
        let Ok(sessions) = self.sessions.lock() else {
            return false;
        };
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, v)| k == name && sessions.iter().any(|s| same(s, v)))
    }

    /// The names this server answers to: its address, and `localhost` on
    /// its port.
    fn hosts(&self) -> [String; 2] {
        [
            self.addr.to_string(),
            format!("localhost:{}", self.addr.port()),
        ]
    }

    /// Host and Origin checks, before anything else is looked at.
    pub(crate) fn check_request(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let hosts = self.hosts();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| hosts.iter().any(|ok| ok == h)) {
            return Err(Refusal::Host);
        }
        match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            Some(Ok(origin)) => {
                let ok = hosts.iter().any(|h| origin == format!("http://{h}"));
                if !ok {
                    return Err(Refusal::Origin);
                }
            }
            Some(Err(_)) => return Err(Refusal::Origin),
            // Browsers send Origin with every POST; its absence there means
            // a client we cannot tell apart from a forged one.
            None if method != Method::GET && method != Method::HEAD => return Err(Refusal::Origin),
            None => {}
        }
        // A browser's own word on where the request comes from.
        if let Some(site) = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok()) {
            if site != "same-origin" && site != "none" {
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use axum::http::HeaderValue;

    use super::*;

    fn auth() -> (tempfile::TempDir, Auth) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("ui-login.json");
        let auth = Auth::new("127.0.0.1:4780".parse().unwrap(), file).unwrap();
        (tmp, auth)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn the_secret_is_private_works_once_and_is_replaced() {
        let (tmp, auth) = auth();
        let path = tmp.path().join("ui-login.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first: LoginFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(auth.login("wrong").is_none());
        assert!(auth.login("").is_none());
        let session = auth.login(&first.secret).expect("the secret signs in");
        assert!(auth.login(&first.secret).is_none(), "only once");
        let second: LoginFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_ne!(first.secret, second.secret);
        assert!(auth.login(&second.secret).is_some());
        let cookie = format!("other=1; {}={session}", auth.cookie_name());
        assert!(auth.has_session(&headers(&[("cookie", &cookie)])));
        let forged = format!("{}=00{}", auth.cookie_name(), &session[2..]);
        assert!(!auth.has_session(&headers(&[("cookie", &forged)])));
        assert!(!auth.has_session(&headers(&[])));
    }

    #[test]
    fn host_and_origin_are_checked() {
        let (_tmp, auth) = auth();
        let get = Method::GET;
        let post = Method::POST;
        let ok = |m: &Method, h: &[(&'static str, &str)]| auth.check_request(m, &headers(h));
        assert_eq!(ok(&get, &[("host", "127.0.0.1:4780")]), Ok(()));
        assert_eq!(ok(&get, &[("host", "localhost:4780")]), Ok(()));
        assert_eq!(
            ok(&get, &[("host", "evil.example:4780")]),
            Err(Refusal::Host)
        );
        assert_eq!(ok(&get, &[("host", "127.0.0.1:4781")]), Err(Refusal::Host));
        assert_eq!(ok(&get, &[]), Err(Refusal::Host));
        let origin = [
            ("host", "127.0.0.1:4780"),
            ("origin", "http://127.0.0.1:4780"),
        ];
        assert_eq!(ok(&post, &origin), Ok(()));
        assert_eq!(ok(&post, &origin[..1]), Err(Refusal::Origin));
        let foreign = [
            ("host", "127.0.0.1:4780"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(ok(&post, &foreign), Err(Refusal::Origin));
        assert_eq!(ok(&get, &foreign), Err(Refusal::Origin));
        let null = [("host", "127.0.0.1:4780"), ("origin", "null")];
        assert_eq!(ok(&post, &null), Err(Refusal::Origin));
        let cross = [
            ("host", "127.0.0.1:4780"),
            ("origin", "http://127.0.0.1:4780"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(ok(&post, &cross), Err(Refusal::Origin));
    }
}

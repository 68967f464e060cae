//! The desktop app: the daemon serves a local web UI (`meshchat ui` opens
//! it). One file per job: [`auth`] (the per-run secret, session cookies,
//! Host/Origin checks), [`routes`] (`POST /api/<method>` over the control
//! API's operations, uploads and downloads), [`events`] (server-sent events),
//! [`assets`] (the pages, embedded in the binary). Threats and limits are in
//! `docs/SECURITY.md`.

mod assets;
mod auth;
mod events;
mod people;
mod routes;
mod state;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{bail, Context, Result};
use meshchat_node::{DataDir, Node};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use auth::LoginFile;

/// The running web server.
pub(crate) struct UiServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
    login_file: PathBuf,
}

impl UiServer {
    /// Binds `listen` (a loopback address; if its port is taken, a free
    /// port instead), writes the login file and serves until `cancel`.
    pub(crate) async fn start(
        dir: &DataDir,
        listen: SocketAddr,
        node: Node,
        cancel: CancellationToken,
    ) -> Result<Self> {
        if !listen.ip().is_loopback() {
            bail!(
                "the desktop app listens on this machine only: {listen} is not a loopback \
                 address (use 127.0.0.1 or [::1]; over a network, use an SSH tunnel)"
            );
        }
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(error) if listen.port() != 0 => {
                tracing::warn!(%listen, %error, "UI port taken; using a free port");
                tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))
                    .await
                    .with_context(|| format!("binding the desktop app on {}", listen.ip()))?
            }
            Err(error) => return Err(error).context("binding the desktop app"),
        };
        let addr = listener.local_addr()?;
        let login_file = LoginFile::path(dir);
        let auth = auth::Auth::new(addr, login_file.clone())?;
        let max_upload = dir.config().map(|c| c.blobs.max_file_bytes).unwrap_or(0);
        let state = state::AppState {
            node,
            auth: Arc::new(auth),
            cancel: cancel.clone(),
            files_dir: dir.root().join("run").join("ui-files"),
            max_upload,
        };
        let app = routes::router(state);
        let task = tokio::spawn(async move {
            let shutdown = cancel.clone();
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
            {
                tracing::warn!(%error, "the desktop app's server stopped");
            }
        });
        Ok(Self {
            addr,
            task,
            login_file,
        })
    }

    /// Waits for the server to end (after `cancel`) and removes the login file.
    pub(crate) async fn stopped(self) {
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.login_file);
    }
}

/// `meshchat ui`: opens the running daemon's desktop app in the default
/// browser, or (`print_url`) prints the URL with its one-time secret.
pub(crate) fn open(dir: &DataDir, print_url: bool, json: bool) -> Result<()> {
    let login = LoginFile::read(dir)?;
    // A file left by a daemon that was killed names a server that is gone.
    if std::net::TcpStream::connect_timeout(&login.addr, std::time::Duration::from_secs(2)).is_err()
    {
        bail!(
            "the desktop app at {} does not answer: is `meshchat daemon` running for {}?",
            login.addr,
            dir.root().display()
        );
    }
    let url = login.url();
    if json {
        println!("{}", serde_json::json!({ "url": url, "addr": login.addr }));
        return Ok(());
    }
    if print_url {
        println!("{url}");
        return Ok(());
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = std::process::Command::new(opener)
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {
            crate::format::say!("Opened the desktop app in your browser.");
            Ok(())
        }
        _ => {
            crate::format::say!("Could not start a browser; open this link (it works once):");
            println!("{url}");
            Ok(())
        }
    }
}

//! `meshchat daemon`: the node plus its control socket, until a signal or `meshchat stop`.

use anyhow::{Context, Result};
use meshchat_node::{control, DataDir, Multiaddr};
use tokio_util::sync::CancellationToken;

use crate::{format::say, ui::UiServer};

pub(crate) async fn run(
    dir: &DataDir,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
    no_mdns: bool,
    ui_listen: Option<std::net::SocketAddr>,
    json: bool,
) -> Result<()> {
    init_tracing();
    let mut config = dir
        .config()
        .with_context(|| format!("reading {}/config.toml", dir.root().display()))?;
    if !listen.is_empty() {
        config.blobs.follow_listen(&listen);
        config.listen = listen;
    }
    config.bootstrap.extend(bootstrap);
    for relay in relays {
        if !config.relays.contains(&relay) {
            config.relays.push(relay);
        }
    }
    if no_mdns {
        config.mdns = false;
    }
    let ui_listen = ui_listen.unwrap_or(config.ui_listen);
    let node = meshchat_node::spawn(dir, config).await?;
    let listener = control::bind(&dir.socket_path())
        .with_context(|| format!("binding {}", dir.socket_path().display()))?;
    let cancel = CancellationToken::new();
    let server = tokio::spawn(control::serve(listener, node.clone(), cancel.clone()));
    let ui = match UiServer::start(dir, ui_listen, node.clone(), cancel.clone()).await {
        Ok(ui) => Some(ui),
        Err(error) => {
            if !json {
                say!("The desktop app is off: {error:#}");
            }
            tracing::warn!(error = %format!("{error:#}"), "desktop app off");
            None
        }
    };
    let status = node.network().status().await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "peer_id": status.peer_id,
                "listen_addrs": status.listen_addrs,
                "ui": ui.as_ref().map(|ui| ui.addr),
            })
        );
    } else {
        say!("meshchat daemon running as {}", status.peer_id);
        for addr in &status.listen_addrs {
            say!("  listening on {addr}");
        }
        say!("Control socket: {}", dir.socket_path().display());
        if let Some(ui) = &ui {
            say!(
                "Desktop app on http://{}/ (open it with `meshchat ui`)",
                ui.addr
            );
        }
    }
    wait_for_stop(&cancel).await;
    cancel.cancel();
    node.shutdown().await;
    let _ = server.await;
    if let Some(ui) = ui {
        ui.stopped().await;
    }
    let _ = std::fs::remove_file(dir.socket_path());
    if !json {
        say!("meshchat daemon stopped");
    }
    Ok(())
}

pub(crate) async fn wait_for_stop(cancel: &CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = cancel.cancelled() => {}
            }
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = cancel.cancelled() => {}
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHCHAT_LOG")
                .unwrap_or_else(|_| "info,libp2p_mdns=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

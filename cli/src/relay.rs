//! `meshchat relay`: a relay node. The daemon plus a mailbox service for
//! offline peers (limits in `relay.toml`), Kademlia in server mode, and a
//! Prometheus-text metrics endpoint.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, Result};
use meshchat_node::{
    control, mailbox::MailboxConfig, DataDir, Multiaddr, Node, NodeConfig, Status,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

use crate::format::say;

const RELAY_TOML: &str = "relay.toml";

pub(crate) struct RelayArgs {
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) external: Vec<Multiaddr>,
    pub(crate) metrics: Option<SocketAddr>,
}

pub(crate) async fn run(dir: &DataDir, args: RelayArgs, json: bool) -> Result<()> {
    crate::daemon::init_tracing();
    if !dir.is_initialised() {
        dir.init(Some("relay"), &NodeConfig::default())
            .with_context(|| format!("initialising {}", dir.root().display()))?;
    }
    let limits = relay_config(dir.root())?;
    let mut config = dir.config()?;
    config.mdns = false;
    if !args.listen.is_empty() {
        config.blobs.follow_listen(&args.listen);
        config.listen = args.listen;
    }
    config.mailbox = Some(limits);
    let node = meshchat_node::spawn(dir, config).await?;
    let listener = control::bind(&dir.socket_path())
        .with_context(|| format!("binding {}", dir.socket_path().display()))?;
    let cancel = CancellationToken::new();
    let server = tokio::spawn(control::serve(listener, node.clone(), cancel.clone()));
    let (metrics, metrics_addr) = match args.metrics {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?;
            let bound = listener.local_addr()?;
            let task = tokio::spawn(serve_metrics(listener, node.clone(), cancel.clone()));
            (Some(task), Some(bound))
        }
        None => (None, None),
    };
    let status = node.network().status().await?;
    let mut addrs = status.listen_addrs.clone();
    addrs.extend(
        args.external
            .into_iter()
            .map(|a| a.with(meshchat_node::Protocol::P2p(status.peer_id))),
    );
    if json {
        println!(
            "{}",
            serde_json::json!({ "peer_id": status.peer_id, "addrs": addrs, "metrics": metrics_addr })
        );
    } else {
        say!("meshchat relay running as {}", status.peer_id);
        say!("Give peers one of these (config.toml `relays`, or `meshchat daemon --relay`):");
        for addr in &addrs {
            say!("  {addr}");
        }
        if let Some(addr) = metrics_addr {
            say!("Metrics: http://{addr}/metrics");
        }
    }
    crate::daemon::wait_for_stop(&cancel).await;
    cancel.cancel();
    node.shutdown().await;
    let _ = server.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    let _ = std::fs::remove_file(dir.socket_path());
    Ok(())
}

/// `relay.toml` if present, else the defaults (and a commented file is written).
fn relay_config(root: &Path) -> Result<MailboxConfig> {
    let path = root.join(RELAY_TOML);
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        return toml_parse(&text).with_context(|| format!("invalid {}", path.display()));
    }
    let d = MailboxConfig::default();
    let text = format!(
        "# meshchat relay limits. Every key is optional; shown are the defaults.\n\n\
         # How long an undelivered envelope is kept, in seconds (30 days).\n\
         retention_secs = {}\n\n\
         # Per recipient: envelopes and bytes held at most.\n\
         max_messages_per_recipient = {}\n\
         max_bytes_per_recipient = {}\n\n\
         # Largest envelope accepted, in bytes.\n\
         max_envelope_bytes = {}\n\n\
         # Deposits accepted per sender (PeerId) per minute.\n\
         deposits_per_sender_per_minute = {}\n\n\
         # Media held for offline peers: total bytes, and seconds each file is kept (7 days).\n\
         blob_cache_bytes = {}\n\
         blob_retention_secs = {}\n\n\
         # Mail held for everyone together, in bytes; beyond it deposits are refused.\n\
         max_total_bytes = {}\n\n\
         # Mail is taken only with the recipient's delivery token (its contacts get\n\
         # one each). Deposits accepted per token per minute.\n\
         deposits_per_token_per_minute = {}\n\n\
         # Mail from strangers (no valid token): bytes held for all of them together\n\
         # (0 = refuse strangers), and their deposits per minute, together. Stranger\n\
         # mail never takes more than a quarter of a recipient's mailbox.\n\
         stranger_bytes = {}\n\
         stranger_deposits_per_minute = {}\n\n\
         # Signed profile records kept for the DHT (your clients' records are kept\n\
         # first), and records accepted from one peer per minute.\n\
         dht_max_records = {}\n\
         dht_puts_per_source_per_minute = {}\n",
        d.retention_secs,
        d.max_messages_per_recipient,
        d.max_bytes_per_recipient,
        d.max_envelope_bytes,
        d.deposits_per_sender_per_minute,
        d.blob_cache_bytes,
        d.blob_retention_secs,
        d.max_total_bytes,
        d.deposits_per_token_per_minute,
        d.stranger_bytes,
        d.stranger_deposits_per_minute,
        d.dht_max_records,
        d.dht_puts_per_source_per_minute,
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(d)
}

fn toml_parse(text: &str) -> Result<MailboxConfig> {
    Ok(meshchat_node::config::parse_mailbox_toml(text)?)
}

async fn serve_metrics(listener: TcpListener, node: Node, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let body = match node.network().status().await {
                Ok(status) => prometheus(&status),
                Err(e) => format!("# node unavailable: {e}\n"),
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        });
    }
}

/// Prometheus text exposition of a relay's status.
pub(crate) fn prometheus(status: &Status) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge(
        "meshchat_connected_peers",
        "Peers with an open connection.",
        status.connected.len() as u64,
    );
    let mailbox = status.mailbox.unwrap_or_default();
    gauge(
        "meshchat_mailboxes",
        "Recipients with mail held.",
        mailbox.mailboxes,
    );
    gauge(
        "meshchat_mailbox_messages",
        "Envelopes held.",
        mailbox.messages,
    );
    gauge(
        "meshchat_mailbox_bytes",
        "Envelope bytes held.",
        mailbox.bytes,
    );
    let r = status.relay.clone().unwrap_or_default();
    out.push_str("# HELP meshchat_deposits_total Envelopes deposited durably.\n# TYPE meshchat_deposits_total counter\n");
    out.push_str(&format!("meshchat_deposits_total {}\n", r.deposits));
    out.push_str("# HELP meshchat_fetches_total Mailbox fetches served.\n# TYPE meshchat_fetches_total counter\n");
    out.push_str(&format!("meshchat_fetches_total {}\n", r.fetches));
    out.push_str("# HELP meshchat_expired_total Envelopes deleted at the end of retention.\n# TYPE meshchat_expired_total counter\n");
    out.push_str(&format!("meshchat_expired_total {}\n", r.expired));
    out.push_str("# HELP meshchat_duplicates_total Deposits of an envelope already held, answered from that copy.\n# TYPE meshchat_duplicates_total counter\n");
    out.push_str(&format!("meshchat_duplicates_total {}\n", r.duplicates));
    out.push_str("# HELP meshchat_refusals_total Deposits refused, by reason.\n# TYPE meshchat_refusals_total counter\n");
    for (reason, n) in [
        ("too_large", r.refused_too_large),
        ("quota", r.refused_quota),
        ("rate", r.refused_rate),
        ("unavailable", r.refused_unavailable),
        ("token", r.refused_token),
        ("full", r.refused_full),
    ] {
        out.push_str(&format!(
            "meshchat_refusals_total{{reason=\"{reason}\"}} {n}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_commented_relay_toml_names_every_limit_with_its_default() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(relay_config(tmp.path()).unwrap(), MailboxConfig::default());
        let text = std::fs::read_to_string(tmp.path().join(RELAY_TOML)).unwrap();
        // Every key is written out (not left to the defaults), and reads back.
        let defaults = serde_json::to_value(MailboxConfig::default()).unwrap();
        for (key, value) in defaults.as_object().unwrap() {
            assert!(
                text.contains(&format!("\n{key} = {value}\n")),
                "relay.toml lacks {key} = {value}"
            );
        }
        assert_eq!(toml_parse(&text).unwrap(), MailboxConfig::default());
        assert_eq!(relay_config(tmp.path()).unwrap(), MailboxConfig::default());
    }
}

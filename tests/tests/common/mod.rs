//! Shared helpers: real nodes in temp dirs on loopback, and waiting for events
//! with a timeout (never sleeping for the network).

#![allow(dead_code, unreachable_pub)]

pub mod attacker;

use std::{future::Future, time::Duration};

use meshchat_node::{
    crdt::ChatId, DataDir, Event, HistoryEntry, Multiaddr, Node, NodeConfig, PeerId,
};
use tempfile::TempDir;
use tokio::sync::broadcast;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The public key behind a peer's PeerId.
pub fn key_of(peer: &Peer) -> meshchat_node::crdt::PublicKey {
    meshchat_node::public_key_of(&peer.peer_id()).expect("meshchat peers are ed25519")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A node in its own temp data dir.
pub struct Peer {
    pub name: &'static str,
    pub tmp: TempDir,
    pub dir: DataDir,
    pub config: NodeConfig,
    pub node: Node,
    pub events: broadcast::Receiver<Event>,
}

impl Peer {
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, NodeConfig::loopback()).await
    }

    pub async fn start_with(name: &'static str, config: NodeConfig) -> Self {
        init_tracing();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join(name));
        dir.init(Some(name), &config).expect("init");
        let node = meshchat_node::spawn(&dir, config.clone())
            .await
            .expect("spawn");
        let events = node.subscribe();
        // Restarts reuse the same port so peers' stored addresses stay valid.
        let mut config = config;
        config.listen = node
            .status()
            .await
            .expect("status")
            .listen_addrs
            .into_iter()
            .map(strip_p2p)
            .collect();
        Self {
            name,
            tmp,
            dir,
            config,
            node,
            events,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    pub async fn addrs(&self) -> Vec<Multiaddr> {
        self.node.status().await.expect("status").listen_addrs
    }

    pub async fn stop(&self) {
        self.node.shutdown().await;
    }

    pub async fn restart(&mut self) {
        self.node.shutdown().await;
        self.node = meshchat_node::spawn(&self.dir, self.config.clone())
            .await
            .expect("respawn");
        self.events = self.node.subscribe();
    }

    /// Makes `self` and `other` contacts of each other (each with the
    /// other's addresses) and returns their direct chat: what two people who
    /// exchanged invites have.
    pub async fn add(&self, other: &Peer) -> ChatId {
        other
            .node
            .add_contact(self.peer_id(), Some(self.name.into()), self.addrs().await)
            .await
            .expect("add contact");
        self.add_one_way(other).await
    }

    /// Adds `other` as a contact of `self` only: to `other`, `self` is a
    /// stranger whose messages arrive as a message request.
    pub async fn add_one_way(&self, other: &Peer) -> ChatId {
        self.node
            .add_contact(
                other.peer_id(),
                Some(other.name.into()),
                other.addrs().await,
            )
            .await
            .expect("add contact");
        self.node.direct_chat(other.peer_id()).await.expect("chat")
    }

    /// Waits for `from`'s message request and accepts it: the chat (or the
    /// group) opens, its messages arrive as `Message` events.
    pub async fn accept_request_from(&mut self, from: &Peer) -> ChatId {
        let stranger = from.peer_id();
        let chat = self
            .wait_for("the message request", |e| match e {
                Event::MessageRequest { chat, from } if *from == stranger => Some(*chat),
                _ => None,
            })
            .await;
        self.node.accept_request(chat).await.expect("accept");
        chat
    }

    pub async fn history(&self, chat: ChatId) -> Vec<HistoryEntry> {
        self.node.history(chat, None).await.expect("history")
    }

    pub async fn texts(&self, chat: ChatId) -> Vec<String> {
        self.history(chat)
            .await
            .into_iter()
            .map(|e| e.message.text)
            .collect()
    }

    /// Waits for the first event `pick` maps to `Some`.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let events = &mut self.events;
        tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(t) = pick(&event) {
                            return t;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("node stopped"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: timed out waiting for {what}", self.name))
    }

    /// Forgets events received so far.
    pub fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits until `n` incoming messages have arrived (as events).
    pub async fn wait_messages(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let text = self
                .wait_for("a message", |e| match e {
                    Event::Message {
                        message,
                        outgoing: false,
                        ..
                    } => Some(message.text.clone()),
                    _ => None,
                })
                .await;
            got.push(text);
        }
        got
    }

    /// Waits until `n` delivery acknowledgements have arrived.
    pub async fn wait_delivered(&mut self, n: usize) {
        for _ in 0..n {
            self.wait_for("a delivery receipt", |e| match e {
                Event::Delivery { state, .. }
                    if *state == meshchat_node::DeliveryState::Delivered =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        }
    }
}

fn strip_p2p(addr: Multiaddr) -> Multiaddr {
    addr.into_iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// Runs `f` with a timeout, failing the test with `what`.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

//! A real meshchat node in its own temp data dir, on loopback or on the
//! in-memory transport, with its events and waits for them.

use meshchat_node::{
    crdt::ChatId, DataDir, Event, HistoryEntry, Multiaddr, Node, NodeConfig, PeerId,
};
use tempfile::TempDir;
use tokio::sync::broadcast;

use crate::{
    net::{strip_p2p, Net},
    wait::WAIT,
};

/// The public key behind a peer's PeerId.
pub fn key_of(peer: &Peer) -> meshchat_node::crdt::PublicKey {
    meshchat_node::public_key_of(&peer.peer_id()).expect("meshchat peers are ed25519")
}

/// Installs a log subscriber for the test (`RUST_LOG`, default `warn`); a
/// second call does nothing.
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
    /// Its name, also its display name.
    pub name: &'static str,
    /// The temp dir holding its data dir; removed when the peer drops.
    pub tmp: TempDir,
    /// Its data dir.
    pub dir: DataDir,
    /// Its config, listening where it listened first (so a restart keeps
    /// its addresses).
    pub config: NodeConfig,
    /// The transport it runs on.
    pub net: Net,
    /// The running node.
    pub node: Node,
    /// Its events since start (or since the last restart or drain).
    pub events: broadcast::Receiver<Event>,
}

impl Peer {
    /// Starts a node named `name` on loopback.
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, NodeConfig::loopback()).await
    }

    /// Starts a node named `name` on loopback with `config`.
    pub async fn start_with(name: &'static str, config: NodeConfig) -> Self {
        Self::start_on(name, config, Net::Loopback).await
    }

    /// Starts a relay node (mailbox service and circuit relay) named
    /// "relay" on loopback; returns it with its address.
    pub async fn start_relay() -> (Self, Multiaddr) {
        let relay = Self::start_with(
            "relay",
            NodeConfig {
                mailbox: Some(meshchat_node::mailbox::MailboxConfig::default()),
                ..NodeConfig::loopback()
            },
        )
        .await;
        let addr = relay.addrs().await.remove(0);
        (relay, addr)
    }

    /// Starts a node named `name` on the in-memory transport.
    pub async fn start_in_memory(name: &'static str) -> Self {
        let config = NodeConfig {
            listen: vec![Net::Memory.any_addr()],
            ..NodeConfig::loopback()
        };
        Self::start_on(name, config, Net::Memory).await
    }

    /// Starts a node named `name` with `config` on `net` (its listen
    /// addresses must be `net`'s).
    pub async fn start_on(name: &'static str, config: NodeConfig, net: Net) -> Self {
        init_tracing();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join(name));
        dir.init(Some(name), &config).expect("init");
        let node = meshchat_node::spawn_with(&dir, config.clone(), net.spawn_options())
            .await
            .expect("spawn");
        let events = node.subscribe();
        // Restarts reuse the same port so peers' stored addresses stay valid
        // (the node's own listeners only: a circuit reserved at a relay may
        // be up already, and is reserved again after a restart).
        let mut config = config;
        config.listen = node
            .network()
            .status()
            .await
            .expect("status")
            .listen_addrs
            .into_iter()
            .filter(|addr| {
                !addr
                    .iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
            })
            .map(strip_p2p)
            .collect();
        Self {
            name,
            tmp,
            dir,
            config,
            net,
            node,
            events,
        }
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// Where the node listens, each address ending in `/p2p/<id>`.
    pub async fn addrs(&self) -> Vec<Multiaddr> {
        self.node
            .network()
            .status()
            .await
            .expect("status")
            .listen_addrs
    }

    /// Shuts the node down.
    pub async fn stop(&self) {
        self.node.shutdown().await;
    }

    /// Shuts the node down and starts it again on the same data dir and
    /// addresses.
    pub async fn restart(&mut self) {
        self.node.shutdown().await;
        self.node =
            meshchat_node::spawn_with(&self.dir, self.config.clone(), self.net.spawn_options())
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
            .contacts()
            .add(self.peer_id(), Some(self.name.into()), self.addrs().await)
            .await
            .expect("add contact");
        self.add_one_way(other).await
    }

    /// Adds `other` as a contact of `self` only: to `other`, `self` is a
    /// stranger whose messages arrive as a message request.
    pub async fn add_one_way(&self, other: &Peer) -> ChatId {
        self.node
            .contacts()
            .add(
                other.peer_id(),
                Some(other.name.into()),
                other.addrs().await,
            )
            .await
            .expect("add contact");
        self.node
            .chats()
            .direct(other.peer_id())
            .await
            .expect("chat")
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
        self.node
            .contacts()
            .accept_request(chat)
            .await
            .expect("accept");
        chat
    }

    /// The chat's history.
    pub async fn history(&self, chat: ChatId) -> Vec<HistoryEntry> {
        self.node
            .chats()
            .history(chat, None)
            .await
            .expect("history")
    }

    /// The texts of the chat's history.
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

    /// Waits until a relay holds one of this node's messages (a custody
    /// receipt: the message is `Sent`).
    pub async fn wait_custody(&mut self) {
        self.wait_for("custody at a relay", |e| match e {
            Event::Delivery { state, .. } if *state == meshchat_node::DeliveryState::Sent => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
}

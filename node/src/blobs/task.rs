//! The media task: follows the node's events to keep the access index
//! current, downloads received files under the auto-download size, and
//! retries failed downloads when one of their sources connects.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use iroh_blobs::Hash;
use libp2p::PeerId;
use tokio::{
    sync::{broadcast, mpsc, Mutex},
    task::JoinSet,
};

use super::{
    fetch::{fetch_file, sources},
    index::{self, FileMessage},
    iroh_hash,
    service::Blobs,
};
use crate::api::{Command, Event, Node};

/// Downloads running at once; more wait their turn.
const MAX_CONCURRENT_DOWNLOADS: usize = 4;
/// How long a sender waits to reach an offline recipient's relay.
const RELAY_WAIT: Duration = Duration::from_secs(60);
/// How long a relay may take to pull and store a blob.
const RELAY_CACHE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a relay deletes cached blobs past their retention.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Aborts the media task when the actor that owns it stops.
pub(crate) struct MediaTask(tokio::task::JoinHandle<()>);

impl Drop for MediaTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A handle to the node that does not keep it alive.
#[derive(Clone)]
pub(crate) struct WeakNode {
    pub(crate) commands: mpsc::WeakSender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) peer_id: PeerId,
    pub(crate) blobs: Blobs,
}

impl WeakNode {
    fn upgrade(&self) -> Option<Node> {
        Some(Node {
            commands: self.commands.upgrade()?,
            events: self.events.clone(),
            peer_id: self.peer_id,
            task: Arc::new(Mutex::new(None)),
            blobs: self.blobs.clone(),
        })
    }
}

/// Starts the media task; it stops when the returned guard drops.
pub(crate) fn spawn_media_task(node: WeakNode) -> MediaTask {
    let events = node.events.subscribe();
    let span = tracing::info_span!("media", peer = %node.peer_id);
    MediaTask(tokio::spawn(tracing::Instrument::instrument(
        run(node, events),
        span,
    )))
}

struct State {
    node: WeakNode,
    /// Files wanted but not complete: retried when a source connects.
    waiting: HashMap<Hash, FileMessage>,
    /// Files downloading now.
    running: HashSet<Hash>,
    /// Files queued behind the running ones.
    queue: Vec<FileMessage>,
    downloads: JoinSet<(Hash, bool)>,
    /// Requests to offline recipients' relays to hold a file.
    relay_requests: JoinSet<()>,
}

async fn run(node: WeakNode, mut events: broadcast::Receiver<Event>) {
    let mut state = State {
        node,
        waiting: HashMap::new(),
        running: HashSet::new(),
        queue: Vec::new(),
        downloads: JoinSet::new(),
        relay_requests: JoinSet::new(),
    };
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known = state.blobs().subscribe_known();
    state.refresh_all().await;
    loop {
        tokio::select! {
            Ok(()) = known.changed() => state.retry_waiting(),
            _ = expiry.tick() => {
                if let Some(cache) = state.blobs().cache() {
                    cache.expire(crate::actor::now_ms()).await;
                }
            }
            Some(_) = state.relay_requests.join_next(), if !state.relay_requests.is_empty() => {}
            event = events.recv() => match event {
                Ok(event) => state.on_event(event).await,
                Err(broadcast::error::RecvError::Lagged(_)) => state.refresh_all().await,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = state.downloads.join_next(), if !state.downloads.is_empty() => {
                if let Ok((hash, ok)) = done {
                    state.running.remove(&hash);
                    if ok {
                        state.waiting.remove(&hash);
                    }
                }
                state.start_queued();
            }
        }
    }
}

impl State {
    fn blobs(&self) -> &Blobs {
        &self.node.blobs
    }

    async fn refresh_all(&mut self) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        if let Err(error) = self.blobs().restore_public().await {
            tracing::warn!(%error, "cannot restore public blobs");
        }
        match index::refresh_all(&node, self.blobs().access()).await {
            Ok(files) => {
                self.blobs().access().mark_ready();
                for file in files {
                    self.consider(file).await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot index chat files"),
        }
        if let Err(error) = self.blobs().release_unreferenced().await {
            tracing::warn!(%error, "cannot release unreferenced blobs");
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Message {
                chat,
                message,
                outgoing,
            } => {
                let Some(attachment) = message.attachment.clone() else {
                    return;
                };
                self.blobs()
                    .access()
                    .add_reference(chat, iroh_hash(&attachment.hash));
                if let Some(node) = self.node.upgrade() {
                    let access = self.blobs().access();
                    if !access.knows_chat(&chat) {
                        if let Ok(members) = index::members_of(&node, chat).await {
                            access.set_members(chat, members);
                        }
                    }
                    let _ = index::refresh_relays(&node, access).await;
                }
                let file = FileMessage {
                    chat,
                    message,
                    attachment: *attachment,
                    outgoing,
                };
                if outgoing {
                    self.cache_for_offline(&file).await;
                }
                self.consider(file).await;
            }
            Event::MessageUpdated { chat, message } if message.deleted => {
                self.refresh_chat(chat).await;
                if let Err(error) = self.blobs().release_unreferenced().await {
                    tracing::warn!(%error, "cannot release unreferenced blobs");
                }
            }
            Event::GroupChanged { chat }
            | Event::GroupJoined { chat }
            | Event::GroupLeft { chat } => {
                self.refresh_chat(chat).await;
            }
            Event::PeerConnected { .. } => {
                if let Some(node) = self.node.upgrade() {
                    let _ = index::refresh_relays(&node, self.blobs().access()).await;
                }
                self.retry_waiting();
            }
            _ => {}
        }
    }

    /// Asks the relays of every member not connected now to hold the file,
    /// so they get it while this node is offline.
    async fn cache_for_offline(&mut self, file: &FileMessage) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let connected: HashSet<PeerId> = match node.status().await {
            Ok(status) => status.connected.into_iter().collect(),
            Err(_) => return,
        };
        let me = crate::keys::public_key_of(&self.node.peer_id);
        let access = self.blobs().access().clone();
        for member in access.members(&file.chat) {
            let Some(peer) = crate::keys::peer_id_of(&member) else {
                continue;
            };
            if Some(member) == me || connected.contains(&peer) {
                continue;
            }
            for relay in access.relays_of(&member) {
                let (Some(relay_id), Some(relay_peer)) = (
                    super::endpoint::endpoint_of_key(&relay),
                    crate::keys::peer_id_of(&relay),
                ) else {
                    continue;
                };
                let blobs = self.blobs().clone();
                let events = self.node.events.clone();
                let file = file.clone();
                self.relay_requests.spawn(async move {
                    if !blobs.wait_known(relay_id, RELAY_WAIT).await {
                        tracing::info!(relay = %relay_peer, "relay not reached; the recipient fetches from the sender later");
                        return;
                    }
                    let hash = iroh_hash(&file.attachment.hash);
                    match super::relay_cache::ask_relay(
                        &blobs,
                        relay_id,
                        hash,
                        file.attachment.size,
                        member,
                        RELAY_CACHE_TIMEOUT,
                    )
                    .await
                    {
                        Ok(expires_at_ms) => {
                            let _ = events.send(Event::File {
                                hash: file.attachment.hash,
                                chat: Some(file.chat),
                                message: Some(file.message.id),
                                status: super::FileStatus::Cached {
                                    relay,
                                    recipient: member,
                                    expires_at_ms,
                                },
                            });
                        }
                        Err(error) => {
                            tracing::warn!(relay = %relay_peer, %error, "relay did not take the file");
                        }
                    }
                });
            }
        }
    }

    /// Tries every wanted file again (a source may have become reachable).
    fn retry_waiting(&mut self) {
        let retry: Vec<FileMessage> = self.waiting.values().cloned().collect();
        for file in retry {
            self.start(file);
        }
    }

    async fn refresh_chat(&mut self, chat: meshchat_crdt::ChatId) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        if let Err(error) = index::refresh_chat(&node, self.blobs().access(), chat).await {
            tracing::debug!(%chat, %error, "cannot refresh chat files");
        }
    }

    /// Queues a received file when it is small enough to fetch unasked and
    /// not complete here yet.
    async fn consider(&mut self, file: FileMessage) {
        let size = file.attachment.size;
        let config = self.blobs().config();
        if file.outgoing
            || file.message.deleted
            || size > config.auto_download_bytes
            || size > config.max_file_bytes
        {
            return;
        }
        let hash = iroh_hash(&file.attachment.hash);
        if matches!(self.blobs().complete_size(hash).await, Ok(Some(_))) {
            return;
        }
        self.waiting.insert(hash, file.clone());
        self.start(file);
    }

    fn start(&mut self, file: FileMessage) {
        let hash = iroh_hash(&file.attachment.hash);
        if self.running.contains(&hash)
            || self
                .queue
                .iter()
                .any(|f| f.attachment.hash == file.attachment.hash)
        {
            return;
        }
        if self.running.len() >= MAX_CONCURRENT_DOWNLOADS {
            self.queue.push(file);
            return;
        }
        self.running.insert(hash);
        let blobs = self.blobs().clone();
        let events = self.node.events.clone();
        let members = blobs.access().members(&file.chat);
        self.downloads.spawn(async move {
            let sources = sources(&blobs, &file.message.author, members);
            let ok = fetch_file(&blobs, &events, &file, sources).await.is_ok();
            (hash, ok)
        });
    }

    fn start_queued(&mut self) {
        while self.running.len() < MAX_CONCURRENT_DOWNLOADS && !self.queue.is_empty() {
            let file = self.queue.remove(0);
            self.start(file);
        }
    }
}

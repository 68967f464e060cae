//! The media task: follows the node's events to keep the access index
//! current, downloads received files the auto-download policy allows
//! (within its disk budget), retries failed downloads when one of their
//! sources connects, and asks an offline recipient's relays to hold a file
//! once they hold the message that carries it.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use iroh_blobs::Hash;
use libp2p::PeerId;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinSet,
};

use meshchat_crdt::{ChatId, MessageId, PublicKey};

use super::{
    auto,
    fetch::{fetch_file, sources},
    index::{self, FileMessage},
    iroh_hash,
    policy::{Budget, SkipReason},
    relay_cache,
    service::Blobs,
    FileStatus,
};
use crate::{
    command::{Caller, Command},
    events::Event,
};

/// Downloads running at once; more wait their turn.
const MAX_CONCURRENT_DOWNLOADS: usize = 4;
/// How long a sender waits to reach an offline recipient's relay.
const RELAY_WAIT: Duration = Duration::from_secs(60);
/// How long a relay may take to pull and store a blob.
const RELAY_CACHE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often blobs held for others (as a relay) are deleted past their retention.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// Relay requests remembered (so each is made once); forgotten past this.
const MAX_ASKED: usize = 4096;

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
    /// A caller to the actor, while it runs.
    fn upgrade(&self) -> Option<Caller> {
        Some(Caller {
            commands: self.commands.upgrade()?,
            peer_id: self.peer_id,
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
    /// (blob, recipient, relay) already asked.
    asked: HashSet<(Hash, PublicKey, PublicKey)>,
    /// The disk budget of auto-downloaded files.
    budget: Budget,
}

async fn run(node: WeakNode, mut events: broadcast::Receiver<Event>) {
    let mut state = State {
        node,
        waiting: HashMap::new(),
        running: HashSet::new(),
        queue: Vec::new(),
        downloads: JoinSet::new(),
        relay_requests: JoinSet::new(),
        asked: HashSet::new(),
        budget: Budget::default(),
    };
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known = state.blobs().subscribe_known();
    state.refresh_all().await;
    loop {
        tokio::select! {
            Ok(()) = known.changed() => state.retry_waiting(),
            _ = expiry.tick() => {
                relay_cache::expire(state.blobs(), crate::clock::now_ms()).await;
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
        match auto::load(self.blobs()).await {
            Ok(budget) => self.budget = budget,
            Err(error) => tracing::warn!(%error, "cannot read the auto-download budget"),
        }
        match index::refresh_all(&node, self.blobs().access()).await {
            Ok(files) => {
                self.blobs().access().mark_ready();
                for file in files {
                    self.consider(file, false).await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot index chat files"),
        }
        self.release_unreferenced().await;
    }

    async fn release_unreferenced(&mut self) {
        if let Err(error) = self.blobs().release_unreferenced().await {
            tracing::warn!(%error, "cannot release unreferenced blobs");
        }
        let blobs = self.node.blobs.clone();
        if let Err(error) = auto::release_unreferenced(&blobs, &mut self.budget).await {
            tracing::warn!(%error, "cannot release auto-download budget");
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
                let access = self.blobs().access().clone();
                access.add_reference(chat, iroh_hash(&attachment.hash), message.author);
                if !access.knows_chat(&chat) {
                    self.refresh_members(chat).await;
                }
                let file = FileMessage {
                    chat,
                    message,
                    attachment: *attachment,
                    outgoing,
                };
                self.consider(file, true).await;
            }
            Event::MessageUpdated { chat, message } if message.deleted => {
                self.refresh_chat(chat).await;
                self.release_unreferenced().await;
            }
            Event::GroupChanged { chat }
            | Event::GroupJoined { chat }
            | Event::GroupLeft { chat } => {
                self.refresh_chat(chat).await;
            }
            Event::PeerConnected { .. } => {
                self.refresh_people().await;
                self.retry_waiting();
            }
            Event::Delivery {
                chat,
                message,
                peer,
                state: crate::store::DeliveryState::Sent,
            } => self.cache_at_relays(chat, message, peer).await,
            _ => {}
        }
    }

    async fn refresh_people(&self) {
        if let Some(node) = self.node.upgrade() {
            if let Err(error) = index::refresh_people(&node, self.blobs().access()).await {
                tracing::debug!(%error, "cannot read contacts");
            }
        }
    }

    async fn refresh_members(&self, chat: ChatId) {
        if let Some(node) = self.node.upgrade() {
            if let Err(error) = index::refresh_members(&node, self.blobs().access(), chat).await {
                tracing::debug!(%chat, %error, "cannot read chat members");
            }
        }
    }

    /// A relay took custody of one of this node's messages for an offline
    /// recipient: if it carries a file, ask the relay to hold the file too
    /// (the relay checks the message is there).
    async fn cache_at_relays(&mut self, chat: ChatId, message: MessageId, peer: PeerId) {
        let (Some(node), Some(recipient)) =
            (self.node.upgrade(), crate::keys::public_key_of(&peer))
        else {
            return;
        };
        let info = node
            .call(|reply| Command::MessageInfo {
                chat,
                message,
                reply,
            })
            .await;
        let Ok(info) = info else {
            return;
        };
        let Some(attachment) = info.message.attachment.map(|a| *a) else {
            return;
        };
        if crate::keys::public_key_of(&self.node.peer_id) != Some(info.message.author) {
            return;
        }
        let hash = iroh_hash(&attachment.hash);
        let relays = info
            .recipients
            .iter()
            .filter(|r| r.peer == recipient)
            .flat_map(|r| r.held_by.iter().map(|(relay, _)| *relay));
        for relay in relays.collect::<Vec<_>>() {
            if self.asked.len() >= MAX_ASKED {
                self.asked.clear();
            }
            let Some(relay_id) = super::endpoint::endpoint_of_key(&relay) else {
                continue;
            };
            if !self.asked.insert((hash, recipient, relay)) {
                continue;
            }
            let blobs = self.blobs().clone();
            let events = self.node.events.clone();
            self.relay_requests.spawn(async move {
                let emit = |status: FileStatus| {
                    let _ = events.send(Event::File {
                        hash: attachment.hash,
                        chat: Some(chat),
                        message: Some(message),
                        status,
                    });
                };
                if !blobs.wait_known(relay_id, RELAY_WAIT).await {
                    tracing::info!(%relay, "relay not reached; the recipient fetches from the sender later");
                    return;
                }
                let asked = relay_cache::ask_relay(
                    &blobs,
                    relay_id,
                    hash,
                    attachment.size,
                    recipient,
                    RELAY_CACHE_TIMEOUT,
                )
                .await;
                match asked {
                    Ok(expires_at_ms) => emit(FileStatus::Cached {
                        relay,
                        recipient,
                        expires_at_ms,
                    }),
                    Err(error) => {
                        tracing::info!(%relay, %error, "relay did not take the file");
                        emit(FileStatus::NotCached {
                            relay,
                            recipient,
                            reason: error.to_string(),
                        });
                    }
                }
            });
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

    /// Queues a received file when the auto-download policy allows it and
    /// it is not complete here yet; `announce` reports a file that stays
    /// behind (`Skipped`) for messages arriving now.
    async fn consider(&mut self, file: FileMessage, announce: bool) {
        if file.outgoing || file.message.deleted {
            return;
        }
        let hash = iroh_hash(&file.attachment.hash);
        if matches!(self.blobs().complete_size(hash).await, Ok(Some(_))) {
            return;
        }
        match self.admit(&file).await {
            Ok(()) => {
                self.waiting.insert(hash, file.clone());
                self.start(file);
            }
            Err(reason) => {
                tracing::debug!(%hash, ?reason, "not downloading by itself");
                if announce {
                    let _ = self.node.events.send(Event::File {
                        hash: file.attachment.hash,
                        chat: Some(file.chat),
                        message: Some(file.message.id),
                        status: FileStatus::Skipped { reason },
                    });
                }
            }
        }
    }

    /// Whether `file` may download by itself: its origin, size, and the
    /// budget (charged here). A file admitted before a restart resumes.
    async fn admit(&mut self, file: &FileMessage) -> Result<(), SkipReason> {
        let hash = iroh_hash(&file.attachment.hash);
        if self.budget.contains(&hash) {
            return Ok(());
        }
        let author = file.message.author;
        let origin = self
            .blobs()
            .access()
            .origin(&file.chat, &author)
            .ok_or(SkipReason::Stranger)?;
        let policy = self.blobs().auto_download();
        let size = file.attachment.size;
        policy.allows(origin, size)?;
        if size > self.blobs().config().max_file_bytes {
            return Err(SkipReason::TooLarge);
        }
        let blobs = self.node.blobs.clone();
        auto::admit(&blobs, &mut self.budget, &policy, hash, author, size).await
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

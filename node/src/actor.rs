//! The node actor: the one task that owns the libp2p swarm and the chat
//! engine. Handles talk to it over a bounded channel; it never shares state.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use libp2p::{
    identify, mdns,
    multiaddr::Protocol,
    noise, request_response,
    swarm::{dial_opts::DialOpts, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use meshchat_crdt::{ChangeHash, ChatId, PublicKey, SignedChange};
use tokio::{
    sync::{broadcast, mpsc, oneshot, Mutex},
    time::{interval, MissedTickBehavior},
};

use crate::{
    api::{Command, Event, Node, NodeError, Sent, SpawnError, Status},
    behaviour::{Behaviour, BehaviourEvent},
    chats::Chats,
    config::NodeConfig,
    data_dir::{DataDir, DirLock},
    keys::{libp2p_keypair, peer_id_of, public_key_of},
    protocol::{Inbound, Request, Response},
    store::{Contact, DeliveryState, Store},
};

const COMMAND_CAPACITY: usize = 64;
const EVENT_CAPACITY: usize = 1024;
/// Addresses remembered per peer.
const MAX_ADDRS_PER_PEER: usize = 8;
/// Longest wait between redials of an unreachable peer.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An outbound request awaiting its response.
enum Pending {
    Push {
        peer: PublicKey,
        hashes: Vec<ChangeHash>,
    },
    Sync {
        peer: PublicKey,
        chat: ChatId,
    },
}

struct Backoff {
    next_at: tokio::time::Instant,
    delay: Duration,
}

pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    chats: Chats,
    config: NodeConfig,
    events: broadcast::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    pending: HashMap<request_response::OutboundRequestId, Pending>,
    /// Peers with a push in flight (one at a time keeps acks in order).
    pushing: HashSet<PeerId>,
    /// Addresses learned from identify, mDNS and contacts.
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    backoff: HashMap<PeerId, Backoff>,
    listen_addrs: Vec<Multiaddr>,
    _lock: DirLock,
}

/// Starts a node on `dir` (which must be initialised) with `config`.
pub async fn spawn(dir: &DataDir, config: NodeConfig) -> Result<Node, SpawnError> {
    let lock = dir.lock()?;
    let identity = dir.identity()?;
    let store = Store::open(&dir.db_path())?;
    let keypair = libp2p_keypair(&identity);
    let mdns = config.mdns;
    let idle = config.idle_timeout();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SpawnError::Network(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            Behaviour::new(key, mdns)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| SpawnError::Network(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let peer_id = *swarm.local_peer_id();
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, _) = broadcast::channel(EVENT_CAPACITY);
    let mut actor = Actor {
        swarm,
        chats: Chats::new(identity, store),
        config,
        events: event_tx.clone(),
        commands: command_rx,
        pending: HashMap::new(),
        pushing: HashSet::new(),
        addrs: HashMap::new(),
        backoff: HashMap::new(),
        listen_addrs: Vec::new(),
        _lock: lock,
    };
    // Wait until every listener is up, so callers can read real addresses.
    actor.await_listeners().await?;
    actor.start_connecting();
    let span = tracing::info_span!("node", peer = %peer_id);
    let task = tokio::spawn(tracing::Instrument::instrument(actor.run(), span));
    Ok(Node {
        commands: command_tx,
        events: event_tx,
        peer_id,
        task: Arc::new(Mutex::new(Some(task))),
    })
}

impl Actor {
    async fn await_listeners(&mut self) -> Result<(), SpawnError> {
        let wanted = self.config.listen.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut up = 0;
        while up < wanted {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| SpawnError::Network("listeners did not start within 10 s".into()))?;
            match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    up += 1;
                    self.on_new_listen_addr(address);
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(SpawnError::Network(error.to_string()));
                }
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    return Err(SpawnError::Listen {
                        addr: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                        reason: format!("{reason:?}"),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_new_listen_addr(&mut self, address: Multiaddr) {
        let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
        tracing::info!(addr = %full, "listening");
        if !self.listen_addrs.contains(&full) {
            self.listen_addrs.push(full.clone());
        }
        self.emit(Event::Listening { addr: full });
    }

    /// Bootstrap peers and contacts: dial them all once at start.
    fn start_connecting(&mut self) {
        for addr in self.config.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            if let Err(error) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, %error, "cannot dial bootstrap peer");
            }
        }
        if !self.config.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        if let Ok(contacts) = self.chats.store().contacts() {
            for contact in contacts {
                self.remember_addrs(contact.peer, contact.addrs.iter().cloned());
                self.dial_peer(contact.peer);
            }
        }
    }

    async fn run(mut self) {
        let mut redial = interval(self.config.redial_interval());
        redial.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut resync = interval(self.config.resync_interval());
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        resync.reset();
        let shutdown_reply: Option<oneshot::Sender<()>> = loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command).await,
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = redial.tick() => self.redial(),
                _ = resync.tick() => self.resync_connected(),
            }
        };
        if let Err(error) = self.chats.store().flush().await {
            tracing::error!(%error, "final flush failed");
        }
        tracing::info!("node stopped");
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn emit(&self, event: Event) {
        // No subscriber is fine: events are a view, the state is in the store.
        let _ = self.events.send(event);
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { chat, text, reply } => {
                let result = self.send(chat, &text).await;
                let _ = reply.send(result);
            }
            Command::DirectChat { peer, reply } => {
                let result = self
                    .chats
                    .ensure_direct(peer, now_ms())
                    .map_err(NodeError::from);
                let _ = reply.send(result);
            }
            Command::Resolve { query, reply } => {
                let _ = reply.send(self.resolve(&query));
            }
            Command::AddContact {
                peer,
                name,
                addrs,
                reply,
            } => {
                let _ = reply.send(self.add_contact(peer, name, addrs));
            }
            Command::Contacts { reply } => {
                let _ = reply.send(self.chats.store().contacts().map_err(Into::into));
            }
            Command::Chats { reply } => {
                let _ = reply.send(self.chats.summaries().map_err(Into::into));
            }
            Command::History { chat, limit, reply } => {
                let result = match self.chats.history(&chat, limit) {
                    Ok(Some(entries)) => Ok(entries),
                    Ok(None) => Err(NodeError::NotFound(chat.to_string())),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NodeError::Invalid(format!("cannot dial {addr}: {e}")));
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    self.remember_addrs(peer, [addr]);
                }
                let _ = reply.send(result);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    async fn send(&mut self, chat: ChatId, text: &str) -> Result<Sent, NodeError> {
        let (message, recipients) =
            self.chats
                .write(chat, text, now_ms())
                .await
                .map_err(|e| match e {
                    crate::chats::LocalWriteError::UnknownChat(c) => {
                        NodeError::NotFound(c.to_string())
                    }
                    crate::chats::LocalWriteError::Write(w) => NodeError::Write(w),
                    crate::chats::LocalWriteError::Store(s) => NodeError::Store(s),
                })?;
        self.emit(Event::Message {
            chat,
            message: message.clone(),
            outgoing: true,
        });
        for recipient in recipients {
            if let Some(peer) = peer_id_of(&recipient) {
                self.emit(Event::Delivery {
                    chat,
                    message: message.id,
                    peer,
                    state: DeliveryState::Pending,
                });
                if self.swarm.is_connected(&peer) {
                    self.push_outbox(peer);
                } else {
                    self.dial_peer(peer);
                }
            }
        }
        Ok(Sent { chat, message })
    }

    fn resolve(&mut self, query: &str) -> Result<ChatId, NodeError> {
        if let Ok(chat) = query.parse::<ChatId>() {
            return match self.chats.exists(&chat)? {
                true => Ok(chat),
                false => Err(NodeError::NotFound(query.to_owned())),
            };
        }
        let peer = match query.parse::<PeerId>() {
            Ok(peer) => peer,
            Err(_) => {
                let matches: Vec<Contact> = self
                    .chats
                    .store()
                    .contacts()?
                    .into_iter()
                    .filter(|c| c.name.as_deref() == Some(query))
                    .collect();
                match matches.as_slice() {
                    [] => return Err(NodeError::NotFound(query.to_owned())),
                    [one] => one.peer,
                    _ => return Err(NodeError::Ambiguous(query.to_owned())),
                }
            }
        };
        let key = public_key_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        Ok(self.chats.ensure_direct(key, now_ms())?)
    }

    fn add_contact(
        &mut self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
    ) -> Result<Contact, NodeError> {
        let key = public_key_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        if let Some(bad) = addrs
            .iter()
            .find(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p != peer))
        {
            return Err(NodeError::Invalid(format!("{bad} belongs to another peer")));
        }
        let store = self.chats.store();
        let mut contact = store.contact(&key)?.unwrap_or(Contact {
            peer,
            name: None,
            addrs: Vec::new(),
        });
        if name.is_some() {
            contact.name = name;
        }
        for addr in addrs {
            if !contact.addrs.contains(&addr) {
                contact.addrs.push(addr);
            }
        }
        contact.addrs.truncate(MAX_ADDRS_PER_PEER);
        store.put_contact(&key, &contact)?;
        self.chats.ensure_direct(key, now_ms())?;
        self.remember_addrs(peer, contact.addrs.iter().cloned());
        self.backoff.remove(&peer);
        self.dial_peer(peer);
        Ok(contact)
    }

    fn status(&self) -> Result<Status, NodeError> {
        Ok(Status {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            connected: self.swarm.connected_peers().copied().collect(),
            chats: self.chats.store().chats()?.len(),
            outbox: self.chats.store().outbox_len(),
        })
    }

    fn remember_addrs(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let known = self.addrs.entry(peer).or_default();
        for addr in addrs {
            let addr: Multiaddr = addr
                .into_iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect();
            if !known.contains(&addr) {
                known.insert(0, addr);
            }
        }
        known.truncate(MAX_ADDRS_PER_PEER);
    }

    fn dial_peer(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) || peer == *self.swarm.local_peer_id() {
            return;
        }
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        if addrs.is_empty() {
            // Ask the DHT; a found address is dialled by kad's routing update.
            self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(error) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %error, "dial not started");
        }
    }

    /// Periodically reach peers that have undelivered changes, and contacts.
    fn redial(&mut self) {
        let now = tokio::time::Instant::now();
        let mut peers: Vec<PeerId> = self
            .chats
            .store()
            .outbox_peers()
            .unwrap_or_default()
            .iter()
            .filter_map(peer_id_of)
            .collect();
        peers.extend(
            self.chats
                .store()
                .contacts()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.peer),
        );
        peers.sort();
        peers.dedup();
        for peer in peers {
            if self.swarm.is_connected(&peer) {
                // Connected but undelivered (a push failed or timed out): retry.
                self.push_outbox(peer);
                continue;
            }
            let backoff = self.backoff.entry(peer).or_insert(Backoff {
                next_at: now,
                delay: Duration::ZERO,
            });
            if backoff.next_at > now {
                continue;
            }
            backoff.delay = (backoff.delay * 2)
                .max(self.config.redial_interval())
                .min(MAX_BACKOFF);
            backoff.next_at = now + backoff.delay;
            self.dial_peer(peer);
        }
    }

    fn resync_connected(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.start_sync(peer);
        }
    }

    fn start_sync(&mut self, peer: PeerId) {
        let Some(key) = public_key_of(&peer) else {
            return;
        };
        let requests = match self.chats.sync_requests_for(key) {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(%error, "cannot read chats for sync");
                return;
            }
        };
        for (chat, heads) in requests {
            let id = self
                .swarm
                .behaviour_mut()
                .direct
                .send_request(&peer, Inbound::Request(Request::Sync { chat, heads }));
            self.pending.insert(id, Pending::Sync { peer: key, chat });
        }
    }

    /// Sends the next outbox batch to a connected peer, one push at a time.
    fn push_outbox(&mut self, peer: PeerId) {
        if self.pushing.contains(&peer) {
            return;
        }
        let Some(key) = public_key_of(&peer) else {
            return;
        };
        match self.chats.outbox_batch(&key) {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                self.pushing.insert(peer);
                self.send_push(peer, key, batch);
            }
            Err(error) => tracing::error!(%error, "cannot read outbox"),
        }
    }

    fn send_push(&mut self, peer: PeerId, key: PublicKey, changes: Vec<SignedChange>) {
        let hashes = changes
            .iter()
            .filter_map(|c| c.decode_stored().ok().map(|v| v.hash))
            .collect();
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, Inbound::Request(Request::Push { changes }));
        self.pending.insert(id, Pending::Push { peer: key, hashes });
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.on_new_listen_addr(address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                if endpoint.is_dialer() {
                    self.remember_addrs(peer_id, [endpoint.get_remote_address().clone()]);
                }
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, "connected");
                    self.backoff.remove(&peer_id);
                    self.emit(Event::PeerConnected { peer: peer_id });
                    self.start_sync(peer_id);
                    self.push_outbox(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.pushing.remove(&peer_id);
                self.emit(Event::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Direct(event) => self.on_direct_event(event).await,
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                self.learn_contact_addrs(peer_id, info.listen_addrs);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.remember_addrs(peer, [addr.clone()]);
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            BehaviourEvent::Kad(libp2p::kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                self.remember_addrs(peer, addresses.into_vec());
            }
            _ => {}
        }
    }

    /// Keeps a contact's stored addresses fresh with what it announces, so the
    /// side that was added by PeerId alone can reach back later.
    fn learn_contact_addrs(&mut self, peer: PeerId, announced: Vec<Multiaddr>) {
        let usable: Vec<Multiaddr> = announced
            .into_iter()
            .filter(|a| !is_unspecified(a))
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        self.remember_addrs(peer, usable.iter().cloned());
        let Some(key) = public_key_of(&peer) else {
            return;
        };
        let store = self.chats.store();
        if let Ok(Some(mut contact)) = store.contact(&key) {
            if contact.addrs != usable && !usable.is_empty() {
                contact.addrs = usable;
                if let Err(error) = store.put_contact(&key, &contact) {
                    tracing::warn!(%error, "cannot update contact addresses");
                }
            }
        }
    }

    async fn on_direct_event(&mut self, event: request_response::Event<Inbound, Response>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let response = self.on_request(peer, request).await;
                if self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!(%peer, "peer went away before our response");
                }
            }
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.pending.remove(&request_id) {
                    self.on_response(peer, pending, response).await;
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "request failed");
                if let Some(Pending::Push { .. }) = self.pending.remove(&request_id) {
                    self.pushing.remove(&peer);
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    async fn on_request(&mut self, peer: PeerId, request: Inbound) -> Response {
        let Some(from) = public_key_of(&peer) else {
            return Response::Error(crate::protocol::WireError::NotMember);
        };
        let request = match request {
            Inbound::Request(r) => r,
            Inbound::Refused(error) => {
                tracing::warn!(%peer, %error, "refused frame");
                self.emit(Event::Rejected {
                    peer,
                    reason: error.to_string(),
                });
                return Response::Error(error);
            }
        };
        match request {
            Request::Push { changes } => match self.receive(peer, from, changes).await {
                Ok((stored, rejected)) => Response::Pushed { stored, rejected },
                Err(error) => Response::Error(crate::protocol::WireError::Storage(error)),
            },
            Request::Sync { chat, heads } => match self.chats.answer_sync(from, chat, &heads) {
                Ok(response) => response,
                Err(error) => {
                    Response::Error(crate::protocol::WireError::Storage(error.to_string()))
                }
            },
        }
    }

    /// Stores and applies changes from `peer`, emitting events. Returns what
    /// to acknowledge and what was refused.
    async fn receive(
        &mut self,
        peer: PeerId,
        from: PublicKey,
        changes: Vec<SignedChange>,
    ) -> Result<(Vec<ChangeHash>, Vec<crate::protocol::RejectedChange>), String> {
        let me = self.chats.me();
        let received = self
            .chats
            .receive(from, changes, now_ms())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store received changes");
                e.to_string()
            })?;
        for rejected in &received.rejected {
            self.emit(Event::Rejected {
                peer,
                reason: rejected.reason.clone(),
            });
        }
        for (chat, message) in received.new_messages {
            let outgoing = message.author == me;
            self.emit(Event::Message {
                chat,
                message,
                outgoing,
            });
        }
        Ok((received.stored, received.rejected))
    }

    async fn on_response(&mut self, peer: PeerId, pending: Pending, response: Response) {
        match (pending, response) {
            (Pending::Push { peer: key, hashes }, Response::Pushed { stored, rejected }) => {
                self.pushing.remove(&peer);
                self.on_acknowledged(peer, key, &stored);
                if !rejected.is_empty() {
                    tracing::warn!(%peer, count = rejected.len(), first = %rejected[0].reason, "peer refused changes");
                    let refused: Vec<ChangeHash> = rejected.iter().filter_map(|r| r.hash).collect();
                    if let Err(error) = self.chats.refused(&key, &refused) {
                        tracing::error!(%error, "cannot clear refused changes");
                    }
                }
                let acked_all = hashes.iter().all(|h| stored.contains(h));
                if acked_all || !stored.is_empty() {
                    self.push_outbox(peer);
                }
            }
            (
                Pending::Sync { peer: key, chat },
                Response::Synced {
                    changes,
                    heads,
                    more,
                },
            ) => {
                if !changes.is_empty() {
                    if let Err(error) = self.receive(peer, key, changes).await {
                        tracing::warn!(%peer, %error, "sync: cannot store changes");
                        return;
                    }
                }
                match self.chats.missing_batches(&key, &chat, &heads) {
                    Ok(batches) => {
                        for batch in batches {
                            self.send_push(peer, key, batch);
                        }
                    }
                    Err(error) => tracing::error!(%error, "sync: cannot read changes"),
                }
                if more {
                    self.start_sync(peer);
                }
            }
            (Pending::Push { .. }, response) | (Pending::Sync { .. }, response) => {
                self.pushing.remove(&peer);
                tracing::warn!(%peer, ?response, "peer answered with an error");
            }
        }
    }

    fn on_acknowledged(&mut self, peer: PeerId, key: PublicKey, stored: &[ChangeHash]) {
        match self.chats.acknowledged(&key, stored) {
            Ok(delivered) => {
                for (chat, message) in delivered {
                    self.emit(Event::Delivery {
                        chat,
                        message,
                        peer,
                        state: DeliveryState::Delivered,
                    });
                }
            }
            Err(error) => tracing::error!(%error, "cannot record acknowledgement"),
        }
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

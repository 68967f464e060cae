//! The node actor: the one task that owns the libp2p swarm and the chat
//! engine. Handles talk to it over a bounded channel; it never shares state.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    identify, mdns,
    multiaddr::Protocol,
    request_response,
    swarm::{dial_opts::DialOpts, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use meshchat_crdt::{ChangeHash, ChatId, PublicKey};
use tokio::{
    sync::{broadcast, mpsc, oneshot, Mutex},
    time::{interval, MissedTickBehavior},
};

pub(crate) mod commands;
pub(crate) mod commit;
pub(crate) mod effects;
pub(crate) mod flush;
pub(crate) mod ingest;
pub(crate) mod peers;
pub(crate) mod requests;
pub(crate) mod storage;

use crate::{
    api::{Node, SpawnError},
    behaviour::{Behaviour, BehaviourEvent},
    chats::Chats,
    chats::{ChatOp, LocalWriteError, OpOutcome},
    clock::now_ms,
    command::{Command, RequestCommand},
    config::NodeConfig,
    data_dir::{DataDir, DirLock},
    direct::sync_wire::Response,
    events::{Event, Status},
    keys::{libp2p_keypair, peer_id_of, public_key_of},
    reply::NodeError,
    store::{Contact, DeliveryState, Store},
    transport::{build_swarm, SpawnOptions},
};

const COMMAND_CAPACITY: usize = 64;
const EVENT_CAPACITY: usize = 1024;
/// Addresses remembered per peer.
const MAX_ADDRS_PER_PEER: usize = 8;

/// An outbound request awaiting its response.
pub(crate) enum Pending {
    Push {
        peer: PublicKey,
        /// The hashes of an outbox push (one at a time); `None` for a push
        /// back after a sync.
        outbox_hashes: Option<Vec<ChangeHash>>,
    },
    Sync {
        peer: PublicKey,
        chat: ChatId,
    },
    Read {
        peer: PublicKey,
        sent: Vec<(ChatId, meshchat_crdt::MessageId)>,
    },
    /// A sender key asked for (gossip waits for it).
    Key {
        key_id: meshchat_crdt::KeyId,
    },
}

pub(crate) struct Actor {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) chats: Chats,
    pub(crate) config: NodeConfig,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) pending: HashMap<request_response::OutboundRequestId, Pending>,
    /// Notices sent and not yet answered (`/meshchat/notice/1`).
    pub(crate) notices: HashSet<request_response::OutboundRequestId>,
    /// Changes sent and received, by path (reported in `Status`).
    pub(crate) traffic: crate::events::Traffic,
    /// When to dial, push, sync, deposit (the sans-I/O delivery engine).
    pub(crate) engine: crate::engine::State,
    /// Addresses learned from identify, mDNS and contacts.
    pub(crate) addrs: HashMap<PeerId, Vec<Multiaddr>>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    /// Group topics this node is subscribed to.
    pub(crate) topics: HashMap<libp2p::gossipsub::TopicHash, ChatId>,
    /// Relay mode: the mailboxes this node keeps for others.
    pub(crate) mailbox: Option<crate::mailbox::Mailbox>,
    pub(crate) metrics: crate::events::RelayMetrics,
    pub(crate) mailbox_pending: crate::mailbox::pending::MailboxPendingMap,
    /// The relays whose mail is being fetched.
    pub(crate) mail_fetches: crate::mailbox::fetches::MailFetches,
    /// Changes deposited at relays for peers (not deposited again, across restarts).
    pub(crate) deposits: crate::mailbox::DepositLog,
    pub(crate) social: crate::social::state::Social,
    /// What waits for the next flush (group commit).
    pub(crate) commit: commit::GroupCommit,
    /// Delivery tokens this node holds and hands out.
    pub(crate) tokens: crate::mailbox::token_offers::Tokens,
    /// Which signed records this node's DHT store keeps.
    pub(crate) records: crate::mailbox::RecordBook,
    /// Mail upkeep ticks so far.
    pub(crate) upkeep_ticks: u64,
    /// Media: the iroh endpoint and blob store.
    pub(crate) blobs: crate::media::Blobs,
    /// The media task; aborted when the actor stops.
    pub(crate) _media: crate::media::MediaTask,
    /// How many of each peer's refusals are logged and emitted.
    pub(crate) rejections: crate::rejections::RejectionBudget,
    pub(crate) _lock: DirLock,
    /// Peers exempt from the shared connection limits (contacts, relays).
    pub(crate) limit_bypass: HashSet<PeerId>,
    /// Recovery from storage faults (disk full, I/O errors).
    pub(crate) storage: storage::StorageWatch,
    /// Sender keys of group gossip (this node's and fellow members').
    pub(crate) sender_keys: crate::groups::sender_keys::SenderKeys,
    /// Gossip waiting for sender keys asked for.
    pub(crate) key_waits: crate::groups::key_waits::KeyWaits,
    /// Gossiped frames whose verdict waits for their changes' dependencies.
    pub(crate) held_verdicts: crate::groups::held_verdicts::HeldVerdicts,
    /// When each group's topic last brought news (republish only into quiet ones).
    pub(crate) topic_news: crate::groups::topic_news::TopicNews,
    /// Group changes pushed or synced here whose gossip copy has not come
    /// (that copy is forwarded).
    pub(crate) unechoed: crate::groups::unechoed::Unechoed,
    /// Sealed deposits on their way to relays over throwaway identities.
    pub(crate) couriers: crate::mailbox::couriers::Couriers,
}

/// Starts a node on `dir` (which must be initialised) with `config`.
pub async fn spawn(dir: &DataDir, config: NodeConfig) -> Result<Node, SpawnError> {
    spawn_with(dir, config, SpawnOptions::default()).await
}

/// Starts a node like [`spawn`], with options a daemon never needs (a custom
/// transport, a small database cache): see [`SpawnOptions`].
pub async fn spawn_with(
    dir: &DataDir,
    config: NodeConfig,
    options: SpawnOptions,
) -> Result<Node, SpawnError> {
    dir.check_private()?;
    let lock = dir.lock()?;
    let identity = dir.identity()?;
    let device_keys = dir.device_keys()?;
    let store = Store::open_tuned(
        &dir.db_path(),
        crate::store::Tuning {
            cache_bytes: options.store_cache_bytes,
            no_background_flush: options.no_background_flush,
        },
    )?;
    let blobs = crate::media::start(
        &dir.root().join("blobs"),
        &identity,
        config.blobs.clone(),
        &config.relay_peers(),
        config
            .mailbox
            .clone()
            .map(|limits| (limits, store.handle())),
    )
    .await?;
    let agent_version = crate::media::agent_version(blobs.port());
    let keypair = libp2p_keypair(&identity);
    // A courier builds a TCP + QUIC swarm of its own: not on a node whose
    // caller supplied the transport (the simulator's in-memory network).
    let couriers = crate::mailbox::couriers::Couriers::new(options.transport.is_none());
    let mut swarm = build_swarm(
        keypair,
        options.transport,
        config.mdns,
        config.mailbox.is_some(),
        config.idle_timeout(),
        agent_version,
        config.limits.resolve(config.mailbox.is_some()),
    )?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let peer_id = *swarm.local_peer_id();
    let mailbox = match &config.mailbox {
        Some(limits) => {
            swarm
                .behaviour_mut()
                .kad
                .set_mode(Some(libp2p::kad::Mode::Server));
            Some(crate::mailbox::Mailbox::open(
                identity.clone(),
                limits.clone(),
                store.handle(),
            )?)
        }
        None => None,
    };
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, _) = broadcast::channel(EVENT_CAPACITY);
    let social = crate::social::state::Social::new(&config, &store);
    let deposits = crate::mailbox::DepositLog::open(store.handle())?;
    let tokens = crate::mailbox::token_offers::Tokens::open(store.handle())?;
    let sender_keys = crate::groups::sender_keys::SenderKeys::open(store.handle());
    let records = crate::mailbox::RecordBook::new(&config.mailbox.clone().unwrap_or_default());
    let media = crate::media::spawn_media_task(crate::media::WeakNode {
        commands: command_tx.downgrade(),
        events: event_tx.clone(),
        peer_id,
        blobs: blobs.clone(),
    });
    let engine = crate::engine::State::new(
        config.relay_peers(),
        crate::engine::Periods {
            redial: config.redial_interval(),
            expiry: Duration::from_secs(60),
            resync: config.resync_interval(),
            presence: config.presence_interval(),
        },
        std::time::Instant::now(),
    );
    let mut actor = Actor {
        swarm,
        chats: Chats::new(identity, store)?.with_device_keys(device_keys),
        config,
        events: event_tx.clone(),
        commands: command_rx,
        pending: HashMap::new(),
        notices: HashSet::new(),
        traffic: Default::default(),
        engine,
        addrs: HashMap::new(),
        listen_addrs: Vec::new(),
        topics: HashMap::new(),
        mailbox,
        metrics: crate::events::RelayMetrics::default(),
        mailbox_pending: HashMap::new(),
        mail_fetches: Default::default(),
        deposits,
        social,
        commit: Default::default(),
        tokens,
        records,
        upkeep_ticks: 0,
        blobs: blobs.clone(),
        _media: media,
        rejections: Default::default(),
        _lock: lock,
        limit_bypass: HashSet::new(),
        storage: storage::StorageWatch::new(if options.no_storage_reserve {
            crate::disk::Reserve::none()
        } else {
            crate::disk::Reserve::new(dir.reserve_path())
        }),
        sender_keys,
        key_waits: Default::default(),
        held_verdicts: Default::default(),
        topic_news: Default::default(),
        unechoed: Default::default(),
        couriers,
    };
    actor.sync_connection_gates();
    actor.ensure_own_profile(dir.profile().name)?;
    // Wait until every listener is up, so callers can read real addresses.
    actor.await_listeners().await?;
    actor.join_my_topics();
    actor.start_connecting();
    let span = tracing::info_span!("node", peer = %peer_id);
    let task = tokio::spawn(tracing::Instrument::instrument(actor.run(), span));
    Ok(Node {
        commands: command_tx,
        events: event_tx,
        peer_id,
        task: Arc::new(Mutex::new(Some(task))),
        blobs,
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

    /// Listens through `relay` (circuit relay v2), so peers that cannot dial
    /// this node directly reach it via `<relay addr>/p2p-circuit/p2p/<me>`.
    /// Returns whether the reservation was asked for.
    fn reserve_circuit(&mut self, relay: PeerId) -> bool {
        let Some(addr) = self
            .config
            .relays
            .iter()
            .find(|a| crate::config::peer_of(a) == Some(relay))
            .cloned()
        else {
            return false;
        };
        match self.swarm.listen_on(addr.with(Protocol::P2pCircuit)) {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%relay, %error, "cannot reserve a circuit at the relay");
                false
            }
        }
    }

    fn on_new_listen_addr(&mut self, address: Multiaddr) {
        if self.mailbox.is_some() && !address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            // A relay serves circuits only on addresses it confirms as its
            // own; a relay's listen addresses are meant to be reachable.
            self.swarm.add_external_address(address.clone());
        }
        let me = *self.swarm.local_peer_id();
        let full = if matches!(address.iter().last(), Some(Protocol::P2p(p)) if p == me) {
            address
        } else {
            address.with(Protocol::P2p(me))
        };
        tracing::info!(addr = %full, "listening");
        if !self.listen_addrs.contains(&full) {
            self.listen_addrs.push(full.clone());
            // A new address of our own: the network may have changed.
            self.drive(crate::engine::Input::NetworkChanged);
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
        for relay in self.config.relays.clone() {
            if let Some(peer) = crate::config::peer_of(&relay) {
                // Relays serve the DHT: this node publishes its profile there.
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, relay.clone());
                self.remember_addrs(peer, [relay]);
                self.drive(crate::engine::Input::Reach(peer));
            }
        }
        if let Ok(contacts) = self.chats.store().contacts() {
            for contact in contacts {
                self.remember_addrs(contact.peer, contact.addrs.iter().cloned());
                self.drive(crate::engine::Input::Reach(contact.peer));
            }
        }
    }

    async fn run(mut self) {
        let mut storage_probe = interval(storage::PROBE_INTERVAL);
        storage_probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown_reply: Option<oneshot::Sender<()>> = loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command).await,
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                Some(flushed) = self.commit.done_rx.recv() => self.on_flushed(flushed),
                Some(returned) = self.couriers.next() => self.on_courier_returned(returned).await,
                _ = tokio::time::sleep_until(self.engine.next_wake().into()) => {
                    self.drive(crate::engine::Input::Tick);
                }
                _ = storage_probe.tick() => self.storage_tick().await,
                _ = held_verdicts_expire(self.held_verdicts.next_expiry()) => {
                    self.expire_held_verdicts();
                }
            }
            self.start_flush();
            self.notice_storage_fault();
        };
        self.drain_goodbyes().await;
        let flushed = self.chats.store().flush().await;
        if let Err(error) = &flushed {
            tracing::error!(%error, "final flush failed");
        }
        self.settle_at_stop(flushed);
        self.blobs.shutdown().await;
        tracing::info!("node stopped");
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Shutting down: say goodbye to the presence audience and wait (briefly,
    /// bounded) for the goodbyes to be answered, so contacts see "offline" at once.
    async fn drain_goodbyes(&mut self) {
        if self.say_goodbye() == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while !self.notices.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(SwarmEvent::Behaviour(BehaviourEvent::Notice(
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, .. },
                        ..
                    },
                )))
                | Ok(SwarmEvent::Behaviour(BehaviourEvent::Notice(
                    request_response::Event::OutboundFailure { request_id, .. },
                ))) => {
                    self.notices.remove(&request_id);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        // No subscriber is fine: events are a view, the state is in the store.
        let _ = self.events.send(event);
    }

    /// Reports something `peer` sent that this node refused, in the log and
    /// as an event, within the peer's budget (beyond it, only counted).
    pub(crate) fn refused(&mut self, peer: PeerId, reason: String) {
        let (report, summary) = self.rejections.note(peer, now_ms());
        for (peer, count) in summary {
            tracing::warn!(%peer, count, "more refusals from this peer were not logged");
            self.emit(Event::RejectionsSuppressed { peer, count });
        }
        if report == crate::rejections::Report::Yes {
            tracing::warn!(%peer, %reason, "refused");
            self.emit(Event::Rejected { peer, reason });
        }
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
                if self.is_blocked(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if num_established.get() == 1 {
                    self.drive(crate::engine::Input::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                endpoint,
                cause,
                ..
            } => {
                tracing::debug!(
                    peer = %peer_id,
                    dialer = endpoint.is_dialer(),
                    num_established,
                    ?cause,
                    "connection closed"
                );
                if num_established == 0 {
                    self.drive(crate::engine::Input::Disconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    self.drive(crate::engine::Input::DialFailed {
                        peer,
                        started: true,
                    });
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Sync(event) => self.on_sync_event(event).await,
            BehaviourEvent::Notice(event) => self.on_notice_event(event),
            BehaviourEvent::Gossipsub(event) => self.on_gossip_event(event).await,
            BehaviourEvent::Mailbox(event) => self.on_mailbox_event(event).await,
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // Only DHT servers (the relays) belong in the routing table:
                // a client put there is handed out in answers to lookups,
                // and everyone who looks something up dials it (a full mesh
                // of short-lived connections in the simulator).
                if info.protocols.contains(&crate::behaviour::KAD_PROTOCOL) {
                    for addr in &info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
                self.blobs
                    .learn_peer(&peer_id, &info.agent_version, &info.listen_addrs);
                self.learn_contact_addrs(peer_id, info.listen_addrs);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.remember_addrs(peer, [addr.clone()]);
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::RelayServer(event) => self.on_relay_server_event(event),
            _ => {}
        }
    }
}

/// Waits until the oldest held gossip verdict expires; forever if none is
/// held.
async fn held_verdicts_expire(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

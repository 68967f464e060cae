//! A bare member of a group's gossip: gossipsub plus the direct protocol's
//! key requests, on its own task. It seals what it publishes under a sender
//! key of its own and hands that key to whoever asks (as a node does), asks
//! nodes for theirs, and keeps every gossip message it receives: an
//! attacker that is (or was) a member, or a raw listener on a topic. Made
//! by [`GossipMember::connect_unsubscribed`], it joins the topic when told
//! and answers syncs as a member holding nothing, keeping what it is
//! pushed: a newcomer whose timing a test controls.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, MessageAuthenticity},
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    PeerId,
};
use meshchat_node::{
    crdt::{
        e2e::{SealedChange, SenderKey},
        ChatId, Identity, KeyId, SignedChange,
    },
    protocol::{
        encode_frame, group_topic, GossipMessage, GossipPayload, Inbound, Request, Response,
        SyncCodec, WireError, SYNC_PROTOCOL,
    },
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    net::{bare_swarm, keypair_of, Net},
    peer::Peer,
    wait::WAIT,
};

/// A content-addressed gossipsub message id, as a node's (which hashes
/// with SHA-256; SipHash here needs no dependency). Anonymous messages carry
/// no source or sequence number, so the default id would be one for all.
pub fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.data.hash(&mut h);
    gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
}

/// Gossip messages kept until the test reads them.
const MAX_KEPT_MESSAGES: usize = 1024;

/// gossipsub and `/meshchat/sync/1`, both ways.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct MemberBehaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

enum Command {
    /// A frame, and the key to hand out under an id (its own, unless lying).
    Publish(
        ChatId,
        Vec<u8>,
        Option<(KeyId, SenderKey)>,
        oneshot::Sender<()>,
    ),
    AskKey(PeerId, ChatId, KeyId, oneshot::Sender<Option<Response>>),
    Subscribe(ChatId, oneshot::Sender<()>),
}

/// When a member joins the topic: at once, or when told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joins {
    Now,
    Later,
}

/// A bare gossip member, running on its own task until dropped.
pub struct GossipMember {
    /// Its identity (the libp2p key and the signing key, as a node's).
    pub identity: Identity,
    key: Option<SenderKey>,
    commands: mpsc::Sender<Command>,
    messages: mpsc::Receiver<gossipsub::Message>,
    /// What nodes pushed to it (only when it answers syncs).
    pushes: mpsc::Receiver<Vec<SignedChange>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GossipMember {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GossipMember {
    /// Subscribes to `chat`'s topic as `identity` and connects to `target`;
    /// returns once `target`'s subscription to the topic is seen.
    pub async fn join(identity: Identity, chat: ChatId, target: &Peer) -> Self {
        Self::start(identity, chat, target, Joins::Now).await
    }

    /// Connects to `target` as `identity` without joining `chat`'s topic
    /// ([`GossipMember::subscribe`] joins it later); returns once
    /// `target`'s subscription is seen. It answers syncs as a member that
    /// holds nothing and keeps what is pushed to it
    /// ([`GossipMember::next_push`]).
    pub async fn connect_unsubscribed(identity: Identity, chat: ChatId, target: &Peer) -> Self {
        Self::start(identity, chat, target, Joins::Later).await
    }

    async fn start(identity: Identity, chat: ChatId, target: &Peer, joins: Joins) -> Self {
        let mut swarm = bare_swarm(keypair_of(&identity), Net::Loopback, WAIT * 3, |_| {
            MemberBehaviour {
                gossipsub: gossipsub::Behaviour::new(
                    // As the nodes publish: without gossipsub's own signature.
                    MessageAuthenticity::Anonymous,
                    gossipsub::ConfigBuilder::default()
                        .heartbeat_interval(Duration::from_millis(200))
                        .validation_mode(gossipsub::ValidationMode::Anonymous)
                        // Content-addressed ids, as the nodes'.
                        .message_id_fn(content_id)
                        .build()
                        .expect("gossipsub config"),
                )
                .expect("gossipsub"),
                sync: request_response::Behaviour::with_codec(
                    SyncCodec,
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(WAIT),
                ),
            }
        });
        if joins == Joins::Now {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&group_topic(&chat))
                .expect("subscribe");
        }
        swarm
            .dial(target.addrs().await.remove(0))
            .expect("dial the node");
        let target_id = target.peer_id();
        tokio::time::timeout(WAIT, async {
            loop {
                if let SwarmEvent::Behaviour(MemberBehaviourEvent::Gossipsub(
                    gossipsub::Event::Subscribed { peer_id, .. },
                )) = swarm.select_next_some().await
                {
                    if peer_id == target_id {
                        return;
                    }
                }
            }
        })
        .await
        .expect("the node never showed its subscription to the topic");
        let (commands, rx) = mpsc::channel(16);
        let (messages_tx, messages) = mpsc::channel(MAX_KEPT_MESSAGES);
        let (pushes_tx, pushes) = mpsc::channel(MAX_KEPT_MESSAGES);
        let answers_syncs = (joins == Joins::Later).then_some(pushes_tx);
        let task = tokio::spawn(run(swarm, rx, messages_tx, answers_syncs));
        Self {
            identity,
            key: None,
            commands,
            messages,
            pushes,
            task,
        }
    }

    /// Joins `chat`'s topic now.
    pub async fn subscribe(&self, chat: ChatId) {
        let (done, subscribed) = oneshot::channel();
        let _ = self.commands.send(Command::Subscribe(chat, done)).await;
        subscribed.await.expect("the member's task is running");
    }

    /// The changes of the next push a node sent it, if one comes within
    /// `limit` (only for a member made by
    /// [`GossipMember::connect_unsubscribed`]).
    pub async fn next_push(&mut self, limit: Duration) -> Option<Vec<SignedChange>> {
        tokio::time::timeout(limit, self.pushes.recv())
            .await
            .ok()
            .flatten()
    }

    /// This member's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        keypair_of(&self.identity).public().to_peer_id()
    }

    /// Publishes `changes` on `chat`'s topic sealed under this member's
    /// key, which it hands to whoever asks.
    pub async fn publish(&mut self, chat: ChatId, changes: Vec<SignedChange>) {
        let key = self
            .key
            .get_or_insert_with(|| SenderKey::generate(chat, self.identity.public(), 0))
            .clone();
        let payload = encode_frame(&GossipPayload { changes });
        let sealed = SealedChange::seal(&key, &payload).expect("seal");
        self.publish_frame(
            chat,
            encode_frame(&GossipMessage::Sealed(sealed)),
            Some(key),
        )
        .await;
    }

    /// Publishes any bytes on `chat`'s topic; `key` is handed out on request.
    pub async fn publish_frame(&mut self, chat: ChatId, frame: Vec<u8>, key: Option<SenderKey>) {
        let key = key.map(|key| (key.key_id(), key));
        self.send_publish(chat, frame, key).await;
    }

    /// Publishes `changes` sealed under a fresh key, and hands out another
    /// key under that key's id when asked.
    pub async fn publish_with_a_false_key(&mut self, chat: ChatId, changes: Vec<SignedChange>) {
        let key = SenderKey::generate(chat, self.identity.public(), 7);
        let payload = encode_frame(&GossipPayload { changes });
        let sealed = SealedChange::seal(&key, &payload).expect("seal");
        let other = SenderKey::generate(chat, self.identity.public(), 7);
        let frame = encode_frame(&GossipMessage::Sealed(sealed));
        self.send_publish(chat, frame, Some((key.key_id(), other)))
            .await;
    }

    async fn send_publish(
        &mut self,
        chat: ChatId,
        frame: Vec<u8>,
        key: Option<(KeyId, SenderKey)>,
    ) {
        let (done, published) = oneshot::channel();
        let _ = self
            .commands
            .send(Command::Publish(chat, frame, key, done))
            .await;
        published.await.expect("the member's task is running");
    }

    /// Asks `peer` for `chat`'s sender key `key_id`; its answer, or `None`
    /// if the request failed.
    pub async fn ask_key(&self, peer: PeerId, chat: ChatId, key_id: KeyId) -> Option<Response> {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .commands
            .send(Command::AskKey(peer, chat, key_id, reply))
            .await;
        answer.await.expect("the member's task is running")
    }

    /// The next gossip message received, if one comes within `limit`.
    pub async fn next_message(&mut self, limit: Duration) -> Option<gossipsub::Message> {
        tokio::time::timeout(limit, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// Drops what arrives until the topic has been quiet for `quiet` (frames
    /// published earlier may still be on their way).
    pub async fn drain(&mut self, quiet: Duration) {
        while self.next_message(quiet).await.is_some() {}
    }
}

async fn run(
    mut swarm: libp2p::Swarm<MemberBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    messages: mpsc::Sender<gossipsub::Message>,
    answers_syncs: Option<mpsc::Sender<Vec<SignedChange>>>,
) {
    let mut keys: HashMap<KeyId, SenderKey> = HashMap::new();
    let mut asked = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Publish(chat, frame, key, done)) => {
                    if let Some((key_id, key)) = key {
                        keys.insert(key_id, key);
                    }
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(group_topic(&chat), frame)
                        .expect("publish");
                    let _ = done.send(());
                }
                Some(Command::Subscribe(chat, done)) => {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .subscribe(&group_topic(&chat))
                        .expect("subscribe");
                    let _ = done.send(());
                }
                Some(Command::AskKey(peer, chat, key_id, reply)) => {
                    let id = swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&peer, Inbound::Request(Request::Key { chat, key_id }));
                    asked.insert(id, reply);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(MemberBehaviourEvent::Gossipsub(
                    gossipsub::Event::Message { message, .. },
                )) => {
                    // Past the bound, later messages are dropped.
                    let _ = messages.try_send(message);
                }
                SwarmEvent::Behaviour(MemberBehaviourEvent::Sync(event)) => {
                    use request_response::{Event as E, Message as M};
                    match event {
                        E::Message { message: M::Request { request, channel, .. }, .. } => {
                            let answer = match request {
                                Inbound::Request(Request::Key { key_id, .. }) => {
                                    match keys.get(&key_id) {
                                        Some(key) => Response::Key {
                                            author: key.author(),
                                            epoch: key.epoch(),
                                            key: *key.key_bytes(),
                                            segment: 0,
                                        },
                                        None => Response::Error(WireError::UnknownKey),
                                    }
                                }
                                Inbound::Request(Request::Sync { .. }) if answers_syncs.is_some() => {
                                    Response::Synced {
                                        changes: Vec::new(),
                                        heads: Vec::new(),
                                        more: false,
                                    }
                                }
                                Inbound::Request(Request::Push { changes }) => match &answers_syncs {
                                    Some(pushes) => {
                                        let _ = pushes.try_send(changes);
                                        Response::Pushed {
                                            stored: Vec::new(),
                                            rejected: Vec::new(),
                                        }
                                    }
                                    None => Response::Error(WireError::NotMember),
                                },
                                _ => Response::Error(WireError::NotMember),
                            };
                            let _ = swarm.behaviour_mut().sync.send_response(channel, answer);
                        }
                        E::Message { message: M::Response { request_id, response }, .. } => {
                            if let Some(reply) = asked.remove(&request_id) {
                                let _ = reply.send(Some(response));
                            }
                        }
                        E::OutboundFailure { request_id, .. } => {
                            if let Some(reply) = asked.remove(&request_id) {
                                let _ = reply.send(None);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
        }
    }
}

//! What one remote party can take from a node: connections (one peer opening
//! a thousand, strangers filling every inbound slot, any connection while
//! memory is short) and requests in flight on one connection. The node must
//! refuse the excess and keep serving honest peers.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{io, time::Duration};

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    gossipsub,
    request_response::{self, ProtocolSupport},
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, dummy, NetworkBehaviour, SwarmEvent},
    Multiaddr, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::ChatId,
    limits::LimitsConfig,
    protocol::{group_topic, SYNC_PROTOCOL},
    scoring::GRAYLIST_THRESHOLD,
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{Net, Peer, WAIT};
use tokio::sync::mpsc;

/// A bare swarm with a fresh identity over TCP, keeping idle connections
/// open for the whole test (so only the node can close them).
fn bare_swarm<B: NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    meshchat_tests::net::bare_swarm(key, Net::Loopback, WAIT * 10, behaviour)
}

/// Connection outcomes seen by a dialling swarm.
#[derive(Debug, Default)]
struct Outcomes {
    established: usize,
    closed: usize,
    failed: usize,
}

impl Outcomes {
    fn resolved(&self) -> usize {
        self.established + self.failed
    }

    fn open(&self) -> usize {
        self.established - self.closed
    }

    fn note<E>(&mut self, event: &SwarmEvent<E>) {
        match event {
            SwarmEvent::ConnectionEstablished { .. } => self.established += 1,
            SwarmEvent::ConnectionClosed { .. } => self.closed += 1,
            SwarmEvent::OutgoingConnectionError { .. } => self.failed += 1,
            _ => {}
        }
    }
}

/// Drives `swarm` until `done` holds for its connection outcomes.
async fn drive_until<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    outcomes: &mut Outcomes,
    what: &str,
    done: impl Fn(&Outcomes) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while !done(outcomes) {
            let event = swarm.select_next_some().await;
            outcomes.note(&event);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}; outcomes so far: {outcomes:?}"));
}

fn dial_again(swarm: &mut Swarm<impl NetworkBehaviour>, node: &Peer, addr: &Multiaddr) {
    swarm
        .dial(
            DialOpts::peer_id(node.peer_id())
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build(),
        )
        .unwrap();
}

/// `a` (a stranger to `b`) sends `b` a direct message and `b` receives it.
async fn still_served(a: &Peer, b: &mut Peer, text: &str) {
    let chat = a.add(b).await;
    a.node.chats().send(chat, text).await.unwrap();
    b.wait_for("the honest peer's message", |e| match e {
        Event::Message { message, .. } if message.text == text => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_a_thousand_connections_gets_its_share_and_honest_peers_are_served() {
    let mut node = Peer::start("node").await;
    let honest = Peer::start("honest").await;
    let addr = node.addrs().await.remove(0);
    let per_peer = NodeConfig::loopback().limits.resolve(false).max_per_peer as usize;

    let mut attacker = bare_swarm(|_| dummy::Behaviour);
    for _ in 0..1000 {
        dial_again(&mut attacker, &node, &addr);
    }
    let mut outcomes = Outcomes::default();
    // Every attempt resolves, and the node keeps at most its per-peer share
    // open: the rest are refused in the handshake or closed once established.
    drive_until(
        &mut attacker,
        &mut outcomes,
        "the node to refuse the excess",
        |o| o.resolved() == 1000 && o.open() <= per_peer,
    )
    .await;
    assert!(outcomes.open() >= 1, "{outcomes:?}");

    // With the attacker still connected, an honest stranger gets through.
    let attacker_task = tokio::spawn(async move {
        loop {
            attacker.select_next_some().await;
        }
    });
    still_served(&honest, &mut node, "still here").await;
    attacker_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_filling_the_inbound_slots_do_not_lock_out_a_contact() {
    let incoming = 4;
    let mut config = NodeConfig::loopback();
    config.limits = LimitsConfig {
        max_incoming: Some(incoming),
        ..Default::default()
    };
    let mut node = Peer::start_with("node", config).await;
    let carol = Peer::start("carol").await;
    // The node knows Carol by PeerId only, so it cannot dial her: she must
    // get in through the node's inbound slots.
    node.node
        .contacts()
        .add(carol.peer_id(), Some("carol".into()), Vec::new())
        .await
        .unwrap();
    let addr = node.addrs().await.remove(0);

    let strangers = 6;
    let (tx, mut refusals) = tokio::sync::mpsc::channel(strangers);
    let mut tasks = Vec::new();
    for _ in 0..strangers {
        let mut swarm = bare_swarm(|_| dummy::Behaviour);
        dial_again(&mut swarm, &node, &addr);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            // A refusal shows as a failed handshake or as an established
            // connection the node closes at once.
            loop {
                if let SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::OutgoingConnectionError { .. } = swarm.select_next_some().await
                {
                    let _ = tx.send(()).await;
                }
            }
        }));
    }
    let excess = strangers - incoming as usize;
    for _ in 0..excess {
        tokio::time::timeout(WAIT, refusals.recv())
            .await
            .expect("the node to refuse the strangers over its inbound limit")
            .unwrap();
    }

    // Every inbound slot is taken by a stranger; the contact still gets in.
    let chat = carol.add(&node).await;
    carol.node.chats().send(chat, "it's carol").await.unwrap();
    node.wait_for("the contact's message", |e| match e {
        Event::Message { message, .. } if message.text == "it's carol" => Some(()),
        _ => None,
    })
    .await;
    // The strangers it accepted are still connected.
    assert!(refusals.try_recv().is_err(), "more strangers refused");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_connections_while_memory_is_short() {
    let mut config = NodeConfig::loopback();
    // Any process uses more than a millionth of a byte per byte of RAM.
    config.limits = LimitsConfig {
        max_memory_fraction: Some(1e-12),
        ..Default::default()
    };
    let node = Peer::start_with("node", config).await;
    let addr = node.addrs().await.remove(0);
    let mut stranger = bare_swarm(|_| dummy::Behaviour);
    dial_again(&mut stranger, &node, &addr);
    let mut outcomes = Outcomes::default();
    drive_until(
        &mut stranger,
        &mut outcomes,
        "the node to refuse the connection",
        |o| o.resolved() == 1 && o.open() == 0,
    )
    .await;
}

/// Sends `size` bytes on the direct protocol and then never finishes the
/// request, so the node holds the stream (and what it read) until its
/// request timeout.
#[derive(Debug, Clone, Copy)]
struct StallingCodec;

impl request_response::Codec for StallingCodec {
    type Protocol = StreamProtocol;
    type Request = usize;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<usize>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the attacker serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("never reached"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        size: usize,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&vec![0x01; size]).await?;
        io.flush().await?;
        // Keep the stream open: the node waits for the end of the frame.
        futures::future::pending::<()>().await;
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the attacker serves nothing"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_requests_on_one_connection_is_bounded() {
    let mut node = Peer::start("node").await;
    let honest = Peer::start("honest").await;
    let addr = node.addrs().await.remove(0);
    let streams = NodeConfig::loopback()
        .limits
        .resolve(false)
        .max_streams_per_connection;

    let flood = 64;
    assert!(
        streams < flood,
        "the per-connection bound must be below a flood"
    );
    let mut attacker = bare_swarm(|_| {
        request_response::Behaviour::with_codec(
            StallingCodec,
            [(SYNC_PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default()
                .with_request_timeout(WAIT * 10)
                .with_max_concurrent_streams(flood * 2),
        )
    });
    attacker.dial(addr).unwrap();
    for _ in 0..flood {
        attacker
            .behaviour_mut()
            .send_request(&node.peer_id(), 1024 * 1024);
    }
    // The node holds at most its per-connection bound of requests; every
    // stream beyond it is dropped at once (the attacker's write fails).
    let mut refused = 0;
    tokio::time::timeout(WAIT, async {
        while refused < flood - streams {
            if let SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) =
                attacker.select_next_some().await
            {
                refused += 1;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {refused} of {flood} stalled requests were refused"));

    // The held streams stay stuck; an honest peer is served meanwhile.
    let attacker_task = tokio::spawn(async move {
        loop {
            attacker.select_next_some().await;
        }
    });
    still_served(&honest, &mut node, "served despite the flood").await;
    attacker_task.abort();
}

/// A bare gossipsub peer on a group's topic, run by its own task: publishes
/// what it is given, reports the frames it receives.
struct GossipAttacker {
    id: PeerId,
    publish: mpsc::Sender<Vec<u8>>,
    received: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl GossipAttacker {
    /// Connects to `target` and returns once `target` has seen it subscribe.
    async fn join(chat: ChatId, target: &Peer) -> Self {
        let mut swarm = bare_swarm(|_| {
            gossipsub::Behaviour::<gossipsub::IdentityTransform>::new(
                // As the nodes publish: without gossipsub's own signature.
                gossipsub::MessageAuthenticity::Anonymous,
                gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Anonymous)
                    // Content-addressed ids, as the nodes.
                    .message_id_fn(meshchat_tests::gossip::content_id)
                    .build()
                    .unwrap(),
            )
            .unwrap()
        });
        let id = *swarm.local_peer_id();
        swarm
            .behaviour_mut()
            .subscribe(&group_topic(&chat))
            .unwrap();
        swarm.dial(target.addrs().await.remove(0)).unwrap();
        let target_id = target.peer_id();
        tokio::time::timeout(WAIT, async {
            loop {
                if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) =
                    swarm.select_next_some().await
                {
                    if peer_id == target_id {
                        return;
                    }
                }
            }
        })
        .await
        .expect("the node never saw the attacker subscribe");
        let (publish, mut to_publish) = mpsc::channel::<Vec<u8>>(16);
        let (report, received) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(frame) = to_publish.recv() => {
                        swarm.behaviour_mut().publish(group_topic(&chat), frame).unwrap();
                    }
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                            let _ = report.try_send(message.data);
                        }
                    }
                }
            }
        });
        Self {
            id,
            publish,
            received,
            task,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_peer_whose_frames_are_rejected_is_graylisted_and_cut_off() {
    let mut ann = Peer::start("ann").await;
    let mut ben = Peer::start("ben").await;
    ann.add(&ben).await;
    let chat = ann
        .node
        .groups()
        .create("guarded", vec![ben.peer_id()])
        .await
        .unwrap();
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    let mut attacker = GossipAttacker::join(chat, &ann).await;

    // Subscribed to the topic, the attacker is sent the group's frames (once
    // ann has heard of its subscription: a message sent before that misses it).
    let started = tokio::time::Instant::now();
    for n in 0.. {
        ann.node
            .chats()
            .send(chat, format!("before {n}"))
            .await
            .unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(500), attacker.received.recv());
        if let Ok(Some(_)) = wait.await {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "a subscriber is never sent the group's frames"
        );
    }

    // Three frames the node rejects.
    for n in 0..3u8 {
        attacker.publish.send(vec![1, 0xff, 0x13, n]).await.unwrap();
        ann.wait_for("the rejection", |e| match e {
            Event::Rejected { peer, .. } if *peer == attacker.id => Some(()),
            _ => None,
        })
        .await;
    }
    let score = ann.node.network().gossip_score(attacker.id).await.unwrap();
    assert!(
        score.is_some_and(|s| s < GRAYLIST_THRESHOLD),
        "score after three rejected frames: {score:?}"
    );

    // Graylisted: the group's next message reaches ben but not the attacker.
    while attacker.received.try_recv().is_ok() {}
    ann.node.chats().send(chat, "after").await.unwrap();
    ben.wait_for("the group's next message", |e| match e {
        Event::Message { message, .. } if message.text == "after" => Some(()),
        _ => None,
    })
    .await;
    assert!(
        attacker.received.try_recv().is_err(),
        "a graylisted peer was still sent the group's frames"
    );
    attacker.task.abort();
}

//! A stranger on a group's gossipsub topic: forged and non-member envelopes
//! are rejected by the first honest node and never reach the others.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, MessageAuthenticity},
    swarm::SwarmEvent,
    Swarm,
};
use meshchat_node::{
    crdt::{ChatId, Identity, SignedChange},
    protocol::{encode_frame, group_topic, GossipMessage},
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{net::bare_swarm, Net, Peer, WAIT};

/// A bare gossipsub node, subscribed to `chat`'s topic, connected to `target`.
async fn gossip_attacker(chat: ChatId, target: &Peer) -> Swarm<gossipsub::Behaviour> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = bare_swarm(key, Net::Loopback, WAIT * 3, |_| {
        gossipsub::Behaviour::new(
            // As the nodes publish: without gossipsub's own signature.
            MessageAuthenticity::Anonymous,
            gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(200))
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                // Without a source and sequence number every message would
                // get the same default id: content-addressed, as the nodes.
                .message_id_fn(|m| {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    m.data.hash(&mut h);
                    gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
                })
                .build()
                .expect("gossipsub config"),
        )
        .expect("gossipsub")
    });
    swarm
        .behaviour_mut()
        .subscribe(&group_topic(&chat))
        .expect("subscribe");
    let addr = target.addrs().await.remove(0);
    swarm.dial(addr).expect("dial");
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
    .expect("the node never saw the attacker's subscription");
    swarm
}

async fn publish(
    swarm: &mut Swarm<gossipsub::Behaviour>,
    chat: ChatId,
    changes: Vec<SignedChange>,
) {
    let frame = encode_frame(&GossipMessage::Changes(changes));
    swarm
        .behaviour_mut()
        .publish(group_topic(&chat), frame)
        .expect("publish");
    // Drive the swarm briefly so the frame is written out.
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            swarm.select_next_some().await;
        }
    })
    .await;
}

/// Re-binds a change to a group's segment 0 and metadata heads and signs
/// it: valid in every way but membership.
fn sign_for_group(
    signer: &Identity,
    chat: ChatId,
    meta_heads: Vec<meshchat_node::crdt::ChangeHash>,
    change: SignedChange,
) -> SignedChange {
    let parsed = automerge::Change::try_from(&change.change[..]).expect("a valid change");
    let mut expanded = parsed.decode();
    expanded.hash = None;
    expanded.message = Some(meshchat_node::crdt::binding(0, &meta_heads));
    let rebound = automerge::Change::from(expanded);
    SignedChange::sign(signer, chat, 0, meta_heads, &rebound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stranger_envelopes_are_rejected_and_not_forwarded() {
    let mut ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
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

    // A real message from ann, to copy and forge.
    let sent = ann.node.chats().send(chat, "real").await.unwrap();
    ben.wait_messages(1).await;
    // Ann's reaction to it: a real signed change of hers.
    let real = ann
        .node
        .chats()
        .react(chat, sent.message.id, Some("👍".into()))
        .await
        .unwrap();

    let mut attacker = gossip_attacker(chat, &ben).await;
    let attacker_id: PeerId = *attacker.local_peer_id();

    // 1. Ann's change with a broken signature.
    let mut forged = real.change.clone();
    forged.signature[7] ^= 0x40;
    publish(&mut attacker, chat, vec![forged]).await;
    let reason = ben
        .wait_for("the forged envelope's rejection", |e| match e {
            Event::Rejected { peer, reason } if *peer == attacker_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("signature"), "{reason}");

    // 2. A correctly signed change from a stranger (not a member).
    let stranger = Identity::generate();
    let mut own = meshchat_node::crdt::ChatReplica::new(meshchat_node::crdt::ChatKind::direct(
        stranger.public(),
        stranger.public(),
    ));
    let written = own.write_message(&stranger, "let me in", None, 1).unwrap();
    let smuggled = sign_for_group(
        &stranger,
        chat,
        real.change.meta_heads.clone(),
        written.change,
    );
    publish(&mut attacker, chat, vec![smuggled]).await;
    let reason = ben
        .wait_for("the stranger envelope's rejection", |e| match e {
            Event::Rejected { peer, reason } if *peer == attacker_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("not a member"), "{reason}");

    // 3. Garbage on the topic.
    attacker
        .behaviour_mut()
        .publish(group_topic(&chat), vec![1, 0xff, 0x13, 0x37])
        .expect("publish garbage");
    ben.wait_for("the garbage's rejection", |e| match e {
        Event::Rejected { peer, .. } if *peer == attacker_id => Some(()),
        _ => None,
    })
    .await;

    // Ben still relays honest traffic; ann saw none of the attacks.
    ben.node.chats().send(chat, "all good").await.unwrap();
    let mut rejections_at_ann = 0;
    let text = ann
        .wait_for("ben's honest message", |e| match e {
            Event::Rejected { .. } => {
                rejections_at_ann += 1;
                None
            }
            Event::Message {
                message,
                outgoing: false,
                ..
            } => Some(message.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "all good");
    assert_eq!(rejections_at_ann, 0, "an attack reached ann");
    let texts = ann.texts(chat).await;
    assert_eq!(texts, vec!["real", "all good"]);
    assert_eq!(ben.texts(chat).await, texts);
    ann.stop().await;
    ben.stop().await;
}

/// Gossip carries no author of its own: a stranger subscribed to a group's
/// topic gets the group's messages without gossipsub's source, sequence
/// number or signature (the author is only inside the signed change, which
/// issue 16 seals next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_names_no_author_on_the_wire() {
    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
    ann.add(&ben).await;
    let chat = ann
        .node
        .groups()
        .create("quiet", vec![ben.peer_id()])
        .await
        .unwrap();
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    // A listener that would take signed and unsigned messages alike.
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut listener = bare_swarm(key, Net::Loopback, WAIT * 3, |_| {
        gossipsub::Behaviour::<gossipsub::IdentityTransform>::new(
            MessageAuthenticity::Anonymous,
            gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Permissive)
                .build()
                .expect("gossipsub config"),
        )
        .expect("gossipsub")
    });
    listener
        .behaviour_mut()
        .subscribe(&group_topic(&chat))
        .expect("subscribe");
    listener
        .dial(ann.addrs().await.remove(0))
        .expect("dial ann");
    let ann_id = ann.peer_id();
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) =
                listener.select_next_some().await
            {
                if peer_id == ann_id {
                    return;
                }
            }
        }
    })
    .await
    .expect("ann's subscription never reached the listener");
    // Ann may publish before she has read the listener's subscription, so
    // she writes until one message reaches it (each wait bounded).
    let mut message = None;
    for attempt in 0..5 {
        ann.node
            .chats()
            .send(chat, format!("for members {attempt}"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) =
                    listener.select_next_some().await
                {
                    return message;
                }
            }
        })
        .await;
        if let Ok(got) = got {
            message = Some(got);
            break;
        }
    }
    let message = message.expect("the group's messages never reached the listener");
    assert_eq!(message.topic, group_topic(&chat).hash());
    assert_eq!(message.source, None, "gossipsub named the author");
    assert_eq!(message.sequence_number, None);
    ben.wait_messages(1).await;
    ann.stop().await;
    ben.stop().await;
}

//! Hostile gossip on a group's topic: a member publishing forged,
//! non-member, unsealed or garbage frames is rejected by the first honest
//! node, which forwards none of it; a stranger on the topic reads nothing.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use meshchat_node::{
    crdt::{ChatId, Identity, SignedChange},
    protocol::{decode_frame, encode_frame, group_topic, GossipMessage, Response, WireError},
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{gossip::GossipMember, Peer};

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
    // A member whose node is the attacker's own: it seals what it publishes
    // and hands out its key, so its frames are opened and judged.
    let mallory = Identity::generate();
    let mallory_id = meshchat_tests::net::keypair_of(&mallory)
        .public()
        .to_peer_id();
    let chat = ann
        .node
        .groups()
        .create("guarded", vec![ben.peer_id(), mallory_id])
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

    let mut attacker = GossipMember::join(mallory, chat, &ben).await;
    let attacker_id: PeerId = attacker.peer_id();

    // 0. A frame whose key, when ben asks, is another key under its id:
    // refused, the frame ignored (a peer that lies about a key is not
    // scored by gossipsub; the frame only waits, bounded, and goes).
    attacker
        .publish_with_a_false_key(chat, vec![real.change.clone()])
        .await;
    let reason = ben
        .wait_for("the false key's refusal", |e| match e {
            Event::Rejected { peer, reason } if *peer == attacker_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("another key's id"), "{reason}");

    // 1. Ann's change with a broken signature.
    let mut forged = real.change.clone();
    forged.signature[7] ^= 0x40;
    attacker.publish(chat, vec![forged]).await;
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
    attacker.publish(chat, vec![smuggled]).await;
    let reason = ben
        .wait_for("the stranger envelope's rejection", |e| match e {
            Event::Rejected { peer, reason } if *peer == attacker_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("not a member"), "{reason}");

    // 3. A real change of ann's, unsealed (as gossip was before sealing):
    // undecodable as sealed gossip, like any garbage. (A fourth rejected
    // frame would find the attacker graylisted, and not be read at all.)
    let unsealed = encode_frame(&BTreeMap::from([("Changes", vec![real.change.clone()])]));
    attacker.publish_frame(chat, unsealed, None).await;
    let reason = ben
        .wait_for("the unsealed frame's rejection", |e| match e {
            Event::Rejected { peer, reason } if *peer == attacker_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("malformed gossip"), "{reason}");

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

/// Gossip carries no author and no plaintext: a stranger subscribed to a
/// group's topic gets the group's messages sealed, without gossipsub's
/// source, sequence number or signature, with no author key or chat id
/// anywhere in them or in the topic's name, and no member gives it a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_topic_reads_nothing() {
    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
    let carl = Peer::start_with("carl", NodeConfig::loopback()).await;
    ann.add(&ben).await;
    let chat = ann
        .node
        .groups()
        .create("quiet", vec![ben.peer_id(), carl.peer_id()])
        .await
        .unwrap();
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    // With a member offline, ann's messages go out on the topic too.
    carl.stop().await;
    let mut listener = GossipMember::join(Identity::generate(), chat, &ann).await;
    // Ann may publish before she has read the listener's subscription, so
    // she writes until one message reaches it (each wait bounded).
    let secret = "for members only, 7d1f";
    let mut message = None;
    for _ in 0..5 {
        ann.node.chats().send(chat, secret).await.unwrap();
        message = listener.next_message(Duration::from_secs(2)).await;
        if message.is_some() {
            break;
        }
    }
    let message = message.expect("the group's messages never reached the listener");
    let topic = group_topic(&chat);
    assert_eq!(message.topic, topic.hash());
    assert_eq!(message.source, None, "gossipsub named the author");
    assert_eq!(message.sequence_number, None);
    assert!(!topic.to_string().contains(&chat.to_string()), "{topic}");
    let author = meshchat_tests::key_of(&ann);
    for (what, needle) in [
        ("the text", secret.as_bytes()),
        ("the author's key", author.as_bytes().as_slice()),
        ("the chat id", chat.as_bytes().as_slice()),
    ] {
        assert!(
            !message.data.windows(needle.len()).any(|w| w == needle),
            "{what} is on the wire"
        );
    }
    let Ok(GossipMessage::Sealed(sealed)) = decode_frame::<GossipMessage>(&message.data) else {
        panic!("gossip is not sealed");
    };
    assert_eq!(
        listener.ask_key(ann.peer_id(), chat, sealed.key_id).await,
        Some(Response::Error(WireError::NotMember)),
        "a member handed a stranger its key"
    );
    ben.wait_messages(1).await;
    ann.stop().await;
    ben.stop().await;
}

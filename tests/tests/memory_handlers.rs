//! The node's request-response handlers driven from a bare swarm over
//! libp2p's in-memory transport (no sockets; the node's real swarm, codecs
//! and store): a contact's push is stored and shown, a sync returns it, a
//! garbage frame is refused without harm, a relay takes and serves mail,
//! and two nodes deliver to each other.

use meshchat_node::{
    crdt::{ChatKind, ChatReplica, Identity, SignedChange},
    mailbox::{DeliveryToken, MailboxConfig},
    protocol::{
        decode_frame, MailboxCodec, MailboxRequest, MailboxResponse, Response, SyncCodec,
        WireError, MAILBOX_PROTOCOL, WIRE_VERSION,
    },
    Event, NodeConfig,
};
use meshchat_tests::{key_of, BareClient, Net, Peer, RawCodec};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A client on the memory transport that `bob` knows as a contact, and one
/// message it wrote into their direct chat.
async fn contact_with_a_message(bob: &Peer, text: &str) -> (BareClient<SyncCodec>, SignedChange) {
    let carol = Identity::generate();
    let client = BareClient::connect(carol.clone(), SyncCodec, bob).await;
    bob.node
        .contacts()
        .add(client.peer_id(), Some("carol".into()), Vec::new())
        .await
        .expect("add contact");
    let mut replica = ChatReplica::new(ChatKind::direct(carol.public(), key_of(bob)));
    let change = replica
        .write_message(&carol, text, None, now_ms())
        .expect("write")
        .change;
    (client, change)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_push_over_memory_is_stored_and_shown() {
    let mut bob = Peer::start_in_memory("bob").await;
    assert!(
        bob.addrs()
            .await
            .iter()
            .all(|a| a.to_string().starts_with("/memory/")),
        "the node listens on memory only"
    );
    let (mut carol, change) = contact_with_a_message(&bob, "over memory").await;
    let hash = change.decode_stored().expect("decodes").hash;
    match carol.push(vec![change]).await {
        Response::Pushed { stored, rejected } => {
            assert_eq!(stored, vec![hash]);
            assert!(rejected.is_empty(), "{rejected:?}");
        }
        other => panic!("expected Pushed, got {other:?}"),
    }
    assert_eq!(bob.wait_messages(1).await, vec!["over memory"]);
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_over_memory_returns_what_the_node_holds() {
    let mut bob = Peer::start_in_memory("bob").await;
    let (mut carol, change) = contact_with_a_message(&bob, "sync me").await;
    let chat = change.chat;
    let hash = change.decode_stored().expect("decodes").hash;
    carol.push(vec![change]).await;
    bob.wait_messages(1).await;
    match carol.sync(chat).await {
        Response::Synced { changes, .. } => {
            let hashes: Vec<_> = changes
                .iter()
                .map(|c| c.decode_stored().expect("decodes").hash)
                .collect();
            assert!(hashes.contains(&hash), "{hashes:?}");
        }
        other => panic!("expected Synced, got {other:?}"),
    }
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_memory_is_refused_and_the_node_keeps_serving() {
    let mut bob = Peer::start_in_memory("bob").await;
    let mut mallory = BareClient::connect(Identity::generate(), RawCodec::default(), &bob).await;
    let raw = mallory
        .request(vec![WIRE_VERSION, 0xff, 0x13])
        .await
        .expect("an answer");
    let answer = decode_frame::<Response>(&raw);
    assert!(
        matches!(answer, Ok(Response::Error(WireError::Malformed(_)))),
        "{answer:?}"
    );
    let from = mallory.peer_id();
    let reason = bob
        .wait_for("the rejection", |e| match e {
            Event::Rejected { peer, reason } if *peer == from => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("malformed"), "{reason}");
    let (mut carol, change) = contact_with_a_message(&bob, "still served").await;
    carol.push(vec![change]).await;
    assert_eq!(bob.wait_messages(1).await, vec!["still served"]);
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_memory_takes_a_deposit_and_serves_it_to_its_recipient() {
    let config = NodeConfig {
        listen: vec![Net::Memory.any_addr()],
        mailbox: Some(MailboxConfig::default()),
        ..NodeConfig::loopback()
    };
    let relay = Peer::start_on("relay", config, Net::Memory).await;
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let token = DeliveryToken::issue(&bob, Some(key_of(&relay)), None, i64::MAX);
    let mut sender = BareClient::connect_on(alice, MailboxCodec, &relay, MAILBOX_PROTOCOL).await;
    let deposited = sender
        .ask(MailboxRequest::Deposit {
            recipient: bob.public(),
            envelope: b"sealed".to_vec(),
            token: Some(token),
        })
        .await;
    match deposited {
        Some(MailboxResponse::Deposited(receipt)) => receipt.verify().expect("signed receipt"),
        other => panic!("expected a receipt, got {other:?}"),
    }
    let mut reader = BareClient::connect_on(bob, MailboxCodec, &relay, MAILBOX_PROTOCOL).await;
    assert_eq!(reader.fetch_all().await, vec![b"sealed".to_vec()]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_memory_deliver_and_acknowledge() {
    let mut alice = Peer::start_in_memory("alice").await;
    let mut bob = Peer::start_in_memory("bob").await;
    let chat = alice.add(&bob).await;
    alice
        .node
        .chats()
        .send(chat, "hello in memory")
        .await
        .expect("send");
    assert_eq!(bob.wait_messages(1).await, vec!["hello in memory"]);
    alice.wait_delivered(1).await;
    alice.stop().await;
    bob.stop().await;
}

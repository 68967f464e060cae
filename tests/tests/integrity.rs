//! Chat integrity on real nodes (issue 13): correctly signed but hand-built
//! changes over the wire and on disk, changes that cannot be judged yet,
//! strangers' messages and invitations, and floods of refused input.

use automerge::{legacy::OpId, ExpandedChange};
use meshchat_node::{
    crdt::{ChangeHash, ChatKind, ChatReplica, Identity, SignedChange},
    protocol::{Response, SyncCodec},
    Event,
};
use meshchat_tests::{within, BareClient, Peer, WAIT};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Re-encodes a change after `edit` and signs it as `who`.
fn bend(
    who: &Identity,
    change: &SignedChange,
    edit: impl FnOnce(&mut ExpandedChange),
) -> SignedChange {
    let parsed = automerge::Change::try_from(&change.change[..]).expect("a valid change");
    let mut expanded = parsed.decode();
    expanded.hash = None;
    edit(&mut expanded);
    let rebuilt = automerge::Change::from(expanded);
    SignedChange::sign(
        who,
        change.chat,
        change.segment,
        change.meta_heads.clone(),
        &rebuilt,
    )
}

fn hash_of(change: &SignedChange) -> ChangeHash {
    change.decode_stored().expect("decodes").hash
}

fn pushed(response: Response) -> (Vec<ChangeHash>, Vec<String>) {
    match response {
        Response::Pushed { stored, rejected } => {
            (stored, rejected.into_iter().map(|r| r.reason).collect())
        }
        other => panic!("expected Pushed, got {other:?}"),
    }
}

/// A stranger's identity, connected to `target` as a bare swarm, that
/// `target` knows as a contact (so its direct messages open a chat).
async fn known_attacker(target: &Peer) -> BareClient<SyncCodec> {
    let attacker = BareClient::connect(Identity::generate(), SyncCodec, target).await;
    target
        .node
        .contacts()
        .add(attacker.peer_id(), None, Vec::new())
        .await
        .expect("add contact");
    attacker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_changes_are_refused_and_the_node_keeps_running_across_restarts() {
    let mut bob = Peer::start("bob").await;
    let mut mallory = known_attacker(&bob).await;
    let kind = ChatKind::direct(mallory.public(), meshchat_tests::key_of(&bob));
    let chat = kind.chat_id();
    let mut replica = ChatReplica::new(kind);
    let first = replica
        .write_message(&mallory.identity, "first", None, now_ms())
        .expect("write");
    let second = replica
        .write_message(&mallory.identity, "second", None, now_ms())
        .expect("write");
    let (stored, _) = pushed(mallory.push(vec![first.change.clone()]).await);
    assert_eq!(stored, vec![first.hash]);
    // Each of these made Automerge 0.12 panic, at receipt and at every start.
    let stranger = Identity::generate().actor();
    let hostile = vec![
        (
            "sequence gap",
            bend(&mallory.identity, &first.change, |c| c.seq = 5),
        ),
        (
            "unknown object",
            bend(&mallory.identity, &second.change, |c| {
                c.operations[1].obj =
                    automerge::legacy::ObjectId::Id(OpId(999, c.actor_id.clone()));
            }),
        ),
        (
            "unknown actor in a predecessor",
            bend(&mallory.identity, &second.change, |c| {
                c.operations[0].pred = vec![OpId(1, stranger.clone())].into();
            }),
        ),
    ];
    for (what, change) in hostile {
        let (stored, rejected) = pushed(mallory.push(vec![change]).await);
        assert!(stored.is_empty(), "{what}: acknowledged");
        assert_eq!(rejected.len(), 1, "{what}");
        assert!(rejected[0].contains("malformed"), "{what}: {rejected:?}");
    }
    bob.node.network().status().await.expect("bob is running");
    bob.restart().await;
    let texts = bob.texts(chat).await;
    assert_eq!(texts, vec!["first"]);
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_store_loads_without_the_bad_change() {
    let alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    alice.node.chats().send(chat, "one").await.expect("send");
    alice.node.chats().send(chat, "two").await.expect("send");
    bob.wait_messages(2).await;
    // A change that would crash Automerge, written straight into bob's
    // store, as an older version (or a disk) might have left it.
    let history = bob.history(chat).await;
    let alice_id = alice.dir.identity().expect("alice's identity");
    let honest = ChatReplica::new(ChatKind::direct(
        alice_id.public(),
        meshchat_tests::key_of(&bob),
    ))
    .write_message(&alice_id, "poison", None, now_ms())
    .expect("write")
    .change;
    let fake = bend(&alice_id, &honest, |c| c.seq = 7);
    bob.stop().await;
    {
        let db = sled::open(bob.dir.db_path()).expect("open bob's store");
        let tree = db.open_tree("changes").expect("changes tree");
        let mut key = chat.as_bytes().to_vec();
        key.extend_from_slice(&0u32.to_be_bytes());
        key.extend_from_slice(hash_of(&fake).as_bytes());
        let mut value = Vec::new();
        ciborium::into_writer(&fake, &mut value).expect("cbor");
        tree.insert(key, value).expect("insert");
        // And a record that does not even decode.
        let mut key = chat.as_bytes().to_vec();
        key.extend_from_slice(&0u32.to_be_bytes());
        key.extend_from_slice(&[0xee; 32]);
        tree.insert(key, &b"not cbor"[..]).expect("insert");
        db.flush().expect("flush");
    }
    bob.node = meshchat_node::spawn(&bob.dir, bob.config.clone())
        .await
        .expect("bob starts despite the poisoned store");
    let after = bob.history(chat).await;
    assert_eq!(
        after.iter().map(|e| &e.message.text).collect::<Vec<_>>(),
        history.iter().map(|e| &e.message.text).collect::<Vec<_>>()
    );
    bob.stop().await;
    let db = sled::open(bob.dir.db_path()).expect("open bob's store");
    let tree = db.open_tree("changes").expect("changes tree");
    assert_eq!(
        tree.scan_prefix(chat.as_bytes()).count(),
        2,
        "the bad records are gone"
    );
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_cannot_be_judged_yet_are_neither_stored_nor_acknowledged() {
    let mut bob = Peer::start("bob").await;
    let mut mallory = known_attacker(&bob).await;
    let kind = ChatKind::direct(mallory.public(), meshchat_tests::key_of(&bob));
    let chat = kind.chat_id();
    let mut replica = ChatReplica::new(kind);
    // One millisecond apart, so history shows them in this order.
    let sent_at = now_ms();
    let first = replica
        .write_message(&mallory.identity, "first", None, sent_at)
        .expect("write");
    let second = replica
        .write_message(&mallory.identity, "second", None, sent_at + 1)
        .expect("write");
    // The second alone: its dependency is missing. Not refused (it may be
    // fine), not acknowledged (it is not stored): the sender keeps it.
    let (stored, rejected) = pushed(mallory.push(vec![second.change.clone()]).await);
    assert!(stored.is_empty());
    assert!(rejected.is_empty(), "{rejected:?}");
    // Once the first arrives, both are judged, stored and acknowledged.
    let (stored, _) = pushed(mallory.push(vec![first.change.clone()]).await);
    assert!(stored.contains(&first.hash));
    let (stored, _) = pushed(mallory.push(vec![second.change.clone()]).await);
    assert_eq!(stored, vec![second.hash]);
    bob.restart().await;
    assert_eq!(bob.texts(chat).await, vec!["first", "second"]);
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_message_is_a_request_until_accepted() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    // Alice has bob's invite; bob does not know alice.
    let chat = alice.add_one_way(&bob).await;
    alice
        .node
        .chats()
        .send(chat, "hi, it's alice")
        .await
        .expect("send");
    let request = bob
        .wait_for("a message request", |e| match e {
            Event::MessageRequest { chat: c, from } if *c == chat => Some(*from),
            Event::Message { .. } => panic!("a stranger's message opened a chat"),
            _ => None,
        })
        .await;
    assert_eq!(request, alice.peer_id());
    assert!(bob.node.chats().list().await.expect("chats").is_empty());
    let requests = bob.node.contacts().requests().await.expect("requests");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].messages[0].text, "hi, it's alice");
    // Delivered: bob's node holds it durably.
    alice.wait_delivered(1).await;
    bob.node
        .contacts()
        .accept_request(chat)
        .await
        .expect("accept");
    assert!(bob
        .node
        .contacts()
        .requests()
        .await
        .expect("requests")
        .is_empty());
    assert_eq!(bob.texts(chat).await, vec!["hi, it's alice"]);
    // From now on alice's messages arrive like any other.
    alice.node.chats().send(chat, "thanks").await.expect("send");
    within("the next message", async {
        while bob.texts(chat).await.len() < 2 {
            bob.wait_for("a message", |e| {
                matches!(e, Event::Message { .. }).then_some(())
            })
            .await;
        }
    })
    .await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_stranger_as_a_contact_opens_their_request_as_the_chat() {
    let alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add_one_way(&bob).await;
    alice
        .node
        .chats()
        .send(chat, "it's alice, add me")
        .await
        .expect("send");
    bob.wait_for("a message request", |e| match e {
        Event::MessageRequest { chat: c, .. } if *c == chat => Some(()),
        _ => None,
    })
    .await;
    // Bob adds alice: what she wrote is their chat now, no request left.
    bob.add_one_way(&alice).await;
    assert!(bob
        .node
        .contacts()
        .requests()
        .await
        .expect("requests")
        .is_empty());
    assert_eq!(bob.texts(chat).await, vec!["it's alice, add me"]);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_requests_cost_a_fixed_budget() {
    let mut bob = Peer::start("bob").await;
    let bob_key = meshchat_tests::key_of(&bob);
    // One stranger writes more than a request keeps.
    let mut chatty = BareClient::connect(Identity::generate(), SyncCodec, &bob).await;
    let mut replica = ChatReplica::new(ChatKind::direct(chatty.public(), bob_key));
    let mut changes = Vec::new();
    for i in 0..(meshchat_node::MAX_REQUEST_CHANGES + 10) {
        changes.push(
            replica
                .write_message(&chatty.identity, &format!("m{i}"), None, now_ms())
                .expect("write")
                .change,
        );
    }
    let (stored, rejected) = pushed(chatty.push(changes).await);
    assert!(
        stored.is_empty(),
        "over budget: nothing kept, nothing acknowledged"
    );
    assert!(rejected.is_empty(), "not refused for good: {rejected:?}");
    // Many strangers write: at most MAX_REQUESTS are kept.
    let mut kept = 0;
    for _ in 0..(meshchat_node::MAX_REQUESTS + 3) {
        let mut stranger = BareClient::connect(Identity::generate(), SyncCodec, &bob).await;
        let change = ChatReplica::new(ChatKind::direct(stranger.public(), bob_key))
            .write_message(&stranger.identity, "hello?", None, now_ms())
            .expect("write")
            .change;
        let (stored, _) = pushed(stranger.push(vec![change]).await);
        kept += stored.len();
    }
    assert_eq!(kept, meshchat_node::MAX_REQUESTS);
    assert_eq!(
        bob.node
            .contacts()
            .requests()
            .await
            .expect("requests")
            .len(),
        meshchat_node::MAX_REQUESTS
    );
    assert!(bob.node.chats().list().await.expect("chats").is_empty());
    bob.stop().await;
    let _ = &mut bob;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_invitation_from_a_stranger_waits_for_acceptance() {
    let mut carol = Peer::start("carol").await;
    let mut bob = Peer::start("bob").await;
    carol.add_one_way(&bob).await;
    let chat = carol
        .node
        .groups()
        .create("carol's party", vec![bob.peer_id()])
        .await
        .expect("create");
    bob.wait_for("an invitation request", |e| match e {
        Event::MessageRequest { chat: c, .. } if *c == chat => Some(()),
        Event::GroupJoined { .. } => panic!("joined a stranger's group"),
        _ => None,
    })
    .await;
    let requests = bob.node.contacts().requests().await.expect("requests");
    assert_eq!(requests[0].group.as_deref(), Some("carol's party"));
    bob.node
        .contacts()
        .accept_request(chat)
        .await
        .expect("accept");
    bob.wait_for("joined", |e| match e {
        Event::GroupJoined { chat: c } if *c == chat => Some(()),
        _ => None,
    })
    .await;
    carol
        .node
        .chats()
        .send(chat, "welcome")
        .await
        .expect("send");
    within("the group message", async {
        while !bob.texts(chat).await.contains(&"welcome".to_string()) {
            bob.wait_for("a message", |e| {
                matches!(e, Event::Message { .. }).then_some(())
            })
            .await;
        }
    })
    .await;
    carol.stop().await;
    bob.stop().await;
    let _ = &mut carol;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_changes_is_reported_within_a_budget() {
    let bob = Peer::start("bob").await;
    let mut mallory = known_attacker(&bob).await;
    let kind = ChatKind::direct(mallory.public(), meshchat_tests::key_of(&bob));
    let mut replica = ChatReplica::new(kind);
    let honest = replica
        .write_message(&mallory.identity, "x", None, now_ms())
        .expect("write")
        .change;
    let garbage: Vec<SignedChange> = (0..200)
        .map(|i| bend(&mallory.identity, &honest, |c| c.seq = 10 + i))
        .collect();
    let mut events = bob.node.subscribe();
    let (_, rejected) = pushed(mallory.push(garbage).await);
    assert_eq!(rejected.len(), 200, "each is refused to the sender");
    // Events were emitted before the answer: count what is queued.
    let mut reported = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, Event::Rejected { peer, .. } if peer == mallory.peer_id()) {
            reported += 1;
        }
    }
    assert!(
        (1..=10).contains(&reported),
        "{reported} events for one peer"
    );
    bob.stop().await;
    let _ = WAIT;
}

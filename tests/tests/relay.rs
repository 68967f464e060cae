//! Store-and-forward through a relay: the recipient is offline when the
//! sender writes, the sender is offline when the recipient comes back.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_node::{mailbox::MailboxConfig, DeliveryState, Event, NodeConfig};
use meshchat_tests::{within, Peer};

/// A peer whose mail is kept at `relay`.
async fn start_with_relay(name: &'static str, relay: meshchat_node::Multiaddr) -> Peer {
    Peer::start_with(
        name,
        NodeConfig {
            relays: vec![relay],
            ..NodeConfig::loopback()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_at_the_relay_while_both_ends_take_turns_offline() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    // Bob's invite: his addresses, his relay, and a delivery token for it.
    let invite = bob.node.contacts().invite().await.unwrap();
    assert_eq!(invite.relays, vec![relay_addr]);
    assert_eq!(invite.tokens.len(), 1);
    let mut alice = Peer::start("alice").await;
    bob.add_one_way(&alice).await;
    bob.stop().await;

    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    for text in ["one", "two", "three"] {
        alice.node.chats().send(chat, text).await.unwrap();
    }
    // Bob is offline: the relay takes custody and the messages become `sent`.
    for _ in 0..3 {
        alice.wait_custody().await;
    }
    let history = alice.history(chat).await;
    assert!(history
        .iter()
        .all(|e| e.delivery == Some(DeliveryState::Sent)));
    // The relay's signed promise is kept: who holds it, until when.
    let info = alice
        .node
        .chats()
        .message_info(chat, history[0].message.id)
        .await
        .unwrap();
    assert_eq!(info.recipients.len(), 1);
    assert_eq!(info.recipients[0].held_by.len(), 1);
    let relay_key = meshchat_node::public_key_of(&relay.peer_id()).unwrap();
    assert_eq!(info.recipients[0].held_by[0].0, relay_key);
    assert!(info.recipients[0].held_by[0].1 > history[0].message.sent_at_ms);
    // Deposited as soon as each dial to Bob failed: one to three envelopes,
    // none carrying a change another one holds.
    let envelopes = relay
        .node
        .network()
        .status()
        .await
        .unwrap()
        .mailbox
        .unwrap()
        .messages;
    assert!((1..=3).contains(&envelopes), "{envelopes} envelopes");
    alice.stop().await;

    // Bob comes back while Alice is away: his relay hands him the mail.
    bob.restart().await;
    let mut got = bob.wait_messages(3).await;
    got.sort();
    assert_eq!(got, vec!["one", "three", "two"]);
    // Bob acknowledged after storing: the relay forgets it.
    within("the relay to drop acknowledged mail", async {
        while relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .mailbox
            .unwrap()
            .messages
            > 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // When Alice returns, the direct acknowledgement makes them `delivered`.
    alice.restart().await;
    alice.wait_delivered(3).await;
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_group_member_gets_group_mail_from_its_relay() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    let mut alice = Peer::start("alice").await;
    let carol = Peer::start("carol").await;
    alice
        .node
        .contacts()
        .add_with_relays(
            bob.peer_id(),
            Some("bob".into()),
            bob.addrs().await,
            vec![relay_addr],
        )
        .await
        .unwrap();
    alice.add(&carol).await;
    let group = alice
        .node
        .groups()
        .create("hikers", vec![bob.peer_id(), carol.peer_id()])
        .await
        .unwrap();
    // Bob never added Alice: her invitation is a request until he accepts.
    assert_eq!(bob.accept_request_from(&alice).await, group);
    bob.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat } if *chat == group).then_some(())
    })
    .await;
    // She is in his group now: he hands her a delivery token for his relay.
    let bob_id = bob.peer_id();
    alice
        .wait_for("bob's delivery token", |e| {
            matches!(e, Event::DeliveryTokens { peer } if *peer == bob_id).then_some(())
        })
        .await;
    bob.stop().await;
    alice
        .node
        .chats()
        .send(group, "summit at noon")
        .await
        .unwrap();
    alice
        .wait_for("custody for bob", |e| match e {
            Event::Delivery {
                state: DeliveryState::Sent,
                peer,
                ..
            } if *peer == bob.peer_id() => Some(()),
            _ => None,
        })
        .await;
    // Everyone but bob's relay goes away; bob returns and gets the message.
    alice.stop().await;
    carol.stop().await;
    bob.restart().await;
    assert_eq!(bob.wait_messages(1).await, vec!["summit at noon"]);
    relay.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_reachable_through_its_relay_circuit() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = start_with_relay("bob", relay_addr).await;
    // Bob reserves a circuit and listens through the relay.
    let circuit = bob
        .wait_for("a circuit address", |e| match e {
            Event::Listening { addr } if addr.to_string().contains("/p2p-circuit/") => {
                Some(addr.clone())
            }
            _ => None,
        })
        .await;
    // Alice knows Bob only by that address.
    let mut alice = Peer::start("alice").await;
    bob.add_one_way(&alice).await;
    alice
        .node
        .contacts()
        .add(bob.peer_id(), Some("bob".into()), vec![circuit])
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice
        .node
        .chats()
        .send(chat, "via the relay")
        .await
        .unwrap();
    assert_eq!(bob.wait_messages(1).await, vec!["via the relay"]);
    alice.wait_delivered(1).await;
    for p in [&relay, &alice, &bob] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_finds_the_recipients_relay_in_the_dht() {
    // Alice and Bob never met, so Alice holds no token of Bob's: this relay
    // takes mail from strangers (a budget its operator turned on).
    let mut relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(MailboxConfig {
                stranger_bytes: 1 << 20,
                ..MailboxConfig::default()
            }),
            ..NodeConfig::loopback()
        },
    )
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    let bob_id = bob.peer_id();
    // Bob publishes his signed profile (listing his relay) in the DHT.
    relay
        .wait_for("bob's profile record", |e| {
            matches!(e, Event::ProfileRecordStored { peer } if *peer == bob_id).then_some(())
        })
        .await;
    bob.stop().await;

    // Alice knows only Bob's PeerId, and the network through its bootstrap node.
    let mut alice = Peer::start_with(
        "alice",
        NodeConfig {
            bootstrap: vec![relay_addr.clone()],
            ..NodeConfig::loopback()
        },
    )
    .await;
    alice
        .node
        .contacts()
        .add(bob_id, Some("bob".into()), Vec::new())
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob_id).await.unwrap();
    alice.node.chats().send(chat, "found you").await.unwrap();
    alice
        .wait_for("custody at bob's relay", |e| match e {
            Event::Delivery {
                state: DeliveryState::Sent,
                peer,
                ..
            } if *peer == bob_id => Some(()),
            _ => None,
        })
        .await;
    let profile = alice
        .node
        .profiles()
        .get(Some(bob_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.profile.relays, vec![relay_addr]);
    alice.stop().await;

    bob.restart().await;
    // A stranger's mail: a message request until Bob accepts it.
    bob.accept_request_from(&alice).await;
    assert_eq!(bob.wait_messages(1).await, vec!["found you"]);
    relay.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_fills_nothing_while_a_contact_gets_mail_through() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    let bob_id = bob.peer_id();
    // Alice adds Bob, and Bob adds Alice: as his contact, she gets a token.
    let mut alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_with_relays(
            bob_id,
            Some("bob".into()),
            bob.addrs().await,
            vec![relay_addr.clone()],
        )
        .await
        .unwrap();
    bob.add(&alice).await;
    alice
        .wait_for("bob's delivery token", |e| {
            matches!(e, Event::DeliveryTokens { peer } if *peer == bob_id).then_some(())
        })
        .await;
    let bob_addrs = bob.addrs().await;
    bob.stop().await;

    // Mallory knows Bob's PeerId and relay, but Bob never gave her a token.
    let mallory = Peer::start("mallory").await;
    mallory
        .node
        .contacts()
        .add_with_relays(bob_id, None, bob_addrs, vec![relay_addr])
        .await
        .unwrap();
    let spam = mallory.node.chats().direct(bob_id).await.unwrap();
    mallory.node.chats().send(spam, "buy now").await.unwrap();
    within("the relay's refusal of mallory's deposit", async {
        while relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .relay
            .unwrap()
            .refused_token
            == 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        mallory.history(spam).await[0].delivery,
        Some(DeliveryState::Pending)
    );

    let chat = alice.node.chats().direct(bob_id).await.unwrap();
    alice.node.chats().send(chat, "for bob").await.unwrap();
    alice
        .wait_for("custody at bob's relay", |e| match e {
            Event::Delivery {
                state: DeliveryState::Sent,
                peer,
                ..
            } if *peer == bob_id => Some(()),
            _ => None,
        })
        .await;
    let status = relay.node.network().status().await.unwrap();
    assert_eq!(
        status.mailbox.unwrap().messages,
        1,
        "only alice's mail is held"
    );
    mallory.stop().await;
    alice.stop().await;

    bob.restart().await;
    assert_eq!(bob.wait_messages(1).await, vec!["for bob"]);
    relay.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_reached_directly_gets_one_copy_not_two() {
    // Members whose mail a relay keeps get group changes through their
    // outbox (pushed, acknowledged). When the author reaches every member
    // that way it publishes nothing on the group's topic, and a member
    // does not pass a change its author pushed on to the topic either.
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    let mut carol = start_with_relay("carol", relay_addr.clone()).await;
    let mut alice = Peer::start("alice").await;
    for member in [&bob, &carol] {
        alice.add(member).await;
        alice
            .node
            .contacts()
            .add_with_relays(
                member.peer_id(),
                None,
                member.addrs().await,
                vec![relay_addr.clone()],
            )
            .await
            .unwrap();
    }
    let group = alice
        .node
        .groups()
        .create("hikers", vec![bob.peer_id(), carol.peer_id()])
        .await
        .unwrap();
    for member in [&mut bob, &mut carol] {
        member
            .wait_for("the group", |e| {
                matches!(e, Event::GroupJoined { chat } if *chat == group).then_some(())
            })
            .await;
    }
    let published = |peer: &Peer| {
        let node = peer.node.clone();
        async move {
            node.network()
                .status()
                .await
                .unwrap()
                .traffic
                .gossip_published
        }
    };
    // A first message while the members' syncs of the new group settle (a
    // sync that fetches a message is passed on to the topic, as it should).
    alice.node.chats().send(group, "warm-up").await.unwrap();
    bob.wait_messages(1).await;
    carol.wait_messages(1).await;
    alice.wait_delivered(2).await;
    let alice_before = published(&alice).await;
    let members_before = published(&bob).await + published(&carol).await;

    alice
        .node
        .chats()
        .send(group, "one copy each")
        .await
        .unwrap();
    assert_eq!(
        published(&alice).await,
        alice_before,
        "every member is pushed to directly: nothing goes to the topic"
    );
    assert_eq!(bob.wait_messages(1).await, vec!["one copy each"]);
    assert_eq!(carol.wait_messages(1).await, vec!["one copy each"]);
    alice.wait_delivered(2).await;
    // Whoever got it first got it pushed (nobody had published it): were a
    // pushed change passed on, that member would have published it.
    assert_eq!(
        published(&bob).await + published(&carol).await,
        members_before,
        "a change pushed by its author is not passed on to the topic"
    );

    // Carol goes away: her copy goes to her relay, still not to the topic
    // (which reaches no offline member and would only give bob a second
    // copy); she reads it when she is back.
    let carol_id = carol.peer_id();
    carol.stop().await;
    alice
        .wait_for("carol leaving", |e| {
            matches!(e, Event::PeerDisconnected { peer } if *peer == carol_id).then_some(())
        })
        .await;
    alice
        .node
        .chats()
        .send(group, "carol is away")
        .await
        .unwrap();
    assert_eq!(bob.wait_messages(1).await, vec!["carol is away"]);
    alice.wait_custody().await;
    assert_eq!(published(&alice).await, alice_before);
    carol.restart().await;
    assert_eq!(carol.wait_messages(1).await, vec!["carol is away"]);
    alice.stop().await;
    bob.stop().await;
    carol.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_peer_takes_pages_of_mail_in_order_and_leaves_none_behind() {
    use meshchat_node::{
        crdt::{ChatId, ChatKind, ChatReplica, Identity},
        mailbox::DeliveryToken,
        protocol::{
            encode_frame, DepositItem, DepositOutcome, Envelope, MailboxRequest, MailboxResponse,
        },
    };
    use meshchat_tests::MailboxClient;

    const MESSAGES: usize = 2_500; // three pages
    let relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(MailboxConfig {
                deposits_per_sender_per_minute: u32::MAX,
                deposits_per_token_per_minute: u32::MAX,
                ..MailboxConfig::default()
            }),
            ..NodeConfig::loopback()
        },
    )
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    let alice = Identity::generate();
    let alice_peer = meshchat_node::peer_id_of(&alice.public()).unwrap();
    let mut bob = start_with_relay("bob", relay_addr.clone()).await;
    bob.node
        .contacts()
        .add(alice_peer, Some("alice".into()), Vec::new())
        .await
        .unwrap();
    bob.stop().await;
    let bob_identity = bob.dir.identity().unwrap();
    let bob_key = bob_identity.public();
    let relay_key = meshchat_node::public_key_of(&relay.peer_id()).unwrap();
    let token = DeliveryToken::issue(&bob_identity, Some(relay_key), None, i64::MAX);

    // Alice's messages wait at the relay, one envelope each.
    let mut chat = ChatReplica::new(ChatKind::direct(alice.public(), bob_key));
    let mut depositor = MailboxClient::to_relay(alice.clone(), relay_addr).await;
    let texts: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    for (n, chunk) in texts.chunks(64).enumerate() {
        let deposits = chunk
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let written = chat
                    .write_message(&alice, text, None, 1_700_000_000_000 + (n * 64 + i) as i64)
                    .unwrap();
                DepositItem {
                    recipient: bob_key,
                    envelope: encode_frame(&Envelope::Changes(vec![written.change])),
                    token: Some(token.clone()),
                }
            })
            .collect();
        let Some(MailboxResponse::DepositedBatch { outcomes }) = depositor
            .ask(MailboxRequest::DepositBatch { deposits })
            .await
        else {
            panic!("deposit failed");
        };
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, DepositOutcome::Deposited(_))));
    }

    // Bob comes back: every message, in order, and the relay keeps nothing.
    let fetches = || async {
        relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .relay
            .unwrap()
            .fetches
    };
    let fetches_before = fetches().await;
    bob.restart().await;
    let chat_id = ChatId::direct(&alice.public(), &bob_key);
    within("every message", async {
        while bob
            .node
            .chats()
            .history_quiet(chat_id)
            .await
            .map_or(0, |h| h.len())
            < MESSAGES
        {
            let _ = bob.events.recv().await;
        }
    })
    .await;
    within("every acknowledgement at the relay", async {
        while relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .mailbox
            .unwrap()
            .messages
            > 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(bob.texts(chat_id).await, texts);
    // Three pages, walked once (the connection and the relay's notice both
    // ask for mail; the second ask may fetch once more, finding nothing).
    let pages = fetches().await - fetches_before;
    assert!((3..=4).contains(&pages), "{pages} fetches");
    for p in [&relay, &bob] {
        p.stop().await;
    }
}

//! Direct chats between real nodes on loopback: delivery, restarts, catch-up
//! and convergence after writing while apart.

use meshchat_node::{DataDirError, DeliveryState, SpawnError};
use meshchat_tests::{within, Peer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_is_delivered_and_acknowledged() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    let sent = alice.node.chats().send(chat, "hello bob").await.unwrap();
    assert_eq!(bob.wait_messages(1).await, vec!["hello bob"]);
    alice.wait_delivered(1).await;
    let history = bob.history(chat).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].message.id, sent.message.id);
    assert!(!history[0].outgoing);
    let mine = alice.history(chat).await;
    assert_eq!(mine[0].delivery, Some(DeliveryState::Delivered));
    // Bob looked at the chat (his `history` above): Alice gets a read receipt.
    alice
        .wait_for("the read receipt", |e| match e {
            meshchat_node::Event::Delivery {
                state: DeliveryState::Read,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(
        alice.history(chat).await[0].delivery,
        Some(DeliveryState::Read)
    );
    // Bob never added Alice, yet can answer in the same chat.
    bob.node.chats().send(chat, "hi alice").await.unwrap();
    assert_eq!(alice.wait_messages(1).await, vec!["hi alice"]);
    assert_eq!(bob.texts(chat).await, alice.texts(chat).await);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_restart_of_both_sides() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    for i in 0..5 {
        alice
            .node
            .chats()
            .send(chat, format!("m{i}"))
            .await
            .unwrap();
    }
    bob.wait_messages(5).await;
    alice.wait_delivered(5).await;
    alice.restart().await;
    bob.restart().await;
    let expected: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    assert_eq!(alice.texts(chat).await, expected);
    // Contacts and delivery states survive too. (Read before Bob reads his
    // history: that marks the messages read, and its receipts can reach
    // Alice before she looks.)
    assert_eq!(alice.node.contacts().list().await.unwrap().len(), 1);
    assert!(alice
        .history(chat)
        .await
        .iter()
        .all(|e| e.delivery == Some(DeliveryState::Delivered)));
    assert_eq!(bob.texts(chat).await, expected);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_peer_catches_up_when_back() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    alice.node.chats().send(chat, "before").await.unwrap();
    bob.wait_messages(1).await;
    alice.wait_delivered(1).await;

    bob.stop().await;
    for text in ["while", "you", "were", "away"] {
        alice.node.chats().send(chat, text).await.unwrap();
    }
    let pending = alice.history(chat).await;
    assert_eq!(
        pending.last().unwrap().delivery,
        Some(DeliveryState::Pending)
    );
    assert_eq!(alice.node.network().status().await.unwrap().outbox, 4);

    bob.restart().await;
    let mut got = bob.wait_messages(4).await;
    got.sort();
    assert_eq!(got, vec!["away", "were", "while", "you"]);
    alice.wait_delivered(4).await;
    assert_eq!(alice.node.network().status().await.unwrap().outbox, 0);
    assert_eq!(alice.texts(chat).await, bob.texts(chat).await);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_apart_converge_on_connection() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    // Neither knows how to reach the other yet: both write into the chat.
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    assert_eq!(
        bob.node.chats().direct(alice.peer_id()).await.unwrap(),
        chat
    );
    for i in 0..3 {
        alice
            .node
            .chats()
            .send(chat, format!("a{i}"))
            .await
            .unwrap();
        bob.node.chats().send(chat, format!("b{i}")).await.unwrap();
    }
    // Connect: the outbox push and the anti-entropy sync both run.
    alice.add(&bob).await;
    bob.wait_messages(3).await;
    alice.wait_messages(3).await;
    let a = alice.history(chat).await;
    let b = bob.history(chat).await;
    assert_eq!(a.len(), 6);
    let ids =
        |h: &[meshchat_node::HistoryEntry]| h.iter().map(|e| e.message.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_the_same_dir_is_refused() {
    let alice = Peer::start("alice").await;
    let second = meshchat_node::spawn(&alice.dir, alice.config.clone()).await;
    assert!(matches!(
        second,
        Err(SpawnError::DataDir(DataDirError::Locked(_)))
    ));
    // The first node still works.
    within("status", alice.node.network().status())
        .await
        .unwrap();
    alice.stop().await;
}

//! Sealed sender to relays (issue 16), between real nodes and a real relay
//! on loopback: sealed mail is deposited by a courier over a throwaway
//! identity, so the relay never holds the sender's key; the recipient takes
//! the sender from the changes inside; a courier that fails leaves the mail
//! to be deposited again.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use meshchat_node::{Event, NodeConfig, PeerId, Status};
use meshchat_tests::{key_of, within, Peer};

/// Every file under `dir` that holds `needle` anywhere.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// Waits until `peer`'s status satisfies `done`.
async fn status_until(peer: &Peer, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    within(what, async {
        loop {
            let status = peer.node.network().status().await.unwrap();
            if done(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A relay, Bob using it, and Alice, who has no relay of her own and added
/// Bob from his invite: she holds his relay, a delivery token for it, and
/// his encryption key, so her mail to him is sealed.
async fn alice_bob_and_his_relay() -> (Peer, Peer, Peer) {
    let (relay, bob, mut senders) = bob_and_his_relay(&["alice"]).await;
    (relay, senders.remove(0), bob)
}

/// A relay, Bob using it, and `senders`, each as Alice above.
async fn bob_and_his_relay(senders: &[&'static str]) -> (Peer, Peer, Vec<Peer>) {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr],
            ..NodeConfig::loopback()
        },
    )
    .await;
    let invite = bob.node.contacts().invite().await.unwrap();
    assert_eq!(
        invite.tokens.len(),
        1,
        "the invite carries a delivery token"
    );
    let bob_id = bob.peer_id();
    let mut peers = Vec::new();
    for name in senders {
        let mut sender = Peer::start(name).await;
        sender
            .node
            .contacts()
            .add_from_invite(invite.clone(), Some("bob".into()))
            .await
            .unwrap();
        bob.add_one_way(&sender).await;
        // The sender holds Bob's signed profile, with his encryption key.
        if sender
            .node
            .profiles()
            .get(Some(bob_id))
            .await
            .unwrap()
            .is_none()
        {
            sender
                .wait_for("bob's profile", |e| match e {
                    Event::ProfileChanged { peer } if *peer == bob_id => Some(()),
                    _ => None,
                })
                .await;
        }
        let profile = sender.node.profiles().get(Some(bob_id)).await.unwrap();
        assert!(profile.unwrap().profile.encryption_key.is_some());
        peers.push(sender);
    }
    bob.drain();
    (relay, bob, peers)
}

async fn wait_custody(alice: &mut Peer) {
    alice.wait_custody().await;
}

/// Waits for Bob to read `text` and returns who wrote it.
async fn wait_message(bob: &mut Peer, text: &str) -> meshchat_node::crdt::PublicKey {
    bob.wait_for("the mail", |e| match e {
        Event::Message {
            message,
            outgoing: false,
            ..
        } if message.text == text => Some(message.author),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_sealed_mail_without_learning_who_deposited_it() {
    let (relay, mut alice, mut bob) = alice_bob_and_his_relay().await;
    bob.stop().await;

    let text = "sealed sender: from someone";
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, text).await.unwrap();
    wait_custody(&mut alice).await;
    let status = alice.node.network().status().await.unwrap();
    assert!(status.traffic.couriers_sent >= 1, "{:?}", status.traffic);
    let held = relay.node.network().status().await.unwrap();
    assert!(
        held.mailbox.unwrap().messages >= 1,
        "the relay holds the mail"
    );

    // The relay's disk, every file: Alice's key is nowhere, raw or as a
    // PeerId. (Her own disk holds it raw, in her changes: the search finds
    // it where it is.)
    let alice_key = key_of(&alice);
    let alice_id: PeerId = alice.peer_id();
    for needle in [alice_key.as_bytes().to_vec(), alice_id.to_bytes()] {
        assert_eq!(
            files_holding(relay.dir.root(), &needle),
            Vec::<std::path::PathBuf>::new()
        );
    }
    assert!(!files_holding(alice.dir.root(), alice_key.as_bytes()).is_empty());

    // Bob comes back and reads it, from Alice: the author inside the
    // sealed changes, not the depositor the relay saw.
    bob.restart().await;
    assert_eq!(wait_message(&mut bob, text).await, alice_key);
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_a_courier_could_not_deliver_is_deposited_again_later() {
    let (mut relay, mut alice, mut bob) = alice_bob_and_his_relay().await;
    bob.stop().await;
    relay.stop().await;

    let text = "sealed sender: the relay was down";
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, text).await.unwrap();
    // Couriers fail (nothing listens at the relay's address) ...
    let status = status_until(&alice, "a failed courier", |s| {
        s.traffic.couriers_failed >= 1
    })
    .await;
    assert!(status.outbox >= 1, "the mail waits in the outbox");
    // ... and once the relay is back, one delivers the mail.
    relay.restart().await;
    wait_custody(&mut alice).await;
    bob.restart().await;
    assert_eq!(wait_message(&mut bob, text).await, key_of(&alice));
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_mail_from_a_blocked_author_is_dropped_and_the_rest_arrives() {
    let (relay, mut bob, mut senders) = bob_and_his_relay(&["alice", "carol"]).await;
    let (mut carol, mut alice) = (senders.pop().unwrap(), senders.pop().unwrap());
    bob.node
        .contacts()
        .set_blocked(carol.peer_id(), true)
        .await
        .unwrap();
    bob.stop().await;

    // Carol does not know; she still holds Bob's token, and the relay
    // cannot tell her courier from Alice's.
    let (from_alice, from_carol) = ("sealed sender: from alice", "sealed sender: from carol");
    for (sender, text) in [(&mut alice, from_alice), (&mut carol, from_carol)] {
        let chat = sender.node.chats().direct(bob.peer_id()).await.unwrap();
        sender.node.chats().send(chat, text).await.unwrap();
        wait_custody(sender).await;
        let status = sender.node.network().status().await.unwrap();
        assert!(status.traffic.couriers_sent >= 1, "{:?}", status.traffic);
        // Gone, so nothing but the relay's copy can reach Bob.
        sender.stop().await;
    }

    // Bob fetches both in one page: Alice's message arrives, from her ...
    bob.restart().await;
    assert_eq!(wait_message(&mut bob, from_alice).await, key_of(&alice));
    status_until(&relay, "bob's mailbox emptied", |s| {
        s.mailbox.as_ref().is_some_and(|m| m.messages == 0)
    })
    .await;
    // ... and of Carol's nothing was kept: unblocked, it is not there.
    bob.node
        .contacts()
        .set_blocked(carol.peer_id(), false)
        .await
        .unwrap();
    let chat = bob.node.chats().direct(carol.peer_id()).await.unwrap();
    assert!(!bob.texts(chat).await.contains(&from_carol.to_owned()));
    relay.stop().await;
    bob.stop().await;
}

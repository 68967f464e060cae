//! End-to-end encryption between real nodes on loopback: safety numbers and
//! encryption keys in profiles.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_node::{
    control::{call, ControlRequest},
    crdt::e2e::DeviceKey,
    Event, PeerId, SafetyNumberReport,
};
use meshchat_tests::Peer;

/// `of`'s encryption key as `peer` holds it, waiting for `of`'s profile to
/// arrive if it has not yet.
async fn encryption_key_of(peer: &mut Peer, of: PeerId) -> Option<DeviceKey> {
    let held = peer.node.profiles().get(Some(of)).await.unwrap();
    if held.is_none() {
        peer.wait_for("the peer's profile", |e| match e {
            Event::ProfileChanged { peer } if *peer == of => Some(()),
            _ => None,
        })
        .await;
    }
    let profile = peer.node.profiles().get(Some(of)).await.unwrap().unwrap();
    profile.profile.encryption_key
}

async fn verify(peer: &Peer, name: &str) -> SafetyNumberReport {
    let json = call(
        &peer.node,
        ControlRequest::ContactsVerify {
            peer: name.to_owned(),
        },
    )
    .await
    .unwrap();
    serde_json::from_value(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_show_the_same_safety_number_and_hold_each_others_encryption_key() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let carol = Peer::start("carol").await;
    alice.add(&bob).await;
    alice.add_one_way(&carol).await;

    // Each side's profile, with its encryption key, reached the other.
    let bobs_key = encryption_key_of(&mut alice, bob.peer_id()).await;
    let alices_key = encryption_key_of(&mut bob, alice.peer_id()).await;
    assert!(bobs_key.is_some() && alices_key.is_some());
    assert_ne!(bobs_key, alices_key);

    let at_alice = verify(&alice, "bob").await;
    let at_bob = verify(&bob, "alice").await;
    assert_eq!(at_alice.safety_number, at_bob.safety_number);
    assert_eq!(at_alice.digits.len(), 60);
    assert_eq!(at_alice.safety_number.split(' ').count(), 12);
    assert_eq!(at_alice.peer, bob.peer_id());
    assert_eq!(at_bob.peer, alice.peer_id());
    // What each holds of the other is what the other publishes.
    assert_eq!(at_alice.their_encryption_key, at_bob.my_encryption_key);
    assert_eq!(at_bob.their_encryption_key, at_alice.my_encryption_key);
    assert_eq!(at_alice.their_encryption_key, bobs_key);

    // Another identity, another number.
    let with_carol = verify(&alice, "carol").await;
    assert_ne!(with_carol.safety_number, at_alice.safety_number);

    // A restart keeps the keys: the same number and the same encryption key.
    bob.restart().await;
    let again = verify(&bob, "alice").await;
    assert_eq!(again.safety_number, at_bob.safety_number);
    assert_eq!(again.my_encryption_key, at_bob.my_encryption_key);
}

//! Things a user notices within a second or two, not at the next periodic
//! tick: a new contact on a live connection shows online, and mail for an
//! offline contact is in a relay's custody as soon as the dial fails. The
//! ticks are set to an hour here, so only the prompt path can pass.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_node::{Event, NodeConfig};
use meshchat_tests::Peer;

/// Redials, heartbeats and resyncs once an hour: nothing periodic helps.
fn no_ticks() -> NodeConfig {
    NodeConfig {
        redial_secs: 3600,
        presence_secs: 3600,
        resync_secs: 3600,
        ..NodeConfig::loopback()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_added_on_a_live_connection_shows_online_at_once() {
    let mut alice = Peer::start_with("alice", no_ticks()).await;
    let bob = Peer::start_with("bob", no_ticks()).await;
    // Alice adds Bob and connects; to Bob she is not a contact yet, so he
    // sends her no heartbeat.
    alice.add_one_way(&bob).await;
    let bob_id = bob.peer_id();
    alice
        .wait_for("a connection to bob", |e| match e {
            Event::PeerConnected { peer } if *peer == bob_id => Some(()),
            _ => None,
        })
        .await;
    // Bob adds Alice over the connection that is up.
    bob.add_one_way(&alice).await;
    alice
        .wait_for("bob online", |e| match e {
            Event::Presence {
                peer, online: true, ..
            } if *peer == bob_id => Some(()),
            _ => None,
        })
        .await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_an_offline_contact_is_deposited_when_the_dial_fails() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr],
            ..no_ticks()
        },
    )
    .await;
    let invite = bob.node.contacts().invite().await.unwrap();
    let mut alice = Peer::start_with("alice", no_ticks()).await;
    bob.add_one_way(&alice).await;
    bob.stop().await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice
        .node
        .chats()
        .send(chat, "are you there?")
        .await
        .unwrap();
    // Bob's port is closed: the dial fails, the relay takes custody.
    alice.wait_custody().await;
    alice.stop().await;
    relay.stop().await;
}

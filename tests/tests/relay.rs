//! Store-and-forward through a relay: the recipient is offline when the
//! sender writes, the sender is offline when the recipient comes back.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{within, Peer};
use meshchat_node::{mailbox::MailboxConfig, DeliveryState, Event, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_at_the_relay_while_both_ends_take_turns_offline() {
    let relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(MailboxConfig::default()),
            ..NodeConfig::loopback()
        },
    )
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    let mut bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr.clone()],
            ..NodeConfig::loopback()
        },
    )
    .await;
    let bob_addrs = bob.addrs().await;
    bob.stop().await;

    let mut alice = Peer::start("alice").await;
    alice
        .node
        .add_contact_with_relays(
            bob.peer_id(),
            Some("bob".into()),
            bob_addrs,
            vec![relay_addr],
        )
        .await
        .unwrap();
    let chat = alice.node.direct_chat(bob.peer_id()).await.unwrap();
    for text in ["one", "two", "three"] {
        alice.node.send(chat, text).await.unwrap();
    }
    // Bob is offline: the relay takes custody and the messages become `sent`.
    for _ in 0..3 {
        alice
            .wait_for("custody at the relay", |e| match e {
                Event::Delivery {
                    state: DeliveryState::Sent,
                    ..
                } => Some(()),
                _ => None,
            })
            .await;
    }
    assert!(alice
        .history(chat)
        .await
        .iter()
        .all(|e| e.delivery == Some(DeliveryState::Sent)));
    assert_eq!(
        relay.node.status().await.unwrap().mailbox.unwrap().messages,
        1,
        "one deposit carried the three changes"
    );
    alice.stop().await;

    // Bob comes back while Alice is away: his relay hands him the mail.
    bob.restart().await;
    let mut got = bob.wait_messages(3).await;
    got.sort();
    assert_eq!(got, vec!["one", "three", "two"]);
    // Bob acknowledged after storing: the relay forgets it.
    within("the relay to drop acknowledged mail", async {
        while relay.node.status().await.unwrap().mailbox.unwrap().messages > 0 {
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

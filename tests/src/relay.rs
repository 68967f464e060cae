//! A meshchat relay for benches (its quotas lifted so a bench can fill it),
//! delivery tokens for it, and a returning peer that fetches the mail queued
//! for it there: shared by the `relay` and `prosody` benches.

use std::time::{Duration, Instant};

use meshchat_node::{
    crdt::{ChatId, ChatKind, ChatReplica, Identity, PublicKey, SignedChange},
    mailbox::{DeliveryToken, MailboxConfig},
    protocol::{encode_frame, Envelope, MailboxCodec, MAILBOX_PROTOCOL},
    DataDir, Event, Multiaddr, Node, NodeConfig,
};
use tempfile::TempDir;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    client::{Deposit, MailboxClient},
    net::{peer_of, Net},
};

/// A relay's config with every deposit quota out of a bench's way.
pub fn bench_relay_config() -> NodeConfig {
    NodeConfig {
        mailbox: Some(MailboxConfig {
            deposits_per_sender_per_minute: u32::MAX,
            deposits_per_token_per_minute: u32::MAX,
            max_messages_per_recipient: 1_000_000,
            max_bytes_per_recipient: 1 << 34,
            max_total_bytes: 1 << 40,
            ..MailboxConfig::default()
        }),
        ..NodeConfig::loopback()
    }
}

/// `recipient`'s delivery token for the relay at `relay` (an address ending
/// in `/p2p/<id>`), valid forever.
pub fn token(recipient: &Identity, relay: &Multiaddr) -> DeliveryToken {
    let relay = peer_of(relay).expect("relay address with /p2p");
    let relay = meshchat_node::public_key_of(&relay).expect("ed25519 relay");
    DeliveryToken::issue(recipient, Some(relay), None, i64::MAX)
}

/// Starts a relay with [`bench_relay_config`] in `tmp`/relay; returns it
/// with its first listen address.
pub async fn start_relay(tmp: &TempDir) -> (Node, Multiaddr) {
    let dir = DataDir::new(tmp.path().join("relay"));
    dir.init(None, &bench_relay_config()).expect("init relay");
    let relay = meshchat_node::spawn(&dir, bench_relay_config())
        .await
        .expect("spawn relay");
    let addr = relay.network().status().await.expect("status").listen_addrs[0].clone();
    (relay, addr)
}

/// `n` signed one-message changes from `alice` in her direct chat with
/// `bob`, as her node would write them.
pub fn write_messages(alice: &Identity, bob: PublicKey, n: usize) -> Vec<SignedChange> {
    let mut chat = ChatReplica::new(ChatKind::direct(alice.public(), bob));
    let t0 = 1_700_000_000_000;
    (0..n)
        .map(|i| {
            chat.write_message(
                alice,
                &format!("message {i}: a line of ordinary chat text"),
                None,
                t0 + i as i64,
            )
            .expect("write")
            .change
        })
        .collect()
}

/// What [`returning_peer_fetch`] measured, and what it queued.
pub struct Fetched {
    /// From spawning the returning node until its last message was applied.
    pub elapsed: Duration,
    /// From spawning the returning node until `spawn` returned (data dir
    /// opened, swarm listening).
    pub started: Duration,
    /// From spawning the returning node until its first message was applied.
    pub first: Duration,
    /// The changes queued, in writing order.
    pub changes: Vec<SignedChange>,
    /// The envelopes deposited at the relay, one change each.
    pub envelopes: Vec<Deposit>,
}

/// A returning peer's catch-up: Bob (a node with Alice as a contact) is
/// offline while a bare client deposits `n` of Alice's messages for him at
/// a fresh relay, `window` requests in flight; then Bob's node starts with
/// that relay configured and the clock runs until it has emitted an
/// `Event::Message` for every one (fetched, verified, applied, stored).
/// Every wait is bounded by `limit`.
pub async fn returning_peer_fetch(n: usize, window: usize, limit: Duration) -> Fetched {
    let tmp = tempfile::tempdir().expect("tmp");
    let (relay, relay_addr) = start_relay(&tmp).await;
    let bob_dir = DataDir::new(tmp.path().join("bob"));
    let bob_config = NodeConfig {
        relays: vec![relay_addr.clone()],
        ..NodeConfig::loopback()
    };
    bob_dir.init(Some("bob"), &bob_config).expect("init bob");
    let bob_identity = bob_dir.identity().expect("bob identity");
    let bob = bob_identity.public();
    let bob_token = token(&bob_identity, &relay_addr);
    let alice = Identity::generate();
    // Alice is Bob's contact: a stranger's mail is a message request, never
    // a shown message. Added while Bob knows no relay, so nothing is fetched
    // before the timed start.
    let setup = meshchat_node::spawn(&bob_dir, NodeConfig::loopback())
        .await
        .expect("spawn bob");
    let alice_peer = meshchat_node::peer_id_of(&alice.public()).expect("ed25519");
    setup
        .contacts()
        .add(alice_peer, Some("alice".into()), Vec::new())
        .await
        .expect("add alice");
    setup.shutdown().await;

    let changes = write_messages(&alice, bob, n);
    let envelopes: Vec<Deposit> = changes
        .iter()
        .map(|c| {
            (
                bob,
                encode_frame(&Envelope::Changes(vec![c.clone()])),
                bob_token.clone(),
            )
        })
        .collect();
    let mut depositor = MailboxClient::dial(
        alice.clone(),
        MailboxCodec,
        MAILBOX_PROTOCOL,
        Net::Loopback,
        relay_addr,
        limit,
    )
    .await;
    depositor.deposit_all(envelopes.clone(), window).await;
    drop(depositor);

    let started = Instant::now();
    let node = meshchat_node::spawn(&bob_dir, bob_config)
        .await
        .expect("spawn bob");
    let spawned = started.elapsed();
    let mut events = node.subscribe();
    let mut got = 0;
    let mut first = None;
    let chat = ChatId::direct(&alice.public(), &bob);
    tokio::time::timeout(limit, async {
        while got < n {
            match events.recv().await {
                Ok(Event::Message { .. }) => {
                    first.get_or_insert_with(|| started.elapsed());
                    got += 1;
                }
                Err(RecvError::Lagged(_)) => {
                    got = node
                        .chats()
                        .history_quiet(chat)
                        .await
                        .map_or(got, |h| h.len());
                }
                _ => {}
            }
        }
    })
    .await
    .expect("all mail applied in time");
    let elapsed = started.elapsed();
    node.shutdown().await;
    relay.shutdown().await;
    Fetched {
        elapsed,
        started: spawned,
        first: first.unwrap_or(elapsed),
        changes,
        envelopes,
    }
}

//! A relay's mailbox against strangers and abuse: only the owner reads or
//! acknowledges its mail, and every limit is an explicit refusal.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Peer, WAIT};
use futures::StreamExt;
use libp2p::{
    noise,
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, Swarm,
};
use meshchat_node::{
    crdt::{Identity, PublicKey},
    mailbox::{MailboxConfig, Refusal},
    protocol::{Inbound, MailboxCodec, MailboxRequest, MailboxResponse, MAILBOX_PROTOCOL},
    DeliveryState, Event, NodeConfig,
};

/// A bare mailbox client with its own identity, connected to the relay.
struct Client {
    identity: Identity,
    swarm: Swarm<request_response::Behaviour<MailboxCodec>>,
    relay: libp2p::PeerId,
}

impl Client {
    async fn connect(relay: &Peer) -> Self {
        let identity = Identity::generate();
        let key = libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_bytes()).unwrap();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    MailboxCodec,
                    [(MAILBOX_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default().with_request_timeout(WAIT),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT * 3))
            .build();
        swarm.dial(relay.addrs().await.remove(0)).unwrap();
        let target = relay.peer_id();
        tokio::time::timeout(WAIT, async {
            loop {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                    swarm.select_next_some().await
                {
                    if peer_id == target {
                        return;
                    }
                }
            }
        })
        .await
        .expect("connect to the relay");
        Self {
            identity,
            swarm,
            relay: target,
        }
    }

    fn key(&self) -> PublicKey {
        self.identity.public()
    }

    async fn ask(&mut self, request: MailboxRequest) -> MailboxResponse {
        let id = self
            .swarm
            .behaviour_mut()
            .send_request(&self.relay, Inbound::Request(request));
        tokio::time::timeout(WAIT, async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) if request_id == id => return response,
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) if request_id == id => panic!("request failed: {error}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("relay answered in time")
    }
}

async fn relay_with(limits: MailboxConfig) -> Peer {
    Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(limits),
            ..NodeConfig::loopback()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_reads_or_acknowledges_its_mail() {
    let relay = relay_with(MailboxConfig::default()).await;
    let mut alice = Client::connect(&relay).await;
    let mut bob = Client::connect(&relay).await;
    let mut mallory = Client::connect(&relay).await;
    let deposited = alice
        .ask(MailboxRequest::Deposit {
            recipient: bob.key(),
            envelope: b"for bob only".to_vec(),
        })
        .await;
    let MailboxResponse::Deposited(receipt) = deposited else {
        panic!("expected a receipt, got {deposited:?}");
    };
    receipt.verify().unwrap();
    assert_eq!(receipt.recipient, bob.key());
    // Mallory sees her own, empty mailbox, and cannot acknowledge bob's mail.
    assert_eq!(
        mallory
            .ask(MailboxRequest::Fetch {
                after: None,
                limit: 10
            })
            .await,
        MailboxResponse::Mail {
            items: vec![],
            more: false
        }
    );
    assert_eq!(
        mallory
            .ask(MailboxRequest::Ack {
                ids: (0..1000).collect()
            })
            .await,
        MailboxResponse::Acked { removed: 0 }
    );
    assert_eq!(
        relay.node.status().await.unwrap().mailbox.unwrap().messages,
        1
    );
    // Bob gets it, acknowledges it, and it is gone.
    let MailboxResponse::Mail { items, more: false } = bob
        .ask(MailboxRequest::Fetch {
            after: None,
            limit: 10,
        })
        .await
    else {
        panic!("expected mail");
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].envelope, b"for bob only");
    assert_eq!(items[0].sender, alice.key());
    assert_eq!(
        bob.ask(MailboxRequest::Ack {
            ids: vec![items[0].id]
        })
        .await,
        MailboxResponse::Acked { removed: 1 }
    );
    assert_eq!(
        relay.node.status().await.unwrap().mailbox.unwrap().messages,
        0
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_explicit_refusals() {
    let relay = relay_with(MailboxConfig {
        max_envelope_bytes: 100,
        max_messages_per_recipient: 1,
        deposits_per_sender_per_minute: 3,
        ..MailboxConfig::default()
    })
    .await;
    let mut alice = Client::connect(&relay).await;
    let bob = Identity::generate().public();
    let deposit = |envelope: Vec<u8>| MailboxRequest::Deposit {
        recipient: bob,
        envelope,
    };
    assert_eq!(
        alice.ask(deposit(vec![0; 101])).await,
        MailboxResponse::Refused(Refusal::TooLarge {
            size: 101,
            limit: 100
        })
    );
    assert!(matches!(
        alice.ask(deposit(vec![1])).await,
        MailboxResponse::Deposited(_)
    ));
    assert_eq!(
        alice.ask(deposit(vec![2])).await,
        MailboxResponse::Refused(Refusal::QuotaExceeded)
    );
    assert!(matches!(
        alice.ask(deposit(vec![3])).await,
        MailboxResponse::Refused(Refusal::RateLimited { .. })
    ));
    let metrics = relay.node.status().await.unwrap().relay.unwrap();
    assert_eq!(
        (
            metrics.deposits,
            metrics.refused_too_large,
            metrics.refused_quota,
            metrics.refused_rate
        ),
        (1, 1, 1, 1)
    );
    // A peer that is not a relay says so.
    let plain = Peer::start("plain").await;
    let mut client = Client::connect(&plain).await;
    assert_eq!(
        client.ask(deposit(vec![4])).await,
        MailboxResponse::NotARelay
    );
    plain.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deposit_keeps_the_message_pending_until_delivered() {
    // The relay only takes tiny envelopes: alice's deposit is refused.
    let relay = relay_with(MailboxConfig {
        max_envelope_bytes: 16,
        ..MailboxConfig::default()
    })
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    let mut bob = Peer::start("bob").await;
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
    alice
        .node
        .send(chat, "too big for that relay")
        .await
        .unwrap();
    common::within("the relay's refusal", async {
        while relay
            .node
            .status()
            .await
            .unwrap()
            .relay
            .unwrap()
            .refused_too_large
            == 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        alice.history(chat).await[0].delivery,
        Some(DeliveryState::Pending)
    );
    // Bob comes back: the message is delivered directly after all.
    bob.restart().await;
    assert_eq!(bob.wait_messages(1).await, vec!["too big for that relay"]);
    alice
        .wait_for("the delivery", |e| match e {
            Event::Delivery {
                state: DeliveryState::Delivered,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
    for p in [&relay, &alice, &bob] {
        p.stop().await;
    }
}

/// A bare Kademlia node speaking meshchat's DHT protocol.
fn kad_swarm(
    identity: &Identity,
) -> Swarm<libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>> {
    let key = libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_bytes()).unwrap();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut behaviour = libp2p::kad::Behaviour::with_config(
                id,
                libp2p::kad::store::MemoryStore::new(id),
                libp2p::kad::Config::new(libp2p::StreamProtocol::new("/meshchat/kad/1")),
            );
            behaviour.set_mode(Some(libp2p::kad::Mode::Client));
            behaviour
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_keeps_only_genuine_profile_records_in_its_dht() {
    use libp2p::kad::{self, GetRecordOk, QueryResult, Quorum, Record, RecordKey};
    use meshchat_node::protocol::{profile_dht_key, Profile};

    let mut relay = relay_with(MailboxConfig::default()).await;
    let relay_addr = relay.addrs().await.remove(0);
    let mallory = Identity::generate();
    let alice = Identity::generate();
    let mut swarm = kad_swarm(&mallory);
    swarm
        .behaviour_mut()
        .add_address(&relay.peer_id(), relay_addr);
    let profile = |name: &str| Profile {
        name: Some(name.into()),
        version: 1,
        ..Profile::default()
    };
    // Mallory's signature filed under Alice's key, and garbage under Alice's key.
    let mut forged = profile("alice").sign(&mallory).unwrap();
    forged.peer = alice.public();
    let alice_key = profile_dht_key(&alice.public());
    for value in [forged.to_bytes(), b"not a profile".to_vec()] {
        swarm
            .behaviour_mut()
            .put_record(Record::new(alice_key.clone(), value), Quorum::One)
            .unwrap();
    }
    // Then Mallory's genuine own record, which the relay does keep.
    let own = profile("mallory").sign(&mallory).unwrap();
    swarm
        .behaviour_mut()
        .put_record(
            Record::new(profile_dht_key(&mallory.public()), own.to_bytes()),
            Quorum::One,
        )
        .unwrap();
    let mallory_id = meshchat_node::peer_id_of(&mallory.public()).unwrap();
    let drive = async {
        loop {
            swarm.select_next_some().await;
        }
    };
    tokio::select! {
        _ = drive => unreachable!(),
        _ = relay.wait_for("mallory's genuine record", |e| {
            matches!(e, Event::ProfileRecordStored { peer } if *peer == mallory_id).then_some(())
        }) => {}
    }
    // Nothing was stored under Alice's key (kad keeps a local copy of what
    // it puts: drop it so the lookup asks the relay).
    swarm
        .behaviour_mut()
        .remove_record(&RecordKey::new(&alice_key));
    let query = swarm.behaviour_mut().get_record(RecordKey::new(&alice_key));
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetRecord(result),
                step,
                ..
            }) = swarm.select_next_some().await
            {
                if id != query {
                    continue;
                }
                if let Ok(GetRecordOk::FoundRecord(_)) = result {
                    return true;
                }
                if step.last {
                    return false;
                }
            }
        }
    })
    .await
    .expect("the lookup ends");
    assert!(!found, "the relay stored a forged profile record");
    relay.stop().await;
}

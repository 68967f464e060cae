//! A relay's mailbox against strangers and abuse: only the owner reads or
//! acknowledges its mail, only the recipient's token opens it, every limit
//! is an explicit refusal; and a sender against a lying or forgetful world:
//! receipts that do not match are not custody, a restart deposits nothing
//! twice.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use libp2p::{
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
    Swarm,
};
use meshchat_node::{
    crdt::{Identity, PublicKey},
    mailbox::{DeliveryToken, MailboxConfig, Refusal, TokenError},
    protocol::{Inbound, MailboxCodec, MailboxRequest, MailboxResponse, MAILBOX_PROTOCOL},
    DeliveryState, Event, NodeConfig,
};
use meshchat_tests::{
    net::{bare_swarm, keypair_of, listen},
    BareClient, MailboxClient, Net, Peer, WAIT,
};

/// A token from `recipient` for `relay`, valid for a long time.
fn token_for(recipient: &Identity, relay: &Peer) -> DeliveryToken {
    let relay = meshchat_node::public_key_of(&relay.peer_id()).unwrap();
    DeliveryToken::issue(recipient, Some(relay), None, i64::MAX)
}

fn deposit(recipient: PublicKey, envelope: &[u8], token: Option<DeliveryToken>) -> MailboxRequest {
    MailboxRequest::Deposit {
        recipient,
        envelope: envelope.to_vec(),
        token,
    }
}

/// A bare mailbox client with its own identity, connected to the relay,
/// whose requests must be answered.
struct Client(MailboxClient);

impl Client {
    async fn connect(relay: &Peer) -> Self {
        let identity = Identity::generate();
        Self(BareClient::connect_on(identity, MailboxCodec, relay, MAILBOX_PROTOCOL).await)
    }

    fn identity(&self) -> &Identity {
        &self.0.identity
    }

    fn key(&self) -> PublicKey {
        self.0.public()
    }

    async fn ask(&mut self, request: MailboxRequest) -> MailboxResponse {
        self.0.ask(request).await.expect("the relay answers")
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
    let token = token_for(bob.identity(), &relay);
    let deposited = alice
        .ask(deposit(bob.key(), b"for bob only", Some(token)))
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
        relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .mailbox
            .unwrap()
            .messages,
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
        relay
            .node
            .network()
            .status()
            .await
            .unwrap()
            .mailbox
            .unwrap()
            .messages,
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
    let bob = Identity::generate();
    let token = token_for(&bob, &relay);
    let deposit = |envelope: Vec<u8>| deposit(bob.public(), &envelope, Some(token.clone()));
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
    let metrics = relay.node.network().status().await.unwrap().relay.unwrap();
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
    // Bob's invite, naming the relay: it carries his encryption key, without
    // which alice would deposit nothing (mail rests at relays only sealed).
    let mut invite = bob.node.contacts().invite().await.unwrap();
    invite.relays = vec![relay_addr];
    let mut alice = Peer::start("alice").await;
    bob.add_one_way(&alice).await;
    bob.stop().await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, None)
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice
        .node
        .chats()
        .send(chat, "too big for that relay")
        .await
        .unwrap();
    meshchat_tests::within("the relay's refusal", async {
        while relay
            .node
            .network()
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
    bare_swarm(keypair_of(identity), Net::Loopback, WAIT, |key| {
        let id = key.public().to_peer_id();
        let mut behaviour = libp2p::kad::Behaviour::with_config(
            id,
            libp2p::kad::store::MemoryStore::new(id),
            libp2p::kad::Config::new(libp2p::StreamProtocol::new("/meshchat/kad/1")),
        );
        behaviour.set_mode(Some(libp2p::kad::Mode::Client));
        behaviour
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_without_a_token_fills_nothing() {
    let relay = relay_with(MailboxConfig::default()).await;
    let mut mallory = Client::connect(&relay).await;
    let bob = Identity::generate();
    let me = meshchat_node::public_key_of(&relay.peer_id()).unwrap();
    let mut forged = DeliveryToken::issue(mallory.identity(), Some(me), None, i64::MAX);
    forged.recipient = bob.public();
    let attempts = [
        (None, TokenError::Missing),
        (Some(forged), TokenError::BadSignature),
        (
            Some(DeliveryToken::issue(&bob, Some(me), None, 1_000)),
            TokenError::Expired,
        ),
        (
            Some(DeliveryToken::issue(
                &bob,
                Some(Identity::generate().public()),
                None,
                i64::MAX,
            )),
            TokenError::WrongRelay,
        ),
        // Mallory's own token opens only Mallory's mailbox.
        (
            Some(token_for(mallory.identity(), &relay)),
            TokenError::WrongRecipient,
        ),
    ];
    let tries = attempts.len() as u64;
    for (token, error) in attempts {
        assert_eq!(
            mallory.ask(deposit(bob.public(), b"junk", token)).await,
            MailboxResponse::Refused(Refusal::Unauthorized(error))
        );
    }
    let status = relay.node.network().status().await.unwrap();
    assert_eq!(status.mailbox.unwrap().messages, 0);
    assert_eq!(status.mailbox.unwrap().bytes, 0);
    let metrics = status.relay.unwrap();
    assert_eq!((metrics.deposits, metrics.refused_token), (0, tries));
    // Bob's token, in anyone's hands, opens Bob's mailbox.
    assert!(matches!(
        mallory
            .ask(deposit(bob.public(), b"hi", Some(token_for(&bob, &relay))))
            .await,
        MailboxResponse::Deposited(_)
    ));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_deposit_is_stored_once() {
    let relay = relay_with(MailboxConfig::default()).await;
    let mut alice = Client::connect(&relay).await;
    let bob = Identity::generate();
    let token = token_for(&bob, &relay);
    let first = alice
        .ask(deposit(bob.public(), b"same envelope", Some(token.clone())))
        .await;
    let again = alice
        .ask(deposit(bob.public(), b"same envelope", Some(token)))
        .await;
    let MailboxResponse::Deposited(receipt) = &first else {
        panic!("expected a receipt, got {first:?}");
    };
    // The receipt for the copy held, expiry and all.
    assert_eq!(again, first);
    receipt.verify().unwrap();
    let status = relay.node.network().status().await.unwrap();
    assert_eq!(status.mailbox.unwrap().messages, 1);
    let metrics = status.relay.unwrap();
    assert_eq!((metrics.deposits, metrics.duplicates), (1, 1));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_refuses_with_a_clear_error() {
    let relay = relay_with(MailboxConfig {
        max_total_bytes: 100,
        ..MailboxConfig::default()
    })
    .await;
    let mut alice = Client::connect(&relay).await;
    let (bob, carol) = (Identity::generate(), Identity::generate());
    assert!(matches!(
        alice
            .ask(deposit(
                bob.public(),
                &[1; 60],
                Some(token_for(&bob, &relay))
            ))
            .await,
        MailboxResponse::Deposited(_)
    ));
    let refused = alice
        .ask(deposit(
            carol.public(),
            &[2; 60],
            Some(token_for(&carol, &relay)),
        ))
        .await;
    let MailboxResponse::Refused(refusal) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(refusal, Refusal::RelayFull { limit: 100 });
    assert!(
        refusal.to_string().contains("storage for mail is full"),
        "{refusal}"
    );
    let status = relay.node.network().status().await.unwrap();
    assert_eq!(status.mailbox.unwrap().bytes, 60);
    assert_eq!(status.relay.unwrap().refused_full, 1);
    relay.stop().await;
}

/// How a [`FakeRelay`] answers deposits.
#[derive(Debug, Clone, Copy)]
enum Receipts {
    /// A receipt for what was deposited.
    Honest,
    /// A genuine receipt, for someone else's mailbox.
    ForAnotherRecipient,
    /// A genuine receipt, for another envelope.
    ForAnotherEnvelope,
}

/// A deposit as a relay saw it.
struct Seen {
    recipient: PublicKey,
    /// The envelope, sealed to the recipient.
    envelope: Vec<u8>,
    token: Option<DeliveryToken>,
    /// It came in a `DepositBatch`.
    batched: bool,
}

/// A bare libp2p node speaking the mailbox protocol as a relay: it records
/// every deposit and answers with the receipts it is told to.
struct FakeRelay {
    identity: Identity,
    addr: libp2p::Multiaddr,
    deposits: tokio::sync::mpsc::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRelay {
    async fn start(receipts: Receipts) -> Self {
        Self::start_gated(receipts, None).await
    }

    /// A relay that listens but answers nothing (not even the handshake)
    /// until `gate` opens.
    async fn start_gated(
        receipts: Receipts,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Self {
        use meshchat_node::{mailbox::CustodyReceipt, protocol::DepositOutcome};
        let identity = Identity::generate();
        let mut swarm = bare_swarm(keypair_of(&identity), Net::Loopback, WAIT * 3, |_| {
            request_response::Behaviour::with_codec(
                MailboxCodec,
                [(MAILBOX_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(WAIT),
            )
        });
        let me = *swarm.local_peer_id();
        let addr = listen(&mut swarm, Net::Loopback)
            .await
            .with(libp2p::multiaddr::Protocol::P2p(me));
        let (tx, deposits) = tokio::sync::mpsc::channel(1024);
        let signer = identity.clone();
        let task = tokio::spawn(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            loop {
                let SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                }) = swarm.select_next_some().await
                else {
                    continue;
                };
                let take = |recipient: PublicKey, envelope: Vec<u8>, token, batched| {
                    let until = i64::MAX / 2;
                    let receipt = match receipts {
                        Receipts::Honest => {
                            CustodyReceipt::issue(&signer, recipient, &envelope, until)
                        }
                        Receipts::ForAnotherRecipient => CustodyReceipt::issue(
                            &signer,
                            Identity::generate().public(),
                            &envelope,
                            until,
                        ),
                        Receipts::ForAnotherEnvelope => {
                            CustodyReceipt::issue(&signer, recipient, b"another", until)
                        }
                    };
                    let _ = tx.try_send(Seen {
                        recipient,
                        envelope,
                        token,
                        batched,
                    });
                    receipt
                };
                let response = match request {
                    Inbound::Request(MailboxRequest::Deposit {
                        recipient,
                        envelope,
                        token,
                    }) => MailboxResponse::Deposited(take(recipient, envelope, token, false)),
                    Inbound::Request(MailboxRequest::DepositBatch { deposits }) => {
                        MailboxResponse::DepositedBatch {
                            outcomes: deposits
                                .into_iter()
                                .map(|d| {
                                    DepositOutcome::Deposited(take(
                                        d.recipient,
                                        d.envelope,
                                        d.token,
                                        true,
                                    ))
                                })
                                .collect(),
                        }
                    }
                    Inbound::Request(MailboxRequest::Fetch { .. }) => MailboxResponse::Mail {
                        items: vec![],
                        more: false,
                    },
                    Inbound::Request(MailboxRequest::Ack { .. }) => {
                        MailboxResponse::Acked { removed: 0 }
                    }
                    _ => MailboxResponse::Noted,
                };
                let _ = swarm.behaviour_mut().send_response(channel, response);
            }
        });
        Self {
            identity,
            addr,
            deposits,
            task,
        }
    }

    fn key(&self) -> PublicKey {
        self.identity.public()
    }

    fn peer_id(&self) -> libp2p::PeerId {
        meshchat_node::peer_id_of(&self.key()).unwrap()
    }

    async fn next_deposit(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.deposits.recv())
            .await
            .expect("a deposit in time")
            .expect("relay running")
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bob, whose mail is kept at `relays`, hands out his invite and goes offline.
async fn offline_bob(relays: &[&FakeRelay]) -> (Peer, meshchat_node::invite::Invite) {
    let bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: relays.iter().map(|r| r.addr.clone()).collect(),
            ..NodeConfig::loopback()
        },
    )
    .await;
    let invite = bob.node.contacts().invite().await.unwrap();
    assert_eq!(invite.tokens.len(), relays.len());
    bob.stop().await;
    (bob, invite)
}

fn is_sent_to(peer: libp2p::PeerId) -> impl Fn(&Event) -> Option<()> {
    move |e| match e {
        Event::Delivery {
            state: DeliveryState::Sent,
            peer: p,
            ..
        } if *p == peer => Some(()),
        _ => None,
    }
}

impl Seen {
    /// How many changes the envelope holds, opened with `recipient`'s keys
    /// (the relay itself cannot read it).
    fn changes(&self, recipient: &Peer) -> usize {
        let keys = recipient.dir.device_keys().unwrap();
        meshchat_node::protocol::open_envelope(&self.envelope, &self.recipient, &keys)
            .expect("the envelope opens for its recipient")
            .len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_restart_deposits_nothing_twice() {
    let mut relay = FakeRelay::start(Receipts::Honest).await;
    let (bob, invite) = offline_bob(&[&relay]).await;
    let bob_key = meshchat_node::public_key_of(&bob.peer_id()).unwrap();
    let mut alice = Peer::start("alice").await;
    let alice_key = meshchat_node::public_key_of(&alice.peer_id()).unwrap();
    alice
        .node
        .contacts()
        .add_from_invite(invite, None)
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    for text in ["one", "two", "three"] {
        alice.node.chats().send(chat, text).await.unwrap();
    }
    for _ in 0..3 {
        alice.wait_for("custody", is_sent_to(bob.peer_id())).await;
    }
    // The relay has every change once, each deposit with Bob's token.
    let mut changes = 0;
    while let Ok(seen) = relay.deposits.try_recv() {
        assert_eq!(seen.recipient, bob_key);
        let token = seen.token.clone().expect("deposits carry bob's token");
        token.admits(&bob_key, &relay.key(), &alice_key, 0).unwrap();
        assert!(
            meshchat_node::protocol::decode_frame::<meshchat_node::protocol::Envelope>(
                &seen.envelope
            )
            .is_ok_and(|e| matches!(e, meshchat_node::protocol::Envelope::Sealed { .. })),
            "mail reaches the relay sealed"
        );
        changes += seen.changes(&bob);
    }
    assert_eq!(changes, 3);

    // Alice restarts with the three still undelivered, then writes a fourth.
    alice.restart().await;
    alice.node.chats().send(chat, "four").await.unwrap();
    alice
        .wait_for("custody of the fourth", is_sent_to(bob.peer_id()))
        .await;
    let next = relay.next_deposit().await;
    assert_eq!(next.changes(&bob), 1, "only the new change is deposited");
    assert!(
        relay.deposits.try_recv().is_err(),
        "nothing else was deposited"
    );
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waiting_for_a_relay_leaves_in_one_batch() {
    let (open, gate) = tokio::sync::oneshot::channel();
    let mut relay = FakeRelay::start_gated(Receipts::Honest, Some(gate)).await;
    let (bob, invite) = offline_bob(&[&relay]).await;
    let mut alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, None)
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    // Eight near-maximal texts that do not compress: more than one
    // envelope's worth, written while the relay does not answer yet.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..8 {
        let text: String = (0..60_000)
            .map(|_| {
                // xorshift: letters that do not compress.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect();
        alice.node.chats().send(chat, &text).await.unwrap();
    }
    open.send(()).unwrap();
    for _ in 0..8 {
        alice.wait_for("custody", is_sent_to(bob.peer_id())).await;
    }
    let mut seen = Vec::new();
    while let Ok(deposit) = relay.deposits.try_recv() {
        seen.push((deposit.changes(&bob), deposit.batched));
    }
    assert_eq!(seen.iter().map(|(changes, _)| changes).sum::<usize>(), 8);
    // The first message leaves at once (by courier, which waits for the
    // relay); what is written while it is out waits for it and then leaves
    // in batches.
    assert!(
        seen.len() >= 3 && seen[1..].iter().all(|(_, batched)| *batched),
        "expected envelopes in batches: {seen:?}"
    );
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_something_else_is_not_custody() {
    let wrong_recipient = FakeRelay::start(Receipts::ForAnotherRecipient).await;
    let wrong_envelope = FakeRelay::start(Receipts::ForAnotherEnvelope).await;
    let honest = FakeRelay::start(Receipts::Honest).await;
    let (bob, invite) = offline_bob(&[&wrong_recipient, &wrong_envelope, &honest]).await;
    let mut alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, None)
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, "hello").await.unwrap();
    let liars = [wrong_recipient.peer_id(), wrong_envelope.peer_id()];
    let (mut rejected, mut sent) = (Vec::new(), false);
    while rejected.len() < 2 || !sent {
        let bob_id = bob.peer_id();
        match alice
            .wait_for("rejected receipts and custody", |e| match e {
                Event::Rejected { peer, reason } if liars.contains(peer) => {
                    Some(Some((*peer, reason.clone())))
                }
                Event::Delivery {
                    state: DeliveryState::Sent,
                    peer,
                    ..
                } if *peer == bob_id => Some(None),
                _ => None,
            })
            .await
        {
            Some(liar) => rejected.push(liar),
            None => sent = true,
        }
    }
    rejected.sort();
    let mut expected = vec![
        (
            liars[0],
            "custody receipt for another recipient".to_string(),
        ),
        (liars[1], "custody receipt for another envelope".to_string()),
    ];
    expected.sort();
    assert_eq!(rejected, expected);
    // Only the honest relay counts as holding the message.
    let history = alice.history(chat).await;
    let info = alice
        .node
        .chats()
        .message_info(chat, history[0].message.id)
        .await
        .unwrap();
    let holders: Vec<PublicKey> = info.recipients[0].held_by.iter().map(|h| h.0).collect();
    assert_eq!(holders, vec![honest.key()]);
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_dht_records_do_not_push_out_a_clients_record() {
    use libp2p::kad::{Quorum, Record};
    use meshchat_node::protocol::{profile_dht_key, Profile};

    let mut relay = relay_with(MailboxConfig {
        dht_max_records: 4,
        ..MailboxConfig::default()
    })
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    // Bob uses the relay (mail, circuit) and publishes his profile there.
    let mut bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr.clone()],
            ..NodeConfig::loopback()
        },
    )
    .await;
    let bob_id = bob.peer_id();
    relay
        .wait_for("bob's record", |e| {
            matches!(e, Event::ProfileRecordStored { peer } if *peer == bob_id).then_some(())
        })
        .await;
    bob.wait_for("bob's circuit reservation", |e| match e {
        Event::Listening { addr } if addr.to_string().contains("/p2p-circuit/") => Some(()),
        _ => None,
    })
    .await;
    // Bob goes offline (he would answer lookups of his own record himself);
    // he stays a client of the relay.
    bob.stop().await;

    // Mallory: ten fresh keys, each with a genuine record, then a padded and
    // an oversize one.
    let mallory = Identity::generate();
    let mallory_id = meshchat_node::peer_id_of(&mallory.public()).unwrap();
    let mut swarm = kad_swarm(&mallory);
    swarm
        .behaviour_mut()
        .add_address(&relay.peer_id(), relay_addr);
    let profile = Profile {
        name: Some("junk".into()),
        version: 1,
        ..Profile::default()
    };
    let mut junk = Vec::new();
    for _ in 0..10 {
        let key = Identity::generate();
        junk.push(meshchat_node::peer_id_of(&key.public()).unwrap());
        let record = profile.sign(&key).unwrap();
        swarm
            .behaviour_mut()
            .put_record(
                Record::new(profile_dht_key(&key.public()), record.to_bytes()),
                Quorum::One,
            )
            .unwrap();
    }
    let padder = Identity::generate();
    let padded_key = profile_dht_key(&padder.public());
    let mut padded = profile.sign(&padder).unwrap().to_bytes();
    // The signed map with a fourth, unsigned entry: "padding" → 64 bytes.
    assert_eq!(padded[0], 0xa3);
    padded[0] = 0xa4;
    padded.extend_from_slice(b"\x67padding\x58\x40");
    padded.extend_from_slice(&[0; 64]);
    let oversize_key = profile_dht_key(&Identity::generate().public());
    for (key, value) in [(padded_key.clone(), padded), (oversize_key, vec![0; 6000])] {
        swarm
            .behaviour_mut()
            .put_record(Record::new(key, value), Quorum::One)
            .unwrap();
    }
    let drive = async {
        loop {
            swarm.select_next_some().await;
        }
    };
    let (mut stored, mut refused) = (0, 0);
    tokio::select! {
        _ = drive => unreachable!(),
        _ = async {
            while stored < junk.len() || refused < 2 {
                let stored_now = relay
                    .wait_for("the junk records", |e| match e {
                        Event::ProfileRecordStored { peer } if junk.contains(peer) => Some(true),
                        Event::Rejected { peer, .. } if *peer == mallory_id => Some(false),
                        _ => None,
                    })
                    .await;
                if stored_now { stored += 1 } else { refused += 1 }
            }
        } => {}
    }

    // Bob's record is still there; the padded one never was.
    let bob_key = profile_dht_key(&meshchat_node::public_key_of(&bob_id).unwrap());
    assert!(
        lookup(&mut swarm, bob_key).await,
        "junk pushed out a client's record"
    );
    assert!(
        !lookup(&mut swarm, padded_key).await,
        "the relay stored a padded record"
    );
    relay.stop().await;
}

/// Whether a DHT lookup of `key` through the relay finds a record (the
/// local copy kad keeps of what it put is dropped first).
async fn lookup(
    swarm: &mut Swarm<libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>>,
    key: Vec<u8>,
) -> bool {
    use libp2p::kad::{self, GetRecordOk, QueryResult, RecordKey};
    swarm.behaviour_mut().remove_record(&RecordKey::new(&key));
    let query = swarm.behaviour_mut().get_record(RecordKey::new(&key));
    tokio::time::timeout(WAIT, async {
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
    .expect("the lookup ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_batch_judges_each_deposit_and_answers_in_order() {
    use meshchat_node::protocol::{DepositItem, DepositOutcome, WireError, MAX_DEPOSITS_PER_BATCH};

    let relay = relay_with(MailboxConfig {
        max_envelope_bytes: 100,
        ..MailboxConfig::default()
    })
    .await;
    let mut alice = Client::connect(&relay).await;
    let bob = Identity::generate();
    let token = token_for(&bob, &relay);
    let item = |envelope: &[u8], token: Option<DeliveryToken>| DepositItem {
        recipient: bob.public(),
        envelope: envelope.to_vec(),
        token,
    };
    let batch = |deposits| MailboxRequest::DepositBatch { deposits };
    let stored = |relay: &Peer| {
        let node = relay.node.clone();
        async move {
            node.network()
                .status()
                .await
                .unwrap()
                .mailbox
                .unwrap()
                .messages
        }
    };

    // Neither empty nor larger than the bound: refused whole, nothing stored.
    for n in [0, MAX_DEPOSITS_PER_BATCH + 1] {
        let deposits = (0..n)
            .map(|i| item(format!("over {i}").as_bytes(), Some(token.clone())))
            .collect();
        let answer = alice.ask(batch(deposits)).await;
        assert!(
            matches!(answer, MailboxResponse::Error(WireError::Malformed(_))),
            "{n} deposits: {answer:?}"
        );
    }
    assert_eq!(stored(&relay).await, 0);

    // Good and bad mixed: each judged as a single deposit would be.
    let answer = alice
        .ask(batch(vec![
            item(b"first", Some(token.clone())),
            item(b"no token", None),
            item(&[0; 101], Some(token.clone())),
            item(b"first", Some(token.clone())),
            item(b"second", Some(token.clone())),
        ]))
        .await;
    let MailboxResponse::DepositedBatch { outcomes } = answer else {
        panic!("expected a batch answer, got {answer:?}");
    };
    assert_eq!(outcomes.len(), 5);
    let receipt = |i: usize| match &outcomes[i] {
        DepositOutcome::Deposited(receipt) => {
            receipt.verify().unwrap();
            receipt.clone()
        }
        other => panic!("deposit {i}: expected a receipt, got {other:?}"),
    };
    assert_eq!(receipt(0).recipient, bob.public());
    assert_eq!(
        outcomes[1],
        DepositOutcome::Refused(Refusal::Unauthorized(TokenError::Missing))
    );
    assert_eq!(
        outcomes[2],
        DepositOutcome::Refused(Refusal::TooLarge {
            size: 101,
            limit: 100
        })
    );
    // The repeat within the batch is answered with the first copy's receipt.
    assert_eq!(receipt(3), receipt(0));
    assert_ne!(receipt(4), receipt(0));
    let metrics = relay.node.network().status().await.unwrap().relay.unwrap();
    assert_eq!(
        (
            metrics.deposits,
            metrics.duplicates,
            metrics.refused_token,
            metrics.refused_too_large
        ),
        (2, 1, 1, 1)
    );

    // A batch refused whole is still one answer per deposit.
    let answer = alice
        .ask(batch(vec![item(b"x", None), item(b"y", None)]))
        .await;
    assert_eq!(
        answer,
        MailboxResponse::DepositedBatch {
            outcomes: vec![DepositOutcome::Refused(Refusal::Unauthorized(TokenError::Missing)); 2]
        }
    );

    // Bob finds exactly what was acknowledged, in order.
    let mut reader = MailboxClient::to_relay(bob.clone(), relay.addrs().await.remove(0)).await;
    assert_eq!(
        reader.fetch_all().await,
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    relay.stop().await;
}

//! A real node attacked from a bare libp2p swarm speaking `/meshchat/sync/1` and `/meshchat/notice/1`:
//! forged signatures, impersonated authors, malformed and oversize frames, and
//! strangers writing into chats they are not in. Every attack must be refused,
//! nothing must be shown, and the node must keep serving honest peers.

use automerge::{
    transaction::{CommitOptions, Transactable},
    ActorId, ObjType, ScalarValue, ROOT,
};
use ed25519_dalek::Signer;
use futures::StreamExt;
use libp2p::PeerId;
use meshchat_node::{
    api::HistoryError,
    crdt::{
        ChangeHash, ChatId, ChatKind, ChatReplica, Identity, MessageId, PublicKey, SignedChange,
        VerifyError,
    },
    protocol::{
        decode_frame, encode_frame, Inbound, MailboxRequest, MailboxResponse, Notice, NoticeCodec,
        NoticeResponse, Profile, Request, Response, SyncCodec, WireError, MAILBOX_PROTOCOL,
        MAX_NOTICE_BYTES, MAX_REQUEST_BYTES, NOTICE_PROTOCOL, WIRE_VERSION,
    },
    public_key_of, Event,
};
use meshchat_tests::{key_of, BareClient, Peer, RawCodec, WAIT};

/// The domain tag `SignedChange` signatures start with (see `crdt/src/signed.rs`).
const SIGNING_DOMAIN: &[u8] = b"meshchat/signed-change/v1";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The Automerge actor id of `key` (its public key and an epoch).
fn actor_of(key: &PublicKey) -> ActorId {
    let mut bytes = key.as_bytes().to_vec();
    bytes.extend_from_slice(&[0; 8]);
    ActorId::from(bytes)
}

/// An Automerge change creating one message map whose Automerge actor is
/// `actor`'s and whose `author` field says `claimed_author`.
fn message_change(actor: &PublicKey, claimed_author: &PublicKey, text: &str) -> automerge::Change {
    let mut doc = automerge::Automerge::new();
    doc.set_actor(actor_of(actor));
    let mut tx = doc.transaction();
    let obj = tx
        .put_object(ROOT, MessageId::for_author(actor).to_string(), ObjType::Map)
        .expect("put message map");
    tx.put(&obj, "author", claimed_author.to_string())
        .expect("put author");
    tx.put(&obj, "sent_at", ScalarValue::Timestamp(now_ms()))
        .expect("put sent_at");
    tx.put(&obj, "text", text).expect("put text");
    tx.put_object(&obj, "reactions", ObjType::Map)
        .expect("put reactions");
    // Every change binds the segment (and metadata heads) it is sent with.
    tx.commit_with(CommitOptions::default().with_message("meshchat/1 segment=0"));
    doc.get_last_local_change().expect("a committed change")
}

/// Signs `change` for `chat` as `signer`, exactly as `SignedChange::sign` does:
/// Ed25519 over domain || chat || segment (u32 BE) || change hash.
fn sign_as(signer: &Identity, chat: ChatId, change: &automerge::Change) -> SignedChange {
    let segment = 0u32;
    let hash = ChangeHash::from(change.hash());
    let mut msg = Vec::new();
    msg.extend_from_slice(SIGNING_DOMAIN);
    msg.extend_from_slice(chat.as_bytes());
    msg.extend_from_slice(&segment.to_be_bytes());
    msg.extend_from_slice(hash.as_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&signer.secret_bytes());
    SignedChange {
        chat,
        segment,
        meta_heads: Vec::new(),
        change: change.raw_bytes().to_vec(),
        signature: key.sign(&msg).to_bytes(),
    }
}

fn hash_of(change: &SignedChange) -> ChangeHash {
    change.decode_stored().expect("decodable change").hash
}

/// The texts `peer` shows in `chat`; `None` if it does not even know the chat.
async fn shown(peer: &Peer, chat: ChatId) -> Option<Vec<String>> {
    match peer.node.chats().history(chat, None).await {
        Ok(entries) => Some(entries.into_iter().map(|e| e.message.text).collect()),
        Err(HistoryError::NoSuchChat(_)) => None,
        Err(e) => panic!("history of {chat}: {e}"),
    }
}

/// Waits for the node to report a rejection from `from`; returns the reason.
async fn rejection_from(peer: &mut Peer, from: PeerId) -> String {
    peer.wait_for("a rejection", |e| match e {
        Event::Rejected { peer, reason } if *peer == from => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Splits a push answer into (stored, rejected reasons and hashes).
fn pushed(response: Response) -> (Vec<ChangeHash>, Vec<(Option<ChangeHash>, String)>) {
    match response {
        Response::Pushed { stored, rejected } => (
            stored,
            rejected.into_iter().map(|r| (r.hash, r.reason)).collect(),
        ),
        other => panic!("expected Pushed, got {other:?}"),
    }
}

/// An honest peer can still deliver to `bob` (and get the acknowledgement).
async fn still_delivers(bob: &mut Peer, text: &'static str) {
    let mut alice = Peer::start("alice").await;
    let chat = alice.add(bob).await;
    bob.add(&alice).await;
    alice.node.chats().send(chat, text).await.expect("send");
    assert_eq!(bob.wait_messages(1).await, vec![text]);
    alice.wait_delivered(1).await;
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signature_is_rejected_and_not_shown() {
    let mut bob = Peer::start("bob").await;
    let mut mallory = BareClient::connect(Identity::generate(), SyncCodec, &bob).await;
    // Bob knows mallory, so mallory's direct messages are not a request.
    bob.node
        .contacts()
        .add(mallory.peer_id(), None, Vec::new())
        .await
        .expect("add");
    let chat = ChatId::direct(&mallory.public(), &key_of(&bob));
    let mut replica = ChatReplica::new(ChatKind::direct(mallory.public(), key_of(&bob)));
    let first = replica
        .write_message(&mallory.identity, "first", None, now_ms())
        .expect("write");
    assert_eq!(first.change.chat, chat);

    // 1. A forged copy of a valid change, into a chat bob has never seen.
    let mut forged = first.change.clone();
    forged.signature[10] ^= 0x01;
    assert!(matches!(forged.verify(), Err(VerifyError::Signature(_))));
    let (stored, rejected) = pushed(mallory.push(vec![forged]).await);
    assert!(stored.is_empty(), "a forged change was acknowledged");
    assert_eq!(rejected.len(), 1);
    rejection_from(&mut bob, mallory.peer_id()).await;
    assert_eq!(
        shown(&bob, chat).await,
        Some(Vec::new()),
        "a forged change was shown"
    );

    // 2. Control: the genuine change is accepted, so the harness is sound.
    let (stored, rejected) = pushed(mallory.push(vec![first.change.clone()]).await);
    assert_eq!(stored, vec![first.hash]);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(bob.wait_messages(1).await, vec!["first"]);

    // 3. A forged change in the now-existing chat is refused by the replica.
    let second = replica
        .write_message(&mallory.identity, "second", None, now_ms())
        .expect("write");
    let mut forged = second.change.clone();
    *forged.signature.last_mut().expect("64 bytes") ^= 0x80;
    let (stored, rejected) = pushed(mallory.push(vec![forged]).await);
    assert!(stored.is_empty(), "a forged change was acknowledged");
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].1.contains("signature"), "{rejected:?}");
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("signature"), "{reason}");
    assert_eq!(shown(&bob, chat).await, Some(vec!["first".to_owned()]));
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_whose_actor_is_not_its_signer_is_rejected() {
    let mut bob = Peer::start("bob").await;
    let bob_key = key_of(&bob);
    let mut mallory = BareClient::connect(Identity::generate(), SyncCodec, &bob).await;
    bob.node
        .contacts()
        .add(mallory.peer_id(), None, Vec::new())
        .await
        .expect("add");
    let me = mallory.public();
    let chat = ChatId::direct(&me, &bob_key);

    // Control: a change built and signed by hand the same way, with the
    // signer as actor, verifies and is accepted.
    let honest = sign_as(&mallory.identity, chat, &message_change(&me, &me, "honest"));
    honest.verify().expect("the hand-made signature is valid");
    let (stored, rejected) = pushed(mallory.push(vec![honest.clone()]).await);
    assert_eq!(stored, vec![hash_of(&honest)]);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(bob.wait_messages(1).await, vec!["honest"]);

    // The actor is bob (or a third key); mallory signs.
    let carol = Identity::generate().public();
    for (actor, text) in [(bob_key, "I am bob"), (carol, "I am carol")] {
        let forged = sign_as(
            &mallory.identity,
            chat,
            &message_change(&actor, &actor, text),
        );
        assert!(matches!(forged.verify(), Err(VerifyError::Signature(_))));
        let (stored, rejected) = pushed(mallory.push(vec![forged]).await);
        assert!(stored.is_empty(), "{text}: acknowledged");
        assert_eq!(rejected.len(), 1, "{text}");
        assert!(rejected[0].1.contains("signature"), "{rejected:?}");
        rejection_from(&mut bob, mallory.peer_id()).await;
    }

    // A validly signed change whose `author` field claims bob is refused:
    // a new message's author field must be its signer.
    let spoof = sign_as(
        &mallory.identity,
        chat,
        &message_change(&me, &bob_key, "bob says hi"),
    );
    let (stored, rejected) = pushed(mallory.push(vec![spoof.clone()]).await);
    assert!(stored.is_empty());
    assert_eq!(rejected.len(), 1, "{rejected:?}");

    let history = bob.history(chat).await;
    let texts: Vec<&str> = history.iter().map(|e| e.message.text.as_str()).collect();
    assert_eq!(texts, vec!["honest"]);
    assert!(history
        .iter()
        .all(|e| e.message.author == me && !e.outgoing));
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_the_node_keeps_working() {
    let mut bob = Peer::start("bob").await;
    let mut mallory = BareClient::connect(Identity::generate(), RawCodec::default(), &bob).await;

    // Right version byte, then bytes that are not CBOR.
    let raw = mallory.request(vec![WIRE_VERSION, 0xff, 0x13]).await;
    let answer = decode_frame::<Response>(&raw.expect("an answer"));
    assert!(
        matches!(answer, Ok(Response::Error(WireError::Malformed(_)))),
        "{answer:?}"
    );
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("malformed"), "{reason}");

    // An empty frame.
    let raw = mallory.request(Vec::new()).await;
    let answer = decode_frame::<Response>(&raw.expect("an answer"));
    assert!(
        matches!(answer, Ok(Response::Error(WireError::Malformed(_)))),
        "{answer:?}"
    );
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("malformed"), "{reason}");

    // A well-formed request behind an unknown version byte.
    let mut frame = encode_frame(&Request::Sync {
        chat: ChatId::from_bytes([7; 32]),
        heads: Vec::new(),
    });
    frame[0] = 9;
    let raw = mallory.request(frame).await;
    let answer = decode_frame::<Response>(&raw.expect("an answer"));
    assert_eq!(
        answer,
        Ok(Response::Error(WireError::UnsupportedVersion {
            got: 9,
            supported: WIRE_VERSION
        }))
    );
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("version 9"), "{reason}");

    // Valid CBOR of the wrong shape.
    let raw = mallory.request(encode_frame(&"not a request")).await;
    let answer = decode_frame::<Response>(&raw.expect("an answer"));
    assert!(
        matches!(answer, Ok(Response::Error(WireError::Malformed(_)))),
        "{answer:?}"
    );
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("malformed"), "{reason}");

    still_delivers(&mut bob, "still here").await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_refused_without_harm() {
    let mut bob = Peer::start("bob").await;
    let mut mallory = BareClient::connect(Identity::generate(), RawCodec::default(), &bob).await;

    // One byte over the limit: the node reads it all and answers TooLarge.
    let size = MAX_REQUEST_BYTES + 1;
    match mallory.request(vec![0xab; size]).await {
        Ok(raw) => assert_eq!(
            decode_frame::<Response>(&raw),
            Ok(Response::Error(WireError::TooLarge {
                limit: MAX_REQUEST_BYTES as u64
            })),
        ),
        // Closing the stream early is an acceptable refusal too.
        Err(failure) => eprintln!("{size} bytes: outbound failure: {failure}"),
    }
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("larger than"), "{reason}");

    // Twice the limit: the node stops reading at the limit and refuses. The
    // attacker's own write may then stall until its timeout, so wait for the
    // node's verdict (driving the attacker's swarm meanwhile), not the attacker's.
    let target = mallory.target;
    let from = mallory.peer_id();
    mallory
        .swarm
        .behaviour_mut()
        .send_request(&target, vec![0xcd; 2 * MAX_REQUEST_BYTES]);
    let reason = {
        let refused = rejection_from(&mut bob, from);
        tokio::pin!(refused);
        loop {
            tokio::select! {
                reason = &mut refused => break reason,
                _ = mallory.swarm.select_next_some() => {}
            }
        }
    };
    assert!(reason.contains("larger than"), "{reason}");
    drop(mallory);

    // The actor did not die.
    bob.node
        .network()
        .status()
        .await
        .expect("the node is still running");
    still_delivers(&mut bob, "after the flood").await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_is_held_to_its_own_small_bound() {
    // Notices (profiles, heartbeats, typing) never need a push's 4 MiB: a
    // frame one byte over MAX_NOTICE_BYTES is refused whole.
    let mut bob = Peer::start("bob").await;
    let mut mallory = BareClient::connect_on(
        Identity::generate(),
        RawCodec::default(),
        &bob,
        NOTICE_PROTOCOL,
    )
    .await;
    let size = MAX_NOTICE_BYTES + 1;
    assert!(size < MAX_REQUEST_BYTES / 100);
    match mallory.request(vec![0xab; size]).await {
        Ok(raw) => assert_eq!(
            decode_frame::<NoticeResponse>(&raw),
            Ok(NoticeResponse::Error(WireError::TooLarge {
                limit: MAX_NOTICE_BYTES as u64
            })),
        ),
        Err(failure) => eprintln!("{size} bytes: outbound failure: {failure}"),
    }
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("larger than"), "{reason}");
    // A heartbeat-sized notice of the wrong shape is refused as malformed.
    let raw = mallory.request(encode_frame(&"not a notice")).await;
    assert!(
        matches!(
            decode_frame::<NoticeResponse>(&raw.expect("an answer")),
            Ok(NoticeResponse::Error(WireError::Malformed(_)))
        ),
        "a malformed notice is answered with an error"
    );
    drop(mallory);
    still_delivers(&mut bob, "after the notices").await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_cannot_write_into_or_read_others_chats() {
    let mut bob = Peer::start("bob").await;
    let alice = Peer::start("alice").await;
    let alice_bob = alice.add(&bob).await;
    bob.add(&alice).await;
    alice
        .node
        .chats()
        .send(alice_bob, "hi bob")
        .await
        .expect("send");
    bob.wait_messages(1).await;

    let mut mallory = BareClient::connect(Identity::generate(), SyncCodec, &bob).await;
    let me = mallory.public();

    // A valid change by mallory, signed for the alice–bob chat.
    let intrusion = sign_as(
        &mallory.identity,
        alice_bob,
        &message_change(&me, &me, "let me in"),
    );
    intrusion.verify().expect("validly signed");
    let (stored, rejected) = pushed(mallory.push(vec![intrusion.clone()]).await);
    assert!(stored.is_empty(), "a non-member's change was acknowledged");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, Some(hash_of(&intrusion)));
    assert!(rejected[0].1.contains("not a member"), "{rejected:?}");
    let reason = rejection_from(&mut bob, mallory.peer_id()).await;
    assert!(reason.contains("not a member"), "{reason}");

    // The chat of two other keys: neither mallory's own change nor a change
    // genuinely written by one of its members makes bob adopt it.
    let carol = Identity::generate();
    let dave = Identity::generate();
    let carol_dave = ChatId::direct(&carol.public(), &dave.public());
    let by_mallory = sign_as(
        &mallory.identity,
        carol_dave,
        &message_change(&me, &me, "x"),
    );
    let by_carol = ChatReplica::new(ChatKind::direct(carol.public(), dave.public()))
        .write_message(&carol, "relayed", None, now_ms())
        .expect("write")
        .change;
    let (stored, rejected) = pushed(mallory.push(vec![by_mallory, by_carol]).await);
    assert!(stored.is_empty());
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(
        shown(&bob, carol_dave).await,
        None,
        "bob adopted a foreign chat"
    );

    // Reading: sync requests for chats mallory is not in are refused.
    assert_eq!(
        mallory.sync(alice_bob).await,
        Response::Error(WireError::NotMember)
    );
    assert_eq!(
        mallory.sync(carol_dave).await,
        Response::Error(WireError::NotMember)
    );

    assert_eq!(
        shown(&bob, alice_bob).await,
        Some(vec!["hi bob".to_owned()])
    );
    assert!(bob
        .node
        .chats()
        .list()
        .await
        .expect("chats")
        .iter()
        .all(|c| c.id == alice_bob));
    // The members' own conversation is unaffected.
    alice
        .node
        .chats()
        .send(alice_bob, "still private")
        .await
        .expect("send");
    assert_eq!(bob.wait_messages(1).await, vec!["still private"]);
    assert_eq!(alice.texts(alice_bob).await, bob.texts(alice_bob).await);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_profiles_are_rejected() {
    let bob = Peer::start("bob").await;
    let alice = Peer::start("alice").await;
    let alice_key = public_key_of(&alice.peer_id()).expect("ed25519");
    let mut mallory =
        BareClient::connect_on(Identity::generate(), NoticeCodec, &bob, NOTICE_PROTOCOL).await;
    let profile = |name: &str, version: u64| Profile {
        name: Some(name.into()),
        version,
        updated_at_ms: now_ms(),
        ..Profile::default()
    };
    let push = |signed| Inbound::Request(Notice::Profile(signed));
    let held = |peer: PeerId| {
        let node = bob.node.clone();
        async move {
            node.profiles()
                .get(Some(peer))
                .await
                .expect("profile")
                .map(|p| (p.profile.name.unwrap_or_default(), p.profile.version))
        }
    };

    // Mallory's own profile, version 2: kept.
    let v2 = profile("mallory", 2).sign(&mallory.identity).expect("sign");
    assert_eq!(
        mallory.request(push(v2)).await.expect("answer"),
        NoticeResponse::Noted
    );
    assert_eq!(held(mallory.peer_id()).await, Some(("mallory".into(), 2)));

    // A replay of an older version does not roll it back.
    let v1 = profile("old mallory", 1)
        .sign(&mallory.identity)
        .expect("sign");
    mallory.request(push(v1)).await.expect("answer");
    assert_eq!(held(mallory.peer_id()).await, Some(("mallory".into(), 2)));

    // Mallory's signature under Alice's key, and Alice's name pushed by
    // Mallory: neither becomes Alice's profile.
    let mut forged = profile("alice (really)", 9)
        .sign(&mallory.identity)
        .expect("sign");
    forged.peer = alice_key;
    mallory.request(push(forged)).await.expect("answer");
    // A body altered after signing.
    let mut tampered = profile("mallory", 3).sign(&mallory.identity).expect("sign");
    let middle = tampered.body.len() / 2;
    tampered.body[middle] ^= 0x55;
    mallory.request(push(tampered)).await.expect("answer");
    assert_eq!(
        held(alice.peer_id()).await,
        None,
        "a forged profile was kept"
    );
    assert_eq!(held(mallory.peer_id()).await, Some(("mallory".into(), 2)));

    // Alice's real profile still gets through.
    alice.add(&bob).await;
    bob.node
        .contacts()
        .add(alice.peer_id(), None, alice.addrs().await)
        .await
        .expect("add");
    let mut events = bob.node.subscribe();
    let alice_id = alice.peer_id();
    if held(alice_id).await.is_none() {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(Event::ProfileChanged { peer }) = events.recv().await {
                    if peer == alice_id {
                        return;
                    }
                }
            }
        })
        .await
        .expect("alice's profile arrives");
    }
    assert_eq!(held(alice_id).await, Some(("alice".into(), 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mailbox_requests_are_refused_and_the_relay_keeps_serving() {
    let relay = Peer::start_with(
        "relay",
        meshchat_node::NodeConfig {
            mailbox: Some(meshchat_node::mailbox::MailboxConfig::default()),
            ..meshchat_node::NodeConfig::loopback()
        },
    )
    .await;
    let mut mallory = BareClient::connect_on(
        Identity::generate(),
        RawCodec::default(),
        &relay,
        MAILBOX_PROTOCOL,
    )
    .await;
    // Not CBOR; empty; the right shape behind an unknown version; the wrong shape.
    let mut unknown_version = encode_frame(&MailboxRequest::Fetch {
        after: None,
        limit: 10,
    });
    unknown_version[0] = 9;
    let mut answers = Vec::new();
    for frame in [
        vec![WIRE_VERSION, 0xff, 0x13],
        Vec::new(),
        unknown_version,
        encode_frame(&"not a request"),
    ] {
        let raw = mallory.request(frame).await.expect("an answer");
        answers.push(decode_frame::<MailboxResponse>(&raw));
    }
    for answer in &answers[..2] {
        assert!(
            matches!(answer, Ok(MailboxResponse::Error(WireError::Malformed(_)))),
            "{answer:?}"
        );
    }
    assert_eq!(
        answers[2],
        Ok(MailboxResponse::Error(WireError::UnsupportedVersion {
            got: 9,
            supported: WIRE_VERSION
        }))
    );
    assert!(
        matches!(
            answers[3],
            Ok(MailboxResponse::Error(WireError::Malformed(_)))
        ),
        "{:?}",
        answers[3]
    );
    // The same connection still gets honest answers.
    let fetch = encode_frame(&MailboxRequest::Fetch {
        after: None,
        limit: 10,
    });
    let raw = mallory.request(fetch).await.expect("an answer");
    assert_eq!(
        decode_frame::<MailboxResponse>(&raw),
        Ok(MailboxResponse::Mail {
            items: Vec::new(),
            more: false
        })
    );
    assert!(relay
        .node
        .network()
        .status()
        .await
        .expect("status")
        .mailbox
        .is_some());
}

//! End-to-end encryption between real nodes on loopback: safety numbers,
//! encryption keys in profiles, sealed mail at a real relay, sealed group
//! gossip and a removed member's view of it.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use meshchat_node::{
    control::{call, ControlRequest},
    crdt::{
        e2e::{DeviceKey, DeviceSecret, SealedChange, SenderKey},
        ChatId, Identity,
    },
    mailbox::DeliveryToken,
    protocol::{
        decode_frame, encode_frame, seal_envelope, Envelope, GossipMessage, GossipPayload,
        Response, WireError,
    },
    Event, NodeConfig, PeerId, SafetyNumberReport,
};
use meshchat_tests::{gossip::GossipMember, key_of, net::keypair_of, within, MailboxClient, Peer};

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

/// Every byte of every file under `dir`.
fn every_file(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

/// The files under `dir` that hold `needle` anywhere.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    every_file(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_only_ciphertext_of_mail_to_a_recipient_with_a_key() {
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
    let mut alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    bob.add_one_way(&alice).await;
    // Alice holds Bob's signed profile, and with it his encryption key.
    assert!(encryption_key_of(&mut alice, bob.peer_id()).await.is_some());
    bob.stop().await;

    let marker = "e2e plaintext marker: the cake is in the oven";
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, marker).await.unwrap();
    alice.wait_custody().await;
    let held = relay
        .node
        .network()
        .status()
        .await
        .unwrap()
        .mailbox
        .unwrap();
    assert!(held.messages >= 1, "the relay holds the mail");
    // The relay's disk, every file: the message text is nowhere. (Alice's
    // own disk holds it, as it should: at rest is unchanged.)
    assert_eq!(
        files_holding(relay.dir.root(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!files_holding(alice.dir.root(), marker.as_bytes()).is_empty());

    // Bob comes back, opens the sealed mail and reads it.
    bob.restart().await;
    assert_eq!(bob.wait_messages(1).await, vec![marker.to_owned()]);
    assert_eq!(
        files_holding(relay.dir.root(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

/// A contact added by PeerId and relay address alone comes with no
/// encryption key: the sender looks the recipient's signed profile up at the
/// relay (which holds its clients' profiles) and deposits only once it can
/// seal. Fails if mail to an unknown key is deposited in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_a_contact_known_by_peer_id_alone_rests_at_the_relay_only_sealed() {
    // Alice holds no token of Bob's: this relay takes mail from strangers.
    let mut relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(meshchat_node::mailbox::MailboxConfig {
                stranger_bytes: 1 << 20,
                ..Default::default()
            }),
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
    let bob_id = bob.peer_id();
    relay
        .wait_for("bob's profile record", |e| {
            matches!(e, Event::ProfileRecordStored { peer } if *peer == bob_id).then_some(())
        })
        .await;
    bob.stop().await;

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
        .add_with_relays(bob_id, Some("bob".into()), Vec::new(), vec![relay_addr])
        .await
        .unwrap();
    let marker = "e2e plaintext marker: known by peer id alone";
    let chat = alice.node.chats().direct(bob_id).await.unwrap();
    alice.node.chats().send(chat, marker).await.unwrap();
    alice.wait_custody().await;
    assert!(encryption_key_of(&mut alice, bob_id).await.is_some());
    assert_eq!(
        files_holding(relay.dir.root(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    // Bob, back, opens it: a message request from a stranger.
    bob.restart().await;
    bob.accept_request_from(&alice).await;
    assert_eq!(bob.wait_messages(1).await, vec![marker.to_owned()]);
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_that_does_not_open_is_dropped_and_the_rest_arrives() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr.clone()],
            ..NodeConfig::loopback()
        },
    )
    .await;
    let invite = bob.node.contacts().invite().await.unwrap();
    let mut alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    bob.add_one_way(&alice).await;
    assert!(encryption_key_of(&mut alice, bob.peer_id()).await.is_some());
    bob.stop().await;

    // Mallory, holding a token of Bob's, deposits mail that cannot open: a
    // bent box, a box for a key version Bob never had, junk in a box.
    let bob_identity = bob.dir.identity().unwrap();
    let bob_key = bob.dir.device_keys().unwrap().current().public();
    let token = DeliveryToken::issue(&bob_identity, Some(key_of(&relay)), None, i64::MAX);
    let sealed = |to: DeviceKey| {
        seal_envelope(
            Vec::new(),
            Vec::new(),
            &bob_identity.public(),
            &to,
            &DeviceSecret::generate(1),
        )
        .unwrap()
    };
    let mut bent = sealed(bob_key);
    let last = bent.len() - 1;
    bent[last] ^= 0x40;
    let unknown_version = sealed(DeviceKey {
        version: 99,
        ..bob_key
    });
    let junk = encode_frame(&Envelope::Sealed {
        sealed: vec![1, 2, 3],
        attaches: Vec::new(),
    });
    let mut mallory = MailboxClient::to_relay(Identity::generate(), relay_addr).await;
    mallory
        .deposit_all(
            [bent, unknown_version, junk]
                .into_iter()
                .map(|envelope| (bob_identity.public(), envelope, token.clone()))
                .collect(),
            3,
        )
        .await;

    let marker = "the real letter";
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, marker).await.unwrap();
    alice.wait_custody().await;

    bob.restart().await;
    assert_eq!(bob.wait_messages(1).await, vec![marker.to_owned()]);
    // The unreadable mail was dropped, not left to be fetched forever.
    within("the relay to hold no mail", async {
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
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_a_contact_added_from_an_invite_is_sealed_before_they_ever_meet() {
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
    let bob_key = bob.dir.device_keys().unwrap().current().public();
    assert_eq!(invite.encryption_key, Some(bob_key));
    bob.stop().await;

    // Alice has only the invite: Bob is offline, his profile never came.
    let alice = Peer::start("alice").await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    assert!(alice
        .node
        .profiles()
        .get(Some(bob.peer_id()))
        .await
        .unwrap()
        .is_none());
    let mut alice = alice;
    let marker = "sealed before we ever met";
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    alice.node.chats().send(chat, marker).await.unwrap();
    alice.wait_custody().await;
    assert_eq!(
        files_holding(relay.dir.root(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    // To Bob, Alice is a stranger: her sealed mail opens as a message request.
    bob.restart().await;
    let chat = bob.accept_request_from(&alice).await;
    assert_eq!(bob.texts(chat).await, vec![marker.to_owned()]);
    relay.stop().await;
    alice.stop().await;
    bob.stop().await;
}

/// The next gossip frame `listener` gets while `author` writes `text` into
/// `chat` (again, up to five times, in case a publish went out before the
/// listener was in ann's mesh).
async fn next_sealed(
    author: &Peer,
    listener: &mut GossipMember,
    chat: ChatId,
    text: &str,
) -> SealedChange {
    for _ in 0..5 {
        author.node.chats().send(chat, text).await.unwrap();
        if let Some(message) = listener.next_message(Duration::from_secs(2)).await {
            match decode_frame::<GossipMessage>(&message.data) {
                Ok(GossipMessage::Sealed(sealed)) => return sealed,
                other => panic!("gossip is not sealed: {other:?}"),
            }
        }
    }
    panic!("the group's gossip never reached the listener");
}

/// The sender key `member` is handed when it asks `peer` for `key_id` of
/// `chat`; `None` if `peer` answers anything else.
async fn handed_key(
    member: &GossipMember,
    peer: PeerId,
    chat: ChatId,
    key_id: meshchat_node::crdt::KeyId,
) -> Option<SenderKey> {
    match member.ask_key(peer, chat, key_id).await? {
        Response::Key {
            author, epoch, key, ..
        } => Some(SenderKey::from_parts(chat, author, epoch, key)),
        _ => None,
    }
}

/// Opens `sealed` with `key`: the changes' bytes, if it opens.
fn opened(sealed: &SealedChange, key: &SenderKey) -> Option<Vec<u8>> {
    let plaintext = sealed.open(key).ok()?;
    let payload: GossipPayload = decode_frame(&plaintext).ok()?;
    Some(payload.changes.into_iter().flat_map(|c| c.change).collect())
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A member removed from a group whose node ignores the removal (a bare
/// gossip member that stays on the topic and keeps every key it had) reads
/// the group's gossip up to its removal and nothing after: the next
/// message is sealed under a fresh key that no member hands it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_reads_nothing_written_after_its_removal() {
    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
    ann.add(&ben).await;
    let mallory = Identity::generate();
    let mallory_id = keypair_of(&mallory).public().to_peer_id();
    let mallory_key = mallory.public();
    let chat = ann
        .node
        .groups()
        .create("circle", vec![ben.peer_id(), mallory_id])
        .await
        .unwrap();
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    // Mallory never acknowledges a push, so ann publishes on the topic too.
    let mut mallory = GossipMember::join(mallory, chat, &ann).await;

    // While a member, mallory gets ann's key and reads her messages.
    let before = next_sealed(&ann, &mut mallory, chat, "before the removal, 51c2").await;
    let old_key = handed_key(&mallory, ann.peer_id(), chat, before.key_id)
        .await
        .expect("ann refused a member her key");
    let read = opened(&before, &old_key).expect("a member's key opens the gossip");
    assert!(holds(&read, "before the removal, 51c2"));

    ann.node
        .groups()
        .remove_member(chat, mallory_id)
        .await
        .unwrap();
    wait_removal_seen(&mut ben, chat, mallory_key).await;
    // Frames published before the removal may still be on their way.
    mallory.drain(Duration::from_millis(300)).await;

    let secret = "after the removal, 9e04";
    let after = next_sealed(&ann, &mut mallory, chat, secret).await;
    assert_ne!(after.key_id, old_key.key_id(), "no new key after a removal");
    assert!(opened(&after, &old_key).is_none());
    assert_eq!(
        mallory.ask_key(ann.peer_id(), chat, after.key_id).await,
        Some(Response::Error(WireError::NotMember)),
        "ann handed a removed member the new key"
    );
    // The group goes on without her.
    ben.wait_for("the message after the removal", |e| match e {
        Event::Message { message, .. } if message.text == secret => Some(()),
        _ => None,
    })
    .await;
    ann.stop().await;
    ben.stop().await;
}

/// A stranger on a group's topic records its sealed gossip, then is added
/// without the older history: members hand it the keys of epochs from its
/// joining on, never an older one, so what it recorded stays closed. A
/// newcomer added with history is handed the old key and opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_without_history_gets_no_older_key_and_with_history_does() {
    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
    ann.add(&ben).await;
    let chat = ann
        .node
        .groups()
        .create("circle", vec![ben.peer_id()])
        .await
        .unwrap();
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    ann.node
        .groups()
        .set_history_for_new_members(chat, false)
        .await
        .unwrap();
    // Two strangers listen on the topic and record a frame of ann's.
    let mut mallory = GossipMember::join(Identity::generate(), chat, &ann).await;
    let trent = GossipMember::join(Identity::generate(), chat, &ann).await;
    // Gossip may offer her ann's latest changes on joining (within a
    // heartbeat, a second): let them pass first.
    while mallory
        .next_message(Duration::from_millis(1500))
        .await
        .is_some()
    {}
    let old = next_sealed(&ann, &mut mallory, chat, "before they joined, 7d1a").await;
    // Everything she recorded (the first frame may be an earlier change of
    // ann's that gossip offered her on joining the topic).
    let mut recorded = vec![old.clone()];
    while let Some(message) = mallory.next_message(Duration::from_millis(300)).await {
        if let Ok(GossipMessage::Sealed(sealed)) = decode_frame::<GossipMessage>(&message.data) {
            recorded.push(sealed);
        }
    }
    assert_eq!(
        mallory.ask_key(ann.peer_id(), chat, old.key_id).await,
        Some(Response::Error(WireError::NotMember))
    );

    // Mallory joins without the older history: the next frame is under a
    // key she is handed; the old one she is not.
    ann.node
        .groups()
        .add_member(chat, mallory.peer_id())
        .await
        .unwrap();
    mallory.drain(Duration::from_millis(300)).await;
    // The first frame after her joining under another key than before (a
    // late frame of ann's older changes may come first).
    let mut new = next_sealed(&ann, &mut mallory, chat, "after she joined, 0b3e").await;
    for _ in 0..5 {
        if new.key_id != old.key_id {
            break;
        }
        new = next_sealed(&ann, &mut mallory, chat, "after she joined, 0b3e").await;
    }
    assert_ne!(new.key_id, old.key_id, "a new segment starts a new epoch");
    let new_key = handed_key(&mallory, ann.peer_id(), chat, new.key_id)
        .await
        .expect("ann refused a member the current key");
    assert!(holds(
        &opened(&new, &new_key).expect("the current key opens the new frame"),
        "after she joined, 0b3e"
    ));
    assert_eq!(
        mallory.ask_key(ann.peer_id(), chat, old.key_id).await,
        Some(Response::Error(WireError::UnknownKey)),
        "ann handed a member without history a key older than its joining"
    );
    assert!(opened(&old, &new_key).is_none());

    // Trent joins with the history: he is handed the old key and opens
    // the frame he recorded as a stranger.
    ann.node
        .groups()
        .set_history_for_new_members(chat, true)
        .await
        .unwrap();
    ann.node
        .groups()
        .add_member(chat, trent.peer_id())
        .await
        .unwrap();
    within("ann to see trent as a member", async {
        while trent.ask_key(ann.peer_id(), chat, old.key_id).await
            == Some(Response::Error(WireError::NotMember))
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let old_key = handed_key(&trent, ann.peer_id(), chat, old.key_id)
        .await
        .expect("ann refused a member with history the old key");
    assert!(
        recorded
            .iter()
            .filter_map(|frame| opened(frame, &old_key))
            .any(|read| holds(&read, "before they joined, 7d1a")),
        "the old key opens the old message"
    );
    drop(trent);
    ann.stop().await;
    ben.stop().await;
}

/// Nodes that never redial by themselves, so a partition holds until the
/// test heals it.
fn no_redial() -> NodeConfig {
    NodeConfig {
        redial_secs: 3600,
        ..NodeConfig::loopback()
    }
}

/// Waits until `peer` no longer counts `removed` among `chat`'s members.
async fn wait_removal_seen(peer: &mut Peer, chat: ChatId, removed: meshchat_node::crdt::PublicKey) {
    within("the removal to be seen", async {
        loop {
            let info = peer.node.groups().info(chat).await.unwrap();
            if !info.members.iter().any(|m| m.key == removed) {
                return;
            }
            peer.wait_for("a group change", |e| {
                matches!(e, Event::GroupChanged { chat: c } if *c == chat).then_some(())
            })
            .await;
        }
    })
    .await;
}

/// The documented read window across a partition: ann removes mallory
/// while cut off from ben and cat; on their side, which has not seen the
/// removal, mallory (a bare member on cat's topic that ignores its removal)
/// still reads cat's gossip; once the split heals, cat's next frame is
/// under a key nobody hands her, and every member holds the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_partition_a_removed_member_reads_until_the_heal_and_no_longer() {
    let mut ann = Peer::start_with("ann", no_redial()).await;
    let mut ben = Peer::start_with("ben", no_redial()).await;
    let mut cat = Peer::start_with("cat", no_redial()).await;
    ann.add(&ben).await;
    ann.add(&cat).await;
    ben.add(&cat).await;
    let mallory = Identity::generate();
    let mallory_id = keypair_of(&mallory).public().to_peer_id();
    let mallory_key = mallory.public();
    let chat = ann
        .node
        .groups()
        .create("split", vec![ben.peer_id(), cat.peer_id(), mallory_id])
        .await
        .unwrap();
    for peer in [&mut ben, &mut cat] {
        peer.wait_for("the invitation", |e| {
            matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
        })
        .await;
    }
    let mut mallory = GossipMember::join(mallory, chat, &cat).await;

    // The split: ann alone, and removing mallory.
    for other in [ben.peer_id(), cat.peer_id()] {
        ann.node.network().disconnect(other).await.unwrap();
    }
    ann.node
        .groups()
        .remove_member(chat, mallory_id)
        .await
        .unwrap();
    while mallory
        .next_message(Duration::from_millis(1500))
        .await
        .is_some()
    {}
    // On cat's side nobody has seen it: mallory reads cat's gossip.
    let during = next_sealed(&cat, &mut mallory, chat, "during the split, 3f8a").await;
    let split_key = handed_key(&mallory, cat.peer_id(), chat, during.key_id)
        .await
        .expect("cat, not yet aware of the removal, refused mallory its key");
    assert!(holds(
        &opened(&during, &split_key).expect("cat's key opens cat's frame"),
        "during the split, 3f8a"
    ));

    // The heal: cat learns of the removal and rotates on its next frame.
    let ann_addr = ann.addrs().await.remove(0);
    for peer in [&ben, &cat] {
        peer.node.network().dial(ann_addr.clone()).await.unwrap();
    }
    wait_removal_seen(&mut cat, chat, mallory_key).await;
    mallory.drain(Duration::from_millis(300)).await;
    let secret = "after the heal, c71e";
    let after = next_sealed(&cat, &mut mallory, chat, secret).await;
    assert_ne!(
        after.key_id,
        split_key.key_id(),
        "no new key after the heal"
    );
    assert!(opened(&after, &split_key).is_none());
    assert_eq!(
        mallory.ask_key(cat.peer_id(), chat, after.key_id).await,
        Some(Response::Error(WireError::NotMember)),
        "cat handed a removed member its new key"
    );

    // Everyone converges on the same history, both messages included.
    for (peer, texts) in [
        (&mut ann, vec!["during the split, 3f8a", secret]),
        (&mut ben, vec![secret]),
    ] {
        let mut missing: Vec<&str> = texts;
        while !missing.is_empty() {
            let text = peer
                .wait_for("the split's and the heal's messages", |e| match e {
                    Event::Message {
                        chat: c, message, ..
                    } if *c == chat => Some(message.text.clone()),
                    _ => None,
                })
                .await;
            missing.retain(|m| *m != text);
        }
    }
    let texts = |peer: &Peer| {
        let node = peer.node.clone();
        async move {
            node.chats()
                .history(chat, None)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.message.text)
                .collect::<Vec<String>>()
        }
    };
    let at_cat = texts(&cat).await;
    assert_eq!(texts(&ann).await, at_cat);
    assert_eq!(texts(&ben).await, at_cat);
    drop(mallory);
    for peer in [&ann, &ben, &cat] {
        peer.stop().await;
    }
}

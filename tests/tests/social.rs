//! Profiles, invites, presence ("last seen"), privacy, typing and blocking
//! between real nodes on loopback.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_node::{
    invite::Invite, Event, LastSeen, LastSeenPrivacy, NodeConfig, PeerId, ProfileUpdate,
};
use meshchat_tests::{within, Peer};

/// Heartbeats every second: a silent peer is offline after 2.5 s.
fn fast_presence() -> NodeConfig {
    NodeConfig {
        presence_secs: 1,
        ..NodeConfig::loopback()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn wait_presence(peer: &mut Peer, of: PeerId, online: bool) -> i64 {
    peer.wait_for(if online { "online" } else { "offline" }, |e| match e {
        Event::Presence {
            peer,
            online: o,
            last_seen_ms,
        } if *peer == of && *o == online => Some(*last_seen_ms),
        _ => None,
    })
    .await
}

async fn wait_connected(peer: &mut Peer, to: PeerId) {
    if peer
        .node
        .network()
        .status()
        .await
        .unwrap()
        .connected
        .contains(&to)
    {
        return;
    }
    peer.wait_for("a connection", |e| match e {
        Event::PeerConnected { peer } if *peer == to => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_reaches_contacts_and_survives_a_restart() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    alice.add(&bob).await;
    bob.add(&alice).await;
    // Connecting already exchanged the names given at init.
    let alice_id = alice.peer_id();
    let initial = bob.node.profiles().get(Some(alice_id)).await.unwrap();
    if initial.is_none() {
        bob.wait_for("alice's first profile", |e| match e {
            Event::ProfileChanged { peer } if *peer == alice_id => Some(()),
            _ => None,
        })
        .await;
    }
    bob.drain();

    let mine = alice
        .node
        .profiles()
        .set(ProfileUpdate {
            name: Some("Alice A.".into()),
            status: Some("at the lake".into()),
            avatar: None,
        })
        .await
        .unwrap();
    bob.wait_for("alice's new profile", |e| match e {
        Event::ProfileChanged { peer } if *peer == alice_id => Some(()),
        _ => None,
    })
    .await;
    let seen = bob
        .node
        .profiles()
        .get(Some(alice_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.profile, mine.profile);
    assert_eq!(seen.profile.status.as_deref(), Some("at the lake"));

    // Clearing a field is a newer version too; it survives a restart.
    alice
        .node
        .profiles()
        .set(ProfileUpdate {
            status: Some(String::new()),
            ..ProfileUpdate::default()
        })
        .await
        .unwrap();
    alice.restart().await;
    let own = alice.node.profiles().get(None).await.unwrap().unwrap();
    assert_eq!(own.profile.name.as_deref(), Some("Alice A."));
    assert_eq!(own.profile.status, None);
    assert_eq!(own.profile.version, mine.profile.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_round_trips_into_a_chat() {
    let mut alice = Peer::start("alice").await;
    let bob = Peer::start("bob").await;
    let text = alice.node.contacts().invite().await.unwrap().encode();
    let invite = Invite::decode(&text).unwrap();
    assert_eq!(invite.peer, alice.peer_id());
    assert_eq!(invite.name.as_deref(), Some("alice"));
    assert!(!invite.addrs.is_empty());

    let contact = bob
        .node
        .contacts()
        .add_with_relays(invite.peer, invite.name, invite.addrs, invite.relays)
        .await
        .unwrap();
    assert_eq!(contact.name.as_deref(), Some("alice"));
    let chat = bob.node.chats().resolve("alice").await.unwrap();
    bob.node
        .chats()
        .send(chat, "added you from your invite")
        .await
        .unwrap();
    // To Alice, Bob is a stranger until she accepts his message request.
    alice.accept_request_from(&bob).await;
    assert_eq!(
        alice.wait_messages(1).await,
        vec!["added you from your invite"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_that_stops_shows_offline_with_its_last_seen_time() {
    let alice = Peer::start_with("alice", fast_presence()).await;
    let mut bob = Peer::start_with("bob", fast_presence()).await;
    alice.add(&bob).await;
    bob.add(&alice).await;
    let alice_id = alice.peer_id();
    wait_presence(&mut bob, alice_id, true).await;
    assert!(matches!(
        bob.node.profiles().last_seen(alice_id).await.unwrap(),
        LastSeen::Online { .. }
    ));

    let before_stop = now_ms();
    alice.stop().await;
    let after_stop = now_ms();
    let last_seen = wait_presence(&mut bob, alice_id, false).await;
    // Last heard within one heartbeat period of stopping (Bob's own clock).
    assert!(
        last_seen >= before_stop - 1_500 && last_seen <= after_stop,
        "last seen {last_seen} not near the stop ({before_stop}..{after_stop})"
    );
    assert_eq!(
        bob.node.profiles().last_seen(alice_id).await.unwrap(),
        LastSeen::Offline {
            at_ms: Some(last_seen)
        }
    );
    // Kept across Bob's restart.
    bob.restart().await;
    assert_eq!(
        bob.node.profiles().last_seen(alice_id).await.unwrap(),
        LastSeen::Offline {
            at_ms: Some(last_seen)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_nobody_sends_no_heartbeats_and_hides_everyone_elses() {
    let alice = Peer::start_with("alice", fast_presence()).await;
    let mut bob = Peer::start_with("bob", fast_presence()).await;
    alice.add(&bob).await;
    bob.add(&alice).await;
    let alice_id = alice.peer_id();
    wait_presence(&mut bob, alice_id, true).await;

    alice
        .node
        .profiles()
        .set_last_seen_privacy(LastSeenPrivacy::Nobody)
        .await
        .unwrap();
    // Still connected, yet silent: Bob's window runs out.
    wait_presence(&mut bob, alice_id, false).await;
    let status = bob.node.network().status().await.unwrap();
    assert!(
        status.connected.contains(&alice_id),
        "offline must come from silence, not a lost connection"
    );
    // Reciprocity: Alice sees nobody's last seen.
    assert_eq!(
        alice
            .node
            .profiles()
            .last_seen(bob.peer_id())
            .await
            .unwrap(),
        LastSeen::Hidden
    );
    assert_eq!(
        alice.node.profiles().last_seen_privacy().await.unwrap(),
        LastSeenPrivacy::Nobody
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_shown_to_the_other_side() {
    let alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    bob.add(&alice).await;
    wait_connected(&mut bob, alice.peer_id()).await;
    let alice_id = alice.peer_id();
    // Typing notices are fire-and-forget (one may be lost with a connection
    // that is being replaced), so keep typing, as a person would, until shown.
    let (typing_chat, expires) = within("typing shown", async {
        loop {
            alice.node.chats().typing(chat).await.unwrap();
            let shown = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                loop {
                    if let Ok(Event::Typing {
                        chat,
                        peer,
                        expires_ms,
                    }) = bob.events.recv().await
                    {
                        if peer == alice_id {
                            return (chat, expires_ms);
                        }
                    }
                }
            })
            .await;
            if let Ok(shown) = shown {
                return shown;
            }
        }
    })
    .await;
    assert_eq!(typing_chat, chat);
    assert!(expires > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_gets_nothing_and_its_messages_are_not_shown() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let mut carol = Peer::start("carol").await;
    for (a, b) in [(&alice, &bob), (&alice, &carol), (&bob, &carol)] {
        a.add(b).await;
        b.add(a).await;
    }
    let group = alice
        .node
        .groups()
        .create("trio", vec![bob.peer_id(), carol.peer_id()])
        .await
        .unwrap();
    for peer in [&mut bob, &mut carol] {
        peer.wait_for("joining", |e| match e {
            Event::GroupJoined { chat } if *chat == group => Some(()),
            _ => None,
        })
        .await;
    }

    let bob_id = bob.peer_id();
    alice
        .node
        .contacts()
        .set_blocked(bob_id, true)
        .await
        .unwrap();
    let alice_id = alice.peer_id();
    let to_bob = alice.node.chats().direct(bob_id).await.unwrap();
    alice
        .node
        .chats()
        .send(to_bob, "you will not get this")
        .await
        .unwrap();
    let to_alice = bob.node.chats().direct(alice_id).await.unwrap();
    bob.node.chats().send(to_alice, "let me in").await.unwrap();

    // Bob writes in the group; Carol answers after seeing it, so Alice can
    // only apply Carol's answer once she holds Bob's message too.
    bob.node
        .chats()
        .send(group, "bob in the group")
        .await
        .unwrap();
    carol
        .wait_for("bob's group message", |e| match e {
            Event::Message {
                chat,
                message,
                outgoing: false,
            } if *chat == group && message.author.to_string() == bob_key(&bob) => Some(()),
            _ => None,
        })
        .await;
    carol
        .node
        .chats()
        .send(group, "carol answers")
        .await
        .unwrap();
    let seen = alice
        .wait_for("carol's answer", |e| match e {
            Event::Message {
                chat,
                message,
                outgoing: false,
            } if *chat == group => Some(message.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, "carol answers", "bob's message must not be shown");
    let texts = alice.texts(group).await;
    assert!(texts.contains(&"carol answers".to_string()));
    assert!(
        !texts.contains(&"bob in the group".to_string()),
        "{texts:?}"
    );
    // Nothing crossed between Alice and Bob directly.
    assert_eq!(alice.texts(to_bob).await, vec!["you will not get this"]);
    assert_eq!(bob.texts(to_alice).await, vec!["let me in"]);
    assert!(!alice
        .node
        .network()
        .status()
        .await
        .unwrap()
        .connected
        .contains(&bob_id));

    // Unblocking lets the direct messages through, both ways.
    alice
        .node
        .contacts()
        .set_blocked(bob_id, false)
        .await
        .unwrap();
    within("bob's direct message after unblocking", async {
        loop {
            let texts = alice.texts(to_bob).await;
            if texts.contains(&"let me in".to_string()) {
                return;
            }
            alice
                .wait_for("a message", |e| {
                    matches!(e, Event::Message { .. }).then_some(())
                })
                .await;
        }
    })
    .await;
}

fn bob_key(bob: &Peer) -> String {
    meshchat_node::public_key_of(&bob.peer_id())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_picture_reaches_contacts_as_a_verified_blob() {
    let alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    alice.add(&bob).await;
    bob.add(&alice).await;
    let picture: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = alice.tmp.path().join("me.jpg");
    std::fs::write(&path, &picture).unwrap();
    let hash = alice.node.files().import_blob(&path).await.unwrap();
    alice
        .node
        .profiles()
        .set(ProfileUpdate {
            avatar: Some(hash.to_string()),
            ..ProfileUpdate::default()
        })
        .await
        .unwrap();
    let alice_id = alice.peer_id();
    let seen = within("alice's picture in her profile", async {
        loop {
            if let Some(p) = bob.node.profiles().get(Some(alice_id)).await.unwrap() {
                if let Some(avatar) = p.profile.avatar {
                    return avatar;
                }
            }
            bob.wait_for("a profile change", |e| {
                matches!(e, Event::ProfileChanged { .. }).then_some(())
            })
            .await;
        }
    })
    .await;
    assert_eq!(seen, hash.to_string());
    let size = bob
        .node
        .files()
        .fetch_blob(hash, meshchat_node::MAX_AVATAR_BYTES, alice_id)
        .await
        .unwrap();
    assert_eq!(size, picture.len() as u64);
    let out = bob.tmp.path().join("alice.jpg");
    bob.node.files().export_blob(hash, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), picture);
}

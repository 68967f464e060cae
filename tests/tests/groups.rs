//! Group chats between real nodes on loopback: invitations, gossip, a
//! partition healed by anti-entropy, membership changes.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use meshchat_node::{
    api::ResolveError,
    crdt::{ChatId, ChatKind, ChatReplica, Identity, Role},
    protocol::{Response, SyncCodec},
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{BareClient, Peer};

/// Loopback nodes that never redial on their own, so a partition holds until
/// the test heals it.
fn no_redial() -> NodeConfig {
    NodeConfig {
        redial_secs: 3600,
        ..NodeConfig::loopback()
    }
}

async fn start(names: &[&'static str], config: NodeConfig) -> Vec<Peer> {
    let mut peers = Vec::new();
    for name in names {
        peers.push(Peer::start_with(name, config.clone()).await);
    }
    peers
}

/// Every pair becomes contacts (and so connected).
async fn full_mesh(peers: &[Peer]) {
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[i + 1..] {
            a.add(b).await;
        }
    }
}

async fn wait_joined(peer: &mut Peer, chat: ChatId) {
    peer.wait_for("joining the group", |e| match e {
        Event::GroupJoined { chat: c } if *c == chat => Some(()),
        _ => None,
    })
    .await;
}

/// Waits until `peer` has seen `n` messages in `chat` arrive from others.
async fn wait_group_messages(peer: &mut Peer, chat: ChatId, n: usize) {
    let mut seen = 0;
    while seen < n {
        peer.wait_for("a group message", |e| match e {
            Event::Message {
                chat: c,
                outgoing: false,
                ..
            } if *c == chat => Some(()),
            _ => None,
        })
        .await;
        seen += 1;
    }
}

/// Waits, event by event, until `peer` holds `n` messages in `chat`.
async fn wait_history_len(peer: &mut Peer, chat: ChatId, n: usize) {
    while peer.history(chat).await.len() < n {
        peer.wait_for("more history", |e| match e {
            Event::Message { chat: c, .. } if *c == chat => Some(()),
            _ => None,
        })
        .await;
    }
}

async fn create(peers: &mut [Peer], name: &str) -> ChatId {
    let members: Vec<PeerId> = peers[1..].iter().map(Peer::peer_id).collect();
    let chat = peers[0].node.groups().create(name, members).await.unwrap();
    for peer in &mut peers[1..] {
        wait_joined(peer, chat).await;
    }
    chat
}

async fn ids(peer: &Peer, chat: ChatId) -> Vec<String> {
    peer.history(chat)
        .await
        .into_iter()
        .map(|e| format!("{}:{}", e.message.id, e.message.text))
        .collect()
}

/// Two nodes, connected, and a bare member (`identity`, a sync client of
/// the first node, its contact): the first creates a group `name` of the
/// other two. Returns once the second node joined.
async fn group_with_a_bare_member(
    names: [&'static str; 2],
    identity: Identity,
    name: &str,
) -> (Peer, Peer, BareClient<SyncCodec>, ChatId) {
    let mut peers = start(&names, no_redial()).await;
    full_mesh(&peers).await;
    let mut other = peers.pop().unwrap();
    let creator = peers.pop().unwrap();
    let client = BareClient::connect(identity, SyncCodec, &creator).await;
    creator
        .node
        .contacts()
        .add(client.peer_id(), None, Vec::new())
        .await
        .unwrap();
    let group = creator
        .node
        .groups()
        .create(name, vec![client.peer_id(), other.peer_id()])
        .await
        .unwrap();
    wait_joined(&mut other, group).await;
    (creator, other, client, group)
}

/// The bare member's replica of `group`, read from the node by one sync.
async fn replica_of(client: &mut BareClient<SyncCodec>, group: ChatId) -> ChatReplica {
    let Response::Synced { changes, more, .. } = client.sync(group).await else {
        panic!("the node answers a member's sync");
    };
    assert!(!more, "a new group's history fits one answer");
    let kind = changes
        .iter()
        .filter_map(|c| c.verify().ok())
        .find_map(|v| ChatKind::from_genesis(&v))
        .expect("the group's genesis");
    let mut replica = ChatReplica::new(kind);
    replica.receive(changes, 0);
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_see_every_message() {
    let mut peers = start(&["ann", "ben", "cat", "dan", "eve"], NodeConfig::loopback()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "five").await;
    let info = peers[3].node.groups().info(chat).await.unwrap();
    assert_eq!(info.name, "five");
    assert_eq!(info.members.len(), 5);
    for (i, peer) in peers.iter().enumerate() {
        peer.node
            .chats()
            .send(chat, format!("hello from {i}"))
            .await
            .unwrap();
    }
    for peer in &mut peers {
        wait_group_messages(peer, chat, 4).await;
    }
    let first = ids(&peers[0], chat).await;
    assert_eq!(first.len(), 5);
    for peer in &peers[1..] {
        assert_eq!(ids(peer, chat).await, first);
    }
    for peer in &peers {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let mut peers = start(&["ann", "ben", "cat", "dan", "eve"], no_redial()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "split").await;
    // Partition {ann, ben} | {cat, dan, eve}.
    for a in 0..2 {
        for b in 2..5 {
            let other = peers[b].peer_id();
            peers[a].node.network().disconnect(other).await.unwrap();
        }
    }
    for peer in &mut peers[..2] {
        for _ in 2..5 {
            peer.wait_for("the partition", |e| {
                matches!(e, Event::PeerDisconnected { .. }).then_some(())
            })
            .await;
        }
    }
    // Both sides write, including a reply and a reaction.
    let left = peers[0].node.chats().send(chat, "left 1").await.unwrap();
    peers[1].node.chats().send(chat, "left 2").await.unwrap();
    peers[2].node.chats().send(chat, "right 1").await.unwrap();
    peers[3].node.chats().send(chat, "right 2").await.unwrap();
    peers[4].node.chats().send(chat, "right 3").await.unwrap();
    wait_group_messages(&mut peers[1], chat, 1).await;
    peers[1]
        .node
        .chats()
        .react(chat, left.message.id, Some("👍".into()))
        .await
        .unwrap();
    // Heal with a single link; anti-entropy and gossip carry the rest.
    let addr = peers[2].addrs().await.remove(0);
    peers[1].node.network().dial(addr).await.unwrap();
    for peer in &mut peers {
        wait_history_len(peer, chat, 5).await;
    }
    let reference = ids(&peers[0], chat).await;
    for peer in &peers[1..] {
        assert_eq!(ids(peer, chat).await, reference);
    }
    for peer in &peers {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_stops_receiving_and_cannot_write() {
    let mut peers = start(&["ann", "ben", "cat"], NodeConfig::loopback()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "club").await;
    let cat = peers[2].peer_id();
    peers[0]
        .node
        .groups()
        .remove_member(chat, cat)
        .await
        .unwrap();
    peers[2]
        .wait_for("being removed", |e| match e {
            Event::GroupLeft { chat: c } if *c == chat => Some(()),
            _ => None,
        })
        .await;
    assert!(peers[2]
        .node
        .chats()
        .send(chat, "am I still here?")
        .await
        .is_err());
    peers[0]
        .node
        .chats()
        .send(chat, "after cat left")
        .await
        .unwrap();
    wait_group_messages(&mut peers[1], chat, 1).await;
    // Ben got it; cat did not, and a sync with cat refuses to give it.
    peers[2]
        .node
        .network()
        .disconnect(peers[0].peer_id())
        .await
        .unwrap();
    let texts: Vec<String> = peers[2]
        .history(chat)
        .await
        .into_iter()
        .map(|e| e.message.text)
        .collect();
    assert!(!texts.contains(&"after cat left".to_string()));
    let info = peers[1].node.groups().info(chat).await.unwrap();
    assert_eq!(info.members.len(), 2);
    for peer in &peers {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_member_joins_and_gets_history_and_edits_flow() {
    let mut peers = start(&["ann", "ben", "cat"], NodeConfig::loopback()).await;
    full_mesh(&peers).await;
    let members = vec![peers[1].peer_id()];
    let chat = peers[0]
        .node
        .groups()
        .create("late", members)
        .await
        .unwrap();
    wait_joined(&mut peers[1], chat).await;
    let sent = peers[1]
        .node
        .chats()
        .send(chat, "before cat")
        .await
        .unwrap();
    wait_group_messages(&mut peers[0], chat, 1).await;
    let cat = peers[2].peer_id();
    peers[0].node.groups().add_member(chat, cat).await.unwrap();
    wait_joined(&mut peers[2], chat).await;
    wait_group_messages(&mut peers[2], chat, 1).await;
    // Edit propagates as an update.
    peers[1]
        .node
        .chats()
        .edit(chat, sent.message.id, "before cat (edited)")
        .await
        .unwrap();
    peers[2]
        .wait_for("the edit", |e| match e {
            Event::MessageUpdated { message, .. } if message.text == "before cat (edited)" => {
                Some(())
            }
            _ => None,
        })
        .await;
    for peer in &peers {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_standard_automerge_files() {
    use automerge::ReadDoc;
    let mut peers = start(&["ann", "ben"], NodeConfig::loopback()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "exported").await;
    let sent = peers[0].node.chats().send(chat, "keep this").await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let summary = peers[0]
        .node
        .chats()
        .export(chat, out.path())
        .await
        .unwrap();
    assert_eq!(summary.messages, 1);
    // Plain Automerge opens both documents; the schema is docs/SCHEMA.md's.
    let meta =
        automerge::Automerge::load(&std::fs::read(out.path().join("meta.automerge")).unwrap())
            .unwrap();
    let name = meta
        .get(automerge::ROOT, "name")
        .unwrap()
        .unwrap()
        .0
        .to_string();
    assert!(name.contains("exported"), "{name}");
    let history = automerge::Automerge::load(
        &std::fs::read(out.path().join("segment-000000.automerge")).unwrap(),
    )
    .unwrap();
    let (_, msg) = history
        .get(automerge::ROOT, sent.message.id.to_string())
        .unwrap()
        .unwrap();
    let text = history.get(&msg, "text").unwrap().unwrap().0.to_string();
    assert!(text.contains("keep this"), "{text}");
    for peer in &peers {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_add_and_remove_resolve_identically() {
    let mut peers = start(&["ann", "ben", "cat", "dan"], no_redial()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "admins").await;
    let key = |p: &Peer| meshchat_node::public_key_of(&p.peer_id()).unwrap();
    let (ben, cat) = (key(&peers[1]), key(&peers[2]));
    let cat_peer = peers[2].peer_id();
    peers[0]
        .node
        .groups()
        .set_role(chat, peers[1].peer_id(), Role::Admin)
        .await
        .unwrap();
    // Wait until ben knows he is an admin.
    while peers[1]
        .node
        .groups()
        .info(chat)
        .await
        .unwrap()
        .members
        .iter()
        .any(|m| m.key == ben && m.role != meshchat_node::crdt::Role::Admin)
    {
        peers[1]
            .wait_for("the promotion", |e| {
                matches!(e, Event::GroupChanged { .. }).then_some(())
            })
            .await;
    }
    // Split {ann} | {ben, cat, dan}; ann removes cat while ben promotes cat.
    for b in 1..4 {
        let other = peers[b].peer_id();
        peers[0].node.network().disconnect(other).await.unwrap();
    }
    for _ in 1..4 {
        peers[0]
            .wait_for("the partition", |e| {
                matches!(e, Event::PeerDisconnected { .. }).then_some(())
            })
            .await;
    }
    peers[0]
        .node
        .groups()
        .remove_member(chat, cat_peer)
        .await
        .unwrap();
    peers[1]
        .node
        .groups()
        .set_role(chat, cat_peer, Role::Admin)
        .await
        .unwrap();
    // Each side has applied its own change; from now on, a GroupChanged
    // event means the other side's change arrived.
    for peer in &mut peers[1..] {
        while peer
            .node
            .groups()
            .info(chat)
            .await
            .unwrap()
            .members
            .iter()
            .any(|m| m.key == cat && m.role != meshchat_node::crdt::Role::Admin)
        {
            peer.wait_for("ben's promotion of cat", |e| {
                matches!(e, Event::GroupChanged { .. }).then_some(())
            })
            .await;
        }
    }
    for peer in &mut peers {
        peer.drain();
    }
    // Heal and wait until everyone has both changes.
    let addr = peers[1].addrs().await.remove(0);
    peers[0].node.network().dial(addr).await.unwrap();
    // Each side hears of the other's change; the changes may arrive apart
    // (gossip, sync), so then wait until cat is gone everywhere: if the
    // promotion won anywhere, this times out.
    let mut infos = Vec::new();
    for peer in &mut peers {
        peer.wait_for("the other side's membership change", |e| {
            matches!(e, Event::GroupChanged { .. }).then_some(())
        })
        .await;
        loop {
            let info = peer.node.groups().info(chat).await.unwrap();
            if !info.members.iter().any(|m| m.key == cat) {
                infos.push(info);
                break;
            }
            peer.wait_for("the other side's membership change", |e| {
                matches!(e, Event::GroupChanged { .. }).then_some(())
            })
            .await;
        }
    }
    // The removal and the concurrent promotion resolve the same everywhere:
    // the removal wins (a change concurrent with its author's... or its
    // subject's removal does not bring the member back).
    for info in &infos[1..] {
        assert_eq!(info.members, infos[0].members);
    }
    assert!(!infos[0].members.iter().any(|m| m.key == cat));
    for peer in &peers {
        peer.stop().await;
    }
}

/// Groups are found by name through the name index: two groups with one
/// name are ambiguous, and a rename, made here or received, moves the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_name_is_ambiguous_until_a_rename_moves_it() {
    let mut peers = start(&["ann", "ben"], NodeConfig::loopback()).await;
    full_mesh(&peers).await;
    let shared = create(&mut peers, "climbers").await;
    let (ann, ben) = (&peers[0].node, &peers[1].node);
    // Ben looks it up once: his index is built now, before the rename.
    assert_eq!(ben.chats().resolve("climbers").await.unwrap(), shared);

    let own = ann.groups().create("climbers", Vec::new()).await.unwrap();
    assert_eq!(
        ann.chats().resolve("climbers").await,
        Err(ResolveError::Ambiguous("climbers".into()))
    );
    ann.groups().rename(own, "boulderers").await.unwrap();
    assert_eq!(ann.chats().resolve("climbers").await.unwrap(), shared);
    assert_eq!(ann.chats().resolve("boulderers").await.unwrap(), own);

    // A rename received from another member moves ben's entry too.
    ann.groups().rename(shared, "alpinists").await.unwrap();
    // Earlier changes of the group may still be announced: wait for the
    // rename itself.
    while peers[1].node.groups().info(shared).await.unwrap().name != "alpinists" {
        peers[1]
            .wait_for("the rename", |e| match e {
                Event::GroupChanged { chat } if *chat == shared => Some(()),
                _ => None,
            })
            .await;
    }
    let ben = &peers[1].node;
    assert_eq!(ben.chats().resolve("alpinists").await.unwrap(), shared);
    assert!(matches!(
        ben.chats().resolve("climbers").await,
        Err(ResolveError::NotFound(_))
    ));
    for peer in &peers {
        peer.stop().await;
    }
}

async fn gossip_received(peer: &Peer) -> u64 {
    peer.node
        .network()
        .status()
        .await
        .unwrap()
        .traffic
        .received_by_gossip
}

/// Every member restarts (new ports, the same data dirs): the history stays
/// readable, and the sealed gossip that follows opens at every member (the
/// sender keys and the keys received survive, or are asked for again).
/// In the second round after the restart the connections are up (no sync
/// on connect) and the resync timer is far off: gossip carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_gossip_keeps_flowing_after_every_member_restarts() {
    let mut peers = start(&["ann", "ben", "cat"], no_redial()).await;
    full_mesh(&peers).await;
    let chat = create(&mut peers, "restarts").await;
    for (i, peer) in peers.iter().enumerate() {
        peer.node
            .chats()
            .send(chat, format!("before {i}"))
            .await
            .unwrap();
    }
    for peer in &mut peers {
        wait_group_messages(peer, chat, 2).await;
    }
    let before = ids(&peers[0], chat).await;
    for peer in &mut peers {
        peer.restart().await;
    }
    for peer in &peers {
        assert_eq!(
            ids(peer, chat).await,
            before,
            "history survives the restart"
        );
    }
    // Back in touch: a first round by whatever path (sync on connect).
    full_mesh(&peers).await;
    for (i, peer) in peers.iter().enumerate() {
        peer.node
            .chats()
            .send(chat, format!("after {i}"))
            .await
            .unwrap();
    }
    for peer in &mut peers {
        wait_history_len(peer, chat, 6).await;
    }
    // The second round: gossip only.
    let mut by_gossip = Vec::new();
    for peer in &peers {
        by_gossip.push(gossip_received(peer).await);
    }
    for (i, peer) in peers.iter().enumerate() {
        peer.node
            .chats()
            .send(chat, format!("again {i}"))
            .await
            .unwrap();
    }
    for peer in &mut peers {
        wait_history_len(peer, chat, 9).await;
    }
    // Each member opened sealed gossip after its restart. (Not necessarily
    // all of the round: a frame that overtakes one it depends on is
    // completed by a sync with its forwarder.)
    for (peer, earlier) in peers.iter().zip(by_gossip) {
        assert!(
            gossip_received(peer).await > earlier,
            "{} received some of the second round by gossip",
            peer.name
        );
    }
    let last = ids(&peers[0], chat).await;
    for peer in &peers[1..] {
        assert_eq!(ids(peer, chat).await, last);
    }
    for peer in &peers {
        peer.stop().await;
    }
}

/// A member that receives a change whose dependencies it lacks asks the
/// sender for them at once, rather than holding it until the next
/// anti-entropy round (`resync_secs`, 300 s) or until the author reaches it.
/// Here the dependency is Ann's message, which only Bob has: Ann speaks by
/// hand, pushes to Bob alone and serves nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_missing_its_dependencies_fetches_them_from_its_sender() {
    meshchat_tests::init_tracing();
    let (bob, mut carol, mut ann, group) =
        group_with_a_bare_member(["bob", "carol"], Identity::generate(), "trio").await;

    // Ann reads the group from Bob and writes a message only Bob receives.
    let mut replica = replica_of(&mut ann, group).await;
    let written = replica
        .write_message(&ann.identity, "ann, to bob only", None, 1_700_000_000_000)
        .unwrap();
    let Response::Pushed { stored, .. } = ann.push(vec![written.change]).await else {
        panic!("Bob answers a push");
    };
    assert_eq!(stored, vec![written.hash], "Bob keeps Ann's message");

    // Bob reacts to Ann's message (a reaction is built on everything Bob
    // holds, Ann's message too); Carol gets the reaction and must fetch
    // Ann's message from Bob to read it. (A new message would not do: it is
    // built on its author's own last change and heads held for 30 s.)
    bob.node
        .chats()
        .react(group, written.message.id, Some("👍".into()))
        .await
        .unwrap();
    wait_group_messages(&mut carol, group, 1).await;
    let texts = carol.texts(group).await;
    assert_eq!(texts, ["ann, to bob only"], "{texts:?}");
    // With it, or (if Ann's came on its own first) just after.
    if carol.history(group).await[0].message.reactions.is_empty() {
        carol
            .wait_for("Bob's reaction", |e| match e {
                Event::MessageUpdated { chat, message } if *chat == group => {
                    (!message.reactions.is_empty()).then_some(())
                }
                _ => None,
            })
            .await;
    }
    bob.stop().await;
    carol.stop().await;
}

/// A change that reached a member first by push (its author's push back
/// after a sync, racing the author's own gossip frame) is still forwarded
/// when its gossip copy comes: Cat, whose only link to the group's gossip
/// is Ben, gets Mallory's message by gossip although Ben had it pushed
/// first. (Ben judged the frame "nothing new", `Ignore`, and Cat waited for
/// the next anti-entropy round, 300 s away: `meshchat demo` failed in CI.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gossip_copy_of_a_change_pushed_first_is_forwarded() {
    use meshchat_tests::gossip::GossipMember;

    let mallory = Identity::generate();
    let (ben, mut cat, mut client, group) =
        group_with_a_bare_member(["ben", "cat"], mallory.clone(), "pushed").await;
    let mut replica = replica_of(&mut client, group).await;
    let first = replica
        .write_message(&mallory, "first", None, 1_700_000_000_000)
        .unwrap();
    let second = replica
        .write_message(&mallory, "pushed, then gossiped", None, 1_700_000_000_001)
        .unwrap();

    drop(client);

    // The first by gossip: Ben's topic brings news, so none of Ben's syncs
    // pushes the second to Cat (the path this test must leave closed).
    let mut gossip = GossipMember::join(mallory.clone(), group, &ben).await;
    gossip.publish(group, vec![first.change]).await;
    wait_group_messages(&mut cat, group, 1).await;
    drop(gossip);

    let mut client = BareClient::connect(mallory.clone(), SyncCodec, &ben).await;
    let Response::Pushed { stored, .. } = client.push(vec![second.change.clone()]).await else {
        panic!("Ben answers a push");
    };
    assert_eq!(stored, vec![second.hash], "Ben keeps Mallory's message");
    drop(client);
    let mut gossip = GossipMember::join(mallory, group, &ben).await;
    gossip.publish(group, vec![second.change]).await;

    wait_group_messages(&mut cat, group, 1).await;
    let texts = cat.texts(group).await;
    assert!(
        texts.contains(&"pushed, then gossiped".to_string()),
        "{texts:?}"
    );
    assert_eq!(gossip_received(&cat).await, 2, "both came to Cat by gossip");
    ben.stop().await;
    cat.stop().await;
}

/// A member that joins the topic while it is busy still gets what was
/// published just before its subscription arrived: gossip never carries
/// that to it, its own sync on joining may have come first, and the
/// publisher's sync with the new subscriber pushes it back however busy
/// the topic is. (Without that, it waited for the next message that
/// depended on it, or the next anti-entropy round.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_a_busy_topic_gets_what_was_published_just_before() {
    use meshchat_tests::gossip::GossipMember;

    let identity = Identity::generate();
    let (mut ben, cat, mut client, group) =
        group_with_a_bare_member(["ben", "cat"], identity.clone(), "joiner").await;
    let mut replica = replica_of(&mut client, group).await;
    drop(client);

    // Ben's topic brings news: Mallory's message, by gossip. (From a bare
    // member that has joined the topic: a node that sends at once after it
    // joined may find the gossip mesh not yet formed and push instead.)
    let news = replica
        .write_message(&identity, "busy", None, 1_700_000_000_000)
        .unwrap();
    let mut gossip = GossipMember::join(identity.clone(), group, &ben).await;
    gossip.publish(group, vec![news.change]).await;
    wait_group_messages(&mut ben, group, 1).await;
    assert!(gossip_received(&ben).await >= 1, "it came to Ben by gossip");
    drop(gossip);

    // Mallory is connected but not on the topic when Ben writes.
    let mut mallory = GossipMember::connect_unsubscribed(identity, group, &ben).await;
    let sent = ben
        .node
        .chats()
        .send(group, "just before you joined")
        .await
        .unwrap();
    mallory.subscribe(group).await;

    let arrived = tokio::time::timeout(meshchat_tests::wait::WAIT, async {
        while replica.message(&sent.message.id).is_none() {
            let pushed = mallory.next_push(meshchat_tests::wait::WAIT).await;
            replica.receive(pushed.expect("a push from Ben"), 0);
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "Ben never pushed its message to the joiner"
    );
    ben.stop().await;
    cat.stop().await;
}

/// A gossiped frame whose change waits for one it was built on is judged
/// once that one arrives, and forwarded then: Cat, whose only link to the
/// group's gossip is Ben, gets Mallory's second message by gossip although
/// Ben got it before the first. (Reported `Ignore` at once, it stopped at
/// Ben, and Cat had it only at the next anti-entropy round, 300 s away.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_waiting_for_a_dependency_is_forwarded_once_it_arrives() {
    use meshchat_tests::gossip::GossipMember;

    let mallory = Identity::generate();
    let (ben, mut cat, mut client, group) =
        group_with_a_bare_member(["ben", "cat"], mallory.clone(), "relayed").await;

    // Mallory reads the group from Ben and writes two messages by hand, the
    // second built on the first.
    let mut replica = replica_of(&mut client, group).await;
    let first = replica
        .write_message(&mallory, "first", None, 1_700_000_000_000)
        .unwrap();
    let second = replica
        .write_message(&mallory, "second", None, 1_700_000_000_001)
        .unwrap();
    drop(client);

    // On the topic, through Ben only, the second first.
    let mut gossip = GossipMember::join(mallory, group, &ben).await;
    gossip.publish(group, vec![second.change]).await;
    gossip.publish(group, vec![first.change]).await;

    wait_group_messages(&mut cat, group, 2).await;
    let texts = cat.texts(group).await;
    assert!(texts.contains(&"second".to_string()), "{texts:?}");
    assert!(
        gossip_received(&cat).await >= 2,
        "both came to Cat by gossip"
    );
    ben.stop().await;
    cat.stop().await;
}

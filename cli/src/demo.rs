//! `meshchat demo`: a self-contained tour on loopback. Two real nodes (libp2p,
//! Automerge, sled) in temporary directories chat; Bob goes offline, Alice
//! keeps writing, Bob comes back and catches up; a group of three; a
//! profile status and presence; a picture with its preview; a relay holding
//! mail while each side is offline in turn; then how to start the desktop
//! app.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use meshchat_node::{
    crdt::ChatId, DataDir, DeliveryState, Event, HistoryEntry, Node, NodeConfig, Protocol,
};
use tokio::sync::broadcast;

use crate::format::{self, Names};

/// Longest wait for any one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

struct DemoPeer {
    name: &'static str,
    dir: DataDir,
    config: NodeConfig,
    node: Node,
    events: broadcast::Receiver<Event>,
}

impl DemoPeer {
    async fn start(root: &std::path::Path, name: &'static str) -> Result<Self> {
        Self::start_with(root, name, NodeConfig::loopback()).await
    }

    async fn start_with(
        root: &std::path::Path,
        name: &'static str,
        mut config: NodeConfig,
    ) -> Result<Self> {
        let dir = DataDir::new(root.join(name));
        dir.init(Some(name), &config)?;
        let node = meshchat_node::spawn(&dir, config.clone()).await?;
        // Restart on the same port so the other side's address stays valid.
        config.listen = node
            .network()
            .status()
            .await?
            .listen_addrs
            .into_iter()
            .map(|a| {
                a.into_iter()
                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                    .collect()
            })
            .collect();
        let events = node.subscribe();
        Ok(Self {
            name,
            dir,
            config,
            node,
            events,
        })
    }

    async fn restart(&mut self) -> Result<()> {
        self.node = meshchat_node::spawn(&self.dir, self.config.clone()).await?;
        self.events = self.node.subscribe();
        Ok(())
    }

    async fn wait(&mut self, what: &str, mut done: impl FnMut(&Event) -> bool) -> Result<()> {
        let events = &mut self.events;
        let waited = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok(event) if done(&event) => return Ok(()),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => bail!("node stopped"),
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => bail!("{}: no {what} within {STEP_TIMEOUT:?}", self.name),
        }
    }

    async fn wait_incoming(&mut self, n: usize) -> Result<()> {
        let mut seen = 0;
        self.wait("incoming message", |e| {
            if matches!(
                e,
                Event::Message {
                    outgoing: false,
                    ..
                }
            ) {
                seen += 1;
            }
            seen >= n
        })
        .await
    }

    async fn wait_delivered(&mut self, n: usize) -> Result<()> {
        let mut seen = 0;
        self.wait("delivery receipt", |e| {
            if matches!(
                e,
                Event::Delivery {
                    state: DeliveryState::Delivered,
                    ..
                }
            ) {
                seen += 1;
            }
            seen >= n
        })
        .await
    }
}

pub(crate) async fn run(json: bool) -> Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    // The demo's own text uses newlines for spacing; each line is printed
    // (and neutralised) on its own.
    let say = |text: String| {
        if !json {
            for line in text.split('\n') {
                crate::format::say!("{line}");
            }
        }
    };
    say("meshchat demo: two peers on loopback with real libp2p, Automerge and sled,".into());
    say("in temporary directories. Nothing to set up; nothing left behind.\n".into());

    let mut alice = DemoPeer::start(tmp.path(), "alice").await?;
    let mut bob = DemoPeer::start(tmp.path(), "bob").await?;
    let bob_addrs = bob.node.network().status().await?.listen_addrs;
    say(format!("1. Alice is {}", alice.node.peer_id()));
    say(format!(
        "   Bob   is {}, listening on {}",
        bob.node.peer_id(),
        bob_addrs[0]
    ));

    alice
        .node
        .contacts()
        .add(bob.node.peer_id(), Some("bob".into()), bob_addrs)
        .await?;
    bob.node
        .contacts()
        .add(alice.node.peer_id(), Some("alice".into()), Vec::new())
        .await?;
    let chat = alice.node.chats().direct(bob.node.peer_id()).await?;
    say(format!(
        "2. Alice adds Bob by PeerId and address. Their chat: {chat}\n"
    ));

    say("3. They chat (each line waits for the other side's durable acknowledgement):".into());
    let lines: [(bool, &str); 4] = [
        (true, "Hi Bob! This is meshchat: no server between us."),
        (
            false,
            "Hi Alice. Every message is a signed Automerge change.",
        ),
        (
            true,
            "And it is stored in sled before anyone says 'got it'.",
        ),
        (false, "Going offline for a bit, keep writing."),
    ];
    for (from_alice, text) in lines {
        let (sender, receiver) = if from_alice {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let started = Instant::now();
        sender.node.chats().send(chat, text).await?;
        receiver.wait_incoming(1).await?;
        sender.wait_delivered(1).await?;
        say(format!(
            "   {} → {}: {text}  ✓✓ {:.1} ms",
            sender.name,
            receiver.name,
            started.elapsed().as_secs_f64() * 1000.0
        ));
    }

    bob.node.shutdown().await;
    say("\n4. Bob goes offline (his node stops). Alice writes on:".into());
    for text in [
        "Are you there?",
        "I'll leave these with you.",
        "See you soon.",
    ] {
        alice.node.chats().send(chat, text).await?;
        say(format!("   alice → bob: {text}  · pending"));
    }
    let outbox = alice.node.network().status().await?.outbox;
    say(format!(
        "   Alice's outbox holds {outbox} undelivered change(s), on disk.\n"
    ));

    let started = Instant::now();
    bob.restart().await?;
    bob.wait_incoming(3).await?;
    alice.wait_delivered(3).await?;
    say(format!(
        "5. Bob comes back: reconnected and caught up with 3 messages in {:.0} ms; Alice sees ✓✓.\n",
        started.elapsed().as_secs_f64() * 1000.0
    ));

    let alice_view = alice.node.chats().history(chat, None).await?;
    let bob_view = bob.node.chats().history(chat, None).await?;
    let ids = |h: &[HistoryEntry]| h.iter().map(|e| e.message.id).collect::<Vec<_>>();
    if ids(&alice_view) != ids(&bob_view) {
        bail!("the two replicas differ: this is a bug, please report it");
    }
    transcript(&alice, chat, &alice_view, json, &say).await?;
    say(format!(
        "   Both replicas hold the identical history ({} messages).\n",
        alice_view.len()
    ));

    let group = group_tour(tmp.path(), &mut alice, &mut bob, &say).await?;
    profile_tour(&mut alice, &mut bob, &say).await?;
    file_tour(tmp.path(), chat, &mut alice, &mut bob, &say).await?;
    relay_tour(tmp.path(), &mut alice, &mut bob, &say).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "chat": chat,
                "messages": alice_view.len(),
                "group": group,
                "converged": true,
            })
        );
    }
    say("Demo complete.\n".into());
    say("Your turn: `meshchat init --name <you>`, then `meshchat daemon`, then".into());
    say("`meshchat ui` opens the desktop app in your browser (chats, groups, files,".into());
    say("contacts by invite). The README's \"Desktop app\" section shows it.".into());
    alice.node.shutdown().await;
    bob.node.shutdown().await;
    Ok(())
}

/// Alice, Bob and Carol in a group: gossip, a reply, a reaction, an edit.
async fn group_tour(
    root: &std::path::Path,
    alice: &mut DemoPeer,
    bob: &mut DemoPeer,
    say: &impl Fn(String),
) -> Result<ChatId> {
    let mut carol = DemoPeer::start(root, "carol").await?;
    let carol_addrs = carol.node.network().status().await?.listen_addrs;
    alice
        .node
        .contacts()
        .add(carol.node.peer_id(), Some("carol".into()), carol_addrs)
        .await?;
    // Invitations from people who are not contacts wait as message requests.
    carol
        .node
        .contacts()
        .add(alice.node.peer_id(), Some("alice".into()), Vec::new())
        .await?;
    say("7. Carol starts. Alice creates the group \"Weekend plans\" with Bob and Carol;".into());
    say("   its members, roles and messages are Automerge documents synced over gossipsub.".into());
    let group = alice
        .node
        .groups()
        .create(
            "Weekend plans",
            vec![bob.node.peer_id(), carol.node.peer_id()],
        )
        .await?;
    for peer in [&mut *bob, &mut carol] {
        peer.wait(
            "group invitation",
            |e| matches!(e, Event::GroupJoined { chat } if *chat == group),
        )
        .await?;
    }
    let hike = alice.node.chats().send(group, "Hike on Saturday?").await?;
    bob.wait_incoming(1).await?;
    carol.wait_incoming(1).await?;
    let reply = bob
        .node
        .chats()
        .reply(group, hike.message.id, "In! Sunday works too")
        .await?;
    alice.wait_incoming(1).await?;
    carol.wait_incoming(1).await?;
    carol
        .node
        .chats()
        .react(group, hike.message.id, Some("🥾".into()))
        .await?;
    bob.node
        .chats()
        .edit(group, reply.message.id, "In! Saturday it is")
        .await?;
    // Every replica ends with the same two messages, the edit and the reaction.
    let settled = |h: &[HistoryEntry]| {
        h.len() == 2
            && h.iter().any(|e| e.message.text == "In! Saturday it is")
            && h.iter().any(|e| !e.message.reactions.is_empty())
    };
    for peer in [&mut *alice, &mut *bob, &mut carol] {
        while !settled(&peer.node.chats().history(group, None).await?) {
            peer.wait("the group to settle", |e| {
                matches!(e, Event::Message { .. } | Event::MessageUpdated { .. })
            })
            .await?;
        }
    }
    let messages = |h: Vec<HistoryEntry>| h.into_iter().map(|e| e.message).collect::<Vec<_>>();
    let reference = messages(alice.node.chats().history(group, None).await?);
    for peer in [&*bob, &carol] {
        if messages(peer.node.chats().history(group, None).await?) != reference {
            bail!("the group replicas differ: this is a bug, please report it");
        }
    }
    let view = alice.node.chats().history(group, None).await?;
    let names = Names::new(alice.node.peer_id(), &alice.node.contacts().list().await?);
    say("8. The group, as all three see it:".into());
    for entry in &view {
        say(format!("   {}", format::history_line(&names, entry, &view)));
    }
    carol.node.shutdown().await;
    Ok(group)
}

/// Alice sends a picture: Bob's chat shows its preview at once, and his
/// node fetches the file itself, verified against its BLAKE3 hash.
async fn file_tour(
    root: &std::path::Path,
    chat: ChatId,
    alice: &mut DemoPeer,
    bob: &mut DemoPeer,
    say: &impl Fn(String),
) -> Result<()> {
    let path = root.join("sunset.png");
    let picture = image::RgbImage::from_fn(320, 200, |x, y| {
        let sky = (255 - y) as u8;
        image::Rgb([255, (sky / 2).saturating_add((x / 4) as u8), sky / 3])
    });
    picture
        .save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    let started = Instant::now();
    let sent = alice
        .node
        .files()
        .send(chat, &path, "Sunset at the crag")
        .await?;
    let attachment = sent
        .message
        .attachment
        .as_ref()
        .context("the message carries no file")?;
    let hash = attachment.hash;
    bob.wait("the picture", |e| {
        matches!(e, Event::File { hash: h, status: meshchat_node::media::FileStatus::Ready { .. }, .. } if *h == hash)
    })
    .await?;
    say(format!(
        "10. Alice sends a picture ({}, {} bytes) with a {}-byte preview inside the message;",
        attachment.name,
        attachment.size,
        attachment.preview.len()
    ));
    say(format!(
        "    Bob's node fetched the file by itself and checked its BLAKE3 hash in {:.0} ms.\n",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(())
}

/// A relay holds Bob's mail: Bob is offline when Alice writes, Alice is
/// offline when Bob comes back, and the message still arrives.
async fn relay_tour(
    root: &std::path::Path,
    alice: &mut DemoPeer,
    bob: &mut DemoPeer,
    say: &impl Fn(String),
) -> Result<()> {
    let relay = DemoPeer::start_with(
        root,
        "relay",
        NodeConfig {
            mailbox: Some(meshchat_node::mailbox::MailboxConfig::default()),
            ..NodeConfig::loopback()
        },
    )
    .await?;
    let relay_addr = relay
        .node
        .network()
        .status()
        .await?
        .listen_addrs
        .into_iter()
        .next()
        .context("the relay listens nowhere")?;
    // Bob keeps his mail at the relay; his invite carries it and a delivery token.
    bob.node.shutdown().await;
    bob.config.relays = vec![relay_addr];
    bob.restart().await?;
    let invite = bob.node.contacts().invite().await?;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await?;
    bob.node.shutdown().await;
    let chat = alice.node.chats().direct(bob.node.peer_id()).await?;
    let text = "Left this with your relay while you were away.";
    alice.node.chats().send(chat, text).await?;
    alice
        .wait("the relay's custody receipt", |e| {
            matches!(
                e,
                Event::Delivery {
                    state: DeliveryState::Sent,
                    ..
                }
            )
        })
        .await?;
    say("11. A relay holds mail. Bob, now with a relay, goes offline; Alice writes:".into());
    say(format!(
        "    alice → bob: {text}  ✓ (held by the relay, signed receipt)"
    ));
    alice.node.shutdown().await;
    say("    Alice goes offline too. Bob comes back with nobody else online…".into());
    let started = Instant::now();
    bob.restart().await?;
    bob.wait_incoming(1).await?;
    say(format!(
        "    …and fetches it from the relay in {:.0} ms.\n",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    relay.node.shutdown().await;
    Ok(())
}

/// Alice sets a status; Bob's node learns it, and sees her online.
async fn profile_tour(
    alice: &mut DemoPeer,
    bob: &mut DemoPeer,
    say: &impl Fn(String),
) -> Result<()> {
    const STATUS: &str = "Out climbing, back Sunday";
    let started = Instant::now();
    alice
        .node
        .profiles()
        .set(meshchat_node::ProfileUpdate {
            status: Some(STATUS.into()),
            ..Default::default()
        })
        .await?;
    let alice_id = alice.node.peer_id();
    loop {
        let profile = bob.node.profiles().get(Some(alice_id)).await?;
        if profile.is_some_and(|p| p.profile.status.as_deref() == Some(STATUS)) {
            break;
        }
        bob.wait(
            "profile change",
            |e| matches!(e, Event::ProfileChanged { peer } if *peer == alice_id),
        )
        .await?;
    }
    say(format!(
        "\n9. Alice sets her status to \"{STATUS}\"; Bob's node has it in {:.0} ms (signed by her key).",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    let seen = bob.node.profiles().last_seen(alice_id).await?;
    say(format!(
        "   Bob sees Alice: {} (`meshchat last-seen` lists every contact).\n",
        crate::social::describe_last_seen(&seen, crate::social::now_ms())
    ));
    Ok(())
}

async fn transcript(
    alice: &DemoPeer,
    chat: ChatId,
    history: &[HistoryEntry],
    json: bool,
    say: &impl Fn(String),
) -> Result<()> {
    if json {
        for entry in history {
            println!("{}", serde_json::to_string(entry)?);
        }
        return Ok(());
    }
    let names = Names::new(alice.node.peer_id(), &alice.node.contacts().list().await?);
    say(format!(
        "6. Transcript of chat {} (Alice's view):",
        &chat.to_string()[..12]
    ));
    for entry in history {
        say(format!(
            "   [{}] {:>5}: {}{}",
            format::time(entry.message.sent_at_ms),
            names.key(&entry.message.author),
            entry.message.text,
            format::ticks(entry.delivery)
        ));
    }
    Ok(())
}

//! Files end to end encrypted, between real nodes on loopback: each file is
//! encrypted under its own key before it enters a blob store, so no store,
//! relay cache or peer holding the hash without the message's key ever has
//! the plaintext; the recipient still gets the file byte for byte.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use meshchat_node::{
    crdt::{Attachment, BlobHash, ChatId, MessageId},
    media::{BlobConfig, FileStatus},
    Event, NodeConfig,
};
use meshchat_tests::{within, Peer};

/// What every test file is made of: a line no ciphertext holds by chance.
const NEEDLE: &[u8] = b"meshchat e2e media plaintext, line ";

/// A file of `lines` distinctive lines, written at `path`; its bytes.
fn write_pattern(path: &Path, lines: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..lines {
        bytes.extend_from_slice(NEEDLE);
        bytes.extend_from_slice(format!("{i:08}\n").as_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// The files under `dir` holding `needle` (files that vanish while the
/// walk runs, a store's temporaries, are skipped).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// No automatic downloads: the test decides when to fetch.
fn manual() -> NodeConfig {
    NodeConfig {
        blobs: BlobConfig {
            auto_download_bytes: 0,
            ..BlobConfig::loopback()
        },
        ..NodeConfig::loopback()
    }
}

/// Makes `a` and `b` contacts of each other, connected, each knowing the
/// other's blob address (a public probe blob fetched each way).
async fn befriend(a: &mut Peer, b: &mut Peer) -> ChatId {
    let chat = a.add(b).await;
    b.add(a).await;
    let pb = b.peer_id();
    if !a
        .node
        .network()
        .status()
        .await
        .unwrap()
        .connected
        .contains(&pb)
    {
        a.node
            .network()
            .dial(b.addrs().await.remove(0))
            .await
            .unwrap();
        a.wait_for("connection", |e| match e {
            Event::PeerConnected { peer } if *peer == pb => Some(()),
            _ => None,
        })
        .await;
    }
    for (from, to) in [(&*a, &*b), (&*b, &*a)] {
        let probe = to.tmp.path().join(format!("probe-{}", from.name));
        std::fs::write(&probe, format!("probe for {}", from.name)).unwrap();
        let hash = to.node.files().import_blob(&probe).await.unwrap();
        within(
            "probe blob",
            from.node.files().fetch_blob(hash, 64, to.peer_id()),
        )
        .await
        .unwrap();
    }
    chat
}

async fn wait_file_message(peer: &mut Peer) -> (MessageId, Attachment) {
    peer.wait_for("a file message", |e| match e {
        Event::Message {
            message,
            outgoing: false,
            ..
        } => message.attachment.clone().map(|a| (message.id, *a)),
        _ => None,
    })
    .await
}

async fn wait_ready(peer: &mut Peer, hash: BlobHash) {
    peer.wait_for("file ready", |e| match e {
        Event::File {
            hash: h,
            status: FileStatus::Ready { .. },
            ..
        } if *h == hash => Some(()),
        _ => None,
    })
    .await
}

async fn send(peer: &Peer, chat: ChatId, path: &Path) -> Attachment {
    let sent = peer.node.files().send(chat, path, "").await.unwrap();
    sent.message.attachment.map(|a| *a).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_whole_while_both_blob_stores_hold_only_ciphertext() {
    let mut alice = Peer::start_with("alice", manual()).await;
    let mut bob = Peer::start_with("bob", manual()).await;
    let chat = befriend(&mut alice, &mut bob).await;

    // A large file (its own data file in the store) and a small one
    // (inlined in the store's database).
    let sources = alice.tmp.path().join("src");
    std::fs::create_dir(&sources).unwrap();
    let big_src = sources.join("report.txt");
    let big = write_pattern(&big_src, 30_000);
    let small_src = sources.join("note.txt");
    let small = write_pattern(&small_src, 40);
    assert!(big.len() > 1024 * 1024 && small.len() < 4096);
    let mut sent = Vec::new();
    for (src, plain) in [(&big_src, &big), (&small_src, &small)] {
        let attachment = send(&alice, chat, src).await;
        assert!(attachment.key.is_some(), "a file is sent with its key");
        assert_eq!(attachment.size, plain.len() as u64);
        assert_ne!(
            attachment.hash.as_bytes(),
            iroh_blobs::Hash::new(plain).as_bytes(),
            "the blob is not the file"
        );
        sent.push(attachment);
    }

    for (i, plain) in [&big, &small].into_iter().enumerate() {
        let (id, seen) = wait_file_message(&mut bob).await;
        assert_eq!(seen, sent[i], "listed with its key");
        let out = bob.tmp.path().join("out").join(format!("{i}.txt"));
        within("fetch", bob.node.files().fetch(chat, id, Some(out.clone())))
            .await
            .unwrap();
        assert_eq!(&std::fs::read(&out).unwrap(), plain, "byte for byte");

        // What the store holds, and what any peer serving it sends, is the
        // ciphertext: same size, not the file, hashing to the message's hash.
        let raw = bob.tmp.path().join(format!("raw-{i}"));
        bob.node.files().export_blob(seen.hash, &raw).await.unwrap();
        let raw = std::fs::read(&raw).unwrap();
        assert_eq!(raw.len(), plain.len());
        assert!(!holds(&raw, NEEDLE));
        assert_eq!(iroh_blobs::Hash::new(&raw).as_bytes(), seen.hash.as_bytes());
    }

    alice.stop().await;
    bob.stop().await;
    // The search finds the pattern where it is (the sources, the saved
    // files) and nowhere in either data dir.
    assert_eq!(files_holding(&sources, NEEDLE).len(), 2);
    assert_eq!(files_holding(&bob.tmp.path().join("out"), NEEDLE).len(), 2);
    for peer in [&alice, &bob] {
        let leaked = files_holding(peer.dir.root(), NEEDLE);
        assert!(leaked.is_empty(), "{}'s data dir: {leaked:?}", peer.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_caches_only_ciphertext_and_the_offline_recipient_reads_the_file() {
    let (relay, relay_addr) = Peer::start_relay().await;
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr],
            ..NodeConfig::loopback()
        },
    )
    .await;
    // Bob knows Alice (else her message would wait as a request); his
    // invite gives Alice his relay, a delivery token and his key.
    bob.add_one_way(&alice).await;
    let invite = bob.node.contacts().invite().await.unwrap();
    bob.stop().await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();

    let src = alice.tmp.path().join("minutes.txt");
    let plain = write_pattern(&src, 15_000);
    let attachment = send(&alice, chat, &src).await;
    // The relay takes the bytes once it holds the message.
    alice
        .wait_for("the relay holds the file", |e| match e {
            Event::File {
                hash,
                status: FileStatus::Cached { .. },
                ..
            } if *hash == attachment.hash => Some(()),
            Event::File {
                hash,
                status: FileStatus::NotCached { reason, .. },
                ..
            } if *hash == attachment.hash => panic!("not cached: {reason}"),
            _ => None,
        })
        .await;
    alice.stop().await;

    // Bob comes back while Alice is gone: message and bytes from the relay.
    bob.restart().await;
    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen, attachment);
    wait_ready(&mut bob, attachment.hash).await;
    let out = bob.tmp.path().join("out").join("minutes.txt");
    bob.node
        .files()
        .fetch(chat, id, Some(out.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), plain);

    bob.stop().await;
    relay.stop().await;
    let leaked = files_holding(relay.dir.root(), NEEDLE);
    assert!(leaked.is_empty(), "the relay's data dir: {leaked:?}");
    let leaked = files_holding(bob.dir.root(), NEEDLE);
    assert!(leaked.is_empty(), "bob's data dir: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoever_fetches_the_hash_without_the_key_gets_only_ciphertext() {
    let mut alice = Peer::start_with("alice", manual()).await;
    let mut bob = Peer::start_with("bob", manual()).await;
    let mut carol = Peer::start_with("carol", manual()).await;
    let to_bob = befriend(&mut alice, &mut bob).await;
    let src = alice.tmp.path().join("plans.txt");
    let plain = write_pattern(&src, 5_000);
    let attachment = send(&alice, to_bob, &src).await;
    let (id, _) = wait_file_message(&mut bob).await;
    within("bob's fetch", bob.node.files().fetch(to_bob, id, None))
        .await
        .unwrap();

    // Carol learns the hash (here from Bob, who names it to her without
    // the key, as a file from before encryption would be): she is entitled
    // to fetch it from Bob, and what she gets is the ciphertext.
    let to_carol = befriend(&mut bob, &mut carol).await;
    let keyless = Attachment {
        key: None,
        ..attachment.clone()
    };
    bob.node
        .files()
        .forward(to_carol, keyless, "")
        .await
        .unwrap();
    let (id, seen) = wait_file_message(&mut carol).await;
    assert_eq!(seen.key, None);
    let out = carol.tmp.path().join("out").join("plans.txt");
    within(
        "carol's fetch",
        carol.node.files().fetch(to_carol, id, Some(out.clone())),
    )
    .await
    .unwrap();
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), plain.len());
    assert_ne!(got, plain);
    assert!(!holds(&got, NEEDLE));
    // It is exactly the file under the key only the message carries.
    let mut opened = got;
    attachment.key.unwrap().apply(0, &mut opened).unwrap();
    assert_eq!(opened, plain);

    for p in [&alice, &bob, &carol] {
        p.stop().await;
    }
}

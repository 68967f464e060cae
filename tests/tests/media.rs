//! Media as content-addressed blobs, between real nodes on loopback: real
//! libp2p, real iroh endpoints, real iroh-blobs transfers, real stores.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    future::IntoFuture,
    path::{Path, PathBuf},
};

use common::{within, Peer};
use meshchat_node::{
    blobs::{BlobConfig, BlobError, FileStatus},
    crdt::{Attachment, ChatId, MessageId},
    Event, NodeConfig, NodeError, PeerId,
};

const MIB: u64 = 1024 * 1024;

/// `size` bytes of reproducible noise (incompressible, unlike zeros).
fn write_noise(path: &Path, size: u64, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size as usize);
    std::fs::write(path, bytes).unwrap();
}

fn blake3_of(path: &Path) -> [u8; 32] {
    *iroh_blobs::Hash::new(std::fs::read(path).unwrap()).as_bytes()
}

fn loopback_with(blobs: BlobConfig) -> NodeConfig {
    NodeConfig {
        blobs,
        ..NodeConfig::loopback()
    }
}

/// No automatic downloads: the test decides when to fetch.
fn manual() -> BlobConfig {
    BlobConfig {
        auto_download_bytes: 0,
        ..BlobConfig::loopback()
    }
}

/// Makes `a` and `b` contacts of each other and waits until they are connected
/// and each knows the other's blob address (identify has run both ways).
async fn befriend(a: &mut Peer, b: &mut Peer) -> ChatId {
    let chat = a.add(b).await;
    b.add(a).await;
    connected(a, b).await;
    chat
}

async fn connected(a: &mut Peer, b: &mut Peer) {
    let (pa, pb) = (a.peer_id(), b.peer_id());
    if !a.node.status().await.unwrap().connected.contains(&pb) {
        a.node.dial(b.addrs().await.remove(0)).await.unwrap();
        a.wait_for("connection", |e| match e {
            Event::PeerConnected { peer } if *peer == pb => Some(()),
            _ => None,
        })
        .await;
    }
    // A fresh public blob each way proves both know each other's blob address.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for (from, to) in [(&*a, pb), (&*b, pa)] {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::write(&probe, format!("{} {n}", from.name)).unwrap();
        let other = if to == pb { &b.node } else { &a.node };
        let hash = other.import_blob(&probe).await.unwrap();
        within("probe blob", from.node.fetch_blob(hash, 64, to))
            .await
            .unwrap();
    }
}

/// Waits for the incoming message that carries a file.
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

async fn wait_ready(peer: &mut Peer, hash: meshchat_node::crdt::BlobHash) -> u64 {
    peer.wait_for("file ready", |e| match e {
        Event::File {
            hash: h,
            status: FileStatus::Ready { size },
            ..
        } if *h == hash => Some(*size),
        _ => None,
    })
    .await
}

fn out_path(peer: &Peer, name: &str) -> PathBuf {
    peer.tmp.path().join("out").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_file_arrives_with_its_hash_checked() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    let chat = befriend(&mut alice, &mut bob).await;

    let src = alice.tmp.path().join("video.bin");
    write_noise(&src, 20 * MIB, 1);
    let sent = alice.node.send_file(chat, &src, "holiday").await.unwrap();
    let attachment = sent.message.attachment.clone().map(|a| *a).unwrap();
    assert_eq!(attachment.size, 20 * MIB);
    assert_eq!(attachment.name, "video.bin");
    assert_eq!(attachment.mime, "application/octet-stream");
    assert_eq!(attachment.hash.as_bytes(), &blake3_of(&src));

    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen, attachment, "listed at once with name, size and type");
    let out = out_path(&bob, "video.bin");
    let fetched = within("fetch", bob.node.fetch_file(chat, id, Some(out.clone())))
        .await
        .unwrap();
    assert_eq!(fetched.size, 20 * MIB);
    assert_eq!(fetched.path.as_deref(), Some(out.as_path()));
    assert_eq!(&blake3_of(&out), attachment.hash.as_bytes());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());

    // Sending the same bytes again stores nothing new: same hash.
    let copy = alice.tmp.path().join("copy.bin");
    std::fs::copy(&src, &copy).unwrap();
    let again = alice.node.send_file(chat, &copy, "").await.unwrap();
    assert_eq!(
        again.message.attachment.map(|a| *a).unwrap().hash,
        attachment.hash
    );
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_images_download_by_themselves_with_a_preview() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start("bob").await;
    let chat = befriend(&mut alice, &mut bob).await;

    // A PNG named .dat: the type comes from the content, not the name.
    let src = alice.tmp.path().join("cat.dat");
    let mut png = Vec::new();
    {
        // A real PNG made by hand is tedious; take the one the preview test uses.
        let img = image_png(300, 200);
        png.extend_from_slice(&img);
    }
    std::fs::write(&src, &png).unwrap();
    let sent = alice.node.send_file(chat, &src, "cat").await.unwrap();
    let attachment = sent.message.attachment.map(|a| *a).unwrap();
    assert_eq!(attachment.mime, "image/png");
    assert!(!attachment.preview.is_empty(), "images carry a preview");
    assert!(attachment.preview.len() <= meshchat_node::crdt::MAX_PREVIEW_BYTES);

    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen.preview, attachment.preview);
    let size = wait_ready(&mut bob, attachment.hash).await;
    assert_eq!(size, png.len() as u64);
    // Already here: fetching only exports.
    let out = out_path(&bob, "cat.png");
    bob.node
        .fetch_file(chat, id, Some(out.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(out).unwrap(), png);
    alice.stop().await;
    bob.stop().await;
}

/// A valid PNG (uncompressed deflate, so no encoder is needed in the tests).
fn image_png(width: u32, height: u32) -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn adler(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &d in data {
            a = (a + d as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0);
        for x in 0..width {
            raw.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 90]);
        }
    }
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65535).enumerate() {
        let last = (i + 1) * 65535 >= raw.len();
        z.push(last as u8);
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_chat_is_refused() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    let mut mallory = Peer::start_with("mallory", loopback_with(manual())).await;
    let chat = befriend(&mut alice, &mut bob).await;
    // Mallory is connected to Alice and can fetch her public blobs...
    befriend(&mut mallory, &mut alice).await;

    let src = alice.tmp.path().join("secret.txt");
    std::fs::write(&src, "the plans").unwrap();
    let sent = alice.node.send_file(chat, &src, "").await.unwrap();
    let hash = sent.message.attachment.map(|a| *a).unwrap().hash;

    // ...but not the chat's file, although she knows its hash.
    let refused = mallory.node.fetch_blob(hash, 1024, alice.peer_id()).await;
    assert!(
        matches!(refused, Err(NodeError::Blob(BlobError::Unavailable(_)))),
        "{refused:?}"
    );
    // A member asking the same node for the same hash is served.
    let (id, _) = wait_file_message(&mut bob).await;
    bob.node.fetch_file(chat, id, None).await.unwrap();
    for p in [&alice, &bob, &mallory] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_files_are_refused_with_a_clear_error() {
    let small = BlobConfig {
        max_file_bytes: MIB,
        ..manual()
    };
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start_with("bob", loopback_with(small.clone())).await;
    let chat = befriend(&mut alice, &mut bob).await;

    // The receiver's limit: listed, but not fetched.
    let src = alice.tmp.path().join("big.bin");
    write_noise(&src, 2 * MIB, 2);
    alice.node.send_file(chat, &src, "").await.unwrap();
    let (id, _) = wait_file_message(&mut bob).await;
    let refused = bob.node.fetch_file(chat, id, None).await.unwrap_err();
    assert!(
        matches!(refused, NodeError::Blob(BlobError::TooLarge { size, max }) if size == 2 * MIB && max == MIB),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("limit"), "{refused}");

    // The sender's limit: nothing is posted.
    let bob_chat = bob.node.direct_chat(alice.peer_id()).await.unwrap();
    let src = bob.tmp.path().join("big.bin");
    write_noise(&src, MIB + 1, 3);
    let refused = bob.node.send_file(bob_chat, &src, "").await.unwrap_err();
    assert!(
        matches!(refused, NodeError::Blob(BlobError::TooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(bob.history(bob_chat).await.len(), 1, "only Alice's message");
    alice.stop().await;
    bob.stop().await;
}

fn trying_with_stored(e: &Event, from: PeerId) -> Option<u64> {
    let from = meshchat_node::public_key_of(&from).unwrap();
    match e {
        Event::File {
            status: FileStatus::Trying { source, stored },
            ..
        } if *source == from => Some(*stored),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_interrupted_by_a_sender_restart_resumes() {
    // Alice serves slowly (8 MiB/s) so the restart lands mid-transfer.
    let slow = BlobConfig {
        serve_bytes_per_sec: Some(8 * MIB),
        ..manual()
    };
    let mut alice = Peer::start_with("alice", loopback_with(slow)).await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    let chat = befriend(&mut alice, &mut bob).await;
    let src = alice.tmp.path().join("film.bin");
    write_noise(&src, 20 * MIB, 4);
    let attachment = alice
        .node
        .send_file(chat, &src, "")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();
    let (id, _) = wait_file_message(&mut bob).await;

    let out = out_path(&bob, "film.bin");
    let fetch = tokio::spawn({
        let (node, out) = (bob.node.clone(), out.clone());
        async move { node.fetch_file(chat, id, Some(out)).await }
    });
    bob.wait_for("a quarter of the file", |e| match e {
        Event::File {
            status: FileStatus::Progress { done, .. },
            ..
        } if *done >= 5 * MIB => Some(()),
        _ => None,
    })
    .await;
    // Alice restarts (at full speed now, on a new port). Bob's attempt fails;
    // the fetch either resumes by itself once Bob learns Alice's new address,
    // or fails and is run again, as a user would.
    alice.config.blobs.serve_bytes_per_sec = None;
    alice.restart().await;
    let fetched = match within("interrupted fetch", fetch).await.unwrap() {
        Ok(fetched) => fetched,
        Err(_) => {
            connected(&mut bob, &mut alice).await;
            within(
                "fetch again",
                bob.node.fetch_file(chat, id, Some(out.clone())),
            )
            .await
            .unwrap()
        }
    };
    let alice_key = meshchat_node::public_key_of(&alice.peer_id()).unwrap();
    let alice_id = alice.peer_id();
    bob.wait_for("a failed attempt", |e| match e {
        Event::File {
            status: FileStatus::SourceFailed { source },
            ..
        } if *source == alice_key => Some(()),
        _ => None,
    })
    .await;
    let stored = bob
        .wait_for("the resumed attempt", |e| {
            trying_with_stored(e, alice_id).filter(|stored| *stored > 0)
        })
        .await;
    assert!(
        (5 * MIB..20 * MIB).contains(&stored),
        "resumed from {stored} bytes, not restarted"
    );
    assert_eq!(fetched.size, 20 * MIB);
    assert_eq!(&blake3_of(&out), attachment.hash.as_bytes());
    alice.stop().await;
    bob.stop().await;
}

/// Where an iroh-blobs file store keeps a large blob's bytes.
fn blob_data_file(peer: &Peer, hash: &meshchat_node::crdt::BlobHash) -> PathBuf {
    peer.dir
        .root()
        .join("blobs")
        .join("data")
        .join(format!("{hash}.data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serving_corrupt_data_is_detected_and_an_honest_one_used() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    // Carol downloads on her own; she is the honest second source.
    let mut carol = Peer::start("carol").await;
    befriend(&mut alice, &mut bob).await;
    befriend(&mut alice, &mut carol).await;
    befriend(&mut bob, &mut carol).await;
    let group = alice
        .node
        .create_group("trip", vec![bob.peer_id(), carol.peer_id()])
        .await
        .unwrap();
    for p in [&mut bob, &mut carol] {
        p.wait_for("joined", |e| {
            matches!(e, Event::GroupJoined { .. }).then_some(())
        })
        .await;
    }
    let src = alice.tmp.path().join("map.bin");
    write_noise(&src, 4 * MIB, 5);
    let attachment = alice
        .node
        .send_file(group, &src, "")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();
    wait_ready(&mut carol, attachment.hash).await;
    let (id, _) = wait_file_message(&mut bob).await;

    // Alice's copy rots on disk (the store trusts its own files).
    alice.stop().await;
    let data = blob_data_file(&alice, &attachment.hash);
    let mut bytes = std::fs::read(&data).unwrap();
    for b in &mut bytes[MIB as usize..MIB as usize + 4096] {
        *b ^= 0xff;
    }
    std::fs::write(&data, bytes).unwrap();
    alice.restart().await;
    connected(&mut bob, &mut alice).await;

    bob.drain();
    let out = out_path(&bob, "map.bin");
    let fetched = within("fetch", bob.node.fetch_file(group, id, Some(out.clone())))
        .await
        .unwrap();
    assert_eq!(fetched.size, 4 * MIB);
    assert_eq!(&blake3_of(&out), attachment.hash.as_bytes());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    // The author was asked first and failed verification; Carol supplied the rest.
    let alice_key = meshchat_node::public_key_of(&alice.peer_id()).unwrap();
    bob.wait_for("alice dropped as a source", |e| match e {
        Event::File {
            status: FileStatus::SourceFailed { source },
            ..
        } if *source == alice_key => Some(()),
        _ => None,
    })
    .await;
    for p in [&alice, &bob, &carol] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_the_file_through_its_relay() {
    let relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(meshchat_node::mailbox::MailboxConfig::default()),
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
    // Bob's invite carries his relay and a delivery token for it.
    let invite = bob.node.invite().await.unwrap();
    assert_eq!(invite.relays, vec![relay_addr]);
    bob.stop().await;

    let mut alice = Peer::start("alice").await;
    alice
        .node
        .add_contact_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    let chat = alice.node.direct_chat(bob.peer_id()).await.unwrap();
    let src = alice.tmp.path().join("song.bin");
    write_noise(&src, 3 * MIB, 6);
    let attachment = alice
        .node
        .send_file(chat, &src, "for later")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();
    let relay_id = meshchat_node::public_key_of(&relay.peer_id()).unwrap();
    let bob_id = meshchat_node::public_key_of(&bob.peer_id()).unwrap();
    // Both must be at the relay: the message (custody) and the bytes.
    let (mut mail, mut bytes) = (false, false);
    while !(mail && bytes) {
        match alice
            .wait_for("custody of message and file at the relay", |e| match e {
                Event::Delivery {
                    state: meshchat_node::DeliveryState::Sent,
                    ..
                } => Some(true),
                Event::File {
                    status:
                        FileStatus::Cached {
                            relay, recipient, ..
                        },
                    ..
                } if *relay == relay_id && *recipient == bob_id => Some(false),
                _ => None,
            })
            .await
        {
            true => mail = true,
            false => bytes = true,
        }
    }
    alice.stop().await;

    // Bob comes back while Alice is gone: message and bytes come from the relay.
    bob.restart().await;
    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen, attachment);
    wait_ready(&mut bob, attachment.hash).await;
    let out = out_path(&bob, "song.bin");
    bob.node
        .fetch_file(chat, id, Some(out.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    bob.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_downloads_from_its_ticket_with_plain_iroh_blobs() {
    let alice = Peer::start("alice").await;
    let bob = Peer::start("bob").await;
    let src = alice.tmp.path().join("notes.txt");
    std::fs::write(&src, "shared outside any chat").unwrap();
    let ticket = alice.node.share(&src).await.unwrap();

    // Any iroh-blobs tool: a bare endpoint with an in-memory store.
    let parsed: iroh_blobs::ticket::BlobTicket = ticket.parse().unwrap();
    let lookup = iroh::address_lookup::MemoryLookup::new();
    lookup.add_endpoint_info(parsed.addr().clone());
    let endpoint = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .address_lookup(lookup)
        .bind()
        .await
        .unwrap();
    let store = iroh_blobs::store::mem::MemStore::new();
    within(
        "bare download",
        store
            .downloader(&endpoint)
            .download(parsed.hash_and_format(), vec![parsed.addr().id])
            .into_future(),
    )
    .await
    .unwrap();
    let collection = iroh_blobs::format::collection::Collection::load(parsed.hash(), &*store)
        .await
        .unwrap();
    let (name, hash) = collection.iter().next().unwrap().clone();
    assert_eq!(name, "notes.txt");
    let bytes = store.blobs().get_bytes(hash).await.unwrap();
    assert_eq!(&bytes[..], b"shared outside any chat");
    endpoint.close().await;

    // And meshchat's own fetch-ticket writes it under its name.
    let out = bob.tmp.path().join("downloads");
    let files = within("fetch ticket", bob.node.fetch_ticket(&ticket, &out))
        .await
        .unwrap();
    assert_eq!(files.files, vec![(out.join("notes.txt"), 23)]);
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"shared outside any chat"
    );
    alice.stop().await;
    bob.stop().await;
}

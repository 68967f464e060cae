//! Media as content-addressed blobs, between real nodes on loopback: real
//! libp2p, real iroh endpoints, real iroh-blobs transfers, real stores.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{
    future::IntoFuture,
    path::{Path, PathBuf},
};

use meshchat_node::{
    api::{FetchBlobError, FetchFileError, SendFileError},
    crdt::{Attachment, BlobHash, ChatId, MessageId},
    mailbox::MailboxConfig,
    media::{BlobConfig, FileStatus, SaveOptions, SkipReason},
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{within, Peer};

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
    // A fresh public blob each way proves both know each other's blob address.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for (from, to) in [(&*a, pb), (&*b, pa)] {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::write(&probe, format!("{} {n}", from.name)).unwrap();
        let other = if to == pb { &b.node } else { &a.node };
        let hash = other.files().import_blob(&probe).await.unwrap();
        within("probe blob", from.node.files().fetch_blob(hash, 64, to))
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
    let sent = alice
        .node
        .files()
        .send(chat, &src, "holiday")
        .await
        .unwrap();
    let attachment = sent.message.attachment.clone().map(|a| *a).unwrap();
    assert_eq!(attachment.size, 20 * MIB);
    assert_eq!(attachment.name, "video.bin");
    assert_eq!(attachment.mime, "application/octet-stream");
    // The blob is the file encrypted under the key the message carries.
    assert!(attachment.key.is_some());
    assert_ne!(attachment.hash.as_bytes(), &blake3_of(&src));

    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen, attachment, "listed at once with name, size and type");
    let out = out_path(&bob, "video.bin");
    let fetched = within("fetch", bob.node.files().fetch(chat, id, Some(out.clone())))
        .await
        .unwrap();
    assert_eq!(fetched.size, 20 * MIB);
    assert_eq!(fetched.path.as_deref(), Some(out.as_path()));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());

    // Sending the same bytes again is a new blob under a new key (a key
    // encrypts one file only); forwarding reuses the blob and its key.
    let copy = alice.tmp.path().join("copy.bin");
    std::fs::copy(&src, &copy).unwrap();
    let again = alice.node.files().send(chat, &copy, "").await.unwrap();
    let again = again.message.attachment.map(|a| *a).unwrap();
    assert_ne!(again.hash, attachment.hash);
    assert_ne!(again.key, attachment.key);
    let forwarded = alice
        .node
        .files()
        .forward(chat, attachment.clone(), "")
        .await
        .unwrap();
    assert_eq!(forwarded.message.attachment.as_deref(), Some(&attachment));
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
    let sent = alice.node.files().send(chat, &src, "cat").await.unwrap();
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
        .files()
        .fetch(chat, id, Some(out.clone()))
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
    let sent = alice.node.files().send(chat, &src, "").await.unwrap();
    let hash = sent.message.attachment.map(|a| *a).unwrap().hash;

    // ...but not the chat's file, although she knows its hash.
    let refused = mallory
        .node
        .files()
        .fetch_blob(hash, 1024, alice.peer_id())
        .await;
    assert!(
        matches!(refused, Err(FetchBlobError::Unavailable(_))),
        "{refused:?}"
    );
    // A member asking the same node for the same hash is served.
    let (id, _) = wait_file_message(&mut bob).await;
    bob.node.files().fetch(chat, id, None).await.unwrap();
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
    alice.node.files().send(chat, &src, "").await.unwrap();
    let (id, _) = wait_file_message(&mut bob).await;
    let refused = bob.node.files().fetch(chat, id, None).await.unwrap_err();
    assert!(
        matches!(refused, FetchFileError::TooLarge { size, max } if size == 2 * MIB && max == MIB),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("limit"), "{refused}");

    // The sender's limit: nothing is posted.
    let bob_chat = bob.node.chats().direct(alice.peer_id()).await.unwrap();
    let src = bob.tmp.path().join("big.bin");
    write_noise(&src, MIB + 1, 3);
    let refused = bob.node.files().send(bob_chat, &src, "").await.unwrap_err();
    assert!(
        matches!(refused, SendFileError::TooLarge { .. }),
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
    alice.node.files().send(chat, &src, "").await.unwrap();
    let (id, _) = wait_file_message(&mut bob).await;

    let out = out_path(&bob, "film.bin");
    let fetch = tokio::spawn({
        let (node, out) = (bob.node.clone(), out.clone());
        async move { node.files().fetch(chat, id, Some(out)).await }
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
                bob.node.files().fetch(chat, id, Some(out.clone())),
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
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
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
        .groups()
        .create("trip", vec![bob.peer_id(), carol.peer_id()])
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
        .files()
        .send(group, &src, "")
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
    let fetched = within(
        "fetch",
        bob.node.files().fetch(group, id, Some(out.clone())),
    )
    .await
    .unwrap();
    assert_eq!(fetched.size, 4 * MIB);
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

/// A relay; Bob, who uses it and has Alice as a contact, offline now; and
/// Alice, who knows Bob's relay. Returns them and their chat.
async fn bob_offline_behind_a_relay(
    limits: MailboxConfig,
    alice_blobs: BlobConfig,
) -> (Peer, Peer, Peer, ChatId) {
    let relay = Peer::start_with(
        "relay",
        NodeConfig {
            mailbox: Some(limits),
            ..NodeConfig::loopback()
        },
    )
    .await;
    let relay_addr = relay.addrs().await.remove(0);
    let alice = Peer::start_with("alice", loopback_with(alice_blobs)).await;
    let bob = Peer::start_with(
        "bob",
        NodeConfig {
            relays: vec![relay_addr.clone()],
            ..NodeConfig::loopback()
        },
    )
    .await;
    // Bob knows Alice (else her message would wait as a request).
    bob.add_one_way(&alice).await;
    // Bob's invite carries his relay and a delivery token for it.
    let invite = bob.node.contacts().invite().await.unwrap();
    assert_eq!(invite.relays, vec![relay_addr]);
    bob.stop().await;
    alice
        .node
        .contacts()
        .add_from_invite(invite, Some("bob".into()))
        .await
        .unwrap();
    let chat = alice.node.chats().direct(bob.peer_id()).await.unwrap();
    (relay, alice, bob, chat)
}

/// The relay's answer to `sender` asking it to hold `hash`: when it holds
/// it until, or why not.
async fn relay_answer(sender: &mut Peer, hash: BlobHash) -> Result<i64, String> {
    relay_answers(sender, &[hash]).await.remove(0)
}

/// The relay's answers about each of `hashes`, in that order, whichever
/// order they come in.
async fn relay_answers(sender: &mut Peer, hashes: &[BlobHash]) -> Vec<Result<i64, String>> {
    let mut answers: Vec<Option<Result<i64, String>>> = vec![None; hashes.len()];
    while answers.iter().any(Option::is_none) {
        let (i, answer) = sender
            .wait_for("the relay's answer", |e| {
                let Event::File { hash, status, .. } = e else {
                    return None;
                };
                let i = hashes.iter().position(|h| h == hash)?;
                match status {
                    FileStatus::Cached { expires_at_ms, .. } => Some((i, Ok(*expires_at_ms))),
                    FileStatus::NotCached { reason, .. } => Some((i, Err(reason.clone()))),
                    _ => None,
                }
            })
            .await;
        answers[i] = Some(answer);
    }
    answers.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_the_file_through_its_relay() {
    let (relay, mut alice, mut bob, chat) =
        bob_offline_behind_a_relay(MailboxConfig::default(), BlobConfig::loopback()).await;
    let src = alice.tmp.path().join("song.bin");
    write_noise(&src, 3 * MIB, 6);
    let attachment = alice
        .node
        .files()
        .send(chat, &src, "for later")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();
    // The relay takes the bytes once it holds the message (custody).
    relay_answer(&mut alice, attachment.hash).await.unwrap();
    alice.stop().await;

    // Bob comes back while Alice is gone: message and bytes come from the relay.
    bob.restart().await;
    let (id, seen) = wait_file_message(&mut bob).await;
    assert_eq!(seen, attachment);
    wait_ready(&mut bob, attachment.hash).await;
    let out = out_path(&bob, "song.bin");
    bob.node
        .files()
        .fetch(chat, id, Some(out.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    bob.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overfill_a_relay_cache() {
    // Room for one 2 MiB file; Alice serves slowly, so both pulls overlap.
    let limits = MailboxConfig {
        blob_cache_bytes: 3 * MIB,
        ..MailboxConfig::default()
    };
    let slow = BlobConfig {
        serve_bytes_per_sec: Some(4 * MIB),
        ..BlobConfig::loopback()
    };
    let (relay, mut alice, bob, chat) = bob_offline_behind_a_relay(limits, slow).await;
    let mut hashes = Vec::new();
    for seed in [7, 8] {
        let src = alice.tmp.path().join(format!("clip{seed}.bin"));
        write_noise(&src, 2 * MIB, seed);
        let sent = alice.node.files().send(chat, &src, "").await.unwrap();
        hashes.push(sent.message.attachment.unwrap().hash);
    }
    let answers = relay_answers(&mut alice, &hashes).await;
    let stored = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(stored, 1, "exactly one fits: {answers:?}");
    let refusal = answers.iter().find_map(|a| a.clone().err()).unwrap();
    assert!(refusal.contains("full"), "{refusal}");
    for p in [&relay, &alice, &bob] {
        p.stop().await;
    }
}

/// An iroh endpoint speaking as `peer` (its own key from its data dir),
/// outside meshchat, that can reach `addr`.
async fn endpoint_as(peer: &Peer, addr: iroh::EndpointAddr) -> iroh::Endpoint {
    let key: [u8; 32] = std::fs::read(peer.dir.root().join("identity.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let lookup = iroh::address_lookup::MemoryLookup::new();
    lookup.add_endpoint_info(addr);
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .secret_key(iroh::SecretKey::from_bytes(&key))
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .address_lookup(lookup)
        .bind()
        .await
        .unwrap()
}

/// `peer`'s blob endpoint address (a ticket carries it).
async fn blob_addr(peer: &Peer) -> iroh::EndpointAddr {
    let file = peer.tmp.path().join("ticket-probe");
    std::fs::write(&file, "probe").unwrap();
    let ticket: iroh_blobs::ticket::BlobTicket = peer
        .node
        .files()
        .share(&file)
        .await
        .unwrap()
        .parse()
        .unwrap();
    ticket.addr().clone()
}

/// A blob-cache request written by hand, as a hostile client would.
fn cache_request(version: &str, hash: BlobHash, size: u64, recipient: PeerId) -> Vec<u8> {
    use ciborium::Value;
    let recipient = meshchat_node::public_key_of(&recipient).unwrap();
    let mut fields = vec![
        (
            Value::Text("hash".into()),
            Value::Bytes(hash.as_bytes().to_vec()),
        ),
        (Value::Text("size".into()), Value::Integer(size.into())),
        (
            Value::Text("recipient".into()),
            Value::Bytes(recipient.as_bytes().to_vec()),
        ),
    ];
    if version == "V2" {
        fields.push((Value::Text("proof".into()), Value::Text("Deposit".into())));
    }
    let request = Value::Map(vec![(Value::Text(version.into()), Value::Map(fields))]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&request, &mut bytes).unwrap();
    bytes
}

/// Sends `request` on `/meshchat/blob-cache/1`; the answer, as text.
async fn ask_by_hand(endpoint: &iroh::Endpoint, relay: iroh::EndpointId, request: &[u8]) -> String {
    let connection = endpoint
        .connect(relay, b"/meshchat/blob-cache/1")
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(request).await.unwrap();
    send.finish().unwrap();
    let answer = within("relay answer", recv.read_to_end(1024))
        .await
        .unwrap();
    connection.close(0u32.into(), b"done");
    let answer: ciborium::Value = ciborium::from_reader(answer.as_slice()).unwrap();
    format!("{answer:?}")
}

fn random_peer() -> PeerId {
    libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_a_blob_only_for_mail_attaching_it_from_a_sender_that_has_it() {
    let (mut relay, mut alice, bob, chat) =
        bob_offline_behind_a_relay(MailboxConfig::default(), BlobConfig::loopback()).await;
    let relay_addr = relay.addrs().await.remove(0);
    let src = alice.tmp.path().join("scan.pdf");
    write_noise(&src, 300 * 1024, 9);
    let attachment = alice
        .node
        .files()
        .send(chat, &src, "")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();
    relay_answer(&mut alice, attachment.hash).await.unwrap();

    // Mallory learned the hash. She mails a second identity of hers a
    // message attaching it, through the same relay: the relay finds the
    // mail, but Mallory cannot show she has the bytes.
    let mut mallory = Peer::start("mallory").await;
    // The accomplice hands Mallory a delivery token for the relay.
    let accomplice_id = meshchat_node::crdt::Identity::generate();
    let accomplice = meshchat_node::peer_id_of(&accomplice_id.public()).unwrap();
    let token = meshchat_node::mailbox::DeliveryToken::issue(
        &accomplice_id,
        meshchat_node::public_key_of(&relay.peer_id()),
        None,
        i64::MAX,
    );
    mallory
        .node
        .contacts()
        .add_from_invite(
            meshchat_node::invite::Invite {
                peer: accomplice,
                name: None,
                addrs: Vec::new(),
                relays: vec![relay_addr],
                tokens: vec![token],
                encryption_key: Some(meshchat_node::crdt::e2e::DeviceSecret::generate(1).public()),
            },
            None,
        )
        .await
        .unwrap();
    let to_accomplice = mallory.node.chats().direct(accomplice).await.unwrap();
    mallory
        .node
        .files()
        .forward(to_accomplice, attachment.clone(), "")
        .await
        .unwrap();
    let refused = relay_answer(&mut mallory, attachment.hash)
        .await
        .unwrap_err();
    assert!(refused.contains("prove"), "{refused}");

    // With the blob's bytes (the file under its key, now public at her
    // node) but no mail for the recipient she names, a request written by
    // hand is refused too.
    let mut sealed = std::fs::read(&src).unwrap();
    attachment.key.unwrap().apply(0, &mut sealed).unwrap();
    let copy = mallory.tmp.path().join("copy.pdf");
    std::fs::write(&copy, &sealed).unwrap();
    let held = mallory.node.files().import_blob(&copy).await.unwrap();
    assert_eq!(held, attachment.hash);
    connected(&mut mallory, &mut relay).await;
    let relay_blobs = blob_addr(&relay).await;
    let relay_id = relay_blobs.id;
    let by_hand = endpoint_as(&mallory, relay_blobs).await;
    // It serves the bytes too, whichever of her endpoints the relay asks.
    let bytes = iroh_blobs::store::mem::MemStore::new();
    bytes.add_slice(sealed).await.unwrap();
    let serving = iroh::protocol::Router::builder(by_hand.clone())
        .accept(
            iroh_blobs::ALPN,
            iroh_blobs::BlobsProtocol::new(&bytes, None),
        )
        .spawn();
    let other = random_peer();
    let request = cache_request("V2", attachment.hash, attachment.size, other);
    let answer = ask_by_hand(&by_hand, relay_id, &request).await;
    assert!(
        answer.contains("Refused") && answer.contains("no mail"),
        "{answer}"
    );
    // A request without proof (version 1) is refused with a reason.
    let request = cache_request("V1", attachment.hash, attachment.size, other);
    let answer = ask_by_hand(&by_hand, relay_id, &request).await;
    assert!(
        answer.contains("Refused") && answer.contains("proof"),
        "{answer}"
    );
    // And the relay serves the blob to none of them.
    let connection = by_hand.connect(relay_id, iroh_blobs::ALPN).await.unwrap();
    let raw = iroh_blobs::Hash::from_bytes(*attachment.hash.as_bytes());
    assert!(
        iroh_blobs::get::request::get_verified_size(&connection, &raw)
            .await
            .is_err()
    );
    serving.shutdown().await.unwrap();
    for p in [&relay, &alice, &bob, &mallory] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_downloads_from_its_ticket_with_plain_iroh_blobs() {
    let alice = Peer::start("alice").await;
    let bob = Peer::start("bob").await;
    let src = alice.tmp.path().join("notes.txt");
    std::fs::write(&src, "shared outside any chat").unwrap();
    let ticket = alice.node.files().share(&src).await.unwrap();

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
    let files = within("fetch ticket", bob.node.files().fetch_ticket(&ticket, &out))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_naming_a_hash_cannot_fetch_it() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    let chat = befriend(&mut alice, &mut bob).await;
    let src = alice.tmp.path().join("diary.txt");
    std::fs::write(&src, "only for bob").unwrap();
    let secret = alice
        .node
        .files()
        .send(chat, &src, "")
        .await
        .unwrap()
        .message
        .attachment
        .map(|a| *a)
        .unwrap();

    // Mallory, whom Alice never added, learned the hash: she writes Alice
    // a message attaching it, then asks Alice for it.
    let mut mallory = Peer::start_with("mallory", loopback_with(manual())).await;
    let to_alice = mallory.add_one_way(&alice).await;
    connected(&mut mallory, &mut alice).await;
    mallory
        .node
        .files()
        .forward(to_alice, secret.clone(), "")
        .await
        .unwrap();
    // A second file of hers: once Alice has judged it, she has seen the first.
    let own = mallory.tmp.path().join("hello.txt");
    std::fs::write(&own, "hello").unwrap();
    let hello = mallory.node.files().send(to_alice, &own, "").await.unwrap();
    let hello = hello.message.attachment.unwrap().hash;
    // Alice accepts the message request, so it is a chat she is in.
    alice.accept_request_from(&mallory).await;
    let skipped = alice
        .wait_for("Mallory's file judged", |e| match e {
            Event::File {
                hash,
                status: FileStatus::Skipped { reason },
                ..
            } if *hash == hello => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(skipped, SkipReason::Stranger);

    let refused = mallory
        .node
        .files()
        .fetch_blob(secret.hash, secret.size, alice.peer_id())
        .await;
    assert!(
        matches!(refused, Err(FetchBlobError::Unavailable(_))),
        "{refused:?}"
    );
    // Bob, in the chat Alice sent it to, is served.
    let (id, _) = wait_file_message(&mut bob).await;
    within("bob's fetch", bob.node.files().fetch(chat, id, None))
        .await
        .unwrap();
    for p in [&alice, &bob, &mallory] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_seq_request_does_not_unlock_what_a_blob_lists() {
    let mut alice = Peer::start("alice").await;
    let mut bob = Peer::start_with("bob", loopback_with(manual())).await;
    let chat = befriend(&mut alice, &mut bob).await;
    // Alice holds a file from a chat Bob is not in.
    let elsewhere = alice.node.chats().direct(random_peer()).await.unwrap();
    let src = alice.tmp.path().join("contract.txt");
    std::fs::write(&src, "not for bob").unwrap();
    let secret = alice.node.files().send(elsewhere, &src, "").await.unwrap();
    let secret = secret.message.attachment.unwrap().hash;

    // Bob sends Alice a file whose bytes are that hash: read as a hash
    // sequence, it lists the secret. A file sent today is encrypted (its
    // blob lists nothing), so he sends it as an older node would, in the
    // clear: a public blob of his, attached without a key.
    let list = bob.tmp.path().join("list.bin");
    std::fs::write(&list, secret.as_bytes()).unwrap();
    let plain = bob.node.files().import_blob(&list).await.unwrap();
    let legacy = Attachment {
        hash: plain,
        size: 32,
        mime: "application/octet-stream".into(),
        name: "list.bin".into(),
        preview: Vec::new(),
        key: None,
    };
    let root = bob.node.files().forward(chat, legacy, "").await.unwrap();
    let root = root.message.attachment.unwrap().hash;
    wait_ready(&mut alice, root).await;
    let refused = bob
        .node
        .files()
        .fetch_blob(secret, 64, alice.peer_id())
        .await;
    assert!(
        refused.is_err(),
        "the secret itself is refused: {refused:?}"
    );

    // Bob asks for the root he is entitled to, and its children.
    let endpoint = endpoint_as(&bob, blob_addr(&alice).await).await;
    let alice_id = iroh::EndpointId::from_bytes(
        meshchat_node::public_key_of(&alice.peer_id())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let connection = endpoint.connect(alice_id, iroh_blobs::ALPN).await.unwrap();
    let store = iroh_blobs::store::mem::MemStore::new();
    let root = iroh_blobs::Hash::from_bytes(*root.as_bytes());
    let request = iroh_blobs::protocol::GetRequest::new(
        root,
        iroh_blobs::protocol::ChunkRangesSeq::from_ranges_infinite([
            iroh_blobs::protocol::ChunkRanges::all(),
            iroh_blobs::protocol::ChunkRanges::all(),
        ]),
    );
    let got = within(
        "hash-seq get",
        store.remote().execute_get(connection, request).complete(),
    )
    .await;
    assert!(
        got.is_err(),
        "a request reaching children is refused: {got:?}"
    );
    let secret = iroh_blobs::Hash::from_bytes(*secret.as_bytes());
    let status = store.blobs().status(secret).await.unwrap();
    assert!(
        !matches!(status, iroh_blobs::api::proto::BlobStatus::Complete { .. }),
        "the secret leaked: {status:?}"
    );
    endpoint.close().await;
    for p in [&alice, &bob] {
        p.stop().await;
    }
}

/// The first `file` event about `hash`.
async fn first_file_status(peer: &mut Peer, hash: BlobHash) -> FileStatus {
    peer.wait_for("a file event", |e| match e {
        Event::File {
            hash: h, status, ..
        } if *h == hash => Some(status.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_file_waits_while_a_contacts_downloads() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let mut bob = Peer::start("bob").await;
    let with_alice = befriend(&mut alice, &mut bob).await;
    let mut mallory = Peer::start_with("mallory", loopback_with(manual())).await;
    let to_bob = mallory.add_one_way(&bob).await;
    connected(&mut mallory, &mut bob).await;

    let junk = mallory.tmp.path().join("junk.bin");
    write_noise(&junk, 64 * 1024, 10);
    let junk = mallory.node.files().send(to_bob, &junk, "").await.unwrap();
    // Bob accepts the request: still not a contact, so nothing downloads.
    bob.accept_request_from(&mallory).await;
    let junk = junk.message.attachment.unwrap().hash;
    let photo = alice.tmp.path().join("photo.bin");
    write_noise(&photo, 64 * 1024, 11);
    let photo = alice
        .node
        .files()
        .send(with_alice, &photo, "")
        .await
        .unwrap();
    let photo = photo.message.attachment.unwrap().hash;

    assert_eq!(
        first_file_status(&mut bob, junk).await,
        FileStatus::Skipped {
            reason: SkipReason::Stranger
        }
    );
    wait_ready(&mut bob, photo).await;
    // Listed, and Bob may still fetch it when he wants to.
    let from_mallory = bob.node.chats().direct(mallory.peer_id()).await.unwrap();
    let (id, _) = bob
        .history(from_mallory)
        .await
        .into_iter()
        .find_map(|e| e.message.attachment.map(|a| (e.message.id, a.hash)))
        .unwrap();
    within(
        "manual fetch",
        bob.node.files().fetch(from_mallory, id, None),
    )
    .await
    .unwrap();
    for p in [&alice, &bob, &mallory] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auto_download_budget_stops_auto_downloads_until_space_is_freed() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let budget = BlobConfig {
        auto_download_budget_bytes: 3 * MIB / 2,
        ..BlobConfig::loopback()
    };
    let mut bob = Peer::start_with("bob", loopback_with(budget)).await;
    let chat = befriend(&mut alice, &mut bob).await;
    let send = |seed: u64| {
        let src = alice.tmp.path().join(format!("f{seed}.bin"));
        write_noise(&src, MIB, seed);
        let node = alice.node.clone();
        async move { node.files().send(chat, &src, "").await.unwrap().message }
    };
    let first = send(12).await;
    let first_hash = first.attachment.clone().unwrap().hash;
    wait_ready(&mut bob, first_hash).await;
    let second = send(13).await.attachment.unwrap().hash;
    assert_eq!(
        first_file_status(&mut bob, second).await,
        FileStatus::Skipped {
            reason: SkipReason::BudgetFull
        }
    );
    // Deleting the first file gives its space back.
    alice.node.chats().delete(chat, first.id).await.unwrap();
    let third = send(14).await.attachment.unwrap().hash;
    wait_ready(&mut bob, third).await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_chosen_names_are_saved_safely_and_nothing_is_overwritten() {
    let mut alice = Peer::start_with("alice", loopback_with(manual())).await;
    let mut bob = Peer::start("bob").await;
    let chat = befriend(&mut alice, &mut bob).await;
    let src = alice.tmp.path().join("payload.txt");
    std::fs::write(&src, "from alice").unwrap();
    let real = alice.node.files().send(chat, &src, "").await.unwrap();
    let real = real.message.attachment.map(|a| *a).unwrap();
    wait_ready(&mut bob, real.hash).await;

    // The same bytes under names a hostile sender picks.
    let named = |name: &str| Attachment {
        name: name.into(),
        ..real.clone()
    };
    let files = alice.node.files();
    assert!(
        files.forward(chat, named("../x"), "").await.is_err(),
        "a name with a separator never leaves the sender"
    );
    let mut ids = Vec::new();
    for name in [".bashrc", "..", "evil\u{1b}[2J\u{7}\u{202e}gpj.exe"] {
        let sent = files.forward(chat, named(name), "").await.unwrap();
        ids.push(sent.message.id);
    }
    for _ in 0..ids.len() {
        wait_file_message(&mut bob).await;
    }

    let out = bob.tmp.path().join("downloads");
    std::fs::create_dir_all(&out).unwrap();
    // Something of Bob's already sits where two of them would land.
    let victim = bob.tmp.path().join("victim.txt");
    std::fs::write(&victim, "bob's own").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("bashrc")).unwrap();
    std::fs::write(out.join("file"), "precious").unwrap();

    let fetch = |id: MessageId, overwrite: bool| {
        let node = bob.node.clone();
        let out = out.clone();
        async move {
            node.files()
                .fetch_with(
                    chat,
                    id,
                    Some(out),
                    SaveOptions {
                        overwrite,
                        ..SaveOptions::default()
                    },
                )
                .await
        }
    };
    for id in &ids[..2] {
        let refused = fetch(*id, false).await;
        assert!(
            matches!(refused, Err(FetchFileError::Exists(_))),
            "{refused:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "bob's own");
    assert_eq!(
        std::fs::read_to_string(out.join("file")).unwrap(),
        "precious"
    );

    let bashrc = fetch(ids[0], true).await.unwrap();
    assert_eq!(bashrc.path, Some(out.join("bashrc")));
    assert_eq!(bashrc.renamed_from.as_deref(), Some(".bashrc"));
    assert_eq!(
        std::fs::read_to_string(out.join("bashrc")).unwrap(),
        "from alice"
    );
    assert!(!std::fs::symlink_metadata(out.join("bashrc"))
        .unwrap()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "bob's own");
    let dots = fetch(ids[1], true).await.unwrap();
    assert_eq!(dots.path, Some(out.join("file")));
    let evil = fetch(ids[2], false).await.unwrap();
    assert_eq!(evil.path, Some(out.join("evil[2Jgpj.exe")));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with('.') && !n.chars().any(char::is_control)),
        "{names:?}"
    );
    alice.stop().await;
    bob.stop().await;
}

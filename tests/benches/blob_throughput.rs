//! File transfer throughput between two real meshchat nodes on loopback,
//! next to raw iroh-blobs between two bare endpoints (same file store kind,
//! same transport) and a plain TCP copy, all in the same run. Then saving
//! the received file to a folder (`fetch --out`: safe name, no overwrite,
//! written through this node's own handle and fsynced) next to iroh-blobs'
//! own export of the same blob and a plain file copy.
//!
//! Run: `cargo bench -p meshchat-tests --bench blob_throughput`
//! (`MESHCHAT_BENCH_MIB` sets the file size, default 1024 = 1 GiB).
//! Timings are printed, never asserted.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use meshchat_node::{media::BlobConfig, Event, NodeConfig};
use meshchat_tests::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;

fn main() {
    meshchat_tests::stats::runtime(2).block_on(run());
}

fn write_noise(path: &Path, size: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        file.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    file.flush().expect("flush");
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

async fn run() {
    let mib: u64 = std::env::var("MESHCHAT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        .max(1);
    let size = mib * MIB;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("file.bin");
    write_noise(&src, size);
    println!("blob_throughput: {mib} MiB file, loopback, 2 tokio workers");
    println!(
        "machine: {} logical cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let tcp = tcp_copy(&src, tmp.path(), size).await;
    let raw = raw_iroh_blobs(&src, tmp.path(), size).await;
    let (import, mesh, save) = meshchat(&src, size).await;

    println!();
    println!("| measurement | time | throughput | vs raw iroh-blobs |");
    println!("|---|---:|---:|---:|");
    for (name, took) in [
        ("meshchat send-file → fetch (download only)", mesh),
        ("raw iroh-blobs, two bare endpoints (FsStore)", raw),
        ("plain TCP copy (file → socket → file)", tcp),
    ] {
        println!(
            "| {name} | {:.2} s | {:.0} MiB/s | {:.2}x |",
            took.as_secs_f64(),
            rate(size, took),
            raw.as_secs_f64() / took.as_secs_f64()
        );
    }
    println!(
        "(meshchat import of the file before sending: {:.2} s, {:.0} MiB/s of BLAKE3 hashing and copying)",
        import.as_secs_f64(),
        rate(size, import)
    );
    println!();
    println!("| saving the received file | time | throughput | vs iroh-blobs export |");
    println!("|---|---:|---:|---:|");
    for (name, took) in [
        ("meshchat fetch --out (safe save)", save.meshchat),
        ("iroh-blobs export (ExportMode::Copy)", save.export),
        ("plain file copy (std::fs::copy)", save.copy),
    ] {
        println!(
            "| {name} | {:.2} s | {:.0} MiB/s | {:.2}x |",
            took.as_secs_f64(),
            rate(size, took),
            save.export.as_secs_f64() / took.as_secs_f64()
        );
    }
}

/// Times of writing the received file out.
struct Save {
    meshchat: Duration,
    export: Duration,
    copy: Duration,
}

/// A plain TCP copy on 127.0.0.1: the sender reads the file into the socket,
/// the receiver writes the socket into a file.
async fn tcp_copy(src: &Path, dir: &Path, size: u64) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let out = dir.join("tcp.out");
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut file = tokio::fs::File::create(&out).await.expect("create");
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).await.expect("write");
            got += n as u64;
        }
        file.flush().await.expect("flush");
        got
    });
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut file = tokio::fs::File::open(src).await.expect("open");
    tokio::io::copy(&mut file, &mut socket).await.expect("copy");
    socket.shutdown().await.expect("shutdown");
    let got = receiver.await.expect("receiver");
    let took = started.elapsed();
    assert_eq!(got, size, "tcp copy incomplete");
    let _ = std::fs::remove_file(dir.join("tcp.out"));
    took
}

/// Raw iroh-blobs: two bare endpoints on loopback, each with a file store;
/// one imports the file, the other downloads it with the stock downloader.
async fn raw_iroh_blobs(src: &Path, dir: &Path, size: u64) -> Duration {
    use iroh::{address_lookup::MemoryLookup, endpoint::presets, protocol::Router, Endpoint};
    use iroh_blobs::{store::fs::FsStore, BlobsProtocol, HashAndFormat};

    async fn bare(lookup: &MemoryLookup) -> Endpoint {
        Endpoint::builder(presets::Minimal)
            .relay_mode(iroh::RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr("127.0.0.1:0")
            .expect("addr")
            .address_lookup(lookup.clone())
            .bind()
            .await
            .expect("bind")
    }
    let lookup = MemoryLookup::new();
    let provider_store = FsStore::load(dir.join("raw-provider"))
        .await
        .expect("store");
    let tag = provider_store
        .blobs()
        .add_path(src)
        .temp_tag()
        .await
        .expect("import");
    let provider = bare(&lookup).await;
    let mut addr = provider.addr();
    for socket in provider.bound_sockets() {
        addr.addrs.insert(iroh::TransportAddr::Ip(socket));
    }
    lookup.add_endpoint_info(addr);
    let router = Router::builder(provider)
        .accept(iroh_blobs::ALPN, BlobsProtocol::new(&provider_store, None))
        .spawn();
    let getter_store = FsStore::load(dir.join("raw-getter")).await.expect("store");
    let getter = bare(&lookup).await;
    let started = Instant::now();
    getter_store
        .downloader(&getter)
        .download(HashAndFormat::raw(tag.hash()), vec![router.endpoint().id()])
        .await
        .expect("download");
    let took = started.elapsed();
    let status = getter_store
        .blobs()
        .status(tag.hash())
        .await
        .expect("status");
    assert!(
        matches!(status, iroh_blobs::api::proto::BlobStatus::Complete { size: s } if s == size),
        "raw download incomplete: {status:?}"
    );
    router.shutdown().await.expect("shutdown");
    getter.close().await;
    getter_store.shutdown().await.expect("store shutdown");
    // The router's shutdown closed the provider's store already.
    drop(provider_store);
    let _ = std::fs::remove_dir_all(dir.join("raw-provider"));
    let _ = std::fs::remove_dir_all(dir.join("raw-getter"));
    took
}

/// Two meshchat nodes: Alice sends the file into their chat, Bob fetches it,
/// then saves it. Returns (Alice's import time, Bob's download time, the
/// save times).
async fn meshchat(src: &Path, size: u64) -> (Duration, Duration, Save) {
    let config = NodeConfig {
        blobs: BlobConfig {
            auto_download_bytes: 0,
            max_file_bytes: size.max(MIB),
            ..BlobConfig::loopback()
        },
        ..NodeConfig::loopback()
    };
    let mut alice = Peer::start_with("alice", config.clone()).await;
    let mut bob = Peer::start_with("bob", config).await;
    let chat = alice.add(&bob).await;
    bob.add(&alice).await;
    let bob_id = bob.peer_id();
    alice
        .wait_for("connection", |e| match e {
            Event::PeerConnected { peer } if *peer == bob_id => Some(()),
            _ => None,
        })
        .await;
    let started = Instant::now();
    let sent = alice.node.files().send(chat, src, "").await.expect("send");
    let import = started.elapsed();
    let id = sent.message.id;
    bob.wait_for("the file message", |e| match e {
        Event::Message { message, .. } if message.id == id => Some(()),
        _ => None,
    })
    .await;
    // Make sure Bob knows Alice's blob address, as in a running chat.
    let probe = alice.tmp.path().join("probe");
    std::fs::write(&probe, b"probe").expect("probe");
    let hash = alice
        .node
        .files()
        .import_blob(&probe)
        .await
        .expect("probe import");
    bob.node
        .files()
        .fetch_blob(hash, 16, alice.peer_id())
        .await
        .expect("probe fetch");
    let started = Instant::now();
    let fetched = bob.node.files().fetch(chat, id, None).await.expect("fetch");
    let took = started.elapsed();
    assert_eq!(fetched.size, size);

    // Saving: the blob is complete, so only the write to the folder is timed.
    // One untimed export first, so both timed writes read a warm page cache.
    let out = bob.tmp.path().join("saved");
    std::fs::create_dir_all(&out).expect("folder");
    bob.node
        .files()
        .export_blob(fetched.hash, out.join("warm-up.bin"))
        .await
        .expect("export");
    let started = Instant::now();
    bob.node
        .files()
        .fetch(chat, id, Some(out.clone()))
        .await
        .expect("save");
    let meshchat = started.elapsed();
    let started = Instant::now();
    bob.node
        .files()
        .export_blob(fetched.hash, out.join("exported.bin"))
        .await
        .expect("export");
    let export = started.elapsed();
    let started = Instant::now();
    std::fs::copy(src, out.join("copied.bin")).expect("copy");
    let copy = started.elapsed();
    alice.stop().await;
    bob.stop().await;
    (
        import,
        took,
        Save {
            meshchat,
            export,
            copy,
        },
    )
}

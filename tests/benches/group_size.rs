//! What a group's size costs a member: joining (receiving the metadata
//! document), membership queries, and checking + applying one remote message,
//! at 16, 128 and 1,024 members (WhatsApp's limit), in the same run as bare
//! Automerge 0.12 applying the same changes to a document of the same shape.
//!
//! Every group message names the metadata heads its author saw, and a
//! receiver checks the author's membership at those heads; the node asks
//! "is this peer a member?" on every connection and sync. Neither may cost
//! time proportional to the group's size per message.
//!
//! Run: `cargo bench -p meshchat-tests --bench group_size`
//!
//! Environment (optional): `MESHCHAT_BENCH_SIZES` (comma-separated member
//! counts, default `16,128,1024`), `MESHCHAT_BENCH_MSGS` (remote messages
//! measured per size, default 200).
//!
//! Timings are printed, never asserted.

use std::time::{Duration, Instant};

use automerge::Automerge;
use meshchat_crdt::{ChatReplica, GroupSettings, Identity, PublicKey, SignedChange};

const TEXT: &str =
    "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.";
const T0: i64 = 1_700_000_000_000;

fn main() {
    let sizes: Vec<usize> = std::env::var("MESHCHAT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 128, 1024]);
    let msgs: usize = std::env::var("MESHCHAT_BENCH_MSGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    println!("group size: cost of membership for one member (times per operation)");
    println!(
        "{:>7} {:>9} | {:>12} {:>12} {:>6} | {:>12} {:>12} | {:>12} {:>12} {:>6}",
        "members",
        "genesis",
        "join",
        "raw join",
        "ratio",
        "is_member",
        "members()",
        "recv msg",
        "raw apply",
        "ratio"
    );
    for size in sizes {
        measure(size.max(2), msgs);
    }
}

fn measure(size: usize, msgs: usize) {
    let creator = Identity::generate();
    let others: Vec<Identity> = (1..size).map(|_| Identity::generate()).collect();
    let keys: Vec<PublicKey> = others.iter().map(Identity::public).collect();
    let (group, genesis) =
        ChatReplica::create_group(&creator, "big", &keys, GroupSettings::default())
            .expect("create group");
    let kind = group.kind().clone();

    // Join: a member receives the metadata (here the genesis that lists everyone).
    let join_started = Instant::now();
    let mut receiver = ChatReplica::new(kind.clone());
    let got = receiver.receive([genesis.change.clone()], 0);
    assert_eq!(got.stored.len(), 1, "genesis accepted");
    let join = join_started.elapsed();
    let raw_join_started = Instant::now();
    let mut raw = Automerge::new();
    raw.apply_changes([decode(&genesis.change)])
        .expect("raw genesis");
    let raw_join = raw_join_started.elapsed();

    // Membership queries, as the node makes them per peer and per sync.
    let probe = keys[keys.len() / 2];
    let started = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        assert!(receiver.is_member(&probe));
    }
    let is_member = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        assert_eq!(receiver.members().len(), size);
    }
    let members = started.elapsed() / rounds;

    // Remote messages from members other than the receiver.
    let writer = &others[0];
    let mut writer_replica = ChatReplica::new(kind);
    writer_replica.receive([genesis.change.clone()], 0);
    let mut recv = Duration::ZERO;
    let mut raw_apply = Duration::ZERO;
    let mut raw_history = Automerge::new();
    for i in 0..msgs {
        let written = writer_replica
            .write_message(writer, TEXT, None, T0 + i as i64)
            .expect("write");
        let started = Instant::now();
        let got = receiver.receive([written.change.clone()], 0);
        recv += started.elapsed();
        assert_eq!(got.stored.len(), 1, "message accepted");
        assert_eq!(got.new_messages.len(), 1);
        let change = decode(&written.change);
        let started = Instant::now();
        raw_history.apply_changes([change]).expect("raw apply");
        raw_apply += started.elapsed();
    }
    let recv = recv / msgs as u32;
    let raw_apply = raw_apply / msgs as u32;
    println!(
        "{:>7} {:>8}B | {:>12.1?} {:>12.1?} {:>5.1}x | {:>12.1?} {:>12.1?} | {:>12.1?} {:>12.1?} {:>5.1}x",
        size,
        genesis.change.change.len(),
        join,
        raw_join,
        ratio(join, raw_join),
        is_member,
        members,
        recv,
        raw_apply,
        ratio(recv, raw_apply)
    );
}

fn decode(signed: &SignedChange) -> automerge::Change {
    automerge::Change::from_bytes(signed.change.clone()).expect("decode change")
}

fn ratio(ours: Duration, bare: Duration) -> f64 {
    ours.as_secs_f64() / bare.as_secs_f64().max(1e-9)
}

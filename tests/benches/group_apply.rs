//! Per-message cost of receiving one remote group message, with a small and a
//! large history, measured in the same run as bare Automerge 0.12 applying one
//! remote change to a single unsegmented document of the same shape.
//!
//! meshchat keeps a chat's history in bounded segments (one Automerge document
//! per [`DEFAULT_SEGMENT_CAPACITY`] messages), so the cost of `check` + `apply`
//! of one new remote change should not depend on how much history there is.
//! The baseline shows what one big document costs instead.
//!
//! A three-member group: one member writes the history, which the receiving
//! member loads in batches (`ChatReplica::load`, as from its own store); then
//! the writer sends fresh messages and the receiver runs `check` + `apply` on
//! each, one at a time, the small and the large case alternating message by
//! message. Measured twice: where the history ends (the newest segment starts
//! empty when the history is a multiple of the capacity) and into a nearly
//! full segment (the most expensive place within a segment). For contrast,
//! the receiver's own `write_message` is timed too.
//!
//! Run: `cargo bench -p meshchat-tests --bench group_apply`
//!
//! Environment (all optional):
//! - `MESHCHAT_BENCH_SMALL` history size of the small case (default 1000)
//! - `MESHCHAT_BENCH_LARGE` history size of the large case (default 100000)
//! - `MESHCHAT_BENCH_MSGS`  remote messages measured per case (default 200)
//! - `MESHCHAT_BENCH_FULL_MSGS` remote messages measured again once the newest
//!   segment is nearly full, `capacity - n` messages (default 50)
//!
//! Timings are printed, never asserted.

use std::time::{Duration, Instant};

use automerge::{
    transaction::Transactable, ActorId, Automerge, ObjType, ReadDoc, ScalarValue, ROOT,
};
use meshchat_crdt::{
    ChatKind, ChatReplica, GroupSettings, Identity, MessageId, SignedChange,
    DEFAULT_SEGMENT_CAPACITY,
};

/// About 120 bytes, like a typical chat line.
const TEXT: &str = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. 0123456789 abcdefghij klmnopqrstu";
/// History changes loaded into the receiver at once while building.
const BUILD_BATCH: usize = 1000;
/// The key message ids in the bare documents are tagged with (the bare
/// baseline has no rules; the id only needs the same shape).
const AUTHOR_TAG: meshchat_crdt::PublicKey = meshchat_crdt::PublicKey::from_bytes([7; 32]);
/// A fixed clock, advanced by one millisecond per message.
const T0: i64 = 1_700_000_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    meshchat_tests::stats::env_or(name, default).max(1)
}

fn main() {
    let small = env_usize("MESHCHAT_BENCH_SMALL", 1_000);
    let large = env_usize("MESHCHAT_BENCH_LARGE", 100_000);
    let msgs = env_usize("MESHCHAT_BENCH_MSGS", 200);
    let full_msgs = env_usize("MESHCHAT_BENCH_FULL_MSGS", 50);
    let started = Instant::now();
    println!(
        "group_apply: history {small} vs {large} messages; {msgs} remote messages measured per case \
         (+{full_msgs} into a nearly full segment); segment capacity {DEFAULT_SEGMENT_CAPACITY}; \
         text {} bytes",
        TEXT.len()
    );
    println!();

    // Build everything first (the bare documents on a second thread, the
    // meshchat receivers loading on a third), then measure on an otherwise
    // idle process, alternating between the small and the large case message
    // by message so both see the same machine load.
    let bare_builder = std::thread::spawn(move || (automerge_build(small), automerge_build(large)));
    let mut ours_small = meshchat_build(small);
    let mut ours_large = meshchat_build(large);
    let (mut bare_small, mut bare_large) = bare_builder.join().expect("automerge build thread");
    let build_time = started.elapsed();

    let [fresh_small, fresh_large] = measure_interleaved([&mut ours_small, &mut ours_large], msgs);
    let cap = DEFAULT_SEGMENT_CAPACITY;
    let fill_to = cap.saturating_sub(full_msgs);
    let full = [&ours_small, &ours_large]
        .iter()
        .all(|g| full_msgs < cap && g.fill() <= fill_to)
        .then(|| {
            for g in [&mut ours_small, &mut ours_large] {
                let fill = g.fill();
                g.grow(fill_to - fill);
            }
            measure_interleaved([&mut ours_small, &mut ours_large], full_msgs)
        });
    // For contrast: the receiver writing its own messages (a local write, on
    // a replica holding the whole history).
    let [write_small, write_large] =
        local_writes_interleaved([&mut ours_small, &mut ours_large], full_msgs);
    drop((ours_small, ours_large));
    let [bare_small, bare_large] =
        automerge_measure_interleaved([&mut bare_small, &mut bare_large], msgs);
    let (full_small, full_large) = match full {
        Some([a, b]) => (Some(a), Some(b)),
        None => (None, None),
    };

    println!();
    println!("Receiving ONE remote message at a time: mean [p50/p99] in µs per message");
    let hdr_small = format!("history {small}");
    let hdr_large = format!("history {large}");
    println!(
        "{:<52} {:>24} {:>24} {:>7}",
        "measurement", hdr_small, hdr_large, "ratio"
    );
    let ratio = |a: &Stats, b: &Stats| b.mean.as_secs_f64() / a.mean.as_secs_f64();
    let row = |name: &str, a: &Stats, b: &Stats| {
        println!(
            "{:<52} {:>24} {:>24} {:>6.2}x",
            name,
            a.show(),
            b.show(),
            ratio(a, b)
        );
    };
    let phase_rows = |a: &Phase, b: &Phase| {
        let name = format!(
            "meshchat check+apply ({} msgs into seg. of {}..{})",
            a.msgs,
            a.fill_from,
            a.fill_from + a.msgs
        );
        row(&name, &a.total, &b.total);
        row("  of which verify (signature)", &a.check, &b.check);
        row("  of which judge + apply", &a.apply, &b.apply);
    };
    phase_rows(&fresh_small, &fresh_large);
    if let (Some(a), Some(b)) = (&full_small, &full_large) {
        phase_rows(a, b);
    }
    row(
        &format!("meshchat local write_message ({full_msgs} msgs)"),
        &write_small,
        &write_large,
    );
    row(
        &format!("bare automerge apply_changes ({msgs} msgs, 1 doc)"),
        &bare_small,
        &bare_large,
    );
    println!();
    let verdict = |r: f64| if r <= 1.5 { "met" } else { "NOT met" };
    let ours_ratio = ratio(&fresh_small.total, &fresh_large.total);
    println!(
        "meshchat ratio {large}/{small}: {ours_ratio:.2}x (target <= 1.5x: {})",
        verdict(ours_ratio)
    );
    if let (Some(a), Some(b)) = (&full_small, &full_large) {
        let r = ratio(&a.total, &b.total);
        println!(
            "meshchat ratio {large}/{small}, nearly full newest segment: {r:.2}x (target <= 1.5x: {})",
            verdict(r)
        );
    }
    println!(
        "bare automerge ratio {large}/{small}: {:.2}x",
        ratio(&bare_small, &bare_large)
    );
    println!(
        "meshchat / bare automerge: {:.2}x at {small}, {:.3}x at {large}",
        ratio(&bare_small, &fresh_small.total),
        ratio(&bare_large, &fresh_large.total)
    );
    println!();
    println!(
        "build {:.1} s, total bench time {:.1} s",
        build_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        let total: Duration = samples.iter().sum();
        Self {
            mean: total / samples.len().max(1) as u32,
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn show(&self) -> String {
        format!(
            "{:.0} [{:.0}/{:.0}]",
            us(self.mean),
            us(self.p50),
            us(self.p99)
        )
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------- meshchat

struct Phase {
    /// Messages the newest segment held when the phase started.
    fill_from: usize,
    msgs: usize,
    check: Stats,
    apply: Stats,
    total: Stats,
}

/// A three-member group: `author` writes (the history, then the measured
/// messages); `receiver` holds the whole history and receives the measured
/// messages by `check` + `apply`, one at a time.
struct Group {
    kind: ChatKind,
    author_id: Identity,
    author: ChatReplica,
    receiver_id: Identity,
    receiver: ChatReplica,
    clock: i64,
}

impl Group {
    fn new() -> Self {
        let admin = Identity::generate();
        let author_id = Identity::generate();
        let receiver_id = Identity::generate();
        let (admin_replica, genesis) = ChatReplica::create_group(
            &admin,
            "bench",
            &[author_id.public(), receiver_id.public()],
            GroupSettings::default(),
        )
        .expect("create group");
        let kind = admin_replica.kind().clone();
        let mut author = ChatReplica::new(kind.clone());
        let mut receiver = ChatReplica::new(kind.clone());
        deliver(&mut author, vec![genesis.change.clone()]);
        deliver(&mut receiver, vec![genesis.change.clone()]);
        assert!(author.is_member(&author_id.public()), "author is a member");
        Self {
            kind,
            author_id,
            author,
            receiver_id,
            receiver,
            clock: T0,
        }
    }

    /// The author writes one message.
    fn write(&mut self) -> SignedChange {
        self.clock += 1;
        self.author
            .write_message(&self.author_id, TEXT, None, self.clock)
            .expect("write message")
            .change
    }

    /// Messages in the receiver's newest segment.
    fn fill(&self) -> usize {
        self.receiver.message_count() % DEFAULT_SEGMENT_CAPACITY
    }

    /// Adds `n` messages of history to the receiver, in batches.
    fn grow(&mut self, n: usize) {
        let mut receiver =
            std::mem::replace(&mut self.receiver, ChatReplica::new(self.kind.clone()));
        self.write_batches(n, |batch| load(&mut receiver, batch));
        self.receiver = receiver;
    }

    /// Writes `n` messages, handing them out in batches.
    fn write_batches(&mut self, n: usize, mut deliver: impl FnMut(Vec<SignedChange>)) {
        let mut batch = Vec::with_capacity(BUILD_BATCH);
        for _ in 0..n {
            batch.push(self.write());
            if batch.len() == BUILD_BATCH {
                deliver(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            deliver(batch);
        }
    }

    /// Receives one fresh remote message; returns the time to verify it
    /// (the signature) and the time to judge and apply it.
    fn receive_one(&mut self) -> (Duration, Duration) {
        let change = self.write();
        let t0 = Instant::now();
        change.verify().expect("a valid signature");
        let t1 = Instant::now();
        let got = self.receiver.receive([change], 0);
        let t2 = Instant::now();
        assert!(
            got.rejected.is_empty(),
            "a valid remote message was rejected"
        );
        assert_eq!(got.new_messages.len(), 1, "one new message visible");
        // `receive` verifies the signature too; count that once, in the first part.
        (t1 - t0, (t2 - t1).saturating_sub(t1 - t0))
    }
}

/// Receives `msgs` fresh remote messages one at a time on each group,
/// alternating between the groups.
fn measure_interleaved<const N: usize>(mut groups: [&mut Group; N], msgs: usize) -> [Phase; N] {
    let fill_from = groups.each_ref().map(|g| g.fill());
    let mut check: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(msgs));
    let mut apply: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(msgs));
    for _ in 0..msgs {
        for (i, g) in groups.iter_mut().enumerate() {
            let (c, a) = g.receive_one();
            check[i].push(c);
            apply[i].push(a);
        }
    }
    std::array::from_fn(|i| {
        let total = check[i]
            .iter()
            .zip(&apply[i])
            .map(|(c, a)| *c + *a)
            .collect();
        Phase {
            fill_from: fill_from[i],
            msgs,
            check: Stats::of(std::mem::take(&mut check[i])),
            apply: Stats::of(std::mem::take(&mut apply[i])),
            total: Stats::of(total),
        }
    })
}

/// Times `write_message` by each group's receiver, alternating between groups.
fn local_writes_interleaved<const N: usize>(
    mut groups: [&mut Group; N],
    msgs: usize,
) -> [Stats; N] {
    let mut samples: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(msgs));
    for _ in 0..msgs {
        for (i, g) in groups.iter_mut().enumerate() {
            g.clock += 1;
            let t0 = Instant::now();
            g.receiver
                .write_message(&g.receiver_id, TEXT, None, g.clock)
                .expect("local write");
            samples[i].push(t0.elapsed());
        }
    }
    samples.map(Stats::of)
}

/// Receives changes as the node does; panics on any rejection.
fn deliver(replica: &mut ChatReplica, changes: Vec<SignedChange>) {
    let n = changes.len();
    let got = replica.receive(changes, 0);
    assert!(got.rejected.is_empty(), "change rejected");
    assert_eq!(got.stored.len(), n, "every change is new");
    assert_eq!(replica.deferred_count(), 0, "nothing left waiting");
}

/// Applies history as the node does from its own store (no signature check).
fn load(replica: &mut ChatReplica, changes: Vec<SignedChange>) {
    let applied = replica.load(changes);
    assert!(applied.rejected.is_empty(), "history change rejected");
    assert_eq!(replica.deferred_count(), 0, "nothing left waiting");
}

/// A group whose receiver holds `history` messages: the author writes on this
/// thread while the receiver loads the batches on another.
fn meshchat_build(history: usize) -> Group {
    let mut group = Group::new();
    let t = Instant::now();
    let mut receiver = std::mem::replace(&mut group.receiver, ChatReplica::new(group.kind.clone()));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SignedChange>>(4);
    let loader = std::thread::spawn(move || {
        for batch in rx {
            load(&mut receiver, batch);
        }
        receiver
    });
    group.write_batches(history, |batch| {
        tx.send(batch).expect("loader thread alive")
    });
    drop(tx);
    group.receiver = loader.join().expect("loader thread");
    assert_eq!(group.receiver.message_count(), history, "history built");
    assert_eq!(
        group.receiver.segment_count(),
        history.div_ceil(DEFAULT_SEGMENT_CAPACITY),
        "segments filled to capacity"
    );
    println!(
        "meshchat: built {history} messages of history ({} segments) in {:.1} s",
        group.receiver.segment_count(),
        t.elapsed().as_secs_f64()
    );
    group
}

// ---------------------------------------------------------------- automerge

/// Writes one message map (meshchat's shape: author, sent_at, text and an
/// empty reactions map) in its own change.
fn am_write(doc: &mut Automerge, author: &str, sent_at: i64) {
    let mut tx = doc.transaction();
    let obj = tx
        .put_object(
            ROOT,
            MessageId::for_author(&AUTHOR_TAG).to_string(),
            ObjType::Map,
        )
        .expect("put message");
    tx.put(&obj, "author", author).expect("put author");
    tx.put(&obj, "sent_at", ScalarValue::Timestamp(sent_at))
        .expect("put sent_at");
    tx.put(&obj, "text", TEXT).expect("put text");
    tx.put_object(&obj, "reactions", ObjType::Map)
        .expect("put reactions");
    tx.commit();
}

/// One unsegmented document: a receiver holding `history` messages (one
/// change each, written by one peer, loaded from its saved form) and a
/// remote peer that writes the measured messages.
struct Bare {
    history: usize,
    receiver: Automerge,
    remote: Automerge,
    remote_hex: String,
}

fn automerge_build(history: usize) -> Bare {
    let writer_key = Identity::generate().public();
    let remote_key = Identity::generate().public();
    let writer_hex = writer_key.to_string();
    let t = Instant::now();
    let mut writer = Automerge::new().with_actor(ActorId::from(writer_key.as_bytes().as_slice()));
    for i in 0..history {
        am_write(&mut writer, &writer_hex, T0 + i as i64);
    }
    let receiver = Automerge::load(&writer.save()).expect("load");
    let remote = writer
        .fork()
        .with_actor(ActorId::from(remote_key.as_bytes().as_slice()));
    println!(
        "automerge: built one document of {history} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Bare {
        history,
        receiver,
        remote,
        remote_hex: remote_key.to_string(),
    }
}

/// `apply_changes` of one remote change at a time, alternating between the
/// documents.
fn automerge_measure_interleaved<const N: usize>(
    mut docs: [&mut Bare; N],
    msgs: usize,
) -> [Stats; N] {
    let mut samples: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(msgs));
    for i in 0..msgs {
        for (d, bare) in docs.iter_mut().enumerate() {
            am_write(
                &mut bare.remote,
                &bare.remote_hex,
                T0 + (bare.history + i) as i64,
            );
            let change = bare.remote.get_last_local_change().expect("a local change");
            let t0 = Instant::now();
            bare.receiver.apply_changes([change]).expect("apply");
            samples[d].push(t0.elapsed());
        }
    }
    for bare in docs {
        assert_eq!(
            bare.receiver.length(ROOT),
            bare.history + msgs,
            "all messages applied"
        );
    }
    samples.map(Stats::of)
}

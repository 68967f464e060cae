//! Direct messages between two real nodes on loopback, timed by their
//! events: one message in flight (send → the receiver's `Event::Message` →
//! the sender's `Delivered` receipt), and many back to back. Shared by the
//! benches that compare a direct chat with a baseline (`direct_latency`,
//! `prosody`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use meshchat_node::{crdt::MessageId, DeliveryState, Event};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::{peer::Peer, wait::WAIT};

/// Messages sent and delivered before measuring, so connections and caches
/// are warm.
pub const WARMUP: usize = 20;

/// `send`s awaiting their local flush at once in a back-to-back run.
pub const SENDS_IN_FLIGHT: usize = 64;

/// A ~120-byte message, so a one-change push frame is about 500 bytes.
pub fn message_text() -> String {
    "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. 0123456789 abcdefghij klmnopqrstu"
        .to_owned()
}

/// Forwards, with the instant it was seen, each incoming message on `peer`
/// and each `Delivered` receipt on it, as soon as the node emits them.
pub fn watch(peer: &Peer) -> mpsc::Receiver<(MessageId, Instant)> {
    let mut events = peer.node.subscribe();
    // Larger than any run's event count, so forwarding never waits.
    let (tx, rx) = mpsc::channel(1 << 16);
    tokio::spawn(async move {
        loop {
            let id = match events.recv().await {
                Ok(Event::Message {
                    message,
                    outgoing: false,
                    ..
                }) => message.id,
                Ok(Event::Delivery {
                    message,
                    state: DeliveryState::Delivered,
                    ..
                }) => message,
                Ok(_) => continue,
                Err(RecvError::Lagged(k)) => panic!("event watcher lagged by {k} events"),
                Err(RecvError::Closed) => return,
            };
            if tx.send((id, Instant::now())).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The instant `id` was seen on `rx` (earlier ids are skipped).
pub async fn next_for(rx: &mut mpsc::Receiver<(MessageId, Instant)>, id: MessageId) -> Instant {
    tokio::time::timeout(WAIT, async {
        loop {
            let (got, at) = rx.recv().await.expect("watcher alive");
            if got == id {
                return at;
            }
        }
    })
    .await
    .expect("timed out waiting for a message event")
}

/// Waits for `n` events; returns when the last one was seen, relative to `t0`.
pub async fn count_until(
    rx: &mut mpsc::Receiver<(MessageId, Instant)>,
    n: usize,
    t0: Instant,
) -> Duration {
    let mut last = t0;
    for _ in 0..n {
        let (_, at) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("timed out during the throughput run")
            .expect("watcher alive");
        last = at;
    }
    last - t0
}

/// Per-message samples of [`one_in_flight`], in sending order, each from
/// the call to `send`.
#[derive(Debug, Default, Clone)]
pub struct OneInFlight {
    /// Until `send()` returned (local write and its flush).
    pub send: Vec<Duration>,
    /// Until the receiver emitted `Event::Message`.
    pub received: Vec<Duration>,
    /// Until the sender emitted the `Delivered` receipt.
    pub delivered: Vec<Duration>,
}

/// Two fresh nodes, contacts of each other; `n` messages of `text` from
/// one to the other, each sent only after the last was delivered (after
/// [`WARMUP`] unmeasured ones).
pub async fn one_in_flight(n: usize, text: &str) -> OneInFlight {
    let alice = Peer::start("alice").await;
    let bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    let mut received = watch(&bob);
    let mut delivered = watch(&alice);
    let mut out = OneInFlight::default();
    for i in 0..WARMUP + n {
        let t0 = Instant::now();
        let sent = alice.node.chats().send(chat, text).await.expect("send");
        let t_sent = Instant::now();
        let t_recv = next_for(&mut received, sent.message.id).await;
        let t_ack = next_for(&mut delivered, sent.message.id).await;
        if i >= WARMUP {
            out.send.push(t_sent - t0);
            out.received.push(t_recv - t0);
            out.delivered.push(t_ack - t0);
        }
    }
    alice.stop().await;
    bob.stop().await;
    out
}

/// What [`back_to_back`] measured, each from the first `send`.
#[derive(Debug, Clone, Copy)]
pub struct BackToBack {
    /// Until every `send()` returned.
    pub sends_done: Duration,
    /// Until the receiver emitted the last `Event::Message`.
    pub all_received: Duration,
    /// Until the sender emitted the last `Delivered` receipt.
    pub all_delivered: Duration,
}

/// Two fresh nodes, contacts of each other, the connection warmed by one
/// delivered message; then `n` messages of `text` sent back to back, up to
/// [`SENDS_IN_FLIGHT`] `send`s waiting for their local flush at once (group
/// commit covers them together), without waiting for deliveries.
pub async fn back_to_back(n: usize, text: &str) -> BackToBack {
    let alice = Peer::start("alice").await;
    let bob = Peer::start("bob").await;
    let chat = alice.add(&bob).await;
    let mut received = watch(&bob);
    let mut delivered = watch(&alice);
    let first = alice.node.chats().send(chat, text).await.expect("send");
    next_for(&mut received, first.message.id).await;
    next_for(&mut delivered, first.message.id).await;

    let chats = alice.node.chats();
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| chats.send(chat, text))
        .buffer_unordered(SENDS_IN_FLIGHT)
        .for_each(|sent| async move {
            sent.expect("send");
        })
        .await;
    let sends_done = t0.elapsed();
    let all_received = count_until(&mut received, n, t0).await;
    let all_delivered = count_until(&mut delivered, n, t0).await;
    alice.stop().await;
    bob.stop().await;
    BackToBack {
        sends_done,
        all_received,
        all_delivered,
    }
}

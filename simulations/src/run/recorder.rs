//! What the run saw: when each message was written, when each member's node
//! reported it (`Event::Message`), duplicates, and group joins. Fed by one
//! task per node reading that node's events.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use meshchat_node::{crdt::ChatId, Event, Node};
use tokio::{sync::Notify, time::Instant};

use crate::schedule::NodeIx;

/// The prefix of every simulated message's text, followed by its sequence number.
pub const TEXT_PREFIX: &str = "sim:";

/// A message written by the schedule.
#[derive(Debug, Clone)]
pub struct SentRecord {
    /// When `send` was called, ms after the workload started.
    pub at_ms: f64,
    /// Writer.
    pub author: NodeIx,
    /// Group index.
    pub group: usize,
    /// Members that should receive it (all but the author).
    pub recipients: Vec<NodeIx>,
}

/// Everything recorded.
#[derive(Debug, Default)]
pub struct Records {
    /// By sequence number.
    pub sent: HashMap<u64, SentRecord>,
    /// First reception of (seq, node), ms after the workload started.
    pub received: HashMap<(u64, NodeIx), f64>,
    /// Receptions of something already received.
    pub duplicates: u64,
    /// Receptions of a message written by no one in this run (should be 0).
    pub unknown: u64,
    /// Events a node's subscriber missed because it fell behind.
    pub lagged: u64,
    /// Groups each node joined.
    pub joined: HashSet<(ChatId, NodeIx)>,
    /// Receptions expected for the messages written so far.
    pub expected: u64,
    /// Expected receptions that happened.
    pub delivered: u64,
    /// `send` calls that failed.
    pub send_errors: u64,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    records: Arc<Mutex<Records>>,
    changed: Arc<Notify>,
    /// Shared by every clone: moving the zero moves it for the watchers too.
    start: Arc<Mutex<Instant>>,
}

impl Recorder {
    /// A recorder whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            records: Arc::default(),
            changed: Arc::new(Notify::new()),
            start: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock's zero (the workload starts after setup).
    pub fn restart_clock(&self, start: Instant) {
        *self.start.lock().unwrap_or_else(|e| e.into_inner()) = start;
    }

    /// Milliseconds since the clock's zero.
    pub fn now_ms(&self) -> f64 {
        let start = *self.start.lock().unwrap_or_else(|e| e.into_inner());
        Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64()
            * 1_000.0
    }

    /// Runs `f` on the records.
    pub fn with<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut records)
    }

    /// Notified on every reception and join.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Records a `send` about to be made.
    pub fn sent(&self, seq: u64, record: SentRecord) {
        self.with(|r| {
            r.expected += record.recipients.len() as u64;
            // A reception that raced ahead of this bookkeeping is not possible:
            // the text only exists once `send` runs, after this call.
            r.sent.insert(seq, record);
        });
    }

    /// Starts the task that records `node`'s events.
    pub fn watch(&self, ix: NodeIx, node: &Node) -> tokio::task::JoinHandle<()> {
        let mut events = node.subscribe();
        let recorder = self.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(event) => recorder.on_event(ix, event),
                    Err(RecvError::Lagged(n)) => recorder.with(|r| r.lagged += n),
                    Err(RecvError::Closed) => break,
                }
            }
        })
    }

    fn on_event(&self, ix: NodeIx, event: Event) {
        match event {
            Event::Message {
                message,
                outgoing: false,
                ..
            } => {
                let Some(seq) = message
                    .text
                    .strip_prefix(TEXT_PREFIX)
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    return;
                };
                let now = self.now_ms();
                self.with(|r| {
                    let expected = r.sent.get(&seq).map(|s| s.recipients.contains(&ix));
                    match expected {
                        None => r.unknown += 1,
                        Some(_) if r.received.contains_key(&(seq, ix)) => r.duplicates += 1,
                        Some(wanted) => {
                            r.received.insert((seq, ix), now);
                            if wanted {
                                r.delivered += 1;
                            }
                        }
                    }
                });
                self.changed.notify_waiters();
            }
            Event::GroupJoined { chat } => {
                self.with(|r| r.joined.insert((chat, ix)));
                self.changed.notify_waiters();
            }
            _ => {}
        }
    }

    /// Waits (event by event, never polling) until `done` holds or `deadline`.
    /// Returns whether `done` held.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&Records) -> bool) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.with(|r| done(r)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.with(|r| done(r));
            }
        }
    }
}

//! Group commit: what must not be acknowledged before it is on stable
//! storage waits here for a flush of the database (sled's flush plus an
//! `fdatasync`, see `durable.rs`). One flush runs at a time, on a task of
//! its own so the swarm keeps running; what arrives meanwhile waits for the
//! next one, so a burst of N writes costs about two flushes instead of N.
//!
//! A failed flush refuses everything held, in flight or waiting: sled keeps
//! the error, so no later flush would cover those writes either.

use libp2p::{gossipsub::MessageId, request_response::ResponseChannel, PeerId};
use meshchat_crdt::{ChatId, PublicKey, SegmentHeads};
use tokio::sync::{mpsc, oneshot};

use super::ingest::Ingest;
use crate::{
    chats::OpOutcome,
    direct::sync_wire::Response,
    mailbox::wire::MailboxResponse,
    mailbox::{Accepted, Refusal},
    reply::NodeError,
    store::StoreError,
};

/// Something waiting for the flush that makes it durable.
pub(crate) enum Held {
    /// A user's write (already sent on): the answer to the user.
    Local {
        outcome: OpOutcome,
        reply: oneshot::Sender<Result<OpOutcome, NodeError>>,
    },
    /// A relay's deposit: its custody receipt.
    Deposit(HeldDeposit),
    /// Pushed changes: the answer to the push.
    Push {
        ingest: Ingest,
        channel: ResponseChannel<Response>,
    },
    /// Gossiped changes: the verdict that lets gossipsub forward them.
    Gossip {
        ingest: Box<Ingest>,
        message_id: MessageId,
        propagation_source: PeerId,
    },
    /// Changes fetched in a sync: then push back what the peer lacks and
    /// ask for more.
    Synced {
        ingest: Ingest,
        key: PublicKey,
        chat: ChatId,
        heads: Vec<SegmentHeads>,
        more: bool,
    },
    /// A page of mail fetched from a relay: then acknowledge it and fetch
    /// the next page.
    Mail(HeldMail),
}

/// Deposits on disk but not yet durable (one request's: a single deposit,
/// or a batch), with the channel for their receipts.
pub(crate) struct HeldDeposit {
    pub(crate) channel: ResponseChannel<MailboxResponse>,
    /// Each deposit of the request, in order.
    pub(crate) items: Vec<HeldItem>,
    /// Answered as a batch (`DepositedBatch`), not a single `Deposited`.
    pub(crate) batch: bool,
}

/// One deposit of a held request.
// Most items are accepted (the large variant): boxing it would cost an
// allocation per deposit to shrink the rare refusal.
#[allow(clippy::large_enum_variant)]
pub(crate) enum HeldItem {
    /// Written; its receipt goes out if the flush succeeds.
    Accepted {
        recipient: PublicKey,
        accepted: Accepted,
    },
    /// Refused already (answered with the others, in order).
    Refused(Refusal),
}

/// A page of mail from `relay`, applied and waiting for its flush.
pub(crate) struct HeldMail {
    pub(crate) relay: PeerId,
    /// The changes of each sender's mail items, applied as one batch, with
    /// the ids of those items.
    pub(crate) items: Vec<(Vec<u64>, Ingest)>,
    /// Items to acknowledge whatever happens (undecodable, or from a
    /// blocked sender).
    pub(crate) dropped: Vec<u64>,
    /// What follows once the page is flushed.
    pub(crate) then: crate::mailbox::fetches::AfterPage,
}

/// The flush running and the items waiting for the next one.
pub(crate) struct GroupCommit {
    waiting: Vec<Held>,
    in_flight: Vec<Held>,
    done_tx: mpsc::Sender<Result<(), StoreError>>,
    pub(crate) done_rx: mpsc::Receiver<Result<(), StoreError>>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            waiting: Vec::new(),
            in_flight: Vec::new(),
            done_tx,
            done_rx,
        }
    }
}

impl GroupCommit {
    /// Holds `item` for the next flush.
    pub(crate) fn hold(&mut self, item: Held) {
        self.waiting.push(item);
    }

    /// Nothing is waiting for a flush or in one.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Whether a flush should start now: none runs and something waits. If
    /// so, the waiting items become the ones it covers.
    pub(crate) fn begin(&mut self) -> bool {
        if !self.in_flight.is_empty() || self.waiting.is_empty() {
            return false;
        }
        self.in_flight = std::mem::take(&mut self.waiting);
        true
    }

    /// Pages of mail from `relay` waiting for a flush or in one.
    pub(crate) fn mail_pages_from(&self, relay: &PeerId) -> usize {
        self.waiting
            .iter()
            .chain(&self.in_flight)
            .filter(|held| matches!(held, Held::Mail(page) if page.relay == *relay))
            .count()
    }

    /// Where the running flush reports.
    pub(crate) fn done_tx(&self) -> mpsc::Sender<Result<(), StoreError>> {
        self.done_tx.clone()
    }

    /// Stopping: the final flush covered everything held.
    pub(crate) fn finish_all(&mut self) -> Vec<Held> {
        let mut all = std::mem::take(&mut self.in_flight);
        all.append(&mut self.waiting);
        all
    }

    /// The flush finished: the items it covered, and on failure every
    /// waiting item too.
    pub(crate) fn finish(&mut self, succeeded: bool) -> Vec<Held> {
        let mut covered = std::mem::take(&mut self.in_flight);
        if !succeeded {
            covered.append(&mut self.waiting);
        }
        covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        Held::Mail(HeldMail {
            relay: PeerId::random(),
            items: Vec::new(),
            dropped: vec![1],
            then: crate::mailbox::fetches::AfterPage::Last,
        })
    }

    #[test]
    fn items_arriving_during_a_flush_wait_for_the_next_one() {
        let mut commit = GroupCommit::default();
        assert!(!commit.begin(), "nothing to flush");
        commit.hold(held());
        commit.hold(held());
        assert!(commit.begin());
        commit.hold(held());
        assert!(!commit.begin(), "one flush at a time");
        assert_eq!(commit.finish(true).len(), 2);
        assert!(!commit.is_idle());
        assert!(commit.begin());
        assert_eq!(commit.finish(true).len(), 1);
        assert!(commit.is_idle());
    }

    #[test]
    fn stopping_settles_the_running_flush_and_what_waits() {
        let mut commit = GroupCommit::default();
        commit.hold(held());
        assert!(commit.begin());
        commit.hold(held());
        assert_eq!(commit.finish_all().len(), 2);
        assert!(commit.is_idle());
    }

    #[test]
    fn a_failed_flush_refuses_everything_held() {
        let mut commit = GroupCommit::default();
        commit.hold(held());
        assert!(commit.begin());
        commit.hold(held());
        assert_eq!(commit.finish(false).len(), 2);
        assert!(commit.is_idle());
    }
}

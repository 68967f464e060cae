//! The couriers in flight (see [`crate::courier`]): at most
//! [`MAX_IN_FLIGHT`] per node, each bounded by [`TIMEOUT`], run as tasks
//! of a `JoinSet` the actor's loop polls (aborted when the actor stops).
//! Each remembers the mailbox request it stands for, so its answer, or its
//! failure, is handled like that of a request over the node's own swarm.

use std::{collections::HashMap, time::Duration};

use libp2p::{Multiaddr, PeerId};
use tokio::task::{self, JoinSet};

use super::mailbox::MailboxPending;
use crate::{
    courier::{self, CourierError},
    protocol::{MailboxRequest, MailboxResponse},
};

/// Couriers one node runs at once; deposits beyond wait for the next
/// deposit tick (they stay due in the deposit log).
pub(super) const MAX_IN_FLIGHT: usize = 4;
/// How long one courier may take, dial to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A courier came back: the relay's answer, or why there is none.
pub(super) struct Returned {
    pub(super) relay: PeerId,
    pub(super) pending: MailboxPending,
    pub(super) result: Result<MailboxResponse, CourierError>,
}

pub(super) struct Couriers {
    /// Off for a node on a custom transport (the simulator's), which a
    /// courier cannot build a swarm on: its deposits go identified.
    enabled: bool,
    running: JoinSet<Result<MailboxResponse, CourierError>>,
    pending: HashMap<task::Id, (PeerId, MailboxPending)>,
    /// Deposits waited for room: deposit again once a courier delivers.
    deferred: bool,
}

impl Couriers {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            running: JoinSet::new(),
            pending: HashMap::new(),
            deferred: false,
        }
    }

    /// Whether this node deposits sealed mail by courier at all.
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether another courier may start now; if not, the deposit waits
    /// (see [`Self::take_deferred`]).
    pub(super) fn has_room(&mut self) -> bool {
        let room = self.enabled && self.running.len() < MAX_IN_FLIGHT;
        self.deferred |= !room;
        room
    }

    /// Whether deposits waited for room since the last call. Asked after a
    /// courier delivered (not after a failure, which would only start the
    /// next round against an unreachable relay at once): the rest need not
    /// wait for the next deposit tick.
    pub(super) fn take_deferred(&mut self) -> bool {
        std::mem::take(&mut self.deferred)
    }

    /// Sends `request` to `relay` by a new courier; `pending` is what its
    /// answer settles.
    pub(super) fn start(
        &mut self,
        relay: PeerId,
        addrs: Vec<Multiaddr>,
        request: MailboxRequest,
        pending: MailboxPending,
    ) {
        let span = tracing::debug_span!("courier", %relay);
        let handle = self.running.spawn(tracing::Instrument::instrument(
            courier::deliver(relay, addrs, request, TIMEOUT),
            span,
        ));
        self.pending.insert(handle.id(), (relay, pending));
    }

    /// The next courier to come back; `None` (at once) when none is out, so
    /// the actor's `select!` skips this branch.
    pub(super) async fn next(&mut self) -> Option<Returned> {
        loop {
            let (id, result) = match self.running.join_next_with_id().await? {
                Ok((id, result)) => (id, result),
                // A courier that panicked brought nothing: its deposits
                // are due again, like after any failure.
                Err(error) => (error.id(), Err(CourierError::Lost(error.to_string()))),
            };
            if let Some((relay, pending)) = self.pending.remove(&id) {
                return Some(Returned {
                    relay,
                    pending,
                    result,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_four_couriers_run_and_each_comes_back() {
        let mut couriers = Couriers::new(true);
        // Nothing listens on port 1 of loopback: each fails at once.
        let nowhere: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let relay = PeerId::random();
        let mut started = 0;
        while couriers.has_room() {
            couriers.start(
                relay,
                vec![nowhere.clone()],
                MailboxRequest::Notify,
                MailboxPending::Notify,
            );
            started += 1;
        }
        assert_eq!(started, MAX_IN_FLIGHT);
        assert!(couriers.take_deferred());
        assert!(!couriers.take_deferred());
        for _ in 0..started {
            let returned = couriers.next().await.unwrap();
            assert_eq!(returned.relay, relay);
            assert!(matches!(returned.pending, MailboxPending::Notify));
            assert!(returned.result.is_err());
        }
        assert!(couriers.next().await.is_none());
        assert!(couriers.has_room());
        // A node on a custom transport sends none.
        assert!(!Couriers::new(false).has_room());
    }
}

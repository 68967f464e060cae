//! The couriers in flight (see [`crate::mailbox::courier`]): at most
//! [`MAX_IN_FLIGHT`] per node and one per relay, each bounded by
//! [`TIMEOUT`], run as tasks
//! of a `JoinSet` the actor's loop polls (aborted when the actor stops).
//! Each remembers the mailbox request it stands for, so its answer, or its
//! failure, is handled like that of a request over the node's own swarm.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use tokio::task::{self, JoinSet};

use super::pending::MailboxPending;
use super::{
    courier::{self, CourierError},
    wire::{MailboxRequest, MailboxResponse},
};

/// Couriers one node runs at once; deposits beyond wait until one comes
/// back (they stay due in the deposit log).
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// How long one courier may take, dial to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A courier came back: the relay's answer, or why there is none.
pub(crate) struct Returned {
    pub(crate) relay: PeerId,
    pub(crate) pending: MailboxPending,
    pub(crate) result: Result<MailboxResponse, CourierError>,
}

pub(crate) struct Couriers {
    /// Off for a node on a custom transport (the simulator's), which a
    /// courier cannot build a swarm on: its deposits go identified.
    enabled: bool,
    running: JoinSet<Result<MailboxResponse, CourierError>>,
    pending: HashMap<task::Id, (PeerId, MailboxPending)>,
    /// Relays a courier is out to: mail for them waits for its return and
    /// then leaves together (one batch, as over a connection being dialled).
    busy: HashSet<PeerId>,
    /// Deposits were held back while couriers were out: gather again when
    /// one comes back.
    deferred: bool,
}

impl Couriers {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            running: JoinSet::new(),
            pending: HashMap::new(),
            busy: HashSet::new(),
            deferred: false,
        }
    }

    /// Whether this node deposits sealed mail by courier at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a courier to `relay` may start now; if not, the deposits
    /// wait (see [`Couriers::take_deferred`]).
    pub(crate) fn may_start(&mut self, relay: &PeerId) -> bool {
        let room = self.enabled && self.running.len() < MAX_IN_FLIGHT && !self.busy.contains(relay);
        self.deferred |= !room;
        room
    }

    /// Whether deposits waited for a courier since last asked.
    pub(crate) fn take_deferred(&mut self) -> bool {
        std::mem::take(&mut self.deferred)
    }

    /// Sends `request` to `relay` by a new courier; `pending` is what its
    /// answer settles.
    pub(crate) fn start(
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
        self.busy.insert(relay);
    }

    /// The next courier to come back; `None` (at once) when none is out, so
    /// the actor's `select!` skips this branch.
    pub(crate) async fn next(&mut self) -> Option<Returned> {
        loop {
            let (id, result) = match self.running.join_next_with_id().await? {
                Ok((id, result)) => (id, result),
                // A courier that panicked brought nothing: its deposits
                // are due again, like after any failure.
                Err(error) => (error.id(), Err(CourierError::Lost(error.to_string()))),
            };
            if let Some((relay, pending)) = self.pending.remove(&id) {
                self.busy.remove(&relay);
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
    async fn at_most_four_couriers_run_one_per_relay_and_each_comes_back() {
        let mut couriers = Couriers::new(true);
        // Nothing listens on port 1 of loopback: each fails at once.
        let nowhere: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let relays: Vec<PeerId> = (0..MAX_IN_FLIGHT + 1).map(|_| PeerId::random()).collect();
        let mut started = Vec::new();
        for relay in &relays {
            if couriers.may_start(relay) {
                couriers.start(
                    *relay,
                    vec![nowhere.clone()],
                    MailboxRequest::Notify,
                    MailboxPending::Notify,
                );
                started.push(*relay);
            }
        }
        assert_eq!(started.len(), MAX_IN_FLIGHT);
        assert!(couriers.take_deferred(), "the fifth relay waited");
        assert!(!couriers.take_deferred());
        // A second courier to a relay with one out waits too.
        assert!(!couriers.may_start(&started[0]));
        assert!(couriers.take_deferred());
        for _ in 0..started.len() {
            let returned = couriers.next().await.unwrap();
            assert!(started.contains(&returned.relay));
            assert!(matches!(returned.pending, MailboxPending::Notify));
            assert!(returned.result.is_err());
        }
        assert!(couriers.next().await.is_none());
        assert!(couriers.may_start(&started[0]));
        // A node on a custom transport sends none.
        assert!(!Couriers::new(false).may_start(&relays[0]));
    }
}

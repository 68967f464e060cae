//! When to dial an unreachable peer again: exponential backoff per peer, reset
//! for everyone when the network shows it is back.
//!
//! A peer that cannot be reached is retried after 1, 2, 4 … up to 300 s. On
//! its own that makes recovery slow: after a 30 s outage the next attempt
//! across it can be 30 s away. So when a peer we had failed to reach connects
//! (or a new listen address appears), the network has changed, and every
//! peer waiting in backoff becomes due at once. Resets happen at most once per
//! base interval, so a busy node does not redial everyone on every connection.

use std::{collections::HashMap, time::Duration};

use libp2p::PeerId;
use std::time::Instant;

struct Backoff {
    next_at: Instant,
    delay: Duration,
    /// A dial to the peer failed since it was last connected.
    failed: bool,
}

pub(crate) struct Redials {
    peers: HashMap<PeerId, Backoff>,
    base: Duration,
    max: Duration,
    last_reset: Option<Instant>,
}

impl Redials {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            peers: HashMap::new(),
            base,
            max: max.max(base),
            last_reset: None,
        }
    }

    /// Whether to dial `peer` now; if so, the attempt after it is scheduled.
    pub(crate) fn due(&mut self, peer: PeerId, now: Instant) -> bool {
        let backoff = self.peers.entry(peer).or_insert(Backoff {
            next_at: now,
            delay: Duration::ZERO,
            failed: false,
        });
        if backoff.next_at > now {
            return false;
        }
        backoff.delay = (backoff.delay * 2).max(self.base).min(self.max);
        backoff.next_at = now + backoff.delay;
        true
    }

    /// A dial to `peer` failed.
    pub(crate) fn failed(&mut self, peer: PeerId) {
        if let Some(backoff) = self.peers.get_mut(&peer) {
            backoff.failed = true;
        }
    }

    /// `peer` connected. Returns whether this looks like the network coming
    /// back (a dial to the peer had failed), in which case every peer in
    /// backoff is due again. A slow first dial is not a sign of anything.
    pub(crate) fn connected(&mut self, peer: PeerId, now: Instant) -> bool {
        let failed_before = self.peers.remove(&peer).is_some_and(|b| b.failed);
        failed_before && self.reset(now)
    }

    /// The node's own addresses changed (an interface came up): everyone in
    /// backoff is due again. Returns whether the reset happened.
    pub(crate) fn network_changed(&mut self, now: Instant) -> bool {
        self.reset(now)
    }

    /// Forgets `peer`'s backoff (a fresh contact, an unblock): due at once.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    fn reset(&mut self, now: Instant) -> bool {
        if self.peers.is_empty() || self.last_reset.is_some_and(|t| now < t + self.base) {
            return false;
        }
        self.last_reset = Some(now);
        for backoff in self.peers.values_mut() {
            backoff.next_at = now;
            backoff.delay = Duration::ZERO;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);

    fn redials() -> Redials {
        Redials::new(BASE, Duration::from_secs(300))
    }

    #[test]
    fn backs_off_exponentially_up_to_the_maximum() {
        let mut r = Redials::new(BASE, Duration::from_secs(8));
        let peer = PeerId::random();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        assert!(r.due(peer, now));
        for _ in 0..6 {
            let mut waited = Duration::ZERO;
            while !r.due(peer, now) {
                now += Duration::from_millis(250);
                waited += Duration::from_millis(250);
            }
            waits.push(waited.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_peer_that_failed_and_connects_makes_everyone_due() {
        let mut r = redials();
        let (back, waiting) = (PeerId::random(), PeerId::random());
        let mut now = Instant::now();
        // Both fail six attempts: the next is a minute or more away.
        for _ in 0..6 {
            while !r.due(waiting, now) {
                now += BASE;
            }
            r.failed(waiting);
            r.due(back, now);
            r.failed(back);
        }
        assert!(!r.due(waiting, now + BASE), "deep in backoff");
        assert!(r.connected(back, now));
        assert!(
            r.due(waiting, now),
            "due at once after the network came back"
        );
    }

    #[test]
    fn a_slow_dial_that_never_failed_is_not_a_network_change() {
        let mut r = redials();
        let (slow, waiting) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        r.due(waiting, now);
        r.failed(waiting);
        r.due(waiting, now + BASE);
        // Still connecting when the next tick comes: attempted twice, failed never.
        r.due(slow, now);
        r.due(slow, now + BASE);
        assert!(!r.connected(slow, now + BASE * 2));
        assert!(!r.due(waiting, now + BASE * 2));
    }

    #[test]
    fn resets_are_rate_limited() {
        let mut r = redials();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let now = Instant::now();
        for p in &peers {
            r.due(*p, now);
            r.failed(*p);
        }
        let later = now + BASE * 2;
        assert!(r.network_changed(later));
        r.due(peers[0], later);
        r.due(peers[0], later + BASE / 2);
        assert!(
            !r.network_changed(later + BASE / 2),
            "within one base interval"
        );
        assert!(r.network_changed(later + BASE * 2));
    }
}

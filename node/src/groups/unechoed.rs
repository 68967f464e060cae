//! Group changes this node got other than by gossip (pushed, or fetched in
//! a sync) whose gossip copy has not come yet.
//!
//! A gossiped frame that brings nothing new is not forwarded (`Ignore`):
//! forwarding it would only add copies. But a change that reached this node
//! first by another path may reach its mesh neighbours only through this
//! node's forward of its gossip copy: the author publishes a message and
//! pushes it back after a sync at the same time, the push wins, and the
//! frame stopped here (a member whose only gossip link was this node never
//! got the message; `meshchat demo` waited 20 s for it in CI). So the first
//! gossip copy of such a change is forwarded like a new one; later copies
//! are not. Pure bookkeeping, bounded in changes and time.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use meshchat_crdt::ChangeHash;

/// How long a change waits for its gossip copy: gossip carries a change
/// across a group in seconds, and a copy later than this is a straggler.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(30);
/// Arrivals remembered at once; past it the oldest are forgotten (their
/// gossip copy, if it still comes, is not forwarded).
pub(crate) const MAX_CHANGES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Unechoed {
    /// When each change came, for the lookups.
    since: HashMap<ChangeHash, Instant>,
    /// Every arrival, oldest first, for expiry and eviction (an arrival
    /// already echoed, or renewed by a later one, is skipped in its turn).
    order: VecDeque<(ChangeHash, Instant)>,
}

impl Unechoed {
    /// `changes` came other than by gossip at `now`.
    pub(crate) fn got_elsewhere(
        &mut self,
        changes: impl IntoIterator<Item = ChangeHash>,
        now: Instant,
    ) {
        for hash in changes {
            self.since.insert(hash, now);
            self.order.push_back((hash, now));
        }
        self.forget_old(now);
        while self.order.len() > MAX_CHANGES {
            self.pop_oldest();
        }
    }

    /// A gossiped frame carried `changes` at `now`: how many of them are
    /// first gossip copies of changes that came by another path (each
    /// counts once).
    pub(crate) fn echoed(&mut self, changes: &[ChangeHash], now: Instant) -> usize {
        self.forget_old(now);
        if self.since.is_empty() {
            return 0;
        }
        changes
            .iter()
            .filter(|hash| self.since.remove(hash).is_some())
            .count()
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < KEEP_FOR {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((hash, at)) = self.order.pop_front() {
            // Only if it is this entry's time (not echoed and not renewed).
            if self.since.get(&hash) == Some(&at) {
                self.since.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u16) -> ChangeHash {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_le_bytes());
        ChangeHash::from_bytes(bytes)
    }

    #[test]
    fn the_first_gossip_copy_of_a_change_got_elsewhere_counts_once() {
        let now = Instant::now();
        let mut unechoed = Unechoed::default();
        unechoed.got_elsewhere([hash(1), hash(2)], now);
        assert_eq!(unechoed.echoed(&[hash(1), hash(3)], now), 1);
        assert_eq!(unechoed.echoed(&[hash(1)], now), 0, "a second copy");
        assert_eq!(unechoed.echoed(&[hash(3)], now), 0, "never got elsewhere");
        assert_eq!(unechoed.echoed(&[hash(2)], now), 1);
    }

    #[test]
    fn a_change_waits_for_its_copy_only_so_long() {
        let now = Instant::now();
        let mut unechoed = Unechoed::default();
        unechoed.got_elsewhere([hash(1)], now);
        unechoed.got_elsewhere([hash(2)], now + KEEP_FOR / 2);
        assert_eq!(unechoed.echoed(&[hash(1), hash(2)], now + KEEP_FOR), 1);
        assert!(unechoed.order.len() <= 1);
    }

    #[test]
    fn past_the_bound_the_oldest_are_forgotten() {
        let now = Instant::now();
        let mut unechoed = Unechoed::default();
        let total = MAX_CHANGES as u16 + 10;
        unechoed.got_elsewhere((0..total).map(hash), now);
        assert_eq!(unechoed.since.len(), MAX_CHANGES);
        assert_eq!(unechoed.echoed(&[hash(0)], now), 0, "the oldest went");
        assert_eq!(unechoed.echoed(&[hash(total - 1)], now), 1);
    }

    #[test]
    fn a_change_got_again_later_waits_from_then() {
        let now = Instant::now();
        let mut unechoed = Unechoed::default();
        unechoed.got_elsewhere([hash(1)], now);
        assert_eq!(unechoed.echoed(&[hash(1)], now), 1);
        unechoed.got_elsewhere([hash(1)], now + KEEP_FOR / 2);
        // The first entry's expiry must not take the second with it.
        assert_eq!(unechoed.echoed(&[hash(1)], now + KEEP_FOR), 1);
    }
}

//! How much a peer's refused input may cost in log lines and events.
//!
//! Every refused change used to log a warning and emit an event: a peer could
//! flood the log and the control API's event channel (pushing out the events
//! a UI needs) at the price of sending garbage. Each peer now gets a small
//! budget per window, everyone together a larger one; beyond it refusals are
//! only counted, and once per window the count of what was left unsaid is
//! reported. Pure (time is passed in), so it is tested with plain numbers.

use std::collections::HashMap;

use libp2p::PeerId;

/// Length of one window.
pub(crate) const WINDOW_MS: i64 = 60_000;
/// Refusals reported per peer per window.
pub(crate) const PER_PEER: u32 = 10;
/// Refusals reported per window, all peers together.
pub(crate) const TOTAL: u32 = 100;
/// Peers tracked at once (strangers are many and cheap to mint).
const MAX_PEERS: usize = 4096;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Log it and emit it.
    Yes,
    /// Only count it.
    Quiet,
}

/// Counts refusals per peer and window.
#[derive(Debug, Default)]
pub(crate) struct RejectionBudget {
    window_start: i64,
    total: u32,
    per_peer: HashMap<PeerId, u32>,
    suppressed: HashMap<PeerId, u64>,
}

impl RejectionBudget {
    /// Whether a refusal from `peer` at `now_ms` is reported. When a new
    /// window starts, returns the counts left unreported in the last one.
    pub(crate) fn note(&mut self, peer: PeerId, now_ms: i64) -> (Report, Vec<(PeerId, u64)>) {
        let mut summary = Vec::new();
        if now_ms - self.window_start >= WINDOW_MS || now_ms < self.window_start {
            summary = self.suppressed.drain().collect();
            summary.sort();
            self.window_start = now_ms;
            self.total = 0;
            self.per_peer.clear();
        }
        let seen = self.per_peer.get(&peer).copied().unwrap_or(0);
        let tracked = self.per_peer.contains_key(&peer) || self.per_peer.len() < MAX_PEERS;
        if seen < PER_PEER && self.total < TOTAL && tracked {
            self.per_peer.insert(peer, seen + 1);
            self.total += 1;
            return (Report::Yes, summary);
        }
        if self.suppressed.len() < MAX_PEERS || self.suppressed.contains_key(&peer) {
            *self.suppressed.entry(peer).or_default() += 1;
        }
        (Report::Quiet, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_peer_gets_its_budget_then_a_count() {
        let mut budget = RejectionBudget::default();
        let flooder = PeerId::random();
        let honest = PeerId::random();
        let reported = (0..1000)
            .filter(|_| budget.note(flooder, 1_000).0 == Report::Yes)
            .count();
        assert_eq!(reported, PER_PEER as usize);
        // Another peer still gets its own budget.
        assert_eq!(budget.note(honest, 1_001).0, Report::Yes);
        // Next window: the count of what was left unsaid, and a fresh budget.
        let (report, summary) = budget.note(flooder, 1_000 + WINDOW_MS);
        assert_eq!(report, Report::Yes);
        assert_eq!(summary, vec![(flooder, 1000 - u64::from(PER_PEER))]);
    }

    #[test]
    fn many_peers_share_a_total() {
        let mut budget = RejectionBudget::default();
        let reported = (0..1000)
            .filter(|_| budget.note(PeerId::random(), 5).0 == Report::Yes)
            .count();
        assert_eq!(reported, TOTAL as usize);
        assert!(budget.suppressed.len() <= MAX_PEERS);
    }
}

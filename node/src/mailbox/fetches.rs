//! One chain of mail fetches per relay at a time. A relay's mail is fetched
//! page by page, each page asking for the next; a second request to fetch
//! (the connection came up and the relay notified, say) while a chain runs
//! would walk the same mailbox twice. It is remembered instead, and the
//! chain starts over once it ends, which picks up whatever arrived behind
//! its cursor.

use std::collections::HashSet;

use libp2p::PeerId;

/// What follows a page of mail once its flush is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPage {
    /// Fetch the next page, starting after this id.
    Fetch(Option<u64>),
    /// The next page was asked for already, while this one was applied.
    Fetching,
    /// This page was the last one: the chain ends.
    Last,
}

/// Relays with a fetch chain running, and those asked to fetch again.
#[derive(Debug, Default)]
pub(crate) struct MailFetches {
    running: HashSet<PeerId>,
    again: HashSet<PeerId>,
}

impl MailFetches {
    /// A fetch of `relay`'s mail from the start was asked for: whether to
    /// start a chain now (otherwise it starts again when the running one
    /// ends).
    pub(crate) fn start(&mut self, relay: PeerId) -> bool {
        if self.running.insert(relay) {
            return true;
        }
        self.again.insert(relay);
        false
    }

    /// `relay`'s chain ended (its last page flushed, or a fetch or flush
    /// failed): whether to start a new one at once.
    pub(crate) fn ended(&mut self, relay: &PeerId) -> bool {
        self.running.remove(relay);
        if self.again.remove(relay) {
            self.running.insert(*relay);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_start_waits_for_the_running_chain_and_runs_once() {
        let (relay, other) = (PeerId::random(), PeerId::random());
        let mut fetches = MailFetches::default();
        assert!(fetches.start(relay));
        assert!(fetches.start(other), "chains of other relays are apart");
        assert!(!fetches.start(relay));
        assert!(!fetches.start(relay), "asked twice, started once");
        assert!(fetches.ended(&relay), "starts over once");
        assert!(!fetches.start(relay), "the new chain runs");
        assert!(fetches.ended(&relay));
        assert!(!fetches.ended(&relay), "and then nothing more");
        assert!(fetches.start(relay));
    }
}

//! How many anti-entropy syncs run with one peer at once.
//!
//! A peer serves at most `[limits] max_streams_per_connection` (16) requests
//! per connection and protocol, and refuses the rest; a node sharing more
//! chats than that with a peer would lose the syncs past the limit. Syncs
//! therefore take a slot: a few run at once, the rest wait in order and start
//! as slots free up. Pure bookkeeping; the actor sends the requests.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;
use meshchat_crdt::ChatId;

/// Syncs in flight with one peer; leaves room for pushes and receipts.
pub(crate) const SYNCS_IN_FLIGHT: usize = 4;

#[derive(Debug, Default)]
pub(crate) struct SyncSlots {
    peers: HashMap<PeerId, Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    in_flight: usize,
    /// Chats waiting for a slot, each once (bounded by the chats shared).
    waiting: VecDeque<ChatId>,
}

impl SyncSlots {
    /// Whether a sync of `chat` with `peer` may start now. If not, it waits
    /// (once, however often it is asked for) and [`SyncSlots::finish`]
    /// hands it out later.
    pub(crate) fn admit(&mut self, peer: PeerId, chat: ChatId) -> bool {
        let slots = self.peers.entry(peer).or_default();
        if slots.in_flight < SYNCS_IN_FLIGHT {
            slots.in_flight += 1;
            return true;
        }
        if !slots.waiting.contains(&chat) {
            slots.waiting.push_back(chat);
        }
        false
    }

    /// A sync with `peer` ended (answered or failed): the next chat to sync
    /// with it, which takes the freed slot, if any waits.
    pub(crate) fn finish(&mut self, peer: PeerId) -> Option<ChatId> {
        let slots = self.peers.get_mut(&peer)?;
        match slots.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                slots.in_flight = slots.in_flight.saturating_sub(1);
                if slots.in_flight == 0 {
                    self.peers.remove(&peer);
                }
                None
            }
        }
    }

    /// The peer disconnected: its syncs start over when it is back.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chats(n: usize) -> Vec<ChatId> {
        (0..n).map(|i| ChatId::from_bytes([i as u8; 32])).collect()
    }

    #[test]
    fn syncs_past_the_slots_wait_once_and_start_in_order() {
        let mut slots = SyncSlots::default();
        let peer = PeerId::random();
        let chat = chats(10);
        let admitted = chat.iter().filter(|c| slots.admit(peer, **c)).count();
        assert_eq!(admitted, SYNCS_IN_FLIGHT);
        // Asked again while waiting: still waits once.
        assert!(!slots.admit(peer, chat[9]));
        let mut started = Vec::new();
        while let Some(next) = slots.finish(peer) {
            started.push(next);
        }
        assert_eq!(started, chat[SYNCS_IN_FLIGHT..]);
        // The last in-flight syncs end: the peer is forgotten.
        for _ in 1..SYNCS_IN_FLIGHT {
            assert_eq!(slots.finish(peer), None);
        }
        assert!(slots.peers.is_empty());
        assert!(slots.admit(peer, chat[0]));
    }

    #[test]
    fn a_disconnected_peer_starts_afresh() {
        let mut slots = SyncSlots::default();
        let peer = PeerId::random();
        for chat in chats(6) {
            slots.admit(peer, chat);
        }
        slots.forget(&peer);
        assert!(slots.admit(peer, ChatId::from_bytes([99; 32])));
        assert_eq!(slots.finish(peer), None);
    }
}

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
    /// Chats being synced, each at most once.
    in_flight: Vec<ChatId>,
    /// Chats waiting for a slot, each once (bounded by the chats shared).
    waiting: VecDeque<ChatId>,
}

impl SyncSlots {
    /// Whether a sync of `chat` with `peer` may start now. If not (no slot
    /// free, or that chat is being synced with the peer already, from heads
    /// that may be older than what prompted this), it waits (once, however
    /// often it is asked for) and [`SyncSlots::finish`] hands it out later.
    pub(crate) fn admit(&mut self, peer: PeerId, chat: ChatId) -> bool {
        let slots = self.peers.entry(peer).or_default();
        if slots.in_flight.len() < SYNCS_IN_FLIGHT && !slots.in_flight.contains(&chat) {
            slots.in_flight.push(chat);
            return true;
        }
        if !slots.waiting.contains(&chat) {
            slots.waiting.push_back(chat);
        }
        false
    }

    /// The sync of `chat` with `peer` ended (answered or failed): the next
    /// chat to sync with it, which takes the freed slot, if any waits.
    pub(crate) fn finish(&mut self, peer: PeerId, chat: ChatId) -> Option<ChatId> {
        let slots = self.peers.get_mut(&peer)?;
        let at = slots.in_flight.iter().position(|c| *c == chat)?;
        slots.in_flight.swap_remove(at);
        let next = slots
            .waiting
            .iter()
            .position(|c| !slots.in_flight.contains(c))
            .and_then(|at| slots.waiting.remove(at));
        match next {
            Some(next) => {
                slots.in_flight.push(next);
                Some(next)
            }
            None => {
                if slots.in_flight.is_empty() && slots.waiting.is_empty() {
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
        let mut running: VecDeque<ChatId> = chat[..SYNCS_IN_FLIGHT].iter().copied().collect();
        while let Some(done) = running.pop_front() {
            if let Some(next) = slots.finish(peer, done) {
                started.push(next);
                running.push_back(next);
            }
        }
        assert_eq!(started, chat[SYNCS_IN_FLIGHT..]);
        // The last syncs ended: the peer is forgotten.
        assert!(slots.peers.is_empty());
        assert!(slots.admit(peer, chat[0]));
    }

    #[test]
    fn a_chat_syncs_once_at_a_time_and_once_more_after() {
        let mut slots = SyncSlots::default();
        let peer = PeerId::random();
        let [a, b] = chats(2)[..] else { unreachable!() };
        assert!(slots.admit(peer, a));
        // Asked for again (changes waiting for dependencies), three times.
        for _ in 0..3 {
            assert!(!slots.admit(peer, a));
        }
        assert!(slots.admit(peer, b), "another chat takes a free slot");
        assert_eq!(slots.finish(peer, b), None);
        // The first ends: it runs once more, from newer heads, then no more.
        assert_eq!(slots.finish(peer, a), Some(a));
        assert_eq!(slots.finish(peer, a), None);
        assert!(slots.peers.is_empty());
        // An end that was never admitted changes nothing.
        assert_eq!(slots.finish(peer, b), None);
    }

    #[test]
    fn a_disconnected_peer_starts_afresh() {
        let mut slots = SyncSlots::default();
        let peer = PeerId::random();
        for chat in chats(6) {
            slots.admit(peer, chat);
        }
        slots.forget(&peer);
        let chat = ChatId::from_bytes([99; 32]);
        assert!(slots.admit(peer, chat));
        assert_eq!(slots.finish(peer, chat), None);
    }
}

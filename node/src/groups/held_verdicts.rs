//! Gossiped frames whose changes wait for their dependencies.
//!
//! gossipsub keeps a frame it handed over for validation, unforwarded,
//! until the node reports a verdict (or for `history_length` heartbeats,
//! 5 s). A frame whose changes were built on ones this node lacks cannot be
//! vouched for yet; reported `Ignore` at once, it stopped at this node, and
//! a member whose every mesh neighbour had it waiting got it only from the
//! next anti-entropy round. Its verdict therefore waits here until every
//! change it brought is stored (the dependency sync that its arrival
//! started usually brings them within a round trip), and is `Accept` then:
//! gossipsub forwards the frame as usual. Past [`HOLD_FOR`] it is `Ignore`.
//! Pure bookkeeping, bounded in frames and hashes; the actor reports the
//! verdicts.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use libp2p::{gossipsub::MessageId, PeerId};
use meshchat_crdt::ChangeHash;

/// How long a frame's verdict waits for its changes' dependencies: well
/// inside gossipsub's 5 s hold, so the frame is still there to forward.
pub(crate) const HOLD_FOR: Duration = Duration::from_secs(2);
/// Frames held at once; one more is judged `Ignore` at once.
pub(crate) const MAX_FRAMES: usize = 512;
/// Waiting changes named by the held frames together.
pub(crate) const MAX_HASHES: usize = 8192;

/// A gossiped frame, as gossipsub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) message_id: MessageId,
    pub(crate) propagation_source: PeerId,
}

#[derive(Debug)]
struct Held {
    frame: Frame,
    /// Its changes not stored yet.
    waiting: Vec<ChangeHash>,
    until: Instant,
}

/// The held frames, oldest first (every hold lasts [`HOLD_FOR`], so the
/// oldest expires first).
#[derive(Debug, Default)]
pub(crate) struct HeldVerdicts {
    held: VecDeque<Held>,
    hashes: usize,
}

impl HeldVerdicts {
    /// Holds `frame`'s verdict until its `waiting` changes are stored.
    /// Gives the frame back when full (or nothing waits): judge it now.
    pub(crate) fn hold(
        &mut self,
        frame: Frame,
        waiting: Vec<ChangeHash>,
        now: Instant,
    ) -> Result<(), Frame> {
        if waiting.is_empty()
            || self.held.len() >= MAX_FRAMES
            || self.hashes + waiting.len() > MAX_HASHES
        {
            return Err(frame);
        }
        self.hashes += waiting.len();
        self.held.push_back(Held {
            frame,
            waiting,
            until: now + HOLD_FOR,
        });
        Ok(())
    }

    /// `stored` changes are durable now: the frames they completed, to
    /// accept.
    pub(crate) fn stored(&mut self, stored: &[ChangeHash]) -> Vec<Frame> {
        if self.held.is_empty() || stored.is_empty() {
            return Vec::new();
        }
        let stored: HashSet<&ChangeHash> = stored.iter().collect();
        let mut complete = Vec::new();
        let mut hashes = 0;
        self.held.retain_mut(|held| {
            held.waiting.retain(|hash| !stored.contains(hash));
            if held.waiting.is_empty() {
                complete.push(held.frame.clone());
                return false;
            }
            hashes += held.waiting.len();
            true
        });
        self.hashes = hashes;
        complete
    }

    /// Keeps of `changes` those no held frame waits for (a frame that does
    /// is forwarded once they are stored).
    pub(crate) fn retain_unawaited(&self, changes: &mut Vec<ChangeHash>) {
        if self.held.is_empty() {
            return;
        }
        let awaited: HashSet<&ChangeHash> =
            self.held.iter().flat_map(|held| &held.waiting).collect();
        changes.retain(|hash| !awaited.contains(hash));
    }

    /// The frames whose hold ran out by `now`, to ignore.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Frame> {
        let mut expired = Vec::new();
        while let Some(held) = self.held.front() {
            if held.until > now {
                break;
            }
            if let Some(held) = self.held.pop_front() {
                self.hashes -= held.waiting.len();
                expired.push(held.frame);
            }
        }
        expired
    }

    /// When the oldest hold runs out, if any frame is held.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.held.front().map(|held| held.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Frame {
        Frame {
            message_id: MessageId::from(vec![n]),
            propagation_source: PeerId::random(),
        }
    }

    fn hash(n: u8) -> ChangeHash {
        ChangeHash::from_bytes([n; 32])
    }

    #[test]
    fn a_frame_is_accepted_once_every_change_it_brought_is_stored() {
        let now = Instant::now();
        let mut held = HeldVerdicts::default();
        let (a, b) = (frame(1), frame(2));
        held.hold(a.clone(), vec![hash(1), hash(2)], now).unwrap();
        held.hold(b.clone(), vec![hash(3)], now).unwrap();
        let mut changes = vec![hash(1), hash(2), hash(9)];
        held.retain_unawaited(&mut changes);
        assert_eq!(changes, [hash(9)]);
        assert_eq!(held.stored(&[hash(1), hash(9)]), []);
        assert_eq!(held.stored(&[hash(3)]), [b]);
        assert_eq!(held.stored(&[hash(2)]), [a]);
        assert_eq!(held.next_expiry(), None);
        assert_eq!(held.hashes, 0);
    }

    #[test]
    fn a_hold_runs_out_oldest_first() {
        let now = Instant::now();
        let mut held = HeldVerdicts::default();
        let (a, b) = (frame(1), frame(2));
        held.hold(a.clone(), vec![hash(1)], now).unwrap();
        held.hold(b.clone(), vec![hash(2)], now + HOLD_FOR / 2)
            .unwrap();
        assert_eq!(held.next_expiry(), Some(now + HOLD_FOR));
        assert_eq!(held.expired(now + HOLD_FOR / 2), []);
        assert_eq!(held.expired(now + HOLD_FOR), [a]);
        assert_eq!(held.expired(now + HOLD_FOR * 2), [b]);
        assert_eq!(held.hashes, 0);
        assert_eq!(held.stored(&[hash(2)]), [], "a frame is judged once");
    }

    #[test]
    fn frames_and_hashes_are_bounded() {
        let now = Instant::now();
        let mut held = HeldVerdicts::default();
        assert!(
            held.hold(frame(0), Vec::new(), now).is_err(),
            "nothing waits"
        );
        let too_many = vec![hash(1); MAX_HASHES + 1];
        assert!(held.hold(frame(1), too_many, now).is_err());
        for n in 0..MAX_FRAMES {
            held.hold(frame(n as u8), vec![hash(n as u8)], now).unwrap();
        }
        assert!(held.hold(frame(7), vec![hash(7)], now).is_err());
        assert_eq!(held.expired(now + HOLD_FOR).len(), MAX_FRAMES);
        assert!(held.hold(frame(7), vec![hash(7)], now).is_ok());
    }
}

//! When an author starts a new sender-key epoch, and which epochs' keys a
//! member is given: the rotation rules of issue 16, as pure functions of an
//! author's own causal view (its replica's members and newest segment).
//!
//! - A new epoch when a member is removed or leaves (the departed must not
//!   read what follows), and at every new segment (bounding what one key
//!   opens).
//! - A member who joins gets the current key; no new epoch (nothing it
//!   could not read is sealed under the current key after it joined).
//! - With `history_for_new_members = false` a newcomer is given no key of
//!   an epoch that began before its `joined_segment`: the setting becomes
//!   cryptographic. With it on, the adder shares the older keys too.
//!
//! Not on the live path yet: nothing in the node calls it.

use std::collections::BTreeSet;

use crate::{ids::PublicKey, signed::SegmentIndex};

/// What an author's current epoch was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochView {
    /// The epoch number (its sender key's epoch).
    pub epoch: u32,
    /// The newest segment when it began.
    pub segment: SegmentIndex,
    /// The members it was shared with (the author included).
    pub members: BTreeSet<PublicKey>,
}

/// Why a new epoch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Members left or were removed since the epoch began.
    Departed(Vec<PublicKey>),
    /// A newer segment began.
    NewSegment(SegmentIndex),
}

/// What the author does now that its view is `members` at `segment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochStep {
    /// Keep the current key; share it with these newcomers (maybe none).
    Keep {
        /// Members who joined since the epoch began.
        newcomers: Vec<PublicKey>,
    },
    /// Start `next` with a fresh key shared with all its members.
    Rotate {
        /// The new epoch.
        next: EpochView,
        /// Why.
        reason: Rotation,
    },
}

/// The step from `current` to a view with `members` at `segment`. Epoch
/// numbers only grow; one past `u32::MAX` stays at `u32::MAX` (4 billion
/// rotations of one author in one chat do not happen).
pub fn step(
    current: &EpochView,
    members: &BTreeSet<PublicKey>,
    segment: SegmentIndex,
) -> EpochStep {
    let departed: Vec<PublicKey> = current.members.difference(members).copied().collect();
    let reason = if !departed.is_empty() {
        Some(Rotation::Departed(departed))
    } else if segment > current.segment {
        Some(Rotation::NewSegment(segment))
    } else {
        None
    };
    match reason {
        Some(reason) => EpochStep::Rotate {
            next: EpochView {
                epoch: current.epoch.saturating_add(1),
                segment: segment.max(current.segment),
                members: members.clone(),
            },
            reason,
        },
        None => EpochStep::Keep {
            newcomers: members.difference(&current.members).copied().collect(),
        },
    }
}

/// The epochs whose keys a member who joined at `joined_segment` is given,
/// from an author's `epochs`, oldest first, each with the newest segment it
/// sealed a change in (the segment it began at, if none yet); the last is
/// the current one. With history on: all. Otherwise the current epoch, and
/// the older ones that sealed something in `joined_segment` or later (a
/// removal mid-segment rotates inside a segment the newcomer may read).
pub fn epochs_for_newcomer(
    epochs: &[(u32, SegmentIndex)],
    joined_segment: SegmentIndex,
    history_for_new_members: bool,
) -> Vec<u32> {
    let current = epochs.len().saturating_sub(1);
    epochs
        .iter()
        .enumerate()
        .filter(|(i, (_, newest))| {
            history_for_new_members || *i == current || *newest >= joined_segment
        })
        .map(|(_, (epoch, _))| *epoch)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn members(ns: &[u8]) -> BTreeSet<PublicKey> {
        ns.iter().map(|n| key(*n)).collect()
    }

    fn view(epoch: u32, segment: SegmentIndex, ns: &[u8]) -> EpochView {
        EpochView {
            epoch,
            segment,
            members: members(ns),
        }
    }

    #[test]
    fn a_removal_or_a_new_segment_rotates_a_join_does_not() {
        let now = view(3, 5, &[1, 2, 3]);
        assert_eq!(
            step(&now, &members(&[1, 2, 3, 4]), 5),
            EpochStep::Keep {
                newcomers: vec![key(4)]
            }
        );
        assert_eq!(
            step(&now, &members(&[1, 2, 3]), 5),
            EpochStep::Keep {
                newcomers: Vec::new()
            }
        );
        assert_eq!(
            step(&now, &members(&[1, 3, 4]), 5),
            EpochStep::Rotate {
                next: view(4, 5, &[1, 3, 4]),
                reason: Rotation::Departed(vec![key(2)]),
            }
        );
        assert_eq!(
            step(&now, &members(&[1, 2, 3]), 6),
            EpochStep::Rotate {
                next: view(4, 6, &[1, 2, 3]),
                reason: Rotation::NewSegment(6),
            }
        );
        // An older segment in the view (a stale replica) never goes back.
        assert!(matches!(
            step(&now, &members(&[1, 2]), 2),
            EpochStep::Rotate { next, .. } if next.segment == 5 && next.epoch == 4
        ));
        let last = view(u32::MAX, 0, &[1]);
        assert!(matches!(
            step(&last, &members(&[1]), 1),
            EpochStep::Rotate { next, .. } if next.epoch == u32::MAX
        ));
    }

    #[test]
    fn without_history_a_newcomer_gets_no_key_from_before_it_joined() {
        // Epochs 1..4 sealed up to segments 1, 2, 3, 3 (a removal in
        // segment 3 started epoch 4 there).
        let epochs = [(1, 1), (2, 2), (3, 3), (4, 3)];
        assert_eq!(epochs_for_newcomer(&epochs, 3, false), vec![3, 4]);
        assert_eq!(epochs_for_newcomer(&epochs, 5, false), vec![4]);
        assert_eq!(epochs_for_newcomer(&epochs, 2, false), vec![2, 3, 4]);
        assert_eq!(epochs_for_newcomer(&epochs, 3, true), vec![1, 2, 3, 4]);
        assert_eq!(epochs_for_newcomer(&[], 3, false), Vec::<u32>::new());
    }
}

//! This node's latest changes, kept in memory so the pushes that follow a
//! write take them from here instead of reading them back from sled.

use std::collections::{HashMap, VecDeque};

use meshchat_crdt::{ChangeHash, ChatId, SegmentIndex, SignedChange};

/// How many of its latest changes a node keeps at hand.
const KEPT: usize = 256;

type Key = (ChatId, SegmentIndex, ChangeHash);

/// The last [`KEPT`] changes written, by where they are stored.
#[derive(Debug, Default)]
pub(super) struct RecentChanges {
    by_key: HashMap<Key, SignedChange>,
    order: VecDeque<Key>,
}

impl RecentChanges {
    /// Keeps `change` (stored under `hash`), forgetting the oldest beyond
    /// the bound.
    pub(super) fn keep(&mut self, change: &SignedChange, hash: ChangeHash) {
        let key = (change.chat, change.segment, hash);
        if self.by_key.insert(key, change.clone()).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }

    pub(super) fn get(
        &self,
        chat: &ChatId,
        segment: SegmentIndex,
        hash: &ChangeHash,
    ) -> Option<SignedChange> {
        self.by_key.get(&(*chat, segment, *hash)).cloned()
    }

    /// A write was lost: what is kept may no longer be on disk.
    pub(super) fn clear(&mut self) {
        self.by_key.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::{ChatKind, ChatReplica, Identity};

    use super::*;

    #[test]
    fn keeps_the_latest_changes_up_to_its_bound() {
        let alice = Identity::generate();
        let mut chat = ChatReplica::new(ChatKind::direct(
            alice.public(),
            Identity::generate().public(),
        ));
        let written: Vec<_> = (0..KEPT + 10)
            .map(|i| chat.write_message(&alice, "hi", None, i as i64).unwrap())
            .collect();
        let mut recent = RecentChanges::default();
        for w in &written {
            recent.keep(&w.change, w.hash);
            recent.keep(&w.change, w.hash);
        }
        let held = |recent: &RecentChanges, w: &meshchat_crdt::Written| {
            recent
                .get(&w.change.chat, w.change.segment, &w.hash)
                .is_some()
        };
        assert!(
            written[..10].iter().all(|w| !held(&recent, w)),
            "the oldest are gone"
        );
        assert!(written[10..].iter().all(|w| held(&recent, w)));
        assert_eq!(recent.order.len(), KEPT);
        recent.clear();
        assert!(!held(&recent, &written[KEPT]));
    }
}

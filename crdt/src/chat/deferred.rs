//! Changes waiting in memory for their dependencies: bounded, expiring.

use std::collections::HashMap;

use super::{DEFERRED_TTL_MS, MAX_DEFERRED, MAX_DEFERRED_BYTES, MAX_DEFERRED_PER_AUTHOR};
use crate::{ids::ChangeHash, signed::VerifiedChange};

/// Changes waiting in memory for their dependencies.
#[derive(Default, Clone)]
pub(super) struct Deferred {
    pub(super) changes: HashMap<ChangeHash, (VerifiedChange, i64)>,
    bytes: usize,
}

impl Deferred {
    pub(super) fn admit(
        &mut self,
        change: VerifiedChange,
        now_ms: i64,
    ) -> Result<(), &'static str> {
        if self.changes.contains_key(&change.hash) {
            return Ok(());
        }
        let size = change.signed.wire_size();
        if self.changes.len() >= MAX_DEFERRED || self.bytes + size > MAX_DEFERRED_BYTES {
            return Err("too many changes of this chat are waiting for their dependencies");
        }
        let by_author = self
            .changes
            .values()
            .filter(|(c, _)| c.author == change.author)
            .count();
        if by_author >= MAX_DEFERRED_PER_AUTHOR {
            return Err("too many changes of this author are waiting for their dependencies");
        }
        self.bytes += size;
        self.changes.insert(change.hash, (change, now_ms));
        Ok(())
    }

    pub(super) fn take_all(&mut self) -> Vec<VerifiedChange> {
        self.bytes = 0;
        self.changes.drain().map(|(_, (c, _))| c).collect()
    }

    pub(super) fn expire(&mut self, now_ms: i64) {
        let before = self.changes.len();
        self.changes
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) < DEFERRED_TTL_MS);
        if self.changes.len() != before {
            self.bytes = self
                .changes
                .values()
                .map(|(c, _)| c.signed.wire_size())
                .sum();
        }
    }
}

//! A sender's record of what it deposited where, so a restart does not
//! deposit again what a relay already holds, and a relay that refused is
//! left alone for a while.
//!
//! Per (recipient, relay, change): in flight (memory: the request is out),
//! held (sled tree `deposits`, until the end of the relay's promise, so the
//! record survives restarts), and per (recipient, relay) a pause after a
//! refusal (memory). Records of changes that left the outbox (delivered, or
//! refused for good) are swept.

use std::collections::{HashMap, HashSet};

use meshchat_crdt::{ChangeHash, PublicKey};
use tokio::time::Instant;

use crate::store::{DbHandle, StoreError};

fn key(recipient: &PublicKey, relay: &PublicKey, hash: &ChangeHash) -> [u8; 96] {
    let mut k = [0u8; 96];
    k[..32].copy_from_slice(recipient.as_bytes());
    k[32..64].copy_from_slice(relay.as_bytes());
    k[64..].copy_from_slice(hash.as_bytes());
    k
}

type Slot = (PublicKey, PublicKey);

pub(crate) struct DepositLog {
    /// recipient ‖ relay ‖ change hash → held until (i64 BE, the relay's promise)
    db: DbHandle,
    in_flight: HashSet<(PublicKey, PublicKey, ChangeHash)>,
    paused: HashMap<Slot, Instant>,
}

impl DepositLog {
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.tree("deposits")
    }

    pub(crate) fn open(db: DbHandle) -> Result<Self, StoreError> {
        db.tree("deposits")?;
        Ok(Self {
            db,
            in_flight: HashSet::new(),
            paused: HashMap::new(),
        })
    }

    /// Whether `hash` still has to go to `relay` for `recipient`: not in
    /// flight, and not held there (or the relay's promise has ended).
    pub(crate) fn is_due(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        hash: &ChangeHash,
        now_ms: i64,
    ) -> bool {
        if self.in_flight.contains(&(*recipient, *relay, *hash)) {
            return false;
        }
        let until = self
            .tree()
            .ok()
            .and_then(|tree| tree.get(key(recipient, relay, hash)).ok().flatten())
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes);
        until.is_none_or(|until| until <= now_ms)
    }

    /// Whether deposits for `recipient` at `relay` wait after a refusal.
    pub(crate) fn is_paused(&self, recipient: &PublicKey, relay: &PublicKey, now: Instant) -> bool {
        self.paused
            .get(&(*recipient, *relay))
            .is_some_and(|until| *until > now)
    }

    /// A deposit of `hashes` is on its way.
    pub(crate) fn sent(&mut self, recipient: PublicKey, relay: PublicKey, hashes: &[ChangeHash]) {
        for hash in hashes {
            self.in_flight.insert((recipient, relay, *hash));
        }
    }

    /// The deposit of `hashes` was answered (or failed): no longer in flight.
    pub(crate) fn settled(
        &mut self,
        recipient: &PublicKey,
        relay: &PublicKey,
        hashes: &[ChangeHash],
    ) {
        for hash in hashes {
            self.in_flight.remove(&(*recipient, *relay, *hash));
        }
    }

    /// The relay holds `hashes` for `recipient` until `until_ms` (its signed
    /// promise). Durable with the node's next flush; if that is lost, the
    /// relay answers a repeated deposit from the copy it holds.
    pub(crate) fn held(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        hashes: &[ChangeHash],
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for hash in hashes {
            batch.insert(
                &key(recipient, relay, hash)[..],
                &until_ms.to_be_bytes()[..],
            );
        }
        self.tree()?.apply_batch(batch)?;
        Ok(())
    }

    /// Deposits for `recipient` at `relay` wait until `until`.
    pub(crate) fn pause(&mut self, recipient: PublicKey, relay: PublicKey, until: Instant) {
        if self.paused.len() >= 100_000 {
            let now = Instant::now();
            self.paused.retain(|_, at| *at > now);
        }
        self.paused.insert((recipient, relay), until);
    }

    /// Something changed for `recipient` (it handed over new tokens): offer
    /// its mail to every relay again.
    pub(crate) fn resume(&mut self, recipient: &PublicKey) {
        self.paused.retain(|(r, _), _| r != recipient);
    }

    /// Forgets records whose relay promise has ended or whose change left the
    /// outbox (`pending` lists a recipient's undelivered changes). Returns
    /// how many went.
    pub(crate) fn sweep(
        &self,
        now_ms: i64,
        mut pending: impl FnMut(&PublicKey) -> Result<HashSet<ChangeHash>, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut current: Option<(PublicKey, HashSet<ChangeHash>)> = None;
        let mut batch = sled::Batch::default();
        let mut gone = 0;
        for kv in self.tree()?.iter() {
            let (k, v) = kv?;
            let (Some(recipient), Some(hash)) = (
                k.get(..32).and_then(|b| <[u8; 32]>::try_from(b).ok()),
                k.get(64..96).and_then(|b| <[u8; 32]>::try_from(b).ok()),
            ) else {
                batch.remove(k);
                gone += 1;
                continue;
            };
            let recipient = PublicKey::from_bytes(recipient);
            if current.as_ref().is_none_or(|(r, _)| *r != recipient) {
                current = Some((recipient, pending(&recipient)?));
            }
            let still_pending = current
                .as_ref()
                .is_some_and(|(_, set)| set.contains(&ChangeHash::from_bytes(hash)));
            let until = <[u8; 8]>::try_from(v.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            if !still_pending || until <= now_ms {
                batch.remove(k);
                gone += 1;
            }
        }
        self.tree()?.apply_batch(batch)?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    #[test]
    fn held_deposits_survive_a_reopen_until_the_promise_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let (bob, relay) = (Identity::generate().public(), Identity::generate().public());
        let hash = ChangeHash::from_bytes([7; 32]);
        {
            let db =
                crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
            let mut log = DepositLog::open(crate::store::DbHandle::of(&db)).unwrap();
            assert!(log.is_due(&bob, &relay, &hash, 0));
            log.sent(bob, relay, &[hash]);
            assert!(!log.is_due(&bob, &relay, &hash, 0));
            log.settled(&bob, &relay, &[hash]);
            log.held(&bob, &relay, &[hash], 1_000).unwrap();
            db.flush().unwrap();
        }
        let db =
            crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
        let log = DepositLog::open(crate::store::DbHandle::of(&db)).unwrap();
        assert!(!log.is_due(&bob, &relay, &hash, 999));
        // Another relay has not got it.
        assert!(log.is_due(&bob, &Identity::generate().public(), &hash, 999));
        // The relay's promise ended: offer it again.
        assert!(log.is_due(&bob, &relay, &hash, 1_000));
        // Delivered (gone from the outbox): the record is swept.
        assert_eq!(log.sweep(0, |_| Ok(HashSet::new())).unwrap(), 1);
        assert!(log.is_due(&bob, &relay, &hash, 0));
    }
}

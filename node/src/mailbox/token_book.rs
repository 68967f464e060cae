//! Delivery tokens on a peer: the ones it holds (handed over by the peers it
//! sends mail to, or found in their invites) and the ones it has handed out
//! (so it renews them before they expire, and does not mint a fresh one on
//! every connection).
//!
//! Two sled trees in the node's database:
//! - `tokens_held`: recipient (32) ‖ relay (32; zeros for "any relay") → token
//! - `tokens_issued`: holder (32) ‖ relay (32) → expiry (i64 BE)

use meshchat_crdt::PublicKey;

use super::DeliveryToken;
use crate::store::{DbHandle, StoreError};

/// Slots a recipient's tokens may take (relays it names, plus "any").
pub(crate) const MAX_TOKENS_PER_RECIPIENT: usize = 16;
const ANY_RELAY: [u8; 32] = [0; 32];

fn slot(recipient: &PublicKey, relay: Option<&PublicKey>) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(recipient.as_bytes());
    k[32..].copy_from_slice(relay.map_or(&ANY_RELAY, |r| r.as_bytes()));
    k
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        tree: "tokens_held",
        message,
    }
}

pub(crate) struct TokenBook {
    db: DbHandle,
}

impl TokenBook {
    pub(crate) fn open(db: DbHandle) -> Result<Self, StoreError> {
        Ok(Self { db })
    }

    fn held(&self) -> Result<sled::Tree, StoreError> {
        self.db.tree("tokens_held")
    }

    fn issued(&self) -> Result<sled::Tree, StoreError> {
        self.db.tree("tokens_issued")
    }

    fn held_of(&self, recipient: &PublicKey) -> Result<Vec<DeliveryToken>, StoreError> {
        self.held()?
            .scan_prefix(recipient.as_bytes())
            .map(|kv| {
                let (_, v) = kv?;
                ciborium::from_reader(v.as_ref()).map_err(|e| corrupt(e.to_string()))
            })
            .collect()
    }

    /// Keeps `tokens` (already checked: signed by their recipient, not
    /// expired), one per (recipient, relay), the later expiry winning; a
    /// recipient's expired tokens go, and at most
    /// [`MAX_TOKENS_PER_RECIPIENT`] stay (the longest-lived).
    pub(crate) fn keep(&self, tokens: &[DeliveryToken], now_ms: i64) -> Result<(), StoreError> {
        let mut recipients: Vec<PublicKey> = tokens.iter().map(|t| t.recipient).collect();
        recipients.sort_unstable_by_key(|k| *k.as_bytes());
        recipients.dedup();
        for recipient in recipients {
            let mut all = self.held_of(&recipient)?;
            for token in tokens.iter().filter(|t| t.recipient == recipient) {
                match all.iter_mut().find(|t| t.relay == token.relay) {
                    Some(old) if old.expires_at_ms >= token.expires_at_ms => {}
                    Some(old) => *old = token.clone(),
                    None => all.push(token.clone()),
                }
            }
            all.retain(|t| t.expires_at_ms > now_ms);
            all.sort_by_key(|t| std::cmp::Reverse(t.expires_at_ms));
            all.truncate(MAX_TOKENS_PER_RECIPIENT);
            let mut batch = sled::Batch::default();
            for kv in self.held()?.scan_prefix(recipient.as_bytes()) {
                batch.remove(kv?.0);
            }
            for token in &all {
                let mut value = Vec::new();
                ciborium::into_writer(token, &mut value).map_err(|e| corrupt(e.to_string()))?;
                batch.insert(&slot(&recipient, token.relay.as_ref())[..], value);
            }
            self.held()?.apply_batch(batch)?;
        }
        Ok(())
    }

    /// The token to deposit with for `recipient` at `relay`: one bound to
    /// that relay, else one for any of the recipient's relays.
    pub(crate) fn for_deposit(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        now_ms: i64,
    ) -> Option<DeliveryToken> {
        [Some(relay), None].into_iter().find_map(|r| {
            let value = self.held().ok()?.get(slot(recipient, r)).ok().flatten()?;
            ciborium::from_reader::<DeliveryToken, _>(value.as_ref())
                .ok()
                .filter(|t| t.expires_at_ms > now_ms)
        })
    }

    /// When the token `holder` was handed for `relay` expires, if one was.
    pub(crate) fn issued_until(&self, holder: &PublicKey, relay: &PublicKey) -> Option<i64> {
        let value = self
            .issued()
            .ok()?
            .get(slot(holder, Some(relay)))
            .ok()
            .flatten()?;
        <[u8; 8]>::try_from(value.as_ref())
            .ok()
            .map(i64::from_be_bytes)
    }

    /// `holder` acknowledged a token for `relay` valid until `expires_at_ms`.
    pub(crate) fn note_issued(
        &self,
        holder: &PublicKey,
        relay: &PublicKey,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.issued()?
            .insert(slot(holder, Some(relay)), &expires_at_ms.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    #[test]
    fn the_longest_lived_token_per_relay_is_kept_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let db =
            crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
        let book = TokenBook::open(crate::store::DbHandle::of(&db)).unwrap();
        let bob = Identity::generate();
        let relay = Identity::generate().public();
        let other = Identity::generate().public();
        let short = DeliveryToken::issue(&bob, Some(relay), None, 100);
        let long = DeliveryToken::issue(&bob, Some(relay), None, 200);
        let any = DeliveryToken::issue(&bob, None, None, 300);
        book.keep(std::slice::from_ref(&long), 0).unwrap();
        book.keep(&[short], 0).unwrap();
        assert_eq!(book.for_deposit(&bob.public(), &relay, 0), Some(long));
        // No token bound to `other`: the any-relay one serves.
        book.keep(std::slice::from_ref(&any), 0).unwrap();
        assert_eq!(
            book.for_deposit(&bob.public(), &other, 0),
            Some(any.clone())
        );
        // Expired tokens are never offered.
        assert_eq!(book.for_deposit(&bob.public(), &relay, 250), Some(any));
        // A flood of relays keeps the bound.
        let many: Vec<DeliveryToken> = (0..100)
            .map(|i| {
                DeliveryToken::issue(&bob, Some(Identity::generate().public()), None, 1_000 + i)
            })
            .collect();
        book.keep(&many, 0).unwrap();
        assert_eq!(
            book.held()
                .unwrap()
                .scan_prefix(bob.public().as_bytes())
                .count(),
            MAX_TOKENS_PER_RECIPIENT
        );
    }
}

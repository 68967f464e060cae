//! Store-and-forward mail, both ends.
//!
//! The relay's side ([`Mailbox`]): durable per-recipient mailboxes that take
//! mail only with the recipient's delivery token (or from an optional
//! stranger budget), within per-recipient quotas and a total cap, rate-limited
//! per sender and per token, held once per envelope, expired by a time index,
//! with signed custody receipts. A relay stores envelopes as opaque bytes; it
//! never needs to read them. Also the admission policy of the relay's DHT
//! records ([`RecordBook`]).
//!
//! The sender's and recipient's side: the tokens a node hands out and holds
//! (`token_book.rs`, `token_offers.rs`), the deposits a sender has made
//! ([`DepositLog`]), the requests awaiting answers (`pending.rs`) and the
//! fetch chains per relay (`fetches.rs`).
//!
//! The messages of `/meshchat/mailbox/2` are in `wire.rs` and sealed mail
//! in `sealed_mail.rs`; the handlers are `handler.rs` (events of both
//! roles), `server.rs` (the relay's) and `client.rs` (the peer's), with
//! `tokens.rs`, `sealing.rs` and the couriers (`courier.rs`, `couriers.rs`).

mod client;
mod config;
pub(crate) mod courier;
pub(crate) mod couriers;
mod deposits;
pub(crate) mod fetches;
mod handler;
pub(crate) mod pending;
mod rate;
mod receipt;
mod records;
pub(crate) mod sealed_mail;
pub(crate) mod sealing;
mod server;
mod store;
#[cfg(test)]
mod tests;
mod token;
mod token_book;
pub(crate) mod token_offers;
mod tokens;
pub(crate) mod wire;

use std::collections::{HashMap, HashSet};

use meshchat_crdt::{Identity, PublicKey};

pub use config::MailboxConfig;
pub(crate) use deposits::DepositLog;
use rate::RateLimiter;
pub use receipt::{envelope_hash, CustodyReceipt};
pub(crate) use records::{Admission, RecordBook};
pub(crate) use store::{Held, MailboxStore, Stored};
pub use store::{MailItem, MailboxStats, Refusal};
pub use token::{DeliveryToken, TokenError, TOKEN_LIFETIME_MS};

use crate::store::StoreError;

/// Token ids whose signature verified, kept so a busy sender costs one
/// signature check per token, not per deposit.
const MAX_VERIFIED_TOKENS: usize = 10_000;
/// Clients (peers that fetched here or hold a circuit reservation) remembered.
const MAX_CLIENTS: usize = 100_000;

/// A deposit the relay took (durable after the next flush).
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// The relay's signed promise, for the sender.
    pub(crate) receipt: CustodyReceipt,
    /// Whether the envelope was written now (and so must be taken back if
    /// the flush fails) or was already held.
    pub(crate) stored: Stored,
}

/// Who a deposit is admitted as.
enum Admitted {
    Token([u8; 32]),
    Stranger,
}

/// A relay's mailboxes plus its in-memory rate limiters.
pub struct Mailbox {
    relay: Identity,
    config: MailboxConfig,
    store: MailboxStore,
    per_sender: RateLimiter<PublicKey>,
    per_token: RateLimiter<[u8; 32]>,
    strangers: RateLimiter<()>,
    verified: HashSet<[u8; 32]>,
    /// Peers that use this relay (fetched their mail here, or hold a circuit
    /// reservation), with when they were last seen doing so.
    clients: HashMap<PublicKey, i64>,
}

impl Mailbox {
    /// Opens the mailboxes kept in `db`, issuing receipts as `relay`.
    pub(crate) fn open(
        relay: Identity,
        config: MailboxConfig,
        db: crate::store::DbHandle,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            relay,
            per_sender: RateLimiter::new(config.deposits_per_sender_per_minute),
            per_token: RateLimiter::new(config.deposits_per_token_per_minute),
            strangers: RateLimiter::new(config.stranger_deposits_per_minute),
            config,
            store: MailboxStore::open(db)?,
            verified: HashSet::new(),
            clients: HashMap::new(),
        })
    }

    /// The limits this relay runs with.
    pub fn config(&self) -> &MailboxConfig {
        &self.config
    }

    /// Checks the token and the limits, then stores the envelope (or finds
    /// the copy already held). Not yet durable: call [`Mailbox::flush`]
    /// before handing out the receipt. A refused deposit stores nothing.
    pub(crate) fn deposit(
        &mut self,
        sender: PublicKey,
        recipient: PublicKey,
        envelope: Vec<u8>,
        token: Option<&DeliveryToken>,
        now_ms: i64,
    ) -> Result<Accepted, Refusal> {
        self.per_sender.admit(sender, now_ms)?;
        let size = envelope.len() as u64;
        if size > self.config.max_envelope_bytes {
            return Err(Refusal::TooLarge {
                size,
                limit: self.config.max_envelope_bytes,
            });
        }
        let admitted = match self.check_token(token, &sender, &recipient, now_ms) {
            Ok(id) => Admitted::Token(id),
            Err(_) if self.config.stranger_bytes > 0 => Admitted::Stranger,
            Err(error) => return Err(Refusal::Unauthorized(error)),
        };
        match admitted {
            Admitted::Token(id) => self.per_token.admit(id, now_ms)?,
            Admitted::Stranger => self.strangers.admit((), now_ms)?,
        }
        let stranger = matches!(admitted, Admitted::Stranger);
        let stored = self.store.deposit(
            &self.config,
            &recipient,
            &sender,
            envelope,
            stranger,
            now_ms,
        )?;
        let held = stored.held();
        Ok(Accepted {
            receipt: CustodyReceipt::sign(&self.relay, recipient, held.hash, held.expires_at_ms),
            stored,
        })
    }

    /// The token's id if it lets `sender` deposit for `recipient` here now.
    fn check_token(
        &mut self,
        token: Option<&DeliveryToken>,
        sender: &PublicKey,
        recipient: &PublicKey,
        now_ms: i64,
    ) -> Result<[u8; 32], TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        token.check_claims(recipient, &self.relay.public(), sender, now_ms)?;
        let id = token.id();
        if !self.verified.contains(&id) {
            token.verify_signature()?;
            if self.verified.len() >= MAX_VERIFIED_TOKENS {
                self.verified.clear();
            }
            self.verified.insert(id);
        }
        Ok(id)
    }

    /// Takes back a deposit whose flush failed: nothing of it stays stored
    /// or counted.
    pub(crate) fn undo(&self, recipient: &PublicKey, held: &Held) -> Result<(), StoreError> {
        self.store.remove(recipient, &[held.id]).map(|_| ())
    }

    /// Makes every deposit so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Up to `limit` envelopes (and about `max_bytes`) of `owner`'s mailbox
    /// after id `after`, and whether more remain.
    pub fn fetch(
        &self,
        owner: &PublicKey,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MailItem>, bool), StoreError> {
        self.store.fetch(owner, after, limit, max_bytes)
    }

    /// Deletes `owner`'s acknowledged envelopes; returns how many.
    pub fn ack(&self, owner: &PublicKey, ids: &[u64]) -> Result<u64, StoreError> {
        self.store.remove(owner, ids)
    }

    /// Deletes expired envelopes; returns how many.
    pub fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.store.expire(now_ms)
    }

    /// Totals, for metrics.
    pub fn stats(&self) -> MailboxStats {
        self.store.stats()
    }

    /// `peer` uses this relay (it fetched its mail, or reserved a circuit).
    pub(crate) fn note_client(&mut self, peer: PublicKey, now_ms: i64) {
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&peer) {
            // Forget the longest-unseen tenth.
            let mut seen: Vec<i64> = self.clients.values().copied().collect();
            seen.sort_unstable();
            let cutoff = seen[seen.len() / 10];
            self.clients.retain(|_, at| *at > cutoff);
        }
        self.clients.insert(peer, now_ms);
    }

    /// Whether `peer` is a client of this relay: it fetched here or holds a
    /// circuit reservation, or has mail waiting here.
    pub(crate) fn is_client(&self, peer: &PublicKey) -> bool {
        self.clients.contains_key(peer) || self.store.has_mail(peer)
    }
}

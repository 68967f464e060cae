//! The relay's mailbox service: durable per-recipient mailboxes with quotas,
//! a per-sender rate limit, retention, and signed custody receipts. A relay
//! stores envelopes as opaque bytes; it never needs to read them.

mod config;
mod receipt;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use meshchat_crdt::{Identity, PublicKey};

pub use config::MailboxConfig;
pub use receipt::{envelope_hash, CustodyReceipt};
pub(crate) use store::MailboxStore;
pub use store::{MailItem, MailboxStats, Refusal};

use crate::store::StoreError;

const MINUTE_MS: i64 = 60_000;
/// Senders remembered by the rate limiter before old windows are dropped.
const MAX_TRACKED_SENDERS: usize = 100_000;

/// A relay's mailboxes plus the in-memory rate limiter.
pub struct Mailbox {
    relay: Identity,
    config: MailboxConfig,
    store: MailboxStore,
    /// sender → (window start, deposits in window)
    windows: HashMap<PublicKey, (i64, u32)>,
}

impl Mailbox {
    /// Opens the mailboxes kept in `db`, issuing receipts as `relay`.
    pub fn open(relay: Identity, config: MailboxConfig, db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            relay,
            config,
            store: MailboxStore::open(db)?,
            windows: HashMap::new(),
        })
    }

    /// Checks the limits and stores the envelope. Not yet durable: call
    /// [`Mailbox::flush`] before handing out the receipt.
    pub fn deposit(
        &mut self,
        sender: PublicKey,
        recipient: PublicKey,
        envelope: Vec<u8>,
        now_ms: i64,
    ) -> Result<CustodyReceipt, Refusal> {
        self.rate_limit(sender, now_ms)?;
        let item = self
            .store
            .deposit(&self.config, &recipient, &sender, envelope, now_ms)?;
        Ok(CustodyReceipt::issue(
            &self.relay,
            recipient,
            &item.envelope,
            item.expires_at_ms,
        ))
    }

    fn rate_limit(&mut self, sender: PublicKey, now_ms: i64) -> Result<(), Refusal> {
        if self.windows.len() >= MAX_TRACKED_SENDERS {
            self.windows
                .retain(|_, (start, _)| now_ms - *start < MINUTE_MS);
        }
        let window = self.windows.entry(sender).or_insert((now_ms, 0));
        if now_ms - window.0 >= MINUTE_MS {
            *window = (now_ms, 0);
        }
        if window.1 >= self.config.deposits_per_sender_per_minute {
            let retry_after_secs = ((window.0 + MINUTE_MS - now_ms).max(0) as u64).div_ceil(1000);
            return Err(Refusal::RateLimited { retry_after_secs });
        }
        window.1 += 1;
        Ok(())
    }

    /// Makes every deposit so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// A flush of every deposit so far that runs on its own task, so the
    /// relay keeps taking deposits meanwhile (group commit).
    pub(crate) fn flush_task(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        self.store.flush_task()
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
        self.store.ack(owner, ids)
    }

    /// Deletes expired envelopes; returns how many.
    pub fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.store.expire(now_ms)
    }

    /// Totals, for metrics.
    pub fn stats(&self) -> MailboxStats {
        self.store.stats()
    }
}

//! Durable mailboxes in sled: per recipient, envelopes in deposit order.
//!
//! One sled tree, `mail`, written with atomic batches (sled transactions cost
//! ten times more; the relay's actor is the only writer, so reading a counter
//! and writing it back in a batch is safe):
//! - `i ‖ recipient (32) ‖ id (8, big-endian)` → an envelope. Ids come from
//!   sled's monotonic id generator, so "fetch after id N" is a range scan.
//! - `u ‖ recipient (32)` → (messages, bytes) held for the recipient.
//!
//! A deposit is acknowledged only after [`MailboxStore::flush`].

use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::config::MailboxConfig;
use crate::store::StoreError;

/// Why a deposit was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The envelope is larger than the relay accepts.
    #[error("envelope of {size} bytes exceeds the relay's {limit}-byte limit")]
    TooLarge {
        /// Envelope size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The recipient's mailbox is full (messages or bytes).
    #[error("the recipient's mailbox is full; retry later")]
    QuotaExceeded,
    /// The sender deposits too fast.
    #[error("too many deposits; retry in {retry_after_secs} s")]
    RateLimited {
        /// When to retry.
        retry_after_secs: u64,
    },
    /// The relay could not store it (disk full, I/O error).
    #[error("the relay cannot store messages right now; retry later")]
    Unavailable,
}

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItem {
    /// Position in the mailbox (fetch after it, acknowledge it).
    pub id: u64,
    /// Who deposited it (Noise-authenticated).
    pub sender: PublicKey,
    /// When the relay stored it (relay's clock, ms).
    pub deposited_at_ms: i64,
    /// When the relay will delete it unless fetched and acknowledged.
    pub expires_at_ms: i64,
    /// The opaque envelope.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
}

/// Totals, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxStats {
    /// Recipients with at least one envelope.
    pub mailboxes: u64,
    /// Envelopes held.
    pub messages: u64,
    /// Envelope bytes held.
    pub bytes: u64,
}

pub(crate) struct MailboxStore {
    db: sled::Db,
    mail: sled::Tree,
}

const ITEM: u8 = b'i';
const USAGE: u8 = b'u';

fn key(recipient: &PublicKey, id: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = ITEM;
    k[1..33].copy_from_slice(recipient.as_bytes());
    k[33..].copy_from_slice(&id.to_be_bytes());
    k
}

fn usage_key(recipient: &PublicKey) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = USAGE;
    k[1..].copy_from_slice(recipient.as_bytes());
    k
}

fn usage_of(bytes: Option<sled::IVec>) -> (u64, u64) {
    bytes
        .and_then(|v| <[u8; 16]>::try_from(v.as_ref()).ok())
        .map(|b| {
            let (m, s) = b.split_at(8);
            (
                u64::from_be_bytes(m.try_into().unwrap_or_default()),
                u64::from_be_bytes(s.try_into().unwrap_or_default()),
            )
        })
        .unwrap_or((0, 0))
}

fn usage_bytes(messages: u64, bytes: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&messages.to_be_bytes());
    out[8..].copy_from_slice(&bytes.to_be_bytes());
    out
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "mailbox",
        message: message.into(),
    }
}

impl MailboxStore {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            mail: db.open_tree("mail")?,
            db: db.clone(),
        })
    }

    /// Stores an envelope if the limits allow. Not durable until [`Self::flush`].
    pub(crate) fn deposit(
        &self,
        config: &MailboxConfig,
        recipient: &PublicKey,
        sender: &PublicKey,
        envelope: Vec<u8>,
        now_ms: i64,
    ) -> Result<MailItem, Refusal> {
        let size = envelope.len() as u64;
        if size > config.max_envelope_bytes {
            return Err(Refusal::TooLarge {
                size,
                limit: config.max_envelope_bytes,
            });
        }
        let (messages, bytes) = usage_of(
            self.mail
                .get(usage_key(recipient))
                .map_err(|_| Refusal::Unavailable)?,
        );
        if messages + 1 > config.max_messages_per_recipient
            || bytes + size > config.max_bytes_per_recipient
        {
            return Err(Refusal::QuotaExceeded);
        }
        let id = self.db.generate_id().map_err(|_| Refusal::Unavailable)?;
        let item = MailItem {
            id,
            sender: *sender,
            deposited_at_ms: now_ms,
            expires_at_ms: now_ms
                .saturating_add((config.retention_secs as i64).saturating_mul(1000)),
            envelope,
        };
        let mut encoded = Vec::new();
        ciborium::into_writer(&item, &mut encoded).map_err(|_| Refusal::Unavailable)?;
        // The envelope and the usage counter change together or not at all.
        let mut batch = sled::Batch::default();
        batch.insert(&key(recipient, id)[..], encoded);
        batch.insert(
            &usage_key(recipient)[..],
            &usage_bytes(messages + 1, bytes + size)[..],
        );
        self.mail
            .apply_batch(batch)
            .map_err(|_| Refusal::Unavailable)?;
        Ok(item)
    }

    /// Makes deposits durable; call before acknowledging them.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        crate::store::flush_db(&self.db).await
    }

    /// A flush that can run on its own task (group commit).
    pub(crate) fn flush_task(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let db = self.db.clone();
        async move { crate::store::flush_db(&db).await }
    }

    /// Up to `limit` envelopes after `after` (exclusive), oldest first, and
    /// whether more remain.
    pub(crate) fn fetch(
        &self,
        recipient: &PublicKey,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MailItem>, bool), StoreError> {
        let start = key(recipient, after.map_or(0, |a| a.saturating_add(1)));
        let end = key(recipient, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in self.mail.range(start..=end) {
            let (_, v) = kv?;
            let item: MailItem =
                ciborium::from_reader(v.as_ref()).map_err(|e| corrupt(e.to_string()))?;
            bytes += item.envelope.len();
            if out.len() >= limit || (bytes > max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            out.push(item);
        }
        Ok((out, false))
    }

    /// Deletes acknowledged envelopes; returns how many were removed.
    pub(crate) fn ack(&self, recipient: &PublicKey, ids: &[u64]) -> Result<u64, StoreError> {
        let (mut messages, mut bytes) = usage_of(self.mail.get(usage_key(recipient))?);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for id in ids {
            let item_key = key(recipient, *id);
            let Some(v) = self.mail.get(item_key)? else {
                continue;
            };
            batch.remove(&item_key[..]);
            removed += 1;
            // An undecodable record still frees its slot.
            let size = ciborium::from_reader::<MailItem, _>(v.as_ref())
                .map_or(0, |item| item.envelope.len() as u64);
            messages = messages.saturating_sub(1);
            bytes = bytes.saturating_sub(size);
        }
        if removed == 0 {
            return Ok(0);
        }
        if messages == 0 {
            batch.remove(&usage_key(recipient)[..]);
        } else {
            batch.insert(&usage_key(recipient)[..], &usage_bytes(messages, bytes)[..]);
        }
        self.mail.apply_batch(batch)?;
        Ok(removed)
    }

    /// Deletes expired envelopes; returns how many.
    pub(crate) fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut expired = Vec::new();
        for kv in self.mail.scan_prefix([ITEM]) {
            let (k, v) = kv?;
            let item: MailItem =
                ciborium::from_reader(v.as_ref()).map_err(|e| corrupt(e.to_string()))?;
            if item.expires_at_ms <= now_ms {
                let recipient: [u8; 32] = k[1..33].try_into().map_err(|_| corrupt("bad key"))?;
                expired.push((PublicKey::from_bytes(recipient), item.id));
            }
        }
        let mut removed = 0;
        for (recipient, id) in expired {
            removed += self.ack(&recipient, &[id])?;
        }
        Ok(removed)
    }

    pub(crate) fn stats(&self) -> MailboxStats {
        let mut stats = MailboxStats::default();
        for (_, v) in self.mail.scan_prefix([USAGE]).flatten() {
            let (m, b) = usage_of(Some(v));
            stats.mailboxes += 1;
            stats.messages += m;
            stats.bytes += b;
        }
        stats
    }
}

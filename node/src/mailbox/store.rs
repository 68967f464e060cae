//! Durable mailboxes in sled: per recipient, envelopes in deposit order,
//! held once per envelope hash, expired through a time-ordered index.
//!
//! One sled tree, `mail`, written with atomic batches (sled transactions cost
//! ten times more; the relay's actor is the only writer, so reading a counter
//! and writing it back in a batch is safe):
//! - `i ‖ recipient (32) ‖ id (8 BE)` → item header (82 bytes) ‖ envelope.
//!   Ids come from sled's monotonic id generator, so "fetch after id N" is a
//!   range scan.
//! - `h ‖ recipient (32) ‖ envelope hash (32)` → id ‖ expiry: the copy held,
//!   so a repeated deposit is answered from it instead of stored again.
//! - `x ‖ expiry (8, order-preserving) ‖ recipient (32) ‖ id (8)` → nothing:
//!   expiry reads only the entries that are due, never an envelope.
//! - `u ‖ recipient (32)` → (messages, bytes, bytes from strangers) held for
//!   the recipient. The totals over all recipients are kept in memory, summed
//!   from these at open (no key every deposit would have to rewrite).
//! - `v` → the layout version (older relays stored CBOR items with no
//!   indexes; [`MailboxStore::open`] converts them once).
//!
//! A deposit is acknowledged only after [`MailboxStore::flush`]; one whose
//! flush failed is taken back with [`MailboxStore::remove`].

use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::{config::MailboxConfig, receipt::envelope_hash, token::TokenError};
use crate::store::{DbHandle, StoreError};

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
    /// The deposit carried no valid delivery token for this recipient and
    /// relay (and the relay has no room for strangers).
    #[error("not authorised by the recipient: {0}")]
    Unauthorized(TokenError),
    /// The relay holds as much mail as its operator allows, for everyone.
    #[error(
        "the relay's storage for mail is full ({limit} bytes); retry later or use another relay"
    )]
    RelayFull {
        /// The relay's total limit, in bytes.
        limit: u64,
    },
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

/// The copy of an envelope a relay holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) expires_at_ms: i64,
}

/// What a deposit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Written now (durable after the next flush).
    Fresh(Held),
    /// The same envelope was already held for the recipient: nothing written.
    Duplicate(Held),
}

impl Stored {
    pub(crate) fn held(&self) -> Held {
        match self {
            Self::Fresh(h) | Self::Duplicate(h) => *h,
        }
    }
}

pub(crate) struct MailboxStore {
    db: DbHandle,
    /// Sums of every recipient's usage, updated with each batch written.
    totals: std::sync::Mutex<Totals>,
}

const ITEM: u8 = b'i';
const HASH: u8 = b'h';
const EXPIRY: u8 = b'x';
const USAGE: u8 = b'u';
const LAYOUT_KEY: &[u8] = b"v";
const LAYOUT: &[u8] = &[2];

/// First byte of an item in this layout (a legacy CBOR item starts with a
/// map header, 0xa5).
const ITEM_FORMAT: u8 = 2;
const HEADER_LEN: usize = 82;
const FLAG_STRANGER: u8 = 1;
/// Expired items removed per sweep, so one sweep never stalls the relay.
const EXPIRE_BATCH: usize = 10_000;

fn item_key(recipient: &PublicKey, id: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = ITEM;
    k[1..33].copy_from_slice(recipient.as_bytes());
    k[33..].copy_from_slice(&id.to_be_bytes());
    k
}

fn hash_key(recipient: &PublicKey, hash: &[u8; 32]) -> [u8; 65] {
    let mut k = [0u8; 65];
    k[0] = HASH;
    k[1..33].copy_from_slice(recipient.as_bytes());
    k[33..].copy_from_slice(hash);
    k
}

/// Order-preserving bytes of a signed time.
fn time_bytes(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn expiry_key(expires_at_ms: i64, recipient: &PublicKey, id: u64) -> [u8; 49] {
    let mut k = [0u8; 49];
    k[0] = EXPIRY;
    k[1..9].copy_from_slice(&time_bytes(expires_at_ms));
    k[9..41].copy_from_slice(recipient.as_bytes());
    k[41..].copy_from_slice(&id.to_be_bytes());
    k
}

fn usage_key(recipient: &PublicKey) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = USAGE;
    k[1..].copy_from_slice(recipient.as_bytes());
    k
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

fn key32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.get(..32).and_then(|b| b.try_into().ok())
}

/// What one recipient's mailbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    messages: u64,
    bytes: u64,
    stranger_bytes: u64,
}

impl Usage {
    fn decode(bytes: Option<&[u8]>) -> Self {
        bytes.map_or_else(Self::default, |b| Self {
            messages: u64_at(b, 0),
            bytes: u64_at(b, 8),
            stranger_bytes: u64_at(b, 16),
        })
    }

    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.messages.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..].copy_from_slice(&self.stranger_bytes.to_be_bytes());
        out
    }

    /// One envelope of `size` bytes more (`sign` 1) or less (`sign` -1).
    fn add(&mut self, size: u64, stranger: bool, sign: i8) {
        let apply = |v: &mut u64, by: u64| {
            *v = if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            };
        };
        apply(&mut self.messages, 1);
        apply(&mut self.bytes, size);
        if stranger {
            apply(&mut self.stranger_bytes, size);
        }
    }
}

/// Totals across every mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    usage: Usage,
    mailboxes: u64,
}

/// The fixed part of a stored item, readable without touching the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    stranger: bool,
    deposited_at_ms: i64,
    expires_at_ms: i64,
    sender: PublicKey,
    hash: [u8; 32],
}

impl Header {
    fn encode(&self, envelope: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + envelope.len());
        out.push(ITEM_FORMAT);
        out.push(if self.stranger { FLAG_STRANGER } else { 0 });
        out.extend_from_slice(&self.deposited_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(self.sender.as_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(envelope);
        out
    }

    /// The header and the envelope's length, or `None` if not this layout.
    fn decode(value: &[u8]) -> Option<(Self, usize)> {
        if value.len() < HEADER_LEN || value[0] != ITEM_FORMAT {
            return None;
        }
        let header = Self {
            stranger: value[1] & FLAG_STRANGER != 0,
            deposited_at_ms: u64_at(value, 2) as i64,
            expires_at_ms: u64_at(value, 10) as i64,
            sender: PublicKey::from_bytes(key32(&value[18..])?),
            hash: key32(&value[50..])?,
        };
        Some((header, value.len() - HEADER_LEN))
    }
}

/// Any storage error, as the sender sees it.
fn unavailable<E>(_: E) -> Refusal {
    Refusal::Unavailable
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "mailbox",
        message: message.into(),
    }
}

impl MailboxStore {
    fn mail(&self) -> Result<sled::Tree, StoreError> {
        self.db.tree("mail")
    }

    fn lock_totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn open(db: DbHandle) -> Result<Self, StoreError> {
        let store = Self {
            db,
            totals: Default::default(),
        };
        if store.mail()?.get(LAYOUT_KEY)?.as_deref() != Some(LAYOUT) {
            store.upgrade_layout()?;
        }
        let mut totals = Totals::default();
        for kv in store.mail()?.scan_prefix([USAGE]) {
            let usage = Usage::decode(Some(&kv?.1));
            totals.usage.messages += usage.messages;
            totals.usage.bytes += usage.bytes;
            totals.usage.stranger_bytes += usage.stranger_bytes;
            totals.mailboxes += 1;
        }
        *store.lock_totals() = totals;
        Ok(store)
    }

    /// Stores an envelope if the limits allow, or finds the copy already
    /// held. Not durable until [`Self::flush`].
    pub(crate) fn deposit(
        &self,
        config: &MailboxConfig,
        recipient: &PublicKey,
        sender: &PublicKey,
        envelope: Vec<u8>,
        stranger: bool,
        now_ms: i64,
    ) -> Result<Stored, Refusal> {
        let size = envelope.len() as u64;
        if size > config.max_envelope_bytes {
            return Err(Refusal::TooLarge {
                size,
                limit: config.max_envelope_bytes,
            });
        }
        let hash = envelope_hash(&envelope);
        if let Some(held) = self.held(recipient, &hash).map_err(unavailable)? {
            return Ok(Stored::Duplicate(held));
        }
        let held_before = self
            .mail()
            .map_err(unavailable)?
            .get(usage_key(recipient))
            .map_err(unavailable)?;
        let mut usage = Usage::decode(held_before.as_deref());
        let mut totals = *self.lock_totals();
        let (max_messages, max_bytes) = if stranger {
            // Strangers never take more than a quarter of anyone's mailbox.
            (
                config.max_messages_per_recipient / 4,
                config.max_bytes_per_recipient / 4,
            )
        } else {
            (
                config.max_messages_per_recipient,
                config.max_bytes_per_recipient,
            )
        };
        if usage.messages + 1 > max_messages || usage.bytes + size > max_bytes {
            return Err(Refusal::QuotaExceeded);
        }
        if stranger && totals.usage.stranger_bytes + size > config.stranger_bytes {
            return Err(Refusal::QuotaExceeded);
        }
        if totals.usage.bytes + size > config.max_total_bytes {
            return Err(Refusal::RelayFull {
                limit: config.max_total_bytes,
            });
        }
        let id = self
            .db
            .db()
            .map_err(unavailable)?
            .generate_id()
            .map_err(unavailable)?;
        let expires_at_ms =
            now_ms.saturating_add((config.retention_secs as i64).saturating_mul(1000));
        let header = Header {
            stranger,
            deposited_at_ms: now_ms,
            expires_at_ms,
            sender: *sender,
            hash,
        };
        usage.add(size, stranger, 1);
        totals.usage.add(size, stranger, 1);
        if held_before.is_none() {
            totals.mailboxes += 1;
        }
        // The envelope, its indexes and the counters change together or not at all.
        let mut batch = sled::Batch::default();
        batch.insert(&item_key(recipient, id)[..], header.encode(&envelope));
        batch.insert(
            &hash_key(recipient, &hash)[..],
            &held_value(id, expires_at_ms)[..],
        );
        batch.insert(
            &expiry_key(expires_at_ms, recipient, id)[..],
            Vec::<u8>::new(),
        );
        batch.insert(&usage_key(recipient)[..], &usage.encode()[..]);
        self.mail()
            .map_err(unavailable)?
            .apply_batch(batch)
            .map_err(unavailable)?;
        *self.lock_totals() = totals;
        Ok(Stored::Fresh(Held {
            id,
            hash,
            expires_at_ms,
        }))
    }

    /// The copy of the envelope with `hash` held for `recipient`, if any.
    fn held(&self, recipient: &PublicKey, hash: &[u8; 32]) -> Result<Option<Held>, StoreError> {
        let Some(value) = self.mail()?.get(hash_key(recipient, hash))? else {
            return Ok(None);
        };
        let id = u64_at(&value, 0);
        // An index entry outliving its item (a damaged record) is no copy.
        if !self.mail()?.contains_key(item_key(recipient, id))? {
            return Ok(None);
        }
        Ok(Some(Held {
            id,
            hash: *hash,
            expires_at_ms: u64_at(&value, 8) as i64,
        }))
    }

    /// Whether `recipient` has mail here.
    pub(crate) fn has_mail(&self, recipient: &PublicKey) -> bool {
        self.mail()
            .is_ok_and(|mail| matches!(mail.contains_key(usage_key(recipient)), Ok(true)))
    }

    /// Makes deposits durable; call before acknowledging them.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().await
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
        let start = item_key(recipient, after.map_or(0, |a| a.saturating_add(1)));
        let end = item_key(recipient, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in self.mail()?.range(start..=end) {
            let (k, v) = kv?;
            let (header, size) = Header::decode(&v).ok_or_else(|| corrupt("bad item header"))?;
            bytes += size;
            if out.len() >= limit || (bytes > max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            out.push(MailItem {
                id: u64_at(&k, 33),
                sender: header.sender,
                deposited_at_ms: header.deposited_at_ms,
                expires_at_ms: header.expires_at_ms,
                envelope: v[HEADER_LEN..].to_vec(),
            });
        }
        Ok((out, false))
    }

    /// Deletes envelopes (acknowledged, expired, or a deposit whose flush
    /// failed) with their indexes and counters; returns how many were removed.
    pub(crate) fn remove(&self, recipient: &PublicKey, ids: &[u64]) -> Result<u64, StoreError> {
        let mut usage = Usage::decode(self.mail()?.get(usage_key(recipient))?.as_deref());
        let mut totals = *self.lock_totals();
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for id in ids {
            let key = item_key(recipient, *id);
            let Some(value) = self.mail()?.get(key)? else {
                continue;
            };
            batch.remove(&key[..]);
            removed += 1;
            // A damaged record still frees its slot.
            let (size, stranger) = match Header::decode(&value) {
                Some((header, size)) => {
                    batch.remove(&hash_key(recipient, &header.hash)[..]);
                    batch.remove(&expiry_key(header.expires_at_ms, recipient, *id)[..]);
                    (size as u64, header.stranger)
                }
                None => (value.len() as u64, false),
            };
            usage.add(size, stranger, -1);
            totals.usage.add(size, stranger, -1);
        }
        if removed == 0 {
            return Ok(0);
        }
        if usage.messages == 0 {
            batch.remove(&usage_key(recipient)[..]);
            totals.mailboxes = totals.mailboxes.saturating_sub(1);
        } else {
            batch.insert(&usage_key(recipient)[..], &usage.encode()[..]);
        }
        self.mail()?.apply_batch(batch)?;
        *self.lock_totals() = totals;
        Ok(removed)
    }

    /// Deletes envelopes whose retention ended by `now_ms` (up to a batch per
    /// call): reads the expiry index only, never an envelope it keeps.
    pub(crate) fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut start = [0u8; 9];
        start[0] = EXPIRY;
        // Everything whose expiry is at or before `now_ms`.
        let mut end = [0u8; 9];
        end[0] = EXPIRY;
        end[1..].copy_from_slice(&time_bytes(now_ms.saturating_add(1)));
        let mut due: Vec<(sled::IVec, PublicKey, u64)> = Vec::new();
        for kv in self.mail()?.range(start..end).take(EXPIRE_BATCH) {
            let (k, _) = kv?;
            let recipient = k
                .get(9..41)
                .and_then(key32)
                .filter(|_| k.len() == 49)
                .ok_or_else(|| corrupt("bad expiry key"))?;
            let id = u64_at(&k, 41);
            due.push((k, PublicKey::from_bytes(recipient), id));
        }
        let mut removed = 0;
        for (key, recipient, id) in due {
            match self.remove(&recipient, &[id])? {
                // An index entry without its item: drop the entry alone.
                0 => {
                    self.mail()?.remove(key)?;
                }
                n => removed += n,
            }
        }
        Ok(removed)
    }

    /// The tree itself, for tests that damage records.
    #[cfg(test)]
    pub(crate) fn tree(&self) -> sled::Tree {
        self.mail().expect("the database is open")
    }

    pub(crate) fn stats(&self) -> MailboxStats {
        let totals = *self.lock_totals();
        MailboxStats {
            mailboxes: totals.mailboxes,
            messages: totals.usage.messages,
            bytes: totals.usage.bytes,
        }
    }

    /// Converts items an older relay stored (CBOR, no indexes) and
    /// recomputes every recipient's usage from the items. Safe to rerun if interrupted.
    fn upgrade_layout(&self) -> Result<(), StoreError> {
        for kv in self.mail()?.scan_prefix([ITEM]) {
            let (k, v) = kv?;
            if Header::decode(&v).is_some() {
                continue;
            }
            let recipient =
                PublicKey::from_bytes(key32(&k[1..]).ok_or_else(|| corrupt("bad key"))?);
            let Ok(legacy) = ciborium::from_reader::<MailItem, _>(v.as_ref()) else {
                tracing::warn!("dropping an undecodable mailbox item");
                self.mail()?.remove(k)?;
                continue;
            };
            let header = Header {
                stranger: false,
                deposited_at_ms: legacy.deposited_at_ms,
                expires_at_ms: legacy.expires_at_ms,
                sender: legacy.sender,
                hash: envelope_hash(&legacy.envelope),
            };
            let id = u64_at(&k, 33);
            let mut batch = sled::Batch::default();
            batch.insert(k.clone(), header.encode(&legacy.envelope));
            batch.insert(
                &hash_key(&recipient, &header.hash)[..],
                &held_value(id, header.expires_at_ms)[..],
            );
            batch.insert(
                &expiry_key(header.expires_at_ms, &recipient, id)[..],
                Vec::<u8>::new(),
            );
            self.mail()?.apply_batch(batch)?;
        }
        let mut usage: Vec<(PublicKey, Usage)> = Vec::new();
        for kv in self.mail()?.scan_prefix([ITEM]) {
            let (k, v) = kv?;
            let Some((header, size)) = Header::decode(&v) else {
                continue;
            };
            let recipient =
                PublicKey::from_bytes(key32(&k[1..]).ok_or_else(|| corrupt("bad key"))?);
            if usage.last().is_none_or(|(r, _)| *r != recipient) {
                usage.push((recipient, Usage::default()));
            }
            if let Some((_, u)) = usage.last_mut() {
                u.add(size as u64, header.stranger, 1);
            }
        }
        let mut batch = sled::Batch::default();
        for kv in self.mail()?.scan_prefix([USAGE]) {
            batch.remove(kv?.0);
        }
        for (recipient, u) in usage {
            batch.insert(&usage_key(&recipient)[..], &u.encode()[..]);
        }
        batch.insert(LAYOUT_KEY, LAYOUT);
        self.mail()?.apply_batch(batch)?;
        Ok(())
    }
}

fn held_value(id: u64, expires_at_ms: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&id.to_be_bytes());
    out[8..].copy_from_slice(&expires_at_ms.to_be_bytes());
    out
}

//! Mailbox limits a relay operator sets (in `relay.toml`).

use serde::{Deserialize, Serialize};

/// Limits of a relay's mailbox service. Every refusal is an explicit error to
/// the sender, which keeps the message pending and retries later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// How long a deposited envelope is kept, in seconds (default 30 days).
    pub retention_secs: u64,
    /// Envelopes held per recipient.
    pub max_messages_per_recipient: u64,
    /// Bytes held per recipient.
    pub max_bytes_per_recipient: u64,
    /// Largest envelope accepted, in bytes.
    pub max_envelope_bytes: u64,
    /// Deposits accepted per sender per minute.
    pub deposits_per_sender_per_minute: u32,
    /// Bytes of media (blobs) held for offline peers, in total.
    pub blob_cache_bytes: u64,
    /// How long a cached blob is kept, in seconds (default 7 days).
    pub blob_retention_secs: u64,
    /// Envelope bytes held across all mailboxes; a deposit beyond it is
    /// refused with [`Refusal::RelayFull`](super::Refusal::RelayFull).
    pub max_total_bytes: u64,
    /// Deposits accepted per delivery token per minute. Each contact of a
    /// recipient holds its own token, so this is a per-contact rate that a
    /// sender cannot escape by changing its PeerId.
    pub deposits_per_token_per_minute: u32,
    /// Bytes of mail from strangers (deposits without a valid token) held
    /// in total; 0 (the default) refuses strangers. Stranger mail also never
    /// takes more than a quarter of a recipient's quota.
    pub stranger_bytes: u64,
    /// Deposits accepted from all strangers together per minute.
    pub stranger_deposits_per_minute: u32,
    /// Signed profile records this node keeps for the DHT. When full, the
    /// least recently refreshed record of a peer that is not a client of
    /// this relay makes room.
    pub dht_max_records: u64,
    /// DHT records accepted from one peer per minute.
    pub dht_puts_per_source_per_minute: u32,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            retention_secs: 30 * 24 * 3600,
            max_messages_per_recipient: 10_000,
            max_bytes_per_recipient: 64 * 1024 * 1024,
            max_envelope_bytes: 1024 * 1024,
            deposits_per_sender_per_minute: 600,
            blob_cache_bytes: 4 * 1024 * 1024 * 1024,
            blob_retention_secs: 7 * 24 * 3600,
            max_total_bytes: 8 * 1024 * 1024 * 1024,
            deposits_per_token_per_minute: 120,
            stranger_bytes: 0,
            stranger_deposits_per_minute: 60,
            dht_max_records: 100_000,
            dht_puts_per_source_per_minute: 120,
        }
    }
}

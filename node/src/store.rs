//! Durable state in sled: chats, signed changes, the outbox, delivery states
//! and contacts. Writes are visible at once and durable after [`Store::flush`];
//! nothing is acknowledged to anyone before that flush.

use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{
    ChangeHash, ChatId, ChatKind, MessageId, PublicKey, SegmentIndex, SignedChange,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{presence::LastSeenPrivacy, protocol::SignedProfile};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an error (I/O, full disk, corruption).
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// Decoder message.
        message: String,
    },
}

/// Where a message stands, as its author sees it (per recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored locally, not yet acknowledged by anyone.
    Pending,
    /// A relay or the recipient holds it.
    Sent,
    /// The recipient's device stored it durably.
    Delivered,
    /// The recipient displayed it.
    Read,
}

/// A contact: someone the user added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their PeerId.
    pub peer: PeerId,
    /// Name the user gave them.
    pub name: Option<String>,
    /// Addresses to reach them at, given by the user or learned from them.
    pub addrs: Vec<Multiaddr>,
    /// Relays holding their mail while they are offline (each ends in `/p2p/<RELAY>`).
    #[serde(default)]
    pub relays: Vec<Multiaddr>,
    /// Blocked: nothing from them is shown and nothing is sent to them.
    #[serde(default)]
    pub blocked: bool,
}

/// A chat this node takes part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChatRecord {
    pub(crate) kind: ChatKind,
    pub(crate) created_at_ms: i64,
}

/// A change waiting for a peer's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutboxEntry {
    pub(crate) chat: ChatId,
    pub(crate) segment: SegmentIndex,
    pub(crate) hash: ChangeHash,
    pub(crate) message: Option<MessageId>,
}

pub(crate) struct Store {
    db: sled::Db,
    chats: sled::Tree,
    changes: sled::Tree,
    outbox: sled::Tree,
    delivery: sled::Tree,
    contacts: sled::Tree,
    reads: sled::Tree,
    custody: sled::Tree,
    receipts: sled::Tree,
    profiles: sled::Tree,
    last_seen: sled::Tree,
    settings: sled::Tree,
}

/// Flushes `db` on tokio's blocking pool. Not `sled::Db::flush_async`: with
/// many databases in one process its shared thread pool can deadlock
/// (spacejam/sled#1241; seen with 20 nodes in one process).
pub(crate) async fn flush_db(db: &sled::Db) -> Result<(), StoreError> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(result) => result.map(|_| ()).map_err(StoreError::from),
        Err(e) => Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(e)))),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

fn change_key(chat: &ChatId, segment: SegmentIndex, hash: &ChangeHash) -> Vec<u8> {
    let mut key = Vec::with_capacity(68);
    key.extend_from_slice(chat.as_bytes());
    key.extend_from_slice(&segment.to_be_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn outbox_key(peer: &PublicKey, hash: &ChangeHash) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(peer.as_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn delivery_key(chat: &ChatId, message: &MessageId, peer: &PublicKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(80);
    key.extend_from_slice(chat.as_bytes());
    key.extend_from_slice(message.as_bytes());
    key.extend_from_slice(peer.as_bytes());
    key
}

impl Store {
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, None)
    }

    /// Opens the database with a page cache of `cache_bytes` (sled's default if `None`).
    pub(crate) fn open_with_cache(
        path: &Path,
        cache_bytes: Option<u64>,
    ) -> Result<Self, StoreError> {
        let mut config = sled::Config::new().path(path);
        if let Some(bytes) = cache_bytes {
            config = config.cache_capacity(bytes);
        }
        let db = config.open()?;
        Ok(Self {
            chats: db.open_tree("chats")?,
            changes: db.open_tree("changes")?,
            outbox: db.open_tree("outbox")?,
            delivery: db.open_tree("delivery")?,
            contacts: db.open_tree("contacts")?,
            reads: db.open_tree("reads")?,
            custody: db.open_tree("custody")?,
            receipts: db.open_tree("receipts")?,
            profiles: db.open_tree("profiles")?,
            last_seen: db.open_tree("last_seen")?,
            settings: db.open_tree("settings")?,
            db,
        })
    }

    /// The database, for services that keep their own trees in it.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes every write so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        flush_db(&self.db).await
    }

    pub(crate) fn put_chat(&self, id: &ChatId, record: &ChatRecord) -> Result<(), StoreError> {
        self.chats.insert(id.as_bytes(), encode(record))?;
        Ok(())
    }

    pub(crate) fn chat(&self, id: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
        self.chats
            .get(id.as_bytes())?
            .map(|v| decode("chats", &v))
            .transpose()
    }

    pub(crate) fn chats(&self) -> Result<Vec<(ChatId, ChatRecord)>, StoreError> {
        self.chats
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id: [u8; 32] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "chats",
                    message: "key is not a chat id".into(),
                })?;
                Ok((ChatId::from_bytes(id), decode("chats", &v)?))
            })
            .collect()
    }

    pub(crate) fn put_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a SignedChange, ChangeHash)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (change, hash) in changes {
            let key = change_key(&change.chat, change.segment, &hash);
            batch.insert(key, encode(change));
        }
        self.changes.apply_batch(batch)?;
        Ok(())
    }

    /// Every stored change of `chat`. A record that does not decode is
    /// dropped (and logged): one bad record never stops a chat loading.
    pub(crate) fn changes_of(&self, chat: &ChatId) -> Result<Vec<SignedChange>, StoreError> {
        let mut out = Vec::new();
        for kv in self.changes.scan_prefix(chat.as_bytes()) {
            let (key, value) = kv?;
            match decode("changes", &value) {
                Ok(change) => out.push(change),
                Err(error) => {
                    tracing::warn!(%chat, %error, "dropping a stored change that does not decode");
                    self.changes.remove(key)?;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn change(
        &self,
        chat: &ChatId,
        segment: SegmentIndex,
        hash: &ChangeHash,
    ) -> Result<Option<SignedChange>, StoreError> {
        self.changes
            .get(change_key(chat, segment, hash))?
            .map(|v| decode("changes", &v))
            .transpose()
    }

    /// Removes a change wherever it is stored in `chat` (rare: a change held
    /// for judgement that turned out invalid).
    pub(crate) fn remove_change(&self, chat: &ChatId, hash: &ChangeHash) -> Result<(), StoreError> {
        for kv in self.changes.scan_prefix(chat.as_bytes()) {
            let (key, _) = kv?;
            if key.ends_with(hash.as_bytes()) {
                self.changes.remove(key)?;
            }
        }
        Ok(())
    }

    pub(crate) fn outbox_add(
        &self,
        peer: &PublicKey,
        entry: &OutboxEntry,
    ) -> Result<(), StoreError> {
        self.outbox
            .insert(outbox_key(peer, &entry.hash), encode(entry))?;
        Ok(())
    }

    pub(crate) fn outbox_for(
        &self,
        peer: &PublicKey,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .scan_prefix(peer.as_bytes())
            .take(limit)
            .map(|kv| decode("outbox", &kv?.1))
            .collect()
    }

    /// Removes the entry; returns it if it was there.
    pub(crate) fn outbox_remove(
        &self,
        peer: &PublicKey,
        hash: &ChangeHash,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.outbox
            .remove(outbox_key(peer, hash))?
            .map(|v| decode("outbox", &v))
            .transpose()
    }

    pub(crate) fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Peers with at least one undelivered change.
    pub(crate) fn outbox_peers(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut peers: Vec<PublicKey> = Vec::new();
        for kv in self.outbox.iter() {
            let (k, _) = kv?;
            if let Ok(bytes) = <[u8; 32]>::try_from(&k[..32.min(k.len())]) {
                let key = PublicKey::from_bytes(bytes);
                if peers.last() != Some(&key) {
                    peers.push(key);
                }
            }
        }
        Ok(peers)
    }

    /// Sets a recipient's state for a message; states only move forward
    /// (a late "delivered" never hides "read"). Returns whether it changed.
    pub(crate) fn set_delivery(
        &self,
        chat: &ChatId,
        message: &MessageId,
        peer: &PublicKey,
        state: DeliveryState,
    ) -> Result<bool, StoreError> {
        let key = delivery_key(chat, message, peer);
        if let Some(old) = self.delivery.get(&key)? {
            let old: DeliveryState = decode("delivery", &old)?;
            if old >= state {
                return Ok(false);
            }
        }
        self.delivery.insert(key, encode(&state))?;
        Ok(true)
    }

    /// Queues a read receipt for `author` (sent when connected).
    pub(crate) fn queue_receipt(
        &self,
        author: &PublicKey,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<(), StoreError> {
        let mut key = author.as_bytes().to_vec();
        key.extend_from_slice(chat.as_bytes());
        key.extend_from_slice(message.as_bytes());
        self.receipts.insert(key, &[])?;
        Ok(())
    }

    /// Read receipts waiting for `author`, per chat.
    pub(crate) fn receipts_for(
        &self,
        author: &PublicKey,
    ) -> Result<Vec<(ChatId, MessageId)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.receipts.scan_prefix(author.as_bytes()) {
            let (k, _) = kv?;
            let (Ok(chat), Ok(message)) = (
                <[u8; 32]>::try_from(&k[32..64.min(k.len())]),
                <[u8; 16]>::try_from(&k[64.min(k.len())..]),
            ) else {
                continue;
            };
            out.push((ChatId::from_bytes(chat), MessageId::from_bytes(message)));
        }
        Ok(out)
    }

    /// Read receipts the author acknowledged.
    pub(crate) fn receipts_sent(
        &self,
        author: &PublicKey,
        sent: &[(ChatId, MessageId)],
    ) -> Result<(), StoreError> {
        for (chat, message) in sent {
            let mut key = author.as_bytes().to_vec();
            key.extend_from_slice(chat.as_bytes());
            key.extend_from_slice(message.as_bytes());
            self.receipts.remove(key)?;
        }
        Ok(())
    }

    /// Delivery states of one message, per recipient.
    pub(crate) fn delivery(
        &self,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<Vec<(PublicKey, DeliveryState)>, StoreError> {
        let mut prefix = chat.as_bytes().to_vec();
        prefix.extend_from_slice(message.as_bytes());
        self.delivery
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let peer: [u8; 32] =
                    k[prefix.len()..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            tree: "delivery",
                            message: "bad key".into(),
                        })?;
                Ok((PublicKey::from_bytes(peer), decode("delivery", &v)?))
            })
            .collect()
    }

    /// Records that `relay` holds `message` for `recipient` until `until_ms`.
    pub(crate) fn add_custody(
        &self,
        chat: &ChatId,
        message: &MessageId,
        recipient: &PublicKey,
        relay: &PublicKey,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut key = delivery_key(chat, message, recipient);
        key.extend_from_slice(relay.as_bytes());
        self.custody.insert(key, &until_ms.to_be_bytes())?;
        Ok(())
    }

    /// Custody of one message: (recipient, relay, held until).
    pub(crate) fn custody(
        &self,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<Vec<(PublicKey, PublicKey, i64)>, StoreError> {
        let mut prefix = chat.as_bytes().to_vec();
        prefix.extend_from_slice(message.as_bytes());
        let mut out = Vec::new();
        for kv in self.custody.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let rest = &k[prefix.len()..];
            let (Ok(recipient), Ok(relay), Ok(until)) = (
                <[u8; 32]>::try_from(&rest[..32.min(rest.len())]),
                <[u8; 32]>::try_from(&rest[32.min(rest.len())..]),
                <[u8; 8]>::try_from(v.as_ref()),
            ) else {
                continue;
            };
            out.push((
                PublicKey::from_bytes(recipient),
                PublicKey::from_bytes(relay),
                i64::from_be_bytes(until),
            ));
        }
        Ok(out)
    }

    /// How many messages by others the user had seen in `chat`.
    pub(crate) fn seen(&self, chat: &ChatId) -> Result<u64, StoreError> {
        Ok(self
            .reads
            .get(chat.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub(crate) fn set_seen(&self, chat: &ChatId, count: u64) -> Result<(), StoreError> {
        self.reads.insert(chat.as_bytes(), &count.to_be_bytes())?;
        Ok(())
    }

    pub(crate) fn put_contact(&self, key: &PublicKey, contact: &Contact) -> Result<(), StoreError> {
        self.contacts.insert(key.as_bytes(), encode(contact))?;
        Ok(())
    }

    pub(crate) fn contact(&self, key: &PublicKey) -> Result<Option<Contact>, StoreError> {
        self.contacts
            .get(key.as_bytes())?
            .map(|v| decode("contacts", &v))
            .transpose()
    }

    pub(crate) fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.contacts
            .iter()
            .map(|kv| decode("contacts", &kv?.1))
            .collect()
    }

    /// Removes a contact; returns whether there was one.
    pub(crate) fn remove_contact(&self, key: &PublicKey) -> Result<bool, StoreError> {
        Ok(self.contacts.remove(key.as_bytes())?.is_some())
    }

    /// Whether the user blocked `key`.
    pub(crate) fn is_blocked(&self, key: &PublicKey) -> bool {
        matches!(self.contact(key), Ok(Some(c)) if c.blocked)
    }

    /// The newest verified profile held for `key` (the node's own included).
    pub(crate) fn profile(&self, key: &PublicKey) -> Result<Option<SignedProfile>, StoreError> {
        self.profiles
            .get(key.as_bytes())?
            .map(|v| decode("profiles", &v))
            .transpose()
    }

    /// Stores a profile already verified and found newer than the one held.
    pub(crate) fn put_profile(&self, profile: &SignedProfile) -> Result<(), StoreError> {
        self.profiles
            .insert(profile.peer.as_bytes(), encode(profile))?;
        Ok(())
    }

    /// The user's last-seen privacy setting.
    pub(crate) fn last_seen_privacy(&self) -> Result<LastSeenPrivacy, StoreError> {
        Ok(self
            .settings
            .get(b"last_seen_privacy")?
            .map(|v| decode("settings", &v))
            .transpose()?
            .unwrap_or_default())
    }

    pub(crate) fn set_last_seen_privacy(&self, privacy: LastSeenPrivacy) -> Result<(), StoreError> {
        self.settings
            .insert(b"last_seen_privacy", encode(&privacy))?;
        Ok(())
    }

    /// When this node last heard from `key` (its own clock, ms since the epoch).
    pub(crate) fn last_seen(&self, key: &PublicKey) -> Result<Option<i64>, StoreError> {
        Ok(self
            .last_seen
            .get(key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// Records hearing from `key` at `at_ms`. Not flushed on its own: losing
    /// the last few seconds of last-seen in a crash is harmless.
    pub(crate) fn set_last_seen(&self, key: &PublicKey, at_ms: i64) -> Result<(), StoreError> {
        self.last_seen
            .insert(key.as_bytes(), &at_ms.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::{ChatReplica, Identity};

    use super::*;

    #[tokio::test]
    async fn changes_and_outbox_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let alice = Identity::generate();
        let bob = Identity::generate();
        let kind = ChatKind::direct(alice.public(), bob.public());
        let mut chat = ChatReplica::new(kind.clone());
        let written = chat.write_message(&alice, "hello", None, 5).unwrap();
        let hash = written.change.verify().unwrap().hash;
        {
            let store = Store::open(tmp.path()).unwrap();
            store
                .put_chat(
                    &chat.id(),
                    &ChatRecord {
                        kind,
                        created_at_ms: 1,
                    },
                )
                .unwrap();
            store.put_changes([(&written.change, hash)]).unwrap();
            let entry = OutboxEntry {
                chat: chat.id(),
                segment: 0,
                hash,
                message: Some(written.message.id),
            };
            store.outbox_add(&bob.public(), &entry).unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.changes_of(&chat.id()).unwrap(), vec![written.change]);
        assert_eq!(store.outbox_peers().unwrap(), vec![bob.public()]);
        assert_eq!(store.outbox_for(&bob.public(), 10).unwrap().len(), 1);
        assert!(store.outbox_remove(&bob.public(), &hash).unwrap().is_some());
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(store.chats().unwrap().len(), 1);
    }
}

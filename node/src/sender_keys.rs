//! Sender keys of group gossip, on disk: the keys this node seals its
//! gossip under (one per group and epoch) and the ones it learned from
//! fellow members to open theirs. The rules (when an epoch ends) are the
//! crdt's `e2e::epoch_step`; the keys themselves `e2e::SenderKey`.
//!
//! Two sled trees in the node's database:
//! - `sender_keys`: chat (32) ‖ key id (16) → [`StoredKey`]
//! - `key_epochs`: chat (32) → [`Epoch`], this node's current epoch per group
//!
//! Keys stay readable across restarts (stored history is not encrypted at
//! rest, and neither are these). A chat holds at most
//! [`MAX_SENDER_KEYS_PER_CHAT`], at most [`MAX_SENDER_KEYS_PER_AUTHOR`] of
//! them from one author; past either, keys learned from others are refused
//! (this node's own rotations always fit: the oldest learned key is not
//! evicted, the new one simply is not kept).

use std::collections::{BTreeSet, HashMap};

use meshchat_crdt::{
    e2e::{
        epoch_step, EpochStep, EpochView, SenderKey, MAX_SENDER_KEYS_PER_AUTHOR,
        MAX_SENDER_KEYS_PER_CHAT,
    },
    ChatId, KeyId, PublicKey, SegmentIndex,
};
use serde::{Deserialize, Serialize};

use crate::store::{DbHandle, StoreError};

const KEYS: &str = "sender_keys";
const EPOCHS: &str = "key_epochs";

#[derive(Serialize, Deserialize)]
struct StoredKey {
    author: PublicKey,
    epoch: u32,
    #[serde(with = "serde_bytes")]
    key: [u8; 32],
    /// The history segment its epoch began in (0 for keys kept before it
    /// was recorded: handed to nobody who joined later).
    #[serde(default)]
    segment: SegmentIndex,
}

/// A sender key and the history segment its epoch began in: a member who
/// joined at a later segment without history is not handed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldKey {
    pub(crate) key: SenderKey,
    pub(crate) segment: SegmentIndex,
}

/// This node's current epoch in a group: the members and newest segment it
/// was started for, and the key it seals under.
#[derive(Serialize, Deserialize)]
struct Epoch {
    epoch: u32,
    segment: SegmentIndex,
    members: Vec<PublicKey>,
    key_id: KeyId,
}

fn corrupt(tree: &'static str, message: String) -> StoreError {
    StoreError::Corrupt { tree, message }
}

fn slot(chat: &ChatId, key_id: &KeyId) -> Vec<u8> {
    [chat.as_bytes().as_slice(), key_id.as_bytes()].concat()
}

/// How many keys a chat holds, in all and per author.
#[derive(Default)]
struct KeyCounts {
    total: usize,
    per_author: HashMap<PublicKey, usize>,
}

impl KeyCounts {
    fn add(&mut self, author: PublicKey) {
        self.total += 1;
        *self.per_author.entry(author).or_default() += 1;
    }

    fn has_room_for(&self, author: &PublicKey) -> bool {
        self.total < MAX_SENDER_KEYS_PER_CHAT
            && self.per_author.get(author).copied().unwrap_or(0) < MAX_SENDER_KEYS_PER_AUTHOR
    }
}

/// The sender keys a node holds.
pub(crate) struct SenderKeys {
    db: DbHandle,
    /// Keys read or written since start.
    cache: HashMap<KeyId, HeldKey>,
    /// Keys held per chat, counted on first need.
    counts: HashMap<ChatId, KeyCounts>,
}

impl SenderKeys {
    pub(crate) fn open(db: DbHandle) -> Self {
        Self {
            db,
            cache: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// The key `key_id` of `chat`, if held.
    pub(crate) fn get(
        &mut self,
        chat: &ChatId,
        key_id: &KeyId,
    ) -> Result<Option<SenderKey>, StoreError> {
        Ok(self.held(chat, key_id)?.map(|held| held.key))
    }

    /// The key `key_id` of `chat` with the segment its epoch began in.
    pub(crate) fn held(
        &mut self,
        chat: &ChatId,
        key_id: &KeyId,
    ) -> Result<Option<HeldKey>, StoreError> {
        if let Some(held) = self.cache.get(key_id) {
            return Ok((held.key.chat() == *chat).then(|| held.clone()));
        }
        let Some(bytes) = self.db.tree(KEYS)?.get(slot(chat, key_id))? else {
            return Ok(None);
        };
        let stored: StoredKey =
            ciborium::from_reader(bytes.as_ref()).map_err(|e| corrupt(KEYS, e.to_string()))?;
        let key = SenderKey::from_parts(*chat, stored.author, stored.epoch, stored.key);
        if key.key_id() != *key_id {
            return Err(corrupt(KEYS, "a key under another key's id".into()));
        }
        let held = HeldKey {
            key,
            segment: stored.segment,
        };
        self.cache.insert(*key_id, held.clone());
        Ok(Some(held))
    }

    /// Keeps a key learned from a fellow member (already checked against the
    /// id it was asked for), with the segment the member said its epoch
    /// began in. Returns whether it is held now: `false` when its chat is
    /// full.
    pub(crate) fn keep(&mut self, held: HeldKey) -> Result<bool, StoreError> {
        let chat = held.key.chat();
        if self.get(&chat, &held.key.key_id())?.is_some() {
            return Ok(true);
        }
        if !self.counts(&chat)?.has_room_for(&held.key.author()) {
            return Ok(false);
        }
        self.write(held)?;
        Ok(true)
    }

    /// The chat's key counts, read from disk on first need.
    fn counts(&mut self, chat: &ChatId) -> Result<&mut KeyCounts, StoreError> {
        if !self.counts.contains_key(chat) {
            let mut counts = KeyCounts::default();
            for entry in self.db.tree(KEYS)?.scan_prefix(chat.as_bytes()) {
                let (_, bytes) = entry?;
                let stored: StoredKey = ciborium::from_reader(bytes.as_ref())
                    .map_err(|e| corrupt(KEYS, e.to_string()))?;
                counts.add(stored.author);
            }
            self.counts.insert(*chat, counts);
        }
        Ok(self.counts.entry(*chat).or_default())
    }

    fn write(&mut self, held: HeldKey) -> Result<(), StoreError> {
        let key = &held.key;
        let stored = StoredKey {
            author: key.author(),
            epoch: key.epoch(),
            key: *key.key_bytes(),
            segment: held.segment,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&stored, &mut bytes).map_err(|e| corrupt(KEYS, e.to_string()))?;
        let chat = key.chat();
        self.counts(&chat)?;
        self.db
            .tree(KEYS)?
            .insert(slot(&chat, &key.key_id()), bytes)?;
        self.counts(&chat)?.add(key.author());
        self.cache.insert(key.key_id(), held);
        Ok(())
    }

    /// The key `me` seals `chat`'s gossip under now: the current epoch's, or
    /// a fresh one when a member left since it began or the group moved to
    /// a newer segment (`epoch_step`). A newcomer needs no new key: it asks
    /// for the current one.
    pub(crate) fn sealing_key(
        &mut self,
        chat: ChatId,
        me: PublicKey,
        members: BTreeSet<PublicKey>,
        segment: SegmentIndex,
    ) -> Result<SenderKey, StoreError> {
        let epochs = self.db.tree(EPOCHS)?;
        let current: Option<Epoch> = match epochs.get(chat.as_bytes())? {
            Some(bytes) => Some(
                ciborium::from_reader(bytes.as_ref())
                    .map_err(|e| corrupt(EPOCHS, e.to_string()))?,
            ),
            None => None,
        };
        let next_epoch = match &current {
            None => 0,
            Some(current) => {
                let view = EpochView {
                    epoch: current.epoch,
                    segment: current.segment,
                    members: current.members.iter().copied().collect(),
                };
                match epoch_step(&view, &members, segment) {
                    EpochStep::Keep { newcomers } => {
                        if let Some(key) = self.get(&chat, &current.key_id)? {
                            if !newcomers.is_empty() {
                                self.set_epoch(&epochs, &chat, current, &members)?;
                            }
                            return Ok(key);
                        }
                        // Its key is gone (a crash before the flush that was
                        // to cover it): start the next epoch.
                        current.epoch.saturating_add(1)
                    }
                    EpochStep::Rotate { next, .. } => next.epoch,
                }
            }
        };
        let key = SenderKey::generate(chat, me, next_epoch);
        self.write(HeldKey {
            key: key.clone(),
            segment,
        })?;
        let epoch = Epoch {
            epoch: next_epoch,
            segment,
            members: members.iter().copied().collect(),
            key_id: key.key_id(),
        };
        self.set_epoch(&epochs, &chat, &epoch, &members)?;
        Ok(key)
    }

    fn set_epoch(
        &self,
        epochs: &sled::Tree,
        chat: &ChatId,
        epoch: &Epoch,
        members: &BTreeSet<PublicKey>,
    ) -> Result<(), StoreError> {
        let epoch = Epoch {
            epoch: epoch.epoch,
            segment: epoch.segment,
            members: members.iter().copied().collect(),
            key_id: epoch.key_id,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&epoch, &mut bytes).map_err(|e| corrupt(EPOCHS, e.to_string()))?;
        epochs.insert(chat.as_bytes(), bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn keys() -> (SenderKeys, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (SenderKeys::open(DbHandle::of(&db)), db)
    }

    fn member(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn set(ns: &[u8]) -> BTreeSet<PublicKey> {
        ns.iter().map(|n| member(*n)).collect()
    }

    #[test]
    fn the_key_changes_when_a_member_leaves_or_a_segment_begins_not_when_one_joins() {
        let (mut keys, _db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let me = member(1);
        let first = keys.sealing_key(chat, me, set(&[1, 2, 3]), 0).unwrap();
        assert_eq!(first.epoch(), 0);
        let same = keys.sealing_key(chat, me, set(&[1, 2, 3]), 0).unwrap();
        assert_eq!(same.key_id(), first.key_id());
        let joined = keys.sealing_key(chat, me, set(&[1, 2, 3, 4]), 0).unwrap();
        assert_eq!(joined.key_id(), first.key_id(), "a join keeps the key");
        let left = keys.sealing_key(chat, me, set(&[1, 2, 4]), 0).unwrap();
        assert_ne!(left.key_id(), first.key_id(), "a departure rotates");
        assert_eq!(left.epoch(), 1);
        // The newcomer (4) was recorded with the join: its own departure
        // rotates too.
        let gone = keys.sealing_key(chat, me, set(&[1, 2]), 0).unwrap();
        assert_eq!(gone.epoch(), 2);
        let segment = keys.sealing_key(chat, me, set(&[1, 2]), 1).unwrap();
        assert_eq!(segment.epoch(), 3, "a new segment rotates");
        // Every key stays readable.
        for key in [first, left, gone, segment] {
            assert_eq!(keys.get(&chat, &key.key_id()).unwrap(), Some(key));
        }
    }

    #[test]
    fn keys_survive_a_reopen_and_are_kept_per_chat() {
        let (mut keys, db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let other = ChatId::from_bytes([8; 32]);
        let mine = keys.sealing_key(chat, member(1), set(&[1, 2]), 3).unwrap();
        let theirs = SenderKey::generate(chat, member(2), 0);
        assert!(keys
            .keep(HeldKey {
                key: theirs.clone(),
                segment: 2,
            })
            .unwrap());
        let mut reopened = SenderKeys::open(DbHandle::of(&db));
        // Each with the segment its epoch began in.
        assert_eq!(
            reopened.held(&chat, &mine.key_id()).unwrap(),
            Some(HeldKey {
                key: mine,
                segment: 3
            })
        );
        assert_eq!(
            reopened.held(&chat, &theirs.key_id()).unwrap(),
            Some(HeldKey {
                key: theirs.clone(),
                segment: 2
            })
        );
        assert_eq!(reopened.get(&other, &theirs.key_id()).unwrap(), None);
    }

    fn learned(key: &SenderKey) -> HeldKey {
        HeldKey {
            key: key.clone(),
            segment: 0,
        }
    }

    #[test]
    fn a_full_chat_keeps_no_more_keys() {
        let (mut keys, _db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        keys.counts.insert(
            chat,
            KeyCounts {
                total: MAX_SENDER_KEYS_PER_CHAT,
                per_author: HashMap::new(),
            },
        );
        let key = SenderKey::generate(chat, member(2), 0);
        assert!(!keys.keep(learned(&key)).unwrap());
        assert_eq!(keys.get(&chat, &key.key_id()).unwrap(), None);
    }

    #[test]
    fn one_author_fills_only_its_own_share_of_a_chat_even_after_a_reopen() {
        let (mut keys, db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let author = member(2);
        for epoch in 0..MAX_SENDER_KEYS_PER_AUTHOR as u32 {
            let key = SenderKey::generate(chat, author, epoch);
            assert!(keys.keep(learned(&key)).unwrap());
        }
        let one_more = SenderKey::generate(chat, author, 9999);
        assert!(!keys.keep(learned(&one_more)).unwrap());
        let someone_else = SenderKey::generate(chat, member(3), 0);
        assert!(keys.keep(learned(&someone_else)).unwrap());
        // The counts are read back from disk.
        let mut reopened = SenderKeys::open(DbHandle::of(&db));
        assert!(!reopened.keep(learned(&one_more)).unwrap());
        let another = SenderKey::generate(chat, member(4), 0);
        assert!(reopened.keep(learned(&another)).unwrap());
    }
}

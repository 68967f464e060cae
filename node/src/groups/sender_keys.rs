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
//! [`MAX_SENDER_KEYS_PER_AUTHOR`] keys of one author (its newest epochs: a
//! newer key evicts the oldest) and [`MAX_SENDER_KEYS_PER_CHAT`] in all (a
//! full chat evicts the oldest key of the author holding the most). Frames
//! in flight are sealed under their authors' newest epochs; a frame under an
//! evicted key asks for it again, as for any key not held.

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

/// The keys a chat holds, by author and epoch (what eviction needs).
#[derive(Default)]
struct ChatKeys {
    total: usize,
    by_author: HashMap<PublicKey, BTreeSet<(u32, KeyId)>>,
}

impl ChatKeys {
    fn add(&mut self, author: PublicKey, epoch: u32, key_id: KeyId) {
        if self
            .by_author
            .entry(author)
            .or_default()
            .insert((epoch, key_id))
        {
            self.total += 1;
        }
    }

    fn remove(&mut self, author: &PublicKey, epoch: u32, key_id: KeyId) {
        if let Some(keys) = self.by_author.get_mut(author) {
            if keys.remove(&(epoch, key_id)) {
                self.total -= 1;
            }
            if keys.is_empty() {
                self.by_author.remove(author);
            }
        }
    }

    /// What to give up to keep a key of `author` at `epoch`: `Ok(None)`
    /// there is room; `Ok(Some(..))` evict that key first; `Err(())` keep
    /// nothing (the key is older than all its author's kept keys, or the
    /// chat is full of single keys).
    fn make_room(
        &self,
        author: &PublicKey,
        epoch: u32,
    ) -> Result<Option<(PublicKey, u32, KeyId)>, ()> {
        if let Some(keys) = self.by_author.get(author) {
            if keys.len() >= MAX_SENDER_KEYS_PER_AUTHOR {
                let &(oldest, id) = keys.first().ok_or(())?;
                return if epoch > oldest {
                    Ok(Some((*author, oldest, id)))
                } else {
                    Err(())
                };
            }
        }
        if self.total < MAX_SENDER_KEYS_PER_CHAT {
            return Ok(None);
        }
        // A full chat: the author holding the most keys gives up its oldest.
        let (heaviest, keys) = self
            .by_author
            .iter()
            .max_by_key(|(_, keys)| keys.len())
            .ok_or(())?;
        if keys.len() <= 1 {
            return Err(());
        }
        let &(oldest, id) = keys.first().ok_or(())?;
        Ok(Some((*heaviest, oldest, id)))
    }
}

/// The sender keys a node holds.
pub(crate) struct SenderKeys {
    db: DbHandle,
    /// Keys read or written since start.
    cache: HashMap<KeyId, HeldKey>,
    /// Keys held per chat, by author and epoch, read on first need.
    counts: HashMap<ChatId, ChatKeys>,
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
        let (author, epoch) = (held.key.author(), held.key.epoch());
        match self.counts(&chat)?.make_room(&author, epoch) {
            Err(()) => return Ok(false),
            Ok(Some((author, epoch, key_id))) => self.evict(&chat, &author, epoch, key_id)?,
            Ok(None) => {}
        }
        self.write(held)?;
        Ok(true)
    }

    /// Forgets a learned key: a frame still sealed under it (rare: frames
    /// in flight are under their author's newest epochs) asks for it again.
    fn evict(
        &mut self,
        chat: &ChatId,
        author: &PublicKey,
        epoch: u32,
        key_id: KeyId,
    ) -> Result<(), StoreError> {
        self.db.tree(KEYS)?.remove(slot(chat, &key_id))?;
        self.cache.remove(&key_id);
        self.counts(chat)?.remove(author, epoch, key_id);
        Ok(())
    }

    /// The chat's keys by author and epoch, read from disk on first need.
    fn counts(&mut self, chat: &ChatId) -> Result<&mut ChatKeys, StoreError> {
        if !self.counts.contains_key(chat) {
            let mut keys = ChatKeys::default();
            for entry in self.db.tree(KEYS)?.scan_prefix(chat.as_bytes()) {
                let (slot, bytes) = entry?;
                let stored: StoredKey = ciborium::from_reader(bytes.as_ref())
                    .map_err(|e| corrupt(KEYS, e.to_string()))?;
                let key_id = slot
                    .get(32..)
                    .and_then(|id| <[u8; 16]>::try_from(id).ok())
                    .map(KeyId::from_bytes)
                    .ok_or_else(|| corrupt(KEYS, "a slot without a key id".into()))?;
                keys.add(stored.author, stored.epoch, key_id);
            }
            self.counts.insert(*chat, keys);
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
        self.counts(&chat)?
            .add(key.author(), key.epoch(), key.key_id());
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
        // Its own keys fit always, its oldest making way past the bound.
        if let Ok(Some((author, epoch, key_id))) = self.counts(&chat)?.make_room(&me, next_epoch) {
            self.evict(&chat, &author, epoch, key_id)?;
        }
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
    fn its_own_rotations_keep_only_its_newest_keys() {
        let (mut keys, _db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let me = member(1);
        let mut mine = Vec::new();
        // Every call after the first sees a departure: a new epoch.
        for round in 0..=MAX_SENDER_KEYS_PER_AUTHOR as u8 {
            let members = set(&[1, 100 + round % 2]);
            mine.push(keys.sealing_key(chat, me, members, 0).unwrap());
        }
        assert_eq!(mine.len(), MAX_SENDER_KEYS_PER_AUTHOR + 1);
        assert_eq!(keys.get(&chat, &mine[0].key_id()).unwrap(), None);
        for key in &mine[1..] {
            assert!(keys.get(&chat, &key.key_id()).unwrap().is_some());
        }
    }

    #[test]
    fn a_full_chat_gives_up_the_oldest_key_of_its_heaviest_author() {
        let (mut keys, _db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let heavy = SenderKey::generate(chat, member(2), 0);
        let heavier = SenderKey::generate(chat, member(2), 1);
        let single = SenderKey::generate(chat, member(3), 0);
        for key in [&heavy, &heavier, &single] {
            assert!(keys.keep(learned(key)).unwrap());
        }
        // Pretend the rest of the chat is full.
        keys.counts.get_mut(&chat).unwrap().total = MAX_SENDER_KEYS_PER_CHAT;
        let newcomer = SenderKey::generate(chat, member(4), 0);
        assert!(keys.keep(learned(&newcomer)).unwrap());
        assert_eq!(keys.get(&chat, &heavy.key_id()).unwrap(), None);
        for key in [heavier, single, newcomer] {
            assert_eq!(keys.get(&chat, &key.key_id()).unwrap(), Some(key));
        }
    }

    #[test]
    fn a_chat_full_of_single_keys_keeps_no_more() {
        let (mut keys, _db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        assert!(keys
            .keep(learned(&SenderKey::generate(chat, member(3), 0)))
            .unwrap());
        keys.counts.get_mut(&chat).unwrap().total = MAX_SENDER_KEYS_PER_CHAT;
        let key = SenderKey::generate(chat, member(2), 0);
        assert!(!keys.keep(learned(&key)).unwrap());
        assert_eq!(keys.get(&chat, &key.key_id()).unwrap(), None);
    }

    #[test]
    fn an_author_keeps_only_its_newest_keys_even_after_a_reopen() {
        let (mut keys, db) = keys();
        let chat = ChatId::from_bytes([7; 32]);
        let author = member(2);
        let per_author = MAX_SENDER_KEYS_PER_AUTHOR as u32;
        let kept: Vec<SenderKey> = (1..=per_author)
            .map(|epoch| SenderKey::generate(chat, author, epoch))
            .collect();
        for key in &kept {
            assert!(keys.keep(learned(key)).unwrap());
        }
        // Older than every key kept: not worth a place.
        let older = SenderKey::generate(chat, author, 0);
        assert!(!keys.keep(learned(&older)).unwrap());
        // Newer: the oldest makes way.
        let newer = SenderKey::generate(chat, author, per_author + 1);
        assert!(keys.keep(learned(&newer)).unwrap());
        assert_eq!(keys.get(&chat, &kept[0].key_id()).unwrap(), None);
        // Another author is not affected.
        let other = SenderKey::generate(chat, member(3), 0);
        assert!(keys.keep(learned(&other)).unwrap());
        // The same, read back from disk.
        let mut reopened = SenderKeys::open(DbHandle::of(&db));
        assert_eq!(reopened.get(&chat, &kept[0].key_id()).unwrap(), None);
        let newest = SenderKey::generate(chat, author, per_author + 2);
        assert!(reopened.keep(learned(&newest)).unwrap());
        assert_eq!(reopened.get(&chat, &kept[1].key_id()).unwrap(), None);
        for key in kept[2..].iter().chain([&newer, &newest, &other]) {
            assert_eq!(
                reopened.get(&chat, &key.key_id()).unwrap(),
                Some(key.clone())
            );
        }
    }
}

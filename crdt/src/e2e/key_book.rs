//! `SenderKeyBook`: the sender keys a device holds and the sealed changes
//! waiting for theirs, pure and bounded. A sealed change whose key has not
//! arrived waits here, as a change with missing dependencies waits in the
//! chat's deferred set; the key share that brings the key releases it.
//!
//! Not on the live path yet (issue 16, next slice): nothing in the node
//! feeds it. Who may park changes and whose shares count (members, at the
//! share's epoch) is the caller's decision; this book only bounds and
//! matches.

use std::collections::{BTreeMap, HashMap};

use zeroize::Zeroizing;

use super::{DeviceKeyring, OpenError, SealedChange, SenderKey, SignedKeyShare};
use crate::ids::{ChatId, KeyId, PublicKey};

/// Most sender keys held per chat (a 1,024-member group rotating 8 times).
pub const MAX_SENDER_KEYS_PER_CHAT: usize = 8192;
/// Most sender keys a node keeps per chat from one author: its newest
/// epochs (frames in flight are sealed under those; a member rotates at each
/// departure it sees and each new segment). A newer key evicts the oldest,
/// so one member publishing under ever new keys evicts only its own.
pub const MAX_SENDER_KEYS_PER_AUTHOR: usize = 16;
/// Most sealed changes waiting for their key, over all chats.
pub const MAX_WAITING_SEALED: usize = 512;
/// Most ciphertext bytes waiting for their key, over all chats.
pub const MAX_WAITING_SEALED_BYTES: usize = 4 * 1024 * 1024;
/// How long a sealed change waits for its key before it is dropped (the
/// sender re-sends it with the next sync).
pub const WAITING_SEALED_TTL_MS: i64 = 10 * 60 * 1000;

/// What became of a sealed change handed to the book.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Its key was here: the signed change's bytes, to verify and judge.
    Change(Zeroizing<Vec<u8>>),
    /// Its key has not arrived: kept until it does (or expires).
    Waiting,
    /// Dropped: it does not open under its key, it names another chat's
    /// key, or the waiting room is full.
    Refused(Refusal),
}

/// Why a sealed change was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The key is known and the change does not open under it.
    Open(OpenError),
    /// The key id names a key of another chat.
    OtherChat,
    /// The waiting room is full (count or bytes).
    Full,
}

/// What accepting a key share did.
#[derive(Debug, PartialEq, Eq)]
pub struct ShareAccepted {
    /// The key the share carried.
    pub key_id: KeyId,
    /// Whether it was new here (false: a replay, nothing changed).
    pub new: bool,
    /// The waiting changes it opened, in arrival order, with their chats.
    pub released: Vec<(ChatId, Zeroizing<Vec<u8>>)>,
    /// Waiting changes under this key that did not open (dropped).
    pub refused: usize,
}

struct Parked {
    chat: ChatId,
    sealed: SealedChange,
    since_ms: i64,
}

/// Sender keys by id, and what waits for them.
#[derive(Default)]
pub struct SenderKeyBook {
    keys: HashMap<KeyId, SenderKey>,
    per_chat: HashMap<ChatId, usize>,
    waiting: BTreeMap<KeyId, Vec<Parked>>,
    waiting_count: usize,
    waiting_bytes: usize,
}

impl std::fmt::Debug for SenderKeyBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyBook")
            .field("keys", &self.keys.len())
            .field("waiting", &self.waiting_count)
            .finish_non_exhaustive()
    }
}

impl SenderKeyBook {
    /// Holds `key` (one's own, or one a share brought). False if it was
    /// held already, or its chat already holds [`MAX_SENDER_KEYS_PER_CHAT`].
    pub fn insert(&mut self, key: SenderKey) -> bool {
        let id = key.key_id();
        if self.keys.contains_key(&id) {
            return false;
        }
        let count = self.per_chat.entry(key.chat()).or_default();
        if *count >= MAX_SENDER_KEYS_PER_CHAT {
            return false;
        }
        *count += 1;
        self.keys.insert(id, key);
        true
    }

    /// The key with this id, if held.
    pub fn get(&self, id: &KeyId) -> Option<&SenderKey> {
        self.keys.get(id)
    }

    /// Verifies `share`, opens this device's copy and holds the key;
    /// returns what it released. The share's author must be a member the
    /// caller accepts shares from (checked before).
    pub fn accept_share(
        &mut self,
        share: &SignedKeyShare,
        me: &PublicKey,
        keyring: &DeviceKeyring,
    ) -> Result<ShareAccepted, OpenError> {
        let body = share.verify()?;
        let key = body.open(me, keyring)?;
        let key_id = key.key_id();
        let new = self.insert(key);
        let (mut released, mut refused) = (Vec::new(), 0);
        if let (Some(key), Some(parked)) = (self.keys.get(&key_id), self.waiting.remove(&key_id)) {
            for p in parked {
                self.waiting_count -= 1;
                self.waiting_bytes -= p.sealed.ciphertext.len();
                match (p.chat == key.chat()).then(|| p.sealed.open(key)) {
                    Some(Ok(bytes)) => released.push((p.chat, bytes)),
                    _ => refused += 1,
                }
            }
        }
        Ok(ShareAccepted {
            key_id,
            new,
            released,
            refused,
        })
    }

    /// Opens `sealed`, received in `chat` at `now_ms`, or parks it until its
    /// key arrives.
    pub fn open(&mut self, chat: ChatId, sealed: SealedChange, now_ms: i64) -> Opened {
        if let Some(key) = self.keys.get(&sealed.key_id) {
            if key.chat() != chat {
                return Opened::Refused(Refusal::OtherChat);
            }
            return match sealed.open(key) {
                Ok(bytes) => Opened::Change(bytes),
                Err(e) => Opened::Refused(Refusal::Open(e)),
            };
        }
        let size = sealed.ciphertext.len();
        if self.waiting_count >= MAX_WAITING_SEALED
            || self.waiting_bytes + size > MAX_WAITING_SEALED_BYTES
        {
            return Opened::Refused(Refusal::Full);
        }
        let parked = self.waiting.entry(sealed.key_id).or_default();
        if parked.iter().any(|p| p.chat == chat && p.sealed == sealed) {
            return Opened::Waiting;
        }
        self.waiting_count += 1;
        self.waiting_bytes += size;
        parked.push(Parked {
            chat,
            sealed,
            since_ms: now_ms,
        });
        Opened::Waiting
    }

    /// Drops what waited longer than [`WAITING_SEALED_TTL_MS`]; returns how
    /// many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let mut dropped = 0;
        self.waiting.retain(|_, parked| {
            parked.retain(|p| {
                let keep = now_ms.saturating_sub(p.since_ms) < WAITING_SEALED_TTL_MS;
                if !keep {
                    dropped += 1;
                    self.waiting_count -= 1;
                    self.waiting_bytes -= p.sealed.ciphertext.len();
                }
                keep
            });
            !parked.is_empty()
        });
        dropped
    }

    /// Sealed changes waiting for their key.
    pub fn waiting(&self) -> usize {
        self.waiting_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{e2e::DeviceKeyring, identity::Identity};

    fn chat(n: u8) -> ChatId {
        ChatId::from_bytes([n; 32])
    }

    struct Bob {
        me: PublicKey,
        keyring: DeviceKeyring,
    }

    fn bob() -> Bob {
        Bob {
            me: Identity::from_secret_bytes([2; 32]).public(),
            keyring: DeviceKeyring::generate(),
        }
    }

    fn share(author: &Identity, key: &SenderKey, to: &Bob) -> SignedKeyShare {
        SignedKeyShare::seal(author, key, &[(to.me, to.keyring.current().public())]).unwrap()
    }

    #[test]
    fn a_change_waits_for_its_key_and_the_share_releases_it() {
        let alice = Identity::from_secret_bytes([1; 32]);
        let bob = bob();
        let key = SenderKey::generate(chat(1), alice.public(), 1);
        let sealed = SealedChange::seal(&key, b"change one").unwrap();
        let mut book = SenderKeyBook::default();
        assert_eq!(book.open(chat(1), sealed.clone(), 0), Opened::Waiting);
        // The same change again waits once.
        assert_eq!(book.open(chat(1), sealed.clone(), 1), Opened::Waiting);
        assert_eq!(book.waiting(), 1);

        let accepted = book
            .accept_share(&share(&alice, &key, &bob), &bob.me, &bob.keyring)
            .unwrap();
        assert!(accepted.new);
        assert_eq!(accepted.released.len(), 1);
        assert_eq!(*accepted.released[0].1, b"change one");
        assert_eq!(book.waiting(), 0);
        // Now it opens at once; a replayed share changes nothing.
        assert_eq!(
            book.open(chat(1), sealed, 2),
            Opened::Change(Zeroizing::new(b"change one".to_vec()))
        );
        let again = book
            .accept_share(&share(&alice, &key, &bob), &bob.me, &bob.keyring)
            .unwrap();
        assert!(!again.new && again.released.is_empty());
    }

    #[test]
    fn a_change_filed_under_another_chat_or_bent_is_refused() {
        let alice = Identity::from_secret_bytes([1; 32]);
        let key = SenderKey::generate(chat(1), alice.public(), 1);
        let mut book = SenderKeyBook::default();
        book.insert(key.clone());
        let sealed = SealedChange::seal(&key, b"x").unwrap();
        assert_eq!(
            book.open(chat(2), sealed.clone(), 0),
            Opened::Refused(Refusal::OtherChat)
        );
        let mut bent = sealed;
        bent.ciphertext[0] ^= 1;
        assert_eq!(
            book.open(chat(1), bent, 0),
            Opened::Refused(Refusal::Open(OpenError::Decrypt))
        );
        // Waiting in the wrong chat: the share does not release it there.
        let bob = bob();
        let other = SenderKey::generate(chat(1), alice.public(), 2);
        let mut book = SenderKeyBook::default();
        let sealed = SealedChange::seal(&other, b"y").unwrap();
        assert_eq!(book.open(chat(3), sealed, 0), Opened::Waiting);
        let accepted = book
            .accept_share(&share(&alice, &other, &bob), &bob.me, &bob.keyring)
            .unwrap();
        assert_eq!((accepted.released.len(), accepted.refused), (0, 1));
    }

    #[test]
    fn the_waiting_room_is_bounded_and_expires() {
        let alice = Identity::from_secret_bytes([1; 32]);
        let mut book = SenderKeyBook::default();
        for i in 0..MAX_WAITING_SEALED {
            let key = SenderKey::generate(chat(1), alice.public(), i as u32);
            let sealed = SealedChange::seal(&key, b"z").unwrap();
            assert_eq!(book.open(chat(1), sealed, 0), Opened::Waiting);
        }
        let key = SenderKey::generate(chat(1), alice.public(), u32::MAX);
        let sealed = SealedChange::seal(&key, b"z").unwrap();
        assert_eq!(
            book.open(chat(1), sealed.clone(), 0),
            Opened::Refused(Refusal::Full)
        );
        assert_eq!(book.expire(WAITING_SEALED_TTL_MS - 1), 0);
        assert_eq!(book.expire(WAITING_SEALED_TTL_MS), MAX_WAITING_SEALED);
        assert_eq!(book.waiting(), 0);
        assert_eq!(book.open(chat(1), sealed, 0), Opened::Waiting);

        let big = SenderKey::generate(chat(1), alice.public(), 7);
        let mut book = SenderKeyBook::default();
        let huge = vec![0u8; MAX_WAITING_SEALED_BYTES];
        let sealed = SealedChange::seal(&big, &huge).unwrap();
        assert_eq!(
            book.open(chat(1), sealed, 0),
            Opened::Refused(Refusal::Full)
        );
    }

    #[test]
    fn a_forged_share_neither_adds_a_key_nor_releases_anything() {
        let (alice, mallory) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([9; 32]),
        );
        let bob = bob();
        let key = SenderKey::generate(chat(1), alice.public(), 1);
        let mut book = SenderKeyBook::default();
        let sealed = SealedChange::seal(&key, b"secret").unwrap();
        assert_eq!(book.open(chat(1), sealed, 0), Opened::Waiting);
        let mut forged = share(&mallory, &key, &bob);
        forged.signature = mallory.sign(b"something else");
        assert!(book.accept_share(&forged, &bob.me, &bob.keyring).is_err());
        assert_eq!(book.waiting(), 1);
        assert!(book.get(&key.key_id()).is_none());
    }
}

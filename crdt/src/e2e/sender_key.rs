//! Sender keys: one random symmetric key per (chat, author, epoch), with
//! which the author seals its changes. Members receive it in a
//! [`KeyShare`](super::KeyShare); anyone without it sees only ciphertext.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ids::{ChatId, KeyId, PublicKey};

const KEY_ID_DOMAIN: &[u8] = b"meshchat/sender-key-id/v1";

/// One author's key for one chat and epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKey {
    chat: ChatId,
    author: PublicKey,
    epoch: u32,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKey")
            .field("chat", &self.chat)
            .field("author", &self.author)
            .field("epoch", &self.epoch)
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl SenderKey {
    /// A fresh random key for `author` in `chat` at `epoch`.
    pub fn generate(chat: ChatId, author: PublicKey, epoch: u32) -> Self {
        Self::from_parts(chat, author, epoch, rand::random())
    }

    /// The key with these bytes (from a key share, or tests).
    pub fn from_parts(chat: ChatId, author: PublicKey, epoch: u32, key: [u8; 32]) -> Self {
        Self {
            chat,
            author,
            epoch,
            key: Zeroizing::new(key),
        }
    }

    /// Its chat.
    pub fn chat(&self) -> ChatId {
        self.chat
    }

    /// Who seals with it.
    pub fn author(&self) -> PublicKey {
        self.author
    }

    /// Its epoch (a new one at each removal and segment, see ARCHITECTURE.md).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// `SHA-256("meshchat/sender-key-id/v1" ‖ chat ‖ author ‖ epoch (u32 BE) ‖ key)`,
    /// first 16 bytes. It commits to the key, so a share whose key does not
    /// hash to its claimed id is refused, and it names neither the chat nor
    /// the author to anyone who lacks the key.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.chat.as_bytes())
            .chain_update(self.author.as_bytes())
            .chain_update(self.epoch.to_be_bytes())
            .chain_update(self.key.as_ref())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        KeyId::from_bytes(id)
    }

    /// The secret key itself (to hand it to a fellow member over an
    /// authenticated, encrypted channel, or to store it).
    pub fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

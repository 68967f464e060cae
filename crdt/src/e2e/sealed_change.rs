//! `SealedChange`: a whole signed change (signed first, then encrypted)
//! under its author's sender key, with XChaCha20-Poly1305. The random
//! 24-byte nonce is safe for any number of changes under one key; the
//! associated data binds the chat and the key id, so a sealed change cannot
//! be replayed into another chat or passed off under another key.

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{wire, DecodeError, OpenError, SealError, SenderKey};
use crate::ids::{ChatId, KeyId};

/// Largest signed change that can be sealed: a sync request's bound.
pub const MAX_SEALED_PLAINTEXT_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded sealed change: the plaintext bound plus tag and framing.
pub const MAX_SEALED_CHANGE_BYTES: usize = MAX_SEALED_PLAINTEXT_BYTES + 128;
const TAG_LEN: usize = 16;
const AAD_DOMAIN: &[u8] = b"meshchat/sealed-change/v1";

/// A signed change encrypted under a sender key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedChange {
    /// Which sender key opens it.
    pub key_id: KeyId,
    /// XChaCha20 nonce, random per change.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 24],
    /// The signed change's bytes plus the 16-byte tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

fn associated_data(chat: &ChatId, key_id: &KeyId) -> Vec<u8> {
    [AAD_DOMAIN, chat.as_bytes(), key_id.as_bytes()].concat()
}

impl SealedChange {
    /// Seals `signed_change` (the bytes of a `SignedChange`) under `key`.
    pub fn seal(key: &SenderKey, signed_change: &[u8]) -> Result<Self, SealError> {
        if signed_change.len() > MAX_SEALED_PLAINTEXT_BYTES {
            return Err(SealError::TooLarge {
                size: signed_change.len(),
                limit: MAX_SEALED_PLAINTEXT_BYTES,
            });
        }
        let key_id = key.key_id();
        let nonce: [u8; 24] = rand::random();
        let cipher = XChaCha20Poly1305::new(key.key_bytes().into());
        let ciphertext = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: signed_change,
                    aad: &associated_data(&key.chat(), &key_id),
                },
            )
            .map_err(|_| SealError::TooLarge {
                size: signed_change.len(),
                limit: MAX_SEALED_PLAINTEXT_BYTES,
            })?;
        Ok(Self {
            key_id,
            nonce,
            ciphertext,
        })
    }

    /// Opens with `key`, which must be the key its `key_id` names; returns
    /// the signed change's bytes (still to be verified and judged).
    pub fn open(&self, key: &SenderKey) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if key.key_id() != self.key_id {
            return Err(OpenError::WrongKey);
        }
        if self.ciphertext.len() < TAG_LEN {
            return Err(OpenError::Decrypt);
        }
        let cipher = XChaCha20Poly1305::new(key.key_bytes().into());
        cipher
            .decrypt(
                (&self.nonce).into(),
                Payload {
                    msg: &self.ciphertext,
                    aad: &associated_data(&key.chat(), &self.key_id),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Decrypt)
    }

    /// Version byte ‖ CBOR: what is stored and sent (seal once, send the
    /// same bytes everywhere).
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strict, bounded decoding of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let sealed: Self = wire::decode(bytes, MAX_SEALED_CHANGE_BYTES)?;
        if sealed.ciphertext.len() < TAG_LEN {
            return Err(DecodeError::Invalid("ciphertext shorter than its tag"));
        }
        Ok(sealed)
    }
}

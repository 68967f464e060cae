//! `KeyShare`: an author hands its sender key for (chat, epoch) to the
//! members' devices, one HPKE-sealed copy per device key, the whole signed
//! by the author's identity. Shares are records of a grow-only set: the
//! same share arriving twice (a replay) gives the same key again and
//! changes nothing.
//!
//! What binds what:
//! - the Ed25519 signature covers the whole body (chat, author, epoch, key
//!   id, every copy), so nothing can be added, removed or moved;
//! - each copy's HPKE `info` names the chat, author, epoch, key id, the
//!   recipient's identity and the exact device key (version and bytes), so a
//!   copy lifted into another share (even one its thief signs) or aimed at
//!   another key does not open;
//! - the key id commits to the key, so an author cannot hand different
//!   members different keys under one id.

use serde::{Deserialize, Serialize};

use super::{
    hpke::{self, HpkeError, ENC_LEN, TAG_LEN},
    wire, DecodeError, DeviceKey, DeviceKeyring, OpenError, SealError, SenderKey,
};
use crate::{
    identity::{verify, Identity},
    ids::{ChatId, KeyId, PublicKey},
};

/// Most copies (recipient devices) one share holds: a 1,024-member group
/// with room for a second device each.
pub const MAX_KEY_SHARE_COPIES: usize = 2048;
/// Largest encoded signed share.
pub const MAX_KEY_SHARE_BYTES: usize = 512 * 1024;
const SIGN_DOMAIN: &[u8] = b"meshchat/key-share/v1";
const INFO_DOMAIN: &[u8] = b"meshchat/key-share-copy/v1";
const SEALED_KEY_LEN: usize = 32 + TAG_LEN;

/// One recipient device's copy of the sender key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCopy {
    /// The recipient's identity.
    pub recipient: PublicKey,
    /// The device key it is sealed to.
    pub device_key: DeviceKey,
    /// HPKE encapsulated key.
    #[serde(with = "serde_bytes")]
    pub enc: [u8; ENC_LEN],
    /// The sealed 32-byte key and its tag.
    #[serde(with = "serde_bytes")]
    pub sealed_key: [u8; SEALED_KEY_LEN],
}

/// The body an author signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShare {
    /// The chat the key seals.
    pub chat: ChatId,
    /// Who seals with it (and signs this share).
    pub author: PublicKey,
    /// The key's epoch.
    pub epoch: u32,
    /// The key's id ([`SenderKey::key_id`]).
    pub key_id: KeyId,
    /// One copy per recipient device, sorted by (recipient, device key), no
    /// two alike.
    pub copies: Vec<SealedCopy>,
}

/// A share as stored and sent: the CBOR body and the author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKeyShare {
    /// Version byte ‖ CBOR of [`KeyShare`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 by the share's author over `"meshchat/key-share/v1" ‖ body`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

pub(super) fn copy_info(
    share: &KeyShare,
    recipient: &PublicKey,
    device_key: &DeviceKey,
) -> Vec<u8> {
    [
        INFO_DOMAIN,
        share.chat.as_bytes(),
        share.author.as_bytes(),
        &share.epoch.to_be_bytes(),
        share.key_id.as_bytes(),
        recipient.as_bytes(),
        &device_key.version.to_be_bytes(),
        device_key.key.as_bytes(),
    ]
    .concat()
}

impl KeyShare {
    /// Rules a receiver enforces before any cryptography.
    fn validate(&self) -> Result<(), DecodeError> {
        if self.copies.len() > MAX_KEY_SHARE_COPIES {
            return Err(DecodeError::Invalid("too many copies"));
        }
        let sorted = self
            .copies
            .windows(2)
            .all(|w| (w[0].recipient, w[0].device_key) < (w[1].recipient, w[1].device_key));
        if !sorted {
            return Err(DecodeError::Invalid("copies not sorted or repeated"));
        }
        Ok(())
    }

    /// Opens the copy sealed to `me` with whichever of its keys the copy
    /// names, and checks that the key is the one the share names.
    pub fn open(&self, me: &PublicKey, keyring: &DeviceKeyring) -> Result<SenderKey, OpenError> {
        let mut mine = self.copies.iter().filter(|c| c.recipient == *me).peekable();
        if mine.peek().is_none() {
            return Err(OpenError::NotForMe);
        }
        let mut last_error = OpenError::NotForMe;
        for copy in mine {
            let Some(secret) = keyring.get(copy.device_key.version) else {
                last_error = OpenError::UnknownDeviceKey(copy.device_key.version);
                continue;
            };
            if secret.public() != copy.device_key {
                last_error = OpenError::WrongDeviceKey;
                continue;
            }
            let info = copy_info(self, me, &copy.device_key);
            let opened = hpke::open(secret.secret(), &copy.enc, &info, b"", &copy.sealed_key);
            let bytes = match opened {
                Ok(bytes) => bytes,
                Err(HpkeError::LowOrderKey | HpkeError::Open) => {
                    last_error = OpenError::Decrypt;
                    continue;
                }
            };
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| OpenError::Decrypt)?;
            let sender_key = SenderKey::from_parts(self.chat, self.author, self.epoch, key);
            if sender_key.key_id() != self.key_id {
                return Err(OpenError::KeyIdMismatch);
            }
            return Ok(sender_key);
        }
        Err(last_error)
    }
}

impl SignedKeyShare {
    /// Seals `key` to each `(recipient, device key)` and signs the share as
    /// `author` (who must be the key's author).
    pub fn seal(
        author: &Identity,
        key: &SenderKey,
        recipients: &[(PublicKey, DeviceKey)],
    ) -> Result<Self, SealError> {
        if recipients.len() > MAX_KEY_SHARE_COPIES {
            return Err(SealError::TooManyRecipients(recipients.len()));
        }
        let mut recipients = recipients.to_vec();
        recipients.sort();
        recipients.dedup();
        let mut share = KeyShare {
            chat: key.chat(),
            author: author.public(),
            epoch: key.epoch(),
            key_id: key.key_id(),
            copies: Vec::with_capacity(recipients.len()),
        };
        for (recipient, device_key) in recipients {
            let info = copy_info(&share, &recipient, &device_key);
            let (enc, sealed) = hpke::seal(device_key.key.as_bytes(), &info, b"", key.key_bytes())
                .map_err(|_| SealError::BadRecipientKey)?;
            share.copies.push(SealedCopy {
                recipient,
                device_key,
                enc,
                sealed_key: sealed.try_into().expect("32 bytes sealed are 48"),
            });
        }
        let body = wire::encode(&share);
        if body.len() > MAX_KEY_SHARE_BYTES - 128 {
            return Err(SealError::TooManyRecipients(share.copies.len()));
        }
        let signature = author.sign(&[SIGN_DOMAIN, &body].concat());
        Ok(Self { body, signature })
    }

    /// Checks the author's signature and the share's rules; returns the
    /// share, still sealed.
    pub fn verify(&self) -> Result<KeyShare, OpenError> {
        let share: KeyShare = wire::decode(&self.body, MAX_KEY_SHARE_BYTES)?;
        share.validate()?;
        verify(
            &share.author,
            &[SIGN_DOMAIN, &self.body].concat(),
            &self.signature,
        )
        .map_err(|_| OpenError::BadSignature)?;
        Ok(share)
    }

    /// Version byte ‖ CBOR: what is stored and sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strict, bounded decoding of [`Self::to_bytes`], body included (the
    /// signature is checked by [`Self::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, KeyShare), DecodeError> {
        let signed: Self = wire::decode(bytes, MAX_KEY_SHARE_BYTES)?;
        let share: KeyShare = wire::decode(&signed.body, MAX_KEY_SHARE_BYTES)?;
        share.validate()?;
        Ok((signed, share))
    }
}

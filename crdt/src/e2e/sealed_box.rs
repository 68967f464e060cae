//! `SealedBox`: bytes HPKE-sealed to one device key, for one recipient, with
//! no sender named outside the ciphertext. Mailbox envelopes travel in it,
//! so a relay holds only ciphertext. The sender is not authenticated by the
//! box: what is inside (signed changes) carries its own signatures.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sha2_for_hkdf::Sha256 as HkdfSha256;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::{
    hpke::{self, ENC_LEN, TAG_LEN},
    wire, DecodeError, DeviceKey, DeviceKeyring, DeviceSecret, OpenError, SealError,
};
use crate::ids::PublicKey;

/// Largest plaintext a box holds (a mailbox request's bound).
pub const MAX_SEALED_BOX_PLAINTEXT_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded box.
pub const MAX_SEALED_BOX_BYTES: usize = MAX_SEALED_BOX_PLAINTEXT_BYTES + 128;
const INFO_DOMAIN: &[u8] = b"meshchat/sealed-box/v1";
const EPHEMERAL_DOMAIN: &[u8] = b"meshchat/sealed-box-ephemeral/v1";

/// Bytes sealed to a device key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// Which of the recipient's device keys opens it.
    pub device_key_version: u32,
    /// HPKE encapsulated key.
    #[serde(with = "serde_bytes")]
    pub enc: [u8; ENC_LEN],
    /// The plaintext plus the 16-byte tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// HPKE info: the purpose (`context`), the recipient's identity and the exact
/// device key, so a box opens only for what it was sealed for.
fn info(context: &[u8], recipient: &PublicKey, device_key: &DeviceKey) -> Vec<u8> {
    let context_len = u32::try_from(context.len()).unwrap_or(u32::MAX);
    [
        INFO_DOMAIN,
        &context_len.to_be_bytes(),
        context,
        recipient.as_bytes(),
        &device_key.version.to_be_bytes(),
        device_key.key.as_bytes(),
    ]
    .concat()
}

impl SealedBox {
    /// Seals `plaintext` for `recipient`'s `device_key`; `context` names the
    /// purpose (a box sealed for one purpose does not open for another).
    pub fn seal(
        context: &[u8],
        recipient: &PublicKey,
        device_key: &DeviceKey,
        plaintext: &[u8],
    ) -> Result<Self, SealError> {
        if plaintext.len() > MAX_SEALED_BOX_PLAINTEXT_BYTES {
            return Err(SealError::TooLarge {
                size: plaintext.len(),
                limit: MAX_SEALED_BOX_PLAINTEXT_BYTES,
            });
        }
        let info = info(context, recipient, device_key);
        let (enc, ciphertext) = hpke::seal(device_key.key.as_bytes(), &info, b"", plaintext)
            .map_err(|_| SealError::BadRecipientKey)?;
        Ok(Self {
            device_key_version: device_key.version,
            enc,
            ciphertext,
        })
    }

    /// [`Self::seal`] with the ephemeral key derived from the sender's own
    /// device secret and the plaintext (HKDF-SHA256), so sealing the same
    /// bytes to the same key twice gives the same box: a relay recognises a
    /// repeated deposit, as it did for plaintext envelopes. What it reveals
    /// is only that: two equal boxes hold equal bytes. Whoever holds the
    /// sender's device secret can recompute the ephemeral keys and read what
    /// it sealed (it holds that history in the clear anyway).
    pub fn seal_deterministic(
        context: &[u8],
        recipient: &PublicKey,
        device_key: &DeviceKey,
        plaintext: &[u8],
        sender: &DeviceSecret,
    ) -> Result<Self, SealError> {
        if plaintext.len() > MAX_SEALED_BOX_PLAINTEXT_BYTES {
            return Err(SealError::TooLarge {
                size: plaintext.len(),
                limit: MAX_SEALED_BOX_PLAINTEXT_BYTES,
            });
        }
        let info = info(context, recipient, device_key);
        let digest = Sha256::digest(plaintext);
        let hkdf = Hkdf::<HkdfSha256>::new(Some(EPHEMERAL_DOMAIN), sender.secret().as_bytes());
        let mut ephemeral = Zeroizing::new([0u8; 32]);
        hkdf.expand(&[&info[..], &digest[..]].concat(), ephemeral.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let ephemeral = StaticSecret::from(*ephemeral);
        let (enc, ciphertext) =
            hpke::seal_with_ephemeral(&ephemeral, device_key.key.as_bytes(), &info, b"", plaintext)
                .map_err(|_| SealError::BadRecipientKey)?;
        Ok(Self {
            device_key_version: device_key.version,
            enc,
            ciphertext,
        })
    }

    /// Opens a box sealed to `me` with one of `keyring`'s keys.
    pub fn open(
        &self,
        context: &[u8],
        me: &PublicKey,
        keyring: &DeviceKeyring,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let secret = keyring
            .get(self.device_key_version)
            .ok_or(OpenError::UnknownDeviceKey(self.device_key_version))?;
        let info = info(context, me, &secret.public());
        hpke::open(secret.secret(), &self.enc, &info, b"", &self.ciphertext)
            .map_err(|_| OpenError::Decrypt)
    }

    /// Version byte ‖ CBOR.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strict, bounded decoding of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let sealed: Self = wire::decode(bytes, MAX_SEALED_BOX_BYTES)?;
        if sealed.ciphertext.len() < TAG_LEN {
            return Err(DecodeError::Invalid("ciphertext shorter than its tag"));
        }
        Ok(sealed)
    }
}

//! End-to-end encryption, the pure core: keys, sealing and opening, strict
//! decoders. No I/O; the node stores the keys and moves the bytes.
//!
//! - [`DeviceKeyring`]: a device's versioned X25519 keys ([`DeviceKey`] is
//!   the public half its signed profile publishes). Never the Ed25519
//!   identity key.
//! - [`SenderKey`]: an author's symmetric key per (chat, epoch), named by a
//!   [`KeyId`](crate::KeyId) that commits to it.
//! - [`SignedKeyShare`]: a sender key HPKE-sealed (RFC 9180, [`hpke`]) to
//!   each recipient device, signed by its author.
//! - [`SealedChange`]: a signed change encrypted under a sender key
//!   (XChaCha20-Poly1305; associated data: chat id and key id).
//! - [`SealedBox`]: bytes HPKE-sealed to one device key (mailbox envelopes).
//! - [`SafetyNumber`]: the fingerprint two people compare.
//! - [`SenderKeyBook`]: held sender keys and the sealed changes waiting for
//!   theirs; [`epoch_step`] and [`epochs_for_newcomer`]: the rotation rules
//!   (neither on the live path yet).
//!
//! The scheme, its threat model and limits: docs/SECURITY.md ("End-to-end
//! encryption"); the byte layouts: docs/PROTOCOL.md.

mod device_key;
mod epoch;
mod error;
mod hpke;
mod key_book;
mod key_share;
mod safety_number;
mod sealed_box;
mod sealed_change;
mod sender_key;
mod wire;

#[cfg(test)]
mod tests;

pub use device_key::{DeviceKey, DeviceKeyring, DeviceSecret, MAX_DEVICE_KEY_VERSIONS};
pub use epoch::{epochs_for_newcomer, step as epoch_step, EpochStep, EpochView, Rotation};
pub use error::{DecodeError, OpenError, SealError};
pub use key_book::{
    Opened, Refusal, SenderKeyBook, ShareAccepted, MAX_SENDER_KEYS_PER_AUTHOR,
    MAX_SENDER_KEYS_PER_CHAT, MAX_WAITING_SEALED, MAX_WAITING_SEALED_BYTES, WAITING_SEALED_TTL_MS,
};
pub use key_share::{
    KeyShare, SealedCopy, SignedKeyShare, MAX_KEY_SHARE_BYTES, MAX_KEY_SHARE_COPIES,
};
pub use safety_number::{SafetyNumber, SAFETY_NUMBER_DIGITS};
pub use sealed_box::{SealedBox, MAX_SEALED_BOX_BYTES, MAX_SEALED_BOX_PLAINTEXT_BYTES};
pub use sealed_change::{SealedChange, MAX_SEALED_CHANGE_BYTES, MAX_SEALED_PLAINTEXT_BYTES};
pub use sender_key::SenderKey;

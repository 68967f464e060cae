//! What can go wrong decoding or opening end-to-end encrypted records. Every
//! refusal is a value: no input, however hostile, makes this module panic.

/// Why bytes were refused before any cryptography ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the record's bound; nothing was parsed.
    #[error("{size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// Empty, or a version byte this node does not know.
    #[error("unknown format version {0:?}")]
    UnknownVersion(Option<u8>),
    /// Not CBOR of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Decodes, but is not the one canonical encoding of what it holds:
    /// refused so that one record has one byte string (and one hash).
    #[error("not in canonical form")]
    NotCanonical,
    /// Well-formed, but breaks a rule of the record.
    #[error("invalid: {0}")]
    Invalid(&'static str),
}

/// Why a sealed record could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The record does not decode or breaks a rule.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// The author's signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// No copy is sealed to this device.
    #[error("not sealed to this device")]
    NotForMe,
    /// Sealed to a key version this device does not hold (any more).
    #[error("sealed to device key version {0}, which this device does not hold")]
    UnknownDeviceKey(u32),
    /// Sealed to a key that is not this device's key of that version.
    #[error("sealed to another device key")]
    WrongDeviceKey,
    /// The ciphertext does not authenticate: tampered, cut, or bound to
    /// other associated data (another chat, key id or recipient).
    #[error("does not decrypt")]
    Decrypt,
    /// The key inside does not hash to the key id the record claims.
    #[error("key does not match its key id")]
    KeyIdMismatch,
    /// Sealed under a key other than the one given.
    #[error("sealed under another key")]
    WrongKey,
}

/// Why sealing refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The recipient's key is a low-order point (the DH output is zero).
    #[error("unusable recipient key")]
    BadRecipientKey,
    /// The plaintext is larger than the record's bound.
    #[error("{size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Bytes given.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// More recipients than a key share may hold.
    #[error("{0} recipients, more than a key share holds")]
    TooManyRecipients(usize),
}

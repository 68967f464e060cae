//! Identifier newtypes: chats, messages and public keys, printed as lowercase hex.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Error parsing an identifier from its hex form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The string was not `expected` hex characters long.
    #[error("expected {expected} hex characters, got {got}")]
    WrongLength {
        /// Characters expected.
        expected: usize,
        /// Characters found.
        got: usize,
    },
    /// The string held a character that is not a hex digit.
    #[error("not a hex string")]
    NotHex,
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub(crate) fn from_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseIdError> {
    if s.len() != N * 2 {
        return Err(ParseIdError::WrongLength {
            expected: N * 2,
            got: s.len(),
        });
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::NotHex),
    };
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                from_hex::<$len>(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_string())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    let bytes: serde_bytes_array::Bytes<$len> = Deserialize::deserialize(d)?;
                    Ok(Self(bytes.0))
                }
            }
        }
    };
}

/// Deserialises a fixed-size byte array written with `serialize_bytes`.
mod serde_bytes_array {
    use std::fmt;

    pub(crate) struct Bytes<const N: usize>(pub(crate) [u8; N]);

    impl<'de, const N: usize> serde::Deserialize<'de> for Bytes<N> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor<const N: usize>;
            impl<'de, const N: usize> serde::de::Visitor<'de> for Visitor<N> {
                type Value = Bytes<N>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    write!(f, "{N} bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                    let arr: [u8; N] = v
                        .try_into()
                        .map_err(|_| E::invalid_length(v.len(), &self))?;
                    Ok(Bytes(arr))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut arr = [0u8; N];
                    for (i, slot) in arr.iter_mut().enumerate() {
                        *slot = seq
                            .next_element()?
                            .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                    }
                    Ok(Bytes(arr))
                }
            }
            d.deserialize_bytes(Visitor::<N>)
        }
    }
}

hex_id!(
    /// A chat: 32 bytes. Direct chats derive it from the two members' keys
    /// ([`ChatId::direct`]), so both sides agree with no coordination.
    ChatId,
    32
);
hex_id!(
    /// A message, unique within its chat: 8 random bytes chosen by the author
    /// followed by an 8-byte tag derived from the author's key, so no member
    /// can create a message under an id another member's message has (see
    /// [`MessageId::for_author`]).
    MessageId,
    16
);
hex_id!(
    /// An Ed25519 public key: a user's identity, the same key as its libp2p PeerId.
    PublicKey,
    32
);
hex_id!(
    /// 16 random bytes a group's creator picks; with the creator's key they
    /// make the group's chat id.
    GroupNonce,
    16
);
hex_id!(
    /// The BLAKE3 hash of a file's bytes (an iroh-blobs hash): what an
    /// attachment points at.
    BlobHash,
    32
);
hex_id!(
    /// The SHA-256 hash Automerge gives a change; the unit of deduplication.
    ChangeHash,
    32
);

hex_id!(
    /// An X25519 public key a device publishes so others can seal to it
    /// (never the Ed25519 identity key: see `crate::e2e`).
    EncryptionKey,
    32
);
hex_id!(
    /// Names one sender key: a hash committing to its chat, author, epoch
    /// and key bytes (`crate::e2e::SenderKey::key_id`).
    KeyId,
    16
);

impl ChatId {
    /// The direct chat between two keys: the same id whichever side computes it.
    pub fn direct(a: &PublicKey, b: &PublicKey) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut hasher = Sha256::new();
        hasher.update(b"meshchat/direct-chat/v1");
        hasher.update(lo.as_bytes());
        hasher.update(hi.as_bytes());
        Self(hasher.finalize().into())
    }
}

impl GroupNonce {
    /// A fresh random nonce.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl MessageId {
    /// A fresh id for a message by `author`: random bytes, then the author's tag.
    pub fn for_author(author: &PublicKey) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&rand::random::<[u8; 8]>());
        bytes[8..].copy_from_slice(&author_tag(author));
        Self(bytes)
    }

    /// The id with these 8 leading bytes for a message by `author`
    /// (deterministic ids for tests and fuzzing).
    pub fn with_prefix(author: &PublicKey, prefix: [u8; 8]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&prefix);
        bytes[8..].copy_from_slice(&author_tag(author));
        Self(bytes)
    }

    /// Whether this id carries `author`'s tag: only they may create a message under it.
    pub fn is_by(&self, author: &PublicKey) -> bool {
        self.0[8..] == author_tag(author)
    }
}

/// The 8 bytes of a message id that bind it to its author.
fn author_tag(author: &PublicKey) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(b"meshchat/message-id/v1");
    hasher.update(author.as_bytes());
    let digest = hasher.finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

impl From<automerge::ChangeHash> for ChangeHash {
    fn from(h: automerge::ChangeHash) -> Self {
        Self(h.0)
    }
}

impl From<ChangeHash> for automerge::ChangeHash {
    fn from(h: ChangeHash) -> Self {
        automerge::ChangeHash(h.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ChatId::from_bytes([0xab; 32]);
        assert_eq!(id.to_string().parse::<ChatId>().unwrap(), id);
        assert!("zz".parse::<MessageId>().is_err());
        assert!(matches!(
            "abc".parse::<MessageId>(),
            Err(ParseIdError::WrongLength { .. })
        ));
        assert_eq!(
            "g".repeat(32).parse::<MessageId>(),
            Err(ParseIdError::NotHex)
        );
    }

    #[test]
    fn direct_chat_id_is_symmetric() {
        let a = PublicKey::from_bytes([1; 32]);
        let b = PublicKey::from_bytes([2; 32]);
        assert_eq!(ChatId::direct(&a, &b), ChatId::direct(&b, &a));
        assert_ne!(ChatId::direct(&a, &b), ChatId::direct(&a, &a));
    }

    #[test]
    fn serde_binary_and_text() {
        let id = MessageId::from_bytes([7; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        let mut buf = Vec::new();
        ciborium::into_writer(&id, &mut buf).unwrap();
        let back: MessageId = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(back, id);
    }
}

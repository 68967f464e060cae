//! A file's own key: what keeps a file sent in a chat unreadable to whoever
//! holds its blob without the message (a blob store, a relay's cache, a peer
//! that learned the hash).
//!
//! Each file sent is encrypted with a fresh random 256-bit key before it is
//! imported into the blob store: the blob, its BLAKE3 hash, and every copy
//! that travels or rests anywhere are the ciphertext. The cipher is ChaCha20
//! (RFC 8439) used as a pure stream cipher, keystream XOR, with an all-zero
//! nonce and the block counter from 0. That keeps what iroh-blobs gives a blob: a byte of plaintext is
//! the byte at the same offset of ciphertext, so a download still streams,
//! is verified range by range against the hash and resumes from any offset,
//! and the sizes are equal.
//!
//! Why this is sound:
//! - *Confidentiality*: a key encrypts exactly one plaintext. It is drawn at
//!   random per file sent and never derived from anything, so the fixed nonce
//!   is never used twice under one key with two plaintexts. Forwarding a file
//!   reuses its blob, hash and key unchanged: the same ciphertext again, so
//!   nothing is learned and the blob stays deduplicated.
//! - *Integrity*: keystream XOR alone is malleable, but the hash of the
//!   ciphertext travels beside the key in the signed message, and iroh-blobs
//!   verifies every byte against it before it is stored. What decrypts is
//!   exactly what the author encrypted.
//! - *Limit*: ChaCha20's 32-bit block counter covers just under 256 GiB;
//!   [`FileKey::apply`] refuses offsets past it instead of wrapping.

use std::fmt;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::ids::{from_hex, to_hex};

/// Bytes in a [`FileKey`].
pub const FILE_KEY_BYTES: usize = 32;
/// The most bytes one key encrypts: RFC 8439 ChaCha20's keystream under its
/// 32-bit block counter, one block short of 2^32 blocks (as the `chacha20`
/// crate counts), just under 256 GiB.
pub const MAX_ENCRYPTED_FILE_BYTES: u64 = (u32::MAX as u64) * 64;

/// Keystream bytes made at a time.
const KEYSTREAM_CHUNK: usize = 4096;

/// The random key one file's blob is encrypted with; it travels inside the
/// message that attaches the file (the attachment's `key`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey([u8; FILE_KEY_BYTES]);

/// The bytes to encrypt or decrypt reach past [`MAX_ENCRYPTED_FILE_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("files larger than {MAX_ENCRYPTED_FILE_BYTES} bytes cannot be encrypted")]
pub struct FileTooLarge;

impl FileKey {
    /// A fresh random key, for one file.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Wraps raw key bytes (read from a message).
    pub const fn from_bytes(bytes: [u8; FILE_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The key from a slice, if it has exactly [`FILE_KEY_BYTES`].
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; FILE_KEY_BYTES] {
        &self.0
    }

    /// Encrypts or decrypts (the same operation) `buf`, which sits at byte
    /// `offset` of the file: pieces may be handled in any order, any size.
    /// Fails, changing nothing, if any byte lies past
    /// [`MAX_ENCRYPTED_FILE_BYTES`].
    pub fn apply(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileTooLarge> {
        let end = offset.checked_add(buf.len() as u64).ok_or(FileTooLarge)?;
        if end > MAX_ENCRYPTED_FILE_BYTES {
            return Err(FileTooLarge);
        }
        // `rand_chacha`'s ChaCha20 is Bernstein's original (64-bit counter,
        // 64-bit nonce), here with stream (nonce) 0: below 2^32 blocks its
        // keystream is RFC 8439's with a zero nonce, which the tests check
        // against the `chacha20` crate. It is used because its block
        // function is compiled (and optimised) in its own crate, where the
        // `chacha20` crate's generic code would be compiled in ours,
        // unoptimised in dev builds (6 MiB/s).
        let mut keystream = ChaCha20Rng::from_seed(self.0);
        keystream.set_word_pos(u128::from(offset / 4));
        // The stream is addressed in 4-byte words: skip into the first one.
        let mut skip = (offset % 4) as usize;
        let mut block = [0u8; KEYSTREAM_CHUNK];
        let mut done = 0;
        while done < buf.len() {
            // Only the last fill may end inside a word (`fill_bytes` drops
            // the rest of a word it ends in).
            let want = (buf.len() - done + skip).min(KEYSTREAM_CHUNK);
            keystream.fill_bytes(&mut block[..want]);
            let bytes = &block[skip..want];
            for (b, k) in buf[done..].iter_mut().zip(bytes) {
                *b ^= k;
            }
            done += bytes.len();
            skip = 0;
        }
        Ok(())
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key in a log line would undo the encryption.
        f.write_str("FileKey(..)")
    }
}

/// Hex in human-readable formats (the control API's JSON, which the user's
/// own tools read to forward or export a file), bytes otherwise.
impl Serialize for FileKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&to_hex(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for FileKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            from_hex::<FILE_KEY_BYTES>(&s)
                .map(Self)
                .map_err(serde::de::Error::custom)
        } else {
            let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
            Self::from_slice(&bytes)
                .ok_or_else(|| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn decrypting_gives_the_plaintext_back_and_the_ciphertext_hides_it() {
        let key = FileKey::generate();
        let plain = sample(10_000);
        let mut data = plain.clone();
        key.apply(0, &mut data).unwrap();
        assert_ne!(data, plain);
        assert_eq!(data.len(), plain.len(), "a stream cipher keeps the size");
        key.apply(0, &mut data).unwrap();
        assert_eq!(data, plain);
    }

    #[test]
    fn pieces_at_any_offset_match_the_whole() {
        // What streaming and resuming need: any split of the file, handled
        // piece by piece at its offset, gives the same bytes as the whole.
        let key = FileKey::from_bytes([9; 32]);
        let plain = sample(5_000);
        let mut whole = plain.clone();
        key.apply(0, &mut whole).unwrap();
        for cut in [1, 2, 3, 63, 64, 65, 1000, 4097, 4999] {
            let mut pieces = plain.clone();
            let (a, b) = pieces.split_at_mut(cut);
            key.apply(cut as u64, b).unwrap();
            key.apply(0, a).unwrap();
            assert_eq!(pieces, whole, "cut at {cut}");
        }
    }

    #[test]
    fn the_keystream_is_rfc_8439_chacha20_with_a_zero_nonce() {
        // RFC 8439, appendix A.1, test vector #1: all-zero key and nonce,
        // block counter 0.
        let key = FileKey::from_bytes([0; 32]);
        let mut block = [0u8; 64];
        key.apply(0, &mut block).unwrap();
        let expected = "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
                        da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586";
        assert_eq!(to_hex(&block), expected);
    }

    #[test]
    fn the_keystream_matches_the_chacha20_crate_at_any_offset() {
        use chacha20::{
            cipher::{KeyIvInit, StreamCipher, StreamCipherSeek},
            ChaCha20,
        };
        let key = FileKey::generate();
        let offsets = [
            0,
            1,
            3,
            4,
            63,
            64,
            4095,
            4096,
            4097,
            1 << 20,
            (1 << 32) + 5,
            MAX_ENCRYPTED_FILE_BYTES - 10_000,
        ];
        for offset in offsets {
            for len in [0, 1, 3, 5, 64, 4093, 4096, 4100, 9_000] {
                if offset + len as u64 > MAX_ENCRYPTED_FILE_BYTES {
                    continue;
                }
                let plain = sample(len);
                let mut ours = plain.clone();
                key.apply(offset, &mut ours).unwrap();
                let mut theirs = plain;
                let mut reference = ChaCha20::new(key.as_bytes().into(), &[0u8; 12].into());
                reference.seek(offset);
                reference.apply_keystream(&mut theirs);
                assert_eq!(ours, theirs, "offset {offset}, {len} bytes");
            }
        }
    }

    #[test]
    fn different_keys_give_different_ciphertexts() {
        let plain = sample(256);
        let (mut a, mut b) = (plain.clone(), plain);
        FileKey::generate().apply(0, &mut a).unwrap();
        FileKey::generate().apply(0, &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn bytes_past_the_keystream_are_refused_not_wrapped() {
        let key = FileKey::generate();
        let mut last = [7u8; 64];
        key.apply(MAX_ENCRYPTED_FILE_BYTES - 64, &mut last).unwrap();
        let mut over = [7u8; 2];
        assert_eq!(
            key.apply(MAX_ENCRYPTED_FILE_BYTES - 1, &mut over),
            Err(FileTooLarge)
        );
        assert_eq!(over, [7, 7], "nothing changed");
        assert_eq!(key.apply(u64::MAX, &mut over), Err(FileTooLarge));
    }

    #[test]
    fn a_key_reads_back_from_json_and_cbor_and_never_prints() {
        let key = FileKey::generate();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<FileKey>(&json).unwrap(), key);
        let mut cbor = Vec::new();
        ciborium::into_writer(&key, &mut cbor).unwrap();
        assert_eq!(ciborium::from_reader::<FileKey, _>(&cbor[..]).unwrap(), key);
        assert_eq!(format!("{key:?}"), "FileKey(..)");
        assert!(FileKey::from_slice(&[1; 31]).is_none());
        assert!(FileKey::from_slice(&[1; 33]).is_none());
    }
}

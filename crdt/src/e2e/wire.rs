//! The one byte layout of every e2e record: a version byte, then CBOR.
//! Decoding checks the size before parsing, the version, and that the bytes
//! are the canonical encoding of what they decode to (so a record has exactly
//! one byte string, and content-addressed stores hold it once).

use serde::{de::DeserializeOwned, Serialize};

use super::DecodeError;

/// The version byte every e2e record starts with today.
pub(crate) const E2E_VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![E2E_VERSION];
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

pub(crate) fn decode<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    match bytes.first() {
        Some(&E2E_VERSION) => {}
        other => return Err(DecodeError::UnknownVersion(other.copied())),
    }
    let value: T =
        ciborium::from_reader(&bytes[1..]).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if encode(&value) != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

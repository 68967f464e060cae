//! Safety numbers: what two people compare (read aloud, or scan as a QR
//! code) to know that the keys their apps use are each other's, as
//! WhatsApp's "security code" and Signal's safety number.
//!
//! Built like Signal's numeric fingerprint: each party's half is SHA-512
//! iterated 5,200 times over its identity key, the first 30 bytes read as
//! six 5-byte big-endian numbers, each reduced mod 100,000 to 5 digits. The
//! number is the two 30-digit halves, smaller first, so both sides compute
//! the same 60 digits; it changes whenever either identity key does. The
//! identity key is the one that signs the profile publishing the device's
//! encryption keys, so checking it covers those too.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::ids::PublicKey;

const DOMAIN: &[u8] = b"meshchat/safety-number/v1";
const ITERATIONS: usize = 5200;
/// Digits in a safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;

/// 60 decimal digits, shown as 12 groups of 5.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

fn half(key: &PublicKey) -> String {
    let mut hash = Sha512::new()
        .chain_update(DOMAIN)
        .chain_update(key.as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key.as_bytes())
            .finalize();
    }
    hash[..30]
        .chunks_exact(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

impl SafetyNumber {
    /// The safety number between `a` and `b`; the same for `(b, a)`.
    pub fn between(a: &PublicKey, b: &PublicKey) -> Self {
        let (first, second) = (half(a), half(b));
        let (lo, hi) = if first <= second {
            (first, second)
        } else {
            (second, first)
        };
        Self(lo + &hi)
    }

    /// The 60 digits, no spaces (what the QR code holds).
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The 12 groups of 5 digits.
    pub fn groups(&self) -> Vec<&str> {
        (0..self.0.len())
            .step_by(5)
            .map(|i| &self.0[i..i + 5])
            .collect()
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.groups().join(" "))
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_the_same_sixty_digits_and_a_new_key_changes_them() {
        let alice = PublicKey::from_bytes([1; 32]);
        let bob = PublicKey::from_bytes([2; 32]);
        let number = SafetyNumber::between(&alice, &bob);
        assert_eq!(number, SafetyNumber::between(&bob, &alice));
        assert_eq!(number.digits().len(), SAFETY_NUMBER_DIGITS);
        assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(number.groups().len(), 12);
        assert_eq!(number.to_string().len(), 60 + 11);

        let new_bob = PublicKey::from_bytes([3; 32]);
        assert_ne!(number, SafetyNumber::between(&alice, &new_bob));
        assert_ne!(
            number,
            SafetyNumber::between(&PublicKey::from_bytes([4; 32]), &bob)
        );
    }
}

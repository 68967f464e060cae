//! Custody receipts: a relay's signed promise to hold an envelope.

use meshchat_crdt::{Identity, PublicKey, SignatureError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"meshchat/custody-receipt/v1";

/// "I, `relay`, hold the envelope with this hash for `recipient` until
/// `held_until_ms`." Signed by the relay, so a sender can show it and prove
/// what the relay promised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyReceipt {
    /// The relay's key.
    pub relay: PublicKey,
    /// The mailbox owner.
    pub recipient: PublicKey,
    /// SHA-256 of the envelope bytes.
    #[serde(with = "serde_bytes")]
    pub envelope_hash: [u8; 32],
    /// The relay keeps it until then (relay's clock, ms since the epoch).
    pub held_until_ms: i64,
    /// Ed25519 by `relay` over the fields above, domain-tagged.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// SHA-256 of an envelope.
pub fn envelope_hash(envelope: &[u8]) -> [u8; 32] {
    Sha256::digest(envelope).into()
}

fn signed_bytes(relay: &PublicKey, recipient: &PublicKey, hash: &[u8; 32], until: i64) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(relay.as_bytes());
    out.extend_from_slice(recipient.as_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&until.to_be_bytes());
    out
}

impl CustodyReceipt {
    /// Issues a receipt as `relay` for `envelope`.
    pub fn issue(
        relay: &Identity,
        recipient: PublicKey,
        envelope: &[u8],
        held_until_ms: i64,
    ) -> Self {
        Self::sign(relay, recipient, envelope_hash(envelope), held_until_ms)
    }

    /// Issues a receipt as `relay` for the envelope with `envelope_hash`.
    pub fn sign(
        relay: &Identity,
        recipient: PublicKey,
        envelope_hash: [u8; 32],
        held_until_ms: i64,
    ) -> Self {
        let signature = relay.sign(&signed_bytes(
            &relay.public(),
            &recipient,
            &envelope_hash,
            held_until_ms,
        ));
        Self {
            relay: relay.public(),
            recipient,
            envelope_hash,
            held_until_ms,
            signature,
        }
    }

    /// What a sender checks before it counts a receipt as custody: signed by
    /// the relay it deposited at, for the recipient and envelope it sent.
    pub fn confirms(
        &self,
        relay: &PublicKey,
        recipient: &PublicKey,
        envelope_hash: &[u8; 32],
    ) -> bool {
        self.relay == *relay
            && self.recipient == *recipient
            && self.envelope_hash == *envelope_hash
            && self.verify().is_ok()
    }

    /// Checks the relay's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        meshchat_crdt::verify(
            &self.relay,
            &signed_bytes(
                &self.relay,
                &self.recipient,
                &self.envelope_hash,
                self.held_until_ms,
            ),
            &self.signature,
        )
    }
}

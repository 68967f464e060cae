//! A device's Ed25519 identity: signs the changes it authors.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

use crate::ids::PublicKey;

/// An Ed25519 signing key. The same 32 secret bytes make the node's libp2p
/// keypair, so the key that signs changes is the key behind the PeerId.
///
/// Every `Identity` value also carries a random *actor epoch*, drawn when it
/// is created or loaded: the Automerge actor id of the changes it writes is
/// the public key followed by the epoch. A device that restarts, crashes
/// before a write reached its disk, or is restored without its data dir
/// therefore writes under a new actor whose sequence numbers start at 1, and
/// can never reuse a sequence number its peers already hold.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    epoch: [u8; EPOCH_LEN],
}

/// Bytes of the actor epoch appended to the public key.
pub const EPOCH_LEN: usize = 8;
/// Length of every actor id: public key ‖ epoch.
pub const ACTOR_LEN: usize = 32 + EPOCH_LEN;

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            epoch: rand::random(),
        }
    }

    /// The identity with this 32-byte secret.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
            epoch: rand::random(),
        }
    }

    /// The identity with this secret writing under this epoch (deterministic
    /// actors for tests and fuzzing; a real node draws its epoch at random).
    pub fn with_epoch(secret: [u8; 32], epoch: [u8; EPOCH_LEN]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
            epoch,
        }
    }

    /// The same key writing under a fresh random epoch: for a device that
    /// lost writes which may already have left it (a failed flush), so that
    /// no (actor, seq) is ever used for two different changes.
    pub fn with_new_epoch(&self) -> Self {
        Self {
            key: self.key.clone(),
            epoch: rand::random(),
        }
    }

    /// The Automerge actor id this identity writes under: its public key
    /// followed by its epoch.
    pub fn actor(&self) -> automerge::ActorId {
        let mut bytes = Vec::with_capacity(ACTOR_LEN);
        bytes.extend_from_slice(self.public().as_bytes());
        bytes.extend_from_slice(&self.epoch);
        automerge::ActorId::from(bytes)
    }

    /// The 32-byte secret (store it with care: mode 0600).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_bytes(self.key.verifying_key().to_bytes())
    }

    /// Signs `message` (callers put a domain tag first, so a signature for
    /// one purpose can never be replayed for another).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The author (public key) of an actor id, if it has the shape every actor
/// must have: a 32-byte public key followed by an epoch.
pub fn author_of(actor: &automerge::ActorId) -> Option<PublicKey> {
    let bytes = actor.to_bytes();
    if bytes.len() != ACTOR_LEN {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[..32]);
    Some(PublicKey::from_bytes(key))
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The 32 bytes are not a valid Ed25519 point.
    #[error("not a valid Ed25519 public key")]
    BadKey,
    /// The signature does not match the message and key.
    #[error("signature does not verify")]
    Mismatch,
}

/// Checks an Ed25519 signature by `key` over `message`.
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(key.as_bytes()).map_err(|_| SignatureError::BadKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify(message, &sig)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let id = Identity::generate();
        let sig = id.sign(b"hello");
        assert_eq!(verify(&id.public(), b"hello", &sig), Ok(()));
        assert_eq!(
            verify(&id.public(), b"hellO", &sig),
            Err(SignatureError::Mismatch)
        );
        let again = Identity::from_secret_bytes(id.secret_bytes());
        assert_eq!(again.public(), id.public());
    }
}

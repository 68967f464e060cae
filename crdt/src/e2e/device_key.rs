//! A device's X25519 encryption keys: what others seal sender keys and mail
//! to. Separate from the Ed25519 identity on purpose (one key, one job: a
//! signing key used for Diffie-Hellman would tie the two protocols' security
//! together). Keys are versioned; a device keeps its old secrets so that key
//! shares sealed to an older version stay openable after a rotation.

use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use super::DecodeError;
use crate::ids::EncryptionKey;

/// Most key versions a device keeps (and a keyring file may hold).
pub const MAX_DEVICE_KEY_VERSIONS: usize = 64;
/// Bytes of one keyring entry on disk: version (u32 BE) ‖ secret.
const ENTRY_LEN: usize = 4 + 32;

/// A device's public encryption key at one version: what its signed profile
/// publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceKey {
    /// Starts at 1 and grows with every rotation.
    pub version: u32,
    /// The X25519 public key.
    pub key: EncryptionKey,
}

/// One version of a device's X25519 secret.
#[derive(Clone)]
pub struct DeviceSecret {
    version: u32,
    secret: StaticSecret,
}

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSecret")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl DeviceSecret {
    /// A fresh random secret at `version`.
    pub fn generate(version: u32) -> Self {
        Self::from_bytes(version, rand::random())
    }

    /// The secret with these bytes.
    pub fn from_bytes(version: u32, bytes: [u8; 32]) -> Self {
        Self {
            version,
            secret: StaticSecret::from(bytes),
        }
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// What to publish.
    pub fn public(&self) -> DeviceKey {
        DeviceKey {
            version: self.version,
            key: EncryptionKey::from_bytes(X25519Public::from(&self.secret).to_bytes()),
        }
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

/// Every encryption secret a device holds, newest last. The newest is the
/// one it publishes; the older ones only open what was sealed to them.
#[derive(Debug, Clone)]
pub struct DeviceKeyring {
    /// Strictly increasing versions; never empty.
    secrets: Vec<DeviceSecret>,
}

impl DeviceKeyring {
    /// A keyring with one fresh key, version 1.
    pub fn generate() -> Self {
        Self {
            secrets: vec![DeviceSecret::generate(1)],
        }
    }

    /// The key to publish and to be sealed to.
    pub fn current(&self) -> &DeviceSecret {
        self.secrets.last().expect("a keyring is never empty")
    }

    /// The secret of `version`, if still held.
    pub fn get(&self, version: u32) -> Option<&DeviceSecret> {
        self.secrets.iter().find(|s| s.version == version)
    }

    /// Adds a new current key (version + 1) and returns its public half. The
    /// oldest key is dropped past [`MAX_DEVICE_KEY_VERSIONS`]: what was
    /// sealed only to it can no longer be opened.
    pub fn rotate(&mut self) -> DeviceKey {
        let version = self.current().version.saturating_add(1);
        self.secrets.push(DeviceSecret::generate(version));
        if self.secrets.len() > MAX_DEVICE_KEY_VERSIONS {
            self.secrets.remove(0);
        }
        self.current().public()
    }

    /// The on-disk form: each entry version (u32 BE) ‖ secret, oldest first.
    /// Secret: store with mode 0600.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.secrets.len() * ENTRY_LEN));
        for entry in &self.secrets {
            out.extend_from_slice(&entry.version.to_be_bytes());
            out.extend_from_slice(entry.secret.as_bytes());
        }
        out
    }

    /// Reads [`Self::to_bytes`] strictly: whole entries, 1 to
    /// [`MAX_DEVICE_KEY_VERSIONS`] of them, versions from 1 and strictly
    /// increasing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let limit = MAX_DEVICE_KEY_VERSIONS * ENTRY_LEN;
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        if bytes.is_empty() || !bytes.len().is_multiple_of(ENTRY_LEN) {
            return Err(DecodeError::Invalid("not whole keyring entries"));
        }
        let mut secrets: Vec<DeviceSecret> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for entry in bytes.chunks_exact(ENTRY_LEN) {
            let (version, secret) = entry.split_at(4);
            let version = u32::from_be_bytes(version.try_into().expect("4 bytes"));
            let secret: [u8; 32] = secret.try_into().expect("32 bytes");
            let increasing = secrets.last().map_or(version >= 1, |p| version > p.version);
            if !increasing {
                return Err(DecodeError::Invalid("key versions out of order"));
            }
            secrets.push(DeviceSecret::from_bytes(version, secret));
        }
        Ok(Self { secrets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_round_trips_and_keeps_old_versions_after_rotation() {
        let mut ring = DeviceKeyring::generate();
        let first = ring.current().public();
        let second = ring.rotate();
        assert_eq!((first.version, second.version), (1, 2));
        assert_ne!(first.key, second.key);
        let back = DeviceKeyring::from_bytes(&ring.to_bytes()).unwrap();
        assert_eq!(back.current().public(), second);
        assert_eq!(back.get(1).unwrap().public(), first);
    }

    #[test]
    fn only_the_newest_versions_are_kept() {
        let mut ring = DeviceKeyring::generate();
        for _ in 0..MAX_DEVICE_KEY_VERSIONS + 3 {
            ring.rotate();
        }
        assert_eq!(ring.secrets.len(), MAX_DEVICE_KEY_VERSIONS);
        assert!(ring.get(1).is_none());
        assert!(DeviceKeyring::from_bytes(&ring.to_bytes()).is_ok());
    }

    #[test]
    fn a_bad_keyring_file_is_refused() {
        let entry = |v: u32| [&v.to_be_bytes()[..], &[7u8; 32]].concat();
        assert!(DeviceKeyring::from_bytes(&[]).is_err());
        assert!(DeviceKeyring::from_bytes(&[1, 2, 3]).is_err());
        assert!(DeviceKeyring::from_bytes(&entry(0)).is_err());
        assert!(DeviceKeyring::from_bytes(&[entry(2), entry(2)].concat()).is_err());
        assert!(DeviceKeyring::from_bytes(&[entry(3), entry(2)].concat()).is_err());
        let huge = vec![0u8; (MAX_DEVICE_KEY_VERSIONS + 1) * ENTRY_LEN];
        assert!(matches!(
            DeviceKeyring::from_bytes(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(DeviceKeyring::from_bytes(&[entry(1), entry(5)].concat()).is_ok());
    }
}

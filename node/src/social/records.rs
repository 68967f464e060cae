//! Signed records a peer publishes about itself: its profile (name, status,
//! avatar, relays) and presence heartbeats. Each is a CBOR body plus an
//! Ed25519 signature by the peer's identity over a domain-separated message,
//! so a record can travel through anyone (a contact, the DHT) unchanged.

use libp2p::Multiaddr;
use meshchat_crdt::{e2e::DeviceKey, Identity, PublicKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Largest encoded profile body.
pub const MAX_PROFILE_BYTES: usize = 4 * 1024;
/// Largest profile record (a signed profile as published in the DHT): the
/// largest body plus the key, the signature and their CBOR framing.
pub const MAX_PROFILE_RECORD_BYTES: usize = MAX_PROFILE_BYTES + 160;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest "about" status, in characters.
pub const MAX_STATUS_CHARS: usize = 256;
/// Most relays a profile lists.
pub const MAX_PROFILE_RELAYS: usize = 8;

const PROFILE_DOMAIN: &[u8] = b"meshchat/profile/v1";
const HEARTBEAT_DOMAIN: &[u8] = b"meshchat/presence/v1";
/// DHT key prefix of profile records; the peer's public key follows.
const PROFILE_KEY_PREFIX: &[u8] = b"/meshchat/profile/1/";

/// What a peer says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub name: Option<String>,
    /// "About" status line.
    pub status: Option<String>,
    /// BLAKE3 hash (hex) of the profile picture blob.
    pub avatar: Option<String>,
    /// Relays holding this peer's mail while it is offline (`…/p2p/<RELAY>`).
    pub relays: Vec<Multiaddr>,
    /// When the user last changed it (the signer's clock; display only).
    pub updated_at_ms: i64,
    /// Strictly increases with every change: the higher version wins.
    pub version: u64,
    /// The device's current X25519 encryption key, what others seal to (key
    /// shares, mail). Absent in profiles of nodes older than end-to-end
    /// encryption, which are still accepted; left out of the encoding when
    /// absent, so their records keep their exact bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<DeviceKey>,
}

/// A profile with its signer and signature, as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProfile {
    /// The peer the profile describes (and who signed it).
    pub peer: PublicKey,
    /// CBOR of [`Profile`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature over the domain, `peer` and `body`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// "I am online" (or, last, "going offline"), sent to contacts periodically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender.
    pub peer: PublicKey,
    /// Increases with every heartbeat of one run; replays of older ones are ignored.
    pub seq: u64,
    /// The node is shutting down: show it offline now.
    pub leaving: bool,
    /// Ed25519 signature over the domain, `peer`, `seq` and `leaving`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// Why a signed record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The signature does not verify for the claimed peer.
    #[error("bad signature")]
    BadSignature,
    /// The body does not decode or breaks a limit.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The record is not newer than the one already held.
    #[error("stale record (version {got}, have {have})")]
    Stale {
        /// Version received.
        got: u64,
        /// Version held.
        have: u64,
    },
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    ciborium::from_reader(bytes).map_err(|e| RecordError::Invalid(e.to_string()))
}

fn profile_message(peer: &PublicKey, body: &[u8]) -> Vec<u8> {
    [PROFILE_DOMAIN, peer.as_bytes(), body].concat()
}

fn heartbeat_message(peer: &PublicKey, seq: u64, leaving: bool) -> Vec<u8> {
    [
        HEARTBEAT_DOMAIN,
        peer.as_bytes(),
        &seq.to_be_bytes(),
        &[u8::from(leaving)],
    ]
    .concat()
}

impl Profile {
    /// Checks the limits a receiver enforces.
    pub fn validate(&self) -> Result<(), RecordError> {
        let too_long = |field: &Option<String>, max: usize| {
            field.as_ref().is_some_and(|s| s.chars().count() > max)
        };
        if too_long(&self.name, MAX_NAME_CHARS) {
            return Err(RecordError::Invalid(format!(
                "name longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if too_long(&self.status, MAX_STATUS_CHARS) {
            return Err(RecordError::Invalid(format!(
                "status longer than {MAX_STATUS_CHARS} characters"
            )));
        }
        if self.relays.len() > MAX_PROFILE_RELAYS {
            return Err(RecordError::Invalid(format!(
                "more than {MAX_PROFILE_RELAYS} relays"
            )));
        }
        if let Some(avatar) = &self.avatar {
            let hex = avatar.len() == 64 && avatar.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                return Err(RecordError::Invalid("avatar is not a BLAKE3 hash".into()));
            }
        }
        Ok(())
    }

    /// Signs the profile as `identity`.
    pub fn sign(&self, identity: &Identity) -> Result<SignedProfile, RecordError> {
        self.validate()?;
        let body = cbor(self);
        if body.len() > MAX_PROFILE_BYTES {
            return Err(RecordError::Invalid(format!(
                "profile larger than {MAX_PROFILE_BYTES} bytes"
            )));
        }
        let peer = identity.public();
        let signature = identity.sign(&profile_message(&peer, &body)).to_vec();
        Ok(SignedProfile {
            peer,
            body,
            signature,
        })
    }
}

impl SignedProfile {
    /// Verifies the signature and limits; returns the profile.
    pub fn verify(&self) -> Result<Profile, RecordError> {
        if self.body.len() > MAX_PROFILE_BYTES {
            return Err(RecordError::Invalid("profile too large".into()));
        }
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| RecordError::BadSignature)?;
        meshchat_crdt::verify(
            &self.peer,
            &profile_message(&self.peer, &self.body),
            &signature,
        )
        .map_err(|_| RecordError::BadSignature)?;
        let profile: Profile = from_cbor(&self.body)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Encodes for storage or the DHT.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor(self)
    }

    /// Decodes and verifies stored or DHT bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, Profile), RecordError> {
        if bytes.len() > MAX_PROFILE_BYTES * 2 {
            return Err(RecordError::Invalid("record too large".into()));
        }
        let signed: Self = from_cbor(bytes)?;
        let profile = signed.verify()?;
        Ok((signed, profile))
    }
}

impl SignedProfile {
    /// Decodes and verifies a DHT record strictly: at most
    /// [`MAX_PROFILE_RECORD_BYTES`], and byte for byte the canonical encoding
    /// of what was decoded, so a record cannot carry anything the signature
    /// does not cover (extra fields, padding, odd encodings).
    pub fn from_record_bytes(bytes: &[u8]) -> Result<(Self, Profile), RecordError> {
        if bytes.len() > MAX_PROFILE_RECORD_BYTES {
            return Err(RecordError::Invalid(format!(
                "record larger than {MAX_PROFILE_RECORD_BYTES} bytes"
            )));
        }
        let (signed, profile) = Self::from_bytes(bytes)?;
        if signed.to_bytes() != bytes {
            return Err(RecordError::Invalid(
                "record carries bytes the signature does not cover".into(),
            ));
        }
        Ok((signed, profile))
    }
}

/// The DHT key under which `peer` publishes its profile.
pub fn profile_dht_key(peer: &PublicKey) -> Vec<u8> {
    [PROFILE_KEY_PREFIX, peer.as_bytes()].concat()
}

/// The peer whose profile a DHT key names, if it is one.
pub fn peer_of_profile_key(key: &[u8]) -> Option<PublicKey> {
    let rest = key.strip_prefix(PROFILE_KEY_PREFIX)?;
    Some(PublicKey::from_bytes(rest.try_into().ok()?))
}

impl Heartbeat {
    /// A signed heartbeat.
    pub fn new(identity: &Identity, seq: u64, leaving: bool) -> Self {
        let peer = identity.public();
        Self {
            peer,
            seq,
            leaving,
            signature: identity.sign(&heartbeat_message(&peer, seq, leaving)),
        }
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        meshchat_crdt::verify(
            &self.peer,
            &heartbeat_message(&self.peer, self.seq, self.leaving),
            &self.signature,
        )
        .map_err(|_| RecordError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(version: u64) -> Profile {
        Profile {
            name: Some("alice".into()),
            status: Some("hi".into()),
            avatar: None,
            relays: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
            updated_at_ms: 5,
            version,
            encryption_key: None,
        }
    }

    #[test]
    fn profiles_carry_an_encryption_key_and_older_ones_without_it_still_verify() {
        let alice = Identity::generate();
        let keys = meshchat_crdt::e2e::DeviceKeyring::generate();
        let with_key = Profile {
            encryption_key: Some(keys.current().public()),
            ..profile(3)
        };
        let signed = with_key.sign(&alice).unwrap();
        let (_, back) = SignedProfile::from_record_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back.encryption_key, Some(keys.current().public()));

        // What a node older than e2e signs: the same map without the field.
        #[derive(Serialize)]
        struct OlderProfile {
            name: Option<String>,
            status: Option<String>,
            avatar: Option<String>,
            relays: Vec<Multiaddr>,
            updated_at_ms: i64,
            version: u64,
        }
        let older = OlderProfile {
            name: Some("old".into()),
            status: None,
            avatar: None,
            relays: Vec::new(),
            updated_at_ms: 1,
            version: 1,
        };
        let body = cbor(&older);
        let old_signed = SignedProfile {
            peer: alice.public(),
            signature: alice
                .sign(&profile_message(&alice.public(), &body))
                .to_vec(),
            body,
        };
        let (_, back) = SignedProfile::from_record_bytes(&old_signed.to_bytes()).unwrap();
        assert_eq!(back.encryption_key, None);
        assert_eq!(back.name.as_deref(), Some("old"));
    }

    #[test]
    fn signed_profile_round_trips() {
        let alice = Identity::generate();
        let signed = profile(1).sign(&alice).unwrap();
        let (back, p) = SignedProfile::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);
        assert_eq!(p, profile(1));
    }

    #[test]
    fn forged_profiles_are_refused() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        // Mallory's signature under Alice's name.
        let mut forged = profile(2).sign(&mallory).unwrap();
        forged.peer = alice.public();
        assert_eq!(forged.verify(), Err(RecordError::BadSignature));
        // A body changed after signing.
        let mut tampered = profile(2).sign(&alice).unwrap();
        let mut changed = profile(2);
        changed.name = Some("mallory".into());
        tampered.body = cbor(&changed);
        assert_eq!(tampered.verify(), Err(RecordError::BadSignature));
        // Garbage.
        assert!(SignedProfile::from_bytes(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let alice = Identity::generate();
        let mut long = profile(1);
        long.name = Some("x".repeat(MAX_NAME_CHARS + 1));
        assert!(matches!(long.sign(&alice), Err(RecordError::Invalid(_))));
        let mut bad_avatar = profile(1);
        bad_avatar.avatar = Some("not-a-hash".into());
        assert!(matches!(
            bad_avatar.sign(&alice),
            Err(RecordError::Invalid(_))
        ));
    }

    #[test]
    fn heartbeats_verify_and_forgeries_do_not() {
        let alice = Identity::generate();
        let beat = Heartbeat::new(&alice, 7, false);
        assert!(beat.verify().is_ok());
        let mut replayed_as_leaving = beat;
        replayed_as_leaving.leaving = true;
        assert_eq!(replayed_as_leaving.verify(), Err(RecordError::BadSignature));
    }

    #[test]
    fn dht_records_carry_nothing_unsigned() {
        #[derive(Serialize)]
        struct Padded<'a> {
            peer: PublicKey,
            #[serde(with = "serde_bytes")]
            body: &'a [u8],
            #[serde(with = "serde_bytes")]
            signature: &'a [u8],
            #[serde(with = "serde_bytes")]
            padding: Vec<u8>,
        }
        let alice = Identity::generate();
        let signed = profile(1).sign(&alice).unwrap();
        assert!(SignedProfile::from_record_bytes(&signed.to_bytes()).is_ok());
        // The same signed profile with an unsigned field: the lenient decoder
        // takes it, the DHT does not.
        let padded = cbor(&Padded {
            peer: signed.peer,
            body: &signed.body,
            signature: &signed.signature,
            padding: vec![0; 64],
        });
        assert!(SignedProfile::from_bytes(&padded).is_ok());
        assert!(matches!(
            SignedProfile::from_record_bytes(&padded),
            Err(RecordError::Invalid(_))
        ));
        // The largest body a profile may have (4 KiB, here with a field this
        // version does not know, which is signed and so allowed) fits.
        #[derive(Serialize)]
        struct Future {
            relays: Vec<Multiaddr>,
            updated_at_ms: i64,
            version: u64,
            #[serde(with = "serde_bytes")]
            extra: Vec<u8>,
        }
        let future = |n| Future {
            relays: vec![],
            updated_at_ms: 0,
            version: 1,
            extra: vec![0; n],
        };
        let overhead = cbor(&future(1000)).len() - 1000;
        let body = cbor(&future(MAX_PROFILE_BYTES - overhead));
        assert_eq!(body.len(), MAX_PROFILE_BYTES);
        let largest = SignedProfile {
            peer: alice.public(),
            signature: alice
                .sign(&profile_message(&alice.public(), &body))
                .to_vec(),
            body,
        };
        assert!(SignedProfile::from_record_bytes(&largest.to_bytes()).is_ok());
        let oversize = vec![0u8; MAX_PROFILE_RECORD_BYTES + 1];
        assert!(matches!(
            SignedProfile::from_record_bytes(&oversize),
            Err(RecordError::Invalid(_))
        ));
    }

    #[test]
    fn dht_keys_name_their_peer() {
        let alice = Identity::generate();
        let key = profile_dht_key(&alice.public());
        assert_eq!(peer_of_profile_key(&key), Some(alice.public()));
        assert_eq!(peer_of_profile_key(b"/other/key"), None);
    }
}

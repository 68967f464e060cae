//! One Ed25519 key, two views: meshchat's [`PublicKey`] and libp2p's [`PeerId`].

use libp2p::{identity, PeerId};
use meshchat_crdt::{Identity, PublicKey};

/// The libp2p keypair made of the same secret as `identity`.
pub(crate) fn libp2p_keypair(identity: &Identity) -> identity::Keypair {
    identity::Keypair::ed25519_from_bytes(identity.secret_bytes())
        .expect("32 bytes are always a valid ed25519 secret")
}

/// The PeerId of a meshchat public key, or `None` for bytes that are not a key.
pub fn peer_id_of(key: &PublicKey) -> Option<PeerId> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(identity::PublicKey::from(ed).to_peer_id())
}

/// The meshchat public key inside a PeerId, when the PeerId is an Ed25519 key
/// (meshchat peers always are).
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    // Ed25519 PeerIds inline the key with the identity multihash (code 0).
    if multihash.code() != 0 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(PublicKey::from_bytes(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_public_key_round_trip() {
        let id = Identity::generate();
        let peer = libp2p_keypair(&id).public().to_peer_id();
        assert_eq!(peer_id_of(&id.public()), Some(peer));
        assert_eq!(public_key_of(&peer), Some(id.public()));
        assert_eq!(public_key_of(&PeerId::random()), None);
    }
}

//! Which mail is sealed, and to which key: the glue between the actor's
//! deposits and `sealed_mail::seal_envelope`. Free functions over what they
//! need, so the rule is readable in one place.

use meshchat_crdt::{
    e2e::{DeviceKey, DeviceSecret},
    EncryptionKey, PublicKey, SignedChange,
};

use super::sealed_mail::seal_envelope;
use crate::{
    media::relay_proof::attached_hashes,
    store::{Store, StoreError},
};

/// Encryption keys from invites: `peer (32) → version (u32 BE) ‖ key (32)`.
/// One entry per peer the user added from an invite.
const INVITE_KEYS_TREE: &str = "invite_keys";

/// The encryption key `peer` publishes, from its verified profile as
/// stored here, else from the invite the user added it from; `None` for a
/// peer known by neither, or running a node older than end-to-end
/// encryption.
pub(crate) fn encryption_key_of(store: &Store, peer: &PublicKey) -> Option<DeviceKey> {
    profile_key(store, peer).or_else(|| invite_key(store, peer))
}

fn profile_key(store: &Store, peer: &PublicKey) -> Option<DeviceKey> {
    let signed = store.profile(peer).ok().flatten()?;
    // Stored profiles were verified on arrival; verify again rather than
    // trust the disk with what decides who can read the mail.
    let profile = signed.verify().ok()?;
    (signed.peer == *peer).then_some(profile.encryption_key)?
}

fn invite_key(store: &Store, peer: &PublicKey) -> Option<DeviceKey> {
    let tree = store.handle().tree(INVITE_KEYS_TREE).ok()?;
    let value = tree.get(peer.as_bytes()).ok()??;
    let (version, key) = value.split_at_checked(4)?;
    Some(DeviceKey {
        version: u32::from_be_bytes(version.try_into().ok()?),
        key: EncryptionKey::from_bytes(key.try_into().ok()?),
    })
}

/// Keeps the encryption key an invite gave for `peer` (unflushed: the
/// contact's own flush covers it).
pub(crate) fn keep_invite_key(
    store: &Store,
    peer: &PublicKey,
    key: DeviceKey,
) -> Result<(), StoreError> {
    let value = [&key.version.to_be_bytes()[..], key.key.as_bytes()].concat();
    store
        .handle()
        .tree(INVITE_KEYS_TREE)?
        .insert(peer.as_bytes(), value)
        .map_err(|e| store.failed(e.into()))?;
    Ok(())
}

/// The envelope deposited for `recipient`, sealed to its `key`. `None`
/// when the key is unusable (a low-order point, which only its owner can
/// publish): that mail is not deposited in the clear, it waits for a direct
/// delivery.
pub(crate) fn mail_envelope(
    changes: Vec<SignedChange>,
    recipient: &PublicKey,
    key: &DeviceKey,
    sender: &DeviceSecret,
) -> Option<Vec<u8>> {
    let attaches = attached_hashes(&changes);
    match seal_envelope(changes, attaches, recipient, key, sender) {
        Ok(envelope) => Some(envelope),
        Err(error) => {
            tracing::warn!(%recipient, %error, "cannot seal mail to this key; not depositing it");
            None
        }
    }
}

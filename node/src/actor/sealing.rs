//! Which mail is sealed, and to which key: the glue between the actor's
//! deposits and `protocol::seal_envelope`. Free functions over what they
//! need, so the rule is readable in one place.

use meshchat_crdt::{
    e2e::{DeviceKey, DeviceSecret},
    PublicKey, SignedChange,
};

use crate::{
    blobs::relay_proof::attached_hashes,
    protocol::{encode_frame, seal_envelope, Envelope},
    store::Store,
};

/// The encryption key `peer` publishes, from its verified profile as
/// stored here; `None` for a peer whose profile has not arrived or comes
/// from a node older than end-to-end encryption.
pub(super) fn encryption_key_of(store: &Store, peer: &PublicKey) -> Option<DeviceKey> {
    let signed = store.profile(peer).ok().flatten()?;
    // Stored profiles were verified on arrival; verify again rather than
    // trust the disk with what decides who can read the mail.
    let profile = signed.verify().ok()?;
    (signed.peer == *peer).then_some(profile.encryption_key)?
}

/// The envelope deposited for `recipient`: sealed to its key when it is
/// known, plain otherwise. `None` when the key is known but unusable (a
/// low-order point, which only its owner can publish): that mail is not
/// deposited in the clear, it waits for a direct delivery.
pub(super) fn mail_envelope(
    changes: Vec<SignedChange>,
    recipient: &PublicKey,
    key: Option<&DeviceKey>,
    sender: &DeviceSecret,
) -> Option<Vec<u8>> {
    let Some(key) = key else {
        return Some(encode_frame(&Envelope::Changes(changes)));
    };
    let attaches = attached_hashes(&changes);
    match seal_envelope(changes, attaches, recipient, key, sender) {
        Ok(envelope) => Some(envelope),
        Err(error) => {
            tracing::warn!(%recipient, %error, "cannot seal mail to this key; not depositing it");
            None
        }
    }
}

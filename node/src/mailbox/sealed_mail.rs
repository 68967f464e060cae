//! Sealed mail: a mailbox envelope HPKE-sealed to the recipient's device key
//! (`meshchat_crdt::e2e::SealedBox`), so a relay stores only ciphertext.
//! Sealing and opening are pure; the actor picks the key (the recipient's
//! verified profile) and drops what does not open.

use meshchat_crdt::{
    e2e::{DecodeError, DeviceKey, DeviceKeyring, DeviceSecret, OpenError, SealError, SealedBox},
    BlobHash, PublicKey, SignedChange,
};

use super::wire::Envelope;
use crate::framing::{decode_frame, encode_frame, WireError};

/// HPKE context of mail: a box sealed for anything else does not open as mail.
const MAIL_CONTEXT: &[u8] = b"meshchat/mailbox-envelope/v1";
/// Most attachment hashes a sealed envelope names in the clear (only the
/// relay's blob-cache proof reads them; see docs/SECURITY.md).
pub const MAX_ENVELOPE_ATTACHES: usize = 64;

/// Why mail could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not an envelope frame.
    #[error(transparent)]
    Frame(#[from] WireError),
    /// The sealed box does not decode.
    #[error("sealed mail: {0}")]
    Box(#[from] DecodeError),
    /// The box does not open with this device's keys.
    #[error("sealed mail: {0}")]
    Open(#[from] OpenError),
    /// A sealed envelope inside a sealed envelope.
    #[error("sealed mail inside sealed mail")]
    Nested,
    /// More attachment hashes than an envelope may name.
    #[error("more than {MAX_ENVELOPE_ATTACHES} attachment hashes")]
    TooManyAttaches,
}

/// The envelope for `changes`, sealed to `recipient`'s `device_key`
/// (deterministically from `sender`'s secret: the same changes give the same
/// bytes, so a relay recognises a repeated deposit). `attaches` lists the
/// blob hashes the changes attach, at most [`MAX_ENVELOPE_ATTACHES`] (the
/// rest are left out: they only lose the relay's cache).
pub fn seal_envelope(
    changes: Vec<SignedChange>,
    mut attaches: Vec<BlobHash>,
    recipient: &PublicKey,
    device_key: &DeviceKey,
    sender: &DeviceSecret,
) -> Result<Vec<u8>, SealError> {
    let inner = encode_frame(&Envelope::Changes(changes));
    let sealed =
        SealedBox::seal_deterministic(MAIL_CONTEXT, recipient, device_key, &inner, sender)?;
    attaches.sort();
    attaches.dedup();
    attaches.truncate(MAX_ENVELOPE_ATTACHES);
    Ok(encode_frame(&Envelope::Sealed {
        sealed: sealed.to_bytes(),
        attaches,
    }))
}

/// The changes in mail for `me`: a plain envelope as it is, a sealed one
/// opened with `keyring`. Never panics; anything else is an error (the
/// caller drops that item and keeps the rest of the page).
pub fn open_envelope(
    bytes: &[u8],
    me: &PublicKey,
    keyring: &DeviceKeyring,
) -> Result<Vec<SignedChange>, EnvelopeError> {
    match decode_frame::<Envelope>(bytes)? {
        Envelope::Changes(changes) => Ok(changes),
        Envelope::Sealed { sealed, attaches } => {
            if attaches.len() > MAX_ENVELOPE_ATTACHES {
                return Err(EnvelopeError::TooManyAttaches);
            }
            let inner = SealedBox::from_bytes(&sealed)?.open(MAIL_CONTEXT, me, keyring)?;
            match decode_frame::<Envelope>(&inner)? {
                Envelope::Changes(changes) => Ok(changes),
                Envelope::Sealed { .. } => Err(EnvelopeError::Nested),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    #[test]
    fn sealed_mail_opens_for_its_recipient_only_and_hides_its_changes() {
        let me = Identity::generate().public();
        let keyring = DeviceKeyring::generate();
        let sender = DeviceKeyring::generate();
        let marker = b"plaintext marker".to_vec();
        let change = SignedChange {
            chat: meshchat_crdt::ChatId::from_bytes([1; 32]),
            segment: 0,
            meta_heads: Vec::new(),
            change: marker.clone(),
            signature: [0; 64],
        };
        let device_key = keyring.current().public();
        let sealed = seal_envelope(
            vec![change.clone()],
            Vec::new(),
            &me,
            &device_key,
            sender.current(),
        )
        .unwrap();
        assert!(!sealed.windows(marker.len()).any(|w| w == marker.as_slice()));
        // Deterministic: a repeat is the same bytes.
        let again = seal_envelope(
            vec![change.clone()],
            Vec::new(),
            &me,
            &device_key,
            sender.current(),
        )
        .unwrap();
        assert_eq!(sealed, again);
        assert_eq!(
            open_envelope(&sealed, &me, &keyring).unwrap(),
            vec![change.clone()]
        );
        // Another device, another recipient, a cut or bent box: refused.
        let stranger = DeviceKeyring::generate();
        assert!(open_envelope(&sealed, &me, &stranger).is_err());
        let someone = Identity::generate().public();
        assert!(open_envelope(&sealed, &someone, &keyring).is_err());
        for cut in 0..sealed.len() {
            assert!(open_envelope(&sealed[..cut], &me, &keyring).is_err());
        }
        let mut bent = sealed.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert!(open_envelope(&bent, &me, &keyring).is_err());
        // Plain envelopes (older senders) still open.
        let plain = encode_frame(&Envelope::Changes(vec![change.clone()]));
        assert_eq!(open_envelope(&plain, &me, &keyring).unwrap(), vec![change]);
        // Sealed inside sealed is refused.
        let inner_box = SealedBox::seal(MAIL_CONTEXT, &me, &device_key, &sealed).unwrap();
        let nested = encode_frame(&Envelope::Sealed {
            sealed: inner_box.to_bytes(),
            attaches: Vec::new(),
        });
        assert!(matches!(
            open_envelope(&nested, &me, &keyring),
            Err(EnvelopeError::Nested)
        ));
    }
}

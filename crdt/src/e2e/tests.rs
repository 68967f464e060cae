//! Hostile tests of the e2e core: forged, replayed, spliced and cut records
//! are refused with an error, never a panic.

use super::*;
use crate::{
    identity::Identity,
    ids::{ChatId, PublicKey},
};

struct Device {
    identity: Identity,
    keyring: DeviceKeyring,
}

impl Device {
    fn new(seed: u8) -> Self {
        Self {
            identity: Identity::from_secret_bytes([seed; 32]),
            keyring: DeviceKeyring::generate(),
        }
    }

    fn me(&self) -> PublicKey {
        self.identity.public()
    }

    fn addressee(&self) -> (PublicKey, DeviceKey) {
        (self.me(), self.keyring.current().public())
    }
}

fn chat() -> ChatId {
    ChatId::from_bytes([42; 32])
}

fn share_from(author: &Device, key: &SenderKey, to: &[&Device]) -> SignedKeyShare {
    let recipients: Vec<_> = to.iter().map(|d| d.addressee()).collect();
    SignedKeyShare::seal(&author.identity, key, &recipients).unwrap()
}

#[test]
fn a_key_share_opens_for_each_recipient_and_nobody_else() {
    let (alice, bob, carol, eve) = (
        Device::new(1),
        Device::new(2),
        Device::new(3),
        Device::new(4),
    );
    let key = SenderKey::generate(chat(), alice.me(), 7);
    let signed = share_from(&alice, &key, &[&bob, &carol]);
    let (decoded, _) = SignedKeyShare::from_bytes(&signed.to_bytes()).unwrap();
    assert_eq!(decoded, signed);
    let share = decoded.verify().unwrap();
    assert_eq!(share.open(&bob.me(), &bob.keyring).unwrap(), key);
    assert_eq!(share.open(&carol.me(), &carol.keyring).unwrap(), key);
    assert_eq!(
        share.open(&eve.me(), &eve.keyring),
        Err(OpenError::NotForMe)
    );
    // Eve claiming to be Bob, with her own keys: Bob's copy is not hers.
    assert!(share.open(&bob.me(), &eve.keyring).is_err());
}

#[test]
fn a_forged_or_altered_key_share_is_refused() {
    let (alice, bob, mallory) = (Device::new(1), Device::new(2), Device::new(5));
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let signed = share_from(&alice, &key, &[&bob]);

    // Mallory signs a share claiming Alice as author.
    let mallory_key = SenderKey::generate(chat(), alice.me(), 1);
    let mut forged = share_from(&mallory, &mallory_key, &[&bob]);
    let (_, mut body) = SignedKeyShare::from_bytes(&forged.to_bytes()).unwrap();
    body.author = alice.me();
    forged.body = wire::encode(&body);
    assert_eq!(forged.verify(), Err(OpenError::BadSignature));

    // Any bit flipped in Alice's share.
    for i in 0..signed.body.len() {
        let mut bent = signed.clone();
        bent.body[i] ^= 0x01;
        assert!(bent.verify().is_err(), "byte {i}");
    }
    let mut bent = signed.clone();
    bent.signature[0] ^= 1;
    assert_eq!(bent.verify(), Err(OpenError::BadSignature));
}

#[test]
fn a_copy_lifted_into_another_share_does_not_open() {
    let (alice, bob, mallory) = (Device::new(1), Device::new(2), Device::new(5));
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let alices = share_from(&alice, &key, &[&bob]).verify().unwrap();

    // Mallory, a member, re-signs Alice's copy for Bob as her own key, for
    // this chat and for another one.
    for (chat_id, author) in [
        (chat(), mallory.me()),
        (ChatId::from_bytes([9; 32]), alice.me()),
    ] {
        let theft = KeyShare {
            chat: chat_id,
            author,
            ..alices.clone()
        };
        assert_eq!(theft.open(&bob.me(), &bob.keyring), Err(OpenError::Decrypt));
    }
    // Another epoch or key id under the same copy.
    let other_epoch = KeyShare {
        epoch: 2,
        ..alices.clone()
    };
    assert_eq!(
        other_epoch.open(&bob.me(), &bob.keyring),
        Err(OpenError::Decrypt)
    );
}

#[test]
fn a_key_that_does_not_match_its_id_is_refused() {
    // An author handing members a key other than the one its id names.
    let (alice, bob) = (Device::new(1), Device::new(2));
    let real = SenderKey::generate(chat(), alice.me(), 1);
    let signed = share_from(&alice, &real, &[&bob]);
    let mut share = signed.verify().unwrap();
    let other = SenderKey::generate(chat(), alice.me(), 1);
    share.key_id = other.key_id();
    // The info names the key id too, so the copy no longer opens at all.
    assert!(share.open(&bob.me(), &bob.keyring).is_err());

    // Alice sealing, under the info of `real`'s id, the bytes of `other`.
    let real_share = signed.verify().unwrap();
    let device_key = bob.keyring.current().public();
    let info = key_share::copy_info(&real_share, &bob.me(), &device_key);
    let (enc, sealed) =
        hpke::seal(device_key.key.as_bytes(), &info, b"", other.key_bytes()).unwrap();
    let lying = KeyShare {
        copies: vec![SealedCopy {
            recipient: bob.me(),
            device_key,
            enc,
            sealed_key: sealed.try_into().unwrap(),
        }],
        ..real_share
    };
    assert_eq!(
        lying.open(&bob.me(), &bob.keyring),
        Err(OpenError::KeyIdMismatch)
    );
}

#[test]
fn a_replayed_key_share_gives_the_same_key_again() {
    let (alice, bob) = (Device::new(1), Device::new(2));
    let key = SenderKey::generate(chat(), alice.me(), 3);
    let bytes = share_from(&alice, &key, &[&bob]).to_bytes();
    let first = SignedKeyShare::from_bytes(&bytes).unwrap().0;
    let again = SignedKeyShare::from_bytes(&bytes).unwrap().0;
    assert_eq!(first, again);
    let k1 = first.verify().unwrap().open(&bob.me(), &bob.keyring);
    let k2 = again.verify().unwrap().open(&bob.me(), &bob.keyring);
    assert_eq!(k1.unwrap().key_id(), k2.unwrap().key_id());
}

#[test]
fn a_share_to_an_old_device_key_opens_after_a_rotation_and_not_after_it_is_gone() {
    let (alice, mut bob) = (Device::new(1), Device::new(2));
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let share = share_from(&alice, &key, &[&bob]).verify().unwrap();
    bob.keyring.rotate();
    assert_eq!(share.open(&bob.me(), &bob.keyring).unwrap(), key);
    for _ in 0..MAX_DEVICE_KEY_VERSIONS {
        bob.keyring.rotate();
    }
    assert_eq!(
        share.open(&bob.me(), &bob.keyring),
        Err(OpenError::UnknownDeviceKey(1))
    );
}

#[test]
fn a_share_with_repeated_or_unsorted_copies_is_refused() {
    let (alice, bob, carol) = (Device::new(1), Device::new(2), Device::new(3));
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let signed = share_from(&alice, &key, &[&bob, &carol]);
    let (_, share) = SignedKeyShare::from_bytes(&signed.to_bytes()).unwrap();
    for copies in [
        vec![share.copies[1].clone(), share.copies[0].clone()],
        vec![share.copies[0].clone(), share.copies[0].clone()],
    ] {
        let bent = KeyShare {
            copies,
            ..share.clone()
        };
        let resigned = SignedKeyShare {
            signature: alice
                .identity
                .sign(&[&b"meshchat/key-share/v1"[..], &wire::encode(&bent)].concat()),
            body: wire::encode(&bent),
        };
        assert!(matches!(
            SignedKeyShare::from_bytes(&resigned.to_bytes()),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(resigned.verify(), Err(OpenError::Malformed(_))));
    }
}

#[test]
fn a_sealed_change_opens_only_under_its_key_chat_and_id() {
    let alice = Device::new(1);
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let change = b"signed change bytes".to_vec();
    let sealed = SealedChange::seal(&key, &change).unwrap();
    let back = SealedChange::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(*back.open(&key).unwrap(), change);
    assert!(!sealed
        .to_bytes()
        .windows(change.len())
        .any(|w| w == change.as_slice()));

    // The same key bytes filed under another chat: wrong associated data.
    let moved = SenderKey::from_parts(ChatId::from_bytes([9; 32]), alice.me(), 1, *key.key_bytes());
    let relabelled = SealedChange {
        key_id: moved.key_id(),
        ..sealed.clone()
    };
    assert_eq!(relabelled.open(&moved), Err(OpenError::Decrypt));
    // Another key.
    let other = SenderKey::generate(chat(), alice.me(), 1);
    assert_eq!(sealed.open(&other), Err(OpenError::WrongKey));
    // Truncated and bent ciphertext.
    for cut in 0..sealed.ciphertext.len() {
        let short = SealedChange {
            ciphertext: sealed.ciphertext[..cut].to_vec(),
            ..sealed.clone()
        };
        assert_eq!(short.open(&key), Err(OpenError::Decrypt));
    }
    let mut bent = sealed.clone();
    bent.nonce[3] ^= 1;
    assert_eq!(bent.open(&key), Err(OpenError::Decrypt));
}

#[test]
fn a_sealed_box_opens_for_its_recipient_and_purpose_only() {
    let (bob, eve) = (Device::new(2), Device::new(4));
    let (me, device_key) = bob.addressee();
    let sealed = SealedBox::seal(b"mailbox", &me, &device_key, b"hello bob").unwrap();
    let back = SealedBox::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(
        *back.open(b"mailbox", &me, &bob.keyring).unwrap(),
        b"hello bob"
    );
    assert_eq!(
        back.open(b"other", &me, &bob.keyring),
        Err(OpenError::Decrypt)
    );
    assert_eq!(
        back.open(b"mailbox", &eve.me(), &bob.keyring),
        Err(OpenError::Decrypt)
    );
    assert_eq!(
        back.open(b"mailbox", &me, &eve.keyring),
        Err(OpenError::Decrypt)
    );
    let unknown = SealedBox {
        device_key_version: 9,
        ..back.clone()
    };
    assert_eq!(
        unknown.open(b"mailbox", &me, &bob.keyring),
        Err(OpenError::UnknownDeviceKey(9))
    );
    for cut in 0..back.ciphertext.len() {
        let short = SealedBox {
            ciphertext: back.ciphertext[..cut].to_vec(),
            ..back.clone()
        };
        assert!(short.open(b"mailbox", &me, &bob.keyring).is_err());
    }
    // A low-order recipient key is refused, not sealed to.
    let zero = DeviceKey {
        version: 1,
        key: crate::ids::EncryptionKey::from_bytes([0; 32]),
    };
    assert_eq!(
        SealedBox::seal(b"mailbox", &me, &zero, b"x"),
        Err(SealError::BadRecipientKey)
    );
}

#[test]
fn oversized_truncated_and_non_canonical_bytes_are_refused_by_every_decoder() {
    let (alice, bob) = (Device::new(1), Device::new(2));
    let key = SenderKey::generate(chat(), alice.me(), 1);
    let share = share_from(&alice, &key, &[&bob]).to_bytes();
    let sealed = SealedChange::seal(&key, b"change").unwrap().to_bytes();
    let (me, device_key) = bob.addressee();
    let boxed = SealedBox::seal(b"m", &me, &device_key, b"mail")
        .unwrap()
        .to_bytes();

    for good in [&share, &sealed, &boxed] {
        for cut in 0..good.len() {
            let bytes = &good[..cut];
            assert!(SignedKeyShare::from_bytes(bytes).is_err());
            assert!(SealedChange::from_bytes(bytes).is_err());
            assert!(SealedBox::from_bytes(bytes).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(SignedKeyShare::from_bytes(&trailing).is_err());
        assert!(SealedChange::from_bytes(&trailing).is_err());
        assert!(SealedBox::from_bytes(&trailing).is_err());
        let mut version = good.clone();
        version[0] = 2;
        assert!(SignedKeyShare::from_bytes(&version).is_err());
    }
    let huge = vec![1u8; MAX_SEALED_CHANGE_BYTES + 1];
    assert!(matches!(
        SealedChange::from_bytes(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        SealedBox::from_bytes(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        SignedKeyShare::from_bytes(&huge[..MAX_KEY_SHARE_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        SealedChange::seal(&key, &huge[..MAX_SEALED_PLAINTEXT_BYTES + 1]),
        Err(SealError::TooLarge { .. })
    ));
    // A share with more copies than allowed is refused when sealing.
    let many = vec![bob.addressee(); MAX_KEY_SHARE_COPIES + 1];
    assert!(matches!(
        SignedKeyShare::seal(&alice.identity, &key, &many),
        Err(SealError::TooManyRecipients(_))
    ));
}

#[test]
fn the_sealed_change_associated_data_covers_the_chat_and_key_id() {
    // Pin the layout docs/PROTOCOL.md gives (a change here is a wire change).
    let key = SenderKey::from_parts(chat(), PublicKey::from_bytes([1; 32]), 1, [3; 32]);
    let sealed = SealedChange::seal(&key, b"x").unwrap();
    use chacha20poly1305::{
        aead::{Aead, KeyInit, Payload},
        XChaCha20Poly1305,
    };
    let aad = [
        &b"meshchat/sealed-change/v1"[..],
        chat().as_bytes(),
        key.key_id().as_bytes(),
    ]
    .concat();
    let opened = XChaCha20Poly1305::new((&[3u8; 32]).into())
        .decrypt(
            (&sealed.nonce).into(),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(opened, b"x");
}

#[test]
fn deterministic_boxes_repeat_for_the_same_bytes_only_and_open_alike() {
    let (alice, bob) = (Device::new(1), Device::new(2));
    let (me, device_key) = bob.addressee();
    let sender = alice.keyring.current();
    let seal = |text: &[u8]| {
        SealedBox::seal_deterministic(b"mailbox", &me, &device_key, text, sender).unwrap()
    };
    assert_eq!(seal(b"same"), seal(b"same"));
    assert_ne!(seal(b"same").enc, seal(b"other").enc);
    let other_sender = Device::new(3);
    let by_other = SealedBox::seal_deterministic(
        b"mailbox",
        &me,
        &device_key,
        b"same",
        other_sender.keyring.current(),
    )
    .unwrap();
    assert_ne!(by_other.enc, seal(b"same").enc);
    assert_eq!(
        *seal(b"same").open(b"mailbox", &me, &bob.keyring).unwrap(),
        b"same"
    );
}

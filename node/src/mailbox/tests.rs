//! Mailbox store and limits on a real sled database.

use meshchat_crdt::Identity;

use super::*;

struct Relay {
    _tmp: tempfile::TempDir,
    identity: Identity,
    mailbox: Mailbox,
}

fn relay(config: MailboxConfig) -> Relay {
    let tmp = tempfile::tempdir().unwrap();
    let db = crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
    let identity = Identity::generate();
    let mailbox = Mailbox::open(identity.clone(), config, crate::store::DbHandle::of(&db)).unwrap();
    Relay {
        _tmp: tmp,
        identity,
        mailbox,
    }
}

impl Relay {
    /// A token from `recipient` for this relay.
    fn token(&self, recipient: &Identity) -> DeliveryToken {
        DeliveryToken::issue(recipient, Some(self.identity.public()), None, i64::MAX)
    }

    fn deposit(
        &mut self,
        sender: &Identity,
        recipient: &Identity,
        envelope: &[u8],
        now_ms: i64,
    ) -> Result<Accepted, Refusal> {
        let token = self.token(recipient);
        self.mailbox.deposit(
            sender.public(),
            recipient.public(),
            envelope.to_vec(),
            Some(&token),
            now_ms,
        )
    }
}

#[tokio::test]
async fn deposit_fetch_ack_and_receipts() {
    let mut relay = relay(MailboxConfig::default());
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let receipt = relay.deposit(&alice, &bob, b"one", 1_000).unwrap().receipt;
    receipt.verify().unwrap();
    assert!(receipt.confirms(
        &relay.identity.public(),
        &bob.public(),
        &envelope_hash(b"one")
    ));
    assert!(!receipt.confirms(
        &relay.identity.public(),
        &alice.public(),
        &envelope_hash(b"one")
    ));
    assert_eq!(receipt.held_until_ms, 1_000 + 30 * 24 * 3600 * 1000);
    relay.deposit(&alice, &bob, b"two", 1_001).unwrap();
    let mb = &relay.mailbox;
    mb.flush().await.unwrap();
    // Only the owner's mailbox is read; others are empty, not an error.
    assert!(mb
        .fetch(&alice.public(), None, 10, 1 << 20)
        .unwrap()
        .0
        .is_empty());
    let (items, more) = mb.fetch(&bob.public(), None, 1, 1 << 20).unwrap();
    assert!(more);
    assert_eq!(items[0].envelope, b"one");
    assert_eq!(items[0].sender, alice.public());
    let (rest, more) = mb
        .fetch(&bob.public(), Some(items[0].id), 10, 1 << 20)
        .unwrap();
    assert!(!more);
    assert_eq!(rest[0].envelope, b"two");
    assert_eq!(
        mb.stats(),
        MailboxStats {
            mailboxes: 1,
            messages: 2,
            bytes: 6
        }
    );
    assert_eq!(
        mb.ack(&bob.public(), &[items[0].id, rest[0].id]).unwrap(),
        2
    );
    assert_eq!(mb.stats(), MailboxStats::default());
    // A forged receipt does not verify.
    let mut forged = receipt;
    forged.held_until_ms += 1;
    assert!(forged.verify().is_err());
}

#[test]
fn limits_refuse_explicitly() {
    let config = MailboxConfig {
        max_messages_per_recipient: 2,
        max_envelope_bytes: 8,
        deposits_per_sender_per_minute: 3,
        ..MailboxConfig::default()
    };
    let mut relay = relay(config);
    let (alice, bob, carol) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    assert!(matches!(
        relay.deposit(&alice, &bob, &[0; 9], 0),
        Err(Refusal::TooLarge { size: 9, limit: 8 })
    ));
    relay.deposit(&alice, &bob, &[1], 0).unwrap();
    relay.deposit(&alice, &bob, &[2], 0).unwrap();
    // The oversize attempt counted against the rate: this is the 4th deposit.
    assert!(matches!(
        relay.deposit(&alice, &carol, &[3], 0),
        Err(Refusal::RateLimited { .. })
    ));
    assert!(matches!(
        relay.deposit(&carol, &bob, &[3], 0),
        Err(Refusal::QuotaExceeded)
    ));
    // A minute later the sender may deposit again.
    relay.deposit(&alice, &carol, &[4], 60_000).unwrap();
}

#[test]
fn without_a_valid_token_nothing_is_stored() {
    let mut relay = relay(MailboxConfig::default());
    let (mallory, bob) = (Identity::generate(), Identity::generate());
    let me = relay.identity.public();
    let refused = |relay: &mut Relay, token: Option<DeliveryToken>| {
        relay
            .mailbox
            .deposit(
                mallory.public(),
                bob.public(),
                b"junk".to_vec(),
                token.as_ref(),
                10,
            )
            .map(|_| ())
    };
    let mut forged = DeliveryToken::issue(&mallory, Some(me), None, i64::MAX);
    forged.recipient = bob.public();
    for (token, error) in [
        (None, TokenError::Missing),
        (Some(forged), TokenError::BadSignature),
        (
            Some(DeliveryToken::issue(&mallory, Some(me), None, i64::MAX)),
            TokenError::WrongRecipient,
        ),
        (
            Some(DeliveryToken::issue(
                &bob,
                Some(Identity::generate().public()),
                None,
                i64::MAX,
            )),
            TokenError::WrongRelay,
        ),
        (
            Some(DeliveryToken::issue(&bob, Some(me), None, 10)),
            TokenError::Expired,
        ),
        (
            Some(DeliveryToken::issue(
                &bob,
                None,
                Some(Identity::generate().public()),
                i64::MAX,
            )),
            TokenError::WrongHolder,
        ),
    ] {
        assert_eq!(
            refused(&mut relay, token),
            Err(Refusal::Unauthorized(error))
        );
    }
    assert_eq!(relay.mailbox.stats(), MailboxStats::default());
    // Bob's token for any of his relays is good here, for anyone.
    let any = DeliveryToken::issue(&bob, None, None, i64::MAX);
    assert_eq!(refused(&mut relay, Some(any)), Ok(()));
}

#[test]
fn strangers_get_only_the_budget_the_operator_gives_them() {
    let config = MailboxConfig {
        max_messages_per_recipient: 8,
        stranger_bytes: 10,
        stranger_deposits_per_minute: 100,
        ..MailboxConfig::default()
    };
    let mut relay = relay(config);
    let (mallory, bob, carol) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let stranger = |relay: &mut Relay, recipient: &Identity, envelope: &[u8]| {
        relay.mailbox.deposit(
            mallory.public(),
            recipient.public(),
            envelope.to_vec(),
            None,
            0,
        )
    };
    // A quarter of bob's mailbox (2 of 8 messages) at most.
    stranger(&mut relay, &bob, b"1").unwrap();
    stranger(&mut relay, &bob, b"2").unwrap();
    assert_eq!(
        stranger(&mut relay, &bob, b"3").unwrap_err(),
        Refusal::QuotaExceeded
    );
    // Bob's contacts still have the rest.
    for i in 0..6u8 {
        relay.deposit(&carol, &bob, &[i], 0).unwrap();
    }
    // And strangers together never hold more than 10 bytes.
    stranger(&mut relay, &carol, b"12345678").unwrap();
    assert_eq!(
        stranger(&mut relay, &carol, b"9").unwrap_err(),
        Refusal::QuotaExceeded
    );
}

#[tokio::test]
async fn a_repeated_envelope_is_held_once() {
    let mut relay = relay(MailboxConfig::default());
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let first = relay.deposit(&alice, &bob, b"same", 0).unwrap();
    let again = relay.deposit(&alice, &bob, b"same", 5_000).unwrap();
    assert!(matches!(first.stored, Stored::Fresh(_)));
    assert!(matches!(again.stored, Stored::Duplicate(_)));
    // The receipt for the copy already held, its expiry included.
    assert_eq!(again.receipt, first.receipt);
    assert_eq!(relay.mailbox.stats().messages, 1);
    // For another recipient it is another envelope.
    let carol = Identity::generate();
    relay.deposit(&alice, &carol, b"same", 0).unwrap();
    assert_eq!(relay.mailbox.stats().messages, 2);
    // Once fetched and acknowledged, the same bytes are new mail again.
    let (items, _) = relay
        .mailbox
        .fetch(&bob.public(), None, 10, 1 << 20)
        .unwrap();
    relay.mailbox.ack(&bob.public(), &[items[0].id]).unwrap();
    let later = relay.deposit(&alice, &bob, b"same", 9_000).unwrap();
    assert!(matches!(later.stored, Stored::Fresh(_)));
}

#[test]
fn the_total_cap_refuses_with_a_clear_error() {
    let mut relay = relay(MailboxConfig {
        max_total_bytes: 10,
        ..MailboxConfig::default()
    });
    let alice = Identity::generate();
    for _ in 0..2 {
        relay
            .deposit(&alice, &Identity::generate(), b"12345", 0)
            .unwrap();
    }
    let refusal = relay
        .deposit(&alice, &Identity::generate(), b"1", 0)
        .unwrap_err();
    assert_eq!(refusal, Refusal::RelayFull { limit: 10 });
    assert!(refusal.to_string().contains("storage for mail is full"));
    assert_eq!(relay.mailbox.stats().bytes, 10);
}

#[test]
fn an_undone_deposit_leaves_nothing_stored_or_counted() {
    let mut relay = relay(MailboxConfig {
        max_messages_per_recipient: 1,
        ..MailboxConfig::default()
    });
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let accepted = relay.deposit(&alice, &bob, b"lost", 0).unwrap();
    // Its flush failed: take it back.
    relay
        .mailbox
        .undo(&bob.public(), &accepted.stored.held())
        .unwrap();
    assert_eq!(relay.mailbox.stats(), MailboxStats::default());
    assert!(relay
        .mailbox
        .fetch(&bob.public(), None, 10, 1 << 20)
        .unwrap()
        .0
        .is_empty());
    // Its quota slot is free and the retry is stored, not "already held".
    let retry = relay.deposit(&alice, &bob, b"lost", 1).unwrap();
    assert!(matches!(retry.stored, Stored::Fresh(_)));
}

#[tokio::test]
async fn expiry_and_restart() {
    let config = MailboxConfig {
        retention_secs: 10,
        ..MailboxConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let relay_id = Identity::generate();
    let token = DeliveryToken::issue(&bob, Some(relay_id.public()), None, i64::MAX);
    {
        let db =
            crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
        let mut mb = Mailbox::open(
            relay_id.clone(),
            config.clone(),
            crate::store::DbHandle::of(&db),
        )
        .unwrap();
        for (envelope, at) in [(&b"old"[..], 0), (b"new", 5_000)] {
            mb.deposit(
                alice.public(),
                bob.public(),
                envelope.to_vec(),
                Some(&token),
                at,
            )
            .unwrap();
        }
        mb.flush().await.unwrap();
    }
    let db = crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
    let mb = Mailbox::open(relay_id, config, crate::store::DbHandle::of(&db)).unwrap();
    assert_eq!(mb.stats().messages, 2);
    assert_eq!(mb.expire(10_000).unwrap(), 1);
    let (items, _) = mb.fetch(&bob.public(), None, 10, 1 << 20).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].envelope, b"new");
    assert_eq!(mb.stats().messages, 1);
    assert_eq!(mb.expire(15_000).unwrap(), 1);
    assert_eq!(mb.stats(), MailboxStats::default());
}

#[test]
fn expiry_reads_only_what_is_due() {
    let mut relay = relay(MailboxConfig {
        retention_secs: 10,
        ..MailboxConfig::default()
    });
    let (alice, bob) = (Identity::generate(), Identity::generate());
    relay.deposit(&alice, &bob, b"due", 0).unwrap();
    let kept = relay.deposit(&alice, &bob, b"kept", 60_000).unwrap();
    // Damage the envelope that is not due: a sweep that decoded every item
    // would trip over it; one that follows the time index never reads it.
    let mail = relay.mailbox.store.tree().clone();
    mail.insert(
        item_key_for_test(&bob.public(), kept.stored.held().id),
        b"\xff not an item".to_vec(),
    )
    .unwrap();
    assert_eq!(relay.mailbox.expire(10_000).unwrap(), 1);
    assert_eq!(relay.mailbox.stats().messages, 1);
}

fn item_key_for_test(recipient: &PublicKey, id: u64) -> Vec<u8> {
    let mut k = vec![b'i'];
    k.extend_from_slice(recipient.as_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

#[tokio::test]
async fn mail_stored_by_an_older_relay_is_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    {
        // The layout before indexes: CBOR items and a usage counter.
        let db =
            crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
        let mail = db.open_tree("mail").unwrap();
        for (id, envelope) in [(3u64, &b"first"[..]), (7, b"second")] {
            let item = MailItem {
                id,
                sender: alice.public(),
                deposited_at_ms: 0,
                expires_at_ms: 1_000 * id as i64,
                envelope: envelope.to_vec(),
            };
            let mut value = Vec::new();
            ciborium::into_writer(&item, &mut value).unwrap();
            mail.insert(item_key_for_test(&bob.public(), id), value)
                .unwrap();
        }
        let mut usage = b"u".to_vec();
        usage.extend_from_slice(bob.public().as_bytes());
        let mut counts = 2u64.to_be_bytes().to_vec();
        counts.extend_from_slice(&11u64.to_be_bytes());
        mail.insert(usage, counts).unwrap();
        db.flush().unwrap();
    }
    let db = crate::store::open_waiting_for_lock(&sled::Config::new().path(tmp.path())).unwrap();
    let mb = Mailbox::open(
        Identity::generate(),
        MailboxConfig::default(),
        crate::store::DbHandle::of(&db),
    )
    .unwrap();
    assert_eq!(
        mb.stats(),
        MailboxStats {
            mailboxes: 1,
            messages: 2,
            bytes: 11
        }
    );
    let (items, _) = mb.fetch(&bob.public(), None, 10, 1 << 20).unwrap();
    assert_eq!(items[1].envelope, b"second");
    assert_eq!(items[1].expires_at_ms, 7_000);
    // The converted items have their expiry index.
    assert_eq!(mb.expire(3_000).unwrap(), 1);
    assert_eq!(mb.stats().messages, 1);
}

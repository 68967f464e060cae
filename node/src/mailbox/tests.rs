//! Mailbox store and limits on a real sled database.

use meshchat_crdt::Identity;

use super::*;

fn mailbox(config: MailboxConfig) -> (tempfile::TempDir, Mailbox, sled::Db) {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(tmp.path()).open().unwrap();
    let mb = Mailbox::open(Identity::generate(), config, &db).unwrap();
    (tmp, mb, db)
}

#[tokio::test]
async fn deposit_fetch_ack_and_receipts() {
    let (_tmp, mut mb, _db) = mailbox(MailboxConfig::default());
    let (alice, bob) = (Identity::generate().public(), Identity::generate().public());
    let receipt = mb.deposit(alice, bob, b"one".to_vec(), 1_000).unwrap();
    receipt.verify().unwrap();
    assert_eq!(receipt.envelope_hash, envelope_hash(b"one"));
    assert_eq!(receipt.held_until_ms, 1_000 + 30 * 24 * 3600 * 1000);
    mb.deposit(alice, bob, b"two".to_vec(), 1_001).unwrap();
    mb.flush().await.unwrap();
    // Only the owner's mailbox is read; others are empty, not an error.
    assert!(mb.fetch(&alice, None, 10, 1 << 20).unwrap().0.is_empty());
    let (items, more) = mb.fetch(&bob, None, 1, 1 << 20).unwrap();
    assert!(more);
    assert_eq!(items[0].envelope, b"one");
    let (rest, more) = mb.fetch(&bob, Some(items[0].id), 10, 1 << 20).unwrap();
    assert!(!more);
    assert_eq!(rest[0].envelope, b"two");
    assert_eq!(mb.stats().messages, 2);
    assert_eq!(mb.ack(&bob, &[items[0].id, rest[0].id]).unwrap(), 2);
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
    let (_tmp, mut mb, _db) = mailbox(config);
    let (alice, bob, carol) = (
        Identity::generate().public(),
        Identity::generate().public(),
        Identity::generate().public(),
    );
    assert!(matches!(
        mb.deposit(alice, bob, vec![0; 9], 0),
        Err(Refusal::TooLarge { size: 9, limit: 8 })
    ));
    mb.deposit(alice, bob, vec![1], 0).unwrap();
    mb.deposit(alice, bob, vec![2], 0).unwrap();
    // The oversize attempt counted against the rate: this is the 4th deposit.
    assert!(matches!(
        mb.deposit(alice, carol, vec![3], 0),
        Err(Refusal::RateLimited { .. })
    ));
    assert!(matches!(
        mb.deposit(carol, bob, vec![3], 0),
        Err(Refusal::QuotaExceeded)
    ));
    // A minute later the sender may deposit again.
    mb.deposit(alice, carol, vec![4], 60_000).unwrap();
}

#[tokio::test]
async fn expiry_and_restart() {
    let config = MailboxConfig {
        retention_secs: 10,
        ..MailboxConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = (Identity::generate().public(), Identity::generate().public());
    {
        let db = sled::Config::new().path(tmp.path()).open().unwrap();
        let mut mb = Mailbox::open(Identity::generate(), config.clone(), &db).unwrap();
        mb.deposit(alice, bob, b"old".to_vec(), 0).unwrap();
        mb.deposit(alice, bob, b"new".to_vec(), 5_000).unwrap();
        mb.flush().await.unwrap();
    }
    let db = sled::Config::new().path(tmp.path()).open().unwrap();
    let mb = Mailbox::open(Identity::generate(), config, &db).unwrap();
    assert_eq!(mb.stats().messages, 2);
    assert_eq!(mb.expire(10_000).unwrap(), 1);
    let (items, _) = mb.fetch(&bob, None, 10, 1 << 20).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].envelope, b"new");
}

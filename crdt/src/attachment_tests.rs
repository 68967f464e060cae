//! Attachments travel inside signed message changes and read back intact.

use automerge::{
    legacy::{Key, OpType},
    ScalarValue,
};

use crate::{
    attachment::{Attachment, MAX_PREVIEW_BYTES},
    chat::{ChatKind, ChatReplica, RejectReason},
    file_key::FileKey,
    identity::Identity,
    ids::BlobHash,
    ops::WriteError,
    rules::RuleViolation,
    test_util::resign,
};

fn photo() -> Attachment {
    Attachment {
        hash: BlobHash::from_bytes([7; 32]),
        size: 20 * 1024 * 1024,
        mime: "image/png".into(),
        name: "cat.png".into(),
        preview: vec![1, 2, 3],
        key: Some(FileKey::from_bytes([5; 32])),
    }
}

#[test]
fn attachment_reaches_the_receiver_intact() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
    let mut b = ChatReplica::new(ChatKind::direct(bob.public(), alice.public()));
    let w = a.write_attachment(&alice, "look", &photo(), 5).unwrap();
    assert_eq!(w.message.attachment.as_deref(), Some(&photo()));
    let got = b.receive(vec![w.change], 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
    let got = b.message(&w.message.id).unwrap();
    assert_eq!(got.text, "look");
    assert_eq!(got.attachment.as_deref(), Some(&photo()));
}

#[test]
fn plain_messages_have_no_attachment() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
    let w = a.write_message(&alice, "hi", None, 5).unwrap();
    assert_eq!(w.message.attachment, None);
    let json = serde_json::to_string(&w.message).unwrap();
    assert!(!json.contains("attachment"), "{json}");
}

#[test]
fn invalid_attachments_are_refused_when_writing() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
    let mut big = photo();
    big.preview = vec![0; MAX_PREVIEW_BYTES + 1];
    assert!(matches!(
        a.write_attachment(&alice, "", &big, 1),
        Err(WriteError::Invalid(_))
    ));
    let mut sneaky = photo();
    sneaky.name = "../../etc/passwd".into();
    assert!(matches!(
        a.write_attachment(&alice, "", &sneaky, 1),
        Err(WriteError::Invalid(_))
    ));
}

#[test]
fn a_file_from_before_encryption_has_no_key_and_still_reads() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
    let mut b = ChatReplica::new(ChatKind::direct(bob.public(), alice.public()));
    let legacy = Attachment {
        key: None,
        ..photo()
    };
    let w = a.write_attachment(&alice, "old", &legacy, 5).unwrap();
    let got = b.receive(vec![w.change], 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
    assert_eq!(
        b.message(&w.message.id).unwrap().attachment.as_deref(),
        Some(&legacy)
    );
}

#[test]
fn a_key_of_the_wrong_length_or_type_is_refused_on_receipt() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = ChatReplica::new(ChatKind::direct(alice.public(), bob.public()));
    let honest = a
        .write_attachment(&alice, "look", &photo(), 5)
        .unwrap()
        .change;
    let bad_values = [
        ScalarValue::Bytes(vec![5; 31]),
        ScalarValue::Bytes(vec![5; 33]),
        ScalarValue::Bytes(Vec::new()),
        ScalarValue::Str("05".repeat(32).into()),
    ];
    for value in bad_values {
        let bent = resign(&alice, &honest, |c| {
            let op = c
                .operations
                .iter_mut()
                .find(|op| op.key == Key::Map("key".into()))
                .expect("the key op");
            op.action = OpType::Put(value.clone());
        });
        let mut b = ChatReplica::new(ChatKind::direct(bob.public(), alice.public()));
        let got = b.receive(vec![bent], 0);
        assert!(
            matches!(
                got.rejected.iter().map(|r| &r.reason).collect::<Vec<_>>()[..],
                [RejectReason::Rule(RuleViolation::Schema(_))]
            ),
            "{value:?}: {:?}",
            got.rejected
        );
        assert!(b.messages().is_empty());
    }
}

//! Attachments travel inside signed message changes and read back intact.

use crate::{
    attachment::{Attachment, MAX_PREVIEW_BYTES},
    chat::{ChatKind, ChatReplica},
    identity::Identity,
    ids::BlobHash,
    ops::WriteError,
};

fn photo() -> Attachment {
    Attachment {
        hash: BlobHash::from_bytes([7; 32]),
        size: 20 * 1024 * 1024,
        mime: "image/png".into(),
        name: "cat.png".into(),
        preview: vec![1, 2, 3],
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

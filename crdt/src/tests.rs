//! Protocol tests of the data model: signing, rules, sync and convergence.

use automerge::{transaction::Transactable, ReadDoc, ROOT};
use proptest::prelude::*;

use crate::{
    chat::{ChatKind, ChatReplica, RejectReason},
    identity::Identity,
    ids::ChangeHash,
    rules::RuleViolation,
    signed::{SignedChange, VerifyError},
};

fn pair() -> (Identity, Identity) {
    (Identity::generate(), Identity::generate())
}

fn direct(a: &Identity, b: &Identity) -> ChatReplica {
    ChatReplica::new(ChatKind::direct(a.public(), b.public()))
}

/// Delivers `changes` to `to` the way the node does; returns how many
/// messages became visible.
fn deliver(to: &mut ChatReplica, changes: Vec<SignedChange>) -> usize {
    let got = to.receive(changes, 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
    got.new_messages.len()
}

#[test]
fn message_round_trip() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    assert_eq!(a.id(), b.id());
    let w = a.write_message(&alice, "hi bob", None, 1_000).unwrap();
    assert_eq!(deliver(&mut b, vec![w.change.clone()]), 1);
    let got = b.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "hi bob");
    assert_eq!(got[0].author, alice.public());
    assert_eq!(got[0].id, w.message.id);
    // Duplicates are recognised and show nothing new.
    let again = b.receive(vec![w.change], 0);
    assert_eq!(again.duplicates.len(), 1);
    assert!(again.stored.is_empty());
}

#[test]
fn messages_written_in_one_millisecond_keep_their_order() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let texts: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for text in &texts {
        let w = a.write_message(&alice, text, None, 5_000).unwrap();
        deliver(&mut b, vec![w.change]);
    }
    // Ties would be broken by the random ids: the stamps must differ.
    for replica in [&a, &b] {
        let read: Vec<String> = replica.messages().into_iter().map(|m| m.text).collect();
        assert_eq!(read, texts);
    }
    // A clock that steps back does not put a message before earlier ones.
    a.write_message(&alice, "late", None, 1_000).unwrap();
    assert_eq!(a.messages().last().unwrap().text, "late");
}

#[test]
fn forged_signature_is_rejected() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let mut change = a.write_message(&alice, "hi", None, 1).unwrap().change;
    change.signature[0] ^= 1;
    let checked = b.receive(vec![change], 0);
    assert!(matches!(
        checked.rejected[0].reason,
        RejectReason::Verify(VerifyError::Signature(_))
    ));
}

/// An exact copy of a change held or waiting already is not checked again
/// (honest copies are byte for byte the same: Ed25519 signs
/// deterministically); a copy under another signature is checked, so a
/// forged copy of a known change is refused, never kept, and never makes
/// the frame that carried it look valid.
#[test]
fn a_forged_copy_of_a_known_change_is_refused_and_never_kept() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let first = a.write_message(&alice, "one", None, 1).unwrap().change;
    let second = a.write_message(&alice, "two", None, 2).unwrap().change;
    let forged = |change: &SignedChange| {
        let mut copy = change.clone();
        copy.signature[0] ^= 1;
        copy
    };
    let refused_for_its_signature = |got: &crate::chat::Ingested| {
        got.rejected.len() == 1
            && matches!(
                got.rejected[0].reason,
                RejectReason::Verify(VerifyError::Signature(_))
            )
            && got.stored.is_empty()
    };

    // Waiting: `second` arrives first and waits for `first`. A forged copy
    // is refused; an exact copy waits with it; the copy applied later is
    // the good one.
    assert_eq!(b.receive(vec![second.clone()], 0).deferred.len(), 1);
    assert!(refused_for_its_signature(
        &b.receive(vec![forged(&second)], 0)
    ));
    let again = b.receive(vec![second.clone()], 0);
    assert!(again.rejected.is_empty() && again.deferred.len() == 1);
    let got = b.receive(vec![first.clone()], 0);
    assert_eq!(got.stored.len(), 2);
    let kept = got.stored.iter().find(|c| c.signed.change == second.change);
    assert_eq!(kept.unwrap().signed.signature, second.signature);

    // Held: an exact copy is a duplicate; a forged copy is refused.
    let again = b.receive(vec![first.clone()], 0);
    assert_eq!(again.duplicates.len(), 1);
    assert!(again.rejected.is_empty() && again.stored.is_empty());
    assert!(refused_for_its_signature(
        &b.receive(vec![forged(&first)], 0)
    ));

    // New: a forged change is refused, even beside a good copy of itself
    // later in the same batch (the first copy of a hash is judged).
    let third = a.write_message(&alice, "three", None, 3).unwrap().change;
    let got = b.receive(vec![forged(&third), third.clone()], 0);
    assert!(refused_for_its_signature(&got));
    assert_eq!(deliver(&mut b, vec![third]), 1);
}

#[test]
fn actor_must_be_signer() {
    let (alice, bob) = pair();
    let mallory = Identity::generate();
    // Mallory writes a change whose actor is Alice, signed by Mallory.
    let mut doc = automerge::Automerge::new();
    doc.set_actor(alice.actor());
    let mut tx = doc.transaction();
    let obj = tx
        .put_object(
            ROOT,
            crate::MessageId::for_author(&alice.public()).to_string(),
            automerge::ObjType::Map,
        )
        .unwrap();
    tx.put(&obj, "text", "I am alice").unwrap();
    // Bound to its envelope like a real change, so the signer is its one flaw.
    tx.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_message(crate::signed::binding(0, &[])),
    );
    let change = doc.get_last_local_change().unwrap();
    let mut chat = direct(&alice, &bob);
    let forged = SignedChange::sign(&mallory, chat.id(), 0, vec![], &change);
    let checked = chat.receive(vec![forged], 0);
    assert_eq!(checked.rejected.len(), 1);
    assert!(matches!(
        checked.rejected[0].reason,
        RejectReason::Verify(VerifyError::Signature(_))
    ));
}

#[test]
fn strangers_and_wrong_chats_are_rejected() {
    let (alice, bob) = pair();
    let mallory = Identity::generate();
    let mut b = direct(&bob, &alice);
    // Mallory signs a change for the alice-bob chat id.
    let mut m = ChatReplica::new(ChatKind::direct(mallory.public(), mallory.public()));
    let w = m.write_message(&mallory, "spam", None, 1).unwrap();
    assert!(matches!(
        b.receive(vec![w.change.clone()], 0).rejected[0].reason,
        RejectReason::WrongChat(_)
    ));
    let mut resigned = w.change;
    resigned.chat = b.id();
    let change = automerge::Change::try_from(&resigned.change[..]).unwrap();
    let resigned = SignedChange::sign(&mallory, b.id(), 0, vec![], &change);
    assert!(matches!(
        b.receive(vec![resigned], 0).rejected[0].reason,
        RejectReason::NotMember(_)
    ));
    // Writing into a chat you are not in fails locally too.
    let mut b2 = direct(&bob, &alice);
    assert!(b2.write_message(&mallory, "x", None, 1).is_err());
}

#[test]
fn editing_someone_elses_message_is_rejected() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let w = a.write_message(&alice, "original", None, 1).unwrap();
    deliver(&mut b, vec![w.change.clone()]);
    // Bob rewrites Alice's message text in a copy of the document and signs it.
    let mut doc = automerge::Automerge::new();
    doc.apply_changes([automerge::Change::try_from(&w.change.change[..]).unwrap()])
        .unwrap();
    doc.set_actor(bob.actor());
    let (_, obj) = doc.get(ROOT, w.message.id.to_string()).unwrap().unwrap();
    let mut tx = doc.transaction();
    tx.put(&obj, "text", "tampered").unwrap();
    tx.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_message(crate::signed::binding(0, &[])),
    );
    let change = doc.get_last_local_change().unwrap();
    let signed = SignedChange::sign(&bob, b.id(), 0, vec![], &change);
    let checked = a.receive(vec![signed], 0);
    assert!(matches!(
        checked.rejected[0].reason,
        RejectReason::Rule(RuleViolation::ForeignObject)
    ));
    assert_eq!(a.messages()[0].text, "original");
}

#[test]
fn garbage_bytes_are_rejected_without_panic() {
    let (alice, bob) = pair();
    let mut b = direct(&bob, &alice);
    for bytes in [
        vec![],
        vec![0u8; 10],
        vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 255],
    ] {
        let signed = SignedChange {
            chat: b.id(),
            segment: 0,
            meta_heads: vec![],
            change: bytes,
            signature: [0; 64],
        };
        let checked = b.receive(vec![signed], 0);
        assert!(matches!(
            checked.rejected[0].reason,
            RejectReason::Verify(VerifyError::Malformed(_) | VerifyError::Compressed)
        ));
    }
}

#[test]
fn segments_roll_over_at_capacity() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob).with_segment_capacity(3);
    let mut b = direct(&bob, &alice).with_segment_capacity(3);
    let mut changes = Vec::new();
    for i in 0..7 {
        changes.push(
            a.write_message(&alice, &format!("m{i}"), None, i)
                .unwrap()
                .change,
        );
    }
    assert_eq!(a.segment_count(), 3);
    assert_eq!(deliver(&mut b, changes), 7);
    assert_eq!(b.segment_count(), 3);
    assert_eq!(b.messages().len(), 7);
}

#[test]
fn heads_sync_fills_both_sides() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob).with_segment_capacity(4);
    let mut b = direct(&bob, &alice).with_segment_capacity(4);
    for i in 0..6 {
        a.write_message(&alice, &format!("a{i}"), None, i).unwrap();
        b.write_message(&bob, &format!("b{i}"), None, i).unwrap();
    }
    let for_b = a.changes_missing_from(&b.heads(), 0);
    let for_a = b.changes_missing_from(&a.heads(), 0);
    deliver(&mut b, for_b);
    deliver(&mut a, for_a);
    assert_eq!(a.messages(), b.messages());
    assert_eq!(a.messages().len(), 12);
    // Once converged, nothing more to send.
    assert!(a.changes_missing_from(&b.heads(), 0).is_empty());
}

#[test]
fn out_of_order_delivery_is_queued_then_visible() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let first = a.write_message(&alice, "1", None, 1).unwrap().change;
    let second = a.write_message(&alice, "2", None, 2).unwrap().change;
    assert_eq!(deliver(&mut b, vec![second.clone()]), 0);
    let h: ChangeHash = second.verify().unwrap().hash;
    // Waiting in memory, neither stored nor held (so not acknowledged).
    assert!(!b.holds(0, &h));
    assert_eq!(b.deferred_count(), 1);
    assert_eq!(deliver(&mut b, vec![first]), 2);
    assert!(b.holds(0, &h));
}

/// `deferred` names what the call was given that waits, not what waited
/// from before: a sender of something whole is not told it waits (gossip
/// forwards it; the node asks nobody for dependencies because of it).
#[test]
fn only_what_was_received_is_reported_waiting() {
    let (alice, bob) = pair();
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    let first = a.write_message(&alice, "1", None, 1).unwrap().change;
    let second = a.write_message(&alice, "2", None, 2).unwrap().change;
    let h = second.verify().unwrap().hash;
    assert_eq!(b.receive(vec![second.clone()], 0).deferred, vec![h]);
    // Bob's own message, unrelated: applied, and nothing of it waits.
    let mine = b.write_message(&bob, "mine", None, 3).unwrap().change;
    let got = b.receive(vec![mine], 0);
    assert!(got.deferred.is_empty(), "{:?}", got.deferred);
    assert_eq!(b.deferred_count(), 1);
    // The waiting change received again is reported waiting again.
    assert_eq!(b.receive(vec![second], 0).deferred, vec![h]);
    // And once its dependency arrives, both are stored, none waits.
    let got = b.receive(vec![first], 0);
    assert!(got.deferred.is_empty());
    assert_eq!(got.stored.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any interleaving, duplication and order of delivery converges.
    #[test]
    fn any_delivery_order_converges(
        writes in prop::collection::vec((any::<bool>(), 0i64..1000), 1..40),
        shuffle_seed in any::<u64>(),
        dup_every in 1usize..5,
    ) {
        let (alice, bob) = pair();
        let mut a = direct(&alice, &bob).with_segment_capacity(5);
        let mut b = direct(&bob, &alice).with_segment_capacity(5);
        let mut from_a = Vec::new();
        let mut from_b = Vec::new();
        for (i, (by_alice, t)) in writes.iter().enumerate() {
            if *by_alice {
                from_a.push(a.write_message(&alice, &format!("a{i}"), None, *t).unwrap().change);
            } else {
                from_b.push(b.write_message(&bob, &format!("b{i}"), None, *t).unwrap().change);
            }
        }
        let scramble = |mut v: Vec<SignedChange>| {
            let extra: Vec<_> = v.iter().step_by(dup_every).cloned().collect();
            v.extend(extra);
            let n = v.len();
            let mut s = shuffle_seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v.swap(i, (s >> 33) as usize % (i + 1));
            }
            v
        };
        for change in scramble(from_a) {
            prop_assert!(b.receive(vec![change], 0).rejected.is_empty());
        }
        for change in scramble(from_b) {
            prop_assert!(a.receive(vec![change], 0).rejected.is_empty());
        }
        prop_assert_eq!(a.messages(), b.messages());
        prop_assert_eq!(a.messages().len(), writes.len());
    }
}

//! Attacks on the chat core with correctly signed but hand-built changes
//! (issue 13): each must be rejected or contained, never crash a replica,
//! never lose history, never forge authorship, and every replica must agree.

use automerge::{
    legacy::{Key, ObjectId, OpId, OpType},
    transaction::Transactable,
    ActorId, ObjType, ReadDoc, ScalarValue, ROOT,
};
use proptest::prelude::*;

use crate::{
    chat::{ChatKind, ChatReplica, Ingested, RejectReason},
    identity::Identity,
    ids::{ChangeHash, MessageId, PublicKey},
    meta::{self, GroupSettings},
    role::Role,
    rules::RuleViolation,
    signed::{SignedChange, META_SEGMENT},
    test_util::{doc_of, forge, hash_of, resign, segment_changes},
};

fn direct(me: &Identity, peer: &Identity) -> ChatReplica {
    ChatReplica::new(ChatKind::direct(me.public(), peer.public()))
}

fn texts(rep: &ChatReplica) -> Vec<String> {
    rep.messages().into_iter().map(|m| m.text).collect()
}

fn reasons(got: &Ingested) -> Vec<RejectReason> {
    got.rejected.iter().map(|r| r.reason.clone()).collect()
}

fn structural(got: &Ingested) -> bool {
    matches!(reasons(got)[..], [RejectReason::Structure(_)])
}

/// A random actor id of the right shape that no document has seen.
fn stranger_actor() -> ActorId {
    Identity::generate().actor()
}

#[test]
fn a_sequence_gap_is_rejected_at_receive_and_at_load() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let first = a.write_message(&alice, "one", None, 1).unwrap().change;
    // seq 2 with no dependencies: Automerge 0.12 panics applying it.
    let gap = resign(&alice, &first, |c| c.seq = 2);
    let mut b = direct(&bob, &alice);
    let got = b.receive(vec![gap.clone()], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    assert!(got.stored.is_empty() && got.deferred.is_empty());
    // Had it reached a disk, loading must survive it and keep the rest.
    let mut fresh = direct(&bob, &alice);
    let loaded = fresh.load(vec![first, gap]);
    assert_eq!(loaded.rejected.len(), 1);
    assert_eq!(texts(&fresh), vec!["one"]);
}

/// Moves a change's ops `by` counters up, with every reference to its own
/// new objects: the change an honest writer numbering above more history
/// would have made.
fn shift_ops(c: &mut automerge::ExpandedChange, by: u64) {
    let start = c.start_op.get();
    let me = c.actor_id.clone();
    c.start_op = std::num::NonZeroU64::new(start + by).unwrap();
    for op in &mut c.operations {
        if let ObjectId::Id(OpId(counter, actor)) = &mut op.obj {
            if *actor == me && *counter >= start {
                *counter += by;
            }
        }
    }
}

#[test]
fn a_history_start_op_may_lie_above_its_past_within_the_slack_only() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "hi", None, 1).unwrap().change;
    let within = resign(&alice, &w, |c| {
        shift_ops(c, crate::rules::MAX_START_OP_SLACK)
    });
    let beyond = resign(&alice, &w, |c| {
        shift_ops(c, crate::rules::MAX_START_OP_SLACK + 1)
    });
    let mut b = direct(&bob, &alice);
    let got = b.receive(vec![beyond], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    let got = b.receive(vec![within], 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
    assert_eq!(texts(&b), vec!["hi"]);
}

#[test]
fn a_metadata_start_op_must_follow_its_past_exactly() {
    let creator = Identity::generate();
    let (rep, genesis) =
        ChatReplica::create_group(&creator, "g", &[], GroupSettings::default()).unwrap();
    let skipped = resign(&creator, &genesis.change, |c| shift_ops(c, 1));
    let mut other = ChatReplica::new(rep.kind().clone());
    let got = other.receive(vec![skipped], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    let got = other.receive(vec![genesis.change], 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
}

#[test]
fn an_op_on_an_unknown_object_is_rejected() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "hi", None, 1).unwrap();
    let react = a.react(&alice, w.message.id, Some("👍")).unwrap().change;
    let ghost = resign(&alice, &react, |c| {
        c.operations[0].obj = ObjectId::Id(OpId(999, alice.actor()));
    });
    let mut b = direct(&bob, &alice);
    assert!(b.receive(vec![w.change], 0).rejected.is_empty());
    let got = b.receive(vec![ghost], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    assert!(b.messages()[0].reactions.is_empty());
}

#[test]
fn a_predecessor_naming_an_unknown_actor_is_rejected() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "hi", None, 1).unwrap();
    let edit = a
        .edit_message(&alice, w.message.id, "hello", 2)
        .unwrap()
        .change;
    let bad = resign(&alice, &edit, |c| {
        c.operations[0].pred = vec![OpId(3, stranger_actor())].into();
    });
    let mut b = direct(&bob, &alice);
    b.receive(vec![w.change], 0);
    let got = b.receive(vec![bad], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    assert_eq!(texts(&b), vec!["hi"]);
}

#[test]
fn a_genesis_with_sequence_two_founds_nothing() {
    let creator = Identity::generate();
    let (rep, genesis) =
        ChatReplica::create_group(&creator, "g", &[], GroupSettings::default()).unwrap();
    let bad = resign(&creator, &genesis.change, |c| c.seq = 2);
    let verified = bad.verify().unwrap();
    assert_eq!(ChatKind::from_genesis(&verified), None);
    let mut other = ChatReplica::new(rep.kind().clone());
    let got = other.receive(vec![bad], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    assert!(other.group_info().is_none());
}

/// Alice's second change, and a second change with the same sequence number.
fn forked_pair(
    alice: &Identity,
    a: &mut ChatReplica,
) -> (SignedChange, SignedChange, SignedChange) {
    let first = a.write_message(alice, "one", None, 1).unwrap().change;
    let second = a.write_message(alice, "two", None, 2).unwrap().change;
    let twin = resign(alice, &second, |c| {
        for op in &mut c.operations {
            if op.action == OpType::Put(ScalarValue::Str("two".into())) {
                op.action = OpType::Put(ScalarValue::Str("TWO".into()));
            }
        }
    });
    (first, second, twin)
}

#[test]
fn a_reused_sequence_number_keeps_the_smaller_hash_on_every_replica() {
    let (alice, bob, carol) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let mut a = direct(&alice, &bob);
    let (first, second, twin) = forked_pair(&alice, &mut a);
    let winner = hash_of(&second).min(hash_of(&twin));
    let winner_text = if winner == hash_of(&second) {
        "two"
    } else {
        "TWO"
    };
    // Bob gets one order, a new device another, a bulk sync all three at
    // once. His reply is built on his own changes only and survives either
    // way; his reaction is built on everything he saw, "two" included, and
    // goes with it if "two" loses.
    let mut b1 = direct(&bob, &alice);
    b1.receive(vec![first.clone(), second.clone()], 0);
    let reply = b1.write_message(&bob, "reply", None, 3).unwrap().change;
    let one = b1.messages().iter().find(|m| m.text == "one").unwrap().id;
    let reaction = b1.react(&bob, one, Some("👍")).unwrap().change;
    b1.receive(vec![twin.clone()], 0);
    let mut b2 = direct(&bob, &alice);
    b2.receive(vec![first.clone(), twin.clone()], 0);
    b2.receive(vec![second.clone(), reply.clone(), reaction.clone()], 0);
    let mut b3 = direct(&bob, &alice);
    b3.receive(
        vec![
            first.clone(),
            second.clone(),
            twin.clone(),
            reply.clone(),
            reaction.clone(),
        ],
        0,
    );
    for rep in [&b1, &b2, &b3] {
        let shown = texts(rep);
        assert!(shown.contains(&"one".to_string()), "{shown:?}");
        assert!(shown.contains(&winner_text.to_string()), "{shown:?}");
        assert!(shown.contains(&"reply".to_string()), "{shown:?}");
        assert_eq!(shown.len(), 3);
        let reacted = rep
            .messages()
            .iter()
            .any(|m| m.text == "one" && !m.reactions.is_empty());
        assert_eq!(reacted, winner == hash_of(&second));
        assert!(rep.holds(0, &winner));
    }
    assert_eq!(b1.messages(), b2.messages());
    assert_eq!(b2.messages(), b3.messages());
    // After a reload of what b1 keeps, and on a third device syncing it in
    // one batch, nothing disappears.
    let kept = segment_changes(&b1, 0);
    let mut reloaded = direct(&bob, &alice);
    assert!(reloaded.load(kept.clone()).rejected.is_empty());
    assert_eq!(reloaded.messages(), b1.messages());
    let mut device = direct(&carol, &carol);
    device = ChatReplica::new(device.kind().clone());
    let _ = device;
    let mut fresh = direct(&alice, &bob);
    fresh.receive(kept, 0);
    assert_eq!(fresh.messages(), b1.messages());
}

#[test]
fn a_message_id_cannot_be_taken_over() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "mine", None, 1).unwrap();
    let mut b = direct(&bob, &alice);
    b.receive(vec![w.change.clone()], 0);
    // Bob makes a map at Alice's message id with its predecessor cleared:
    // it would win Automerge's conflict rule.
    let id = w.message.id.to_string();
    for text in [Some("bob was here"), None] {
        let hijack = forge(&bob, b.id(), 0, vec![], &segment_changes(&b, 0), |tx| {
            let m = tx.put_object(ROOT, id.as_str(), ObjType::Map).unwrap();
            if let Some(text) = text {
                tx.put(&m, "author", bob.public().to_string()).unwrap();
                tx.put(&m, "sent_at", ScalarValue::Timestamp(2)).unwrap();
                tx.put(&m, "text", text).unwrap();
                tx.put_object(&m, "reactions", ObjType::Map).unwrap();
            }
        });
        let cleared = resign(&bob, &hijack, |c| {
            for op in &mut c.operations {
                op.pred = Vec::new().into();
            }
        });
        for attempt in [hijack, cleared] {
            let got = a.receive(vec![attempt], 0);
            assert!(
                matches!(
                    reasons(&got)[..],
                    [RejectReason::Rule(RuleViolation::BadMessageKey(_))]
                        | [RejectReason::Structure(_)]
                ),
                "{:?}",
                got.rejected
            );
        }
    }
    assert_eq!(texts(&a), vec!["mine"]);
    assert_eq!(a.messages()[0].author, alice.public());
}

#[test]
fn an_author_cannot_react_for_others_on_its_own_message() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "vote", None, 1).unwrap();
    let mut b = direct(&bob, &alice);
    b.receive(vec![w.change.clone()], 0);
    let base = segment_changes(&a, 0);
    let doc = doc_of(&base);
    let (_, msg) = doc.get(ROOT, w.message.id.to_string()).unwrap().unwrap();
    let (_, reactions) = doc.get(&msg, "reactions").unwrap().unwrap();
    let forged = forge(&alice, a.id(), 0, vec![], &base, |tx| {
        tx.put(&reactions, bob.public().to_string(), "👎").unwrap();
    });
    let got = b.receive(vec![forged], 0);
    assert!(
        matches!(
            reasons(&got)[..],
            [RejectReason::Rule(RuleViolation::ForeignObject)]
        ),
        "{:?}",
        got.rejected
    );
    assert!(b.messages()[0].reactions.is_empty());
}

/// A group of `n` with the creator (0) admin and everyone else a member.
fn group(n: usize) -> (Vec<Identity>, Vec<ChatReplica>) {
    let ids: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
    let keys: Vec<PublicKey> = ids[1..].iter().map(Identity::public).collect();
    let (creator, genesis) =
        ChatReplica::create_group(&ids[0], "g", &keys, GroupSettings::default()).unwrap();
    let mut reps = vec![creator];
    for _ in 1..n {
        let mut rep = ChatReplica::new(reps[0].kind().clone());
        assert!(rep
            .receive(vec![genesis.change.clone()], 0)
            .rejected
            .is_empty());
        reps.push(rep);
    }
    (ids, reps)
}

fn everything(reps: &[ChatReplica]) -> Vec<SignedChange> {
    let mut all = Vec::new();
    for rep in reps {
        for index in rep.segment_indices() {
            all.extend(segment_changes(rep, index));
        }
    }
    all
}

fn sync_all(reps: &mut [ChatReplica]) {
    let all = everything(reps);
    for rep in reps.iter_mut() {
        rep.receive(all.clone(), 0);
    }
}

#[test]
fn an_admins_delete_cannot_be_undone_by_the_author() {
    let (ids, mut reps) = group(3);
    let w = reps[1].write_message(&ids[1], "rude", None, 1).unwrap();
    sync_all(&mut reps);
    reps[0].delete_message(&ids[0], w.message.id).unwrap();
    sync_all(&mut reps);
    assert!(reps[1].message(&w.message.id).unwrap().deleted);
    let base = segment_changes(&reps[1], 0);
    let heads = reps[1].meta().unwrap().heads();
    let doc = doc_of(&base);
    let (_, msg) = doc.get(ROOT, w.message.id.to_string()).unwrap().unwrap();
    let undo_false = forge(&ids[1], reps[1].id(), 0, heads.clone(), &base, |tx| {
        tx.put(&msg, "deleted", false).unwrap();
    });
    let undo_delete = forge(&ids[1], reps[1].id(), 0, heads.clone(), &base, |tx| {
        tx.delete(&msg, "deleted").unwrap();
    });
    let edit = forge(&ids[1], reps[1].id(), 0, heads, &base, |tx| {
        tx.put(&msg, "text", "rude again").unwrap();
    });
    for attempt in [undo_false, undo_delete, edit] {
        let got = reps[2].receive(vec![attempt], 0);
        assert_eq!(got.rejected.len(), 1, "{:?}", got.rejected);
    }
    let shown = reps[2].message(&w.message.id).unwrap();
    assert!(shown.deleted);
    assert_eq!(shown.text, "");
}

#[test]
fn strangers_cannot_park_changes_and_members_only_within_bounds() {
    let (ids, mut reps) = group(2);
    let stranger = Identity::generate();
    let heads = reps[0].meta().unwrap().heads();
    let chat = reps[0].id();
    let unknown_dep = ChangeHash::from_bytes([7; 32]);
    let junk = |who: &Identity, i: usize| {
        let honest = forge(who, chat, 0, heads.clone(), &[], |tx| {
            let m = tx
                .put_object(
                    ROOT,
                    MessageId::for_author(&who.public()).to_string(),
                    ObjType::Map,
                )
                .unwrap();
            tx.put(&m, "author", who.public().to_string()).unwrap();
            tx.put(&m, "sent_at", ScalarValue::Timestamp(i as i64))
                .unwrap();
            tx.put(&m, "text", "x".repeat(100)).unwrap();
            tx.put_object(&m, "reactions", ObjType::Map).unwrap();
        });
        resign(who, &honest, |c| {
            c.deps = vec![automerge::ChangeHash(unknown_dep.as_bytes().to_owned())]
        })
    };
    let from_stranger: Vec<SignedChange> = (0..50).map(|i| junk(&stranger, i)).collect();
    let got = reps[0].receive(from_stranger, 0);
    assert_eq!(got.rejected.len(), 50);
    assert!(got.deferred.is_empty() && got.stored.is_empty());
    assert_eq!(reps[0].deferred_count(), 0);
    let member = ids[1].clone();
    let from_member: Vec<SignedChange> = (0..300).map(|i| junk(&member, i)).collect();
    let got = reps[0].receive(from_member, 0);
    assert_eq!(got.deferred.len(), crate::chat::MAX_DEFERRED_PER_AUTHOR);
    assert!(got.stored.is_empty());
    assert_eq!(
        reps[0].deferred_count(),
        crate::chat::MAX_DEFERRED_PER_AUTHOR
    );
    // They expire, and were never stored or acknowledged.
    reps[0].receive(Vec::new(), crate::chat::DEFERRED_TTL_MS + 1);
    assert_eq!(reps[0].deferred_count(), 0);
}

#[test]
fn segment_indexes_are_bounded() {
    let (ids, mut reps) = group(2);
    let heads = reps[1].meta().unwrap().heads();
    let chat = reps[1].id();
    let far = |segment| {
        forge(&ids[1], chat, segment, heads.clone(), &[], |tx| {
            let m = tx
                .put_object(
                    ROOT,
                    MessageId::for_author(&ids[1].public()).to_string(),
                    ObjType::Map,
                )
                .unwrap();
            tx.put(&m, "author", ids[1].public().to_string()).unwrap();
            tx.put(&m, "sent_at", ScalarValue::Timestamp(1)).unwrap();
            tx.put(&m, "text", "far").unwrap();
            tx.put_object(&m, "reactions", ObjType::Map).unwrap();
        })
    };
    let got = reps[0].receive(vec![far(0xFFFF_FFFE)], 0);
    assert!(structural(&got), "{:?}", got.rejected);
    // A segment with nothing before it waits (in memory, bounded), unstored.
    let got = reps[0].receive(vec![far(5)], 0);
    assert!(got.stored.is_empty());
    assert_eq!(got.deferred.len(), 1);
    // Honest writers are not dragged anywhere.
    let w = reps[0]
        .write_message(&ids[0], "still here", None, 2)
        .unwrap();
    assert_eq!(w.message.segment, 0);
}

/// Two admins; `0` removes `1`. Returns the removal and a metadata change
/// `1` makes from the heads before it (pretending not to have seen it).
fn backdated(
    ids: &[Identity],
    reps: &mut [ChatReplica],
    write: impl FnOnce(&mut automerge::transaction::Transaction<'_>, &automerge::Automerge),
) -> (SignedChange, SignedChange) {
    let promote = reps[0]
        .set_role(&ids[0], ids[1].public(), Role::Admin)
        .unwrap();
    sync_all(reps);
    let _ = promote;
    let old = segment_changes(&reps[1], META_SEGMENT);
    let removal = reps[0]
        .remove_member(&ids[0], ids[1].public())
        .unwrap()
        .change;
    let doc = doc_of(&old);
    let sneaky = forge(&ids[1], reps[1].id(), META_SEGMENT, vec![], &old, |tx| {
        write(tx, &doc)
    });
    (removal, sneaky)
}

/// A hand-written edit of a group's metadata document.
type MetaWrite =
    Box<dyn FnOnce(&mut automerge::transaction::Transaction<'_>, &automerge::Automerge)>;
/// Builds the edit a removed admin attempts, given the group's identities.
type Attack = Box<dyn Fn(&[Identity]) -> MetaWrite>;

#[test]
fn a_removed_admins_backdated_changes_take_no_effect() {
    let attacks: Vec<(&str, Attack)> = vec![
        (
            "demote the remover",
            Box::new(|ids: &[Identity]| {
                let them = ids[0].public().to_string();
                Box::new(
                    move |tx: &mut automerge::transaction::Transaction<'_>,
                          doc: &automerge::Automerge| {
                        let members = meta::container(doc, meta::MEMBERS).unwrap();
                        tx.put(&members, them.as_str(), "member").unwrap();
                    },
                )
            }),
        ),
        (
            "remove the remover",
            Box::new(|ids: &[Identity]| {
                let them = ids[0].public().to_string();
                Box::new(
                    move |tx: &mut automerge::transaction::Transaction<'_>,
                          doc: &automerge::Automerge| {
                        let members = meta::container(doc, meta::MEMBERS).unwrap();
                        tx.delete(&members, them.as_str()).unwrap();
                    },
                )
            }),
        ),
        (
            "add a friend and rename",
            Box::new(|_: &[Identity]| {
                let friend = Identity::generate().public().to_string();
                Box::new(
                    move |tx: &mut automerge::transaction::Transaction<'_>,
                          doc: &automerge::Automerge| {
                        let members = meta::container(doc, meta::MEMBERS).unwrap();
                        tx.put(&members, friend.as_str(), "admin").unwrap();
                        tx.put(ROOT, "name", "pwned").unwrap();
                    },
                )
            }),
        ),
    ];
    for (what, attack) in attacks {
        let (ids, mut reps) = group(3);
        let (removal, sneaky) = backdated(&ids, &mut reps, attack(&ids));
        // Replica 2 sees the sneaky change first, the removal later; the
        // admin the other way round.
        let got = reps[2].receive(vec![sneaky.clone()], 0);
        assert!(got.rejected.is_empty(), "{what}: accepted in its own view");
        reps[2].receive(vec![removal.clone()], 0);
        reps[0].receive(vec![sneaky.clone()], 0);
        for rep in [&reps[0], &reps[2]] {
            let info = rep.group_info().unwrap();
            assert_eq!(info.name, "g", "{what}");
            assert!(!rep.is_member(&ids[1].public()), "{what}");
            if what == "add a friend and rename" {
                // Nothing the removed admin did concurrently takes effect.
                assert_eq!(rep.role_of(&ids[0].public()), Some(Role::Admin), "{what}");
                assert_eq!(info.members.len(), 2, "{what}: {:?}", info.members);
            }
            // Retaliating against the remover is a cycle of removals: both
            // stand (p2panda's rule), so the removed admin is out either way.
        }
        assert_eq!(reps[0].group_info(), reps[2].group_info(), "{what}");
    }
}

#[test]
fn concurrent_mutual_removals_remove_both() {
    let (ids, mut reps) = group(3);
    reps[0]
        .set_role(&ids[0], ids[1].public(), Role::Admin)
        .unwrap();
    sync_all(&mut reps);
    let a = reps[0]
        .remove_member(&ids[0], ids[1].public())
        .unwrap()
        .change;
    let b = reps[1]
        .remove_member(&ids[1], ids[0].public())
        .unwrap()
        .change;
    reps[2].receive(vec![a.clone(), b.clone()], 0);
    reps[0].receive(vec![b], 0);
    reps[1].receive(vec![a], 0);
    for rep in &reps {
        assert_eq!(
            rep.members().keys().copied().collect::<Vec<_>>(),
            vec![ids[2].public()]
        );
    }
}

#[test]
fn a_restored_device_never_reuses_sequence_numbers() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let mut b = direct(&bob, &alice);
    for i in 0..3 {
        let w = a
            .write_message(&alice, &format!("before {i}"), None, i)
            .unwrap();
        b.receive(vec![w.change], 0);
    }
    // The same key on a device that lost its data dir: a new actor epoch.
    let restored = Identity::from_secret_bytes(alice.secret_bytes());
    assert_eq!(restored.public(), alice.public());
    assert_ne!(restored.actor(), alice.actor());
    let mut again = direct(&restored, &bob);
    let w = again
        .write_message(&restored, "after restore", None, 9)
        .unwrap();
    let got = b.receive(vec![w.change], 0);
    assert!(got.rejected.is_empty(), "{:?}", got.rejected);
    assert_eq!(b.messages().len(), 4);
    // And its old history comes back by sync, still all there.
    again.receive(segment_changes(&b, 0), 0);
    assert_eq!(again.messages(), b.messages());
}

#[test]
fn a_change_automerge_cannot_apply_is_quarantined_and_the_chat_stays_readable() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let w = a.write_message(&alice, "fine", None, 1).unwrap();
    let edit = a
        .edit_message(&alice, w.message.id, "finer", 2)
        .unwrap()
        .change;
    // A predecessor naming an actor the document does not know makes
    // Automerge panic; push it past the validator to test the second wall.
    let poison = resign(&alice, &edit, |c| {
        c.operations[0].pred = vec![OpId(3, stranger_actor())].into();
    });
    let mut b = direct(&bob, &alice);
    b.receive(vec![w.change], 0);
    let got = b.apply_unjudged_for_test(poison.verify().unwrap());
    assert!(
        matches!(reasons(&got)[..], [RejectReason::Quarantined(_)]),
        "{:?}",
        got.rejected
    );
    assert!(got.stored.is_empty());
    assert_eq!(texts(&b), vec!["fine"]);
    // Never taken again, and the chat goes on.
    let again = b.receive(vec![poison], 0);
    assert_eq!(again.rejected.len(), 1);
    let next = a.write_message(&alice, "next", None, 3).unwrap().change;
    let got = b.receive(vec![next], 0);
    assert!(got.rejected.is_empty() || got.deferred.len() == 1);
}

// ----- property: honest and hostile changes in any order converge ---------

#[derive(Debug, Clone)]
enum Step {
    Write(usize),
    Edit(usize),
    React(usize),
    Delete(usize),
    Remove(usize, usize),
    Promote(usize, usize),
    Fork(usize),
    Hijack(usize),
    Backdate(usize),
    Garble(usize, u8),
    Sync(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..5).prop_map(Step::Write),
        1 => (0usize..5).prop_map(Step::Edit),
        1 => (0usize..5).prop_map(Step::React),
        1 => (0usize..5).prop_map(Step::Delete),
        1 => (0usize..5, 0usize..5).prop_map(|(a, b)| Step::Remove(a, b)),
        1 => (0usize..5, 0usize..5).prop_map(|(a, b)| Step::Promote(a, b)),
        1 => (0usize..5).prop_map(Step::Fork),
        1 => (0usize..5).prop_map(Step::Hijack),
        1 => (0usize..5).prop_map(Step::Backdate),
        1 => (0usize..5, any::<u8>()).prop_map(|(a, b)| Step::Garble(a, b)),
        2 => (0usize..5, 0usize..5).prop_map(|(a, b)| Step::Sync(a, b)),
    ]
}

/// A hostile variant of one of `who`'s changes: the same header with
/// fields bent the ways an attacker would.
fn garble(who: &Identity, change: &SignedChange, how: u8) -> SignedChange {
    resign(who, change, |c| match how % 6 {
        0 => c.seq += 1,
        1 => c.start_op = std::num::NonZeroU64::new(c.start_op.get() + 7).unwrap(),
        2 => c.deps.clear(),
        3 => {
            for op in &mut c.operations {
                op.pred = Vec::new().into();
            }
        }
        4 => {
            if let Some(op) = c.operations.first_mut() {
                op.obj = ObjectId::Id(OpId(1, stranger_actor()));
            }
        }
        _ => {
            if let Some(op) = c.operations.last_mut() {
                op.key = Key::Map("nonsense".into());
                op.action = OpType::Make(ObjType::List);
            }
        }
    })
}

/// Plays `steps` on a group of `n`, heals, and says how replicas differ.
fn play(n: usize, steps: Vec<Step>, seed: u64) -> Result<(), String> {
    let (ids, mut reps) = group(n);
    for rep in reps.iter_mut() {
        rep.segment_capacity = 4;
    }
    let mut log: Vec<SignedChange> = everything(&reps);
    let mut last: Vec<Option<SignedChange>> = vec![None; n];
    for s in steps {
        let produced: Option<SignedChange> = match s {
            Step::Write(r) => {
                let r = r % n;
                reps[r]
                    .write_message(&ids[r], "m", None, 1)
                    .ok()
                    .map(|w| w.change)
            }
            Step::Edit(r) => {
                let r = r % n;
                let mine = reps[r]
                    .messages()
                    .into_iter()
                    .find(|m| m.author == ids[r].public());
                mine.and_then(|m| reps[r].edit_message(&ids[r], m.id, "edited", 2).ok())
                    .map(|a| a.change)
            }
            Step::React(r) => {
                let r = r % n;
                let first = reps[r].messages().into_iter().next();
                first
                    .and_then(|m| reps[r].react(&ids[r], m.id, Some("❤")).ok())
                    .map(|a| a.change)
            }
            Step::Delete(r) => {
                let r = r % n;
                let first = reps[r].messages().into_iter().next();
                first
                    .and_then(|m| reps[r].delete_message(&ids[r], m.id).ok())
                    .map(|a| a.change)
            }
            Step::Remove(r, who) => {
                let (r, who) = (r % n, who % n);
                reps[r]
                    .remove_member(&ids[r], ids[who].public())
                    .ok()
                    .map(|a| a.change)
            }
            Step::Promote(r, who) => {
                let (r, who) = (r % n, who % n);
                reps[r]
                    .set_role(&ids[r], ids[who].public(), Role::Admin)
                    .ok()
                    .map(|a| a.change)
            }
            Step::Fork(r) => {
                let r = r % n;
                last[r]
                    .as_ref()
                    .map(|c| resign(&ids[r], c, |e| e.time += 1))
            }
            Step::Hijack(r) => {
                let r = r % n;
                let victim = reps[r]
                    .messages()
                    .into_iter()
                    .find(|m| m.author != ids[r].public());
                victim.map(|m| {
                    let heads = reps[r].meta().map(|s| s.heads()).unwrap_or_default();
                    let base = segment_changes(&reps[r], m.segment);
                    forge(&ids[r], reps[r].id(), m.segment, heads, &base, |tx| {
                        let obj = tx.put_object(ROOT, m.id.to_string(), ObjType::Map).unwrap();
                        tx.put(&obj, "author", ids[r].public().to_string()).unwrap();
                        tx.put(&obj, "sent_at", ScalarValue::Timestamp(1)).unwrap();
                        tx.put(&obj, "text", "hijacked").unwrap();
                        tx.put_object(&obj, "reactions", ObjType::Map).unwrap();
                    })
                })
            }
            Step::Backdate(r) => {
                let r = r % n;
                // A metadata change from the genesis only: re-adding itself
                // as admin, as if nothing had happened since.
                let genesis: Vec<SignedChange> = log
                    .iter()
                    .filter(|c| c.segment == META_SEGMENT)
                    .take(1)
                    .cloned()
                    .collect();
                let doc = doc_of(&genesis);
                let members = meta::container(&doc, meta::MEMBERS).unwrap();
                let me = ids[r].public().to_string();
                Some(forge(
                    &ids[r],
                    reps[r].id(),
                    META_SEGMENT,
                    vec![],
                    &genesis,
                    |tx| {
                        tx.put(&members, me.as_str(), "admin").unwrap();
                    },
                ))
            }
            Step::Garble(r, how) => {
                let r = r % n;
                last[r].as_ref().map(|c| garble(&ids[r], c, how))
            }
            Step::Sync(a, b) => {
                let (a, b) = (a % n, b % n);
                let missing = reps[b].changes_missing_from(&reps[a].heads(), 0);
                reps[a].receive(missing, 0);
                None
            }
        };
        if let Some(change) = produced {
            let author = change.verify().map(|v| v.author).ok();
            if let Some(r) = ids.iter().position(|i| Some(i.public()) == author) {
                if change.segment != META_SEGMENT {
                    last[r] = Some(change.clone());
                }
                // The producer takes its own hostile change too.
                reps[r].receive(vec![change.clone()], 0);
            }
            log.push(change);
        }
    }
    // Heal: everyone gets everything, shuffled, in chunks, then all at once
    // (what a replica did not keep it did not acknowledge: it comes again).
    let mut s = seed;
    for rep in reps.iter_mut() {
        let mut all = log.clone();
        for i in (1..all.len()).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            all.swap(i, (s >> 33) as usize % (i + 1));
        }
        for chunk in all.chunks(4) {
            rep.receive(chunk.to_vec(), 0);
        }
        rep.receive(log.clone(), 0);
    }
    // Anything kept by one replica reaches the others by sync.
    for _ in 0..2 {
        let all = everything(&reps);
        for (r, rep) in reps.iter_mut().enumerate() {
            let got = rep.receive(all.clone(), 0);
            if std::env::var("HOSTILE_DEBUG").is_ok() {
                for x in &got.rejected {
                    eprintln!(
                        "final sync: replica {r} rejected {:?} {:?}: {}",
                        x.hash, x.author, x.reason
                    );
                }
            }
        }
    }
    for r in 1..n {
        if reps[r].messages() != reps[0].messages() {
            return Err(format!(
                "messages differ: replica {r} {:#?}\nreplica 0 {:#?}",
                reps[r].messages(),
                reps[0].messages()
            ));
        }
        if reps[r].group_info() != reps[0].group_info() {
            return Err(format!("group info differs at replica {r}"));
        }
        if reps[r].heads() != reps[0].heads() {
            return Err(format!("heads differ at replica {r}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// 3 to 5 replicas, honest members and hostile ones, any delivery:
    /// no panic, and once everyone has everything, identical visible state.
    #[test]
    fn hostile_interleavings_converge(
        n in 3usize..=5,
        steps in prop::collection::vec(step(), 1..40),
        seed in any::<u64>(),
    ) {
        let outcome = play(n, steps, seed);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

#[test]
fn replay_found_case() {
    use Step::*;
    let steps = vec![
        React(1),
        Sync(1, 0),
        Write(3),
        Write(2),
        Write(1),
        Edit(3),
        Write(0),
        Write(3),
        Write(0),
        Write(4),
        Write(2),
        Edit(0),
        Garble(2, 155),
        Backdate(2),
        Edit(1),
        Garble(2, 155),
        React(3),
        Garble(2, 115),
        Write(0),
        React(3),
        Edit(1),
        Write(0),
        Write(1),
        Backdate(2),
        Promote(0, 1),
    ];
    play(3, steps, 7333797061631374605).unwrap();
}

#[test]
fn a_change_cannot_travel_in_another_envelope() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut a = direct(&alice, &bob);
    let written = a.write_message(&alice, "hi", None, 1).unwrap().change;
    let raw = automerge::Change::try_from(&written.change[..]).unwrap();
    // The same change, correctly signed, claimed for another segment or
    // with metadata heads it was not written with.
    let moved = SignedChange::sign(&alice, written.chat, 1, Vec::new(), &raw);
    let headed = SignedChange::sign(&alice, written.chat, 0, vec![hash_of(&written)], &raw);
    // A change whose commit message binds nothing.
    let unbound = resign(&alice, &written, |c| c.message = None);
    let mut b = direct(&bob, &alice);
    for change in [moved, headed, unbound] {
        let got = b.receive(vec![change], 0);
        assert!(
            matches!(
                reasons(&got)[..],
                [RejectReason::Verify(crate::signed::VerifyError::Unbound)]
            ),
            "{:?}",
            got.rejected
        );
    }
    assert!(b.receive(vec![written], 0).rejected.is_empty());
    assert_eq!(texts(&b), vec!["hi"]);
}

/// Found by the `signed_change` fuzz target: a bundle chunk (type 3) on which
/// Automerge 0.12's parser panics (an `unwrap` in its column decoder; a
/// neighbour of it allocated 4 GiB). Only raw change chunks are parsed.
#[test]
fn bytes_that_panic_automerges_parser_are_refused() {
    let bytes = [
        133u8, 111, 74, 131, 0, 64, 0, 0, 3, 50, 0, 0, 0, 1, 187, 227, 60, 42, 227, 0, 1, 60, 32,
        65, 59, 59, 66, 66, 66, 59, 221, 59, 66, 66, 66, 66, 0, 0, 0, 0, 0, 0, 0, 21, 149, 74, 74,
        52, 74, 74, 74, 131, 74, 111, 133, 74, 74, 74, 192, 1, 0, 170, 64, 74, 74, 148, 74, 74, 16,
        16, 16, 190, 65, 127, 191, 111, 74, 131, 0, 64, 0, 0, 3, 50, 0, 0, 0, 1, 185, 227, 60, 42,
        227, 0, 1, 60, 32, 65, 59, 59, 66, 59, 59, 66, 66, 66, 221, 66, 66, 66, 0, 0, 0, 0, 0, 0,
        0, 21, 149, 74, 74, 52, 74, 74, 74, 131, 74, 111, 133, 74, 74, 74, 192, 1, 0, 170, 64, 74,
        74, 148, 74, 74, 16, 16, 16, 190,
    ];
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let kind = ChatKind::direct(alice.public(), bob.public());
    let hostile = SignedChange {
        chat: kind.chat_id(),
        segment: 0,
        meta_heads: Vec::new(),
        change: bytes.to_vec(),
        signature: [0; 64],
    };
    // Refused before Automerge's parser sees it.
    assert!(matches!(
        hostile.decode_stored(),
        Err(crate::signed::VerifyError::Malformed(m)) if m.contains("not a change chunk")
    ));
    let mut b = ChatReplica::new(kind);
    let got = b.receive(vec![hostile], 0);
    assert_eq!(got.rejected.len(), 1);
}

//! Groups: membership and roles, rich messages, and convergence of replicas
//! under any delivery order.

use automerge::{transaction::Transactable, ObjType, ScalarValue, ROOT};
use proptest::prelude::*;

use crate::{
    chat::{ChatReplica, RejectReason},
    identity::Identity,
    ids::{MessageId, PublicKey},
    meta::GroupSettings,
    role::Role,
    rules::RuleViolation,
    signed::{SignedChange, META_SEGMENT},
    test_util::{doc_of, forge, segment_changes},
};

struct Group {
    ids: Vec<Identity>,
    reps: Vec<ChatReplica>,
    log: Vec<SignedChange>,
}

impl Group {
    /// `n` identities; the first creates the group with the next `members`.
    fn new(n: usize, members: usize) -> Self {
        let ids: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
        let keys: Vec<PublicKey> = ids[1..=members].iter().map(Identity::public).collect();
        let (creator, genesis) =
            ChatReplica::create_group(&ids[0], "friends", &keys, GroupSettings::default()).unwrap();
        let mut reps = vec![creator];
        for _ in 1..n {
            reps.push(ChatReplica::new(reps[0].kind().clone()).with_segment_capacity(4));
        }
        reps[0].segment_capacity = 4;
        let mut g = Self {
            ids,
            reps,
            log: vec![genesis.change],
        };
        g.sync_all();
        g
    }

    /// Delivers every change ever made to every replica.
    fn sync_all(&mut self) {
        for rep in &mut self.reps {
            deliver(rep, self.log.clone());
        }
    }

    fn record(&mut self, change: SignedChange) {
        self.log.push(change);
    }
}

/// Delivers changes; returns the rejections.
fn deliver(rep: &mut ChatReplica, changes: Vec<SignedChange>) -> Vec<RejectReason> {
    rep.receive(changes, 0)
        .rejected
        .into_iter()
        .map(|r| r.reason)
        .collect()
}

/// A new message map with every field a message needs, by `who`.
fn write_raw_message(tx: &mut automerge::transaction::Transaction<'_>, who: &Identity, text: &str) {
    let m = tx
        .put_object(
            ROOT,
            MessageId::for_author(&who.public()).to_string(),
            ObjType::Map,
        )
        .unwrap();
    tx.put(&m, "author", who.public().to_string()).unwrap();
    tx.put(&m, "sent_at", ScalarValue::Timestamp(1)).unwrap();
    tx.put(&m, "text", text).unwrap();
    tx.put_object(&m, "reactions", ObjType::Map).unwrap();
}

fn meta_heads(rep: &ChatReplica) -> Vec<crate::ids::ChangeHash> {
    rep.meta().unwrap().heads()
}

#[test]
fn members_write_and_everyone_agrees() {
    let mut g = Group::new(3, 2);
    let info = g.reps[2].group_info().unwrap();
    assert_eq!(info.name, "friends");
    assert_eq!(info.members.len(), 3);
    assert_eq!(g.reps[1].members()[&g.ids[0].public()], Role::Admin);
    let w = g.reps[1]
        .write_message(&g.ids[1], "hello group", None, 1)
        .unwrap();
    g.record(w.change);
    g.sync_all();
    let r = g.reps[2]
        .write_message(&g.ids[2], "hi!", Some(w.message.id), 2)
        .unwrap();
    g.record(r.change);
    g.sync_all();
    for rep in &g.reps {
        let msgs = rep.messages();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].reply_to, Some(w.message.id));
    }
}

#[test]
fn strangers_cannot_write_even_with_a_forged_replica() {
    let mut g = Group::new(4, 2); // ids[3] is not a member
    let stranger = g.ids[3].clone();
    assert!(g.reps[3]
        .write_message(&stranger, "let me in", None, 1)
        .is_err());
    // Bypass the local check and sign a message anyway.
    let heads = meta_heads(&g.reps[3]);
    let forged = forge(&stranger, g.reps[3].id(), 0, heads, &[], |tx| {
        write_raw_message(tx, &stranger, "spam")
    });
    let rejected = deliver(&mut g.reps[0], vec![forged]);
    assert!(matches!(rejected[..], [RejectReason::NotMember(_)]));
    assert!(g.reps[0].messages().is_empty());
}

#[test]
fn only_admins_change_membership() {
    let mut g = Group::new(4, 2);
    let outsider = g.ids[3].public();
    assert!(g.reps[1].add_member(&g.ids[1], outsider).is_err());
    // A member forging an add is rejected by everyone.
    let base = segment_changes(&g.reps[1], META_SEGMENT);
    let doc = doc_of(&base);
    let members_obj = crate::meta::container(&doc, crate::meta::MEMBERS).unwrap();
    let forged = forge(
        &g.ids[1],
        g.reps[1].id(),
        META_SEGMENT,
        vec![],
        &base,
        |tx| {
            tx.put(&members_obj, outsider.to_string(), "admin").unwrap();
        },
    );
    let rejected = deliver(&mut g.reps[0], vec![forged]);
    assert!(matches!(
        rejected[..],
        [RejectReason::Rule(RuleViolation::NotAllowed(_))]
    ));
    // The admin can.
    let add = g.reps[0].add_member(&g.ids[0], outsider).unwrap();
    g.record(add.change);
    g.sync_all();
    assert!(g.reps[3].is_member(&outsider));
    let w = g.reps[3]
        .write_message(&g.ids[3], "thanks", None, 5)
        .unwrap();
    g.record(w.change);
    g.sync_all();
    assert_eq!(g.reps[1].messages().len(), 1);
}

#[test]
fn a_removed_member_cannot_write_after_seeing_its_removal() {
    let mut g = Group::new(3, 2);
    let removed = g.ids[2].clone();
    let rm = g.reps[0]
        .remove_member(&g.ids[0], removed.public())
        .unwrap();
    g.record(rm.change);
    g.sync_all();
    assert!(!g.reps[2].is_member(&removed.public()));
    assert!(g.reps[2]
        .write_message(&removed, "still here?", None, 9)
        .is_err());
    let heads = meta_heads(&g.reps[2]);
    let sneaky = forge(&removed, g.reps[2].id(), 0, heads, &[], |tx| {
        write_raw_message(tx, &removed, "sneaky")
    });
    let rejected = deliver(&mut g.reps[1], vec![sneaky]);
    assert!(matches!(rejected[..], [RejectReason::NotMember(_)]));
    assert!(g.reps[1].messages().is_empty());
}

#[test]
fn a_message_the_remover_had_seen_still_counts() {
    let mut g = Group::new(3, 2);
    let leaver = g.ids[2].clone();
    let before = g.reps[2]
        .write_message(&leaver, "goodbye", None, 5)
        .unwrap();
    // The admin sees the message, then removes its author.
    assert!(deliver(&mut g.reps[0], vec![before.change.clone()]).is_empty());
    let rm = g.reps[0].remove_member(&g.ids[0], leaver.public()).unwrap();
    // Another member learns of the removal first, the message later.
    assert!(deliver(&mut g.reps[1], vec![rm.change.clone()]).is_empty());
    assert!(!g.reps[1].is_member(&leaver.public()));
    assert!(deliver(&mut g.reps[1], vec![before.change]).is_empty());
    for rep in &g.reps[..2] {
        let texts: Vec<_> = rep.messages().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, vec!["goodbye"]);
    }
    // After the removal the same author is refused.
    g.record(rm.change);
    g.sync_all();
    let heads = meta_heads(&g.reps[2]);
    let base = segment_changes(&g.reps[2], 0);
    let late = forge(&leaver, g.reps[2].id(), 0, heads, &base, |tx| {
        write_raw_message(tx, &leaver, "late")
    });
    let rejected = deliver(&mut g.reps[1], vec![late]);
    assert!(matches!(rejected[..], [RejectReason::NotMember(_)]));
}

#[test]
fn a_message_the_remover_had_not_seen_is_void_everywhere() {
    let mut g = Group::new(3, 2);
    let leaver = g.ids[2].clone();
    // Written without having seen the removal (or pretending not to have).
    let concurrent = g.reps[2]
        .write_message(&leaver, "you cannot remove me", None, 5)
        .unwrap();
    // One member shows it before the removal reaches it...
    assert!(deliver(&mut g.reps[1], vec![concurrent.change.clone()]).is_empty());
    assert_eq!(g.reps[1].messages().len(), 1);
    // ...the admin, who never saw it, removes its author.
    let rm = g.reps[0].remove_member(&g.ids[0], leaver.public()).unwrap();
    let got = g.reps[1].receive(vec![rm.change.clone()], 0);
    assert!(got.rejected.is_empty());
    assert!(
        g.reps[1].messages().is_empty(),
        "hidden once the removal is seen"
    );
    // The admin receives it after: stored (others may build on it), not shown.
    let got = g.reps[0].receive(vec![concurrent.change.clone()], 0);
    assert!(got.rejected.is_empty());
    assert_eq!(got.stored.len(), 1);
    assert!(got.new_messages.is_empty());
    assert!(g.reps[0].messages().is_empty());
    assert_eq!(g.reps[0].messages(), g.reps[1].messages());
}

/// The Automerge dependencies of a signed change.
fn deps_of(change: &SignedChange) -> Vec<crate::ids::ChangeHash> {
    change
        .decode_stored()
        .unwrap()
        .change
        .deps()
        .iter()
        .map(|d| (*d).into())
        .collect()
}

#[test]
fn a_new_message_depends_on_its_authors_last_one_and_settled_heads_only() {
    let mut g = Group::new(3, 2);
    let first = g.reps[1].write_message(&g.ids[1], "one", None, 1).unwrap();
    assert!(
        deps_of(&first.change).is_empty(),
        "nothing of its own before"
    );
    g.record(first.change.clone());
    g.sync_all();
    let other = g.reps[2].write_message(&g.ids[2], "two", None, 2).unwrap();
    assert!(
        deps_of(&other.change).is_empty(),
        "built on another member's message"
    );
    g.record(other.change.clone());
    g.sync_all();
    let second = g.reps[1]
        .write_message(&g.ids[1], "three", None, 3)
        .unwrap();
    assert_eq!(deps_of(&second.change), vec![first.hash]);
    g.record(second.change.clone());

    // A member that has only the author's own messages applies it at once:
    // it waits for nothing the author merely had seen.
    let mut late = ChatReplica::new(g.reps[0].kind().clone()).with_segment_capacity(4);
    let setup: Vec<SignedChange> = segment_changes(&g.reps[0], META_SEGMENT);
    deliver(&mut late, setup);
    let got = late.receive(vec![first.change, second.change], 0);
    assert!(got.deferred.is_empty(), "{:?}", got.deferred);
    assert_eq!(got.new_messages.len(), 2);

    // Once a message has been held for SETTLE_MS, new ones are built on it.
    g.sync_all();
    let settled = crate::segment::SETTLE_MS;
    let later = g.reps[1]
        .write_message(&g.ids[1], "four", None, settled)
        .unwrap();
    let mut deps = deps_of(&later.change);
    deps.sort();
    let mut expected = vec![second.hash, other.hash];
    expected.sort();
    assert_eq!(deps, expected);
    g.record(later.change);

    // And everyone still agrees, whatever they were built on.
    g.sync_all();
    let texts = |rep: &ChatReplica| -> Vec<String> {
        let mut t: Vec<String> = rep.messages().into_iter().map(|m| m.text).collect();
        t.sort();
        t
    };
    for rep in &g.reps {
        assert_eq!(texts(rep), ["four", "one", "three", "two"]);
    }
}

#[test]
fn edits_and_reactions_are_built_on_everything_held() {
    let mut g = Group::new(3, 2);
    let mine = g.reps[1].write_message(&g.ids[1], "mine", None, 1).unwrap();
    g.record(mine.change.clone());
    g.sync_all();
    let theirs = g.reps[2]
        .write_message(&g.ids[2], "theirs", None, 2)
        .unwrap();
    g.record(theirs.change.clone());
    g.sync_all();
    let edit = g.reps[1]
        .edit_message(&g.ids[1], mine.message.id, "mine, edited", 3)
        .unwrap();
    let mut deps = deps_of(&edit.change);
    deps.sort();
    let mut heads = vec![mine.hash, theirs.hash];
    heads.sort();
    assert_eq!(deps, heads, "an edit names every head it saw");
}

#[test]
fn edits_deletes_and_reactions_follow_the_rules() {
    let mut g = Group::new(3, 2);
    let w = g.reps[1].write_message(&g.ids[1], "typo", None, 1).unwrap();
    let id = w.message.id;
    g.record(w.change);
    g.sync_all();
    // Only the author edits.
    assert!(g.reps[2].edit_message(&g.ids[2], id, "hijack", 2).is_err());
    let edit = g.reps[1].edit_message(&g.ids[1], id, "fixed", 2).unwrap();
    g.record(edit.change);
    // Everyone reacts, once each; a reaction can be replaced.
    for i in 0..3 {
        let r = g.reps[i].react(&g.ids[i], id, Some("👍")).unwrap();
        g.record(r.change);
    }
    let again = g.reps[2].react(&g.ids[2], id, Some("🎉")).unwrap();
    g.record(again.change);
    g.sync_all();
    let msg = g.reps[0].message(&id).unwrap();
    assert_eq!(msg.text, "fixed");
    assert_eq!(msg.edited_at_ms, Some(2));
    assert_eq!(msg.reactions.len(), 3);
    assert_eq!(msg.reactions[&g.ids[2].public()], "🎉");
    // A member cannot delete someone else's message; the admin can.
    assert!(g.reps[2].delete_message(&g.ids[2], id).is_err());
    let del = g.reps[0].delete_message(&g.ids[0], id).unwrap();
    g.record(del.change);
    g.sync_all();
    for rep in &g.reps {
        let msg = rep.message(&id).unwrap();
        assert!(msg.deleted);
        assert_eq!(msg.text, "");
    }
}

#[test]
fn concurrent_add_and_remove_resolve_the_same_everywhere() {
    let mut g = Group::new(4, 2);
    // Promote member 1 so two admins act concurrently.
    let promote = g.reps[0]
        .set_role(&g.ids[0], g.ids[1].public(), Role::Admin)
        .unwrap();
    g.record(promote.change);
    g.sync_all();
    let target = g.ids[2].public();
    let rm = g.reps[0].remove_member(&g.ids[0], target).unwrap();
    let readd = g.reps[1].set_role(&g.ids[1], target, Role::Admin).unwrap();
    g.record(rm.change);
    g.record(readd.change);
    g.sync_all();
    let members: Vec<_> = g.reps.iter().map(ChatReplica::members).collect();
    assert!(members.windows(2).all(|w| w[0] == w[1]));
    // Strong removal: a re-add concurrent with a removal does not survive.
    assert!(!members[0].contains_key(&target));
}

#[test]
fn new_members_without_history_get_a_fresh_segment() {
    let mut g = Group::new(4, 2);
    let off = g.reps[0]
        .set_history_for_new_members(&g.ids[0], false)
        .unwrap();
    g.record(off.change);
    let w = g.reps[0]
        .write_message(&g.ids[0], "old secret", None, 1)
        .unwrap();
    g.record(w.change);
    g.sync_all();
    let add = g.reps[0].add_member(&g.ids[0], g.ids[3].public()).unwrap();
    g.record(add.change);
    g.sync_all();
    let info = g.reps[1].group_info().unwrap();
    for member in &info.members {
        assert_eq!(g.reps[1].member(&member.key).as_ref(), Some(member));
    }
    assert_eq!(
        g.reps[1].member(&g.ids[0].public()).unwrap().role,
        Role::Admin
    );
    let joined = g.reps[1].member(&g.ids[3].public()).unwrap().joined_segment;
    assert_eq!(joined, 1);
    let w = g.reps[1]
        .write_message(&g.ids[1], "welcome", None, 2)
        .unwrap();
    assert_eq!(w.message.segment, 1);
    // What an old member would send the newcomer: metadata and segment 1 only.
    let for_newcomer = g.reps[1].changes_missing_from(&[], joined);
    let mut fresh = ChatReplica::new(g.reps[0].kind().clone());
    deliver(&mut fresh, for_newcomer);
    let texts: Vec<_> = fresh.messages().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["welcome"]);
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Edit(usize),
    React(usize),
    Add(usize, usize),
    Remove(usize, usize),
    Sync(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..5).prop_map(Op::Write),
        1 => (0usize..5).prop_map(Op::Edit),
        1 => (0usize..5).prop_map(Op::React),
        1 => (0usize..5, 0usize..5).prop_map(|(a, b)| Op::Add(a, b)),
        1 => (0usize..5, 0usize..5).prop_map(|(a, b)| Op::Remove(a, b)),
        2 => (0usize..5, 0usize..5).prop_map(|(a, b)| Op::Sync(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random group workloads on 3–5 replicas with partial syncs (partitions),
    /// then delivery of everything in any order with duplicates: all replicas
    /// end identical.
    #[test]
    fn groups_converge_under_any_delivery(
        n in 3usize..=5,
        ops in prop::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        let mut g = Group::new(n, n - 2);
        for op in ops {
            let produced = match op {
                Op::Write(r) => {
                    let r = r % n;
                    g.reps[r].write_message(&g.ids[r].clone(), "m", None, 1).ok().map(|w| w.change)
                }
                Op::Edit(r) => {
                    let r = r % n;
                    let me = g.ids[r].clone();
                    let mine = g.reps[r].messages().into_iter().find(|m| m.author == me.public());
                    mine.and_then(|m| g.reps[r].edit_message(&me, m.id, "edited", 2).ok()).map(|a| a.change)
                }
                Op::React(r) => {
                    let r = r % n;
                    let me = g.ids[r].clone();
                    let first = g.reps[r].messages().into_iter().next();
                    first.and_then(|m| g.reps[r].react(&me, m.id, Some("❤")).ok()).map(|a| a.change)
                }
                Op::Add(r, who) => {
                    let (r, who) = (r % n, who % n);
                    let key = g.ids[who].public();
                    g.reps[r].add_member(&g.ids[r].clone(), key).ok().map(|a| a.change)
                }
                Op::Remove(r, who) => {
                    let (r, who) = (r % n, who % n);
                    let key = g.ids[who].public();
                    g.reps[r].remove_member(&g.ids[r].clone(), key).ok().map(|a| a.change)
                }
                Op::Sync(a, b) => {
                    let (a, b) = (a % n, b % n);
                    let missing = g.reps[b].changes_missing_from(&g.reps[a].heads(), 0);
                    deliver(&mut g.reps[a], missing);
                    None
                }
            };
            if let Some(change) = produced {
                g.record(change);
            }
        }
        // Heal: every replica gets everything, shuffled, with duplicates.
        let mut s = seed;
        for r in 0..n {
            let mut all = g.log.clone();
            all.extend(g.log.iter().step_by(3).cloned());
            for i in (1..all.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                all.swap(i, (s >> 33) as usize % (i + 1));
            }
            for chunk in all.chunks(5) {
                deliver(&mut g.reps[r], chunk.to_vec());
            }
            // What was not kept (its dependencies had not arrived and its
            // author is no longer a member) was not acknowledged either:
            // its sender sends it again, as sync does.
            deliver(&mut g.reps[r], g.log.clone());
        }
        for r in 1..n {
            prop_assert_eq!(g.reps[r].messages(), g.reps[0].messages());
            prop_assert_eq!(g.reps[r].members(), g.reps[0].members());
            prop_assert_eq!(g.reps[r].group_info(), g.reps[0].group_info());
            prop_assert_eq!(g.reps[r].deferred_count(), 0);
        }
    }
}

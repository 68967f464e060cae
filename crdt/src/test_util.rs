//! Building hostile changes by hand, for tests: changes an honest writer
//! would never make, correctly signed.

use automerge::{transaction::Transaction, Automerge, ExpandedChange};

use crate::{
    chat::ChatReplica,
    identity::Identity,
    ids::{ChangeHash, ChatId},
    signed::{SegmentIndex, SignedChange},
};

/// An Automerge document holding `changes` (signed changes of one segment).
pub(crate) fn doc_of(changes: &[SignedChange]) -> Automerge {
    let mut doc = Automerge::new();
    let raw: Vec<automerge::Change> = changes
        .iter()
        .map(|c| automerge::Change::try_from(&c.change[..]).expect("a valid change"))
        .collect();
    doc.apply_changes(raw).expect("changes apply");
    doc
}

/// The signed changes a replica holds in one segment.
pub(crate) fn segment_changes(rep: &ChatReplica, segment: SegmentIndex) -> Vec<SignedChange> {
    rep.segments
        .get(&segment)
        .map(|s| s.signed.values().cloned().collect())
        .unwrap_or_default()
}

/// Writes a change with an ordinary Automerge transaction on top of `base`
/// as `identity`, bypassing every local check, and signs it.
pub(crate) fn forge(
    identity: &Identity,
    chat: ChatId,
    segment: SegmentIndex,
    meta_heads: Vec<ChangeHash>,
    base: &[SignedChange],
    f: impl FnOnce(&mut Transaction<'_>),
) -> SignedChange {
    let mut doc = doc_of(base);
    doc.set_actor(identity.actor());
    let mut tx = doc.transaction();
    f(&mut tx);
    tx.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_message(crate::signed::binding(segment, &meta_heads)),
    );
    let change = doc.get_last_local_change().expect("a change");
    SignedChange::sign(identity, chat, segment, meta_heads, &change)
}

/// Expands a signed change, lets `edit` change anything in it, re-encodes it
/// and signs it as `identity` (whose actor it gets unless `edit` sets one).
pub(crate) fn resign(
    identity: &Identity,
    template: &SignedChange,
    edit: impl FnOnce(&mut ExpandedChange),
) -> SignedChange {
    let change = automerge::Change::try_from(&template.change[..]).expect("a valid change");
    let mut expanded = change.decode();
    expanded.actor_id = identity.actor();
    expanded.hash = None;
    edit(&mut expanded);
    let rebuilt = automerge::Change::from(expanded);
    SignedChange::sign(
        identity,
        template.chat,
        template.segment,
        template.meta_heads.clone(),
        &rebuilt,
    )
}

/// The hash of a signed change.
pub(crate) fn hash_of(change: &SignedChange) -> ChangeHash {
    change.decode_stored().expect("decodes").hash
}

//! One history segment: a bounded Automerge document plus the signed form of
//! every change in it (so sync can forward changes exactly as they were signed).

use std::collections::HashMap;

use automerge::{Automerge, ReadDoc, ROOT};

use crate::{
    ids::{ChangeHash, MessageId},
    message::{read_message, Message},
    signed::{SegmentIndex, SignedChange},
};

pub(crate) struct Segment {
    pub(crate) index: SegmentIndex,
    pub(crate) doc: Automerge,
    /// Every change applied or queued (waiting for dependencies), as signed.
    pub(crate) signed: HashMap<ChangeHash, SignedChange>,
}

impl Segment {
    pub(crate) fn new(index: SegmentIndex) -> Self {
        Self {
            index,
            doc: Automerge::new(),
            signed: HashMap::new(),
        }
    }

    pub(crate) fn message_count(&self) -> usize {
        self.doc.length(ROOT)
    }

    pub(crate) fn messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.doc
            .keys(ROOT)
            .filter_map(|k| read_message(&self.doc, &k, self.index))
    }

    pub(crate) fn message(&self, id: &MessageId) -> Option<Message> {
        read_message(&self.doc, &id.to_string(), self.index)
    }

    pub(crate) fn has_change(&self, hash: &ChangeHash) -> bool {
        self.doc
            .get_change_meta_by_hash(&automerge::ChangeHash::from(*hash))
            .is_some()
    }

    pub(crate) fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads().into_iter().map(Into::into).collect()
    }

    /// Changes of this segment not covered by `their_heads`. Heads we do not
    /// know are ignored, which can only make the answer larger, never wrong.
    pub(crate) fn changes_not_in(&self, their_heads: &[ChangeHash]) -> Vec<SignedChange> {
        let known: Vec<automerge::ChangeHash> = their_heads
            .iter()
            .map(|h| automerge::ChangeHash::from(*h))
            .filter(|h| self.doc.get_change_meta_by_hash(h).is_some())
            .collect();
        self.doc
            .get_changes_meta(&known)
            .into_iter()
            .filter_map(|meta| self.signed.get(&ChangeHash::from(meta.hash)).cloned())
            .collect()
    }
}

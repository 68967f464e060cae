//! Views of a group's metadata document, computed once and reused.
//!
//! Reading the membership out of Automerge costs time proportional to the
//! group (about 4 µs per member), and the node asks for it on every received
//! message, every sync and every connection: at 1,024 members that was
//! milliseconds per question. The current views are dropped whenever the
//! document changes; views as at past heads never go stale (history at fixed
//! heads does not change), so they are kept, a bounded number of them.

use std::{
    cell::{OnceCell, RefCell},
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use automerge::{Automerge, ChangeHash as AmHash};

use crate::{
    ids::PublicKey,
    meta::{self, GroupInfo, Role},
};

/// Members and roles.
pub(crate) type Roles = Arc<BTreeMap<PublicKey, Role>>;

/// Distinct past heads whose roles are kept (messages name the metadata heads
/// their author saw; a group rarely has more than a few live at once).
const PAST_HEADS_KEPT: usize = 32;

#[derive(Default)]
pub(crate) struct MetaCache {
    roles: OnceCell<Roles>,
    info: OnceCell<Option<Arc<GroupInfo>>>,
    past: RefCell<HashMap<Vec<AmHash>, Roles>>,
}

impl MetaCache {
    /// Forgets the views of the current state (call after the document changed).
    pub(crate) fn invalidate(&mut self) {
        self.roles = OnceCell::new();
        self.info = OnceCell::new();
    }

    /// Members and roles now.
    pub(crate) fn roles(&self, doc: &Automerge) -> Roles {
        self.roles
            .get_or_init(|| Arc::new(meta::roles_at(doc, None)))
            .clone()
    }

    /// The full metadata now.
    pub(crate) fn info(&self, doc: &Automerge) -> Option<Arc<GroupInfo>> {
        self.info
            .get_or_init(|| meta::info(doc).map(Arc::new))
            .clone()
    }

    /// Members and roles as at `heads`, which the document must hold.
    pub(crate) fn roles_at(&self, doc: &Automerge, heads: &[AmHash]) -> Roles {
        let mut key = heads.to_vec();
        key.sort();
        if key == doc.get_heads() {
            return self.roles(doc);
        }
        if let Some(roles) = self.past.borrow().get(&key) {
            return roles.clone();
        }
        let roles = Arc::new(meta::roles_at(doc, Some(&key)));
        let mut past = self.past.borrow_mut();
        if past.len() >= PAST_HEADS_KEPT {
            past.clear();
        }
        past.insert(key, roles.clone());
        roles
    }
}

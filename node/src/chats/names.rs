//! The group name index: name → chat ids, so finding a group by name
//! (`chats().resolve`) reads no chat's history and materialises nothing.
//!
//! It lives in memory. It is built at the first lookup from each group's
//! metadata alone (its metadata segment, or the replica already loaded);
//! afterwards a group is read again only after something may have changed
//! its name: a local write, a received change, a loaded request, a replica
//! dropped after a storage error. Those mark it *stale*; the next lookup
//! reads stale groups again, from the in-memory replica when it is loaded
//! (its group info is cached per metadata state) or from the metadata
//! segment on disk.

use std::collections::{BTreeSet, HashMap, HashSet};

use meshchat_crdt::{ChatId, ChatReplica, META_SEGMENT};

use super::Chats;
use crate::store::StoreError;

/// Group names, by chat and by name.
#[derive(Debug, Default)]
pub(crate) struct GroupNames {
    /// Each indexed group's name.
    names: HashMap<ChatId, String>,
    /// The same, by name.
    by_name: HashMap<String, BTreeSet<ChatId>>,
    /// Chats whose name may have changed since they were indexed.
    stale: HashSet<ChatId>,
    /// Whether every stored group was indexed once.
    built: bool,
}

impl GroupNames {
    /// Something may have changed `chat`'s name: read it again at the next
    /// lookup.
    pub(crate) fn touch(&mut self, chat: ChatId) {
        self.stale.insert(chat);
    }

    fn set(&mut self, chat: ChatId, name: Option<String>) {
        if let Some(old) = self.names.remove(&chat) {
            if let Some(ids) = self.by_name.get_mut(&old) {
                ids.remove(&chat);
                if ids.is_empty() {
                    self.by_name.remove(&old);
                }
            }
        }
        if let Some(name) = name {
            self.by_name.entry(name.clone()).or_default().insert(chat);
            self.names.insert(chat, name);
        }
    }

    fn named(&self, name: &str) -> Vec<ChatId> {
        self.by_name
            .get(name)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }
}

impl Chats {
    /// The groups called exactly `name`.
    pub(crate) fn groups_named(&mut self, name: &str) -> Result<Vec<ChatId>, StoreError> {
        if !self.names.built {
            for (id, kind) in self.chat_ids()? {
                if kind.is_group() {
                    self.names.touch(id);
                }
            }
            self.names.built = true;
        }
        let stale: Vec<ChatId> = self.names.stale.iter().copied().collect();
        for chat in stale {
            // On an error the chat stays stale, to be read next time.
            let name = self.group_name(&chat)?;
            self.names.set(chat, name);
            self.names.stale.remove(&chat);
        }
        Ok(self.names.named(name))
    }

    /// A group's name as stored, read from its metadata only.
    fn group_name(&self, chat: &ChatId) -> Result<Option<String>, StoreError> {
        if let Some(replica) = self.replicas.get(chat) {
            return Ok(replica.group_info().map(|info| info.name));
        }
        let Some(record) = self.store.chat(chat)? else {
            return Ok(None);
        };
        if !record.kind.is_group() {
            return Ok(None);
        }
        // A scratch replica of the metadata alone: judged like any load,
        // but never kept (it lacks the history).
        let mut meta = ChatReplica::new(record.kind);
        meta.load(self.store.changes_of_segment(chat, META_SEGMENT)?);
        Ok(meta.group_info().map(|info| info.name))
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;
    use crate::{chats::ChatOp, store::Store};

    #[tokio::test]
    async fn one_name_two_groups_then_a_rename_moves_one() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Identity::generate();
        let (first, second) = {
            let mut chats = Chats::new(me.clone(), Store::open(tmp.path()).unwrap()).unwrap();
            let first = chats.create_group("climbers", &[], 1).await.unwrap().0;
            let second = chats.create_group("climbers", &[], 2).await.unwrap().0;
            let mut both = vec![first, second];
            both.sort();
            assert_eq!(chats.groups_named("climbers").unwrap(), both);

            chats
                .local_op(second, ChatOp::Rename("boulderers".into()), 3)
                .unwrap();
            chats.store().flush().await.unwrap();
            assert_eq!(chats.groups_named("climbers").unwrap(), vec![first]);
            assert_eq!(chats.groups_named("boulderers").unwrap(), vec![second]);
            assert!(chats.groups_named("nobody").unwrap().is_empty());
            (first, second)
        };

        // Started again: built from the metadata alone, no replica loaded.
        let mut chats = Chats::new(me, Store::open(tmp.path()).unwrap()).unwrap();
        assert_eq!(chats.groups_named("climbers").unwrap(), vec![first]);
        assert_eq!(chats.groups_named("boulderers").unwrap(), vec![second]);
        assert!(
            chats.replicas.is_empty(),
            "a lookup loaded a chat's history"
        );
    }
}

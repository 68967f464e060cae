//! Who a file comes from, and what that allows: whether this node serves it
//! to the chat's members and whether it downloads by itself.
//!
//! Pure: the media task and the access index feed it what they know
//! (contacts, blocked peers, chat shapes); no I/O.

use std::collections::{HashMap, HashSet};

use iroh_blobs::Hash;
use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::config::BlobConfig;

/// The people this node knows: itself, its contacts, the peers it blocked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct People {
    /// This node's key.
    pub(crate) me: Option<PublicKey>,
    /// Contacts the user added and did not block.
    pub(crate) contacts: HashSet<PublicKey>,
    /// Peers the user blocked.
    pub(crate) blocked: HashSet<PublicKey>,
}

/// What a chat looks like from here, as far as trust goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatShape {
    /// A direct chat (the other side is its only other member).
    Direct,
    /// A group, with who created it and who added this node.
    Group {
        /// The group's creator.
        creator: PublicKey,
        /// The member that added this node (none for the creator).
        added_me: Option<PublicKey>,
    },
}

/// Where a file message comes from, as the user would put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The user wrote it.
    Own,
    /// A contact, in a direct chat (or anywhere).
    Contact,
    /// A member of a group the user created or a contact added it to.
    Group,
    /// Anyone else: a non-contact in a direct chat, a member of a group a
    /// stranger added the user to, or a blocked peer.
    Stranger,
}

impl People {
    fn is_contact(&self, key: &PublicKey) -> bool {
        self.contacts.contains(key) && !self.blocked.contains(key)
    }

    /// Where a message by `author` in a chat shaped `shape` comes from.
    pub(crate) fn origin(&self, shape: ChatShape, author: &PublicKey) -> Origin {
        if self.me.as_ref() == Some(author) {
            return Origin::Own;
        }
        if self.blocked.contains(author) {
            return Origin::Stranger;
        }
        if self.is_contact(author) {
            return Origin::Contact;
        }
        match shape {
            ChatShape::Direct => Origin::Stranger,
            ChatShape::Group { creator, added_me } => {
                let trusted = self.me == Some(creator)
                    || added_me.is_some_and(|k| self.is_contact(&k))
                    || (added_me.is_none() && self.is_contact(&creator));
                if trusted {
                    Origin::Group
                } else {
                    Origin::Stranger
                }
            }
        }
    }
}

impl Origin {
    /// Whether a message from here entitles the chat's members to fetch
    /// its file from this node. A stranger naming a hash this node holds
    /// for another chat must not unlock it.
    pub(crate) fn entitles_members(self) -> bool {
        !matches!(self, Origin::Stranger)
    }
}

/// When received files download by themselves (WhatsApp's "media
/// auto-download"), changeable while the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoDownload {
    /// Largest file that downloads by itself, in bytes (0: none do).
    pub max_bytes: u64,
    /// In direct chats with contacts.
    pub contacts: bool,
    /// In groups the user created or a contact added the user to.
    pub groups: bool,
    /// Bytes of auto-downloaded files kept on disk, in total; when full,
    /// files wait for `meshchat fetch`.
    pub budget_bytes: u64,
    /// Bytes of that budget one sender may fill.
    pub per_sender_bytes: u64,
}

impl From<&BlobConfig> for AutoDownload {
    fn from(config: &BlobConfig) -> Self {
        Self {
            max_bytes: config.auto_download_bytes,
            contacts: config.auto_download_contacts,
            groups: config.auto_download_groups,
            budget_bytes: config.auto_download_budget_bytes,
            per_sender_bytes: config.auto_download_per_sender_bytes,
        }
    }
}

/// Why a received file did not download by itself (it stays listed;
/// `meshchat fetch` gets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// From a stranger (or a blocked peer): never.
    Stranger,
    /// The user turned auto-download off for this kind of chat.
    Off,
    /// Larger than the auto-download size.
    TooLarge,
    /// The total budget would be exceeded.
    BudgetFull,
    /// The sender's share of the budget would be exceeded.
    SenderFull,
    /// The admission could not be recorded on disk.
    Storage,
}

impl AutoDownload {
    /// Whether a file of `size` bytes from `origin` may download by itself
    /// (the budget aside).
    pub(crate) fn allows(&self, origin: Origin, size: u64) -> Result<(), SkipReason> {
        let on = match origin {
            Origin::Own => return Err(SkipReason::Off),
            Origin::Stranger => return Err(SkipReason::Stranger),
            Origin::Contact => self.contacts,
            Origin::Group => self.groups,
        };
        if !on || self.max_bytes == 0 {
            return Err(SkipReason::Off);
        }
        if size > self.max_bytes {
            return Err(SkipReason::TooLarge);
        }
        Ok(())
    }
}

/// The disk budget of auto-downloaded files: what each one was admitted
/// with (its announced size, an upper bound: a download stops past it) and
/// whom it is charged to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Budget {
    admitted: HashMap<Hash, (PublicKey, u64)>,
    per_sender: HashMap<PublicKey, u64>,
    total: u64,
}

impl Budget {
    /// Whether `hash` was admitted (a download to resume, not to charge again).
    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.admitted.contains_key(hash)
    }

    /// Bytes charged in total.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.total
    }

    /// Charges `size` bytes of `hash` to `sender` if both the total and the
    /// sender's share allow it. Admitting a hash twice charges it once.
    pub(crate) fn admit(
        &mut self,
        policy: &AutoDownload,
        hash: Hash,
        sender: PublicKey,
        size: u64,
    ) -> Result<(), SkipReason> {
        if self.contains(&hash) {
            return Ok(());
        }
        if self.total.saturating_add(size) > policy.budget_bytes {
            return Err(SkipReason::BudgetFull);
        }
        let share = self.per_sender.get(&sender).copied().unwrap_or(0);
        if share.saturating_add(size) > policy.per_sender_bytes {
            return Err(SkipReason::SenderFull);
        }
        self.restore(hash, sender, size);
        Ok(())
    }

    /// Records an admission made before a restart (no limit checked: the
    /// bytes are on disk already).
    pub(crate) fn restore(&mut self, hash: Hash, sender: PublicKey, size: u64) {
        if self.admitted.insert(hash, (sender, size)).is_none() {
            *self.per_sender.entry(sender).or_default() += size;
            self.total = self.total.saturating_add(size);
        }
    }

    /// Gives back what `hash` was charged (its message was deleted).
    pub(crate) fn release(&mut self, hash: &Hash) {
        let Some((sender, size)) = self.admitted.remove(hash) else {
            return;
        };
        self.total = self.total.saturating_sub(size);
        if let Some(share) = self.per_sender.get_mut(&sender) {
            *share = share.saturating_sub(size);
            if *share == 0 {
                self.per_sender.remove(&sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn people() -> People {
        People {
            me: Some(key(1)),
            contacts: [key(2), key(4)].into(),
            blocked: [key(4), key(5)].into(),
        }
    }

    #[test]
    fn strangers_and_blocked_peers_are_strangers_everywhere() {
        let p = people();
        assert_eq!(p.origin(ChatShape::Direct, &key(1)), Origin::Own);
        assert_eq!(p.origin(ChatShape::Direct, &key(2)), Origin::Contact);
        assert_eq!(p.origin(ChatShape::Direct, &key(3)), Origin::Stranger);
        // A blocked contact is no contact.
        assert_eq!(p.origin(ChatShape::Direct, &key(4)), Origin::Stranger);
        let mine = ChatShape::Group {
            creator: key(1),
            added_me: None,
        };
        assert_eq!(p.origin(mine, &key(3)), Origin::Group);
        assert_eq!(p.origin(mine, &key(5)), Origin::Stranger, "blocked");
    }

    #[test]
    fn a_group_counts_only_if_the_user_or_a_contact_brought_the_user_in() {
        let p = people();
        let by_contact = ChatShape::Group {
            creator: key(3),
            added_me: Some(key(2)),
        };
        assert_eq!(p.origin(by_contact, &key(3)), Origin::Group);
        let by_stranger = ChatShape::Group {
            creator: key(3),
            added_me: Some(key(3)),
        };
        assert_eq!(p.origin(by_stranger, &key(6)), Origin::Stranger);
        // A contact is known wherever it writes.
        assert_eq!(p.origin(by_stranger, &key(2)), Origin::Contact);
        let by_blocked = ChatShape::Group {
            creator: key(3),
            added_me: Some(key(4)),
        };
        assert_eq!(p.origin(by_blocked, &key(6)), Origin::Stranger);
        assert!(!Origin::Stranger.entitles_members());
        assert!(Origin::Group.entitles_members());
    }

    fn policy() -> AutoDownload {
        AutoDownload {
            max_bytes: 100,
            contacts: true,
            groups: false,
            budget_bytes: 250,
            per_sender_bytes: 150,
        }
    }

    #[test]
    fn auto_download_follows_the_chat_kind_and_size() {
        let p = policy();
        assert_eq!(p.allows(Origin::Contact, 100), Ok(()));
        assert_eq!(p.allows(Origin::Contact, 101), Err(SkipReason::TooLarge));
        assert_eq!(p.allows(Origin::Group, 1), Err(SkipReason::Off));
        assert_eq!(p.allows(Origin::Stranger, 1), Err(SkipReason::Stranger));
        assert_eq!(p.allows(Origin::Own, 1), Err(SkipReason::Off));
        let off = AutoDownload {
            max_bytes: 0,
            ..policy()
        };
        assert_eq!(off.allows(Origin::Contact, 0), Err(SkipReason::Off));
    }

    #[test]
    fn the_budget_bounds_the_total_and_each_sender() {
        let p = policy();
        let mut budget = Budget::default();
        let h = |n: u8| Hash::new([n]);
        assert_eq!(budget.admit(&p, h(1), key(2), 100), Ok(()));
        assert_eq!(budget.admit(&p, h(1), key(2), 100), Ok(()), "same hash");
        assert_eq!(budget.used(), 100);
        assert_eq!(
            budget.admit(&p, h(2), key(2), 60),
            Err(SkipReason::SenderFull)
        );
        assert_eq!(budget.admit(&p, h(2), key(3), 100), Ok(()));
        assert_eq!(
            budget.admit(&p, h(3), key(6), 60),
            Err(SkipReason::BudgetFull)
        );
        budget.release(&h(1));
        assert_eq!(budget.used(), 100);
        assert_eq!(budget.admit(&p, h(3), key(2), 60), Ok(()));
        budget.release(&h(9));
        assert_eq!(budget.used(), 160);
    }
}

//! The social half of the [`Node`] API: profiles, invites, blocking,
//! presence ("last seen") and typing indicators.

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::ChatId;
use serde::{Deserialize, Serialize};

use crate::{
    api::{Command, Node, NodeError, Reply},
    invite::Invite,
    presence::{LastSeen, LastSeenPrivacy},
    protocol::Profile,
};

/// Largest profile picture fetched from a peer.
pub const MAX_AVATAR_BYTES: u64 = 8 * 1024 * 1024;

/// Changes to the user's own profile; `None` leaves a field as it is and an
/// empty string clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpdate {
    /// Display name.
    pub name: Option<String>,
    /// "About" status line.
    pub status: Option<String>,
    /// BLAKE3 hash (hex) of the profile picture blob.
    pub avatar: Option<String>,
}

/// A peer's profile as this node holds it (signature already verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProfile {
    /// Whose.
    pub peer: PeerId,
    /// The profile.
    pub profile: Profile,
}

pub(crate) enum SocialCommand {
    SetProfile {
        update: ProfileUpdate,
        reply: Reply<PeerProfile>,
    },
    Profile {
        peer: Option<PeerId>,
        reply: Reply<Option<PeerProfile>>,
    },
    Invite {
        reply: Reply<Invite>,
    },
    RemoveContact {
        peer: PeerId,
        reply: Reply<bool>,
    },
    SetBlocked {
        peer: PeerId,
        blocked: bool,
        reply: Reply<()>,
    },
    LastSeen {
        peer: PeerId,
        reply: Reply<LastSeen>,
    },
    SetPrivacy {
        privacy: LastSeenPrivacy,
        reply: Reply<()>,
    },
    Privacy {
        reply: Reply<LastSeenPrivacy>,
    },
    Typing {
        chat: ChatId,
        reply: Reply<()>,
    },
    AddFromInvite {
        invite: Invite,
        name: Option<String>,
        reply: Reply<crate::store::Contact>,
    },
}

impl Node {
    async fn social<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> SocialCommand,
    ) -> Result<T, NodeError> {
        self.call(|reply| Command::Social(make(reply))).await
    }

    /// Changes the user's profile: signed with a new version, stored,
    /// sent to connected contacts and published in the DHT.
    pub async fn set_profile(&self, update: ProfileUpdate) -> Result<PeerProfile, NodeError> {
        self.social(|reply| SocialCommand::SetProfile { update, reply })
            .await
    }

    /// The profile of `peer` (or the user's own, for `None`), if known.
    pub async fn profile(&self, peer: Option<PeerId>) -> Result<Option<PeerProfile>, NodeError> {
        self.social(|reply| SocialCommand::Profile { peer, reply })
            .await
    }

    /// An invite to this node: PeerId, listen addresses, relays, name.
    pub async fn invite(&self) -> Result<Invite, NodeError> {
        self.social(|reply| SocialCommand::Invite { reply }).await
    }

    /// Removes a contact (its chat history stays). Returns whether it was one.
    pub async fn remove_contact(&self, peer: PeerId) -> Result<bool, NodeError> {
        let removed = self
            .social(|reply| SocialCommand::RemoveContact { peer, reply })
            .await;
        self.media_contacts_changed().await;
        removed
    }

    /// Blocks or unblocks a peer. A blocked peer's messages, receipts and
    /// presence are dropped, it is disconnected, and it gets nothing from
    /// this node (its messages in shared groups are kept but not shown).
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), NodeError> {
        let done = self
            .social(|reply| SocialCommand::SetBlocked {
                peer,
                blocked,
                reply,
            })
            .await;
        self.media_contacts_changed().await;
        done
    }

    /// Whether `peer` is online, or when it was last seen.
    pub async fn last_seen(&self, peer: PeerId) -> Result<LastSeen, NodeError> {
        self.social(|reply| SocialCommand::LastSeen { peer, reply })
            .await
    }

    /// Sets who sees this node's presence (and, with `nobody`, hides others').
    pub async fn set_last_seen_privacy(&self, privacy: LastSeenPrivacy) -> Result<(), NodeError> {
        self.social(|reply| SocialCommand::SetPrivacy { privacy, reply })
            .await
    }

    /// The current last-seen privacy setting.
    pub async fn last_seen_privacy(&self) -> Result<LastSeenPrivacy, NodeError> {
        self.social(|reply| SocialCommand::Privacy { reply }).await
    }

    /// Adds (or updates) a contact from its invite: its addresses, relays,
    /// suggested name (unless `name` is given), and the delivery tokens that
    /// let this node leave mail for it at its relays.
    pub async fn add_contact_from_invite(
        &self,
        invite: Invite,
        name: Option<String>,
    ) -> Result<crate::store::Contact, NodeError> {
        self.social(|reply| SocialCommand::AddFromInvite {
            invite,
            name,
            reply,
        })
        .await
    }

    /// Tells the chat's connected members the user is typing (ephemeral).
    pub async fn typing(&self, chat: ChatId) -> Result<(), NodeError> {
        self.social(|reply| SocialCommand::Typing { chat, reply })
            .await
    }
}

/// Addresses worth putting in an invite: no unspecified ones.
pub(crate) fn invitable(addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    addrs
        .iter()
        .filter(|a| !crate::actor::is_unspecified(a))
        .cloned()
        .collect()
}

//! The social commands and their types: profiles, invites, blocking,
//! presence ("last seen") and typing indicators. The handles that send
//! them are `node.profiles()` and `node.contacts()` (in `api/`).

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::ChatId;
use serde::{Deserialize, Serialize};

use crate::{
    invite::Invite,
    presence::{LastSeen, LastSeenPrivacy},
    protocol::Profile,
    reply::Reply,
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

/// Addresses worth putting in an invite: no unspecified ones.
pub(crate) fn invitable(addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    addrs
        .iter()
        .filter(|a| !crate::config::is_unspecified(a))
        .cloned()
        .collect()
}

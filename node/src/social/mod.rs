//! Profiles, presence, invites and signed records: the social commands and
//! their types (here), signed profile and presence records (`records.rs`),
//! who is online (`presence.rs`), invites (`invite.rs`) and their handler.
//! The handles that send the commands are `node.profiles()` and
//! `node.contacts()` (in `api/`).

mod handler;
pub mod invite;
pub(crate) mod presence;
pub(crate) mod records;
pub(crate) mod state;

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::ChatId;
use serde::{Deserialize, Serialize};

use self::{
    invite::Invite,
    presence::{LastSeen, LastSeenPrivacy},
    records::Profile,
};
use crate::reply::Reply;

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

/// What two people compare to know they hold each other's real keys
/// (`contacts().safety_number`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyNumberReport {
    /// The other party.
    pub peer: PeerId,
    /// 60 digits in 12 groups of 5, the same on both sides.
    pub safety_number: String,
    /// The same 60 digits without spaces (what the QR code holds).
    pub digits: String,
    /// The other party's encryption key, from its signed profile as held
    /// here; `None` until its profile (from a node that has one) arrives.
    pub their_encryption_key: Option<meshchat_crdt::e2e::DeviceKey>,
    /// This device's current encryption key.
    pub my_encryption_key: Option<meshchat_crdt::e2e::DeviceKey>,
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

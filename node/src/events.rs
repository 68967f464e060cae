//! What the node tells: events as they happen ([`Event`], for UIs and
//! `meshchat watch`) and snapshots of its state ([`Status`]). Below the
//! actor, the API and the media task, which all speak of them.

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{ChatId, Message, MessageId};
use serde::{Deserialize, Serialize};

use crate::store::DeliveryState;

/// Something that happened on the node, for UIs (`meshchat watch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A message appeared in a chat (written here or received), exactly once.
    Message {
        /// The chat.
        chat: ChatId,
        /// The message.
        message: Message,
        /// Written by this node's user.
        outgoing: bool,
    },
    /// A message was edited, deleted or reacted to.
    MessageUpdated {
        /// The chat.
        chat: ChatId,
        /// The message as it is now.
        message: Message,
    },
    /// A group's members, roles, name or settings changed.
    GroupChanged {
        /// The group.
        chat: ChatId,
    },
    /// This node joined a group (it was added by an admin).
    GroupJoined {
        /// The group.
        chat: ChatId,
    },
    /// This node is no longer in a group (removed, or left).
    GroupLeft {
        /// The group.
        chat: ChatId,
    },
    /// An outgoing message's delivery state changed for one recipient.
    Delivery {
        /// The chat.
        chat: ChatId,
        /// The message.
        message: MessageId,
        /// The recipient.
        peer: PeerId,
        /// The new state.
        state: DeliveryState,
    },
    /// A connection to a peer opened (the first one).
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer sent something this node refused (bad signature, non-member, …).
    Rejected {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// More refusals from a peer than its budget: this many were not
    /// reported one by one in the last minute.
    RejectionsSuppressed {
        /// The peer.
        peer: PeerId,
        /// Refusals left unreported.
        count: u64,
    },
    /// A stranger wrote to this node, or someone who is not a contact added
    /// it to a group: a message request waits for the user (`requests`).
    MessageRequest {
        /// The chat it would become.
        chat: ChatId,
        /// Who: the stranger, or who added this node to the group.
        from: PeerId,
    },
    /// The node listens on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// A peer came online or went offline.
    Presence {
        /// The peer.
        peer: PeerId,
        /// Online now.
        online: bool,
        /// When it was last heard from (this node's clock, ms since the epoch).
        last_seen_ms: i64,
    },
    /// A member is typing in a chat (ephemeral; assume it stopped after `expires_ms`).
    Typing {
        /// The chat.
        chat: ChatId,
        /// Who.
        peer: PeerId,
        /// Milliseconds after which the indicator should disappear on its own.
        expires_ms: u64,
    },
    /// A peer's profile changed (the user's own included).
    ProfileChanged {
        /// Whose.
        peer: PeerId,
    },
    /// This node (a relay, a DHT server) now holds `peer`'s signed profile
    /// record for others to look up.
    ProfileRecordStored {
        /// Whose.
        peer: PeerId,
    },
    /// A file's download moved on.
    File {
        /// The blob.
        hash: meshchat_crdt::BlobHash,
        /// The chat whose message carries it (none for tickets and blobs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<ChatId>,
        /// The message carrying it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<MessageId>,
        /// Where it stands.
        status: crate::media::status::FileStatus,
    },
    /// `peer` handed this node delivery tokens: it may now leave mail for
    /// `peer` at its relays while `peer` is offline.
    DeliveryTokens {
        /// Whose mailbox the tokens open.
        peer: PeerId,
    },
    /// Storage stopped taking writes (`full`, `failed`) or takes them again
    /// (`ok`). Reads are served throughout; the node recovers by itself.
    Storage {
        /// Where storage stands now.
        state: crate::disk::StorageState,
        /// The data directory whose disk it is.
        dir: std::path::PathBuf,
        /// What happened and what to do, for people.
        message: String,
    },
}

/// A snapshot of the node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub peer_id: PeerId,
    /// Addresses it listens on, each ending in `/p2p/<peer_id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: Vec<PeerId>,
    /// Chats stored.
    pub chats: usize,
    /// Changes waiting for a recipient's acknowledgement.
    pub outbox: usize,
    /// Relay mode: what the mailboxes hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<crate::mailbox::MailboxStats>,
    /// Relay mode: counters since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayMetrics>,
    /// Why writes are refused for now (disk full, I/O error); absent while
    /// storage works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::disk::StorageFault>,
    /// Changes sent and received since start, by path.
    #[serde(default)]
    pub traffic: Traffic,
}

/// Signed changes this node sent and received since it started, by path
/// (each copy counts: a change received twice counts twice).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Published on group topics (by this node, not forwarded).
    pub gossip_published: u64,
    /// Pushed to peers (outbox pushes and sync push-backs).
    pub pushed: u64,
    /// Received in pushes.
    pub received_by_push: u64,
    /// Received from group topics.
    pub received_by_gossip: u64,
    /// Received in answers to syncs.
    pub received_by_sync: u64,
    /// Received in mail from relays.
    pub received_from_relays: u64,
    /// Deposit requests (not changes) sent by courier, over a throwaway
    /// identity.
    #[serde(default)]
    pub couriers_sent: u64,
    /// Of those, the ones that brought no answer (a dial error, a
    /// timeout): their mail is deposited again later.
    #[serde(default)]
    pub couriers_failed: u64,
}

/// Counters of a relay's mailbox service since it started.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayMetrics {
    /// Envelopes deposited (durably).
    pub deposits: u64,
    /// Fetches served.
    pub fetches: u64,
    /// Envelopes deleted at the end of their retention.
    pub expired: u64,
    /// Deposits refused: envelope too large.
    pub refused_too_large: u64,
    /// Deposits refused: recipient's quota full.
    pub refused_quota: u64,
    /// Deposits refused: sender over its rate.
    pub refused_rate: u64,
    /// Deposits refused: storage unavailable.
    pub refused_unavailable: u64,
    /// Deposits refused: no valid delivery token (and no room for strangers).
    #[serde(default)]
    pub refused_token: u64,
    /// Deposits refused: the relay's total cap is reached.
    #[serde(default)]
    pub refused_full: u64,
    /// Deposits of an envelope already held, answered from that copy.
    #[serde(default)]
    pub duplicates: u64,
}

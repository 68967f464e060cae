//! The public surface of a running node: the cloneable [`Node`] handle, the
//! events it emits, and its sub-handles, grouped as a user looks for them:
//!
//! - [`Node::chats`] ([`Chats`]): find, write, read and export chats.
//! - [`Node::groups`] ([`Groups`]): create and administer groups.
//! - [`Node::contacts`] ([`Contacts`]): contacts, blocking, invites, message requests.
//! - [`Node::profiles`] ([`Profiles`]): profiles, pictures, presence.
//! - [`Node::files`] ([`Files`]): media, blobs and tickets.
//! - [`Node::network`] ([`Network`]): status, dial, disconnect, gossip scores.
//!
//! Every operation has its own error enum saying what went wrong and what
//! to do; they share [`Stopped`] and [`StorageError`] through `#[from]`.
//! Each handle is a borrowed view: `node.chats().send(chat, "hi")` costs
//! nothing beyond the message to the actor.

mod chats;
mod contacts;
mod errors;
mod files;
mod groups;
mod network;
mod profiles;

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{ChatId, GroupInfo, Message, MessageId, PublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

pub use self::{
    chats::{
        Chats, DeleteError, DirectChatError, EditError, ExportError, HistoryError,
        MessageInfoError, ReactError, ResolveError, SendError, TypingError,
    },
    contacts::{AddContactError, Contacts, RequestError},
    errors::{ErrorCode, NotEd25519, PeerError, ReadError, Stopped, StorageError},
    files::{
        ExportBlobError, FetchBlobError, FetchFileError, FetchTicketError, Files, ImportError,
        SendFileError,
    },
    groups::{
        CreateGroupError, GroupInfoError, Groups, LeaveError, MemberError, RenameError,
        SettingsError,
    },
    network::{DialError, Network},
    profiles::{Profiles, SavePictureError, SavedPicture, SetPrivacyError, SetProfileError},
};
use crate::{
    chats::{ChatOp, ChatSummary, ExportSummary, HistoryEntry, MessageInfo, OpOutcome},
    data_dir::DataDirError,
    store::{Contact, DeliveryState, StoreError},
};

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
        status: crate::blobs::FileStatus,
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

/// A message just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The chat.
    pub chat: ChatId,
    /// The message.
    pub message: Message,
}

/// What the actor answers a command with. Never public: each sub-handle
/// sorts it into its operation's own error (see [`errors`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    /// The node has shut down.
    #[error("the node has shut down")]
    ActorDropped,
    /// No chat, contact or peer matches.
    #[error("no chat, contact or peer matches {0:?}")]
    NotFound(String),
    /// More than one contact has that name.
    #[error("{0:?} matches more than one contact; use the peer id")]
    Ambiguous(String),
    /// The argument is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The message could not be written.
    #[error(transparent)]
    Write(#[from] meshchat_crdt::WriteError),
    /// Storage failed (disk full, I/O error): nothing was acknowledged.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A file could not be written (export), or a flush failed.
    #[error("{0}")]
    Io(String),
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The data directory is unusable or taken.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The database could not be opened.
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    /// The libp2p stack could not be built.
    #[error("network: {0}")]
    Network(String),
    /// The blob store or endpoint could not start.
    #[error("media: {0}")]
    Blobs(#[from] crate::blobs::BlobError),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// Commands from handles to the actor.
pub(crate) enum Command {
    Op {
        chat: ChatId,
        op: ChatOp,
        reply: Reply<OpOutcome>,
    },
    CreateGroup {
        name: String,
        members: Vec<PublicKey>,
        reply: Reply<ChatId>,
    },
    GroupInfo {
        chat: ChatId,
        reply: Reply<GroupInfo>,
    },
    MessageInfo {
        chat: ChatId,
        message: MessageId,
        reply: Reply<MessageInfo>,
    },
    Export {
        chat: ChatId,
        dir: std::path::PathBuf,
        reply: Reply<ExportSummary>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    DirectChat {
        peer: PublicKey,
        reply: Reply<ChatId>,
    },
    Resolve {
        query: String,
        reply: Reply<ChatId>,
    },
    AddContact {
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
        relays: Vec<Multiaddr>,
        reply: Reply<Contact>,
    },
    Contacts {
        reply: Reply<Vec<Contact>>,
    },
    Chats {
        reply: Reply<Vec<ChatSummary>>,
    },
    History {
        chat: ChatId,
        limit: Option<usize>,
        mark_read: bool,
        reply: Reply<Vec<HistoryEntry>>,
    },
    Status {
        reply: Reply<Status>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Social(crate::social::SocialCommand),
    Requests(crate::actor::RequestCommand),
    GossipScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
}

/// A handle to a running node. Cheap to clone; every method is a message to
/// the actor that owns the network and the database.
#[derive(Clone)]
pub struct Node {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) peer_id: PeerId,
    pub(crate) task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    pub(crate) blobs: crate::blobs::Blobs,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::ActorDropped)?;
        rx.await.map_err(|_| NodeError::ActorDropped)?
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Events from now on. A subscriber that falls behind by more than the
    /// channel's capacity sees `RecvError::Lagged` and should re-read state.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Chats: find, write, read, export.
    pub fn chats(&self) -> Chats<'_> {
        Chats::new(self)
    }

    /// Groups: create, read, administer.
    pub fn groups(&self) -> Groups<'_> {
        Groups::new(self)
    }

    /// Contacts, blocking, invites and message requests.
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts::new(self)
    }

    /// Profiles and presence.
    pub fn profiles(&self) -> Profiles<'_> {
        Profiles::new(self)
    }

    /// Media: files in chats, blobs, tickets.
    pub fn files(&self) -> Files<'_> {
        Files::new(self)
    }

    /// Connections: status, dial, disconnect, gossip scores.
    pub fn network(&self) -> Network<'_> {
        Network::new(self)
    }

    /// Stops the node: flushes the database, closes connections, releases the
    /// data directory. Idempotent.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

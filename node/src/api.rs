//! The public surface of a running node: the cloneable [`Node`] handle, its
//! typed errors and the events it emits.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{ChatId, GroupInfo, Message, MessageId, PublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

use crate::{
    chats::{
        ChatOp, ChatSummary, ExportSummary, HistoryEntry, MessageInfo, OpOutcome, RequestSummary,
    },
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

/// An operation on a running node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
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
    /// A file could not be written (export).
    #[error("{0}")]
    Io(String),
    /// A file is larger than this node accepts.
    #[error(transparent)]
    Blob(crate::blobs::BlobError),
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

    /// Writes `text` into `chat`. Returns once it is durably stored locally
    /// (state `pending`); delivery proceeds in the background.
    pub async fn send(&self, chat: ChatId, text: impl Into<String>) -> Result<Sent, NodeError> {
        let op = ChatOp::Send {
            text: text.into(),
            reply_to: None,
        };
        let outcome = self.op(chat, op).await?;
        let message = outcome
            .message
            .ok_or_else(|| NodeError::Invalid("send produced no message".into()))?;
        Ok(Sent { chat, message })
    }

    /// Performs an operation on a chat (send, reply, edit, delete, react, or
    /// group administration). Returns once it is durably stored locally.
    pub async fn op(&self, chat: ChatId, op: ChatOp) -> Result<OpOutcome, NodeError> {
        self.call(|reply| Command::Op { chat, op, reply }).await
    }

    /// Creates a group with this node as its admin and `members` invited.
    pub async fn create_group(
        &self,
        name: impl Into<String>,
        members: Vec<PeerId>,
    ) -> Result<ChatId, NodeError> {
        let name = name.into();
        let members = members
            .iter()
            .map(|p| {
                crate::keys::public_key_of(p)
                    .ok_or_else(|| NodeError::Invalid(format!("{p} is not an Ed25519 peer id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.call(|reply| Command::CreateGroup {
            name,
            members,
            reply,
        })
        .await
    }

    /// A group's name, members, roles and settings.
    pub async fn group_info(&self, chat: ChatId) -> Result<GroupInfo, NodeError> {
        self.call(|reply| Command::GroupInfo { chat, reply }).await
    }

    /// Where one of your messages stands, per recipient, with relay custody.
    pub async fn message_info(
        &self,
        chat: ChatId,
        message: MessageId,
    ) -> Result<MessageInfo, NodeError> {
        self.call(|reply| Command::MessageInfo {
            chat,
            message,
            reply,
        })
        .await
    }

    /// Writes the chat's Automerge documents and a transcript into `dir`.
    pub async fn export(
        &self,
        chat: ChatId,
        dir: impl Into<std::path::PathBuf>,
    ) -> Result<ExportSummary, NodeError> {
        let dir = dir.into();
        self.call(|reply| Command::Export { chat, dir, reply })
            .await
    }

    /// Closes every connection to `peer` (it may reconnect later).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NodeError> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// The direct chat with `peer`, created if new.
    pub async fn direct_chat(&self, peer: PeerId) -> Result<ChatId, NodeError> {
        let peer = crate::keys::public_key_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        self.call(|reply| Command::DirectChat { peer, reply }).await
    }

    /// Finds a chat by chat id, peer id or contact name (creating the direct
    /// chat with a peer or contact if needed).
    pub async fn resolve(&self, query: impl Into<String>) -> Result<ChatId, NodeError> {
        let query = query.into();
        self.call(|reply| Command::Resolve { query, reply }).await
    }

    /// Adds or updates a contact. Addresses are merged with known ones.
    pub async fn add_contact(
        &self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
    ) -> Result<Contact, NodeError> {
        self.add_contact_with_relays(peer, name, addrs, Vec::new())
            .await
    }

    /// Adds or updates a contact, with the relays that hold its mail while
    /// it is offline (each address ending in `/p2p/<RELAY>`).
    pub async fn add_contact_with_relays(
        &self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
        relays: Vec<Multiaddr>,
    ) -> Result<Contact, NodeError> {
        let contact = self
            .call(|reply| Command::AddContact {
                peer,
                name,
                addrs,
                relays,
                reply,
            })
            .await;
        self.media_contacts_changed().await;
        contact
    }

    /// All contacts.
    pub async fn contacts(&self) -> Result<Vec<Contact>, NodeError> {
        self.call(|reply| Command::Contacts { reply }).await
    }

    /// Message requests waiting for the user: strangers who wrote, and
    /// groups someone who is not a contact added this node to. Newest first.
    pub async fn requests(&self) -> Result<Vec<RequestSummary>, NodeError> {
        use crate::actor::RequestCommand;
        self.call(|reply| Command::Requests(RequestCommand::List { reply }))
            .await
    }

    /// Accepts a message request: the chat is created with what was kept,
    /// and from now on its messages arrive like any other.
    pub async fn accept_request(&self, chat: ChatId) -> Result<(), NodeError> {
        use crate::actor::RequestCommand;
        self.call(|reply| Command::Requests(RequestCommand::Accept { chat, reply }))
            .await
    }

    /// Deletes a message request, and with `block` blocks its sender.
    pub async fn delete_request(&self, chat: ChatId, block: bool) -> Result<(), NodeError> {
        use crate::actor::RequestCommand;
        self.call(|reply| Command::Requests(RequestCommand::Delete { chat, block, reply }))
            .await
    }

    /// All chats, most recent first.
    pub async fn chats(&self) -> Result<Vec<ChatSummary>, NodeError> {
        self.call(|reply| Command::Chats { reply }).await
    }

    /// A chat's messages, oldest first; the newest `limit` if given. Marks
    /// the chat read (the user is looking at it).
    pub async fn history(
        &self,
        chat: ChatId,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, NodeError> {
        self.call(|reply| Command::History {
            chat,
            limit,
            mark_read: true,
            reply,
        })
        .await
    }

    /// A chat's messages, without marking it read.
    pub async fn history_quiet(&self, chat: ChatId) -> Result<Vec<HistoryEntry>, NodeError> {
        self.call(|reply| Command::History {
            chat,
            limit: None,
            mark_read: false,
            reply,
        })
        .await
    }

    /// The node's state.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Connects to an address (ending in `/p2p/<PEER_ID>` to check who answers).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// `peer`'s gossipsub score as this node sees it (0 for a peer it knows
    /// nothing about; `None` if scoring were off). Below
    /// [`crate::scoring::GRAYLIST_THRESHOLD`] the peer is ignored on every
    /// group topic.
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NodeError> {
        self.call(|reply| Command::GossipScore { peer, reply })
            .await
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

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
use meshchat_crdt::{ChatId, Message};
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
pub use crate::events::{Event, RelayMetrics, Status, Traffic};
pub(crate) use crate::{
    command::{Caller, Command},
    reply::{NodeError, Reply},
};
use crate::{data_dir::DataDirError, store::StoreError};

/// A message just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The chat.
    pub chat: ChatId,
    /// The message.
    pub message: Message,
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
    Blobs(#[from] crate::media::BlobError),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
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
    pub(crate) blobs: crate::media::Blobs,
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
        self.caller().call(make).await
    }

    /// The narrow handle the media task's index reads through.
    pub(crate) fn caller(&self) -> Caller {
        Caller {
            commands: self.commands.clone(),
            peer_id: self.peer_id,
        }
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

//! How the actor answers a handle: `Result<T, NodeError>` over a oneshot
//! channel. Never public: each of the API's sub-handles sorts a
//! `NodeError` into its operation's own error type (`api/errors.rs`).

use tokio::sync::oneshot;

use crate::store::StoreError;

/// What the actor answers a command with. Never public: each sub-handle
/// sorts it into its operation's own error (see `api/errors.rs`).
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

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

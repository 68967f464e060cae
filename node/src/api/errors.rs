//! The pieces every operation's error shares: the node stopped, storage
//! failed. Each operation has its own error enum (beside its handle) and
//! takes these in through `#[from]`, so a caller matches on what that one
//! operation can really do wrong, never on one catch-all.

use crate::{api::NodeError, disk::StorageFault, store::StoreError, PeerId};

/// The node has stopped (shut down, or its task ended): nothing was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node has stopped; start it again (`meshchat daemon`) and retry")]
pub struct Stopped;

/// Storage failed: nothing was saved or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Storage refuses writes for now (disk full, I/O error); reads are
    /// still served and the node recovers by itself.
    #[error("storage: {0}")]
    Unavailable(StorageFault),
    /// The database failed.
    #[error(
        "storage: the database failed ({0}); nothing was saved: check the disk and the \
         data directory, then retry"
    )]
    Database(String),
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(fault) => Self::Unavailable(fault),
            other => Self::Database(other.to_string()),
        }
    }
}

/// A read that can only fail because the node stopped or its storage did
/// (list chats, contacts, requests; the node's status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// A PeerId that is not an Ed25519 key (meshchat identities are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a meshchat peer id (not an Ed25519 key); copy it again from `meshchat id`")]
pub struct NotEd25519(pub PeerId);

/// The shared pieces of what the actor answered; each operation sorts the
/// rest itself. Built only by [`sort`].
pub(crate) enum Shared {
    /// The node stopped.
    Stopped(Stopped),
    /// Storage failed.
    Storage(StorageError),
}

/// Splits the actor's answer into the shared pieces and the rest, which the
/// caller maps onto its operation's own variants.
pub(crate) fn sort(e: NodeError) -> Result<Shared, NodeError> {
    match e {
        NodeError::ActorDropped => Ok(Shared::Stopped(Stopped)),
        NodeError::Store(s) => Ok(Shared::Storage(s.into())),
        // The flush covering a local write failed with no fault recorded
        // (`export`, the other source of `Io`, sorts it before this).
        NodeError::Io(m) => Ok(Shared::Storage(StorageError::Database(
            m.trim_start_matches("storage: ").to_owned(),
        ))),
        other => Err(other),
    }
}

/// Implements `From<Shared>` for an error enum with `Storage` and `Stopped`
/// variants.
macro_rules! shared_into {
    ($($error:ty),* $(,)?) => {$(
        impl From<$crate::api::errors::Shared> for $error {
            fn from(shared: $crate::api::errors::Shared) -> Self {
                match shared {
                    $crate::api::errors::Shared::Stopped(s) => Self::Stopped(s),
                    $crate::api::errors::Shared::Storage(s) => Self::Storage(s),
                }
            }
        }
    )*};
}
pub(crate) use shared_into;

shared_into!(ReadError);

impl ReadError {
    /// The actor's answer to a plain read: only the shared failures happen.
    pub(crate) fn from_reply(e: NodeError) -> Self {
        match sort(e) {
            Ok(shared) => shared.into(),
            // The actor answers these reads with storage failures only.
            Err(other) => Self::Storage(StorageError::Database(other.to_string())),
        }
    }
}

/// An operation on one peer failed: `contacts().remove`, `set_blocked`,
/// `profiles().get`, `profiles().last_seen`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl PeerError {
    pub(crate) fn from_reply(e: NodeError, peer: PeerId) -> Self {
        match sort(e) {
            Ok(shared) => shared.into(),
            // The actor refuses only a peer id without an Ed25519 key.
            Err(_) => Self::NotEd25519(NotEd25519(peer)),
        }
    }
}

shared_into!(PeerError);

impl ErrorCode for PeerError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotEd25519(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

/// A stable, machine-readable name for an error: the control API's `code`.
pub trait ErrorCode {
    /// `not_found`, `ambiguous`, `invalid`, `write`, `storage`,
    /// `shutting_down`, `io`, `too_large`, `exists` or `blob`.
    fn code(&self) -> &'static str;
}

impl ErrorCode for Stopped {
    fn code(&self) -> &'static str {
        "shutting_down"
    }
}

impl ErrorCode for StorageError {
    fn code(&self) -> &'static str {
        "storage"
    }
}

impl ErrorCode for ReadError {
    fn code(&self) -> &'static str {
        match self {
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for NotEd25519 {
    fn code(&self) -> &'static str {
        "invalid"
    }
}

/// The key of `peer`, or why it has none.
pub(crate) fn key_of(peer: &PeerId) -> Result<meshchat_crdt::PublicKey, NotEd25519> {
    crate::keys::public_key_of(peer).ok_or(NotEd25519(*peer))
}

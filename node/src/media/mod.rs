//! Media as content-addressed blobs (iroh-blobs over an iroh endpoint).
//!
//! A file sent into a chat is encrypted under its own random key as it is
//! imported into the blob store under `<data dir>/blobs/` (BLAKE3 of the
//! ciphertext), and the message carries an
//! [`Attachment`](meshchat_crdt::Attachment): hash, size, sniffed MIME type,
//! name, the key and, for images, a small preview. Recipients fetch the bytes from the
//! author, other members or their relays, verified as they arrive and resumed
//! from what they already hold. Only entitled peers are served ([`access`]).
//!
//! - [`config`]: settings (`[blobs]` in `config.toml`).
//! - `service`: the endpoint, store, downloader and router.
//! - `start`: the service and, on a relay, the relay cache beside it.
//! - `task`: follows the node's events: access index, auto-download, retries.
//! - `policy`: who a file comes from, and when it downloads by itself.
//! - `cipher`: a file's encryption on import, its decryption on export.
//! - `file_kind`: what a file is (its sniffed MIME type) and an image's preview.
//! - `save`: writing a file to the user's disk under a safe name.
//! - `share`: tickets, for files shared outside chats.
//! - `relay_cache`, `relay_proof`: relays holding files for offline peers.
//!
//! The control API's media calls live with the other calls, in
//! [`crate::control`].

mod access;
mod auto;
pub(crate) mod cipher;
pub mod config;
pub(crate) mod endpoint;
pub(crate) mod fetch;
pub(crate) mod file_kind;
pub(crate) mod index;
mod policy;
pub(crate) mod relay_cache;
pub(crate) mod relay_proof;
pub(crate) mod save;
pub(crate) mod service;
pub(crate) mod share;
mod start;
pub(crate) mod status;
mod task;

use std::path::PathBuf;

pub use config::BlobConfig;
pub use policy::{AutoDownload, SkipReason};
pub use save::{default_download_dir, safe_file_name, SaveOptions, MAX_SAVED_NAME_BYTES};
pub(crate) use service::Blobs;
pub(crate) use start::start;
pub use status::FileStatus;
pub(crate) use task::{spawn_media_task, MediaTask, WeakNode};

use serde::{Deserialize, Serialize};

/// A blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The file is larger than this node accepts.
    #[error(
        "the file is {size} bytes; the limit is {max} bytes (blobs.max_file_bytes in config.toml)"
    )]
    TooLarge {
        /// Bytes in the file.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A local file could not be read or written.
    #[error("{0}")]
    File(String),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Store(String),
    /// The iroh endpoint could not start.
    #[error("blob network: {0}")]
    Network(String),
    /// No source served the blob (offline, refused, or sent bad data).
    #[error("no source could provide blob {0}; it will be retried when one connects")]
    Unavailable(String),
    /// The blob is not (completely) stored here yet.
    #[error("blob {0} is not downloaded yet; run `meshchat fetch` first")]
    NotDownloaded(String),
    /// The message has no file attached.
    #[error("message {0} has no file attached")]
    NoAttachment(String),
    /// A ticket could not be parsed.
    #[error("invalid ticket: {0}")]
    Ticket(String),
    /// The file to write exists already.
    #[error("{} exists already; use --force to replace it, or --out to save elsewhere", .0.display())]
    Exists(PathBuf),
}

/// A file fetched (and, when asked, exported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The blob's hash.
    pub hash: meshchat_crdt::BlobHash,
    /// Its size in bytes.
    pub size: u64,
    /// Where it was written, if an output path was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The name its sender gave it, when that name was not safe to use
    /// as it was (see [`safe_file_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
}

/// Files written from a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketFiles {
    /// Each file and its size.
    pub files: Vec<(PathBuf, u64)>,
}

pub(crate) fn blob_hash(hash: iroh_blobs::Hash) -> meshchat_crdt::BlobHash {
    meshchat_crdt::BlobHash::from_bytes(*hash.as_bytes())
}

pub(crate) fn iroh_hash(hash: &meshchat_crdt::BlobHash) -> iroh_blobs::Hash {
    iroh_blobs::Hash::from_bytes(*hash.as_bytes())
}

/// The identify agent string announcing this node's blob port.
pub(crate) fn agent_version(port: Option<u16>) -> String {
    match port {
        Some(port) => endpoint::agent_version(port),
        None => format!("meshchat/{}", env!("CARGO_PKG_VERSION")),
    }
}

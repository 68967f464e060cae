//! `node.files()`: media. Send a file into a chat, fetch one, share files
//! outside chats with tickets, and the small blob API profile pictures
//! build on.

use std::path::{Path, PathBuf};

use iroh_blobs::ticket::BlobTicket;
use meshchat_crdt::{Attachment, BlobHash, ChatId, MessageId, WriteError};

use super::{
    chats::{OpFailure, SendError},
    errors::{shared_into, sort, ErrorCode, NotEd25519, StorageError},
    Event, Node, Sent, Stopped,
};
use crate::{
    chats::ChatOp,
    media::{
        blob_hash, cipher,
        endpoint::endpoint_of,
        fetch::{fetch_file, fetch_hash, sources},
        file_kind,
        index::{self, FileMessage},
        iroh_hash, save,
        service::Step,
        share, AutoDownload, BlobError, Fetched, FileStatus, SaveOptions, TicketFiles,
    },
    PeerId,
};

/// Longest `fetch_blob` waits to learn a just-connected peer's blob address.
const ADDRESS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The media of a node: `node.files()`.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    node: &'a Node,
}

impl<'a> Files<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// Sends the file at `path` into `chat`: imports it into the blob store
    /// encrypted under a fresh random key, sniffs its type, makes a preview
    /// for images, and posts a message carrying the attachment with the key.
    /// Members then fetch the encrypted bytes from this node (or each other,
    /// or their relays) and decrypt them when they save the file.
    pub async fn send(
        &self,
        chat: ChatId,
        path: impl AsRef<Path>,
        caption: impl Into<String>,
    ) -> Result<Sent, SendFileError> {
        let node = self.node;
        let path = path.as_ref().to_path_buf();
        let (hash, size, key) = cipher::import_sealed(&node.blobs, &path)
            .await
            .map_err(SendFileError::from_blob)?;
        let (mime, preview) = {
            let source = path.clone();
            tokio::task::spawn_blocking(move || {
                let mime = file_kind::sniff_mime(&source)?;
                let preview = file_kind::preview(&source, &mime, size).unwrap_or_default();
                Ok::<_, std::io::Error>((mime, preview))
            })
            .await
            .map_err(|e| SendFileError::File(e.to_string()))?
            .map_err(|e| SendFileError::File(format!("{}: {e}", path.display())))?
        };
        let attachment = Attachment {
            hash: blob_hash(hash),
            size,
            mime,
            name: file_kind::file_name(&path),
            preview,
            key: Some(key),
        };
        self.post(chat, attachment, caption.into()).await
    }

    /// Sends a message carrying `attachment`, a file already described (one
    /// received in another chat, forwarded), importing nothing: members
    /// fetch the bytes from wherever they are held, as for any file. Its
    /// blob and key stay the same, so the blob is stored once.
    pub async fn forward(
        &self,
        chat: ChatId,
        attachment: Attachment,
        caption: impl Into<String>,
    ) -> Result<Sent, SendFileError> {
        self.post(chat, attachment, caption.into()).await
    }

    /// Entitles the chat's members to the file, then posts its message.
    async fn post(
        &self,
        chat: ChatId,
        attachment: Attachment,
        caption: String,
    ) -> Result<Sent, SendFileError> {
        let node = self.node;
        // Entitle the members before anyone hears of the message.
        let access = node.blobs.access();
        index::refresh_members(&node.caller(), access, chat)
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => SendFileError::NoSuchChat(chat),
            })?;
        if let Some(me) = crate::keys::public_key_of(&node.peer_id) {
            access.add_reference(chat, iroh_hash(&attachment.hash), me);
        }
        let op = ChatOp::SendFile {
            caption,
            attachment,
        };
        let outcome = node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => SendFileError::NoSuchChat(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => SendFileError::from_write(w),
        })?;
        let message = outcome.message.ok_or_else(|| {
            SendFileError::Refused("the chat produced no message; please report this".into())
        })?;
        Ok(Sent { chat, message })
    }

    /// Fetches the file of `message` in `chat` (from the author, the other
    /// members, then this node's relays), resuming whatever is already
    /// stored, and copies the verified bytes to `out` if given: a file path,
    /// or a folder to write it into under its sender's name made safe. An
    /// existing file is not replaced. Progress arrives as [`Event::File`].
    pub async fn fetch(
        &self,
        chat: ChatId,
        message: MessageId,
        out: Option<PathBuf>,
    ) -> Result<Fetched, FetchFileError> {
        self.fetch_with(chat, message, out, SaveOptions::default())
            .await
    }

    /// [`Files::fetch`], writing the file as `options` say (replace an
    /// existing file, keep a leading dot in the name).
    pub async fn fetch_with(
        &self,
        chat: ChatId,
        message: MessageId,
        out: Option<PathBuf>,
        options: SaveOptions,
    ) -> Result<Fetched, FetchFileError> {
        let node = self.node;
        let no_such = || FetchFileError::NoSuchMessage { chat, message };
        let files = index::refresh_chat(&node.caller(), node.blobs.access(), chat)
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => no_such(),
            })?;
        let file: FileMessage = match files.into_iter().find(|f| f.message.id == message) {
            Some(file) => file,
            None => {
                node.chats()
                    .message_info(chat, message)
                    .await
                    .map_err(|_| no_such())?;
                return Err(FetchFileError::NoAttachment(message));
            }
        };
        let members = node.blobs.access().members(&chat);
        let sources = sources(&node.blobs, &file.message.author, members);
        let seen: Vec<u64> = sources.iter().map(|s| node.blobs.learned(s)).collect();
        let size = match fetch_file(&node.blobs, &node.events, &file, sources.clone()).await {
            Err(BlobError::Unavailable(_)) if self.fresh_address(&sources, &seen).await => {
                fetch_file(&node.blobs, &node.events, &file, sources).await
            }
            result => result,
        }
        .map_err(FetchFileError::from_blob)?;
        let (path, renamed_from) = match out {
            Some(out) => {
                let (target, renamed) = save::target(&out, &file.attachment.name, options);
                let hash = iroh_hash(&file.attachment.hash);
                let key = file.attachment.key.as_ref();
                save::write(&node.blobs, hash, key, &target, options)
                    .await
                    .map_err(FetchFileError::from_blob)?;
                (Some(target), renamed)
            }
            None => (None, None),
        };
        Ok(Fetched {
            hash: file.attachment.hash,
            size,
            path,
            renamed_from,
        })
    }

    /// Waits (bounded) for a fresh address of any of `sources` (a peer that
    /// restarted on a new port); whether one came.
    async fn fresh_address(&self, sources: &[iroh::EndpointId], seen: &[u64]) -> bool {
        let blobs = &self.node.blobs;
        let waits = sources
            .iter()
            .zip(seen)
            .map(|(source, seen)| Box::pin(blobs.wait_learned(*source, *seen, ADDRESS_WAIT)));
        let mut waits: futures::stream::FuturesUnordered<_> = waits.collect();
        while let Some(fresh) = futures::StreamExt::next(&mut waits).await {
            if fresh {
                return true;
            }
        }
        false
    }

    /// Imports a file as a blob anyone may fetch from this node (for public
    /// things such as profile pictures). Returns its hash.
    pub async fn import_blob(&self, path: impl AsRef<Path>) -> Result<BlobHash, ImportError> {
        let blobs = &self.node.blobs;
        let (hash, _) = blobs
            .import(path.as_ref())
            .await
            .map_err(ImportError::from_blob)?;
        blobs
            .keep_public(hash)
            .await
            .map_err(ImportError::from_blob)?;
        Ok(blob_hash(hash))
    }

    /// Fetches blob `hash` (at most `max_size` bytes) from `peer`, verified.
    /// The peer must serve it to this node (e.g. it was imported with
    /// [`Files::import_blob`] there). Progress arrives as [`Event::File`].
    pub async fn fetch_blob(
        &self,
        hash: BlobHash,
        max_size: u64,
        peer: PeerId,
    ) -> Result<u64, FetchBlobError> {
        let blobs = &self.node.blobs;
        let source = endpoint_of(&peer).ok_or(NotEd25519(peer))?;
        // Just connected: identify may not have told us its blob address yet.
        blobs.wait_known(source, ADDRESS_WAIT).await;
        let events = self.node.events.clone();
        let emit = move |status: FileStatus| {
            let _ = events.send(Event::File {
                hash,
                chat: None,
                message: None,
                status,
            });
        };
        let seen = blobs.learned(&source);
        match fetch_hash(blobs, hash, max_size, vec![source], &emit).await {
            Err(BlobError::Unavailable(_))
                // The peer may have restarted on a new port: once identify
                // tells us its new address, try again.
                if blobs.wait_learned(source, seen, ADDRESS_WAIT).await =>
            {
                fetch_hash(blobs, hash, max_size, vec![source], &emit).await
            }
            result => result,
        }
        .map_err(FetchBlobError::from_blob)
    }

    /// Copies a complete blob to `path` as it is stored: for a file sent in
    /// a chat, its ciphertext (use [`Files::fetch`] for the file).
    pub async fn export_blob(
        &self,
        hash: BlobHash,
        path: impl AsRef<Path>,
    ) -> Result<u64, ExportBlobError> {
        self.node
            .blobs
            .export(iroh_hash(&hash), path.as_ref())
            .await
            .map_err(ExportBlobError::from_blob)
    }

    /// Shares a file outside chats: returns a standard iroh-blobs ticket for
    /// a collection holding the file under its name. Anyone with the ticket
    /// may download it from this node.
    pub async fn share(&self, path: impl AsRef<Path>) -> Result<String, ImportError> {
        Ok(share::share(&self.node.blobs, path.as_ref())
            .await
            .map_err(ImportError::from_blob)?
            .to_string())
    }

    /// Downloads any standard iroh-blobs ticket into `out` (a folder),
    /// under the names it carries made safe, replacing no existing file.
    pub async fn fetch_ticket(
        &self,
        ticket: &str,
        out: impl AsRef<Path>,
    ) -> Result<TicketFiles, FetchTicketError> {
        self.fetch_ticket_with(ticket, out, SaveOptions::default())
            .await
    }

    /// [`Files::fetch_ticket`], writing files as `options` say.
    pub async fn fetch_ticket_with(
        &self,
        ticket: &str,
        out: impl AsRef<Path>,
        options: SaveOptions,
    ) -> Result<TicketFiles, FetchTicketError> {
        let ticket: BlobTicket = ticket
            .trim()
            .parse()
            .map_err(|e| FetchTicketError::BadTicket(format!("{e}")))?;
        let hash = blob_hash(ticket.hash());
        let events = self.node.events.clone();
        let files = share::fetch_ticket(&self.node.blobs, &ticket, out.as_ref(), options, |step| {
            if let Step::Progress { done } = step {
                let _ = events.send(Event::File {
                    hash,
                    chat: None,
                    message: None,
                    status: FileStatus::Progress { done, total: 0 },
                });
            }
        })
        .await
        .map_err(FetchTicketError::from_blob)?;
        Ok(TicketFiles { files })
    }

    /// When received files download by themselves, as the node applies it now.
    pub fn auto_download(&self) -> AutoDownload {
        self.node.blobs.auto_download()
    }

    /// Changes when received files download by themselves, from the next
    /// file on (files already listed stay as they are). Not saved: the
    /// CLI writes `config.toml` too.
    pub fn set_auto_download(&self, policy: AutoDownload) {
        self.node.blobs.set_auto_download(policy);
    }
}

impl Node {
    /// Re-reads contacts and blocked peers into the media access rules
    /// (after the user changed them).
    pub(crate) async fn media_contacts_changed(&self) {
        if let Err(error) = index::refresh_people(&self.caller(), self.blobs.access()).await {
            tracing::warn!(%error, "cannot refresh media access after a contact change");
        }
    }
}

/// `files().send` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendFileError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this chat; ask an admin to add you again")]
    NotMember,
    /// The file could not be read.
    #[error("{0}")]
    File(String),
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
    /// The caption is too long, or the chat refused the message.
    #[error("the file message was refused: {0}")]
    Refused(String),
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
    /// Storage failed: nothing was sent.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl SendFileError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { size, max } => Self::TooLarge { size, max },
            BlobError::File(m) => Self::File(m),
            other => Self::Media(other.to_string()),
        }
    }

    fn from_write(w: WriteError) -> Self {
        match SendError::from_write(w) {
            SendError::NotMember => Self::NotMember,
            other => Self::Refused(other.to_string()),
        }
    }
}

/// `files().fetch` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFileError {
    /// No such message (or chat).
    #[error("no message {message} in chat {chat}; see `meshchat history`")]
    NoSuchMessage {
        /// The chat.
        chat: ChatId,
        /// The message.
        message: MessageId,
    },
    /// The message carries no file.
    #[error("message {0} has no file attached")]
    NoAttachment(MessageId),
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
    /// No source served the file.
    #[error("no source could provide blob {0}; it will be retried when one connects")]
    Unavailable(String),
    /// The file to write exists already.
    #[error("{} exists already; use --force to replace it, or --out to save elsewhere", .0.display())]
    Exists(PathBuf),
    /// The file could not be written.
    #[error("{0}")]
    File(String),
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl FetchFileError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { size, max } => Self::TooLarge { size, max },
            BlobError::Unavailable(hash) => Self::Unavailable(hash),
            BlobError::Exists(path) => Self::Exists(path),
            BlobError::File(m) => Self::File(m),
            other => Self::Media(other.to_string()),
        }
    }
}

/// `files().import_blob` or `files().share` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{0}")]
    File(String),
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
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
}

impl ImportError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { size, max } => Self::TooLarge { size, max },
            BlobError::File(m) => Self::File(m),
            other => Self::Media(other.to_string()),
        }
    }
}

/// `files().fetch_blob` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchBlobError {
    /// The peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// The blob is larger than asked for.
    #[error("the blob is {size} bytes; at most {max} were asked for")]
    TooLarge {
        /// Bytes in the blob.
        size: u64,
        /// The limit asked for.
        max: u64,
    },
    /// The peer did not serve it (offline, refused, or sent bad data).
    #[error("no source could provide blob {0}; try again when the peer is online")]
    Unavailable(String),
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
}

impl FetchBlobError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { size, max } => Self::TooLarge { size, max },
            BlobError::Unavailable(hash) => Self::Unavailable(hash),
            other => Self::Media(other.to_string()),
        }
    }
}

/// `files().export_blob` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportBlobError {
    /// The blob is not (completely) stored here.
    #[error("blob {0} is not downloaded yet; fetch it first")]
    NotDownloaded(String),
    /// The file could not be written.
    #[error("{0}")]
    File(String),
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
}

impl ExportBlobError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::NotDownloaded(hash) => Self::NotDownloaded(hash),
            BlobError::File(m) => Self::File(m),
            other => Self::Media(other.to_string()),
        }
    }
}

/// `files().fetch_ticket` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchTicketError {
    /// The ticket does not parse.
    #[error("invalid ticket: {0}; copy the whole ticket again")]
    BadTicket(String),
    /// A file is larger than this node accepts.
    #[error(
        "the file is {size} bytes; the limit is {max} bytes (blobs.max_file_bytes in config.toml)"
    )]
    TooLarge {
        /// Bytes in the file.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// No source served it.
    #[error("no source could provide blob {0}; try again when the sharer is online")]
    Unavailable(String),
    /// A file to write exists already.
    #[error("{} exists already; use --force to replace it, or --out to save elsewhere", .0.display())]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("{0}")]
    File(String),
    /// The blob store failed.
    #[error("{0}; restart the daemon if this lasts")]
    Media(String),
}

impl FetchTicketError {
    fn from_blob(e: BlobError) -> Self {
        match e {
            BlobError::Ticket(m) => Self::BadTicket(m),
            BlobError::TooLarge { size, max } => Self::TooLarge { size, max },
            BlobError::Unavailable(hash) => Self::Unavailable(hash),
            BlobError::Exists(path) => Self::Exists(path),
            BlobError::File(m) => Self::File(m),
            other => Self::Media(other.to_string()),
        }
    }
}

shared_into!(SendFileError, FetchFileError);

impl ErrorCode for SendFileError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) => "not_found",
            Self::NotMember | Self::Refused(_) => "write",
            Self::File(_) => "io",
            Self::TooLarge { .. } => "too_large",
            Self::Media(_) => "blob",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for FetchFileError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchMessage { .. } => "not_found",
            Self::NoAttachment(_) | Self::Unavailable(_) | Self::Media(_) => "blob",
            Self::TooLarge { .. } => "too_large",
            Self::Exists(_) => "exists",
            Self::File(_) => "io",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for ImportError {
    fn code(&self) -> &'static str {
        match self {
            Self::File(_) => "io",
            Self::TooLarge { .. } => "too_large",
            Self::Media(_) => "blob",
        }
    }
}

impl ErrorCode for FetchBlobError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotEd25519(e) => e.code(),
            Self::TooLarge { .. } => "too_large",
            Self::Unavailable(_) | Self::Media(_) => "blob",
        }
    }
}

impl ErrorCode for ExportBlobError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotDownloaded(_) | Self::Media(_) => "blob",
            Self::File(_) => "io",
        }
    }
}

impl ErrorCode for FetchTicketError {
    fn code(&self) -> &'static str {
        match self {
            Self::BadTicket(_) => "invalid",
            Self::TooLarge { .. } => "too_large",
            Self::Unavailable(_) | Self::Media(_) => "blob",
            Self::Exists(_) => "exists",
            Self::File(_) => "io",
        }
    }
}

//! The media methods of [`Node`]: send a file, fetch one, share outside
//! chats, and the small blob API profile pictures build on.

use std::path::{Path, PathBuf};

use iroh_blobs::ticket::BlobTicket;
use libp2p::PeerId;
use meshchat_crdt::{Attachment, BlobHash, ChatId, MessageId};

use super::{
    blob_hash,
    endpoint::endpoint_of,
    fetch::{fetch_file, fetch_hash, sources, FileStatus},
    index::{self, FileMessage},
    iroh_hash, media, save, share, AutoDownload, BlobError, Fetched, SaveOptions, TicketFiles,
};
use crate::{
    api::{Event, Node, NodeError, Sent},
    chats::ChatOp,
};

/// Longest `fetch_blob` waits to learn a just-connected peer's blob address.
const ADDRESS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl From<BlobError> for NodeError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::File(m) => NodeError::Io(m),
            other => NodeError::Blob(other),
        }
    }
}

impl Node {
    /// Sends the file at `path` into `chat`: imports it into the blob store
    /// (hashed, stored once), sniffs its type, makes a preview for images,
    /// and posts a message carrying the attachment. Members then fetch the
    /// bytes from this node (or each other, or their relays).
    pub async fn send_file(
        &self,
        chat: ChatId,
        path: impl AsRef<Path>,
        caption: impl Into<String>,
    ) -> Result<Sent, NodeError> {
        let path = path.as_ref().to_path_buf();
        let (hash, size) = self.blobs.import(&path).await?;
        let (mime, preview) = {
            let source = path.clone();
            tokio::task::spawn_blocking(move || {
                let mime = media::sniff_mime(&source)?;
                let preview = media::preview(&source, &mime, size).unwrap_or_default();
                Ok::<_, std::io::Error>((mime, preview))
            })
            .await
            .map_err(|e| NodeError::Io(e.to_string()))?
            .map_err(|e| NodeError::Io(format!("{}: {e}", path.display())))?
        };
        let attachment = Attachment {
            hash: blob_hash(hash),
            size,
            mime,
            name: media::file_name(&path),
            preview,
        };
        // Entitle the members before anyone hears of the message.
        let access = self.blobs.access();
        index::refresh_members(self, access, chat).await?;
        if let Some(me) = crate::keys::public_key_of(&self.peer_id) {
            access.add_reference(chat, hash, me);
        }
        let op = ChatOp::SendFile {
            caption: caption.into(),
            attachment,
        };
        let outcome = self.op(chat, op).await?;
        let message = outcome
            .message
            .ok_or_else(|| NodeError::Invalid("send_file produced no message".into()))?;
        Ok(Sent { chat, message })
    }

    /// Fetches the file of `message` in `chat` (from the author, the other
    /// members, then this node's relays), resuming whatever is already
    /// stored, and copies the verified bytes to `out` if given: a file path,
    /// or a folder to write it into under its sender's name made safe. An
    /// existing file is not replaced. Progress arrives as [`Event::File`].
    pub async fn fetch_file(
        &self,
        chat: ChatId,
        message: MessageId,
        out: Option<PathBuf>,
    ) -> Result<Fetched, NodeError> {
        self.fetch_file_with(chat, message, out, SaveOptions::default())
            .await
    }

    /// [`Node::fetch_file`], writing the file as `options` say (replace an
    /// existing file, keep a leading dot in the name).
    pub async fn fetch_file_with(
        &self,
        chat: ChatId,
        message: MessageId,
        out: Option<PathBuf>,
        options: SaveOptions,
    ) -> Result<Fetched, NodeError> {
        let files = index::refresh_chat(self, self.blobs.access(), chat).await?;
        let file: FileMessage = match files.into_iter().find(|f| f.message.id == message) {
            Some(file) => file,
            None => {
                self.message_info(chat, message).await?;
                return Err(BlobError::NoAttachment(message.to_string()).into());
            }
        };
        let members = self.blobs.access().members(&chat);
        let sources = sources(&self.blobs, &file.message.author, members);
        let seen: Vec<u64> = sources.iter().map(|s| self.blobs.learned(s)).collect();
        let size = match fetch_file(&self.blobs, &self.events, &file, sources.clone()).await {
            Err(BlobError::Unavailable(_)) if self.fresh_address(&sources, &seen).await => {
                fetch_file(&self.blobs, &self.events, &file, sources).await?
            }
            result => result?,
        };
        let (path, renamed_from) = match out {
            Some(out) => {
                let (target, renamed) = save::target(&out, &file.attachment.name, options);
                let hash = iroh_hash(&file.attachment.hash);
                save::write(&self.blobs, hash, &target, options).await?;
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
        let waits = sources
            .iter()
            .zip(seen)
            .map(|(source, seen)| Box::pin(self.blobs.wait_learned(*source, *seen, ADDRESS_WAIT)));
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
    pub async fn import_blob(&self, path: impl AsRef<Path>) -> Result<BlobHash, NodeError> {
        let (hash, _) = self.blobs.import(path.as_ref()).await?;
        self.blobs.keep_public(hash).await?;
        Ok(blob_hash(hash))
    }

    /// Fetches blob `hash` (at most `max_size` bytes) from `peer`, verified.
    /// The peer must serve it to this node (e.g. it was imported with
    /// [`Node::import_blob`] there). Progress arrives as [`Event::File`].
    pub async fn fetch_blob(
        &self,
        hash: BlobHash,
        max_size: u64,
        peer: PeerId,
    ) -> Result<u64, NodeError> {
        let source = endpoint_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        // Just connected: identify may not have told us its blob address yet.
        self.blobs.wait_known(source, ADDRESS_WAIT).await;
        let events = self.events.clone();
        let emit = move |status: FileStatus| {
            let _ = events.send(Event::File {
                hash,
                chat: None,
                message: None,
                status,
            });
        };
        let seen = self.blobs.learned(&source);
        match fetch_hash(&self.blobs, hash, max_size, vec![source], &emit).await {
            Err(BlobError::Unavailable(_))
                // The peer may have restarted on a new port: once identify
                // tells us its new address, try again.
                if self.blobs.wait_learned(source, seen, ADDRESS_WAIT).await =>
            {
                Ok(fetch_hash(&self.blobs, hash, max_size, vec![source], &emit).await?)
            }
            result => Ok(result?),
        }
    }

    /// Copies a complete blob to `path`.
    pub async fn export_blob(
        &self,
        hash: BlobHash,
        path: impl AsRef<Path>,
    ) -> Result<u64, NodeError> {
        Ok(self.blobs.export(iroh_hash(&hash), path.as_ref()).await?)
    }

    /// Shares a file outside chats: returns a standard iroh-blobs ticket for
    /// a collection holding the file under its name. Anyone with the ticket
    /// may download it from this node.
    pub async fn share(&self, path: impl AsRef<Path>) -> Result<String, NodeError> {
        Ok(share::share(&self.blobs, path.as_ref()).await?.to_string())
    }

    /// Downloads any standard iroh-blobs ticket into `out` (a folder),
    /// under the names it carries made safe, replacing no existing file.
    pub async fn fetch_ticket(
        &self,
        ticket: &str,
        out: impl AsRef<Path>,
    ) -> Result<TicketFiles, NodeError> {
        self.fetch_ticket_with(ticket, out, SaveOptions::default())
            .await
    }

    /// [`Node::fetch_ticket`], writing files as `options` say.
    pub async fn fetch_ticket_with(
        &self,
        ticket: &str,
        out: impl AsRef<Path>,
        options: SaveOptions,
    ) -> Result<TicketFiles, NodeError> {
        let ticket: BlobTicket = ticket
            .trim()
            .parse()
            .map_err(|e| BlobError::Ticket(format!("{e}")))?;
        let hash = blob_hash(ticket.hash());
        let events = self.events.clone();
        let files = share::fetch_ticket(&self.blobs, &ticket, out.as_ref(), options, |step| {
            if let super::service::Step::Progress { done } = step {
                let _ = events.send(Event::File {
                    hash,
                    chat: None,
                    message: None,
                    status: FileStatus::Progress { done, total: 0 },
                });
            }
        })
        .await?;
        Ok(TicketFiles { files })
    }

    /// When received files download by themselves, as the node applies it now.
    pub fn auto_download(&self) -> AutoDownload {
        self.blobs.auto_download()
    }

    /// Changes when received files download by themselves, from the next
    /// file on (files already listed stay as they are). Not saved: the
    /// CLI writes `config.toml` too.
    pub fn set_auto_download(&self, policy: AutoDownload) {
        self.blobs.set_auto_download(policy);
    }

    /// Re-reads contacts and blocked peers into the media access rules
    /// (after the user changed them).
    pub(crate) async fn media_contacts_changed(&self) {
        if let Err(error) = index::refresh_people(self, self.blobs.access()).await {
            tracing::warn!(%error, "cannot refresh media access after a contact change");
        }
    }
}

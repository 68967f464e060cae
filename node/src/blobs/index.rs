//! Keeps the access index in step with the chats: which blobs each chat's
//! history references, who is in each chat, and which relays serve whom.
//! Reads go through the `Node` API, so the actor's state stays its own.

use std::collections::HashSet;

use meshchat_crdt::{Attachment, ChatId, ChatKind, Message, PublicKey};

use super::{access::Access, iroh_hash};
use crate::{api::Node, keys::public_key_of, NodeError};

/// A message with a file, as the index saw it.
#[derive(Debug, Clone)]
pub(crate) struct FileMessage {
    pub(crate) chat: ChatId,
    pub(crate) message: Message,
    pub(crate) attachment: Attachment,
    pub(crate) outgoing: bool,
}

/// The members of `chat` now (both keys of a direct chat).
pub(crate) async fn members_of(node: &Node, chat: ChatId) -> Result<HashSet<PublicKey>, NodeError> {
    match node.group_info(chat).await {
        Ok(info) => return Ok(info.members.iter().map(|m| m.key).collect()),
        Err(NodeError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let summaries = node.chats().await?;
    let summary = summaries
        .iter()
        .find(|s| s.id == chat)
        .ok_or_else(|| NodeError::NotFound(chat.to_string()))?;
    Ok(match &summary.kind {
        ChatKind::Direct { a, b } => [*a, *b].into(),
        _ => HashSet::new(),
    })
}

/// Re-reads a chat's members and the files its history references.
pub(crate) async fn refresh_chat(
    node: &Node,
    access: &Access,
    chat: ChatId,
) -> Result<Vec<FileMessage>, NodeError> {
    let members = members_of(node, chat).await?;
    access.set_members(chat, members);
    let mut files = Vec::new();
    let mut hashes = HashSet::new();
    for entry in node.history_quiet(chat).await? {
        if let Some(attachment) = entry.message.attachment.clone() {
            hashes.insert(iroh_hash(&attachment.hash));
            files.push(FileMessage {
                chat,
                message: entry.message,
                attachment: *attachment,
                outgoing: entry.outgoing,
            });
        }
    }
    access.set_references(chat, &hashes);
    Ok(files)
}

/// Re-reads every chat; returns every file message.
pub(crate) async fn refresh_all(
    node: &Node,
    access: &Access,
) -> Result<Vec<FileMessage>, NodeError> {
    refresh_relays(node, access).await?;
    let mut files = Vec::new();
    for summary in node.chats().await? {
        files.extend(refresh_chat(node, access, summary.id).await?);
    }
    Ok(files)
}

/// Re-reads the contacts' relays (a member's relay may fetch for it).
pub(crate) async fn refresh_relays(node: &Node, access: &Access) -> Result<(), NodeError> {
    for contact in node.contacts().await? {
        let Some(key) = public_key_of(&contact.peer) else {
            continue;
        };
        let relays = contact
            .relays
            .iter()
            .filter_map(crate::config::peer_of)
            .filter_map(|p| public_key_of(&p))
            .collect();
        access.set_relays(key, relays);
    }
    Ok(())
}

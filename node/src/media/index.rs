//! Keeps the access index in step with the chats: which blobs each chat's
//! history references and who wrote those messages, who is in each chat,
//! how the user came to be in it, and who the user's contacts are.
//! Reads go through commands to the actor (a `Caller`), so the actor's
//! state stays its own.

use std::collections::HashSet;

use meshchat_crdt::{Attachment, ChatId, ChatKind, Message, PublicKey};

use super::{access::Access, iroh_hash, policy::ChatShape};
use crate::{
    command::{Caller, Command},
    keys::public_key_of,
    reply::NodeError,
};

/// A message with a file, as the index saw it.
#[derive(Debug, Clone)]
pub(crate) struct FileMessage {
    pub(crate) chat: ChatId,
    pub(crate) message: Message,
    pub(crate) attachment: Attachment,
    pub(crate) outgoing: bool,
}

/// The shape and members of `chat` now (both keys of a direct chat).
pub(crate) async fn chat_of(
    node: &Caller,
    chat: ChatId,
) -> Result<(ChatShape, HashSet<PublicKey>), NodeError> {
    match node.call(|reply| Command::GroupInfo { chat, reply }).await {
        Ok(info) => {
            let me = public_key_of(&node.peer_id);
            let added_me = info
                .members
                .iter()
                .find(|m| Some(m.key) == me)
                .and_then(|m| m.added_by);
            let shape = ChatShape::Group {
                creator: info.creator,
                added_me,
            };
            return Ok((shape, info.members.iter().map(|m| m.key).collect()));
        }
        Err(NodeError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let summaries = node.call(|reply| Command::Chats { reply }).await?;
    let summary = summaries
        .iter()
        .find(|s| s.id == chat)
        .ok_or_else(|| NodeError::NotFound(chat.to_string()))?;
    Ok(match &summary.kind {
        ChatKind::Direct { a, b } => (ChatShape::Direct, [*a, *b].into()),
        // A group whose metadata is not readable: nobody is a member.
        ChatKind::Group { creator, .. } => (
            ChatShape::Group {
                creator: *creator,
                added_me: None,
            },
            HashSet::new(),
        ),
        // A kind this version does not know: nobody is entitled through it.
        _ => (ChatShape::Direct, HashSet::new()),
    })
}

/// Records the shape and members of `chat`.
pub(crate) async fn refresh_members(
    node: &Caller,
    access: &Access,
    chat: ChatId,
) -> Result<(), NodeError> {
    let (shape, members) = chat_of(node, chat).await?;
    access.set_chat(chat, shape, members);
    Ok(())
}

/// Re-reads a chat's members and the files its history references.
pub(crate) async fn refresh_chat(
    node: &Caller,
    access: &Access,
    chat: ChatId,
) -> Result<Vec<FileMessage>, NodeError> {
    refresh_members(node, access, chat).await?;
    let mut files = Vec::new();
    let mut refs = HashSet::new();
    // History leaves out blocked authors' messages: they reference nothing.
    let history = node
        .call(|reply| Command::History {
            chat,
            limit: None,
            mark_read: false,
            reply,
        })
        .await?;
    for entry in history {
        if let Some(attachment) = entry.message.attachment.clone() {
            refs.insert((iroh_hash(&attachment.hash), entry.message.author));
            files.push(FileMessage {
                chat,
                message: entry.message,
                attachment: *attachment,
                outgoing: entry.outgoing,
            });
        }
    }
    access.set_references(chat, &refs);
    Ok(files)
}

/// Re-reads every chat; returns every file message.
pub(crate) async fn refresh_all(
    node: &Caller,
    access: &Access,
) -> Result<Vec<FileMessage>, NodeError> {
    refresh_people(node, access).await?;
    let mut files = Vec::new();
    for summary in node.call(|reply| Command::Chats { reply }).await? {
        files.extend(refresh_chat(node, access, summary.id).await?);
    }
    Ok(files)
}

/// Re-reads the user's contacts and blocked peers.
pub(crate) async fn refresh_people(node: &Caller, access: &Access) -> Result<(), NodeError> {
    let mut contacts = HashSet::new();
    let mut blocked = HashSet::new();
    for contact in node.call(|reply| Command::Contacts { reply }).await? {
        let Some(key) = public_key_of(&contact.peer) else {
            continue;
        };
        if contact.blocked {
            blocked.insert(key);
        } else {
            contacts.insert(key);
        }
    }
    access.set_people(contacts, blocked);
    Ok(())
}

//! What a caller names, resolved: a chat by id, peer, contact or group name
//! (`chats().resolve`, which looks names up in an index), a peer by PeerId
//! or contact name, a message by id prefix, a message request by chat id
//! prefix or sender.

use meshchat_crdt::{ChatId, MessageId};

use super::wire::ControlError;
use crate::{api::Node, PeerId};

/// A chat by chat id, PeerId, contact name or group name; failing those,
/// a direct chat with someone not in the contacts by their profile's name
/// (`~Name` as `chats` shows it, or `Name`).
pub(super) async fn resolve_chat(node: &Node, query: String) -> Result<ChatId, ControlError> {
    match node.chats().resolve(query.clone()).await {
        Ok(chat) => Ok(chat),
        Err(error) => match stranger_by_profile_name(node, &query).await? {
            Some(chat) => Ok(chat),
            None => Err(error.into()),
        },
    }
}

/// The direct chat with the one non-contact whose profile is called
/// `query` (a leading `~` ignored).
async fn stranger_by_profile_name(
    node: &Node,
    query: &str,
) -> Result<Option<ChatId>, ControlError> {
    let name = query.strip_prefix('~').unwrap_or(query);
    if name.is_empty() {
        return Ok(None);
    }
    let me = node.network().status().await?.peer_id;
    let Some(me) = crate::keys::public_key_of(&me) else {
        return Ok(None);
    };
    let contacts: Vec<PeerId> = node
        .contacts()
        .list()
        .await?
        .into_iter()
        .map(|c| c.peer)
        .collect();
    let mut found = Vec::new();
    for chat in node.chats().list().await? {
        let Some(peer) = chat
            .kind
            .peer_of(&me)
            .and_then(|k| crate::keys::peer_id_of(&k))
        else {
            continue;
        };
        if contacts.contains(&peer) {
            continue;
        }
        let profile = node.profiles().get(Some(peer)).await?;
        if profile.is_some_and(|p| p.profile.name.as_deref() == Some(name)) {
            found.push(chat.id);
        }
    }
    match found[..] {
        [one] => Ok(Some(one)),
        [] => Ok(None),
        _ => Err(ControlError::new(
            "ambiguous",
            format!("{query:?} is the profile name of more than one chat; use the chat id"),
        )),
    }
}

/// A peer by PeerId or contact name.
pub(super) async fn resolve_peer(node: &Node, query: &str) -> Result<PeerId, ControlError> {
    if let Ok(peer) = query.parse::<PeerId>() {
        return Ok(peer);
    }
    let contacts = node.contacts().list().await?;
    let matches: Vec<_> = contacts
        .iter()
        .filter(|c| c.name.as_deref() == Some(query))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.peer),
        [] => Err(ControlError::new(
            "not_found",
            format!("no contact is called {query:?}; see `meshchat contacts`, or use a peer id"),
        )),
        _ => Err(ControlError::new(
            "ambiguous",
            format!("{query:?} matches more than one contact; use the peer id"),
        )),
    }
}

/// A message of `chat` by full id or unique prefix (as `history` shows them).
pub(super) async fn resolve_message(
    node: &Node,
    chat: ChatId,
    query: &str,
) -> Result<MessageId, ControlError> {
    if let Ok(id) = query.parse::<MessageId>() {
        return Ok(id);
    }
    let history = node.chats().history_quiet(chat).await?;
    let matches: Vec<MessageId> = history
        .iter()
        .map(|e| e.message.id)
        .filter(|id| id.to_string().starts_with(&query.to_ascii_lowercase()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ControlError::new(
            "not_found",
            format!("no message {query} in this chat; see `meshchat history`"),
        )),
        _ => Err(ControlError::new(
            "ambiguous",
            format!("message {query} matches more than one message; give more of its id"),
        )),
    }
}

/// The message request `query` names: its chat id or a unique prefix of it,
/// or its sender's PeerId.
pub(super) async fn request_chat(node: &Node, query: &str) -> Result<ChatId, ControlError> {
    let requests = node.contacts().requests().await?;
    let matches: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.chat.to_string().starts_with(query)
                || crate::keys::peer_id_of(&r.from).is_some_and(|p| p.to_string() == query)
        })
        .collect();
    match matches[..] {
        [one] => Ok(one.chat),
        [] => Err(ControlError::new(
            "not_found",
            format!("no message request matches {query:?} (see `meshchat requests`)"),
        )),
        _ => Err(ControlError::new(
            "invalid",
            format!(
                "{query:?} matches {} requests; give more of the chat id",
                matches.len()
            ),
        )),
    }
}

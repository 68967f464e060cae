//! What a caller names, resolved: a peer by PeerId or contact name, a
//! message by id prefix, a message request by chat id prefix or sender.

use meshchat_crdt::{ChatId, MessageId, PublicKey};

use super::wire::ControlError;
use crate::{
    api::{Node, NodeError},
    PeerId,
};

/// A peer by PeerId or contact name.
pub(super) async fn resolve_peer(node: &Node, query: &str) -> Result<PeerId, ControlError> {
    if let Ok(peer) = query.parse::<PeerId>() {
        return Ok(peer);
    }
    let contacts = node.contacts().await?;
    let matches: Vec<_> = contacts
        .iter()
        .filter(|c| c.name.as_deref() == Some(query))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.peer),
        [] => Err(NodeError::NotFound(query.to_owned()).into()),
        _ => Err(NodeError::Ambiguous(query.to_owned()).into()),
    }
}

pub(super) async fn resolve_key(node: &Node, query: &str) -> Result<PublicKey, ControlError> {
    let peer = resolve_peer(node, query).await?;
    crate::keys::public_key_of(&peer)
        .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")).into())
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
    let history = node.history_quiet(chat).await?;
    let matches: Vec<MessageId> = history
        .iter()
        .map(|e| e.message.id)
        .filter(|id| id.to_string().starts_with(&query.to_ascii_lowercase()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(NodeError::NotFound(format!("message {query}")).into()),
        _ => Err(NodeError::Ambiguous(format!("message {query}")).into()),
    }
}

/// The message request `query` names: its chat id or a unique prefix of it,
/// or its sender's PeerId.
pub(super) async fn request_chat(node: &Node, query: &str) -> Result<ChatId, NodeError> {
    let requests = node.requests().await?;
    let matches: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.chat.to_string().starts_with(query)
                || crate::keys::peer_id_of(&r.from).is_some_and(|p| p.to_string() == query)
        })
        .collect();
    match matches[..] {
        [one] => Ok(one.chat),
        [] => Err(NodeError::NotFound(format!(
            "no message request matches {query:?} (see `meshchat requests`)"
        ))),
        _ => Err(NodeError::Invalid(format!(
            "{query:?} matches {} requests; give more of the chat id",
            matches.len()
        ))),
    }
}

//! The simple calls: one request, one answer, each mapped onto the [`Node`]
//! method it names (the media calls in `media.rs`).

use meshchat_crdt::Role;

use super::{
    media,
    resolve::{request_chat, resolve_key, resolve_message, resolve_peer},
    wire::{to_json, ControlError, ControlRequest, GroupUpdate},
};
use crate::{
    api::{Node, NodeError},
    chats::{ChatOp, OpOutcome},
};

/// Answers one call; `watch` and `shutdown` are the server's own.
pub(super) async fn call(
    node: &Node,
    request: ControlRequest,
) -> Result<serde_json::Value, ControlError> {
    let result = match request {
        ControlRequest::Status => to_json(node.status().await?),
        ControlRequest::ContactsAdd {
            peer,
            name,
            addrs,
            relays,
        } => to_json(
            node.add_contact_with_relays(peer, name, addrs, relays)
                .await?,
        ),
        ControlRequest::ContactsList => to_json(node.contacts().await?),
        ControlRequest::Requests => to_json(node.requests().await?),
        ControlRequest::RequestsAccept { chat } => {
            let chat = request_chat(node, &chat).await?;
            node.accept_request(chat).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        ControlRequest::RequestsDelete { chat, block } => {
            let chat = request_chat(node, &chat).await?;
            node.delete_request(chat, block).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        ControlRequest::Send { to, text, reply_to } => {
            let chat = node.resolve(to).await?;
            let reply_to = match reply_to {
                Some(m) => Some(resolve_message(node, chat, &m).await?),
                None => None,
            };
            let outcome = node.op(chat, ChatOp::Send { text, reply_to }).await?;
            to_json(serde_json::json!({ "chat": chat, "message": outcome.message }))
        }
        ControlRequest::Edit {
            chat,
            message,
            text,
        } => {
            let chat = node.resolve(chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            op_result(node.op(chat, ChatOp::Edit { message, text }).await?)
        }
        ControlRequest::Delete { chat, message } => {
            let chat = node.resolve(chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            op_result(node.op(chat, ChatOp::Delete { message }).await?)
        }
        ControlRequest::React {
            chat,
            message,
            emoji,
        } => {
            let chat = node.resolve(chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            let emoji = (!emoji.is_empty()).then_some(emoji);
            op_result(node.op(chat, ChatOp::React { message, emoji }).await?)
        }
        ControlRequest::GroupCreate { name, members } => {
            let mut peers = Vec::new();
            for member in members {
                peers.push(resolve_peer(node, &member).await?);
            }
            let chat = node.create_group(name, peers).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        ControlRequest::GroupUpdate { chat, update } => {
            let chat = node.resolve(chat).await?;
            let op = match update {
                GroupUpdate::Add { peer } => ChatOp::AddMember(resolve_key(node, &peer).await?),
                GroupUpdate::Remove { peer } => {
                    ChatOp::RemoveMember(resolve_key(node, &peer).await?)
                }
                GroupUpdate::Promote { peer } => {
                    ChatOp::SetRole(resolve_key(node, &peer).await?, Role::Admin)
                }
                GroupUpdate::Demote { peer } => {
                    ChatOp::SetRole(resolve_key(node, &peer).await?, Role::Member)
                }
                GroupUpdate::Leave => ChatOp::Leave,
                GroupUpdate::Rename { name } => ChatOp::Rename(name),
                GroupUpdate::HistoryForNewMembers { on } => ChatOp::HistoryForNewMembers(on),
            };
            op_result(node.op(chat, op).await?)
        }
        ControlRequest::MessageInfo { chat, message } => {
            let chat = node.resolve(chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            to_json(node.message_info(chat, message).await?)
        }
        ControlRequest::GroupInfo { chat } => {
            let chat = node.resolve(chat).await?;
            to_json(node.group_info(chat).await?)
        }
        ControlRequest::Export { chat, dir } => {
            let chat = node.resolve(chat).await?;
            to_json(node.export(chat, dir).await?)
        }
        ControlRequest::Chats => to_json(node.chats().await?),
        ControlRequest::History { chat, limit } => {
            let chat = node.resolve(chat).await?;
            to_json(node.history(chat, limit).await?)
        }
        ControlRequest::Dial { addr } => to_json(node.dial(addr).await?),
        ControlRequest::ProfileSet {
            name,
            status,
            avatar,
            avatar_path,
        } => {
            let avatar = match avatar_path {
                Some(path) => Some(node.import_blob(path).await?.to_string()),
                None => avatar,
            };
            to_json(
                node.set_profile(crate::ProfileUpdate {
                    name,
                    status,
                    avatar,
                })
                .await?,
            )
        }
        ControlRequest::ProfileAvatar { peer, out } => {
            let peer = match peer {
                Some(p) => Some(resolve_peer(node, &p).await?),
                None => None,
            };
            let profile = node
                .profile(peer)
                .await?
                .ok_or_else(|| NodeError::NotFound("a profile for that peer".into()))?;
            let hash: meshchat_crdt::BlobHash = profile
                .profile
                .avatar
                .ok_or_else(|| NodeError::NotFound("a profile picture".into()))?
                .parse()
                .map_err(|_| NodeError::Invalid("the profile's picture hash is invalid".into()))?;
            if peer.is_some() {
                node.fetch_blob(hash, crate::MAX_AVATAR_BYTES, profile.peer)
                    .await?;
            }
            let size = node.export_blob(hash, &out).await?;
            to_json(serde_json::json!({ "hash": hash, "size": size, "path": out }))
        }
        ControlRequest::ProfileShow { peer } => {
            let peer = match peer {
                Some(p) => Some(resolve_peer(node, &p).await?),
                None => None,
            };
            to_json(node.profile(peer).await?)
        }
        ControlRequest::Invite => {
            let invite = node.invite().await?;
            to_json(serde_json::json!({
                "invite": invite.encode(),
                "peer": invite.peer,
                "name": invite.name,
                "addrs": invite.addrs,
                "relays": invite.relays,
            }))
        }
        ControlRequest::ContactsAddInvite { invite, name } => {
            let invite = crate::invite::Invite::decode(&invite)
                .map_err(|e| ControlError::new("invalid", e.to_string()))?;
            let contact = node.add_contact_from_invite(invite, name).await?;
            to_json(contact)
        }
        ControlRequest::ContactsRemove { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(serde_json::json!({ "removed": node.remove_contact(peer).await? }))
        }
        ControlRequest::ContactsBlock { peer, blocked } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(node.set_blocked(peer, blocked).await?)
        }
        ControlRequest::LastSeen { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(node.last_seen(peer).await?)
        }
        ControlRequest::Privacy { last_seen } => {
            if let Some(privacy) = last_seen {
                node.set_last_seen_privacy(privacy).await?;
            }
            to_json(serde_json::json!({ "last_seen": node.last_seen_privacy().await? }))
        }
        ControlRequest::Typing { chat } => {
            let chat = node.resolve(chat).await?;
            to_json(node.typing(chat).await?)
        }
        request @ (ControlRequest::SendFile { .. }
        | ControlRequest::FetchFile { .. }
        | ControlRequest::Share { .. }
        | ControlRequest::FetchTicket { .. }
        | ControlRequest::AutoDownload { .. }) => media::call(node, request).await,
        ControlRequest::Watch | ControlRequest::Shutdown => {
            Err(NodeError::Invalid("not a simple call".into()).into())
        }
    };
    result
}

fn op_result(outcome: OpOutcome) -> Result<serde_json::Value, ControlError> {
    to_json(serde_json::json!({
        "chat": outcome.chat,
        "change": outcome.hash,
        "message": outcome.message.or(outcome.updated),
    }))
}

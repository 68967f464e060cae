//! The simple calls: one request, one answer, each the one sub-handle
//! operation it names (`chats_send` is `node.chats().send`), dispatched by
//! sub-handle; the media calls (`files_*`) are in `media.rs`. An error
//! answer carries that operation's error: its code and its message.

use super::{
    media,
    resolve::{request_chat, resolve_chat, resolve_message, resolve_peer},
    wire::{to_json, ControlError, ControlRequest},
};
use crate::{api::Node, chats::OpOutcome, ProfileUpdate};

type Answer = Result<serde_json::Value, ControlError>;

/// Answers one call; `watch` and `shutdown` are the server's own. Other
/// servers of the same operations (the desktop app's web server) call it too.
pub async fn call(node: &Node, request: ControlRequest) -> Result<serde_json::Value, ControlError> {
    use ControlRequest as R;
    match request {
        R::NetworkStatus | R::NetworkDial { .. } | R::NetworkDisconnect { .. } => {
            network(node, request).await
        }
        R::ContactsAdd { .. }
        | R::ContactsAddInvite { .. }
        | R::ContactsList
        | R::ContactsRemove { .. }
        | R::ContactsBlock { .. }
        | R::ContactsVerify { .. }
        | R::ContactsInvite
        | R::ContactsRequests
        | R::ContactsAcceptRequest { .. }
        | R::ContactsDeleteRequest { .. } => contacts(node, request).await,
        R::ChatsList
        | R::ChatsSend { .. }
        | R::ChatsEdit { .. }
        | R::ChatsDelete { .. }
        | R::ChatsReact { .. }
        | R::ChatsTyping { .. }
        | R::ChatsHistory { .. }
        | R::ChatsMessageInfo { .. }
        | R::ChatsExport { .. } => chats(node, request).await,
        R::GroupsCreate { .. }
        | R::GroupsInfo { .. }
        | R::GroupsAddMember { .. }
        | R::GroupsRemoveMember { .. }
        | R::GroupsSetRole { .. }
        | R::GroupsRename { .. }
        | R::GroupsSetHistoryForNewMembers { .. }
        | R::GroupsLeave { .. } => groups(node, request).await,
        R::ProfilesSet { .. }
        | R::ProfilesGet { .. }
        | R::ProfilesSavePicture { .. }
        | R::ProfilesLastSeen { .. }
        | R::ProfilesLastSeenPrivacy
        | R::ProfilesSetLastSeenPrivacy { .. } => profiles(node, request).await,
        R::FilesSend { .. }
        | R::FilesFetch { .. }
        | R::FilesShare { .. }
        | R::FilesFetchTicket { .. }
        | R::FilesAutoDownload
        | R::FilesSetAutoDownload { .. } => media::call(node, request).await,
        R::Watch | R::Shutdown => Err(not_here()),
    }
}

fn not_here() -> ControlError {
    ControlError::new("bad_request", "not a call of this handle")
}

async fn network(node: &Node, request: ControlRequest) -> Answer {
    let network = node.network();
    match request {
        ControlRequest::NetworkStatus => to_json(network.status().await?),
        ControlRequest::NetworkDial { addr } => to_json(network.dial(addr).await?),
        ControlRequest::NetworkDisconnect { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(network.disconnect(peer).await?)
        }
        _ => Err(not_here()),
    }
}

async fn contacts(node: &Node, request: ControlRequest) -> Answer {
    let contacts = node.contacts();
    match request {
        ControlRequest::ContactsAdd {
            peer,
            name,
            addrs,
            relays,
        } => to_json(contacts.add_with_relays(peer, name, addrs, relays).await?),
        ControlRequest::ContactsAddInvite { invite, name } => {
            let invite = crate::social::invite::Invite::decode(&invite)
                .map_err(|e| ControlError::new("invalid", e.to_string()))?;
            to_json(contacts.add_from_invite(invite, name).await?)
        }
        ControlRequest::ContactsList => to_json(contacts.list().await?),
        ControlRequest::ContactsRemove { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(serde_json::json!({ "removed": contacts.remove(peer).await? }))
        }
        ControlRequest::ContactsBlock { peer, blocked } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(contacts.set_blocked(peer, blocked).await?)
        }
        ControlRequest::ContactsVerify { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(contacts.safety_number(peer).await?)
        }
        ControlRequest::ContactsInvite => {
            let invite = contacts.invite().await?;
            to_json(serde_json::json!({
                "invite": invite.encode(),
                "peer": invite.peer,
                "name": invite.name,
                "addrs": invite.addrs,
                "relays": invite.relays,
            }))
        }
        ControlRequest::ContactsRequests => to_json(contacts.requests().await?),
        ControlRequest::ContactsAcceptRequest { chat } => {
            let chat = request_chat(node, &chat).await?;
            contacts.accept_request(chat).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        ControlRequest::ContactsDeleteRequest { chat, block } => {
            let chat = request_chat(node, &chat).await?;
            contacts.delete_request(chat, block).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        _ => Err(not_here()),
    }
}

async fn chats(node: &Node, request: ControlRequest) -> Answer {
    let chats = node.chats();
    match request {
        ControlRequest::ChatsList => to_json(chats.list().await?),
        ControlRequest::ChatsSend { to, text, reply_to } => {
            let chat = resolve_chat(node, to).await?;
            let sent = match reply_to {
                Some(m) => {
                    let to = resolve_message(node, chat, &m).await?;
                    chats.reply(chat, to, text).await?
                }
                None => chats.send(chat, text).await?,
            };
            to_json(sent)
        }
        ControlRequest::ChatsEdit {
            chat,
            message,
            text,
        } => {
            let chat = resolve_chat(node, chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            op_result(chats.edit(chat, message, text).await?)
        }
        ControlRequest::ChatsDelete { chat, message } => {
            let chat = resolve_chat(node, chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            op_result(chats.delete(chat, message).await?)
        }
        ControlRequest::ChatsReact {
            chat,
            message,
            emoji,
        } => {
            let chat = resolve_chat(node, chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            let emoji = (!emoji.is_empty()).then_some(emoji);
            op_result(chats.react(chat, message, emoji).await?)
        }
        ControlRequest::ChatsTyping { chat } => {
            let chat = resolve_chat(node, chat).await?;
            to_json(chats.typing(chat).await?)
        }
        ControlRequest::ChatsHistory { chat, limit } => {
            let chat = resolve_chat(node, chat).await?;
            to_json(chats.history(chat, limit).await?)
        }
        ControlRequest::ChatsMessageInfo { chat, message } => {
            let chat = resolve_chat(node, chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            to_json(chats.message_info(chat, message).await?)
        }
        ControlRequest::ChatsExport { chat, dir } => {
            let chat = resolve_chat(node, chat).await?;
            to_json(chats.export(chat, dir).await?)
        }
        _ => Err(not_here()),
    }
}

async fn groups(node: &Node, request: ControlRequest) -> Answer {
    let groups = node.groups();
    match request {
        ControlRequest::GroupsCreate { name, members } => {
            let mut peers = Vec::new();
            for member in members {
                peers.push(resolve_peer(node, &member).await?);
            }
            let chat = groups.create(name, peers).await?;
            to_json(serde_json::json!({ "chat": chat }))
        }
        ControlRequest::GroupsInfo { chat } => {
            let chat = resolve_chat(node, chat).await?;
            to_json(groups.info(chat).await?)
        }
        ControlRequest::GroupsAddMember { chat, peer } => {
            let chat = resolve_chat(node, chat).await?;
            let peer = resolve_peer(node, &peer).await?;
            op_result(groups.add_member(chat, peer).await?)
        }
        ControlRequest::GroupsRemoveMember { chat, peer } => {
            let chat = resolve_chat(node, chat).await?;
            let peer = resolve_peer(node, &peer).await?;
            op_result(groups.remove_member(chat, peer).await?)
        }
        ControlRequest::GroupsSetRole { chat, peer, role } => {
            let chat = resolve_chat(node, chat).await?;
            let peer = resolve_peer(node, &peer).await?;
            op_result(groups.set_role(chat, peer, role).await?)
        }
        ControlRequest::GroupsRename { chat, name } => {
            let chat = resolve_chat(node, chat).await?;
            op_result(groups.rename(chat, name).await?)
        }
        ControlRequest::GroupsSetHistoryForNewMembers { chat, on } => {
            let chat = resolve_chat(node, chat).await?;
            op_result(groups.set_history_for_new_members(chat, on).await?)
        }
        ControlRequest::GroupsLeave { chat } => {
            let chat = resolve_chat(node, chat).await?;
            op_result(groups.leave(chat).await?)
        }
        _ => Err(not_here()),
    }
}

async fn profiles(node: &Node, request: ControlRequest) -> Answer {
    let profiles = node.profiles();
    let peer_of = |peer: Option<String>| async move {
        match peer {
            Some(p) => resolve_peer(node, &p).await.map(Some),
            None => Ok(None),
        }
    };
    match request {
        ControlRequest::ProfilesSet {
            name,
            status,
            avatar,
            avatar_path,
        } => {
            let update = ProfileUpdate {
                name,
                status,
                avatar,
            };
            to_json(match avatar_path {
                Some(path) => profiles.set_with_picture(update, path).await?,
                None => profiles.set(update).await?,
            })
        }
        ControlRequest::ProfilesGet { peer } => {
            let peer = peer_of(peer).await?;
            to_json(profiles.get(peer).await?)
        }
        ControlRequest::ProfilesSavePicture { peer, out } => {
            let peer = peer_of(peer).await?;
            to_json(profiles.save_picture(peer, out).await?)
        }
        ControlRequest::ProfilesLastSeen { peer } => {
            let peer = resolve_peer(node, &peer).await?;
            to_json(profiles.last_seen(peer).await?)
        }
        ControlRequest::ProfilesLastSeenPrivacy => {
            to_json(serde_json::json!({ "last_seen": profiles.last_seen_privacy().await? }))
        }
        ControlRequest::ProfilesSetLastSeenPrivacy { last_seen } => {
            profiles.set_last_seen_privacy(last_seen).await?;
            to_json(serde_json::json!({ "last_seen": last_seen }))
        }
        _ => Err(not_here()),
    }
}

/// What an edit, deletion, reaction or group change answers.
fn op_result(outcome: OpOutcome) -> Answer {
    to_json(serde_json::json!({
        "chat": outcome.chat,
        "change": outcome.hash,
        "message": outcome.message.or(outcome.updated),
    }))
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Role;

    use super::*;

    /// Promote is `admin`, demote is `member`, as `Role` says on the wire.
    #[test]
    fn set_role_reads_admin_and_member() {
        let line =
            r#"{"method":"groups_set_role","params":{"chat":"g","peer":"p","role":"admin"}}"#;
        let request: ControlRequest = serde_json::from_str(line).unwrap();
        assert!(matches!(
            request,
            ControlRequest::GroupsSetRole {
                role: Role::Admin,
                ..
            }
        ));
    }

    #[test]
    fn old_method_names_still_parse() {
        let line = r#"{"method":"send","params":{"to":"bob","text":"hi"}}"#;
        let request: ControlRequest = serde_json::from_str(line).unwrap();
        assert!(matches!(request, ControlRequest::ChatsSend { .. }));
        let line = r#"{"method":"status"}"#;
        let request: ControlRequest = serde_json::from_str(line).unwrap();
        assert_eq!(request, ControlRequest::NetworkStatus);
    }
}

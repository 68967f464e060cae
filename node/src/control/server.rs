//! The daemon side of the control API: a Unix socket, mode 0600, in a
//! directory of mode 0700 inside the data directory. Only the user who owns
//! the directory can connect.

use std::{
    fs::DirBuilder,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use futures::{SinkExt, StreamExt};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};

use meshchat_crdt::{ChatId, MessageId, PublicKey, Role};

use super::wire::{
    ControlError, ControlRequest, GroupUpdate, RequestLine, ResponseLine, MAX_LINE_BYTES,
};
use crate::{
    api::{Node, NodeError},
    chats::{ChatOp, OpOutcome},
    PeerId,
};

/// Concurrent control connections.
const MAX_CONNECTIONS: usize = 32;

/// Binds the control socket at `path` (replacing a stale one) with mode 0600.
///
/// The socket is created inside `path`'s parent, which is made (or checked
/// to be) a directory of this user's with mode 0700 first: `bind` creates the
/// socket with the process's umask and it can only be chmod'ed afterwards, so
/// only a private directory closes that window on other users.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    if path.symlink_metadata().is_ok() {
        // The caller holds the data directory lock, so no live daemon owns it.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Makes `dir` a directory only this user can enter: created with mode
/// 0700, or an existing one of this user's set to 0700. Refuses a symlink or
/// a directory another user owns.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = dir.symlink_metadata()?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of yours; remove it and start again",
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Serves control connections until `cancel` fires or a client asks for shutdown.
pub async fn serve(listener: UnixListener, node: Node, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "control accept failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("too many control connections; refusing one");
            continue;
        };
        let node = node.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handle(stream, node, cancel.clone()) => {}
            }
        });
    }
}

async fn handle(stream: UnixStream, node: Node, cancel: CancellationToken) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    while let Some(line) = framed.next().await {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let _ = send(
                    &mut framed,
                    error_line(0, ControlError::new("bad_request", error.to_string())),
                )
                .await;
                return;
            }
        };
        let request: RequestLine = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(error) => {
                let reply = error_line(0, ControlError::new("bad_request", error.to_string()));
                if send(&mut framed, reply).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match request.request {
            ControlRequest::Watch => {
                let ok = ResponseLine {
                    id: request.id,
                    result: Some(serde_json::Value::Null),
                    error: None,
                };
                if send(&mut framed, ok).await.is_err() {
                    return;
                }
                watch(framed, node).await;
                return;
            }
            ControlRequest::Shutdown => {
                let ok = ResponseLine {
                    id: request.id,
                    result: Some(serde_json::Value::Null),
                    error: None,
                };
                let _ = send(&mut framed, ok).await;
                cancel.cancel();
                return;
            }
            other => {
                let reply = match call(&node, other).await {
                    Ok(result) => ResponseLine {
                        id: request.id,
                        result: Some(result),
                        error: None,
                    },
                    Err(e) => error_line(request.id, e),
                };
                if send(&mut framed, reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn error_line(id: u64, error: ControlError) -> ResponseLine {
    ResponseLine {
        id,
        result: None,
        error: Some(error),
    }
}

async fn send(
    framed: &mut Framed<UnixStream, LinesCodec>,
    line: impl serde::Serialize,
) -> Result<(), ()> {
    let text = serde_json::to_string(&line).map_err(|_| ())?;
    framed.send(text).await.map_err(|_| ())
}

async fn watch(mut framed: Framed<UnixStream, LinesCodec>, node: Node) {
    let mut events = node.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if send(&mut framed, serde_json::json!({ "event": event }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                if send(&mut framed, serde_json::json!({ "lagged": missed }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn op_result(outcome: OpOutcome) -> Result<serde_json::Value, ControlError> {
    to_json(serde_json::json!({
        "chat": outcome.chat,
        "change": outcome.hash,
        "message": outcome.message.or(outcome.updated),
    }))
}

/// A peer by PeerId or contact name.
async fn resolve_peer(node: &Node, query: &str) -> Result<PeerId, ControlError> {
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

async fn resolve_key(node: &Node, query: &str) -> Result<PublicKey, ControlError> {
    let peer = resolve_peer(node, query).await?;
    crate::keys::public_key_of(&peer)
        .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")).into())
}

/// A message of `chat` by full id or unique prefix (as `history` shows them).
pub(crate) async fn resolve_message(
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

fn to_json<T: serde::Serialize>(value: T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new("internal", e.to_string()))
}

async fn call(node: &Node, request: ControlRequest) -> Result<serde_json::Value, ControlError> {
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
        | ControlRequest::AutoDownload { .. }) => crate::blobs::control::call(node, request).await,
        ControlRequest::Watch | ControlRequest::Shutdown => {
            Err(NodeError::Invalid("not a simple call".into()).into())
        }
    };
    result
}

/// The message request `query` names: its chat id or a unique prefix of it,
/// or its sender's PeerId.
async fn request_chat(node: &Node, query: &str) -> Result<ChatId, NodeError> {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_socket_is_private_and_bound_inside_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        // A data directory others may enter (allowed: it is not writable).
        let root = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let dir = crate::DataDir::new(&root);
        let socket = dir.socket_path();
        let _listener = bind(&socket).unwrap();
        assert_eq!(mode_of(&socket), 0o600);
        // Bound where nobody else can reach it, whatever the umask made of
        // the socket before the chmod.
        let parent = socket.parent().unwrap();
        assert_ne!(parent, root.as_path());
        assert_eq!(mode_of(parent), 0o700);
        for ancestor in socket.ancestors().skip(1) {
            if ancestor == root {
                break;
            }
            assert_eq!(mode_of(ancestor), 0o700, "{}", ancestor.display());
        }
    }

    #[tokio::test]
    async fn a_loosened_socket_directory_is_tightened_and_a_stale_socket_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("run/control.sock");
        drop(bind(&socket).unwrap());
        fs::set_permissions(socket.parent().unwrap(), fs::Permissions::from_mode(0o777)).unwrap();
        let _listener = bind(&socket).unwrap();
        assert_eq!(mode_of(socket.parent().unwrap()), 0o700);
        assert_eq!(mode_of(&socket), 0o600);
        tokio::net::UnixStream::connect(&socket).await.unwrap();
    }
}

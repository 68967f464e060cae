//! Message requests from strangers: listing, accepting, deleting.

use meshchat_crdt::{ChatId, ChatKind};

use super::Actor;
use crate::{
    clock::now_ms, command::RequestCommand, events::Event, keys::peer_id_of, reply::NodeError,
};

impl Actor {
    pub(crate) async fn on_request_command(&mut self, command: RequestCommand) {
        match command {
            RequestCommand::List { reply } => {
                let _ = reply.send(self.chats.requests().map_err(Into::into));
            }
            RequestCommand::Accept { chat, reply } => {
                let _ = reply.send(self.accept_request(chat).await);
            }
            RequestCommand::Delete { chat, block, reply } => {
                let _ = reply.send(self.delete_request(chat, block).await);
            }
        }
    }

    /// Accepts `peer`'s direct message requests (it became a contact).
    /// Group invitations stay requests: joining is the user's choice.
    pub(crate) async fn accept_direct_requests_from(&mut self, peer: libp2p::PeerId) {
        let Some(key) = crate::keys::public_key_of(&peer) else {
            return;
        };
        let chats: Vec<ChatId> = match self.chats.requests() {
            Ok(requests) => requests
                .into_iter()
                .filter(|r| r.from == key && r.group.is_none())
                .map(|r| r.chat)
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read message requests");
                return;
            }
        };
        for chat in chats {
            if let Err(error) = self.accept_request(chat).await {
                tracing::warn!(%chat, %error, "cannot accept a new contact's request");
            }
        }
    }

    async fn accept_request(&mut self, chat: ChatId) -> Result<(), NodeError> {
        let accepted = self
            .chats
            .accept_request(&chat, now_ms())
            .await?
            .ok_or_else(|| NodeError::NotFound(format!("no message request for {chat}")))?;
        match accepted.kind {
            ChatKind::Group { .. } => {
                self.join_topic(chat);
                self.emit(Event::GroupJoined { chat });
                let peers: Vec<_> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    self.sync_chat(peer, chat);
                }
            }
            _ => {
                for message in accepted.messages {
                    self.emit(Event::Message {
                        chat,
                        message,
                        outgoing: false,
                    });
                }
                if let Some(peer) = peer_id_of(&accepted.from) {
                    if self.swarm.is_connected(&peer) {
                        self.sync_chat(peer, chat);
                    }
                }
            }
        }
        Ok(())
    }

    async fn delete_request(&mut self, chat: ChatId, block: bool) -> Result<(), NodeError> {
        let from = self
            .chats
            .delete_request(&chat)
            .await?
            .ok_or_else(|| NodeError::NotFound(format!("no message request for {chat}")))?;
        if let Some(peer) = peer_id_of(&from).filter(|_| block) {
            self.set_blocked(peer, true).await?;
        }
        Ok(())
    }
}

//! `/meshchat/sync/1`: pushes with acknowledgements, anti-entropy sync and
//! read receipts.

use std::collections::HashMap;

use libp2p::{
    request_response::{self, ResponseChannel},
    PeerId,
};
use meshchat_crdt::{ChangeHash, ChatId, PublicKey, SegmentHeads, SignedChange};

use super::sync_wire::{Request, Response};
use crate::{
    actor::{commit::Held, ingest::Via, Actor, Pending},
    engine::Input,
    events::Event,
    framing::{Inbound, WireError},
    keys::public_key_of,
    store::DeliveryState,
};

impl Actor {
    /// The chats to sync with `peer` (those it shares with this node).
    pub(crate) fn chats_shared_with(&mut self, peer: PeerId) -> Vec<ChatId> {
        let Some(key) = public_key_of(&peer) else {
            return Vec::new();
        };
        match self.chats.shared_with(key) {
            Ok(chats) => chats,
            Err(error) => {
                tracing::error!(%error, "cannot read chats for sync");
                Vec::new()
            }
        }
    }

    /// Sends the read receipts queued for `peer`, if connected.
    pub(crate) fn send_read_receipts(&mut self, peer: PeerId) {
        let Some(key) = public_key_of(&peer) else {
            return;
        };
        if !self.swarm.is_connected(&peer) {
            return;
        }
        let queued = match self.chats.store().receipts_for(&key) {
            Ok(q) if !q.is_empty() => q,
            _ => return,
        };
        let mut by_chat: HashMap<ChatId, Vec<meshchat_crdt::MessageId>> = HashMap::new();
        for (chat, message) in &queued {
            by_chat.entry(*chat).or_default().push(*message);
        }
        for (chat, messages) in by_chat {
            let sent: Vec<(ChatId, meshchat_crdt::MessageId)> =
                messages.iter().map(|m| (chat, *m)).collect();
            let id = self
                .swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Inbound::Request(Request::Read { chat, messages }));
            self.pending.insert(id, Pending::Read { peer: key, sent });
        }
    }

    /// Syncs `chat` with `peer` now, or once one of the peer's sync slots
    /// frees (the engine keeps the slots).
    pub(crate) fn sync_chat(&mut self, peer: PeerId, chat: ChatId) {
        self.drive(Input::SyncWanted { peer, chat });
    }

    /// Sends a sync request; returns whether one went out.
    pub(crate) fn send_sync(&mut self, peer: PeerId, chat: ChatId) -> bool {
        let Some(key) = public_key_of(&peer) else {
            return false;
        };
        let heads = match self.chats.heads(&chat) {
            Ok(Some(heads)) => heads,
            Ok(None) => return false,
            Err(error) => {
                tracing::error!(%error, "cannot read heads for sync");
                return false;
            }
        };
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Inbound::Request(Request::Sync { chat, heads }));
        tracing::debug!(%peer, %chat, "sync sent");
        self.pending.insert(id, Pending::Sync { peer: key, chat });
        true
    }

    /// Sends the next outbox batch to `peer`; returns whether one went out
    /// (the engine allows one at a time).
    pub(crate) fn push_outbox(&mut self, peer: PeerId) -> bool {
        if self.chats.store().fault().is_some() {
            // While storage refuses writes an acknowledgement could not be
            // recorded: the push would repeat forever. Resumed on recovery.
            return false;
        }
        let Some(key) = public_key_of(&peer) else {
            return false;
        };
        match self.chats.outbox_batch(&key) {
            Ok(batch) if batch.is_empty() => false,
            Ok(batch) => {
                let (changes, hashes) = batch.into_iter().unzip();
                self.send_push(peer, key, changes, Some(hashes));
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot read outbox");
                false
            }
        }
    }

    /// Pushes `changes` to `peer`: from its outbox with their `hashes`
    /// (the next push waits for the answer), or `None` for a sync's.
    pub(crate) fn send_push(
        &mut self,
        peer: PeerId,
        key: PublicKey,
        changes: Vec<SignedChange>,
        outbox_hashes: Option<Vec<ChangeHash>>,
    ) {
        self.traffic.pushed += changes.len() as u64;
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Inbound::Request(Request::Push { changes }));
        self.pending.insert(
            id,
            Pending::Push {
                peer: key,
                outbox_hashes,
            },
        );
    }

    /// A push was answered or failed: the next one may go.
    fn push_ended(&mut self, peer: PeerId, outbox: bool, more: bool) {
        if outbox {
            self.drive(Input::PushEnded { peer, more });
        } else if more {
            self.drive(Input::Outgoing(peer));
        }
    }

    pub(crate) async fn on_sync_event(
        &mut self,
        event: request_response::Event<Inbound<Request>, Response>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                if let Some((channel, response)) = self.on_request(peer, request, channel).await {
                    self.answer_sync(channel, response);
                }
            }
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.pending.remove(&request_id) {
                    self.on_response(peer, pending, response).await;
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "request failed");
                match self.pending.remove(&request_id) {
                    Some(Pending::Push { outbox_hashes, .. }) => {
                        self.push_ended(peer, outbox_hashes.is_some(), false)
                    }
                    Some(Pending::Sync { chat, .. }) => self.drive(Input::SyncEnded { peer, chat }),
                    Some(Pending::Key { key_id }) => self.key_answered(peer, key_id, None),
                    _ => {}
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    /// Sends the answer to a direct request.
    pub(crate) fn answer_sync(&mut self, channel: ResponseChannel<Response>, response: Response) {
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("peer went away before our response");
        }
    }

    /// Handles a direct request: the answer to send now, or `None` when it
    /// waits for a flush (a push).
    pub(crate) async fn on_request(
        &mut self,
        peer: PeerId,
        request: Inbound<Request>,
        channel: ResponseChannel<Response>,
    ) -> Option<(ResponseChannel<Response>, Response)> {
        let Some(from) = public_key_of(&peer) else {
            return Some((channel, Response::Error(WireError::NotMember)));
        };
        if self.chats.store().is_blocked(&from) {
            return Some((channel, Response::Error(WireError::NotMember)));
        }
        let request = match request {
            Inbound::Request(r) => r,
            Inbound::Refused(error) => {
                self.refused(peer, format!("frame: {error}"));
                return Some((channel, Response::Error(error)));
            }
        };
        let response = match request {
            // Answered once the flush covering it succeeds.
            Request::Push { changes } => match self.ingest(peer, from, changes, Via::Push) {
                Ok(ingest) => {
                    self.commit.hold(Held::Push { ingest, channel });
                    return None;
                }
                Err(error) => Response::Error(WireError::Storage(error)),
            },
            Request::Read { chat, messages } => match self.chats.read_by(&from, &chat, &messages) {
                Ok(read) => {
                    for message in read {
                        self.emit(Event::Delivery {
                            chat,
                            message,
                            peer,
                            state: DeliveryState::Read,
                        });
                    }
                    Response::ReadNoted
                }
                Err(error) => Response::Error(WireError::Storage(error.to_string())),
            },
            Request::Sync { chat, heads } => match self.chats.answer_sync(from, chat, &heads) {
                Ok(response) => response,
                Err(error) => Response::Error(WireError::Storage(error.to_string())),
            },
            Request::Key { chat, key_id } => self.answer_key(from, chat, key_id),
        };
        Some((channel, response))
    }

    pub(crate) async fn on_response(&mut self, peer: PeerId, pending: Pending, response: Response) {
        match (pending, response) {
            (Pending::Key { key_id }, response) => self.key_answered(peer, key_id, Some(response)),
            (
                Pending::Push {
                    peer: key,
                    outbox_hashes,
                },
                Response::Pushed { stored, rejected },
            ) => {
                self.on_acknowledged(peer, key, &stored);
                if !rejected.is_empty() {
                    tracing::warn!(%peer, count = rejected.len(), first = %rejected[0].reason, "peer refused changes");
                    let refused: Vec<ChangeHash> = rejected.iter().filter_map(|r| r.hash).collect();
                    if let Err(error) = self.chats.refused(&key, &refused) {
                        tracing::error!(%error, "cannot clear refused changes");
                    }
                }
                let acked_all = outbox_hashes
                    .as_ref()
                    .is_none_or(|hashes| hashes.iter().all(|h| stored.contains(h)));
                self.push_ended(
                    peer,
                    outbox_hashes.is_some(),
                    acked_all || !stored.is_empty(),
                );
            }
            (
                Pending::Sync { peer: key, chat },
                Response::Synced {
                    changes,
                    heads,
                    more,
                },
            ) => {
                self.drive(Input::SyncEnded { peer, chat });
                if changes.is_empty() {
                    self.continue_sync(peer, key, chat, &heads, more);
                    return;
                }
                match self.ingest(peer, key, changes, Via::Sync) {
                    // Carried on once the flush covering it succeeds.
                    Ok(ingest) => self.commit.hold(Held::Synced {
                        ingest,
                        key,
                        chat,
                        heads,
                        more,
                    }),
                    Err(error) => tracing::warn!(%peer, %error, "sync: cannot store changes"),
                }
            }
            (Pending::Read { peer: key, sent }, Response::ReadNoted) => {
                if let Err(error) = self.chats.store().receipts_sent(&key, &sent) {
                    tracing::warn!(%error, "cannot clear sent read receipts");
                }
            }
            (Pending::Sync { chat, .. }, response) => {
                self.drive(Input::SyncEnded { peer, chat });
                tracing::warn!(%peer, ?response, "peer answered a sync with an error");
            }
            (Pending::Push { outbox_hashes, .. }, response) => {
                self.push_ended(peer, outbox_hashes.is_some(), false);
                tracing::warn!(%peer, ?response, "peer answered a push with an error");
            }
            (Pending::Read { .. }, response) => {
                tracing::warn!(%peer, ?response, "peer answered with an error");
            }
        }
    }

    /// After a sync answer is applied: pushes back what the peer lacks and
    /// asks for more.
    pub(crate) fn continue_sync(
        &mut self,
        peer: PeerId,
        key: PublicKey,
        chat: ChatId,
        heads: &[SegmentHeads],
        more: bool,
    ) {
        // While a group's topic brings news it carries this node's changes
        // to the peer as well: a push back would be a second copy of each
        // (2.5 pushed changes per reception in `big-group`). The peer's own
        // sync, when it lacks something, asks for it. Not to a peer that
        // just joined the topic: what was published before its
        // subscription arrived never reaches it by gossip.
        let joiner = self
            .topic_news
            .take_joiner(&peer, &chat, std::time::Instant::now());
        if joiner || !self.topic_brings_news(&chat) {
            match self.chats.missing_batches(&key, &chat, heads) {
                Ok(batches) => {
                    for batch in batches {
                        tracing::debug!(%peer, %chat, changes = batch.len(), "sync: push back");
                        self.send_push(peer, key, batch, None);
                    }
                }
                Err(error) => tracing::error!(%error, "sync: cannot read changes"),
            }
        } else {
            tracing::debug!(%peer, %chat, "sync: no push back, the topic brings news");
        }
        if more {
            self.sync_chat(peer, chat);
        }
    }

    pub(crate) fn on_acknowledged(&mut self, peer: PeerId, key: PublicKey, stored: &[ChangeHash]) {
        match self.chats.acknowledged(&key, stored) {
            Ok(delivered) => {
                for (chat, message) in delivered {
                    self.emit(Event::Delivery {
                        chat,
                        message,
                        peer,
                        state: DeliveryState::Delivered,
                    });
                }
            }
            Err(error) => tracing::error!(%error, "cannot record acknowledgement"),
        }
    }
}

//! Sender keys between fellow members: a gossiped frame sealed under a key
//! this node lacks waits while the key is asked of the member that passed
//! the frame on (it opened the frame to validate it, so it holds the key),
//! and this node hands its keys to members that ask (`Request::Key`).
//!
//! A key answer is checked against the id asked for (the id is a hash of
//! the key, its chat, author and epoch), so no answerer can substitute
//! another key. Keys go only to members, in the answerer's view: a member
//! removed here gets no key of an epoch begun after its removal was seen.
//! What waits is bounded (frames and bytes); a frame whose key cannot be
//! had is ignored (not forwarded) and anti-entropy repairs the gap. A
//! member that refuses because this node is no member in its view is
//! synced with at once, so a removed member learns of its removal.

use libp2p::{
    gossipsub::{MessageAcceptance, MessageId},
    PeerId,
};
use meshchat_crdt::{
    e2e::{SealedChange, SenderKey, MAX_WAITING_SEALED, MAX_WAITING_SEALED_BYTES},
    ChatId, KeyId, PublicKey,
};

use super::{gossip::Gossiped, key_waits::WaitingFrame, sender_keys::HeldKey};
use crate::{
    actor::{Actor, Pending},
    direct::sync_wire::{Request, Response},
    framing::{Inbound, WireError},
    keys::public_key_of,
};

impl Actor {
    /// A frame sealed under a key not held: waits for it, asking `via` (a
    /// member, which opened the frame before passing it on) unless already
    /// asked.
    pub(crate) fn await_key(
        &mut self,
        via: PeerId,
        chat: ChatId,
        message_id: MessageId,
        sealed: SealedChange,
    ) -> Gossiped {
        let member = public_key_of(&via).is_some_and(
            |key| matches!(self.chats.replica(&chat), Ok(Some(replica)) if replica.is_member(&key)),
        );
        if !member {
            self.refused(via, format!("sealed gossip in {chat} from a non-member"));
            return Gossiped::Judged(MessageAcceptance::Ignore);
        }
        let size = sealed.ciphertext.len();
        let waits = &mut self.key_waits;
        if waits.frames >= MAX_WAITING_SEALED || waits.bytes + size > MAX_WAITING_SEALED_BYTES {
            tracing::debug!(%chat, "too much gossip waits for keys: ignored");
            return Gossiped::Judged(MessageAcceptance::Ignore);
        }
        let key_id = sealed.key_id;
        waits.frames += 1;
        waits.bytes += size;
        let frame = WaitingFrame {
            message_id,
            via,
            sealed,
        };
        match waits.waiting.get_mut(&key_id) {
            Some((_, frames)) => frames.push(frame),
            None => {
                waits.waiting.insert(key_id, (chat, vec![frame]));
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&via, Inbound::Request(Request::Key { chat, key_id }));
                self.pending.insert(id, Pending::Key { key_id });
            }
        }
        Gossiped::Waiting
    }

    /// A member asks for one of `chat`'s sender keys. A member who joined
    /// without the older history (at a later segment) gets no key of an
    /// epoch that began before it: it could open only what it may not read.
    pub(crate) fn answer_key(&mut self, from: PublicKey, chat: ChatId, key_id: KeyId) -> Response {
        let joined = match self.chats.replica(&chat) {
            Ok(Some(replica)) if replica.is_member(&from) => {
                replica.member(&from).map_or(0, |m| m.joined_segment)
            }
            _ => return Response::Error(WireError::NotMember),
        };
        match self.sender_keys.held(&chat, &key_id) {
            Ok(Some(held)) if held.segment >= joined => Response::Key {
                author: held.key.author(),
                epoch: held.key.epoch(),
                key: *held.key.key_bytes(),
                segment: held.segment,
            },
            Ok(Some(_)) => {
                tracing::debug!(%chat, requester = %from, "no key older than the requester's joining");
                Response::Error(WireError::UnknownKey)
            }
            Ok(None) => Response::Error(WireError::UnknownKey),
            Err(error) => Response::Error(WireError::Storage(error.to_string())),
        }
    }

    /// The answer to a key request (`None`: it failed): the frames waiting
    /// for it are opened and judged, or ignored.
    pub(crate) fn key_answered(&mut self, peer: PeerId, key_id: KeyId, answer: Option<Response>) {
        let Some((chat, frames)) = self.key_waits.take(&key_id) else {
            return;
        };
        let key = match answer {
            Some(Response::Key {
                author,
                epoch,
                key,
                segment,
            }) => {
                let key = SenderKey::from_parts(chat, author, epoch, key);
                if key.key_id() == key_id {
                    Some(HeldKey { key, segment })
                } else {
                    self.refused(peer, format!("a key of {chat} under another key's id"));
                    None
                }
            }
            Some(Response::Error(WireError::NotMember)) => {
                // Not a member in its view: this node may have been
                // removed. A sync shows it (former members get the
                // metadata), as gossip, sealed now, no longer does.
                tracing::debug!(%peer, %chat, "a member refused its key: syncing with it");
                self.sync_chat(peer, chat);
                None
            }
            Some(Response::Error(error)) => {
                tracing::debug!(%peer, %chat, %error, "no sender key from this member");
                None
            }
            Some(other) => {
                self.refused(peer, format!("answered a key request with {other:?}"));
                None
            }
            None => None,
        };
        let key = key.filter(|held| match self.sender_keys.keep(held.clone()) {
            Ok(kept) => kept,
            Err(error) => {
                tracing::error!(%error, "cannot keep a sender key");
                false
            }
        });
        for frame in frames {
            let verdict = match &key {
                Some(held) => self.open_gossip(frame.via, chat, &held.key, &frame.sealed),
                None => Gossiped::Judged(MessageAcceptance::Ignore),
            };
            self.gossip_judged(verdict, frame.message_id, frame.via);
        }
    }
}

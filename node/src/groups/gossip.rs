//! Groups on gossipsub: one topic per group, signed changes published
//! sealed under this node's sender key for the group, opened and validated
//! before gossipsub may forward them, and anti-entropy with every member
//! seen on the topic. A frame under a key this node lacks waits while the
//! key is asked for (`key_requests.rs`).

use libp2p::{
    gossipsub::{self, MessageAcceptance, MessageId, TopicHash},
    PeerId,
};
use meshchat_crdt::{
    e2e::{SealedChange, SenderKey},
    ChangeHash, ChatId, PublicKey, SignedChange,
};

use super::{
    held_verdicts::Frame,
    wire::{group_topic, GossipMessage, GossipPayload},
};
use crate::{
    actor::{
        commit::Held,
        ingest::{Ingest, Receipt, Via},
        Actor,
    },
    events::Event,
    framing::{decode_frame, encode_frame},
    keys::public_key_of,
};

/// What to tell gossipsub about a frame whose changes were written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Now(MessageAcceptance),
    /// Accept once these changes (waiting for their dependencies) are
    /// stored; ignore if they are not soon.
    WhenStored(Vec<ChangeHash>),
}

/// What became of a gossiped frame.
pub(crate) enum Gossiped {
    /// Judged at once (malformed, off-topic, or storage failed).
    Judged(MessageAcceptance),
    /// Written: its verdict waits for the flush covering it.
    Written(Box<Ingest>),
    /// Sealed under a key not held yet: it waits for the key.
    Waiting,
}

impl Actor {
    /// Subscribes to the topic of every group this node is in.
    pub(crate) fn join_my_topics(&mut self) {
        match self.chats.my_groups() {
            Ok(groups) => {
                for chat in groups {
                    self.join_topic(chat);
                }
            }
            Err(error) => tracing::error!(%error, "cannot list groups"),
        }
    }

    pub(crate) fn join_topic(&mut self, chat: ChatId) {
        let topic = group_topic(&chat);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(error) =
            gossipsub.set_topic_params(topic.clone(), crate::scoring::group_topic_params())
        {
            tracing::error!(%chat, %error, "cannot score the group topic");
        }
        if let Err(error) = gossipsub.subscribe(&topic) {
            tracing::error!(%chat, %error, "cannot subscribe to group topic");
            return;
        }
        self.topics.insert(topic.hash(), chat);
    }

    pub(crate) fn is_subscribed(&self, chat: &ChatId) -> bool {
        self.topics.contains_key(&group_topic(chat).hash())
    }

    /// Whether `chat` is a group whose topic brought this node news lately
    /// (`topic_news.rs`): while it does, it carries the group's changes to
    /// the neighbours, and neither a republish nor a push back is needed.
    pub(crate) fn topic_brings_news(&self, chat: &ChatId) -> bool {
        self.is_subscribed(chat) && !self.topic_news.is_quiet(chat, std::time::Instant::now())
    }

    pub(crate) fn leave_topic(&mut self, chat: ChatId) {
        let topic = group_topic(&chat);
        self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
        self.topics.remove(&topic.hash());
        self.topic_news.forget(&chat);
    }

    /// After a group's metadata changed: leave its topic if no longer a member.
    pub(crate) fn follow_membership(&mut self, chat: ChatId) {
        let me = self.chats.me();
        let member = match self.chats.replica(&chat) {
            Ok(Some(replica)) => replica.is_member(&me),
            _ => return,
        };
        let subscribed = self.topics.contains_key(&group_topic(&chat).hash());
        if subscribed && !member {
            self.leave_topic(chat);
            self.emit(Event::GroupLeft { chat });
        } else if !subscribed && member {
            self.join_topic(chat);
            self.emit(Event::GroupJoined { chat });
        }
    }

    /// Whether every other member of `chat` has relays this node knows of:
    /// an author's outbox then reaches each of them (pushed if connected,
    /// deposited if not), so passing a change learned by sync on to the
    /// topic would only add copies. Anti-entropy repairs whatever an author
    /// did not cover.
    pub(crate) fn every_member_has_relays(&mut self, chat: ChatId) -> bool {
        let me = self.chats.me();
        let members: Vec<PublicKey> = match self.chats.replica(&chat) {
            Ok(Some(replica)) => replica.members().into_keys().collect(),
            _ => return false,
        };
        let store = self.chats.store();
        members
            .into_iter()
            .filter(|member| *member != me)
            .all(|member| {
                store
                    .contact(&member)
                    .ok()
                    .flatten()
                    .is_some_and(|contact| !contact.relays.is_empty())
            })
    }

    /// Whether every other member of `chat` gets a change through the
    /// author's outbox (`pushed`: it has an entry there): pushed at once if
    /// connected, deposited at its relays if not. Publishing it on the topic
    /// as well would only send the connected ones a second copy and their
    /// mesh peers more, and reaches no offline one (one live path per
    /// recipient; anti-entropy repairs the rest).
    pub(crate) fn outbox_reaches_every_member(
        &mut self,
        chat: ChatId,
        pushed: &[PublicKey],
    ) -> bool {
        let me = self.chats.me();
        match self.chats.replica(&chat) {
            Ok(Some(replica)) => replica
                .members()
                .into_keys()
                .filter(|member| *member != me)
                .all(|member| pushed.contains(&member)),
            _ => false,
        }
    }

    /// The sender key this node seals `chat`'s gossip under now (a new one
    /// after a member left or at a new segment, see `sender_keys.rs`).
    fn sealing_key(&mut self, chat: ChatId) -> Option<SenderKey> {
        let me = self.chats.me();
        let (members, segment) = match self.chats.replica(&chat) {
            Ok(Some(replica)) => (
                replica.members().into_keys().collect(),
                replica
                    .segment_indices()
                    .into_iter()
                    .filter(|s| *s != meshchat_crdt::META_SEGMENT)
                    .max()
                    .unwrap_or(0),
            ),
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(%chat, %error, "cannot read the group to seal for it");
                return None;
            }
        };
        match self.sender_keys.sealing_key(chat, me, members, segment) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::error!(%chat, %error, "cannot keep a sender key");
                None
            }
        }
    }

    /// Publishes changes on the group's topic, sealed. Peers not reached (no
    /// mesh yet, offline) catch up by anti-entropy.
    pub(crate) fn publish(&mut self, chat: ChatId, changes: Vec<SignedChange>) {
        let Some(key) = self.sealing_key(chat) else {
            return;
        };
        let count = changes.len() as u64;
        let payload = encode_frame(&GossipPayload { changes });
        let sealed = match SealedChange::seal(&key, &payload) {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::error!(%chat, %error, "cannot seal gossip");
                return;
            }
        };
        self.traffic.gossip_published += count;
        let frame = encode_frame(&GossipMessage::Sealed(sealed));
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(group_topic(&chat), frame)
        {
            Ok(_) => {}
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::debug!(%chat, "no group members reachable by gossip yet");
            }
            Err(error) => tracing::warn!(%chat, %error, "cannot publish"),
        }
    }

    pub(crate) async fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = self.on_gossip_message(
                    propagation_source,
                    &message_id,
                    &message.topic,
                    &message.data,
                );
                self.gossip_judged(verdict, message_id, propagation_source);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                // A member (re)joined the topic: repair whatever gossip missed
                // (pushed back however busy the topic, `topic_news.rs`).
                if let Some(chat) = self.topics.get(&topic).copied() {
                    self.topic_news
                        .joined(peer_id, chat, std::time::Instant::now());
                    self.sync_chat(peer_id, chat);
                }
            }
            _ => {}
        }
    }

    /// Acts on what became of a gossiped frame.
    pub(crate) fn gossip_judged(
        &mut self,
        verdict: Gossiped,
        message_id: MessageId,
        propagation_source: PeerId,
    ) {
        match verdict {
            Gossiped::Judged(acceptance) => {
                self.report_gossip(&message_id, &propagation_source, acceptance)
            }
            // Judged once the flush covering it succeeds.
            Gossiped::Written(ingest) => self.commit.hold(Held::Gossip {
                ingest,
                message_id,
                propagation_source,
            }),
            // Judged once its key arrives or cannot be had (`key_requests.rs`).
            Gossiped::Waiting => {}
        }
    }

    /// Tells gossipsub whether to forward a message (and how to score its
    /// sender).
    pub(crate) fn report_gossip(
        &mut self,
        message_id: &MessageId,
        propagation_source: &PeerId,
        acceptance: MessageAcceptance,
    ) {
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, propagation_source, acceptance);
    }

    /// Judges a gossiped frame once the flush that was to cover its
    /// changes finished (`receipt` is `None` if it failed): now, or once
    /// the changes waiting for their dependencies are stored.
    pub(crate) fn judge_gossip(&mut self, receipt: Option<Receipt>, frame: Frame) {
        let acceptance = match Self::gossip_verdict(receipt) {
            Verdict::Now(acceptance) => acceptance,
            Verdict::WhenStored(waiting) => {
                let now = std::time::Instant::now();
                match self.held_verdicts.hold(frame, waiting, now) {
                    Ok(()) => return,
                    Err(frame) => {
                        return self.report_gossip(
                            &frame.message_id,
                            &frame.propagation_source,
                            MessageAcceptance::Ignore,
                        )
                    }
                }
            }
        };
        self.report_gossip(&frame.message_id, &frame.propagation_source, acceptance);
    }

    /// Changes are stored now: frames held for them are forwarded.
    pub(crate) fn release_held_verdicts(&mut self, stored: &[ChangeHash]) {
        for frame in self.held_verdicts.stored(stored) {
            self.report_gossip(
                &frame.message_id,
                &frame.propagation_source,
                MessageAcceptance::Accept,
            );
        }
    }

    /// Frames whose changes' dependencies did not come in time stop here.
    pub(crate) fn expire_held_verdicts(&mut self) {
        for frame in self.held_verdicts.expired(std::time::Instant::now()) {
            self.report_gossip(
                &frame.message_id,
                &frame.propagation_source,
                MessageAcceptance::Ignore,
            );
        }
    }

    /// The verdict on gossiped changes once the flush that was to cover
    /// them finished (`receipt` is `None` if it failed).
    pub(crate) fn gossip_verdict(receipt: Option<Receipt>) -> Verdict {
        let acceptance = match receipt {
            Some(receipt) if !receipt.rejected.is_empty() => MessageAcceptance::Reject,
            // Not kept (a budget full, or dependencies missing past what is
            // kept waiting): this node may never hold them, so it does not
            // vouch for them. Anti-entropy carries them once they are valid.
            Some(receipt) if receipt.not_kept > 0 => MessageAcceptance::Ignore,
            // Waiting for dependencies (the sync its arrival started asks
            // for them): vouched for once they are stored, or not at all
            // (`held_verdicts.rs`).
            Some(receipt) if !receipt.waiting.is_empty() => {
                return Verdict::WhenStored(receipt.waiting)
            }
            // Nothing new, and no first gossip copy of a change that came by
            // push or sync (those are forwarded: the neighbours may have no
            // other way to it, `unechoed.rs`): this node got these changes
            // first in another frame, which it forwarded, or put them on the
            // topic itself. Forwarding would only add copies. Without this,
            // a frame slower than gossipsub's seen-cache (60 s) to cross a
            // saturated group came back as new and was flooded again, and
            // each member's republish of a change it had learned by sync
            // crossed the whole group: 40 copies per reception at 1,024
            // members (docs/SIMULATIONS.md).
            Some(receipt) if receipt.new_group_changes == 0 && receipt.first_gossip_copies == 0 => {
                MessageAcceptance::Ignore
            }
            Some(_) => MessageAcceptance::Accept,
            // Not stored here (storage failed): not forwarded either.
            None => MessageAcceptance::Ignore,
        };
        Verdict::Now(acceptance)
    }

    /// Opens, validates and writes one gossiped frame. Forged, malformed or
    /// off-topic frames get their verdict now (gossipsub penalises a
    /// rejected sender and does not forward); changes written come back as
    /// an [`Ingest`] whose verdict waits for the flush covering it; a frame
    /// under a key not held waits for it.
    fn on_gossip_message(
        &mut self,
        via: PeerId,
        message_id: &MessageId,
        topic: &TopicHash,
        data: &[u8],
    ) -> Gossiped {
        let Some(chat) = self.topics.get(topic).copied() else {
            return Gossiped::Judged(MessageAcceptance::Ignore);
        };
        let sealed = match decode_frame::<GossipMessage>(data) {
            Ok(GossipMessage::Sealed(sealed)) => sealed,
            Err(error) => {
                self.refused(via, format!("malformed gossip in {chat}: {error}"));
                return Gossiped::Judged(MessageAcceptance::Reject);
            }
        };
        match self.sender_keys.get(&chat, &sealed.key_id) {
            Ok(Some(key)) => self.open_gossip(via, chat, &key, &sealed),
            Ok(None) => self.await_key(via, chat, message_id.clone(), sealed),
            Err(error) => {
                tracing::error!(%error, "cannot read sender keys");
                Gossiped::Judged(MessageAcceptance::Ignore)
            }
        }
    }

    /// Opens a sealed frame with its key, then judges the changes inside.
    pub(crate) fn open_gossip(
        &mut self,
        via: PeerId,
        chat: ChatId,
        key: &SenderKey,
        sealed: &SealedChange,
    ) -> Gossiped {
        let payload = match sealed.open(key) {
            Ok(plaintext) => decode_frame::<GossipPayload>(&plaintext),
            Err(error) => {
                self.refused(via, format!("gossip in {chat} does not open: {error}"));
                return Gossiped::Judged(MessageAcceptance::Reject);
            }
        };
        let changes = match payload {
            Ok(GossipPayload { changes }) => changes,
            Err(error) => {
                self.refused(via, format!("malformed gossip in {chat}: {error}"));
                return Gossiped::Judged(MessageAcceptance::Reject);
            }
        };
        if changes.is_empty() || changes.iter().any(|c| c.chat != chat) {
            self.refused(via, "gossip for another chat on this topic".into());
            return Gossiped::Judged(MessageAcceptance::Reject);
        }
        let Some(from) = public_key_of(&via) else {
            return Gossiped::Judged(MessageAcceptance::Reject);
        };
        match self.ingest(via, from, changes, Via::Gossip) {
            Ok(ingest) => Gossiped::Written(Box::new(ingest)),
            Err(_) => Gossiped::Judged(MessageAcceptance::Ignore),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::ingest::Receipt;

    fn receipt(new_group_changes: usize, waiting: usize, not_kept: usize) -> Receipt {
        Receipt {
            stored: Vec::new(),
            rejected: Vec::new(),
            waiting: (0..waiting as u8)
                .map(|n| ChangeHash::from_bytes([n; 32]))
                .collect(),
            not_kept,
            new_group_changes,
            first_gossip_copies: 0,
        }
    }

    #[test]
    fn only_a_frame_that_brought_something_new_is_forwarded() {
        let verdict = Actor::gossip_verdict;
        let now = Verdict::Now;
        assert_eq!(
            verdict(Some(receipt(1, 0, 0))),
            now(MessageAcceptance::Accept)
        );
        // Duplicates only: acknowledged, not passed on.
        assert_eq!(
            verdict(Some(receipt(0, 0, 0))),
            now(MessageAcceptance::Ignore)
        );
        // Unless one is the first gossip copy of a change pushed or synced.
        let echo = Receipt {
            first_gossip_copies: 1,
            ..receipt(0, 0, 0)
        };
        assert_eq!(verdict(Some(echo)), now(MessageAcceptance::Accept));
        // Waiting for dependencies: vouched for once they are stored.
        assert_eq!(
            verdict(Some(receipt(1, 1, 0))),
            Verdict::WhenStored(vec![ChangeHash::from_bytes([0; 32])])
        );
        // Not kept: not vouched for.
        assert_eq!(
            verdict(Some(receipt(1, 1, 1))),
            now(MessageAcceptance::Ignore)
        );
        // Not stored (the flush failed).
        assert_eq!(verdict(None), now(MessageAcceptance::Ignore));
    }
}

//! Groups on gossipsub: one topic per group, signed changes published as
//! frames, validated before gossipsub may forward them, and anti-entropy with
//! every member seen on the topic.

use super::{direct::Via, *};
use crate::protocol::{decode_frame, encode_frame, group_topic, GossipMessage};
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};

impl Actor {
    /// Subscribes to the topic of every group this node is in.
    pub(super) fn join_my_topics(&mut self) {
        match self.chats.my_groups() {
            Ok(groups) => {
                for chat in groups {
                    self.join_topic(chat);
                }
            }
            Err(error) => tracing::error!(%error, "cannot list groups"),
        }
    }

    pub(super) fn join_topic(&mut self, chat: ChatId) {
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

    pub(super) fn is_subscribed(&self, chat: &ChatId) -> bool {
        self.topics.contains_key(&group_topic(chat).hash())
    }

    pub(super) fn leave_topic(&mut self, chat: ChatId) {
        let topic = group_topic(&chat);
        self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
        self.topics.remove(&topic.hash());
    }

    /// After a group's metadata changed: leave its topic if no longer a member.
    pub(super) fn follow_membership(&mut self, chat: ChatId) {
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

    /// Publishes changes on the group's topic. Peers not reached (no mesh yet,
    /// offline) catch up by anti-entropy.
    pub(super) fn publish(&mut self, chat: ChatId, changes: Vec<SignedChange>) {
        let frame = encode_frame(&GossipMessage::Changes(changes));
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

    pub(super) async fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = self
                    .on_gossip_message(
                        propagation_source,
                        &message.topic,
                        message.source,
                        &message.data,
                    )
                    .await;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                // A member (re)joined the topic: repair whatever gossip missed.
                if let Some(chat) = self.topics.get(&topic).copied() {
                    self.sync_chat(peer_id, chat);
                }
            }
            _ => {}
        }
    }

    /// Validates and stores one gossiped frame. Forged, malformed or
    /// non-member content is rejected (gossipsub penalises the sender and
    /// does not forward it); a local storage failure is ignored, not forwarded.
    async fn on_gossip_message(
        &mut self,
        via: PeerId,
        topic: &TopicHash,
        source: Option<PeerId>,
        data: &[u8],
    ) -> MessageAcceptance {
        let Some(chat) = self.topics.get(topic).copied() else {
            return MessageAcceptance::Ignore;
        };
        let changes = match decode_frame::<GossipMessage>(data) {
            Ok(GossipMessage::Changes(changes)) => changes,
            Err(error) => {
                self.refused(via, format!("malformed gossip in {chat}: {error}"));
                return MessageAcceptance::Reject;
            }
        };
        if changes.is_empty() || changes.iter().any(|c| c.chat != chat) {
            self.refused(via, "gossip for another chat on this topic".into());
            return MessageAcceptance::Reject;
        }
        let sender = source.unwrap_or(via);
        let Some(from) = public_key_of(&sender) else {
            return MessageAcceptance::Reject;
        };
        match self.receive(sender, from, changes, Via::Gossip).await {
            Ok(receipt) if !receipt.rejected.is_empty() => MessageAcceptance::Reject,
            // Not judged yet (dependencies missing): keep it, but do not vouch
            // for it to others. Anti-entropy carries it once it is valid.
            Ok(receipt) if receipt.deferred > 0 => MessageAcceptance::Ignore,
            Ok(_) => MessageAcceptance::Accept,
            Err(_) => MessageAcceptance::Ignore,
        }
    }
}

//! Receiving changes, in two steps around a group commit: [`Actor::ingest`]
//! judges, applies and writes them (unflushed); once a flush covering them
//! succeeds, [`Actor::ingested`] tells the user (events), follows group
//! membership and passes group changes on, and the caller acknowledges.
//! Nothing is acknowledged, announced or republished before it is durable.

use libp2p::PeerId;
use meshchat_crdt::{ChangeHash, PublicKey, SignedChange};

use super::{now_ms, Actor};
use crate::{
    chats::{FreshChange, Unflushed},
    events::Event,
};

/// How changes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Pushed by their author or a member (`/meshchat/sync/1` push).
    Push,
    /// Fetched in an anti-entropy sync.
    Sync,
    /// A group's gossipsub topic.
    Gossip,
    /// Mail held by a relay.
    Mailbox,
}

/// What receiving a batch did, for the sender.
pub(crate) struct Receipt {
    /// Durably stored: acknowledge these.
    pub(crate) stored: Vec<ChangeHash>,
    /// Refused.
    pub(crate) rejected: Vec<crate::direct::sync_wire::RejectedChange>,
    /// Received changes waiting in memory for their dependencies (stored
    /// once those arrive).
    pub(crate) waiting: Vec<ChangeHash>,
    /// Changes not kept for now (dependencies missing, a budget full): the
    /// sender tries again later.
    pub(crate) not_kept: usize,
    /// Group changes this node did not hold before (the rest of `stored`
    /// were duplicates, or direct-chat changes).
    pub(crate) new_group_changes: usize,
    /// Of the duplicates, gossip's first copies of changes that came by
    /// push or sync (`groups/unechoed.rs`).
    pub(crate) first_gossip_copies: usize,
}

/// Changes received and written, waiting for the flush that makes them
/// durable.
pub(crate) struct Ingest {
    /// The peer that sent them (the author for gossip and mail).
    pub(crate) peer: PeerId,
    pub(crate) via: Via,
    pub(crate) unflushed: Unflushed,
}

impl Actor {
    /// Judges, applies and writes changes from `peer` (unflushed). Refusals
    /// are reported now; everything else waits for [`Actor::ingested`].
    pub(crate) fn ingest(
        &mut self,
        peer: PeerId,
        from: PublicKey,
        changes: Vec<SignedChange>,
        via: Via,
    ) -> Result<Ingest, String> {
        let count = changes.len() as u64;
        let traffic = &mut self.traffic;
        match via {
            Via::Push => traffic.received_by_push += count,
            Via::Sync => traffic.received_by_sync += count,
            Via::Gossip => traffic.received_by_gossip += count,
            Via::Mailbox => traffic.received_from_relays += count,
        }
        let unflushed = self.chats.receive(from, changes, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "cannot store received changes");
            e.to_string()
        })?;
        Ok(Ingest {
            peer,
            via,
            unflushed,
        })
    }

    /// A flush covering `ingest` succeeded: emits its events, follows group
    /// membership and passes new group changes on. Returns what to
    /// acknowledge and what was refused.
    pub(crate) fn ingested(&mut self, ingest: Ingest) -> Receipt {
        let Ingest {
            peer,
            via,
            unflushed,
        } = ingest;
        let me = self.chats.me();
        let received = self.chats.received(unflushed);
        tracing::debug!(
            %peer,
            ?via,
            stored = received.stored.len(),
            waiting = received.deferred.len(),
            rejected = received.rejected.len(),
            "ingested"
        );
        for rejected in received.rejected.iter().chain(&received.not_kept) {
            let hash = rejected
                .hash
                .map_or_else(|| "?".to_string(), |h| h.to_string());
            self.refused(peer, format!("change {hash}: {}", rejected.reason));
        }
        for (chat, from) in &received.requests {
            if let Some(from) = crate::keys::peer_id_of(from) {
                self.emit(Event::MessageRequest { chat: *chat, from });
            }
        }
        for (chat, message) in received.new_messages {
            if self.chats.store().is_blocked(&message.author) {
                continue;
            }
            let outgoing = message.author == me;
            self.emit(Event::Message {
                chat,
                message,
                outgoing,
            });
        }
        for (chat, message) in received.updated_messages {
            self.emit(Event::MessageUpdated { chat, message });
        }
        // Changes waiting for dependencies, or not kept while they are
        // missing: ask the peer that sent them, which holds what they were
        // built on. A burst from several writers otherwise left changes
        // waiting (or, past the per-author bound, dropped from gossip) until
        // the next anti-entropy round, minutes away. Not after a sync (it
        // carries on by itself), from a relay (which holds no chat), or
        // from a peer gone meanwhile (the request would dial it again).
        if matches!(via, Via::Push | Via::Gossip) && self.swarm.is_connected(&peer) {
            for chat in &received.missing_dependencies {
                self.sync_chat(peer, *chat);
            }
        }
        for chat in &received.adopted {
            let chat = *chat;
            self.join_topic(chat);
            self.emit(Event::GroupJoined { chat });
            // Fetch the history from whoever invited us, and anyone else connected.
            let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
            for p in peers {
                self.sync_chat(p, chat);
            }
        }
        for chat in received.meta_changed {
            self.emit(Event::GroupChanged { chat });
            self.follow_membership(chat);
        }
        // Changes learned by sync (after a partition) or from a relay are
        // passed on to the group's topic, so members that sync with nobody
        // right now still get them; gossip itself forwards what it carries.
        // A change pushed by its own author is not: the author publishes it
        // on the topic itself, or reaches every member directly and
        // publishes nothing (a republish here would send each member a
        // second copy through the mesh). A push back after a sync carries
        // others' changes and is passed on like a sync's. Not an invitation
        // either: the members already hold the group's metadata and every
        // invitee gets it pushed by its inviter, so republishing it would
        // only send the member list around the whole group once per invitee
        // (a 1,024-member group: ~200 kB, 1,023 times). Nor when every
        // member has relays: their authors' outboxes reach them all. Nor
        // while the topic brings this node news: it carries the group's
        // changes to the neighbours as well (`groups/topic_news.rs`),
        // unless a sync over a new link brought them (a healed split: the
        // topic on this side never carried them).
        let new_group_changes = received
            .fresh_group_changes
            .iter()
            .map(|(_, changes)| changes.len())
            .sum();
        let sender = crate::keys::public_key_of(&peer);
        let passed_on = |author: &PublicKey| match via {
            Via::Gossip => false,
            Via::Sync | Via::Mailbox => true,
            Via::Push => Some(*author) != sender,
        };
        let now = std::time::Instant::now();
        let first_gossip_copies = match via {
            Via::Gossip => self.unechoed.echoed(&received.stored, now),
            _ => 0,
        };
        for (chat, changes) in received.fresh_group_changes {
            if via == Via::Gossip {
                self.topic_news.heard(chat, now);
                continue;
            }
            if !self.is_subscribed(&chat) {
                continue;
            }
            let over_a_new_link = via == Via::Sync && self.topic_news.is_new_link(&peer, now);
            let republish = !received.adopted.contains(&chat)
                && (self.topic_news.is_quiet(&chat, now) || over_a_new_link)
                && !self.every_member_has_relays(chat);
            let (republished, not_republished): (Vec<FreshChange>, Vec<FreshChange>) = changes
                .into_iter()
                .partition(|change| republish && passed_on(&change.author));
            // What is not put on the topic here waits for its gossip copy,
            // which is forwarded (`groups/unechoed.rs`), unless a frame held
            // for it is forwarded once it is stored.
            if matches!(via, Via::Push | Via::Sync) {
                let mut unechoed: Vec<ChangeHash> =
                    not_republished.iter().map(|change| change.hash).collect();
                self.held_verdicts.retain_unawaited(&mut unechoed);
                self.unechoed.got_elsewhere(unechoed, now);
            }
            let republished: Vec<SignedChange> = republished
                .into_iter()
                .map(|change| change.signed)
                .collect();
            for batch in crate::chats::split_for_gossip(republished) {
                self.publish(chat, batch);
            }
        }
        self.release_held_verdicts(&received.stored);
        Receipt {
            stored: received.stored,
            rejected: received.rejected,
            waiting: received.deferred,
            not_kept: received.not_kept.len(),
            new_group_changes,
            first_gossip_copies,
        }
    }

    /// The flush that was to cover `ingest` failed: its replicas are dropped
    /// (reloaded from disk when next needed) and nothing is acknowledged.
    pub(crate) fn ingest_failed(&mut self, ingest: &Ingest) {
        self.chats.abandon(&ingest.unflushed);
    }
}

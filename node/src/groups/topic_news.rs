//! When each group's topic last brought this node something new. While it
//! does, the topic is carrying the group's changes to this node's
//! neighbours too, and a change this node learns by sync need not be
//! published there again (a republish is a new frame, sealed under this
//! node's key: each neighbour asks for the key, opens the frame and finds
//! nothing new). Into a quiet topic, such as one side of a healed split
//! where nothing has been said since, the republish still goes; and so does
//! what a sync with a *new link* brings (a peer connected in the last 30 s:
//! the link that healed a split), which the topic on this side never
//! carried, however busy it is. Likewise a sync with a peer that just
//! joined the topic ends with a push back of what it lacks: what was
//! published before its subscription arrived never reached it by gossip.
//! The periodic anti-entropy resync skips a group while its topic brings
//! news: gossip is carrying it, and a change a member missed shows as the
//! missing dependency of a later message (built on heads held for 30 s).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use meshchat_crdt::ChatId;

/// How long after its last news a topic counts as quiet.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(30);

/// One entry per subscribed group (the node's own groups), dropped when it
/// leaves the topic.
#[derive(Debug, Default)]
pub(crate) struct TopicNews {
    last: HashMap<ChatId, Instant>,
    /// When each connected peer's connection came up (one entry per
    /// connected peer, dropped when it disconnects).
    links: HashMap<PeerId, Instant>,
    /// When a connected peer joined one of this node's topics, until a
    /// sync with it ends (at most one entry per connected peer and group).
    joined: HashMap<(PeerId, ChatId), Instant>,
}

impl TopicNews {
    /// A gossiped frame brought `chat` changes this node lacked.
    pub(crate) fn heard(&mut self, chat: ChatId, now: Instant) {
        self.last.insert(chat, now);
    }

    /// Whether `chat`'s topic brought nothing new for [`QUIET_AFTER`].
    pub(crate) fn is_quiet(&self, chat: &ChatId, now: Instant) -> bool {
        self.last
            .get(chat)
            .is_none_or(|at| now.saturating_duration_since(*at) >= QUIET_AFTER)
    }

    pub(crate) fn forget(&mut self, chat: &ChatId) {
        self.last.remove(chat);
    }

    /// A peer connected.
    pub(crate) fn linked(&mut self, peer: PeerId, now: Instant) {
        self.links.insert(peer, now);
    }

    /// A peer disconnected.
    pub(crate) fn unlinked(&mut self, peer: &PeerId) {
        self.links.remove(peer);
        self.joined.retain(|(joiner, _), _| joiner != peer);
    }

    /// A connected `peer` joined `chat`'s topic.
    pub(crate) fn joined(&mut self, peer: PeerId, chat: ChatId, now: Instant) {
        self.joined.insert((peer, chat), now);
    }

    /// Whether `peer` joined `chat`'s topic less than [`QUIET_AFTER`] ago
    /// (and forgets it: asked once, by the sync that ends first). What was
    /// published just before its subscription arrived never reaches it by
    /// gossip, and its own sync on joining may have come before that.
    pub(crate) fn take_joiner(&mut self, peer: &PeerId, chat: &ChatId, now: Instant) -> bool {
        self.joined
            .remove(&(*peer, *chat))
            .is_some_and(|at| now.saturating_duration_since(at) < QUIET_AFTER)
    }

    /// Whether `peer` connected less than [`QUIET_AFTER`] ago.
    pub(crate) fn is_new_link(&self, peer: &PeerId, now: Instant) -> bool {
        self.links
            .get(peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < QUIET_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_quiet_until_news_and_again_a_while_after() {
        let chat_of = || {
            let key = || meshchat_crdt::Identity::generate().public();
            ChatId::direct(&key(), &key())
        };
        let (chat, other) = (chat_of(), chat_of());
        let start = Instant::now();
        let mut news = TopicNews::default();
        assert!(news.is_quiet(&chat, start));
        news.heard(chat, start);
        assert!(!news.is_quiet(&chat, start + QUIET_AFTER / 2));
        assert!(news.is_quiet(&other, start), "news of one group only");
        assert!(news.is_quiet(&chat, start + QUIET_AFTER));
        news.heard(chat, start);
        news.forget(&chat);
        assert!(news.is_quiet(&chat, start));
    }

    #[test]
    fn a_link_is_new_for_a_while_after_it_comes_up() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        let mut news = TopicNews::default();
        assert!(!news.is_new_link(&peer, start));
        news.linked(peer, start);
        assert!(news.is_new_link(&peer, start + QUIET_AFTER / 2));
        assert!(!news.is_new_link(&other, start));
        assert!(!news.is_new_link(&peer, start + QUIET_AFTER));
        news.linked(peer, start);
        news.unlinked(&peer);
        assert!(!news.is_new_link(&peer, start));
    }

    #[test]
    fn a_joiner_is_owed_one_push_back_soon_after_it_joined() {
        let key = || meshchat_crdt::Identity::generate().public();
        let (chat, other) = (
            ChatId::direct(&key(), &key()),
            ChatId::direct(&key(), &key()),
        );
        let peer = PeerId::random();
        let start = Instant::now();
        let mut news = TopicNews::default();
        assert!(!news.take_joiner(&peer, &chat, start));
        news.joined(peer, chat, start);
        assert!(!news.take_joiner(&peer, &other, start), "another group");
        assert!(news.take_joiner(&peer, &chat, start + QUIET_AFTER / 2));
        assert!(!news.take_joiner(&peer, &chat, start), "once");
        news.joined(peer, chat, start);
        assert!(
            !news.take_joiner(&peer, &chat, start + QUIET_AFTER),
            "too late"
        );
        news.joined(peer, chat, start);
        news.unlinked(&peer);
        assert!(!news.take_joiner(&peer, &chat, start), "gone");
    }
}

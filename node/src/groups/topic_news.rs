//! When each group's topic last brought this node something new. While it
//! does, the topic is carrying the group's changes to this node's
//! neighbours too, and a change this node learns by sync need not be
//! published there again (a republish is a new frame, sealed under this
//! node's key: each neighbour asks for the key, opens the frame and finds
//! nothing new). Into a quiet topic, such as one side of a healed split
//! where nothing has been said since, the republish still goes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use meshchat_crdt::ChatId;

/// How long after its last news a topic counts as quiet.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(30);

/// One entry per subscribed group (the node's own groups), dropped when it
/// leaves the topic.
#[derive(Debug, Default)]
pub(crate) struct TopicNews {
    last: HashMap<ChatId, Instant>,
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
}

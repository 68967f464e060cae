//! Group topics: the gossipsub topic a group's changes travel on. Its name is
//! part of the wire format, like the protocol ids.

use libp2p::gossipsub::IdentTopic;
use meshchat_crdt::ChatId;

/// The gossipsub topic of a group.
pub fn group_topic(chat: &ChatId) -> IdentTopic {
    IdentTopic::new(format!("/meshchat/group/1/{chat}"))
}

//! Group topics: the gossipsub topic a group's changes travel on. Its name is
//! part of the wire format, like the protocol ids.
//!
//! The name is a hash of the chat id, so a peer that sees a subscription or
//! a message learns no chat id it did not know; whoever knows the chat id
//! (members, former members) can name the topic.

use libp2p::gossipsub::IdentTopic;
use meshchat_crdt::ChatId;
use sha2::{Digest, Sha256};

const TOPIC_DOMAIN: &[u8] = b"meshchat/group-topic/v2";

/// The gossipsub topic of a group.
pub fn group_topic(chat: &ChatId) -> IdentTopic {
    let digest = Sha256::new()
        .chain_update(TOPIC_DOMAIN)
        .chain_update(chat.as_bytes())
        .finalize();
    let name = data_encoding::HEXLOWER.encode(&digest[..16]);
    IdentTopic::new(format!("/meshchat/group/2/{name}"))
}

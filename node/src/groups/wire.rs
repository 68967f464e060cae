//! What groups put on gossipsub: the topic a group's changes travel on (its
//! name is part of the wire format, like the protocol ids) and the frames
//! published on it.
//!
//! The topic's name is a hash of the chat id, so a peer that sees a subscription or
//! a message learns no chat id it did not know; whoever knows the chat id
//! (members, former members) can name the topic.

use libp2p::gossipsub::IdentTopic;
use meshchat_crdt::{e2e::SealedChange, ChatId, SignedChange};
use serde::{Deserialize, Serialize};
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

/// What a group's gossipsub topic carries (as a frame: version byte + CBOR).
/// Only sealed: a plaintext frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GossipMessage {
    /// A [`GossipPayload`] frame sealed under the publisher's sender key for
    /// the group (associated data: the chat and the key id).
    Sealed(SealedChange),
}

/// What a sealed gossip message holds once opened (as a frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPayload {
    /// Signed changes of the topic's group (by any author: a member passes
    /// on what it learned by sync under its own key).
    pub changes: Vec<SignedChange>,
}

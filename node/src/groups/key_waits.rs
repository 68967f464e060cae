//! Gossip frames waiting for the sender key they are sealed under, bounded
//! in frames and bytes (see `key_requests.rs` for asking and answering).

use std::collections::HashMap;

use libp2p::{gossipsub::MessageId, PeerId};
use meshchat_crdt::{e2e::SealedChange, ChatId, KeyId};

/// A frame waiting for its key.
pub(crate) struct WaitingFrame {
    pub(crate) message_id: MessageId,
    pub(crate) via: PeerId,
    pub(crate) sealed: SealedChange,
}

/// The frames waiting for keys, per key asked for.
#[derive(Default)]
pub(crate) struct KeyWaits {
    pub(crate) waiting: HashMap<KeyId, (ChatId, Vec<WaitingFrame>)>,
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

impl KeyWaits {
    pub(crate) fn take(&mut self, key_id: &KeyId) -> Option<(ChatId, Vec<WaitingFrame>)> {
        let taken = self.waiting.remove(key_id)?;
        self.frames -= taken.1.len();
        self.bytes -= taken
            .1
            .iter()
            .map(|f| f.sealed.ciphertext.len())
            .sum::<usize>();
        Some(taken)
    }
}

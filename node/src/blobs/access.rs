//! Who may fetch which blob from this node.
//!
//! iroh-blobs serves any blob to anyone who asks, so every get (and observe) request is
//! intercepted and judged here: a peer is served a blob when it is entitled
//! to it, everyone else gets "permission denied". Entitled means one of:
//! - a member of a chat whose history references the blob;
//! - a relay of such a member (it caches the blob for that member);
//! - this node is a relay holding the blob for that peer;
//! - the blob was shared publicly with `meshchat share` (a ticket).
//!
//! The index is rebuilt from chat history by the media task and read by the
//! request interceptor; the lock is never held across an await.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use iroh::EndpointId;
use iroh_blobs::{
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
        RequestMode, ThrottleMode,
    },
    Hash,
};
use meshchat_crdt::{ChatId, PublicKey};
use tokio::task::JoinHandle;

use super::endpoint::key_of_endpoint;

/// Events queued between iroh-blobs and the interceptor.
const EVENT_CAPACITY: usize = 64;
/// Bytes iroh-blobs sends between two throttle events (one chunk group).
const THROTTLE_UNIT: u64 = 16 * 1024;

#[derive(Debug, Default)]
struct Index {
    /// Chats whose history references each blob.
    chats_of: HashMap<Hash, HashSet<ChatId>>,
    /// Members of each chat.
    members: HashMap<ChatId, HashSet<PublicKey>>,
    /// Relays of each peer (theirs, from contacts; ours, from the config).
    relays_of: HashMap<PublicKey, HashSet<PublicKey>>,
    /// Blobs this node (as a relay) holds for each peer.
    held_for: HashMap<PublicKey, HashSet<Hash>>,
    /// Blobs anyone may fetch (shared with a ticket).
    public: HashSet<Hash>,
}

impl Index {
    fn allows(&self, peer: &PublicKey, hash: &Hash) -> bool {
        if self.public.contains(hash) || self.held_for.get(peer).is_some_and(|h| h.contains(hash)) {
            return true;
        }
        let Some(chats) = self.chats_of.get(hash) else {
            return false;
        };
        chats
            .iter()
            .filter_map(|c| self.members.get(c))
            .any(|members| {
                members.contains(peer)
                    || members.iter().any(|m| {
                        self.relays_of
                            .get(m)
                            .is_some_and(|relays| relays.contains(peer))
                    })
            })
    }
}

/// Longest a request waits for the index to be built after a start.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shared access index: cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    index: Arc<RwLock<Index>>,
    /// Set once the index was built from history after a start: requests
    /// wait for it rather than being refused by an empty index.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            index: Arc::default(),
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl Access {
    /// The index reflects the stored history.
    pub(crate) fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Waits (bounded) until the index was built.
    pub(crate) async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r)).await;
    }

    fn read<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        match self.index.read() {
            Ok(guard) => f(&guard),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        match self.index.write() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether `peer` may fetch `hash` from this node.
    pub(crate) fn allows(&self, peer: &PublicKey, hash: &Hash) -> bool {
        self.read(|i| i.allows(peer, hash))
    }

    /// Records the members of a chat.
    pub(crate) fn set_members(&self, chat: ChatId, members: HashSet<PublicKey>) {
        self.write(|i| i.members.insert(chat, members));
    }

    /// Whether the members of `chat` are known.
    pub(crate) fn knows_chat(&self, chat: &ChatId) -> bool {
        self.read(|i| i.members.contains_key(chat))
    }

    /// The members of `chat`, as last recorded.
    pub(crate) fn members(&self, chat: &ChatId) -> Vec<PublicKey> {
        self.read(|i| {
            i.members
                .get(chat)
                .map(|m| m.iter().copied().collect())
                .unwrap_or_default()
        })
    }

    /// Records that `chat` references `hash`.
    pub(crate) fn add_reference(&self, chat: ChatId, hash: Hash) {
        self.write(|i| i.chats_of.entry(hash).or_default().insert(chat));
    }

    /// Replaces the blobs `chat` references.
    pub(crate) fn set_references(&self, chat: ChatId, hashes: &HashSet<Hash>) {
        self.write(|i| {
            for (hash, chats) in i.chats_of.iter_mut() {
                if !hashes.contains(hash) {
                    chats.remove(&chat);
                }
            }
            i.chats_of.retain(|_, chats| !chats.is_empty());
            for hash in hashes {
                i.chats_of.entry(*hash).or_default().insert(chat);
            }
        });
    }

    /// Whether any chat references `hash`.
    pub(crate) fn is_referenced(&self, hash: &Hash) -> bool {
        self.read(|i| i.chats_of.contains_key(hash))
    }

    /// The relays of a peer, as last recorded.
    pub(crate) fn relays_of(&self, peer: &PublicKey) -> Vec<PublicKey> {
        self.read(|i| {
            i.relays_of
                .get(peer)
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default()
        })
    }

    /// Records the relays of a peer.
    pub(crate) fn set_relays(&self, peer: PublicKey, relays: HashSet<PublicKey>) {
        self.write(|i| i.relays_of.insert(peer, relays));
    }

    /// Relay mode: this node holds `hash` for `peer`.
    pub(crate) fn hold_for(&self, peer: PublicKey, hash: Hash) {
        self.write(|i| i.held_for.entry(peer).or_default().insert(hash));
    }

    /// Relay mode: this node no longer holds `hash` for `peer`.
    pub(crate) fn release_for(&self, peer: &PublicKey, hash: &Hash) {
        self.write(|i| {
            if let Some(held) = i.held_for.get_mut(peer) {
                held.remove(hash);
            }
        });
    }

    /// Anyone may fetch `hash` (and, for a collection, what it lists).
    pub(crate) fn make_public(&self, hash: Hash) {
        self.write(|i| i.public.insert(hash));
    }
}

/// The interceptor iroh-blobs calls for every connection and request.
pub(crate) fn interceptor(
    access: Access,
    serve_bytes_per_sec: Option<u64>,
) -> (EventSender, JoinHandle<()>) {
    let mask = EventMask {
        connected: ConnectMode::Intercept,
        get: RequestMode::Intercept,
        get_many: RequestMode::Intercept,
        push: RequestMode::Disabled,
        observe: ObserveMode::Intercept,
        throttle: if serve_bytes_per_sec.is_some() {
            ThrottleMode::Intercept
        } else {
            ThrottleMode::None
        },
    };
    let (events, mut rx) = EventSender::channel(EVENT_CAPACITY, mask);
    let task = tokio::spawn(async move {
        // Which peer each connection belongs to: requests name only the connection.
        let mut peers: HashMap<u64, EndpointId> = HashMap::new();
        while let Some(message) = rx.recv().await {
            match message {
                ProviderMessage::ClientConnected(msg) => {
                    let verdict = match msg.endpoint_id {
                        Some(id) => {
                            peers.insert(msg.connection_id, id);
                            Ok(())
                        }
                        None => Err(AbortReason::Permission),
                    };
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::ConnectionClosed(msg) => {
                    peers.remove(&msg.connection_id);
                }
                ProviderMessage::GetRequestReceived(msg) => {
                    access.wait_ready().await;
                    let peer = peers.get(&msg.connection_id).map(key_of_endpoint);
                    let verdict = judge(&access, peer, [msg.request.hash]);
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::GetManyRequestReceived(msg) => {
                    access.wait_ready().await;
                    let peer = peers.get(&msg.connection_id).map(key_of_endpoint);
                    let verdict = judge(&access, peer, msg.request.hashes.iter().copied());
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::ObserveRequestReceived(msg) => {
                    access.wait_ready().await;
                    let peer = peers.get(&msg.connection_id).map(key_of_endpoint);
                    let verdict = judge(&access, peer, [msg.request.hash]);
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::Throttle(msg) => {
                    let rate = serve_bytes_per_sec.unwrap_or(u64::MAX).max(1);
                    let micros = msg.size.max(THROTTLE_UNIT).saturating_mul(1_000_000) / rate;
                    // Each request waits on its own; the loop keeps judging others.
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
                        msg.tx.send(Ok(())).await.ok();
                    });
                }
                _ => {}
            }
        }
    });
    (events, task)
}

fn judge(
    access: &Access,
    peer: Option<PublicKey>,
    hashes: impl IntoIterator<Item = Hash>,
) -> Result<(), AbortReason> {
    let Some(peer) = peer else {
        return Err(AbortReason::Permission);
    };
    for hash in hashes {
        if !access.allows(&peer, &hash) {
            tracing::info!(%peer, %hash, "refused a blob request: not entitled");
            return Err(AbortReason::Permission);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    #[test]
    fn members_and_their_relays_are_entitled_others_are_not() {
        let access = Access::default();
        access.mark_ready();
        let chat = ChatId::from_bytes([1; 32]);
        let hash = Hash::new(b"photo");
        access.set_members(chat, [key(1), key(2)].into());
        assert!(
            !access.allows(&key(2), &hash),
            "no message references it yet"
        );
        access.add_reference(chat, hash);
        assert!(access.allows(&key(2), &hash));
        assert!(!access.allows(&key(3), &hash));
        access.set_relays(key(2), [key(9)].into());
        assert!(access.allows(&key(9), &hash));
        access.set_references(chat, &HashSet::new());
        assert!(!access.allows(&key(2), &hash), "message deleted");
        access.hold_for(key(3), hash);
        assert!(access.allows(&key(3), &hash));
        access.release_for(&key(3), &hash);
        assert!(!access.allows(&key(3), &hash));
        access.make_public(hash);
        assert!(access.allows(&key(4), &hash));
    }
}

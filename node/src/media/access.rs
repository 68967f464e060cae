//! Who may fetch which blob from this node.
//!
//! iroh-blobs serves any blob to anyone who asks, so every connection, get,
//! get-many and observe request is intercepted and judged here: a peer is
//! served a blob when it is entitled to it, everyone else gets "permission
//! denied". Entitled means one of:
//! - it is a member of a chat in which a message references the blob, and
//!   that message's author was entitled to attach it: this node's user, a
//!   contact, or a member of a group the user created or a contact added
//!   the user to (not a stranger, not a blocked peer: knowing a hash and
//!   naming it in a message must not unlock what this node holds for
//!   another chat);
//! - this node asked it (a relay) to hold the blob, while it pulls it;
//! - this node is a relay holding the blob for that peer;
//! - the blob was made public (`meshchat share`, profile pictures).
//!
//! A blocked peer is refused everything, at connection time already.
//!
//! A get request can reach more than its root: iroh-blobs reads the root as
//! a hash sequence and serves the children its ranges select. Only
//! collections this node shared itself are served that way; any other
//! request that selects anything past the root is refused.
//!
//! The index is rebuilt from chat history by the media task and read by the
//! request interceptor; the lock is never held across an await.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use iroh::EndpointId;
use iroh_blobs::{
    protocol::GetRequest,
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
        RequestMode, ThrottleMode,
    },
    Hash,
};
use meshchat_crdt::{ChatId, PublicKey};
use tokio::task::JoinHandle;

use super::{
    endpoint::key_of_endpoint,
    policy::{ChatShape, Origin, People},
};

/// Events queued between iroh-blobs and the interceptor.
const EVENT_CAPACITY: usize = 64;
/// Bytes iroh-blobs sends between two throttle events (one chunk group).
const THROTTLE_UNIT: u64 = 16 * 1024;

/// A chat as the index knows it.
#[derive(Debug, Clone)]
struct ChatEntry {
    shape: ChatShape,
    members: HashSet<PublicKey>,
}

#[derive(Debug, Default)]
struct Index {
    people: People,
    /// The messages referencing each blob: (chat, author).
    refs: HashMap<Hash, HashSet<(ChatId, PublicKey)>>,
    chats: HashMap<ChatId, ChatEntry>,
    /// Blobs this node (as a relay) holds for each peer.
    held_for: HashMap<PublicKey, HashSet<Hash>>,
    /// Blobs anyone may fetch (shared with a ticket, profile pictures).
    public: HashSet<Hash>,
    /// Collections this node shared: their children are served with them.
    public_seqs: HashSet<Hash>,
    /// Blobs a relay may pull while it takes them over (with how many
    /// requests are under way).
    grants: HashMap<(PublicKey, Hash), usize>,
}

impl Index {
    fn origin(&self, chat: &ChatId, author: &PublicKey) -> Option<Origin> {
        let entry = self.chats.get(chat)?;
        Some(self.people.origin(entry.shape, author))
    }

    fn allows(&self, peer: &PublicKey, hash: &Hash) -> bool {
        if self.people.blocked.contains(peer) {
            return false;
        }
        if self.public.contains(hash)
            || self.held_for.get(peer).is_some_and(|h| h.contains(hash))
            || self.grants.contains_key(&(*peer, *hash))
        {
            return true;
        }
        let Some(refs) = self.refs.get(hash) else {
            return false;
        };
        refs.iter().any(|(chat, author)| {
            self.chats.get(chat).is_some_and(|entry| {
                entry.members.contains(peer)
                    && self.people.origin(entry.shape, author).entitles_members()
            })
        })
    }

    /// A get request: its root, and its children only for a shared collection.
    fn allows_get(&self, peer: &PublicKey, request: &GetRequest) -> bool {
        let reaches_children = !request.ranges.is_blob();
        if reaches_children && !self.public_seqs.contains(&request.hash) {
            return false;
        }
        self.allows(peer, &request.hash)
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

impl Access {
    /// An empty index for the node whose key is `me`.
    pub(crate) fn new(me: PublicKey) -> Self {
        let index = Index {
            people: People {
                me: Some(me),
                ..People::default()
            },
            ..Index::default()
        };
        Self {
            index: Arc::new(RwLock::new(index)),
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

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

    /// Whether `peer` may have what `request` asks for.
    pub(crate) fn allows_get(&self, peer: &PublicKey, request: &GetRequest) -> bool {
        self.read(|i| i.allows_get(peer, request))
    }

    /// Whether `peer` is blocked.
    pub(crate) fn is_blocked(&self, peer: &PublicKey) -> bool {
        self.read(|i| i.people.blocked.contains(peer))
    }

    /// Records the user's contacts and the peers they blocked.
    pub(crate) fn set_people(&self, contacts: HashSet<PublicKey>, blocked: HashSet<PublicKey>) {
        self.write(|i| {
            i.people.contacts = contacts;
            i.people.blocked = blocked;
        });
    }

    /// Records a chat's shape and members.
    pub(crate) fn set_chat(&self, chat: ChatId, shape: ChatShape, members: HashSet<PublicKey>) {
        self.write(|i| i.chats.insert(chat, ChatEntry { shape, members }));
    }

    /// Whether the chat's members are known.
    pub(crate) fn knows_chat(&self, chat: &ChatId) -> bool {
        self.read(|i| i.chats.contains_key(chat))
    }

    /// The members of `chat`, as last recorded.
    pub(crate) fn members(&self, chat: &ChatId) -> Vec<PublicKey> {
        self.read(|i| {
            i.chats
                .get(chat)
                .map(|c| c.members.iter().copied().collect())
                .unwrap_or_default()
        })
    }

    /// Where a message by `author` in `chat` comes from (`None` while the
    /// chat is unknown).
    pub(crate) fn origin(&self, chat: &ChatId, author: &PublicKey) -> Option<Origin> {
        self.read(|i| i.origin(chat, author))
    }

    /// Records that a message by `author` in `chat` references `hash`.
    pub(crate) fn add_reference(&self, chat: ChatId, hash: Hash, author: PublicKey) {
        self.write(|i| i.refs.entry(hash).or_default().insert((chat, author)));
    }

    /// Replaces what `chat` references: (blob, author) pairs.
    pub(crate) fn set_references(&self, chat: ChatId, refs: &HashSet<(Hash, PublicKey)>) {
        self.write(|i| {
            for (hash, by) in i.refs.iter_mut() {
                by.retain(|(c, author)| *c != chat || refs.contains(&(*hash, *author)));
            }
            i.refs.retain(|_, by| !by.is_empty());
            for (hash, author) in refs {
                i.refs.entry(*hash).or_default().insert((chat, *author));
            }
        });
    }

    /// Whether any message references `hash`.
    pub(crate) fn is_referenced(&self, hash: &Hash) -> bool {
        self.read(|i| i.refs.contains_key(hash))
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
                if held.is_empty() {
                    i.held_for.remove(peer);
                }
            }
        });
    }

    /// Anyone may fetch `hash` (a raw blob).
    pub(crate) fn make_public(&self, hash: Hash) {
        self.write(|i| i.public.insert(hash));
    }

    /// Anyone may fetch the collection `hash` and what it lists.
    pub(crate) fn make_public_collection(&self, hash: Hash) {
        self.write(|i| {
            i.public.insert(hash);
            i.public_seqs.insert(hash);
        });
    }

    /// Lets `relay` pull `hash` until the returned grant drops (while it
    /// takes the blob over for an offline recipient).
    pub(crate) fn grant(&self, relay: PublicKey, hash: Hash) -> Grant {
        self.write(|i| *i.grants.entry((relay, hash)).or_default() += 1);
        Grant {
            access: self.clone(),
            key: (relay, hash),
        }
    }
}

/// A relay's leave to pull one blob; withdrawn when dropped.
#[derive(Debug)]
pub(crate) struct Grant {
    access: Access,
    key: (PublicKey, Hash),
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.access.write(|i| {
            if let Some(n) = i.grants.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    i.grants.remove(&self.key);
                }
            }
        });
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
                        Some(id) if !access.is_blocked(&key_of_endpoint(&id)) => {
                            peers.insert(msg.connection_id, id);
                            Ok(())
                        }
                        _ => Err(AbortReason::Permission),
                    };
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::ConnectionClosed(msg) => {
                    peers.remove(&msg.connection_id);
                }
                ProviderMessage::GetRequestReceived(msg) => {
                    access.wait_ready().await;
                    let peer = peers.get(&msg.connection_id).map(key_of_endpoint);
                    let verdict = judge_get(&access, peer, &msg.request);
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

fn judge_get(
    access: &Access,
    peer: Option<PublicKey>,
    request: &GetRequest,
) -> Result<(), AbortReason> {
    let Some(peer) = peer else {
        return Err(AbortReason::Permission);
    };
    if access.allows_get(&peer, request) {
        return Ok(());
    }
    let hash = request.hash;
    let children = !request.ranges.is_blob();
    tracing::info!(%peer, %hash, children, "refused a blob request: not entitled");
    Err(AbortReason::Permission)
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
    use iroh_blobs::protocol::{ChunkRanges, ChunkRangesSeq};

    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn direct(access: &Access, chat: ChatId, other: PublicKey) {
        access.set_chat(chat, ChatShape::Direct, [key(1), other].into());
    }

    #[test]
    fn members_are_entitled_to_what_an_entitled_author_attached() {
        let access = Access::new(key(1));
        access.mark_ready();
        access.set_people([key(2)].into(), [key(6)].into());
        let chat = ChatId::from_bytes([1; 32]);
        let hash = Hash::new(b"photo");
        direct(&access, chat, key(2));
        assert!(
            !access.allows(&key(2), &hash),
            "no message references it yet"
        );
        access.add_reference(chat, hash, key(1));
        assert!(access.allows(&key(2), &hash));
        assert!(!access.allows(&key(3), &hash), "not a member");
        access.set_references(chat, &HashSet::new());
        assert!(!access.allows(&key(2), &hash), "message deleted");
        access.set_references(chat, &[(hash, key(2))].into());
        assert!(access.allows(&key(2), &hash), "a contact attached it");
        access.hold_for(key(3), hash);
        assert!(access.allows(&key(3), &hash));
        access.release_for(&key(3), &hash);
        assert!(!access.allows(&key(3), &hash));
        access.make_public(hash);
        assert!(access.allows(&key(4), &hash));
        assert!(
            !access.allows(&key(6), &hash),
            "a blocked peer gets nothing"
        );
    }

    #[test]
    fn a_stranger_naming_a_hash_does_not_unlock_it() {
        let access = Access::new(key(1));
        access.set_people([key(2)].into(), HashSet::new());
        let with_contact = ChatId::from_bytes([1; 32]);
        let with_stranger = ChatId::from_bytes([2; 32]);
        let secret = Hash::new(b"holiday");
        direct(&access, with_contact, key(2));
        direct(&access, with_stranger, key(3));
        access.add_reference(with_contact, secret, key(2));
        access.add_reference(with_stranger, secret, key(3));
        assert!(!access.allows(&key(3), &secret));
        // The user sending it to the stranger does entitle them.
        access.add_reference(with_stranger, secret, key(1));
        assert!(access.allows(&key(3), &secret));
    }

    #[test]
    fn grants_last_as_long_as_their_guard() {
        let access = Access::new(key(1));
        let hash = Hash::new(b"x");
        let first = access.grant(key(9), hash);
        let second = access.grant(key(9), hash);
        assert!(access.allows(&key(9), &hash));
        drop(first);
        assert!(access.allows(&key(9), &hash));
        drop(second);
        assert!(!access.allows(&key(9), &hash));
    }

    #[test]
    fn requests_reaching_children_need_a_shared_collection() {
        let access = Access::new(key(1));
        let root = Hash::new(b"list of hashes");
        access.make_public(root);
        let raw = GetRequest::blob(root);
        let children = GetRequest::new(
            root,
            ChunkRangesSeq::from_ranges_infinite([ChunkRanges::all(), ChunkRanges::all()]),
        );
        let only_children = GetRequest::new(
            root,
            ChunkRangesSeq::from_ranges([ChunkRanges::empty(), ChunkRanges::all()]),
        );
        assert!(access.allows_get(&key(2), &raw));
        assert!(!access.allows_get(&key(2), &children));
        assert!(!access.allows_get(&key(2), &only_children));
        access.make_public_collection(root);
        assert!(access.allows_get(&key(2), &children));
        assert!(access.allows_get(&key(2), &only_children));
    }
}

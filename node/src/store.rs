//! Durable state in sled: chats, signed changes, the outbox, delivery states
//! and contacts. Writes are visible at once and durable after [`Store::flush`];
//! nothing is acknowledged to anyone before that flush.
//!
//! Storage faults: the first I/O error of a write or a flush (a full disk,
//! usually) puts the store in a fault ([`Store::fault`]). From then on every
//! write is refused with [`StoreError::Unavailable`], which tells the user
//! what to do, while reads go on. sled keeps that error for the life of the
//! database and keeps the writes that never reached the disk in memory, so
//! the node then [reopens](Store::reopen) the database from what is on disk
//! and [resumes](Store::resume) writes once a probe write gets through (see
//! `disk.rs` and `actor/storage.rs`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
};

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{
    ChangeHash, ChatId, ChatKind, MessageId, PublicKey, SegmentIndex, SignedChange,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    disk::StorageFault, durable::SledFiles, social::presence::LastSeenPrivacy,
    social::records::SignedProfile,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an error (I/O, full disk, corruption).
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// Decoder message.
        message: String,
    },
    /// Storage refuses writes for now (disk full, I/O error); the node
    /// recovers by itself. Nothing was written.
    #[error("{0}")]
    Unavailable(StorageFault),
}

/// Where a message stands, as its author sees it (per recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored locally, not yet acknowledged by anyone.
    Pending,
    /// A relay or the recipient holds it.
    Sent,
    /// The recipient's device stored it durably.
    Delivered,
    /// The recipient displayed it.
    Read,
}

/// A contact: someone the user added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their PeerId.
    pub peer: PeerId,
    /// Name the user gave them.
    pub name: Option<String>,
    /// Addresses to reach them at, given by the user or learned from them.
    pub addrs: Vec<Multiaddr>,
    /// Relays holding their mail while they are offline (each ends in `/p2p/<RELAY>`).
    #[serde(default)]
    pub relays: Vec<Multiaddr>,
    /// Blocked: nothing from them is shown and nothing is sent to them.
    #[serde(default)]
    pub blocked: bool,
}

/// A chat this node takes part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChatRecord {
    pub(crate) kind: ChatKind,
    pub(crate) created_at_ms: i64,
}

/// A change waiting for a peer's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutboxEntry {
    pub(crate) chat: ChatId,
    pub(crate) segment: SegmentIndex,
    pub(crate) hash: ChangeHash,
    pub(crate) message: Option<MessageId>,
}

/// How a node's database is run: sled's defaults unless the caller says
/// otherwise ([`crate::SpawnOptions`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tuning {
    /// sled's page cache, in bytes (sled's default, 1 GiB, if `None`).
    pub(crate) cache_bytes: Option<u64>,
    /// No flusher thread of sled's own (it flushes every 500 ms).
    pub(crate) no_background_flush: bool,
}

pub(crate) struct Store {
    path: PathBuf,
    tuning: Tuning,
    /// `None` only when a reopen failed; every call then reports the fault.
    trees: Option<Trees>,
    /// The same database, for services that keep their own trees in it.
    handle: DbHandle,
    health: Mutex<Health>,
    /// Keys of changes whose flush failed: still in the old database's
    /// memory until it is reopened, never on disk, so never read back.
    lost: Mutex<std::collections::HashSet<Vec<u8>>>,
}

impl Drop for Store {
    /// Services' handles lose the database with the store, so it closes (and
    /// releases its lock) when the node stops, whoever still holds a handle.
    fn drop(&mut self) {
        self.handle.set(None);
    }
}

/// The database, for services that keep their own trees in it (mailboxes,
/// deposits, tokens, requests). It follows the database across
/// [`Store::reopen`]: trees are looked up at each use and never kept, so no
/// stale handle keeps the old database (and its file lock) alive.
#[derive(Debug, Clone)]
pub(crate) struct DbHandle {
    db: Arc<RwLock<Option<sled::Db>>>,
    path: PathBuf,
    /// Its files, synced after each flush (`None` for a temporary database).
    files: Option<Arc<SledFiles>>,
}

impl DbHandle {
    fn new(db: &sled::Db, path: &Path) -> Self {
        Self {
            db: Arc::new(RwLock::new(Some(db.clone()))),
            path: path.to_path_buf(),
            files: Some(Arc::new(SledFiles::new(path))),
        }
    }

    /// A handle on a temporary database opened elsewhere (tests): its
    /// flushes sync no files.
    #[cfg(test)]
    pub(crate) fn of(db: &sled::Db) -> Self {
        Self {
            db: Arc::new(RwLock::new(Some(db.clone()))),
            path: PathBuf::new(),
            files: None,
        }
    }

    /// Makes every write so far durable: sled's flush, then `fdatasync` of
    /// the files it covers ([`SledFiles::sync`]). Runs on tokio's blocking
    /// pool, not `sled::Db::flush_async`: with many databases in one process
    /// its shared thread pool can deadlock (spacejam/sled#1241; seen with 20
    /// nodes in one process). The future owns what it needs, so it can run
    /// on a task of its own (group commit).
    pub(crate) fn flush(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let db = self.db();
        let files = self.files.clone();
        async move {
            let db = db?;
            let flushed = tokio::task::spawn_blocking(move || {
                db.flush()?;
                if let Some(files) = files {
                    files.sync()?;
                }
                Ok::<(), sled::Error>(())
            })
            .await;
            match flushed {
                Ok(result) => result.map_err(StoreError::from),
                Err(e) => Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(e)))),
            }
        }
    }

    /// The open database; refused while it is closed for a reopen.
    pub(crate) fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(StorageFault {
                    state: crate::disk::StorageState::Failed,
                    dir: self.path.parent().unwrap_or(&self.path).to_path_buf(),
                    detail: "the database is being reopened".into(),
                })
            })
    }

    /// The tree `name` of the open database.
    pub(crate) fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db()?.open_tree(name)?)
    }

    fn set(&self, db: Option<sled::Db>) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = db;
    }
}

/// The open database and its trees.
struct Trees {
    db: sled::Db,
    chats: sled::Tree,
    changes: sled::Tree,
    outbox: sled::Tree,
    delivery: sled::Tree,
    contacts: sled::Tree,
    reads: sled::Tree,
    custody: sled::Tree,
    receipts: sled::Tree,
    profiles: sled::Tree,
    last_seen: sled::Tree,
    settings: sled::Tree,
}

impl Trees {
    fn open(path: &Path, tuning: Tuning) -> Result<Self, sled::Error> {
        remove_unfinished_snapshots(path);
        let mut config = sled::Config::new().path(path);
        if let Some(bytes) = tuning.cache_bytes {
            config = config.cache_capacity(bytes);
        }
        if tuning.no_background_flush {
            config = config.flush_every_ms(None);
        }
        let db = open_waiting_for_lock(&config)?;
        Ok(Self {
            chats: db.open_tree("chats")?,
            changes: db.open_tree("changes")?,
            outbox: db.open_tree("outbox")?,
            delivery: db.open_tree("delivery")?,
            contacts: db.open_tree("contacts")?,
            reads: db.open_tree("reads")?,
            custody: db.open_tree("custody")?,
            receipts: db.open_tree("receipts")?,
            profiles: db.open_tree("profiles")?,
            last_seen: db.open_tree("last_seen")?,
            settings: db.open_tree("settings")?,
            db,
        })
    }
}

/// How long [`open_waiting_for_lock`] waits for sled's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its file lock. A
/// dropped `sled::Db` releases the lock only once sled's own background
/// threads drop their references, a moment later; reopening at once (a node
/// restarted in the same process, [`Store::reopen`]) would otherwise fail
/// with `WouldBlock`. Another process cannot be the holder: the data
/// directory's own lock ([`crate::data_dir`]) keeps it out.
pub(crate) fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// Where storage stands.
#[derive(Debug, Default)]
struct Health {
    /// Writes are refused while this is set.
    fault: Option<StorageFault>,
    /// The open database hit an I/O error: sled refuses writes for good and
    /// may hold writes that never reached the disk. Only a reopen clears it.
    db_failed: bool,
}

/// Removes snapshot files sled was still writing when it stopped (killed, or
/// out of space). sled 0.34 takes the newest `snap.*` file, unfinished ones
/// included, and refuses to open on its bad checksum; without it, it rebuilds
/// the snapshot from the log.
fn remove_unfinished_snapshots(path: &Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let bytes = entry.metadata().map_or(0, |m| m.len());
            tracing::warn!(file = %name, bytes, "removing an unfinished database snapshot");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

fn change_key(chat: &ChatId, segment: SegmentIndex, hash: &ChangeHash) -> Vec<u8> {
    let mut key = Vec::with_capacity(68);
    key.extend_from_slice(chat.as_bytes());
    key.extend_from_slice(&segment.to_be_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn outbox_key(peer: &PublicKey, hash: &ChangeHash) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(peer.as_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn delivery_key(chat: &ChatId, message: &MessageId, peer: &PublicKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(80);
    key.extend_from_slice(chat.as_bytes());
    key.extend_from_slice(message.as_bytes());
    key.extend_from_slice(peer.as_bytes());
    key
}

impl Store {
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_tuned(path, Tuning::default())
    }

    /// Opens the database run as `tuning` says.
    pub(crate) fn open_tuned(path: &Path, tuning: Tuning) -> Result<Self, StoreError> {
        let trees = Trees::open(path, tuning)?;
        Ok(Self {
            handle: DbHandle::new(&trees.db, path),
            trees: Some(trees),
            path: path.to_path_buf(),
            tuning,
            health: Mutex::default(),
            lost: Mutex::default(),
        })
    }

    /// The database, for services that keep their own trees in it.
    pub(crate) fn handle(&self) -> DbHandle {
        self.handle.clone()
    }

    /// Makes every write so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.trees()?;
        self.handle.flush().await.map_err(|e| self.failed(e))
    }

    /// Why writes are refused, if they are.
    pub(crate) fn fault(&self) -> Option<StorageFault> {
        self.health().fault.clone()
    }

    /// Whether the open database hit an I/O error and must be reopened.
    pub(crate) fn needs_reopen(&self) -> bool {
        self.health().db_failed
    }

    /// Records a fault reported by a service writing to the same database
    /// (the relay's mailboxes); returns the error to report in its place.
    pub(crate) fn failed(&self, error: StoreError) -> StoreError {
        let StoreError::Sled(sled_error) = &error else {
            return error;
        };
        let Some(fault) = StorageFault::of_sled(sled_error, self.data_dir()) else {
            return error;
        };
        let mut health = self.health();
        health.db_failed = true;
        if health.fault.is_none() {
            tracing::error!(%fault, "storage fault: refusing writes until it clears");
        }
        StoreError::Unavailable(health.fault.get_or_insert(fault).clone())
    }

    /// Closes the database and opens it again from what is on disk, dropping
    /// whatever sled held in memory but never wrote. Writes stay refused
    /// until [`Store::resume`]. Services reach the database through
    /// [`DbHandle`], which follows it here (sled locks its files, so no other
    /// handle may outlive the old one). On failure the store is closed:
    /// every call reports the fault until a later reopen succeeds.
    pub(crate) fn reopen(&mut self) -> Result<(), StoreError> {
        self.trees = None;
        self.handle.set(None);
        let trees = Trees::open(&self.path, self.tuning).map_err(|e| self.failed(e.into()))?;
        self.handle.set(Some(trees.db.clone()));
        self.trees = Some(trees);
        self.health().db_failed = false;
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        tracing::info!(path = %self.path.display(), "database reopened from disk");
        Ok(())
    }

    /// Probes with a durable write; when it gets through, writes are taken
    /// again. Call only once the disk has room.
    pub(crate) async fn resume(&self) -> Result<(), StoreError> {
        if self.needs_reopen() {
            return Err(self.closed());
        }
        let trees = self.trees()?;
        trees
            .settings
            .insert(b"storage_probe", &crate::clock::now_ms().to_be_bytes())
            .map_err(|e| self.failed(e.into()))?;
        self.flush().await?;
        self.health().fault = None;
        tracing::info!("storage takes writes again");
        Ok(())
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// The error for a call made while the database is closed.
    fn closed(&self) -> StoreError {
        StoreError::Unavailable(self.fault().unwrap_or_else(|| StorageFault {
            state: crate::disk::StorageState::Failed,
            dir: self.data_dir().to_path_buf(),
            detail: "the database is closed".into(),
        }))
    }

    /// The trees, for reading.
    fn trees(&self) -> Result<&Trees, StoreError> {
        self.trees.as_ref().ok_or_else(|| self.closed())
    }

    /// The trees, for writing: refused while storage has a fault.
    fn writable(&self) -> Result<&Trees, StoreError> {
        if let Some(fault) = self.fault() {
            return Err(StoreError::Unavailable(fault));
        }
        self.trees()
    }

    /// Runs one write, recording an I/O error as a storage fault.
    fn write<T>(&self, f: impl FnOnce(&Trees) -> Result<T, sled::Error>) -> Result<T, StoreError> {
        let trees = self.writable()?;
        f(trees).map_err(|e| self.failed(e.into()))
    }

    pub(crate) fn put_chat(&self, id: &ChatId, record: &ChatRecord) -> Result<(), StoreError> {
        self.write(|t| t.chats.insert(id.as_bytes(), encode(record)))?;
        Ok(())
    }

    pub(crate) fn chat(&self, id: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
        self.trees()?
            .chats
            .get(id.as_bytes())?
            .map(|v| decode("chats", &v))
            .transpose()
    }

    pub(crate) fn chats(&self) -> Result<Vec<(ChatId, ChatRecord)>, StoreError> {
        self.trees()?
            .chats
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id: [u8; 32] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "chats",
                    message: "key is not a chat id".into(),
                })?;
                Ok((ChatId::from_bytes(id), decode("chats", &v)?))
            })
            .collect()
    }

    pub(crate) fn put_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a SignedChange, ChangeHash)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (change, hash) in changes {
            let key = change_key(&change.chat, change.segment, &hash);
            batch.insert(key, encode(change));
        }
        self.write(|t| t.changes.apply_batch(batch))
    }

    /// Every stored change of `chat`. A record that does not decode is
    /// dropped (and logged): one bad record never stops a chat loading.
    pub(crate) fn changes_of(&self, chat: &ChatId) -> Result<Vec<SignedChange>, StoreError> {
        let trees = self.trees()?;
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        for kv in trees.changes.scan_prefix(chat.as_bytes()) {
            let (key, value) = kv?;
            if lost.contains(key.as_ref()) {
                continue;
            }
            match decode("changes", &value) {
                Ok(change) => out.push(change),
                Err(error) => {
                    tracing::warn!(%chat, %error, "dropping a stored change that does not decode");
                    // Best effort: while writes are refused it stays, skipped.
                    let _ = self.write(|t| t.changes.remove(&key));
                }
            }
        }
        Ok(out)
    }

    /// The stored changes of one segment of `chat` (the metadata alone, for
    /// the group name index), without reading the others. A record that
    /// does not decode is skipped here; [`Store::changes_of`] drops it.
    pub(crate) fn changes_of_segment(
        &self,
        chat: &ChatId,
        segment: SegmentIndex,
    ) -> Result<Vec<SignedChange>, StoreError> {
        let mut prefix = Vec::with_capacity(36);
        prefix.extend_from_slice(chat.as_bytes());
        prefix.extend_from_slice(&segment.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.trees()?.changes.scan_prefix(prefix) {
            let (_, value) = kv?;
            match decode("changes", &value) {
                Ok(change) => out.push(change),
                Err(error) => {
                    tracing::warn!(%chat, %error, "skipping a stored change that does not decode")
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn change(
        &self,
        chat: &ChatId,
        segment: SegmentIndex,
        hash: &ChangeHash,
    ) -> Result<Option<SignedChange>, StoreError> {
        self.trees()?
            .changes
            .get(change_key(chat, segment, hash))?
            .map(|v| decode("changes", &v))
            .transpose()
    }

    /// A change written but whose flush failed: it is not on disk, and is
    /// not read back until the database is reopened (which drops it).
    pub(crate) fn write_lost(&self, change: &SignedChange, hash: &ChangeHash) {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(change_key(&change.chat, change.segment, hash));
    }

    /// Removes a change wherever it is stored in `chat` (rare: a change held
    /// for judgement that turned out invalid).
    pub(crate) fn remove_change(&self, chat: &ChatId, hash: &ChangeHash) -> Result<(), StoreError> {
        let changes = &self.writable()?.changes;
        for kv in changes.scan_prefix(chat.as_bytes()) {
            let (key, _) = kv?;
            if key.ends_with(hash.as_bytes()) {
                self.write(|t| t.changes.remove(key))?;
            }
        }
        Ok(())
    }

    /// Stores a change this node wrote together with its outbox entries and
    /// its message's `pending` delivery states, in one sled transaction:
    /// after a crash or a failed flush either all of it is on disk or none of
    /// it (a message without its outbox entry would never be pushed).
    pub(crate) fn put_local_write(
        &self,
        change: &SignedChange,
        hash: ChangeHash,
        outbox: &[(PublicKey, OutboxEntry)],
        pending: &[(MessageId, PublicKey)],
    ) -> Result<(), StoreError> {
        use sled::{transaction::TransactionError, Transactional};
        let change_record = (
            change_key(&change.chat, change.segment, &hash),
            encode(change),
        );
        let outbox_records: Vec<(Vec<u8>, Vec<u8>)> = outbox
            .iter()
            .map(|(peer, entry)| (outbox_key(peer, &entry.hash), encode(entry)))
            .collect();
        let pending_keys: Vec<Vec<u8>> = pending
            .iter()
            .map(|(message, peer)| delivery_key(&change.chat, message, peer))
            .collect();
        let pending_state = encode(&DeliveryState::Pending);
        self.write(|t| {
            (&t.changes, &t.outbox, &t.delivery)
                .transaction(|(changes, outbox, delivery)| {
                    changes.insert(change_record.0.as_slice(), change_record.1.as_slice())?;
                    for (key, value) in &outbox_records {
                        outbox.insert(key.as_slice(), value.as_slice())?;
                    }
                    for key in &pending_keys {
                        // States only move forward: never overwrite one.
                        if delivery.get(key)?.is_none() {
                            delivery.insert(key.as_slice(), pending_state.as_slice())?;
                        }
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<std::convert::Infallible>>(())
                })
                .map_err(|e| match e {
                    TransactionError::Storage(e) => e,
                    TransactionError::Abort(never) => match never {},
                })
        })
    }

    pub(crate) fn outbox_for(
        &self,
        peer: &PublicKey,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.trees()?
            .outbox
            .scan_prefix(peer.as_bytes())
            .take(limit)
            .map(|kv| decode("outbox", &kv?.1))
            .collect()
    }

    /// Removes the entry; returns it if it was there.
    pub(crate) fn outbox_remove(
        &self,
        peer: &PublicKey,
        hash: &ChangeHash,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.write(|t| t.outbox.remove(outbox_key(peer, hash)))?
            .map(|v| decode("outbox", &v))
            .transpose()
    }

    pub(crate) fn outbox_len(&self) -> usize {
        self.trees().map_or(0, |t| t.outbox.len())
    }

    /// Peers with at least one undelivered change.
    pub(crate) fn outbox_peers(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut peers: Vec<PublicKey> = Vec::new();
        for kv in self.trees()?.outbox.iter() {
            let (k, _) = kv?;
            if let Ok(bytes) = <[u8; 32]>::try_from(&k[..32.min(k.len())]) {
                let key = PublicKey::from_bytes(bytes);
                if peers.last() != Some(&key) {
                    peers.push(key);
                }
            }
        }
        Ok(peers)
    }

    /// Sets a recipient's state for a message; states only move forward
    /// (a late "delivered" never hides "read"). Returns whether it changed.
    pub(crate) fn set_delivery(
        &self,
        chat: &ChatId,
        message: &MessageId,
        peer: &PublicKey,
        state: DeliveryState,
    ) -> Result<bool, StoreError> {
        let key = delivery_key(chat, message, peer);
        if let Some(old) = self.writable()?.delivery.get(&key)? {
            let old: DeliveryState = decode("delivery", &old)?;
            if old >= state {
                return Ok(false);
            }
        }
        self.write(|t| t.delivery.insert(key, encode(&state)))?;
        Ok(true)
    }

    /// Queues a read receipt for `author` (sent when connected).
    pub(crate) fn queue_receipt(
        &self,
        author: &PublicKey,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<(), StoreError> {
        let mut key = author.as_bytes().to_vec();
        key.extend_from_slice(chat.as_bytes());
        key.extend_from_slice(message.as_bytes());
        self.write(|t| t.receipts.insert(key, &[]))?;
        Ok(())
    }

    /// Read receipts waiting for `author`, per chat.
    pub(crate) fn receipts_for(
        &self,
        author: &PublicKey,
    ) -> Result<Vec<(ChatId, MessageId)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.trees()?.receipts.scan_prefix(author.as_bytes()) {
            let (k, _) = kv?;
            let (Ok(chat), Ok(message)) = (
                <[u8; 32]>::try_from(&k[32..64.min(k.len())]),
                <[u8; 16]>::try_from(&k[64.min(k.len())..]),
            ) else {
                continue;
            };
            out.push((ChatId::from_bytes(chat), MessageId::from_bytes(message)));
        }
        Ok(out)
    }

    /// Read receipts the author acknowledged.
    pub(crate) fn receipts_sent(
        &self,
        author: &PublicKey,
        sent: &[(ChatId, MessageId)],
    ) -> Result<(), StoreError> {
        for (chat, message) in sent {
            let mut key = author.as_bytes().to_vec();
            key.extend_from_slice(chat.as_bytes());
            key.extend_from_slice(message.as_bytes());
            self.write(|t| t.receipts.remove(key))?;
        }
        Ok(())
    }

    /// Delivery states of one message, per recipient.
    pub(crate) fn delivery(
        &self,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<Vec<(PublicKey, DeliveryState)>, StoreError> {
        let mut prefix = chat.as_bytes().to_vec();
        prefix.extend_from_slice(message.as_bytes());
        self.trees()?
            .delivery
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let peer: [u8; 32] =
                    k[prefix.len()..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            tree: "delivery",
                            message: "bad key".into(),
                        })?;
                Ok((PublicKey::from_bytes(peer), decode("delivery", &v)?))
            })
            .collect()
    }

    /// Records that `relay` holds `message` for `recipient` until `until_ms`.
    pub(crate) fn add_custody(
        &self,
        chat: &ChatId,
        message: &MessageId,
        recipient: &PublicKey,
        relay: &PublicKey,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut key = delivery_key(chat, message, recipient);
        key.extend_from_slice(relay.as_bytes());
        self.write(|t| t.custody.insert(key, &until_ms.to_be_bytes()))?;
        Ok(())
    }

    /// Custody of one message: (recipient, relay, held until).
    pub(crate) fn custody(
        &self,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<Vec<(PublicKey, PublicKey, i64)>, StoreError> {
        let mut prefix = chat.as_bytes().to_vec();
        prefix.extend_from_slice(message.as_bytes());
        let mut out = Vec::new();
        for kv in self.trees()?.custody.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let rest = &k[prefix.len()..];
            let (Ok(recipient), Ok(relay), Ok(until)) = (
                <[u8; 32]>::try_from(&rest[..32.min(rest.len())]),
                <[u8; 32]>::try_from(&rest[32.min(rest.len())..]),
                <[u8; 8]>::try_from(v.as_ref()),
            ) else {
                continue;
            };
            out.push((
                PublicKey::from_bytes(recipient),
                PublicKey::from_bytes(relay),
                i64::from_be_bytes(until),
            ));
        }
        Ok(out)
    }

    /// How many messages by others the user had seen in `chat`.
    pub(crate) fn seen(&self, chat: &ChatId) -> Result<u64, StoreError> {
        Ok(self
            .trees()?
            .reads
            .get(chat.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub(crate) fn set_seen(&self, chat: &ChatId, count: u64) -> Result<(), StoreError> {
        self.write(|t| t.reads.insert(chat.as_bytes(), &count.to_be_bytes()))?;
        Ok(())
    }

    pub(crate) fn put_contact(&self, key: &PublicKey, contact: &Contact) -> Result<(), StoreError> {
        self.write(|t| t.contacts.insert(key.as_bytes(), encode(contact)))?;
        Ok(())
    }

    pub(crate) fn contact(&self, key: &PublicKey) -> Result<Option<Contact>, StoreError> {
        self.trees()?
            .contacts
            .get(key.as_bytes())?
            .map(|v| decode("contacts", &v))
            .transpose()
    }

    pub(crate) fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.trees()?
            .contacts
            .iter()
            .map(|kv| decode("contacts", &kv?.1))
            .collect()
    }

    /// Removes a contact; returns whether there was one.
    pub(crate) fn remove_contact(&self, key: &PublicKey) -> Result<bool, StoreError> {
        Ok(self.write(|t| t.contacts.remove(key.as_bytes()))?.is_some())
    }

    /// Whether the user blocked `key`.
    pub(crate) fn is_blocked(&self, key: &PublicKey) -> bool {
        matches!(self.contact(key), Ok(Some(c)) if c.blocked)
    }

    /// The newest verified profile held for `key` (the node's own included).
    pub(crate) fn profile(&self, key: &PublicKey) -> Result<Option<SignedProfile>, StoreError> {
        self.trees()?
            .profiles
            .get(key.as_bytes())?
            .map(|v| decode("profiles", &v))
            .transpose()
    }

    /// Stores a profile already verified and found newer than the one held.
    pub(crate) fn put_profile(&self, profile: &SignedProfile) -> Result<(), StoreError> {
        self.write(|t| t.profiles.insert(profile.peer.as_bytes(), encode(profile)))?;
        Ok(())
    }

    /// The user's last-seen privacy setting.
    pub(crate) fn last_seen_privacy(&self) -> Result<LastSeenPrivacy, StoreError> {
        Ok(self
            .trees()?
            .settings
            .get(b"last_seen_privacy")?
            .map(|v| decode("settings", &v))
            .transpose()?
            .unwrap_or_default())
    }

    pub(crate) fn set_last_seen_privacy(&self, privacy: LastSeenPrivacy) -> Result<(), StoreError> {
        self.write(|t| t.settings.insert(b"last_seen_privacy", encode(&privacy)))?;
        Ok(())
    }

    /// When this node last heard from `key` (its own clock, ms since the epoch).
    pub(crate) fn last_seen(&self, key: &PublicKey) -> Result<Option<i64>, StoreError> {
        Ok(self
            .trees()?
            .last_seen
            .get(key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// Records hearing from `key` at `at_ms`. Not flushed on its own: losing
    /// the last few seconds of last-seen in a crash is harmless.
    pub(crate) fn set_last_seen(&self, key: &PublicKey, at_ms: i64) -> Result<(), StoreError> {
        self.write(|t| t.last_seen.insert(key.as_bytes(), &at_ms.to_be_bytes()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::{ChatReplica, Identity};

    use super::*;

    #[tokio::test]
    async fn changes_and_outbox_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let alice = Identity::generate();
        let bob = Identity::generate();
        let kind = ChatKind::direct(alice.public(), bob.public());
        let mut chat = ChatReplica::new(kind.clone());
        let written = chat.write_message(&alice, "hello", None, 5).unwrap();
        let hash = written.change.verify().unwrap().hash;
        {
            let store = Store::open(tmp.path()).unwrap();
            store
                .put_chat(
                    &chat.id(),
                    &ChatRecord {
                        kind,
                        created_at_ms: 1,
                    },
                )
                .unwrap();
            let entry = OutboxEntry {
                chat: chat.id(),
                segment: 0,
                hash,
                message: Some(written.message.id),
            };
            store
                .put_local_write(
                    &written.change,
                    hash,
                    &[(bob.public(), entry)],
                    &[(written.message.id, bob.public())],
                )
                .unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.changes_of(&chat.id()).unwrap(), vec![written.change]);
        assert_eq!(store.outbox_peers().unwrap(), vec![bob.public()]);
        assert_eq!(store.outbox_for(&bob.public(), 10).unwrap().len(), 1);
        assert_eq!(
            store.delivery(&chat.id(), &written.message.id).unwrap(),
            vec![(bob.public(), DeliveryState::Pending)]
        );
        assert!(store.outbox_remove(&bob.public(), &hash).unwrap().is_some());
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(store.chats().unwrap().len(), 1);
    }

    fn new_chat(n: i64) -> (ChatId, ChatRecord) {
        let kind = ChatKind::direct(Identity::generate().public(), Identity::generate().public());
        (
            kind.chat_id(),
            ChatRecord {
                kind,
                created_at_ms: n,
            },
        )
    }

    #[test]
    fn a_lost_write_is_not_read_back_before_the_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&tmp.path().join("db")).unwrap();
        let alice = Identity::generate();
        let mut chat = ChatReplica::new(ChatKind::direct(
            alice.public(),
            Identity::generate().public(),
        ));
        let kept = chat.write_message(&alice, "kept", None, 1).unwrap();
        let lost = chat.write_message(&alice, "lost", None, 2).unwrap();
        store
            .put_changes([(&kept.change, kept.hash), (&lost.change, lost.hash)])
            .unwrap();
        store.write_lost(&lost.change, &lost.hash);
        let id = chat.id();
        assert_eq!(store.changes_of(&id).unwrap(), vec![kept.change.clone()]);
        // After a reopen the database holds what reached its disk; here both
        // did (sled wrote them when it closed), so both are read again.
        store.reopen().unwrap();
        assert_eq!(store.changes_of(&id).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_full_disk_pauses_writes_and_a_reopen_drops_what_never_reached_it() {
        let Some(disk) = crate::disk::SmallDisk::mount(8) else {
            return;
        };
        let mut store = Store::open(&disk.path().join("db")).unwrap();
        let (first, record) = new_chat(0);
        store.put_chat(&first, &record).unwrap();
        store.flush().await.unwrap();
        disk.fill();
        // Writes go on while sled finds room in pages it already has; every
        // one acknowledged (flushed) must survive.
        let mut acknowledged = Vec::new();
        let (failed, error) = loop {
            let (id, record) = new_chat(acknowledged.len() as i64 + 1);
            store.put_chat(&id, &record).unwrap();
            match store.flush().await {
                Ok(()) => acknowledged.push(id),
                Err(error) => break (id, error),
            }
            assert!(acknowledged.len() < 10_000, "the disk never filled");
        };
        let StoreError::Unavailable(fault) = error else {
            panic!("not reported as a storage fault: {error}");
        };
        assert_eq!(fault.state, crate::disk::StorageState::Full);
        assert_eq!(
            fault.to_string(),
            format!(
                "disk full in {}: free space, meshchat recovers by itself",
                disk.path().display()
            )
        );
        assert_eq!(store.fault(), Some(fault));
        assert!(store.needs_reopen());
        // Writes are refused up front; reads are served.
        let (other, record) = new_chat(-1);
        assert!(matches!(
            store.put_chat(&other, &record),
            Err(StoreError::Unavailable(_))
        ));
        assert!(store.chat(&first).unwrap().is_some());

        disk.free();
        store.reopen().unwrap();
        assert!(
            store.chat(&failed).unwrap().is_none(),
            "a write that never reached the disk is still served"
        );
        assert!(store.chat(&first).unwrap().is_some());
        for id in &acknowledged {
            assert!(store.chat(id).unwrap().is_some(), "acknowledged write lost");
        }
        // Still refused until a probe write gets through.
        assert!(store.put_chat(&other, &record).is_err());
        store.resume().await.unwrap();
        assert_eq!(store.fault(), None);
        store.put_chat(&other, &record).unwrap();
        store.flush().await.unwrap();
    }

    #[tokio::test]
    async fn an_unfinished_snapshot_does_not_stop_the_database_opening() {
        let tmp = tempfile::tempdir().unwrap();
        let (id, record) = new_chat(1);
        {
            let store = Store::open(tmp.path()).unwrap();
            store.put_chat(&id, &record).unwrap();
            store.flush().await.unwrap();
        }
        // What a process killed while sled wrote a snapshot leaves behind.
        std::fs::write(
            tmp.path().join("snap.FFFFFFFFFFFFFFFF.generating"),
            b"half a snapshot",
        )
        .unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.chat(&id).unwrap(), Some(record));
    }
}

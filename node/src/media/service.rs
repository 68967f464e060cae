//! The blob service: an iroh endpoint serving iroh-blobs from a file store in
//! the data dir (`blobs/`), a downloader that tries sources in order and
//! resumes from whatever is already stored, and the access interceptor.
//! Protocols built on this handle (the relay cache) are added to its router
//! by whoever starts it (`start.rs`); the service knows none of them.

use std::{path::Path, sync::Arc, time::Duration};

use futures::StreamExt;
use iroh::{
    address_lookup::MemoryLookup,
    protocol::{Router, RouterBuilder},
    Endpoint, EndpointId,
};
use iroh_blobs::{
    api::{downloader::DownloadProgressItem, proto::BlobStatus, Store},
    store::{
        fs::{options::Options, FsStore},
        GcConfig,
    },
    BlobsProtocol, Hash, HashAndFormat,
};
use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::Identity;
use tokio::task::JoinHandle;

use super::{
    access::{interceptor, Access},
    config::BlobConfig,
    endpoint, BlobError,
};

/// How often unreferenced blobs are deleted.
const GC_INTERVAL: Duration = Duration::from_secs(600);
/// How long a connection to a source may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Tag prefix of blobs referenced by messages.
pub(crate) const ATTACHMENT_TAG: &str = "att/";
/// Tag prefix of blobs anyone may fetch (profile pictures).
pub(crate) const PUBLIC_TAG: &str = "pub/";
/// Tag prefix of collections shared with a ticket (served to anyone).
pub(crate) const SHARE_TAG: &str = "share/";

/// Progress of one download, reported as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Asking this source; `stored` bytes were already here (a resume when > 0).
    Trying { source: EndpointId, stored: u64 },
    /// The source failed, refused, or sent data that did not verify.
    SourceFailed { source: EndpointId },
    /// Bytes verified and stored so far.
    Progress { done: u64 },
}

struct Inner {
    store: FsStore,
    endpoint: Endpoint,
    /// Set once by [`Blobs::serve`] (the protocols it runs need the
    /// finished handle).
    router: std::sync::OnceLock<Router>,
    /// When received files download by themselves (changeable at run time).
    auto: std::sync::RwLock<super::AutoDownload>,
    downloader: iroh_blobs::api::downloader::Downloader,
    lookup: MemoryLookup,
    access: Access,
    config: BlobConfig,
    /// This node's relays: the last sources to ask.
    relays: Vec<EndpointId>,
    /// Peers whose blob address was learned, with how many times (to wait
    /// for a first or a fresh address).
    known: tokio::sync::watch::Sender<std::collections::HashMap<EndpointId, u64>>,
    interceptor: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.interceptor.abort();
    }
}

/// Handle to the blob service; cheap to clone.
#[derive(Clone)]
pub(crate) struct Blobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("id", &self.inner.endpoint.id())
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// Opens the store under `root`, with a router that serves iroh-blobs:
    /// add any other protocol to it, then hand it to [`Blobs::serve`].
    pub(crate) async fn open(
        root: &Path,
        identity: &Identity,
        config: BlobConfig,
        relays: &[PeerId],
    ) -> Result<(Self, RouterBuilder), BlobError> {
        std::fs::create_dir_all(root).map_err(|e| BlobError::Store(e.to_string()))?;
        let mut options = Options::new(root);
        options.gc = Some(GcConfig {
            interval: GC_INTERVAL,
            add_protected: None,
        });
        let store = FsStore::load_with_opts(root.join("blobs.db"), options)
            .await
            .map_err(|e| BlobError::Store(format!("opening {}: {e}", root.display())))?;
        let lookup = MemoryLookup::new();
        let endpoint = endpoint::bind(identity, &config, &lookup)
            .await
            .map_err(BlobError::Network)?;
        let access = Access::new(identity.public());
        let (events, interceptor) = interceptor(access.clone(), config.serve_bytes_per_sec);
        let protocol = BlobsProtocol::new(&store, Some(events));
        let mut pool = iroh_blobs::util::connection_pool::Options::default();
        // iroh's 1 s default is short when a peer just restarted on a new
        // port (the old path must time out first) or sits across the internet.
        pool.connect_timeout = CONNECT_TIMEOUT;
        let downloader = iroh_blobs::api::downloader::Downloader::builder(&store, &endpoint)
            .pool_options(pool)
            .build();
        let blobs = Self {
            inner: Arc::new(Inner {
                store,
                endpoint: endpoint.clone(),
                router: std::sync::OnceLock::new(),
                auto: std::sync::RwLock::new(super::AutoDownload::from(&config)),
                downloader,
                lookup,
                access,
                config,
                relays: relays.iter().filter_map(endpoint::endpoint_of).collect(),
                known: tokio::sync::watch::Sender::new(Default::default()),
                interceptor,
            }),
        };
        blobs.load_public().await;
        let router = Router::builder(endpoint).accept(iroh_blobs::ALPN, protocol);
        Ok((blobs, router))
    }

    /// Starts serving `router` (from [`Blobs::open`]); it stops at
    /// [`Blobs::shutdown`].
    pub(crate) fn serve(&self, router: RouterBuilder) {
        let _ = self.inner.router.set(router.spawn());
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub(crate) fn access(&self) -> &Access {
        &self.inner.access
    }

    pub(crate) fn config(&self) -> &BlobConfig {
        &self.inner.config
    }

    /// When received files download by themselves, now.
    pub(crate) fn auto_download(&self) -> super::AutoDownload {
        match self.inner.auto.read() {
            Ok(policy) => *policy,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Changes when received files download by themselves.
    pub(crate) fn set_auto_download(&self, policy: super::AutoDownload) {
        match self.inner.auto.write() {
            Ok(mut current) => *current = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// This node's relays (sources of last resort).
    pub(crate) fn relays(&self) -> &[EndpointId] {
        &self.inner.relays
    }

    /// The UDP port peers reach this node's blobs at.
    pub(crate) fn port(&self) -> Option<u16> {
        self.endpoint().bound_sockets().first().map(|s| s.port())
    }

    /// Learns a peer's iroh address from what libp2p identify told us.
    pub(crate) fn learn_peer(&self, peer: &PeerId, agent: &str, addrs: &[Multiaddr]) {
        let (Some(id), Some(port)) = (endpoint::endpoint_of(peer), endpoint::port_in_agent(agent))
        else {
            return;
        };
        let sockets = endpoint::socket_addrs(port, addrs);
        if sockets.is_empty() {
            return;
        }
        endpoint::remember(&self.inner.lookup, id, sockets);
        self.inner.known.send_modify(|known| {
            *known.entry(id).or_default() += 1;
        });
    }

    /// Changes whenever a peer's blob address is learned.
    pub(crate) fn subscribe_known(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::HashMap<EndpointId, u64>> {
        self.inner.known.subscribe()
    }

    /// How many times `id`'s blob address was learned so far.
    pub(crate) fn learned(&self, id: &EndpointId) -> u64 {
        self.inner.known.borrow().get(id).copied().unwrap_or(0)
    }

    /// Waits (at most `limit`) until `id`'s blob address was learned more
    /// than `seen` times; whether it was.
    pub(crate) async fn wait_learned(&self, id: EndpointId, seen: u64, limit: Duration) -> bool {
        let mut known = self.inner.known.subscribe();
        tokio::time::timeout(
            limit,
            known.wait_for(|k| k.get(&id).is_some_and(|n| *n > seen)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Waits (at most `limit`) until `id`'s blob address is known; whether it is.
    pub(crate) async fn wait_known(&self, id: EndpointId, limit: Duration) -> bool {
        self.wait_learned(id, 0, limit).await
    }

    /// Remembers an address given directly (a ticket).
    pub(crate) fn remember_addr(&self, addr: iroh::EndpointAddr) {
        let id = addr.id;
        self.inner.lookup.add_endpoint_info(addr);
        self.inner.known.send_modify(|known| {
            *known.entry(id).or_default() += 1;
        });
    }

    /// Refuses sizes above the configured maximum.
    pub(crate) fn check_size(&self, size: u64) -> Result<(), BlobError> {
        let max = self.inner.config.max_file_bytes;
        if size > max {
            return Err(BlobError::TooLarge { size, max });
        }
        Ok(())
    }

    /// Imports a file (hashed with BLAKE3; stored once however often it is
    /// imported) and keeps it under an attachment tag.
    pub(crate) async fn import(&self, path: &Path) -> Result<(Hash, u64), BlobError> {
        let path = self.readable_file(path).await?;
        let temp = self
            .store()
            .blobs()
            .add_path(&path)
            .temp_tag()
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?;
        let hash = temp.hash();
        self.keep(hash).await?;
        let size = self
            .complete_size(hash)
            .await?
            .ok_or_else(|| BlobError::Store(format!("blob {hash} incomplete after import")))?;
        Ok((hash, size))
    }

    /// `path` made absolute, if it is a file within the size limit.
    pub(crate) async fn readable_file(&self, path: &Path) -> Result<std::path::PathBuf, BlobError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| BlobError::File(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(BlobError::File(format!("{} is not a file", path.display())));
        }
        self.check_size(meta.len())?;
        std::path::absolute(path).map_err(|e| BlobError::File(e.to_string()))
    }

    /// Serves `hash` to anyone, across restarts, and keeps it out of
    /// garbage collection (profile pictures).
    pub(crate) async fn keep_public(&self, hash: Hash) -> Result<(), BlobError> {
        self.store()
            .tags()
            .set(format!("{PUBLIC_TAG}{hash}"), HashAndFormat::raw(hash))
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?;
        self.access().make_public(hash);
        Ok(())
    }

    /// Marks every blob kept public before a restart as public again.
    pub(crate) async fn restore_public(&self) -> Result<(), BlobError> {
        let tags = self
            .store()
            .tags()
            .list_prefix(PUBLIC_TAG)
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?;
        let tags: Vec<_> = tags.collect().await;
        for tag in tags.into_iter().flatten() {
            self.access().make_public(tag.hash);
        }
        Ok(())
    }

    /// Keeps `hash` (complete or not) out of garbage collection.
    pub(crate) async fn keep(&self, hash: Hash) -> Result<(), BlobError> {
        self.store()
            .tags()
            .set(format!("{ATTACHMENT_TAG}{hash}"), HashAndFormat::raw(hash))
            .await
            .map_err(|e| BlobError::Store(e.to_string()))
    }

    /// The size of `hash` if it is stored completely.
    pub(crate) async fn complete_size(&self, hash: Hash) -> Result<Option<u64>, BlobError> {
        match self.store().blobs().status(hash).await {
            Ok(BlobStatus::Complete { size }) => Ok(Some(size)),
            Ok(_) => Ok(None),
            Err(e) => Err(BlobError::Store(e.to_string())),
        }
    }

    /// Bytes of `content` already stored (verified).
    pub(crate) async fn stored_bytes(&self, content: HashAndFormat) -> u64 {
        match self.store().remote().local(content).await {
            Ok(info) => info.local_bytes(),
            Err(_) => 0,
        }
    }

    /// Downloads `content` from the first of `sources` that serves it,
    /// resuming from the bytes already stored and from one source to the
    /// next. Data is verified as it arrives; a source sending bad data is
    /// dropped. Fails with `TooLarge` as soon as more than `max` bytes arrive.
    pub(crate) async fn download(
        &self,
        content: HashAndFormat,
        sources: Vec<EndpointId>,
        max: u64,
        mut progress: impl FnMut(Step),
    ) -> Result<(), BlobError> {
        let me = self.endpoint().id();
        let sources: Vec<EndpointId> = sources.into_iter().filter(|s| *s != me).collect();
        if sources.is_empty() {
            return Err(BlobError::Unavailable(content.hash.to_string()));
        }
        let mut stream = self
            .inner
            .downloader
            .download(content, sources)
            .stream()
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?;
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                DownloadProgressItem::TryProvider { id, .. } => {
                    let stored = self.stored_bytes(content).await;
                    progress(Step::Trying { source: id, stored });
                }
                DownloadProgressItem::ProviderFailed { id, .. } => {
                    tracing::debug!(hash = %content.hash, source = %id, "source failed");
                    progress(Step::SourceFailed { source: id });
                }
                DownloadProgressItem::Progress(done) => {
                    if done > max {
                        return Err(BlobError::TooLarge { size: done, max });
                    }
                    progress(Step::Progress { done });
                }
                DownloadProgressItem::PartComplete { .. } => {}
                DownloadProgressItem::Error(e) => {
                    tracing::debug!(error = %e, "download failed");
                    failed = true;
                }
                DownloadProgressItem::DownloadError => failed = true,
            }
        }
        let complete = match content.format {
            iroh_blobs::BlobFormat::Raw => self.complete_size(content.hash).await?.is_some(),
            iroh_blobs::BlobFormat::HashSeq => !failed,
        };
        if failed || !complete {
            return Err(BlobError::Unavailable(content.hash.to_string()));
        }
        Ok(())
    }

    /// Copies a complete, verified blob to `target`.
    pub(crate) async fn export(&self, hash: Hash, target: &Path) -> Result<u64, BlobError> {
        if self.complete_size(hash).await?.is_none() {
            return Err(BlobError::NotDownloaded(hash.to_string()));
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| BlobError::File(format!("{}: {e}", parent.display())))?;
        }
        let target = std::path::absolute(target).map_err(|e| BlobError::File(e.to_string()))?;
        self.store()
            .blobs()
            .export(hash, &target)
            .finish()
            .await
            .map_err(|e| BlobError::File(format!("{}: {e}", target.display())))
    }

    /// Deletes the tags of attachments no chat references any more; garbage
    /// collection then frees their bytes.
    pub(crate) async fn release_unreferenced(&self) -> Result<usize, BlobError> {
        let tags = self
            .store()
            .tags()
            .list_prefix(ATTACHMENT_TAG)
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?;
        let tags: Vec<_> = tags.collect().await;
        let mut released = 0;
        for tag in tags.into_iter().flatten() {
            if !self.access().is_referenced(&tag.hash) {
                self.store()
                    .tags()
                    .delete(&tag.name)
                    .await
                    .map_err(|e| BlobError::Store(e.to_string()))?;
                released += 1;
            }
        }
        Ok(released)
    }

    /// Reloads the blobs shared with tickets.
    async fn load_public(&self) {
        let Ok(tags) = self.store().tags().list_prefix(SHARE_TAG).await else {
            return;
        };
        let tags: Vec<_> = tags.collect().await;
        for tag in tags.into_iter().flatten() {
            match tag.format {
                iroh_blobs::BlobFormat::HashSeq => self.access().make_public_collection(tag.hash),
                iroh_blobs::BlobFormat::Raw => self.access().make_public(tag.hash),
            }
        }
    }

    /// Stops serving and closes the store (the blobs protocol closes it
    /// when the router shuts down).
    pub(crate) async fn shutdown(&self) {
        match self.inner.router.get() {
            Some(router) => {
                if let Err(error) = router.shutdown().await {
                    tracing::warn!(%error, "blob router shutdown");
                }
            }
            None => {
                self.inner.endpoint.close().await;
                if let Err(error) = self.inner.store.shutdown().await {
                    tracing::warn!(%error, "blob store shutdown");
                }
            }
        }
    }
}

//! Starting a node's blobs: the service and, on a relay, the cache it keeps
//! for offline peers, served side by side on the one endpoint.

use std::path::Path;

use libp2p::PeerId;
use meshchat_crdt::Identity;

use super::{config::BlobConfig, relay_cache, service::Blobs, BlobError};
use crate::{
    mailbox::{MailboxConfig, MailboxStore},
    store::DbHandle,
};

/// Opens the store under `root` and starts serving. A relay passes its
/// mailbox limits and the database holding its mailboxes: it then also
/// holds blobs for offline recipients (`/meshchat/blob-cache/1`).
pub(crate) async fn start(
    root: &Path,
    identity: &Identity,
    config: BlobConfig,
    relays: &[PeerId],
    relay: Option<(MailboxConfig, DbHandle)>,
) -> Result<Blobs, BlobError> {
    let (blobs, mut router) = Blobs::open(root, identity, config, relays).await?;
    if let Some((limits, db)) = relay {
        let mail = MailboxStore::open(db)
            .map_err(|e| BlobError::Store(format!("opening the mailboxes: {e}")))?;
        let cache = relay_cache::CacheService::new(blobs.clone(), limits, mail).await;
        router = router.accept(relay_cache::ALPN, cache);
    }
    blobs.serve(router);
    Ok(blobs)
}

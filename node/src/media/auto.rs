//! The disk budget of auto-downloaded files, kept across restarts: each
//! admitted file carries a tag `auto/<sender>/<size>/<hash>` in the blob
//! store (which also keeps its bytes from garbage collection), and the
//! budget is rebuilt from those tags at start.

use futures::StreamExt;
use iroh_blobs::{Hash, HashAndFormat};
use meshchat_crdt::PublicKey;

use super::{
    policy::{AutoDownload, Budget, SkipReason},
    service::Blobs,
    BlobError,
};

/// Tag prefix of auto-downloaded blobs.
const AUTO_TAG: &str = "auto/";

/// One admitted file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Admitted {
    sender: PublicKey,
    size: u64,
    hash: Hash,
}

impl Admitted {
    fn tag(&self) -> String {
        format!("{AUTO_TAG}{}/{}/{}", self.sender, self.size, self.hash)
    }

    fn parse(tag: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(tag).ok()?.strip_prefix(AUTO_TAG)?;
        let mut parts = text.split('/');
        let admitted = Self {
            sender: parts.next()?.parse().ok()?,
            size: parts.next()?.parse().ok()?,
            hash: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(admitted)
    }
}

async fn admitted(blobs: &Blobs) -> Result<Vec<Admitted>, BlobError> {
    let tags = blobs
        .store()
        .tags()
        .list_prefix(AUTO_TAG)
        .await
        .map_err(|e| BlobError::Store(e.to_string()))?;
    let tags: Vec<_> = tags.collect().await;
    Ok(tags
        .into_iter()
        .flatten()
        .filter_map(|t| Admitted::parse(t.name.as_ref()))
        .collect())
}

/// The budget as the tags left it.
pub(crate) async fn load(blobs: &Blobs) -> Result<Budget, BlobError> {
    let mut budget = Budget::default();
    for a in admitted(blobs).await? {
        budget.restore(a.hash, a.sender, a.size);
    }
    Ok(budget)
}

/// Charges a file to the budget and records it on disk.
pub(crate) async fn admit(
    blobs: &Blobs,
    budget: &mut Budget,
    policy: &AutoDownload,
    hash: Hash,
    sender: PublicKey,
    size: u64,
) -> Result<(), SkipReason> {
    if budget.contains(&hash) {
        return Ok(());
    }
    budget.admit(policy, hash, sender, size)?;
    let admitted = Admitted { sender, size, hash };
    let stored = blobs
        .store()
        .tags()
        .set(admitted.tag(), HashAndFormat::raw(hash))
        .await;
    if let Err(error) = stored {
        tracing::warn!(%error, %hash, "cannot record an auto-download");
        budget.release(&hash);
        return Err(SkipReason::Storage);
    }
    Ok(())
}

/// Gives back the budget of files no message references any more.
pub(crate) async fn release_unreferenced(
    blobs: &Blobs,
    budget: &mut Budget,
) -> Result<(), BlobError> {
    for a in admitted(blobs).await? {
        if !blobs.access().is_referenced(&a.hash) {
            blobs
                .store()
                .tags()
                .delete(a.tag())
                .await
                .map_err(|e| BlobError::Store(e.to_string()))?;
            budget.release(&a.hash);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tags_round_trip_and_garbage_is_ignored() {
        let a = Admitted {
            sender: PublicKey::from_bytes([4; 32]),
            size: 1234,
            hash: Hash::new(b"x"),
        };
        assert_eq!(Admitted::parse(a.tag().as_bytes()), Some(a));
        for bad in ["auto/", "auto/1/2/3", "att/x", "auto/a/b/c/d"] {
            assert_eq!(Admitted::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}

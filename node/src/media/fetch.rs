//! Fetching a message's file: sources in order (the author, the other
//! members, this node's relays), progress reported as [`Event::File`].

use super::status::FileStatus;
use iroh::EndpointId;
use iroh_blobs::HashAndFormat;
use meshchat_crdt::{BlobHash, PublicKey};
use tokio::sync::broadcast;

use super::{
    endpoint::{endpoint_of_key, key_of_endpoint},
    index::FileMessage,
    iroh_hash,
    service::{Blobs, Step},
    BlobError,
};
use crate::events::Event;

/// Progress events are sent at most this many times per download.
const PROGRESS_STEPS: u64 = 100;

/// The sources of a chat file, best first: the author, the other members,
/// then this node's relays.
pub(crate) fn sources(
    blobs: &Blobs,
    author: &PublicKey,
    members: impl IntoIterator<Item = PublicKey>,
) -> Vec<EndpointId> {
    let mut out: Vec<EndpointId> = Vec::new();
    let mut push = |id: Option<EndpointId>| {
        if let Some(id) = id.filter(|id| !out.contains(id)) {
            out.push(id);
        }
    };
    push(endpoint_of_key(author));
    let mut members: Vec<PublicKey> = members.into_iter().collect();
    members.sort();
    for member in members {
        push(endpoint_of_key(&member));
    }
    for relay in blobs.relays() {
        push(Some(*relay));
    }
    out
}

/// Downloads `file` from `sources`, emitting progress on `events`.
pub(crate) async fn fetch_file(
    blobs: &Blobs,
    events: &broadcast::Sender<Event>,
    file: &FileMessage,
    sources: Vec<EndpointId>,
) -> Result<u64, BlobError> {
    let hash = file.attachment.hash;
    let emit = |status: FileStatus| {
        let _ = events.send(Event::File {
            hash,
            chat: Some(file.chat),
            message: Some(file.message.id),
            status,
        });
    };
    let result = fetch_hash(blobs, hash, file.attachment.size, sources, &emit).await;
    match &result {
        Ok(size) => emit(FileStatus::Ready { size: *size }),
        Err(e) => emit(FileStatus::Failed {
            reason: e.to_string(),
        }),
    }
    result
}

/// Downloads blob `hash` of `size` bytes from `sources`; `emit` sees progress.
pub(crate) async fn fetch_hash(
    blobs: &Blobs,
    hash: BlobHash,
    size: u64,
    sources: Vec<EndpointId>,
    emit: &(dyn Fn(FileStatus) + Sync),
) -> Result<u64, BlobError> {
    blobs.check_size(size)?;
    let raw = iroh_hash(&hash);
    if let Some(size) = blobs.complete_size(raw).await? {
        return Ok(size);
    }
    blobs.keep(raw).await?;
    let step = (size / PROGRESS_STEPS).max(1);
    let mut last_reported = 0;
    blobs
        .download(HashAndFormat::raw(raw), sources, size, |s| match s {
            Step::Trying { source, stored } => emit(FileStatus::Trying {
                source: key_of_endpoint(&source),
                stored,
            }),
            Step::SourceFailed { source } => emit(FileStatus::SourceFailed {
                source: key_of_endpoint(&source),
            }),
            Step::Progress { done } => {
                if done >= last_reported + step || done == size {
                    last_reported = done;
                    emit(FileStatus::Progress { done, total: size });
                }
            }
        })
        .await?;
    blobs
        .complete_size(raw)
        .await?
        .ok_or_else(|| BlobError::Unavailable(hash.to_string()))
}

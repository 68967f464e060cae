//! The relay's blob cache: when a recipient is offline, its sender asks the
//! recipient's relays to hold the blob, so the recipient gets it without the
//! sender online.
//!
//! Protocol `/meshchat/blob-cache/1` on the relay's iroh endpoint: the sender
//! opens a stream and writes one CBOR [`CacheRequest`]; the relay checks its
//! limits, pulls the blob from the sender with iroh-blobs (the sender serves
//! it because the relay is one of a member's relays), keeps it under a tag
//! `relay/<expiry ms>/<recipient>/<hash>` and answers with a [`CacheResponse`].
//! The relay then serves the blob to that recipient only, until it expires.

use std::time::Duration;

use futures::StreamExt;
use iroh::{endpoint::Connection, protocol::AcceptError, EndpointId};
use iroh_blobs::{Hash, HashAndFormat};
use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::{endpoint::key_of_endpoint, service::Blobs, BlobError};
use crate::mailbox::MailboxConfig;

/// The protocol's ALPN.
pub(crate) const ALPN: &[u8] = b"/meshchat/blob-cache/1";
/// Largest request or response accepted, in bytes.
const MAX_FRAME_BYTES: usize = 1024;
/// Longest wait to learn a requesting sender's blob address.
const SENDER_ADDRESS_WAIT: Duration = Duration::from_secs(10);
/// Tag prefix of blobs held for others.
const RELAY_TAG: &str = "relay/";

/// A sender's request to a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CacheRequest {
    /// Version 1.
    V1 {
        /// The blob.
        #[serde(with = "serde_bytes")]
        hash: [u8; 32],
        /// Its size as announced.
        size: u64,
        /// The offline recipient it is for.
        recipient: PublicKey,
    },
}

/// The relay's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CacheResponse {
    /// Stored and verified; held until `expires_at_ms`.
    Stored {
        /// When the relay deletes it.
        expires_at_ms: i64,
    },
    /// Not stored.
    Refused {
        /// Why.
        reason: String,
    },
}

/// One blob held for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    expires_at_ms: i64,
    recipient: PublicKey,
    hash: Hash,
}

impl Held {
    fn tag(&self) -> String {
        format!(
            "{RELAY_TAG}{:016}/{}/{}",
            self.expires_at_ms, self.recipient, self.hash
        )
    }

    fn parse(tag: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(tag).ok()?.strip_prefix(RELAY_TAG)?;
        let mut parts = text.split('/');
        let held = Self {
            expires_at_ms: parts.next()?.parse().ok()?,
            recipient: parts.next()?.parse().ok()?,
            hash: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(held)
    }
}

/// The relay side of the protocol.
#[derive(Debug, Clone)]
pub(crate) struct CacheService {
    blobs: Blobs,
    limits: MailboxConfig,
    /// One request judged at a time, so two cannot both fit the last space.
    admit: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl CacheService {
    /// Starts holding blobs with `limits`, reloading what is held already.
    pub(crate) async fn new(blobs: Blobs, limits: MailboxConfig) -> Self {
        let service = Self {
            blobs,
            limits,
            admit: Default::default(),
        };
        for held in service.held().await {
            service.blobs.access().hold_for(held.recipient, held.hash);
        }
        service
    }

    async fn held(&self) -> Vec<Held> {
        let Ok(tags) = self.blobs.store().tags().list_prefix(RELAY_TAG).await else {
            return Vec::new();
        };
        let tags: Vec<_> = tags.collect().await;
        tags.into_iter()
            .flatten()
            .filter_map(|t| Held::parse(t.name.as_ref()))
            .collect()
    }

    /// Bytes held now (each blob once, however many recipients).
    async fn used_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for held in self.held().await {
            if seen.insert(held.hash) {
                total += self
                    .blobs
                    .complete_size(held.hash)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0);
            }
        }
        total
    }

    /// Deletes blobs past their retention; returns how many.
    pub(crate) async fn expire(&self, now_ms: i64) -> usize {
        let mut expired = 0;
        for held in self.held().await {
            if held.expires_at_ms <= now_ms {
                self.blobs.access().release_for(&held.recipient, &held.hash);
                if self.blobs.store().tags().delete(held.tag()).await.is_ok() {
                    expired += 1;
                }
            }
        }
        expired
    }

    async fn handle(&self, from: EndpointId, request: CacheRequest) -> CacheResponse {
        let CacheRequest::V1 {
            hash,
            size,
            recipient,
        } = request;
        let hash = Hash::from_bytes(hash);
        let now = crate::actor::now_ms();
        let expires_at_ms = now.saturating_add(
            i64::try_from(self.limits.blob_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let guard = self.admit.lock().await;
        self.expire(now).await;
        if size > self.limits.blob_cache_bytes {
            return refused(format!(
                "blob is {size} bytes; this relay caches at most {}",
                self.limits.blob_cache_bytes
            ));
        }
        let have = self.blobs.complete_size(hash).await.ok().flatten();
        if have.is_none()
            && self.used_bytes().await.saturating_add(size) > self.limits.blob_cache_bytes
        {
            return refused("the relay's blob cache is full".into());
        }
        let held = Held {
            expires_at_ms,
            recipient,
            hash,
        };
        // Tag first so garbage collection never takes a half-fetched blob.
        if let Err(e) = self
            .blobs
            .store()
            .tags()
            .set(held.tag(), HashAndFormat::raw(hash))
            .await
        {
            return refused(format!("storage: {e}"));
        }
        drop(guard);
        if have.is_none() {
            // The sender reached us over libp2p first; its identify may still be in flight.
            self.blobs.wait_known(from, SENDER_ADDRESS_WAIT).await;
            let fetched = self
                .blobs
                .download(HashAndFormat::raw(hash), vec![from], size, |_| {})
                .await;
            if let Err(e) = fetched {
                let _ = self.blobs.store().tags().delete(held.tag()).await;
                return refused(format!("could not fetch the blob from the sender: {e}"));
            }
        }
        self.blobs.access().hold_for(recipient, hash);
        tracing::info!(%recipient, %hash, size, "holding a blob for an offline peer");
        CacheResponse::Stored { expires_at_ms }
    }
}

fn refused(reason: String) -> CacheResponse {
    CacheResponse::Refused { reason }
}

impl iroh::protocol::ProtocolHandler for CacheService {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let from = connection.remote_id();
        let (mut send, mut recv) = connection
            .accept_bi()
            .await
            .map_err(AcceptError::from_err)?;
        let bytes = recv
            .read_to_end(MAX_FRAME_BYTES)
            .await
            .map_err(AcceptError::from_err)?;
        let response = match ciborium::from_reader::<CacheRequest, _>(bytes.as_slice()) {
            Ok(request) => self.handle(from, request).await,
            Err(e) => refused(format!("malformed request: {e}")),
        };
        let mut out = Vec::new();
        ciborium::into_writer(&response, &mut out).map_err(AcceptError::from_err)?;
        send.write_all(&out).await.map_err(AcceptError::from_err)?;
        send.finish().map_err(AcceptError::from_err)?;
        connection.closed().await;
        Ok(())
    }
}

/// Asks `relay` to hold `hash` for `recipient`; waits until it is stored.
pub(crate) async fn ask_relay(
    blobs: &Blobs,
    relay: EndpointId,
    hash: Hash,
    size: u64,
    recipient: PublicKey,
    limit: Duration,
) -> Result<i64, BlobError> {
    let request = CacheRequest::V1 {
        hash: *hash.as_bytes(),
        size,
        recipient,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&request, &mut bytes).map_err(|e| BlobError::Store(e.to_string()))?;
    let exchange = async {
        let connection =
            blobs.endpoint().connect(relay, ALPN).await.map_err(|e| {
                BlobError::Network(format!("relay {}: {e}", key_of_endpoint(&relay)))
            })?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| BlobError::Network(e.to_string()))?;
        send.write_all(&bytes)
            .await
            .map_err(|e| BlobError::Network(e.to_string()))?;
        send.finish()
            .map_err(|e| BlobError::Network(e.to_string()))?;
        let answer = recv
            .read_to_end(MAX_FRAME_BYTES)
            .await
            .map_err(|e| BlobError::Network(e.to_string()))?;
        connection.close(0u32.into(), b"done");
        ciborium::from_reader::<CacheResponse, _>(answer.as_slice())
            .map_err(|e| BlobError::Network(format!("malformed relay answer: {e}")))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(CacheResponse::Stored { expires_at_ms })) => Ok(expires_at_ms),
        Ok(Ok(CacheResponse::Refused { reason })) => Err(BlobError::Network(format!(
            "relay refused the blob: {reason}"
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BlobError::Network(
            "the relay did not answer in time".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tags_round_trip_and_garbage_is_ignored() {
        let held = Held {
            expires_at_ms: 1_700_000_000_000,
            recipient: PublicKey::from_bytes([3; 32]),
            hash: Hash::new(b"x"),
        };
        assert_eq!(Held::parse(held.tag().as_bytes()), Some(held));
        for bad in ["relay/", "relay/1/2/3", "att/x", "relay/1/2/3/4"] {
            assert_eq!(Held::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn requests_decode_only_from_their_own_encoding() {
        let request = CacheRequest::V1 {
            hash: [1; 32],
            size: 5,
            recipient: PublicKey::from_bytes([2; 32]),
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&request, &mut bytes).unwrap();
        assert_eq!(
            ciborium::from_reader::<CacheRequest, _>(bytes.as_slice()).unwrap(),
            request
        );
        assert!(ciborium::from_reader::<CacheRequest, _>(&[0xff, 0x00, 0x13][..]).is_err());
    }
}

//! The relay's blob cache: when a recipient is offline, its sender asks the
//! recipient's relays to hold the blob, so the recipient gets it without the
//! sender online.
//!
//! Protocol `/meshchat/blob-cache/1` on the relay's iroh endpoint: the sender
//! opens a stream and writes one CBOR [`CacheRequest`]; the relay checks the
//! request's proof and its limits, pulls the blob from the sender with
//! iroh-blobs (the sender lets it, for this blob, while it waits for the
//! answer), keeps it under a tag `relay/<expiry ms>/<recipient>/<hash>` and
//! answers with a [`CacheResponse`]. The relay then serves the blob to that
//! recipient only, until it expires.
//!
//! Proof ([`super::relay_proof`]): the recipient's mailbox must hold mail
//! from the sender attaching the blob, and the sender must show it has the
//! bytes. Space: bytes are reserved before a download starts and released
//! if it fails, so concurrent requests never exceed `blob_cache_bytes`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use iroh::{endpoint::Connection, protocol::AcceptError, EndpointId};
use iroh_blobs::{Hash, HashAndFormat};
use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::{endpoint::key_of_endpoint, relay_proof, service::Blobs, BlobError};
use crate::mailbox::{MailboxConfig, MailboxStore};

/// The protocol's ALPN.
pub(crate) const ALPN: &[u8] = b"/meshchat/blob-cache/1";
/// Largest request or response accepted, in bytes.
const MAX_FRAME_BYTES: usize = 1024;
/// Longest wait to learn a requesting sender's blob address.
const SENDER_ADDRESS_WAIT: Duration = Duration::from_secs(10);
/// Tag prefix of blobs held for others.
const RELAY_TAG: &str = "relay/";
/// Proofs checked at once (each reads the recipient's mailbox).
const CONCURRENT_PROOFS: usize = 4;

/// A sender's request to a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CacheRequest {
    /// Version 1, without proof: refused with a reason (kept so an old
    /// sender learns why).
    V1 {
        /// The blob.
        #[serde(with = "serde_bytes")]
        hash: [u8; 32],
        /// Its size as announced.
        size: u64,
        /// The offline recipient it is for.
        recipient: PublicKey,
    },
    /// Version 2: with the reason the relay should hold it.
    V2 {
        /// The blob.
        #[serde(with = "serde_bytes")]
        hash: [u8; 32],
        /// Its size as announced (the relay pulls no more).
        size: u64,
        /// The offline recipient it is for.
        recipient: PublicKey,
        /// Why the relay should hold it for them.
        proof: HoldProof,
    },
}

/// Why a relay should hold a blob for a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub(crate) enum HoldProof {
    /// The requester deposited mail for the recipient that attaches the
    /// blob: the relay finds it in the recipient's mailbox.
    Deposit,
    // The recipient's delivery token (branch relay-limits) becomes a second
    // variant here, `DeliveryToken(..)`, checked in `CacheService::check_proof`
    // against the token the recipient registered at this relay.
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

/// Bytes promised to downloads under way, per blob (with how many requests
/// wait on each), so concurrent requests cannot all fit the last space.
#[derive(Debug, Default)]
struct Reservations(HashMap<Hash, (u64, usize)>);

impl Reservations {
    fn bytes(&self) -> u64 {
        self.0.values().map(|(size, _)| size).sum()
    }

    fn contains(&self, hash: &Hash) -> bool {
        self.0.contains_key(hash)
    }

    /// Reserves `size` bytes for `hash` if `held` (bytes of complete blobs,
    /// reserved ones excluded) plus every reservation still fits `limit`.
    /// A blob already reserved is counted once.
    fn try_reserve(&mut self, hash: Hash, size: u64, held: u64, limit: u64) -> bool {
        if let Some((_, waiting)) = self.0.get_mut(&hash) {
            *waiting += 1;
            return true;
        }
        if held.saturating_add(self.bytes()).saturating_add(size) > limit {
            return false;
        }
        self.0.insert(hash, (size, 1));
        true
    }

    fn release(&mut self, hash: &Hash) {
        if let Some((_, waiting)) = self.0.get_mut(hash) {
            *waiting -= 1;
            if *waiting == 0 {
                self.0.remove(hash);
            }
        }
    }
}

/// The relay side of the protocol.
#[derive(Clone)]
pub(crate) struct CacheService {
    blobs: Blobs,
    limits: MailboxConfig,
    /// The relay's mailboxes, read for proof that a request has a reason.
    mail: Arc<MailboxStore>,
    /// Taken to judge space, so two requests cannot both fit the last of it.
    admit: Arc<tokio::sync::Mutex<()>>,
    /// Bytes promised to pulls under way (never locked across an await).
    reservations: Arc<std::sync::Mutex<Reservations>>,
    proofs: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for CacheService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CacheService {
    /// Starts holding blobs with `limits`, reloading what is held already;
    /// `mail` holds the relay's mailboxes.
    pub(crate) async fn new(blobs: Blobs, limits: MailboxConfig, mail: MailboxStore) -> Self {
        let service = Self {
            blobs,
            limits,
            mail: Arc::new(mail),
            admit: Default::default(),
            reservations: Default::default(),
            proofs: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PROOFS)),
        };
        for held in held(&service.blobs).await {
            let complete = matches!(service.blobs.complete_size(held.hash).await, Ok(Some(_)));
            if complete {
                service.blobs.access().hold_for(held.recipient, held.hash);
            } else {
                // A pull cut short by a restart: nobody resumes it.
                let _ = service.blobs.store().tags().delete(held.tag()).await;
            }
        }
        service
    }

    fn reserved<T>(&self, f: impl FnOnce(&mut Reservations) -> T) -> T {
        match self.reservations.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Bytes of complete blobs held now (each blob once, however many
    /// recipients), leaving out the ones reserved (counted there).
    async fn held_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for held in held(&self.blobs).await {
            if !self.reserved(|r| r.contains(&held.hash)) && seen.insert(held.hash) {
                let size = self.blobs.complete_size(held.hash).await.ok().flatten();
                total = total.saturating_add(size.unwrap_or(0));
            }
        }
        total
    }

    /// Whether `proof` gives `requester` a reason to have `hash` held for
    /// `recipient`.
    async fn check_proof(
        &self,
        requester: PublicKey,
        recipient: PublicKey,
        hash: Hash,
        proof: HoldProof,
    ) -> Result<(), String> {
        let _permit = self
            .proofs
            .acquire()
            .await
            .map_err(|_| "the relay is shutting down".to_owned())?;
        match proof {
            HoldProof::Deposit => {
                let mail = self.mail.clone();
                let found = tokio::task::spawn_blocking(move || {
                    relay_proof::deposit_attaches(&mail, &recipient, &requester, &hash)
                })
                .await
                .map_err(|e| format!("internal: {e}"))?
                .map_err(|e| format!("storage: {e}"))?;
                if found {
                    Ok(())
                } else {
                    Err(format!(
                        "no mail from you for {recipient} at this relay attaches this blob"
                    ))
                }
            } // HoldProof::DeliveryToken(token) => check it against the
              // recipient's registered token here (branch relay-limits).
        }
    }

    async fn handle(&self, from: EndpointId, request: CacheRequest) -> CacheResponse {
        let (hash, size, recipient, proof) = match request {
            CacheRequest::V1 { .. } => {
                return refused(
                    "this relay holds blobs only with proof (request V2); upgrade meshchat".into(),
                )
            }
            CacheRequest::V2 {
                hash,
                size,
                recipient,
                proof,
            } => (Hash::from_bytes(hash), size, recipient, proof),
        };
        let limit = self.limits.blob_cache_bytes;
        if size > limit {
            return refused(format!(
                "blob is {size} bytes; this relay caches at most {limit}"
            ));
        }
        let requester = key_of_endpoint(&from);
        if let Err(reason) = self.check_proof(requester, recipient, hash, proof).await {
            tracing::info!(%requester, %recipient, %hash, %reason, "refused to hold a blob");
            return refused(reason);
        }
        let now = crate::clock::now_ms();
        let expires_at_ms = now.saturating_add(
            i64::try_from(self.limits.blob_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let held = Held {
            expires_at_ms,
            recipient,
            hash,
        };
        let (have, _reservation) = {
            let _admit = self.admit.lock().await;
            expire(&self.blobs, now).await;
            let have = self.blobs.complete_size(hash).await.ok().flatten();
            let reservation = match have {
                Some(_) => None,
                None => {
                    let bytes = self.held_bytes().await;
                    if !self.reserved(|r| r.try_reserve(hash, size, bytes, limit)) {
                        return refused("the relay's blob cache is full".into());
                    }
                    // Released when this request ends, however it ends.
                    Some(Reservation {
                        service: self,
                        hash,
                    })
                }
            };
            (have, reservation)
        };
        // The sender reached us over libp2p first; its identify may still be in flight.
        self.blobs.wait_known(from, SENDER_ADDRESS_WAIT).await;
        let taken = match have {
            Some(have) => self.take_known(from, &held, have).await,
            None => self.take_new(from, &held, size).await,
        };
        if let Err(reason) = taken {
            return refused(reason);
        }
        self.blobs.access().hold_for(recipient, hash);
        tracing::info!(%recipient, %hash, size, "holding a blob for an offline peer");
        CacheResponse::Stored { expires_at_ms }
    }

    /// Holds a blob the relay has already, once the requester showed it
    /// has it too.
    async fn take_known(&self, from: EndpointId, held: &Held, size: u64) -> Result<(), String> {
        relay_proof::prove_possession(self.blobs.endpoint(), from, held.hash, size).await?;
        self.tag(held).await
    }

    /// Pulls a blob from the requester (which proves it has it) and holds it.
    async fn take_new(&self, from: EndpointId, held: &Held, size: u64) -> Result<(), String> {
        // Tag first so garbage collection never takes a half-fetched blob.
        self.tag(held).await?;
        let fetched = self
            .blobs
            .download(HashAndFormat::raw(held.hash), vec![from], size, |_| {})
            .await;
        if let Err(e) = fetched {
            let _ = self.blobs.store().tags().delete(held.tag()).await;
            return Err(format!("could not fetch the blob from the sender: {e}"));
        }
        Ok(())
    }

    async fn tag(&self, held: &Held) -> Result<(), String> {
        self.blobs
            .store()
            .tags()
            .set(held.tag(), HashAndFormat::raw(held.hash))
            .await
            .map_err(|e| format!("storage: {e}"))
    }
}

/// One request's reservation, given back when it drops.
struct Reservation<'a> {
    service: &'a CacheService,
    hash: Hash,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.service.reserved(|r| r.release(&self.hash));
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

/// Every blob held for someone, as its tags say (pulls under way included).
async fn held(blobs: &Blobs) -> Vec<Held> {
    let Ok(tags) = blobs.store().tags().list_prefix(RELAY_TAG).await else {
        return Vec::new();
    };
    let tags: Vec<_> = tags.collect().await;
    tags.into_iter()
        .flatten()
        .filter_map(|t| Held::parse(t.name.as_ref()))
        .collect()
}

/// Deletes the blobs held for others past their retention; returns how
/// many. Safe on any node: one that is no relay (or no longer one) holds
/// none, or lets go of what it held when it was.
pub(crate) async fn expire(blobs: &Blobs, now_ms: i64) -> usize {
    let mut expired = 0;
    for held in held(blobs).await {
        if held.expires_at_ms <= now_ms {
            blobs.access().release_for(&held.recipient, &held.hash);
            if blobs.store().tags().delete(held.tag()).await.is_ok() {
                expired += 1;
            }
        }
    }
    expired
}

/// Asks `relay` to hold `hash` for `recipient` (whose mail attaching it
/// the relay holds already); waits until it is stored. The relay may pull
/// the blob from this node meanwhile.
pub(crate) async fn ask_relay(
    blobs: &Blobs,
    relay: EndpointId,
    hash: Hash,
    size: u64,
    recipient: PublicKey,
    limit: Duration,
) -> Result<i64, BlobError> {
    let request = CacheRequest::V2 {
        hash: *hash.as_bytes(),
        size,
        recipient,
        proof: HoldProof::Deposit,
    };
    let _grant = blobs.access().grant(key_of_endpoint(&relay), hash);
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
    use meshchat_crdt::Identity;

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

    #[tokio::test]
    async fn blobs_held_past_their_retention_expire_on_a_node_that_is_no_relay() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::media::BlobConfig::loopback();
        let (blobs, router) = Blobs::open(dir.path(), &Identity::generate(), config, &[])
            .await
            .unwrap();
        blobs.serve(router);
        let hash = blobs.store().blobs().add_slice(b"held").await.unwrap().hash;
        let recipient = PublicKey::from_bytes([3; 32]);
        let (past, future) = (1_000, 3_000);
        let [old, new] = [past, future].map(|expires_at_ms| Held {
            expires_at_ms,
            recipient,
            hash,
        });
        for held in [&old, &new] {
            blobs
                .store()
                .tags()
                .set(held.tag(), HashAndFormat::raw(hash))
                .await
                .unwrap();
        }
        assert_eq!(expire(&blobs, 2_000).await, 1);
        assert_eq!(held(&blobs).await, vec![new]);
        assert_eq!(expire(&blobs, 2_000).await, 0);
        blobs.shutdown().await;
    }

    #[test]
    fn reservations_count_every_download_under_way() {
        let mut r = Reservations::default();
        let (a, b) = (Hash::new(b"a"), Hash::new(b"b"));
        assert!(r.try_reserve(a, 2, 0, 3));
        assert!(!r.try_reserve(b, 2, 0, 3), "a is still downloading");
        assert!(r.try_reserve(a, 2, 0, 3), "the same blob counts once");
        assert!(!r.try_reserve(b, 1, 1, 3), "held bytes count too");
        r.release(&a);
        assert!(!r.try_reserve(b, 2, 0, 3), "one request still waits on a");
        r.release(&a);
        assert_eq!(r.bytes(), 0);
        assert!(r.try_reserve(b, 2, 0, 3));
        r.release(&Hash::new(b"never reserved"));
    }

    #[test]
    fn requests_decode_only_from_their_own_encoding() {
        let request = CacheRequest::V2 {
            hash: [1; 32],
            size: 5,
            recipient: PublicKey::from_bytes([2; 32]),
            proof: HoldProof::Deposit,
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

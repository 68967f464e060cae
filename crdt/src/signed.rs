//! Signed changes: the only form in which a change travels or is stored.
//!
//! The signature covers a domain tag, the chat, the segment and the change hash,
//! so a change cannot be replayed into another chat or segment. The Automerge
//! actor id of the change must be the signer's public key: the author of every
//! operation is therefore authenticated.

use serde::{Deserialize, Serialize};

use crate::{
    identity::{self, Identity, SignatureError},
    ids::{ChangeHash, ChatId, PublicKey},
};

const DOMAIN: &[u8] = b"meshchat/signed-change/v1";

/// Automerge's chunk type byte for a deflate-compressed change: refused on the
/// wire because a small frame could inflate to gigabytes.
const CHANGE_CHUNK: u8 = 1;
const COMPRESSED_CHANGE_CHUNK: u8 = 2;
const CHUNK_TYPE_OFFSET: usize = 8;

/// A segment of a chat's history: one bounded Automerge document.
pub type SegmentIndex = u32;

/// The segment index reserved for a group's metadata document.
pub const META_SEGMENT: SegmentIndex = u32::MAX;

/// An Automerge change with its author's signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange {
    /// The chat the change belongs to.
    pub chat: ChatId,
    /// The history segment (Automerge document) it applies to.
    pub segment: SegmentIndex,
    /// For a group's history changes: the heads of the group's metadata
    /// document the author saw, so every receiver checks membership and roles
    /// against the same state. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_heads: Vec<ChangeHash>,
    /// The raw, uncompressed Automerge change bytes.
    #[serde(with = "serde_bytes")]
    pub change: Vec<u8>,
    /// Ed25519 signature by the change's actor over [`SignedChange::signing_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl std::fmt::Debug for SignedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedChange")
            .field("chat", &self.chat)
            .field("segment", &self.segment)
            .field("change_len", &self.change.len())
            .finish_non_exhaustive()
    }
}

/// Why a signed change was refused before it touched any document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes are not an Automerge change.
    #[error("malformed change: {0}")]
    Malformed(String),
    /// The change is deflate-compressed; only raw changes are accepted.
    #[error("compressed changes are not accepted")]
    Compressed,
    /// The actor id is not a 32-byte public key followed by an 8-byte epoch.
    #[error("actor id is not an Ed25519 public key and an epoch")]
    ActorNotAKey,
    /// The signature does not verify for the actor's key.
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    /// The change's commit message does not name the segment and metadata
    /// heads the envelope claims.
    #[error("the change does not bind the segment and metadata heads it is sent with")]
    Unbound,
}

/// A change whose signature verified: the author is its actor.
#[derive(Debug, Clone)]
pub struct VerifiedChange {
    /// Who wrote (and signed) it.
    pub author: PublicKey,
    /// Automerge's hash of the change.
    pub hash: ChangeHash,
    /// The decoded change, ready to apply.
    pub change: automerge::Change,
    /// The signed form, to store and forward as received.
    pub signed: SignedChange,
}

impl SignedChange {
    /// Signs `change` as `identity`. The change's actor must be the identity's
    /// key (and an epoch), or receivers refuse it.
    pub fn sign(
        identity: &Identity,
        chat: ChatId,
        segment: SegmentIndex,
        meta_heads: Vec<ChangeHash>,
        change: &automerge::Change,
    ) -> Self {
        let hash = ChangeHash::from(change.hash());
        let signature = identity.sign(&signing_bytes(&chat, segment, &meta_heads, &hash));
        Self {
            chat,
            segment,
            meta_heads,
            change: change.raw_bytes().to_vec(),
            signature,
        }
    }

    /// About how many bytes this change takes on the wire, to size batches.
    pub fn wire_size(&self) -> usize {
        self.change.len() + 128 + 32 * self.meta_heads.len()
    }

    /// Decodes the change and checks actor = signer and the signature.
    pub fn verify(&self) -> Result<VerifiedChange, VerifyError> {
        self.decode(true)
    }

    /// Decodes a change this node verified before it stored it, skipping the
    /// signature check (the costly part) when loading from its own disk.
    pub fn decode_stored(&self) -> Result<VerifiedChange, VerifyError> {
        self.decode(false)
    }

    /// Decodes a received change without checking its signature yet: enough
    /// to learn its hash, and so whether it is held already, for a fraction
    /// of the cost. Nothing but [`UncheckedChange::verify`] turns it into a
    /// [`VerifiedChange`].
    pub fn decode_unchecked(&self) -> Result<UncheckedChange, VerifyError> {
        self.decode(false).map(UncheckedChange)
    }

    fn decode(&self, check_signature: bool) -> Result<VerifiedChange, VerifyError> {
        // Only a raw change chunk reaches Automerge's parser: it also takes
        // compressed changes (a decompression bomb) and bundles, whose
        // parser panics on bad input and expands run-length columns without
        // bound (a 100-byte bundle took 4 GiB; found by the fuzzer).
        match self.change.get(CHUNK_TYPE_OFFSET) {
            Some(&CHANGE_CHUNK) => {}
            Some(&COMPRESSED_CHANGE_CHUNK) => return Err(VerifyError::Compressed),
            other => {
                return Err(VerifyError::Malformed(format!(
                    "not a change chunk (type {other:?})"
                )))
            }
        }
        // Parsing is meant to refuse bad bytes, never to panic; if it ever
        // does on hostile input, that is a malformed change, not a crash.
        let parsed = std::panic::catch_unwind(|| automerge::Change::try_from(&self.change[..]))
            .map_err(|_| VerifyError::Malformed("change parser panicked".into()))?;
        let change = parsed.map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let author = identity::author_of(change.actor_id()).ok_or(VerifyError::ActorNotAKey)?;
        let hash = ChangeHash::from(change.hash());
        if check_signature {
            identity::verify(
                &author,
                &signing_bytes(&self.chat, self.segment, &self.meta_heads, &hash),
                &self.signature,
            )?;
        }
        if change.message() != Some(binding(self.segment, &self.meta_heads).as_str()) {
            return Err(VerifyError::Unbound);
        }
        Ok(VerifiedChange {
            author,
            hash,
            change,
            signed: self.clone(),
        })
    }
}

/// A received change, decoded and bound to its envelope (its segment and
/// metadata heads are inside the hashed change), whose signature is not
/// checked yet.
#[derive(Debug, Clone)]
pub struct UncheckedChange(VerifiedChange);

impl UncheckedChange {
    /// Automerge's hash of the change. The same hash means the same change,
    /// segment and metadata heads; only the signature may differ.
    pub fn hash(&self) -> ChangeHash {
        self.0.hash
    }

    /// Its actor's key (inside the hashed change): whose signature it needs.
    pub fn author(&self) -> PublicKey {
        self.0.author
    }

    /// The history segment it claims.
    pub fn segment(&self) -> SegmentIndex {
        self.0.signed.segment
    }

    /// Checks the signature: the author is its actor.
    pub fn verify(self) -> Result<VerifiedChange, VerifyError> {
        let signed = &self.0.signed;
        identity::verify(
            &self.0.author,
            &signing_bytes(
                &signed.chat,
                signed.segment,
                &signed.meta_heads,
                &self.0.hash,
            ),
            &signed.signature,
        )?;
        Ok(self.0)
    }
}

/// The commit message every change carries: its segment and, for group
/// history, the metadata heads its author saw. Being inside the change, they
/// are covered by its hash, so one change hash means one envelope: a change
/// cannot be re-sent with other metadata heads (and judged differently) or
/// into another segment.
pub fn binding(segment: SegmentIndex, meta_heads: &[ChangeHash]) -> String {
    let mut out = format!("meshchat/1 segment={segment}");
    if !meta_heads.is_empty() {
        out.push_str(" meta=");
        let heads: Vec<String> = meta_heads.iter().map(ToString::to_string).collect();
        out.push_str(&heads.join(","));
    }
    out
}

fn signing_bytes(
    chat: &ChatId,
    segment: SegmentIndex,
    meta_heads: &[ChangeHash],
    hash: &ChangeHash,
) -> Vec<u8> {
    // Fixed-size fields, so appending the meta heads (32 bytes each, none for
    // direct chats) keeps the encoding unambiguous.
    let mut out = Vec::with_capacity(DOMAIN.len() + 32 + 4 + 32 * (meta_heads.len() + 1));
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(chat.as_bytes());
    out.extend_from_slice(&segment.to_be_bytes());
    out.extend_from_slice(hash.as_bytes());
    for head in meta_heads {
        out.extend_from_slice(head.as_bytes());
    }
    out
}

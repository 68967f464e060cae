//! Where a file's download stands, as events report it.

use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

/// Where a file's download stands (in `Event::File`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileStatus {
    /// Asking a source; `stored` bytes were already here (a resume when > 0).
    Trying {
        /// The source (its public key, the key inside its PeerId).
        source: PublicKey,
        /// Bytes already stored and verified.
        stored: u64,
    },
    /// A source failed: offline, refused, or sent data that did not verify.
    SourceFailed {
        /// The source.
        source: PublicKey,
    },
    /// Bytes verified and stored so far.
    Progress {
        /// Done.
        done: u64,
        /// Expected in total.
        total: u64,
    },
    /// Complete and verified.
    Ready {
        /// Size in bytes.
        size: u64,
    },
    /// An offline recipient's relay holds it (sender side).
    Cached {
        /// The relay.
        relay: PublicKey,
        /// For whom.
        recipient: PublicKey,
        /// When the relay deletes it.
        expires_at_ms: i64,
    },
    /// No source could provide it now; retried when a source connects.
    Failed {
        /// Why.
        reason: String,
    },
    /// A received file that does not download by itself (a stranger's, too
    /// large, auto-download off, or its budget full): `meshchat fetch` gets it.
    Skipped {
        /// Why.
        reason: super::SkipReason,
    },
    /// An offline recipient's relay would not hold it (sender side); the
    /// recipient fetches it from a member once it is back.
    NotCached {
        /// The relay.
        relay: PublicKey,
        /// For whom.
        recipient: PublicKey,
        /// The relay's reason.
        reason: String,
    },
}

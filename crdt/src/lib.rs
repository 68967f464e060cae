//! meshchat's chat data model on Automerge. No I/O, no clock, no tokio: the node
//! feeds it bytes and timestamps and performs the effects it returns.
//!
//! - [`Identity`] signs; every change travels as a [`SignedChange`] whose
//!   Automerge actor is the signer's public key.
//! - A chat ([`ChatReplica`]) is a set of bounded history segments, each an
//!   Automerge document, plus for groups a metadata document (members, roles,
//!   settings). [`ChatReplica::check`] verifies and judges received changes,
//!   [`ChatReplica::apply`] merges them in causal order, in batches.
//! - [`e2e`]: end-to-end encryption's pure core (device keys, sender keys,
//!   key shares, sealed changes and boxes, safety numbers); [`FileKey`]:
//!   the random key a file's blob is encrypted with.
//! - Sync is heads exchange: [`ChatReplica::heads`] and
//!   [`ChatReplica::changes_missing_from`].

mod attachment;
mod authority;
mod chat;
pub mod e2e;
mod file_key;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod ids;
mod message;
mod meta;
mod model;
mod ops;
mod role;
mod rules;
mod segment;
mod signed;
mod structure;

pub use attachment::{Attachment, MAX_FILE_NAME_BYTES, MAX_MIME_BYTES, MAX_PREVIEW_BYTES};
pub use chat::{
    ChatKind, ChatReplica, Ingested, RejectReason, Rejected, SegmentHeads,
    DEFAULT_SEGMENT_CAPACITY, DEFERRED_TTL_MS, MAX_DEFERRED, MAX_DEFERRED_BYTES,
    MAX_DEFERRED_PER_AUTHOR,
};
pub use file_key::{FileKey, FileTooLarge, FILE_KEY_BYTES, MAX_ENCRYPTED_FILE_BYTES};
pub use identity::{author_of, verify, Identity, SignatureError, ACTOR_LEN, EPOCH_LEN};
pub use ids::{
    BlobHash, ChangeHash, ChatId, EncryptionKey, GroupNonce, KeyId, MessageId, ParseIdError,
    PublicKey,
};
pub use message::{Message, MAX_REACTION_BYTES, MAX_TEXT_BYTES};
pub use meta::{GroupInfo, GroupSettings, Member, MAX_GROUP_NAME_BYTES, MAX_SEGMENT};
pub use ops::{Authored, WriteError, Written};
pub use role::Role;
pub use rules::RuleViolation;
pub use signed::{
    binding, SegmentIndex, SignedChange, UncheckedChange, VerifiedChange, VerifyError, META_SEGMENT,
};
pub use structure::expand;

#[cfg(test)]
mod test_util;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod group_tests;

#[cfg(test)]
mod attachment_tests;

#[cfg(test)]
mod hostile_tests;

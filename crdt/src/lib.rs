//! meshchat's chat data model on Automerge. No I/O, no clock, no tokio: the node
//! feeds it bytes and timestamps and performs the effects it returns.
//!
//! - [`Identity`] signs; every change travels as a [`SignedChange`] whose
//!   Automerge actor is the signer's public key.
//! - A chat ([`ChatReplica`]) is a set of bounded history segments, each an
//!   Automerge document; [`ChatReplica::check`] verifies received changes,
//!   [`ChatReplica::apply`] merges them in batches.
//! - Sync is heads exchange: [`ChatReplica::heads`] and
//!   [`ChatReplica::changes_missing_from`].

mod chat;
mod identity;
mod ids;
mod message;
mod rules;
mod segment;
mod signed;

pub use chat::{
    ChatKind, ChatReplica, Checked, RejectReason, Rejected, SegmentHeads, WriteError, Written,
    DEFAULT_SEGMENT_CAPACITY,
};
pub use identity::{Identity, SignatureError};
pub use ids::{ChangeHash, ChatId, MessageId, ParseIdError, PublicKey};
pub use message::{Message, MAX_TEXT_BYTES};
pub use rules::RuleViolation;
pub use signed::{SegmentIndex, SignedChange, VerifiedChange, VerifyError};

#[cfg(test)]
mod tests;

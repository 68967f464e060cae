//! Messages of `/meshchat/mailbox/2`: depositing envelopes at a relay for an
//! offline recipient, and the recipient fetching and acknowledging them.
//!
//! The relay authenticates the requester by its Noise-verified PeerId: only a
//! mailbox's owner may fetch or acknowledge it, and a stranger asking for
//! another peer's mail simply sees its own (empty) mailbox. A deposit carries
//! the recipient's delivery token; peers hand each other tokens over this
//! protocol too.
//!
//! Version 2: `Deposit` carries a token and `Tokens` was added (version 1
//! relays took mail from anyone).

use libp2p::StreamProtocol;
use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use super::{
    receipt::CustodyReceipt,
    store::{MailItem, Refusal},
    token::DeliveryToken,
};
use crate::framing::{frame_codec, WireError};

/// The protocol id.
pub const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshchat/mailbox/2");
/// Most tokens one `Tokens` request carries (a profile lists at most 8 relays).
pub const MAX_TOKENS_PER_REQUEST: usize = 16;
/// Largest mailbox request frame (an envelope of up to a relay's limit, 1 MiB by default).
pub const MAILBOX_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest mailbox response frame (one page of mail).
pub const MAILBOX_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Most mail items a relay hands out per fetch (a peer asks for that many).
pub const MAX_FETCH_ITEMS: u32 = 1024;
/// Envelope bytes a relay puts in one page of mail.
pub const MAILBOX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// What a peer deposits at a relay (as a frame: version byte + CBOR). The
/// relay stores it as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Envelope {
    /// Signed changes for the recipient, as a push would carry them.
    Changes(Vec<meshchat_crdt::SignedChange>),
    /// A `Changes` frame HPKE-sealed to the recipient's device key (a
    /// `SealedBox`; see `sealed_mail::seal_envelope`), with the blob hashes its
    /// changes attach in the clear for the relay's blob-cache proof.
    Sealed {
        /// The `SealedBox` bytes.
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
        /// Blob hashes the sealed changes attach (at most 64).
        attaches: Vec<meshchat_crdt::BlobHash>,
    },
}

/// Most deposits one [`MailboxRequest::DepositBatch`] may carry.
pub const MAX_DEPOSITS_PER_BATCH: usize = 64;

/// One envelope of a [`MailboxRequest::DepositBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositItem {
    /// The mailbox owner.
    pub recipient: PublicKey,
    /// Opaque bytes (a frame of signed changes, sealed to the recipient when
    /// the sender knows its key; the relay does not read it).
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// The recipient's permission to leave mail at this relay.
    #[serde(default)]
    pub token: Option<DeliveryToken>,
}

/// What became of one deposit of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepositOutcome {
    /// Stored durably; the relay's signed promise.
    Deposited(CustodyReceipt),
    /// Not stored, and why.
    Refused(Refusal),
}

/// A mailbox request.
// A deposit's token makes it the largest variant (~230 bytes); requests are
// decoded, handled and dropped one at a time, so boxing would only burden
// every caller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxRequest {
    /// Hold `envelope` for `recipient`; answered after a durable write.
    Deposit {
        /// The mailbox owner.
        recipient: PublicKey,
        /// Opaque bytes (a frame of signed changes, sealed to the recipient when
        /// the sender knows its key; the relay does not read it).
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
        /// The recipient's permission to leave mail at this relay; without
        /// one, only a relay with a stranger budget takes it.
        #[serde(default)]
        token: Option<DeliveryToken>,
    },
    /// Up to [`MAX_DEPOSITS_PER_BATCH`] deposits at once, each judged as a
    /// single `Deposit` is; answered with
    /// [`MailboxResponse::DepositedBatch`], in order, after one durable
    /// write covering all of them.
    DepositBatch {
        /// The deposits.
        deposits: Vec<DepositItem>,
    },
    /// The requester's own mail after id `after`, at most `limit` items.
    Fetch {
        /// Resume after this id (exclusive).
        after: Option<u64>,
        /// Page size.
        limit: u32,
    },
    /// The requester durably holds these: delete them.
    Ack {
        /// Item ids.
        ids: Vec<u64>,
    },
    /// From a relay to a connected owner: you have new mail, fetch it.
    Notify,
    /// From a peer to someone who sends it mail: tokens signed by the
    /// requester for its relays (at most [`MAX_TOKENS_PER_REQUEST`]).
    /// Answered with [`MailboxResponse::Noted`].
    Tokens {
        /// Delivery tokens naming the requester as recipient.
        tokens: Vec<DeliveryToken>,
    },
}

/// A mailbox response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxResponse {
    /// Stored durably; the relay's signed promise.
    Deposited(CustodyReceipt),
    /// Not stored, and why (the sender keeps the message and retries).
    Refused(Refusal),
    /// The outcome of each deposit of a batch, in the batch's order.
    DepositedBatch {
        /// One per deposit.
        outcomes: Vec<DepositOutcome>,
    },
    /// A page of the requester's mail.
    Mail {
        /// Oldest first.
        items: Vec<MailItem>,
        /// More remain: fetch again after the last id.
        more: bool,
    },
    /// Acknowledged items deleted.
    Acked {
        /// How many were deleted.
        removed: u64,
    },
    /// Notification (or tokens) received.
    Noted,
    /// This node does not run a mailbox service.
    NotARelay,
    /// The request could not be served.
    Error(WireError),
}

/// The codec of `/meshchat/mailbox/2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailboxCodec;

frame_codec!(
    MailboxCodec,
    MailboxRequest,
    MailboxResponse,
    MAILBOX_MAX_REQUEST_BYTES,
    MAILBOX_MAX_RESPONSE_BYTES
);

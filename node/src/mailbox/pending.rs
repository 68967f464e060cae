//! The mailbox requests this node has sent and awaits answers to, over its
//! own swarm or by courier.

use std::collections::HashMap;

use libp2p::{request_response::OutboundRequestId, PeerId};
use meshchat_crdt::{ChangeHash, PublicKey};

/// A mailbox request awaiting its response.
pub(crate) enum MailboxPending {
    Fetch,
    /// One deposit (`Deposit`) or several (`DepositBatch`) at `relay`.
    Deposit {
        relay: PublicKey,
        deposits: Vec<SentDeposit>,
    },
    Notify,
    /// Tokens handed to `holder`: (relay, expiry) of each.
    Tokens {
        holder: PeerId,
        issued: Vec<(PublicKey, i64)>,
    },
}

/// One envelope deposited at a relay, awaiting its receipt.
pub(crate) struct SentDeposit {
    pub(crate) recipient: PublicKey,
    pub(crate) hashes: Vec<ChangeHash>,
    pub(crate) envelope_hash: [u8; 32],
}

pub(crate) type MailboxPendingMap = HashMap<OutboundRequestId, MailboxPending>;

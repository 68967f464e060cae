//! Delivery tokens between peers, the state: the book on disk, the peers
//! being handed tokens now, and those that declined them (see `tokens.rs`
//! for the exchange).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p::PeerId;
use meshchat_crdt::PublicKey;

use super::{token::DeliveryToken, token_book::TokenBook};
use crate::clock::now_ms;

/// How long to wait before offering tokens again to a peer that declined
/// them (it has not added this node yet).
const DECLINED_RETRY: Duration = Duration::from_secs(60);

/// Delivery tokens: the book on disk, the peers being handed some now, and
/// the peers that declined them (until when to leave them alone).
pub(crate) struct Tokens {
    pub(crate) book: TokenBook,
    pub(crate) offering: HashSet<PeerId>,
    pub(crate) declined: HashMap<PeerId, tokio::time::Instant>,
}

impl Tokens {
    pub(crate) fn open(db: crate::store::DbHandle) -> Result<Self, crate::store::StoreError> {
        Ok(Self {
            book: TokenBook::open(db)?,
            offering: HashSet::new(),
            declined: HashMap::new(),
        })
    }

    /// No token offer to `peer` is on its way any more.
    pub(crate) fn not_offering(&mut self, peer: &PeerId) {
        self.offering.remove(peer);
    }

    /// The token to deposit with for `recipient` at `relay`, if one is held.
    pub(crate) fn for_deposit(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
    ) -> Option<DeliveryToken> {
        self.book.for_deposit(recipient, relay, now_ms())
    }

    pub(crate) fn decline(&mut self, peer: PeerId) {
        let now = tokio::time::Instant::now();
        if self.declined.len() >= 10_000 {
            self.declined.retain(|_, until| *until > now);
        }
        self.declined.insert(peer, now + DECLINED_RETRY);
    }
}

//! Delivery tokens between peers: a node hands its tokens (one per relay it
//! uses) to the peers that send it mail, renews them before they expire, and
//! keeps the tokens others hand it (see `mailbox::token` for what a token
//! is, and `mailbox::token_book` for how they are kept).

use libp2p::PeerId;
use meshchat_crdt::{ChatId, PublicKey};

use super::{
    pending::MailboxPending,
    token::{DeliveryToken, TOKEN_LIFETIME_MS},
    wire::{MailboxRequest, MailboxResponse, MAX_TOKENS_PER_REQUEST},
};
use crate::{actor::Actor, clock::now_ms, events::Event, framing::Inbound, keys::public_key_of};

impl Actor {
    /// Hands this node's delivery tokens to every connected peer that may
    /// send it mail and lacks a fresh one (see [`Self::offer_tokens`]).
    pub(crate) fn hand_out_tokens(&mut self) {
        if self.config.relays.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut groups: Option<Vec<ChatId>> = None;
        for peer in peers {
            if !self.needs_tokens(&peer) {
                continue;
            }
            let mine = groups.get_or_insert_with(|| self.chats.my_groups().unwrap_or_default());
            if self.is_contact_or_fellow_member(&peer, mine) {
                self.offer_tokens(peer);
            }
        }
    }

    /// On connecting: hand `peer` tokens if it may send this node mail.
    pub(crate) fn hand_out_tokens_to(&mut self, peer: PeerId) {
        if self.config.relays.is_empty() || !self.needs_tokens(&peer) {
            return;
        }
        let groups = self.chats.my_groups().unwrap_or_default();
        if self.is_contact_or_fellow_member(&peer, &groups) {
            self.offer_tokens(peer);
        }
    }

    /// Whether `peer` lacks a token for one of this node's relays that is
    /// good for more than half a lifetime (and none is on its way).
    fn needs_tokens(&self, peer: &PeerId) -> bool {
        let Some(holder) = public_key_of(peer) else {
            return false;
        };
        if self.tokens.offering.contains(peer) || holder == self.chats.me() {
            return false;
        }
        if self
            .tokens
            .declined
            .get(peer)
            .is_some_and(|until| *until > tokio::time::Instant::now())
        {
            return false;
        }
        let fresh_until = now_ms() + TOKEN_LIFETIME_MS / 2;
        self.config
            .relay_peers()
            .iter()
            .filter_map(public_key_of)
            .any(|relay| {
                self.tokens
                    .book
                    .issued_until(&holder, &relay)
                    .is_none_or(|until| until <= fresh_until)
            })
    }

    /// Contacts (not blocked) and fellow members of this node's groups: the
    /// peers that get this node's tokens (strangers do not), and whose
    /// tokens it keeps.
    fn is_contact_or_fellow_member(&mut self, peer: &PeerId, groups: &[ChatId]) -> bool {
        let Some(key) = public_key_of(peer) else {
            return false;
        };
        match self.chats.store().contact(&key) {
            Ok(Some(contact)) => return !contact.blocked,
            Ok(None) => {}
            Err(_) => return false,
        }
        groups
            .iter()
            .any(|chat| matches!(self.chats.replica(chat), Ok(Some(r)) if r.is_member(&key)))
    }

    /// Sends `peer` a fresh token for each of this node's relays.
    fn offer_tokens(&mut self, peer: PeerId) {
        let expires_at_ms = now_ms() + TOKEN_LIFETIME_MS;
        let tokens: Vec<DeliveryToken> = self
            .config
            .relay_peers()
            .iter()
            .filter_map(public_key_of)
            .take(MAX_TOKENS_PER_REQUEST)
            .map(|relay| {
                DeliveryToken::issue(self.chats.identity(), Some(relay), None, expires_at_ms)
            })
            .collect();
        if tokens.is_empty() {
            return;
        }
        let issued = tokens
            .iter()
            .filter_map(|t| Some((t.relay?, t.expires_at_ms)))
            .collect();
        let id = self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_request(&peer, Inbound::Request(MailboxRequest::Tokens { tokens }));
        self.tokens.offering.insert(peer);
        self.mailbox_pending.insert(
            id,
            MailboxPending::Tokens {
                holder: peer,
                issued,
            },
        );
    }

    /// `holder` answered a token offer: kept (remember until when, so the
    /// tokens are renewed only when due) or declined (leave it alone for a
    /// while).
    pub(crate) fn on_tokens_answer(
        &mut self,
        holder: PeerId,
        issued: Vec<(PublicKey, i64)>,
        response: MailboxResponse,
    ) {
        self.tokens.not_offering(&holder);
        if response != MailboxResponse::Noted {
            tracing::debug!(peer = %holder, ?response, "peer did not take our tokens");
            self.tokens.decline(holder);
            return;
        }
        let Some(key) = public_key_of(&holder) else {
            return;
        };
        for (relay, until) in issued {
            if let Err(error) = self.tokens.book.note_issued(&key, &relay, until) {
                tracing::warn!(%error, "cannot record handed-out tokens");
            }
        }
    }

    /// Tokens for the invite this node hands out: one per relay, for
    /// whoever holds the invite.
    pub(crate) fn invite_tokens(&self) -> Vec<DeliveryToken> {
        let expires_at_ms = now_ms() + TOKEN_LIFETIME_MS;
        self.config
            .relay_peers()
            .iter()
            .filter_map(public_key_of)
            .map(|relay| {
                DeliveryToken::issue(self.chats.identity(), Some(relay), None, expires_at_ms)
            })
            .collect()
    }

    /// `peer` handed over tokens for its own mailbox. Kept if it is someone
    /// this node sends mail to (a contact, a direct chat, a fellow group
    /// member), each signed by it and unexpired. Returns whether they were.
    pub(crate) fn accept_tokens(
        &mut self,
        peer: PeerId,
        from: PublicKey,
        tokens: Vec<DeliveryToken>,
    ) -> bool {
        if tokens.len() > MAX_TOKENS_PER_REQUEST || self.chats.store().is_blocked(&from) {
            tracing::debug!(%peer, count = tokens.len(), "ignored delivery tokens");
            return false;
        }
        let direct = ChatId::direct(&self.chats.me(), &from);
        let known = matches!(self.chats.exists(&direct), Ok(true)) || {
            let groups = self.chats.my_groups().unwrap_or_default();
            self.is_contact_or_fellow_member(&peer, &groups)
        };
        if !known {
            tracing::debug!(%peer, "declined delivery tokens from a stranger");
            return false;
        }
        self.keep_tokens(peer, from, tokens)
    }

    /// Keeps the valid tokens `from` signed for itself (handed over, or in
    /// its invite). Returns whether any was kept.
    pub(crate) fn keep_tokens(
        &mut self,
        peer: PeerId,
        from: PublicKey,
        tokens: Vec<DeliveryToken>,
    ) -> bool {
        let now = now_ms();
        let valid: Vec<DeliveryToken> = tokens
            .into_iter()
            .filter(|t| {
                t.recipient == from && t.expires_at_ms > now && t.verify_signature().is_ok()
            })
            .collect();
        if valid.is_empty() {
            return false;
        }
        if let Err(error) = self.tokens.book.keep(&valid, now) {
            tracing::warn!(%error, "cannot store delivery tokens");
            return false;
        }
        // A relay that refused for want of a token may take the mail now.
        self.deposits.resume(&from);
        self.emit(Event::DeliveryTokens { peer });
        true
    }
}

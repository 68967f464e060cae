//! `/meshchat/mailbox/2`, where its two roles meet: every mailbox event
//! goes to the relay's side (`server.rs`: requests served) or the peer's
//! side (`client.rs`: answers to its requests), and the minute's upkeep
//! does both (a relay drops expired mail; a sender sweeps its deposit log).
//!
//! As a relay (a node whose config has `[mailbox]`): hold envelopes for
//! offline peers, durably, within limits, only with the recipient's
//! delivery token, and hand them only to their owner. As a peer: fetch its
//! own mail from its relays, deposit undelivered changes at an unreachable
//! contact's relays with the token that contact handed over, and hand its
//! own tokens to the peers that send it mail.

use libp2p::request_response;

use super::{
    pending::MailboxPending,
    server::Answer,
    wire::{MailboxRequest, MailboxResponse},
};
use crate::{
    actor::{
        commit::{Held, HeldDeposit},
        Actor,
    },
    clock::now_ms,
    framing::Inbound,
};

/// Expiry ticks (one a minute) between sweeps of the deposit log.
const SWEEP_EVERY: u64 = 10;

impl Actor {
    pub(crate) async fn on_mailbox_event(
        &mut self,
        event: request_response::Event<Inbound<MailboxRequest>, MailboxResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => match self.on_mailbox_request(peer, request) {
                Answer::Now(response) => self.answer_mailbox(channel, response),
                Answer::AfterFlush { items, batch } => {
                    self.commit.hold(Held::Deposit(HeldDeposit {
                        channel,
                        items,
                        batch,
                    }));
                }
            },
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.mailbox_pending.remove(&request_id) {
                    self.on_mailbox_response(peer, pending, response).await;
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "mailbox request failed");
                match self.mailbox_pending.remove(&request_id) {
                    Some(MailboxPending::Deposit { relay, deposits }) => {
                        self.deposit_failed(&relay, deposits);
                    }
                    Some(MailboxPending::Tokens { holder, .. }) => {
                        self.tokens.not_offering(&holder);
                    }
                    Some(MailboxPending::Fetch) => self.mail_fetch_ended(peer),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Mail upkeep, every minute: a relay drops expired mail; a sender
    /// forgets deposits of changes that were delivered or whose relay's
    /// promise ended (every tenth tick).
    pub(crate) fn expire_mail(&mut self) {
        if let Some(mailbox) = &self.mailbox {
            match mailbox.expire(now_ms()) {
                Ok(n) => self.metrics.expired += n,
                Err(error) => tracing::error!(%error, "mailbox expiry failed"),
            }
        }
        self.upkeep_ticks += 1;
        if self.upkeep_ticks.is_multiple_of(SWEEP_EVERY) {
            let store = self.chats.store();
            let swept = self.deposits.sweep(now_ms(), |recipient| {
                Ok(store
                    .outbox_for(recipient, usize::MAX)?
                    .into_iter()
                    .map(|e| e.hash)
                    .collect())
            });
            if let Err(error) = swept {
                tracing::warn!(%error, "cannot sweep the deposit log");
            }
        }
    }
}

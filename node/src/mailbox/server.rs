//! `/meshchat/mailbox/2`, the relay's side: deposits taken only with the
//! recipient's token and answered once their flush is done, mail handed
//! only to its owner, and the requests any node serves (a relay's
//! `Notify`, a contact's `Tokens`).

use std::collections::HashSet;

use libp2p::{request_response::ResponseChannel, PeerId};
use meshchat_crdt::PublicKey;

use super::{
    pending::MailboxPending,
    store::{Held as HeldCopy, Refusal, Stored},
    wire::{
        DepositOutcome, MailboxRequest, MailboxResponse, MAILBOX_PAGE_BYTES,
        MAX_DEPOSITS_PER_BATCH, MAX_FETCH_ITEMS,
    },
};
use crate::{
    actor::{
        commit::{HeldDeposit, HeldItem},
        Actor,
    },
    clock::now_ms,
    framing::{Inbound, WireError},
    keys::{peer_id_of, public_key_of},
};

/// How a mailbox request is answered.
pub(super) enum Answer {
    Now(MailboxResponse),
    /// Deposits written to the store: answered after the next flush.
    AfterFlush {
        items: Vec<HeldItem>,
        batch: bool,
    },
}

impl Actor {
    /// Answers a mailbox request (the requester may have gone meanwhile).
    pub(super) fn answer_mailbox(
        &mut self,
        channel: ResponseChannel<MailboxResponse>,
        response: MailboxResponse,
    ) {
        if self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("requester went away before its mailbox answer");
        }
    }

    pub(super) fn on_mailbox_request(
        &mut self,
        peer: PeerId,
        request: Inbound<MailboxRequest>,
    ) -> Answer {
        let request = match request {
            Inbound::Request(r) => r,
            Inbound::Refused(error) => {
                tracing::warn!(%peer, %error, "refused mailbox frame");
                return Answer::Now(MailboxResponse::Error(error));
            }
        };
        let Some(requester) = public_key_of(&peer) else {
            return Answer::Now(MailboxResponse::Error(WireError::NotMember));
        };
        match request {
            MailboxRequest::Notify => {
                if self.config.relay_peers().contains(&peer) {
                    self.fetch_all_mail(peer);
                }
                return Answer::Now(MailboxResponse::Noted);
            }
            MailboxRequest::Tokens { tokens } => {
                return Answer::Now(if self.accept_tokens(peer, requester, tokens) {
                    MailboxResponse::Noted
                } else {
                    // Not someone this node sends mail to (yet).
                    MailboxResponse::Error(WireError::NotMember)
                });
            }
            _ => {}
        }
        let Some(mailbox) = self.mailbox.as_mut() else {
            return Answer::Now(MailboxResponse::NotARelay);
        };
        let now = now_ms();
        Answer::Now(match request {
            MailboxRequest::Deposit {
                recipient,
                envelope,
                token,
            } => {
                if self.chats.store().fault().is_some() {
                    // Storage refuses writes for now (disk full): say so.
                    let refusal = Refusal::Unavailable;
                    self.metrics.refused(&refusal);
                    return Answer::Now(MailboxResponse::Refused(refusal));
                }
                return match mailbox.deposit(requester, recipient, envelope, token.as_ref(), now) {
                    // Acknowledged only once on disk, with the next group flush.
                    Ok(accepted) => Answer::AfterFlush {
                        items: vec![HeldItem::Accepted {
                            recipient,
                            accepted,
                        }],
                        batch: false,
                    },
                    Err(refusal) => {
                        tracing::debug!(%peer, %refusal, "deposit refused");
                        self.metrics.refused(&refusal);
                        Answer::Now(MailboxResponse::Refused(refusal))
                    }
                };
            }
            MailboxRequest::DepositBatch { deposits } => {
                if deposits.is_empty() || deposits.len() > MAX_DEPOSITS_PER_BATCH {
                    return Answer::Now(MailboxResponse::Error(WireError::Malformed(format!(
                        "a deposit batch holds 1 to {MAX_DEPOSITS_PER_BATCH} deposits, not {}",
                        deposits.len()
                    ))));
                }
                let unavailable = self.chats.store().fault().is_some();
                let mut items = Vec::with_capacity(deposits.len());
                for deposit in deposits {
                    let judged = if unavailable {
                        Err(Refusal::Unavailable)
                    } else {
                        mailbox.deposit(
                            requester,
                            deposit.recipient,
                            deposit.envelope,
                            deposit.token.as_ref(),
                            now,
                        )
                    };
                    items.push(match judged {
                        Ok(accepted) => HeldItem::Accepted {
                            recipient: deposit.recipient,
                            accepted,
                        },
                        Err(refusal) => {
                            self.metrics.refused(&refusal);
                            HeldItem::Refused(refusal)
                        }
                    });
                }
                let any_written = items
                    .iter()
                    .any(|item| matches!(item, HeldItem::Accepted { .. }));
                if !any_written {
                    let outcomes = items
                        .into_iter()
                        .filter_map(|item| match item {
                            HeldItem::Refused(refusal) => Some(DepositOutcome::Refused(refusal)),
                            HeldItem::Accepted { .. } => None,
                        })
                        .collect();
                    return Answer::Now(MailboxResponse::DepositedBatch { outcomes });
                }
                // One flush covers the batch: its receipts leave together.
                return Answer::AfterFlush { items, batch: true };
            }
            // The owner is whoever Noise authenticated: nobody reads another's mail.
            MailboxRequest::Fetch { after, limit } => {
                mailbox.note_client(requester, now);
                let limit = limit.clamp(1, MAX_FETCH_ITEMS) as usize;
                match mailbox.fetch(&requester, after, limit, MAILBOX_PAGE_BYTES) {
                    Ok((items, more)) => {
                        self.metrics.fetches += 1;
                        MailboxResponse::Mail { items, more }
                    }
                    Err(error) => MailboxResponse::Error(WireError::Storage(error.to_string())),
                }
            }
            MailboxRequest::Ack { ids } => match mailbox.ack(&requester, &ids) {
                Ok(removed) => MailboxResponse::Acked { removed },
                Err(error) => MailboxResponse::Error(WireError::Storage(error.to_string())),
            },
            MailboxRequest::Notify | MailboxRequest::Tokens { .. } => MailboxResponse::Noted,
        })
    }

    /// The flush that was to cover `batch` finished: acknowledge every
    /// deposit it covered, or, if it failed, take them back and refuse them
    /// (nothing stays stored or counted for a deposit answered `Unavailable`).
    pub(crate) fn deposits_flushed(&mut self, batch: Vec<HeldDeposit>, flushed: bool) {
        let mut owners = HashSet::new();
        let mut answers = Vec::with_capacity(batch.len());
        if !flushed {
            // Every deposit held is refused together (a repeat answered
            // from a copy that is gone now included): take them all back
            // before anything is answered.
            for held in &batch {
                for item in &held.items {
                    if let HeldItem::Accepted {
                        recipient,
                        accepted,
                    } = item
                    {
                        if let Stored::Fresh(copy) = &accepted.stored {
                            self.undo_deposit(recipient, copy);
                        }
                    }
                }
            }
        }
        for held in batch {
            let mut outcomes = Vec::with_capacity(held.items.len());
            for item in held.items {
                outcomes.push(match item {
                    HeldItem::Accepted {
                        recipient,
                        accepted,
                    } if flushed => {
                        match accepted.stored {
                            Stored::Fresh(_) => self.metrics.deposits += 1,
                            Stored::Duplicate(_) => self.metrics.duplicates += 1,
                        }
                        owners.extend(peer_id_of(&recipient));
                        DepositOutcome::Deposited(accepted.receipt)
                    }
                    HeldItem::Accepted { .. } => {
                        self.metrics.refused(&Refusal::Unavailable);
                        DepositOutcome::Refused(Refusal::Unavailable)
                    }
                    HeldItem::Refused(refusal) => DepositOutcome::Refused(refusal),
                });
            }
            let response = match (held.batch, outcomes.pop()) {
                (false, Some(DepositOutcome::Deposited(receipt))) if outcomes.is_empty() => {
                    MailboxResponse::Deposited(receipt)
                }
                (false, Some(DepositOutcome::Refused(refusal))) if outcomes.is_empty() => {
                    MailboxResponse::Refused(refusal)
                }
                (_, last) => {
                    outcomes.extend(last);
                    MailboxResponse::DepositedBatch { outcomes }
                }
            };
            answers.push((held.channel, response));
        }
        for (channel, response) in answers {
            self.answer_mailbox(channel, response);
        }
        for owner in owners {
            if self.swarm.is_connected(&owner) {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .mailbox
                    .send_request(&owner, Inbound::Request(MailboxRequest::Notify));
                self.mailbox_pending.insert(id, MailboxPending::Notify);
            }
        }
    }

    fn undo_deposit(&mut self, recipient: &PublicKey, copy: &HeldCopy) {
        if let Some(mailbox) = &self.mailbox {
            if let Err(error) = mailbox.undo(recipient, copy) {
                tracing::error!(%error, "cannot take back a deposit whose flush failed");
            }
        }
    }

    // ----- relay clients -----

    /// A peer reserved a circuit here: it is a client of this relay.
    pub(crate) fn on_relay_server_event(&mut self, event: libp2p::relay::Event) {
        if let libp2p::relay::Event::ReservationReqAccepted { src_peer_id, .. } = event {
            if let (Some(mailbox), Some(key)) = (self.mailbox.as_mut(), public_key_of(&src_peer_id))
            {
                mailbox.note_client(key, now_ms());
            }
        }
    }
}

pub(crate) use crate::events::RelayMetrics;

impl RelayMetrics {
    fn refused(&mut self, refusal: &Refusal) {
        match refusal {
            Refusal::TooLarge { .. } => self.refused_too_large += 1,
            Refusal::QuotaExceeded => self.refused_quota += 1,
            Refusal::RateLimited { .. } => self.refused_rate += 1,
            Refusal::Unauthorized(_) => self.refused_token += 1,
            Refusal::RelayFull { .. } => self.refused_full += 1,
            _ => self.refused_unavailable += 1,
        }
    }
}

//! `/meshchat/mailbox/1` in both roles. As a relay (a node whose config has
//! `[mailbox]`): hold envelopes for offline peers, durably, within limits,
//! and hand them only to their owner. As a peer: fetch its own mail from its
//! relays, and deposit undelivered changes at an unreachable contact's relays.

use std::collections::HashSet;

use libp2p::request_response::{self, OutboundRequestId};

use super::{direct::Via, *};
use crate::{
    mailbox::Refusal,
    protocol::{
        decode_frame, encode_frame, Envelope, MailboxRequest, MailboxResponse, WireError,
        MAILBOX_PAGE_BYTES,
    },
};

/// Mail items asked for per fetch.
const FETCH_PAGE: u32 = 256;
/// How long to wait before offering a relay mail it refused.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// How a mailbox request is answered.
enum Answer {
    Now(MailboxResponse),
    /// A deposit written to the store: answered after the next flush.
    AfterFlush {
        receipt: crate::mailbox::CustodyReceipt,
        owner: Option<PeerId>,
    },
}

/// A deposit on disk but not yet durable, with the channel for its receipt.
pub(super) struct HeldDeposit {
    channel: request_response::ResponseChannel<MailboxResponse>,
    receipt: crate::mailbox::CustodyReceipt,
    owner: Option<PeerId>,
}

/// Group commit of deposits: one flush runs at a time and deposits arriving
/// meanwhile wait for the next, so a burst of N deposits costs about two
/// fsyncs instead of N.
pub(super) struct DepositCommit {
    waiting: Vec<HeldDeposit>,
    in_flight: Vec<HeldDeposit>,
    done_tx: mpsc::Sender<Result<(), crate::store::StoreError>>,
    pub(super) done_rx: mpsc::Receiver<Result<(), crate::store::StoreError>>,
}

impl DepositCommit {
    /// No deposit is waiting for a flush or in one.
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }
}

impl Default for DepositCommit {
    fn default() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            waiting: Vec::new(),
            in_flight: Vec::new(),
            done_tx,
            done_rx,
        }
    }
}

/// A mailbox request awaiting its response.
pub(super) enum MailboxPending {
    Fetch,
    Deposit {
        recipient: PublicKey,
        hashes: Vec<ChangeHash>,
    },
    Notify,
}

impl Actor {
    pub(super) async fn on_mailbox_event(
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
                Answer::Now(response) => {
                    if self
                        .swarm
                        .behaviour_mut()
                        .mailbox
                        .send_response(channel, response)
                        .is_err()
                    {
                        tracing::debug!(%peer, "peer went away before the mailbox response");
                    }
                }
                Answer::AfterFlush { receipt, owner } => {
                    self.commit.waiting.push(HeldDeposit {
                        channel,
                        receipt,
                        owner,
                    });
                    self.start_deposit_flush();
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
                if let Some(MailboxPending::Deposit { recipient, hashes }) =
                    self.mailbox_pending.remove(&request_id)
                {
                    self.forget_deposits(recipient, &hashes);
                }
            }
            _ => {}
        }
    }

    fn on_mailbox_request(&mut self, peer: PeerId, request: Inbound<MailboxRequest>) -> Answer {
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
        if let MailboxRequest::Notify = request {
            if self.config.relay_peers().contains(&peer) {
                self.fetch_mail(peer, None);
            }
            return Answer::Now(MailboxResponse::Noted);
        }
        let Some(mailbox) = self.mailbox.as_mut() else {
            return Answer::Now(MailboxResponse::NotARelay);
        };
        Answer::Now(match request {
            MailboxRequest::Deposit {
                recipient,
                envelope,
            } => {
                if self.chats.store().fault().is_some() {
                    // Storage refuses writes for now (disk full): say so.
                    let refusal = Refusal::Unavailable;
                    self.metrics.refused(&refusal);
                    return Answer::Now(MailboxResponse::Refused(refusal));
                }
                return match mailbox.deposit(requester, recipient, envelope, now_ms()) {
                    // Acknowledged only once on disk, with the next group flush.
                    Ok(receipt) => Answer::AfterFlush {
                        receipt,
                        owner: peer_id_of(&recipient),
                    },
                    Err(refusal) => {
                        self.metrics.refused(&refusal);
                        Answer::Now(MailboxResponse::Refused(refusal))
                    }
                };
            }
            // The owner is whoever Noise authenticated: nobody reads another's mail.
            MailboxRequest::Fetch { after, limit } => {
                let limit = limit.clamp(1, FETCH_PAGE) as usize;
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
            MailboxRequest::Notify => MailboxResponse::Noted,
        })
    }

    /// Starts a flush of the deposits waiting for one, unless one is running.
    fn start_deposit_flush(&mut self) {
        if !self.commit.in_flight.is_empty() || self.commit.waiting.is_empty() {
            return;
        }
        let Some(mailbox) = self.mailbox.as_ref() else {
            return;
        };
        self.commit.in_flight = std::mem::take(&mut self.commit.waiting);
        tracing::trace!(deposits = self.commit.in_flight.len(), "group flush");
        let flush = mailbox.flush_task();
        let done = self.commit.done_tx.clone();
        tokio::spawn(async move {
            let _ = done.send(flush.await).await;
        });
    }

    /// A group flush finished: acknowledge (or refuse) every deposit it covered.
    pub(super) fn on_deposits_flushed(&mut self, result: Result<(), crate::store::StoreError>) {
        let result = result.map_err(|error| self.chats.store().failed(error));
        let batch = std::mem::take(&mut self.commit.in_flight);
        let mut owners = HashSet::new();
        for held in batch {
            let response = match &result {
                Ok(()) => {
                    self.metrics.deposits += 1;
                    owners.extend(held.owner);
                    MailboxResponse::Deposited(held.receipt)
                }
                Err(error) => {
                    tracing::error!(%error, "mailbox flush failed");
                    self.metrics.refused(&Refusal::Unavailable);
                    MailboxResponse::Refused(Refusal::Unavailable)
                }
            };
            if self
                .swarm
                .behaviour_mut()
                .mailbox
                .send_response(held.channel, response)
                .is_err()
            {
                tracing::debug!("depositor went away before its receipt");
            }
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
        self.start_deposit_flush();
    }

    async fn on_mailbox_response(
        &mut self,
        relay: PeerId,
        pending: MailboxPending,
        response: MailboxResponse,
    ) {
        match (pending, response) {
            (MailboxPending::Fetch, MailboxResponse::Mail { items, more }) => {
                let last = items.last().map(|i| i.id);
                let mut done = Vec::new();
                for item in items {
                    let changes = match decode_frame::<Envelope>(&item.envelope) {
                        Ok(Envelope::Changes(changes)) => changes,
                        Err(error) => {
                            // Undecodable mail can never be applied: drop it.
                            tracing::warn!(%relay, %error, "undecodable mail");
                            done.push(item.id);
                            continue;
                        }
                    };
                    if self.chats.store().is_blocked(&item.sender) {
                        done.push(item.id);
                        continue;
                    }
                    let sender = peer_id_of(&item.sender).unwrap_or(relay);
                    // Acknowledge to the relay only after a durable apply.
                    if self
                        .receive(sender, item.sender, changes, Via::Direct)
                        .await
                        .is_ok()
                    {
                        done.push(item.id);
                    }
                }
                if !done.is_empty() {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .mailbox
                        .send_request(&relay, Inbound::Request(MailboxRequest::Ack { ids: done }));
                    self.mailbox_pending.insert(id, MailboxPending::Notify);
                }
                if more {
                    self.fetch_mail(relay, last);
                }
            }
            (
                MailboxPending::Deposit { recipient, hashes },
                MailboxResponse::Deposited(receipt),
            ) => {
                if receipt.verify().is_err() || peer_id_of(&receipt.relay) != Some(relay) {
                    tracing::warn!(%relay, "relay returned an invalid custody receipt");
                    self.forget_deposits(recipient, &hashes);
                    return;
                }
                self.on_custody(recipient, &hashes, &receipt.relay, receipt.held_until_ms);
            }
            (MailboxPending::Deposit { recipient, hashes }, other) => {
                // Keep them marked as deposited until the retry time, so a
                // refusing relay is not asked again on every redial tick.
                let wait = match &other {
                    MailboxResponse::Refused(Refusal::RateLimited { retry_after_secs }) => {
                        Duration::from_secs((*retry_after_secs).max(1))
                    }
                    _ => REFUSED_RETRY,
                };
                tracing::info!(%relay, ?other, retry_in = ?wait, "relay did not take the mail");
                self.deposit_retries
                    .push((tokio::time::Instant::now() + wait, recipient, hashes));
            }
            (_, MailboxResponse::Error(error)) => {
                tracing::debug!(%relay, %error, "mailbox error");
            }
            _ => {}
        }
    }

    /// Asks a relay for this node's mail.
    pub(super) fn fetch_mail(&mut self, relay: PeerId, after: Option<u64>) {
        let id = self.swarm.behaviour_mut().mailbox.send_request(
            &relay,
            Inbound::Request(MailboxRequest::Fetch {
                after,
                limit: FETCH_PAGE,
            }),
        );
        self.mailbox_pending.insert(id, MailboxPending::Fetch);
    }

    /// For each unreachable peer with undelivered changes, deposits them at
    /// its relays (dialling the relays first if needed). Relays come from the
    /// contact entry and the peer's signed profile; a peer with none known
    /// is looked up in the DHT.
    pub(super) fn deposit_for_unreachable(&mut self) {
        let Ok(recipients) = self.chats.store().outbox_peers() else {
            return;
        };
        for recipient in recipients {
            let Some(peer) = peer_id_of(&recipient) else {
                continue;
            };
            if self.swarm.is_connected(&peer) || self.chats.store().is_blocked(&recipient) {
                continue;
            }
            let relays = self.relays_of(&recipient);
            if relays.is_empty() {
                self.lookup_profile(recipient);
                continue;
            }
            let batch: Vec<SignedChange> = match self.chats.outbox_batch(&recipient) {
                Ok(batch) => batch
                    .into_iter()
                    .filter(|c| {
                        c.decode_stored()
                            .is_ok_and(|v| !self.deposited.contains(&(peer, v.hash)))
                    })
                    .collect(),
                Err(_) => continue,
            };
            if batch.is_empty() {
                continue;
            }
            for relay_addr in &relays {
                let Some(relay) = crate::config::peer_of(relay_addr) else {
                    continue;
                };
                if !self.swarm.is_connected(&relay) {
                    self.remember_addrs(relay, [relay_addr.clone()]);
                    self.dial_peer(relay);
                    continue;
                }
                self.deposit(relay, recipient, peer, batch.clone());
            }
        }
    }

    fn deposit(
        &mut self,
        relay: PeerId,
        recipient: PublicKey,
        peer: PeerId,
        changes: Vec<SignedChange>,
    ) {
        let hashes: Vec<ChangeHash> = changes
            .iter()
            .filter_map(|c| c.decode_stored().ok().map(|v| v.hash))
            .collect();
        for hash in &hashes {
            self.deposited.insert((peer, *hash));
        }
        let envelope = encode_frame(&Envelope::Changes(changes));
        let id = self.swarm.behaviour_mut().mailbox.send_request(
            &relay,
            Inbound::Request(MailboxRequest::Deposit {
                recipient,
                envelope,
            }),
        );
        self.mailbox_pending
            .insert(id, MailboxPending::Deposit { recipient, hashes });
    }

    /// Makes refused deposits whose retry time has come eligible again.
    pub(super) fn retry_refused_deposits(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deposit_retries)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.deposit_retries = later;
        for (_, recipient, hashes) in due {
            self.forget_deposits(recipient, &hashes);
        }
    }

    fn forget_deposits(&mut self, recipient: PublicKey, hashes: &[ChangeHash]) {
        if let Some(peer) = peer_id_of(&recipient) {
            for hash in hashes {
                self.deposited.remove(&(peer, *hash));
            }
        }
    }

    /// A relay holds these changes for `recipient`: their messages are `sent`.
    fn on_custody(
        &mut self,
        recipient: PublicKey,
        hashes: &[ChangeHash],
        relay: &PublicKey,
        held_until_ms: i64,
    ) {
        let Some(peer) = peer_id_of(&recipient) else {
            return;
        };
        match self
            .chats
            .in_custody(&recipient, hashes, relay, held_until_ms)
        {
            Ok(sent) => {
                for (chat, message) in sent {
                    tracing::debug!(%chat, %message, held_until_ms, "held by a relay");
                    self.emit(Event::Delivery {
                        chat,
                        message,
                        peer,
                        state: DeliveryState::Sent,
                    });
                }
            }
            Err(error) => tracing::error!(%error, "cannot record custody"),
        }
    }

    /// Relay upkeep: drop expired mail.
    pub(super) fn expire_mail(&mut self) {
        if let Some(mailbox) = &self.mailbox {
            match mailbox.expire(now_ms()) {
                Ok(n) => self.metrics.expired += n,
                Err(error) => tracing::error!(%error, "mailbox expiry failed"),
            }
        }
    }
}

pub(crate) use crate::api::RelayMetrics;

impl RelayMetrics {
    fn refused(&mut self, refusal: &Refusal) {
        match refusal {
            Refusal::TooLarge { .. } => self.refused_too_large += 1,
            Refusal::QuotaExceeded => self.refused_quota += 1,
            Refusal::RateLimited { .. } => self.refused_rate += 1,
            _ => self.refused_unavailable += 1,
        }
    }
}

/// Pending deposits, keyed by (recipient, change).
pub(super) type Deposited = HashSet<(PeerId, ChangeHash)>;

pub(super) type MailboxPendingMap = HashMap<OutboundRequestId, MailboxPending>;

/// Refused deposits and when to offer them again.
pub(super) type DepositRetries = Vec<(tokio::time::Instant, PublicKey, Vec<ChangeHash>)>;

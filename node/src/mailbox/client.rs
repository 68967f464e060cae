//! `/meshchat/mailbox/2`, the peer's side: fetching its own mail page by
//! page (acknowledged once durable), depositing undelivered changes at an
//! unreachable contact's relays, over its own connection or by courier,
//! and checking the custody receipts that come back.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{ChangeHash, PublicKey, SignedChange};

use super::{
    couriers::Returned,
    fetches::AfterPage,
    pending::{MailboxPending, SentDeposit},
    receipt::{envelope_hash, CustodyReceipt},
    sealed_mail::open_envelope,
    sealing,
    store::Refusal,
    wire::{
        DepositItem, DepositOutcome, MailboxRequest, MailboxResponse, MAX_DEPOSITS_PER_BATCH,
        MAX_FETCH_ITEMS,
    },
};
use crate::{
    actor::{
        commit::{Held, HeldMail},
        ingest::Via,
        Actor,
    },
    clock::now_ms,
    events::Event,
    framing::Inbound,
    keys::{peer_id_of, public_key_of},
    store::DeliveryState,
};

/// Pages of mail from one relay that may wait for their flush while the
/// next is fetched.
const MAIL_PAGES_AHEAD: usize = 2;
/// How long to wait before offering a relay mail it refused.
const REFUSED_RETRY: Duration = Duration::from_secs(60);
/// How long to wait after a relay said the token is missing or bad (new
/// tokens from the recipient end the wait at once).
const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(600);
/// Envelope size a sender aims for (relays take up to 1 MiB by default; a
/// single larger change still goes alone).
const ENVELOPE_TARGET_BYTES: usize = 256 * 1024;
/// Room for a change's signature and framing next to its raw bytes.
const CHANGE_OVERHEAD_BYTES: usize = 256;
/// Envelopes deposited per recipient per relay per redial tick.
const ENVELOPES_PER_TICK: usize = 4;

/// Deposits gathered for one relay, to leave in as few requests as the
/// protocol's bounds allow.
struct Outgoing {
    relay_key: PublicKey,
    /// Over the node's own connection (the relay learns who deposits).
    deposits: Vec<(SentDeposit, DepositItem)>,
    /// By courier, over a throwaway identity (see `crate::mailbox::courier`).
    anonymous: Vec<(SentDeposit, DepositItem)>,
    /// Where a courier dials the relay.
    addrs: Vec<Multiaddr>,
}

/// Most envelope bytes one batch request carries (under
/// `MAILBOX_MAX_REQUEST_BYTES`, with room for tokens and framing).
const BATCH_TARGET_BYTES: usize = 2 * 1024 * 1024;
impl Actor {
    /// A courier came back: its answer is handled as the same request's
    /// over the node's own swarm would be, and so is its failure.
    pub(crate) async fn on_courier_returned(&mut self, returned: Returned) {
        let Returned {
            relay,
            pending,
            result,
        } = returned;
        match result {
            Ok(response) => {
                self.on_mailbox_response(relay, pending, response).await;
                // Mail that waited for a courier leaves now, together (not
                // after a failure, which would only start the next round
                // against an unreachable relay at once: the deposit tick
                // retries).
                if self.couriers.take_deferred() {
                    self.deposit_now(None);
                }
            }
            Err(error) => {
                tracing::debug!(%relay, %error, "courier failed");
                self.traffic.couriers_failed += 1;
                if let MailboxPending::Deposit { relay, deposits } = pending {
                    self.deposit_failed(&relay, deposits);
                }
            }
        }
    }

    /// A deposit request failed (no answer): its changes are due again at
    /// the next deposit tick.
    pub(super) fn deposit_failed(&mut self, relay: &PublicKey, deposits: Vec<SentDeposit>) {
        for sent in deposits {
            self.deposits.settled(&sent.recipient, relay, &sent.hashes);
        }
    }

    /// The flush that was to cover a page of mail finished: acknowledge
    /// what it made durable (and what can never be applied) to the relay,
    /// and fetch the next page.
    pub(crate) fn mail_flushed(&mut self, page: HeldMail, flushed: bool) {
        let HeldMail {
            relay,
            items,
            mut dropped,
            then,
        } = page;
        for (ids, ingest) in items {
            if flushed {
                self.ingested(ingest);
                dropped.extend(ids);
            } else {
                self.ingest_failed(&ingest);
            }
        }
        if !dropped.is_empty() {
            let id = self.swarm.behaviour_mut().mailbox.send_request(
                &relay,
                Inbound::Request(MailboxRequest::Ack { ids: dropped }),
            );
            self.mailbox_pending.insert(id, MailboxPending::Notify);
        }
        match (flushed, then) {
            (true, AfterPage::Fetch(after)) => self.fetch_mail(relay, after),
            // The fetch in flight carries the chain on (or ends it).
            (_, AfterPage::Fetching) => {}
            (true, AfterPage::Last) | (false, _) => self.mail_fetch_ended(relay),
        }
    }

    /// Fetches all of `relay`'s mail from the start, unless a fetch of it
    /// runs already (then once more after that one).
    pub(crate) fn fetch_all_mail(&mut self, relay: PeerId) {
        if self.mail_fetches.start(relay) {
            self.fetch_mail(relay, None);
        }
    }

    /// `relay`'s chain of fetches ended: starts the one asked for meanwhile.
    pub(super) fn mail_fetch_ended(&mut self, relay: PeerId) {
        if self.mail_fetches.ended(&relay) {
            self.fetch_mail(relay, None);
        }
    }

    pub(super) async fn on_mailbox_response(
        &mut self,
        from: PeerId,
        pending: MailboxPending,
        response: MailboxResponse,
    ) {
        match (pending, response) {
            (MailboxPending::Fetch, MailboxResponse::Mail { items, more }) => {
                let relay = from;
                let last = items.last().map(|i| i.id);
                // The next page is asked for while this one is applied and
                // flushed, unless earlier pages still wait for their flush
                // (at most MAIL_PAGES_AHEAD held per relay) or storage is
                // failing.
                let fetch_now = more
                    && self.commit.mail_pages_from(&relay) < MAIL_PAGES_AHEAD
                    && self.chats.store().fault().is_none();
                if fetch_now {
                    self.fetch_mail(relay, last);
                }
                let then = match (more, fetch_now) {
                    (false, _) => AfterPage::Last,
                    (true, true) => AfterPage::Fetching,
                    (true, false) => AfterPage::Fetch(last),
                };
                let mut page = HeldMail {
                    relay,
                    items: Vec::new(),
                    dropped: Vec::new(),
                    then,
                };
                // One batch for the whole page: Automerge applies a batch
                // about as fast as one change, and a change may depend on
                // another's from other mail (an invitation's metadata).
                let (mut ids, mut batch, mut authors) = (Vec::new(), Vec::new(), BTreeSet::new());
                for item in items {
                    let me = self.chats.me();
                    let changes = match open_envelope(&item.envelope, &me, self.chats.device_keys())
                    {
                        Ok(changes) => changes,
                        Err(error) => {
                            // Mail that does not decode or open never will
                            // (a key version no longer held included):
                            // drop this item, keep the rest of the page.
                            tracing::warn!(%relay, %error, "unreadable mail");
                            page.dropped.push(item.id);
                            continue;
                        }
                    };
                    // Who deposited is the relay's word, and mostly a
                    // courier's throwaway key: the changes' authors are
                    // who sent them (their signatures are checked as they
                    // are applied).
                    if self.chats.store().is_blocked(&item.sender) {
                        page.dropped.push(item.id);
                        continue;
                    }
                    ids.push(item.id);
                    let store = self.chats.store();
                    batch.extend(changes.into_iter().filter(|change| {
                        // The author named inside the change (its actor),
                        // unverified here: a forged one fails the
                        // signature check against that very key when
                        // applied. A change that does not decode goes on,
                        // to be refused and reported like any other.
                        let Ok(decoded) = change.decode_stored() else {
                            return true;
                        };
                        if store.is_blocked(&decoded.author) {
                            return false;
                        }
                        authors.insert(decoded.author);
                        true
                    }));
                }
                if batch.is_empty() {
                    // Nothing left (only blocked authors' changes).
                    page.dropped.extend(ids);
                } else {
                    // Refusals are reported against the author; a page of
                    // several authors' changes (group mail, several
                    // senders) against the relay it came from. `from` only
                    // seeds a message request, whose sender is then taken
                    // from the changes themselves.
                    let first = authors.first().copied().unwrap_or_else(|| self.chats.me());
                    let peer = match authors.len() {
                        1 => peer_id_of(&first).unwrap_or(relay),
                        _ => relay,
                    };
                    // Acknowledged to the relay only once the flush covering it succeeds.
                    if let Ok(ingest) = self.ingest(peer, first, batch, Via::Mailbox) {
                        page.items.push((ids, ingest));
                    }
                }
                self.commit.hold(Held::Mail(page));
            }
            (MailboxPending::Deposit { relay, deposits }, response) => {
                for (sent, answer) in deposits
                    .iter()
                    .zip(answers_per_deposit(response, deposits.len()))
                {
                    self.deposits.settled(&sent.recipient, &relay, &sent.hashes);
                    self.on_deposit_answer(from, relay, sent, answer);
                }
            }
            (MailboxPending::Tokens { holder, issued }, response) => {
                self.on_tokens_answer(holder, issued, response);
            }
            (MailboxPending::Fetch, other) => {
                tracing::debug!(peer = %from, ?other, "relay did not serve mail");
                self.mail_fetch_ended(from);
            }
            (_, MailboxResponse::Error(error)) => {
                tracing::debug!(peer = %from, %error, "mailbox error");
            }
            _ => {}
        }
    }

    /// A relay answered a deposit. Custody counts only with a receipt signed
    /// by that relay for the recipient and envelope that were sent.
    fn on_deposit_answer(
        &mut self,
        relay_peer: PeerId,
        relay: PublicKey,
        sent: &SentDeposit,
        response: MailboxResponse,
    ) {
        let (recipient, hashes, sent_hash) = (sent.recipient, &sent.hashes[..], sent.envelope_hash);
        let wait = match response {
            MailboxResponse::Deposited(receipt)
                if receipt.confirms(&relay, &recipient, &sent_hash) =>
            {
                if let Err(error) =
                    self.deposits
                        .held(&recipient, &relay, hashes, receipt.held_until_ms)
                {
                    tracing::warn!(%error, "cannot record a deposit");
                }
                self.on_custody(recipient, hashes, &relay, receipt.held_until_ms);
                return;
            }
            MailboxResponse::Deposited(receipt) => {
                self.mismatched_receipt(relay_peer, &recipient, &sent_hash, &receipt);
                REFUSED_RETRY
            }
            MailboxResponse::Refused(Refusal::RateLimited { retry_after_secs }) => {
                Duration::from_secs(retry_after_secs.clamp(1, 3600))
            }
            MailboxResponse::Refused(Refusal::Unauthorized(error)) => {
                tracing::info!(relay = %relay_peer, %error, "relay wants a delivery token we do not have");
                UNAUTHORIZED_RETRY
            }
            other => {
                tracing::info!(relay = %relay_peer, ?other, "relay did not take the mail");
                REFUSED_RETRY
            }
        };
        self.deposits
            .pause(recipient, relay, tokio::time::Instant::now() + wait);
    }

    fn mismatched_receipt(
        &mut self,
        relay: PeerId,
        recipient: &PublicKey,
        sent_hash: &[u8; 32],
        receipt: &CustodyReceipt,
    ) {
        let reason = if receipt.verify().is_err() {
            "custody receipt with a bad signature"
        } else if public_key_of(&relay) != Some(receipt.relay) {
            "custody receipt signed by another relay"
        } else if receipt.recipient != *recipient {
            "custody receipt for another recipient"
        } else if receipt.envelope_hash != *sent_hash {
            "custody receipt for another envelope"
        } else {
            "custody receipt does not match the deposit"
        };
        tracing::warn!(%relay, %recipient, reason, "ignored a custody receipt");
        self.emit(Event::Rejected {
            peer: relay,
            reason: reason.into(),
        });
    }

    /// Asks a relay for this node's mail.
    fn fetch_mail(&mut self, relay: PeerId, after: Option<u64>) {
        let id = self.swarm.behaviour_mut().mailbox.send_request(
            &relay,
            Inbound::Request(MailboxRequest::Fetch {
                after,
                limit: MAX_FETCH_ITEMS,
            }),
        );
        self.mailbox_pending.insert(id, MailboxPending::Fetch);
    }

    /// For each unreachable peer with undelivered changes, deposits at each
    /// of its relays what that relay does not hold yet, in envelopes of a
    /// size relays take, a few per tick (dialling the relays first if
    /// needed). Relays come from the contact entry and the peer's signed
    /// profile; a peer with none known is looked up in the DHT. Returns the
    /// relays being dialled, whose deposits go when they connect.
    pub(crate) fn deposit_for_unreachable(&mut self) -> Vec<PeerId> {
        let Ok(recipients) = self.chats.store().outbox_peers() else {
            return Vec::new();
        };
        let mut outgoing = BTreeMap::new();
        let mut awaited = Vec::new();
        for recipient in recipients {
            awaited.extend(self.gather_deposits(recipient, &mut outgoing));
        }
        self.send_deposits(outgoing);
        awaited
    }

    /// Deposits `recipient`'s outbox at its relays if it is not connected
    /// (see [`Actor::deposit_for_unreachable`]).
    pub(crate) fn deposit_for(&mut self, recipient: PublicKey) -> Vec<PeerId> {
        let mut outgoing = BTreeMap::new();
        let awaited = self.gather_deposits(recipient, &mut outgoing);
        self.send_deposits(outgoing);
        awaited
    }

    /// Adds to `outgoing` the envelopes `recipient`'s connected relays do
    /// not hold yet; returns the relays being dialled first.
    fn gather_deposits(
        &mut self,
        recipient: PublicKey,
        outgoing: &mut BTreeMap<PeerId, Outgoing>,
    ) -> Vec<PeerId> {
        let (now, instant) = (now_ms(), tokio::time::Instant::now());
        let mut awaited = Vec::new();
        let Some(peer) = peer_id_of(&recipient) else {
            return awaited;
        };
        if self.swarm.is_connected(&peer) || self.chats.store().is_blocked(&recipient) {
            return awaited;
        }
        let relays = self.relays_of(&recipient);
        if relays.is_empty() {
            self.lookup_profile(recipient);
            return awaited;
        }
        let Ok(outbox) = self.chats.store().outbox_for(&recipient, usize::MAX) else {
            return awaited;
        };
        if outbox.is_empty() {
            return awaited;
        }
        // Mail rests at relays only sealed: without the recipient's key the
        // node looks its signed profile up (relays hold it) and deposits
        // once it arrives; until then the mail waits in the outbox.
        let Some(sealing_key) = sealing::encryption_key_of(self.chats.store(), &recipient) else {
            self.lookup_profile(recipient);
            return awaited;
        };
        for relay_addr in &relays {
            let Some((relay, relay_key)) =
                crate::config::peer_of(relay_addr).and_then(|p| Some((p, public_key_of(&p)?)))
            else {
                continue;
            };
            if self.deposits.is_paused(&recipient, &relay_key, instant) {
                continue;
            }
            let envelopes = self.due_envelopes(&recipient, &relay_key, &outbox, now);
            if envelopes.is_empty() {
                continue;
            }
            let token = self.tokens.for_deposit(&recipient, &relay_key);
            // Sealed mail under a token goes by courier, which dials the
            // relay itself; the rest over this node's own connection.
            let by_courier = token.is_some() && self.couriers.enabled();
            let connected = self.swarm.is_connected(&relay);
            if !connected && !by_courier {
                self.remember_addrs(relay, [relay_addr.clone()]);
                self.dial_peer(relay);
                // Deposited as soon as the connection is up.
                awaited.push(relay);
                continue;
            }
            let to_relay = outgoing.entry(relay).or_insert_with(|| Outgoing {
                relay_key,
                deposits: Vec::new(),
                anonymous: Vec::new(),
                addrs: Vec::new(),
            });
            if !to_relay.addrs.contains(relay_addr) {
                to_relay.addrs.push(relay_addr.clone());
            }
            let mut identified_waits = false;
            for changes in envelopes {
                let (changes, hashes): (Vec<SignedChange>, Vec<ChangeHash>) =
                    changes.into_iter().unzip();
                let Some(envelope) = sealing::mail_envelope(
                    changes,
                    &recipient,
                    &sealing_key,
                    self.chats.device_keys().current(),
                ) else {
                    continue;
                };
                let anonymous = by_courier && crate::mailbox::courier::carries(&envelope);
                if !anonymous && !connected {
                    // Not for a courier (it attaches files): it goes over
                    // the connection, once up.
                    identified_waits = true;
                    continue;
                }
                self.deposits.sent(recipient, relay_key, &hashes);
                let sent = SentDeposit {
                    recipient,
                    hashes,
                    envelope_hash: envelope_hash(&envelope),
                };
                let item = DepositItem {
                    recipient,
                    envelope,
                    token: token.clone(),
                };
                if anonymous {
                    to_relay.anonymous.push((sent, item));
                } else {
                    to_relay.deposits.push((sent, item));
                }
            }
            if identified_waits {
                self.remember_addrs(relay, [relay_addr.clone()]);
                self.dial_peer(relay);
                awaited.push(relay);
            }
        }
        awaited
    }

    /// Sends the gathered deposits, each relay's in as few requests as
    /// [`MAX_DEPOSITS_PER_BATCH`] and [`BATCH_TARGET_BYTES`] allow: the
    /// relay answers a batch after one flush. Each request of sealed mail
    /// goes by its own courier (a fresh identity), one per relay at a time;
    /// the rest stays due, for when a courier delivers or the next deposit
    /// tick.
    fn send_deposits(&mut self, outgoing: BTreeMap<PeerId, Outgoing>) {
        for (
            relay,
            Outgoing {
                relay_key,
                deposits,
                anonymous,
                mut addrs,
            },
        ) in outgoing
        {
            for known in self.addrs.get(&relay).into_iter().flatten() {
                if !addrs.contains(known) {
                    addrs.push(known.clone());
                }
            }
            for (sent, request) in into_requests(anonymous) {
                if !self.couriers.may_start(&relay) {
                    self.deposit_failed(&relay_key, sent);
                    continue;
                }
                let pending = MailboxPending::Deposit {
                    relay: relay_key,
                    deposits: sent,
                };
                self.couriers.start(relay, addrs.clone(), request, pending);
                self.traffic.couriers_sent += 1;
            }
            for (sent, request) in into_requests(deposits) {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .mailbox
                    .send_request(&relay, Inbound::Request(request));
                self.mailbox_pending.insert(
                    id,
                    MailboxPending::Deposit {
                        relay: relay_key,
                        deposits: sent,
                    },
                );
            }
        }
    }

    /// The outbox changes `relay` does not hold (or have in flight) for
    /// `recipient`, as up to [`ENVELOPES_PER_TICK`] envelopes of about
    /// [`ENVELOPE_TARGET_BYTES`]. The same outbox gives the same envelopes,
    /// so a deposit repeated after a lost receipt is recognised by the relay.
    fn due_envelopes(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        outbox: &[crate::store::OutboxEntry],
        now: i64,
    ) -> Vec<Vec<(SignedChange, ChangeHash)>> {
        let store = self.chats.store();
        let mut envelopes = Vec::new();
        let (mut current, mut bytes) = (Vec::new(), 0);
        for entry in outbox {
            if !self.deposits.is_due(recipient, relay, &entry.hash, now) {
                continue;
            }
            let Ok(Some(change)) = store.change(&entry.chat, entry.segment, &entry.hash) else {
                continue;
            };
            let size = change.change.len() + CHANGE_OVERHEAD_BYTES;
            if !current.is_empty() && bytes + size > ENVELOPE_TARGET_BYTES {
                envelopes.push(std::mem::take(&mut current));
                bytes = 0;
                if envelopes.len() == ENVELOPES_PER_TICK {
                    return envelopes;
                }
            }
            bytes += size;
            current.push((change, entry.hash));
        }
        if !current.is_empty() {
            envelopes.push(current);
        }
        envelopes
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
}

/// A relay's answer to a request of `count` deposits, as one answer per
/// deposit: a batch's outcomes in order, or the single answer; anything
/// else (an error, a batch of the wrong length) counts as a refusal of each.
fn answers_per_deposit(response: MailboxResponse, count: usize) -> Vec<MailboxResponse> {
    match response {
        MailboxResponse::DepositedBatch { outcomes } if outcomes.len() == count => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                DepositOutcome::Deposited(receipt) => MailboxResponse::Deposited(receipt),
                DepositOutcome::Refused(refusal) => MailboxResponse::Refused(refusal),
            })
            .collect(),
        single @ (MailboxResponse::Deposited(_) | MailboxResponse::Refused(_)) if count == 1 => {
            vec![single]
        }
        other => vec![other; count],
    }
}

/// Deposits for one relay as requests: a lone deposit as `Deposit`, more in
/// `DepositBatch`es of at most [`MAX_DEPOSITS_PER_BATCH`] deposits and about
/// [`BATCH_TARGET_BYTES`] of envelopes, in order.
fn into_requests(
    deposits: Vec<(SentDeposit, DepositItem)>,
) -> Vec<(Vec<SentDeposit>, MailboxRequest)> {
    let mut requests = Vec::new();
    let (mut sent, mut items, mut bytes) = (Vec::new(), Vec::new(), 0);
    let mut finish = |sent: Vec<SentDeposit>, mut items: Vec<DepositItem>| {
        let request = match (items.pop(), items.is_empty()) {
            (Some(only), true) => MailboxRequest::Deposit {
                recipient: only.recipient,
                envelope: only.envelope,
                token: only.token,
            },
            (Some(last), false) => {
                items.push(last);
                MailboxRequest::DepositBatch { deposits: items }
            }
            (None, _) => return,
        };
        requests.push((sent, request));
    };
    for (one_sent, item) in deposits {
        let full = items.len() == MAX_DEPOSITS_PER_BATCH
            || (!items.is_empty() && bytes + item.envelope.len() > BATCH_TARGET_BYTES);
        if full {
            finish(std::mem::take(&mut sent), std::mem::take(&mut items));
            bytes = 0;
        }
        bytes += item.envelope.len();
        sent.push(one_sent);
        items.push(item);
    }
    finish(sent, items);
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deposit(bytes: usize) -> (SentDeposit, DepositItem) {
        let recipient = meshchat_crdt::Identity::generate().public();
        let sent = SentDeposit {
            recipient,
            hashes: Vec::new(),
            envelope_hash: [0; 32],
        };
        let item = DepositItem {
            recipient,
            envelope: vec![1; bytes],
            token: None,
        };
        (sent, item)
    }

    /// (deposits, is a batch) of each request.
    fn shapes(requests: &[(Vec<SentDeposit>, MailboxRequest)]) -> Vec<(usize, bool)> {
        requests
            .iter()
            .map(|(sent, request)| match request {
                MailboxRequest::Deposit { .. } => (sent.len(), false),
                MailboxRequest::DepositBatch { deposits } => {
                    assert_eq!(deposits.len(), sent.len());
                    (sent.len(), true)
                }
                other => panic!("not a deposit: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn deposits_leave_in_as_few_requests_as_the_bounds_allow() {
        assert!(into_requests(Vec::new()).is_empty());
        assert_eq!(shapes(&into_requests(vec![deposit(10)])), [(1, false)]);
        let many = (0..130).map(|_| deposit(10)).collect();
        assert_eq!(
            shapes(&into_requests(many)),
            [(64, true), (64, true), (2, true)]
        );
        let big = BATCH_TARGET_BYTES / 2;
        let heavy = vec![deposit(big), deposit(big), deposit(big), deposit(10)];
        assert_eq!(shapes(&into_requests(heavy)), [(2, true), (2, true)]);
        // One envelope over the target still leaves, alone.
        let huge = vec![deposit(10), deposit(BATCH_TARGET_BYTES + 1)];
        assert_eq!(shapes(&into_requests(huge)), [(1, false), (1, false)]);
    }

    #[test]
    fn a_batch_answer_is_one_answer_per_deposit_or_a_refusal_of_each() {
        let refused = MailboxResponse::Refused(Refusal::Unavailable);
        let outcomes = vec![
            DepositOutcome::Refused(Refusal::QuotaExceeded),
            DepositOutcome::Refused(Refusal::Unavailable),
        ];
        assert_eq!(
            answers_per_deposit(
                MailboxResponse::DepositedBatch {
                    outcomes: outcomes.clone()
                },
                2
            ),
            [
                MailboxResponse::Refused(Refusal::QuotaExceeded),
                refused.clone()
            ]
        );
        // A batch of the wrong length, or a single answer to a batch, is
        // custody for none of it.
        for (response, count) in [
            (MailboxResponse::DepositedBatch { outcomes }, 3),
            (refused.clone(), 2),
            (MailboxResponse::NotARelay, 1),
        ] {
            let answers = answers_per_deposit(response.clone(), count);
            assert_eq!(answers.len(), count);
            assert!(answers
                .iter()
                .all(|a| !matches!(a, MailboxResponse::Deposited(_))));
        }
        assert_eq!(answers_per_deposit(refused.clone(), 1), [refused]);
    }
}

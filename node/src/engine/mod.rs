//! The delivery engine, sans I/O: *when* to dial, push, sync, deposit, fetch
//! mail, send receipts and heartbeats, as a pure state machine.
//!
//! [`State::handle`] takes an [`Input`] (a connection came up, a push was
//! answered, time passed) and the current time, and returns the
//! [`Effect`]s to carry out, in order. It owns no socket, no database and
//! no clock, so every decision is unit-tested with plain values, time
//! included (`tests.rs`). The actor is the shell: it turns swarm events and
//! commands into inputs and runs the effects; an effect that needs the
//! store (which chats to sync, what the outbox holds) is answered by the
//! shell with a further input.
//!
//! What is delivered (outbox batches, envelopes, receipts) stays with the
//! subsystems that store it; what waits for a flush is the group commit's
//! (`actor/commit.rs`).

mod redial;
mod sync_slots;
mod timers;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use meshchat_crdt::ChatId;

pub(crate) use timers::Periods;
use timers::{Timer, Timers};

/// Longest wait between redials of an unreachable peer.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Relays a deposit may wait for at once (the relays of peers with
/// undelivered mail; one more is ignored until the set drains).
pub(crate) const MAX_AWAITED_RELAYS: usize = 256;

/// Something that happened, for the engine to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// The first connection to a peer opened.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
    /// A dial to a peer failed (`started`), or could not even start.
    DialFailed { peer: PeerId, started: bool },
    /// The node's own addresses changed: the network may be back.
    NetworkChanged,
    /// Reach a peer now, whatever its backoff (a new contact, an unblock).
    Reach(PeerId),
    /// Something waits in a peer's outbox (a local write, an acknowledged
    /// push back that may have made room).
    Outgoing(PeerId),
    /// An outbox push was answered or failed; `more` if the outbox may hold
    /// more for the peer now.
    PushEnded { peer: PeerId, more: bool },
    /// A chat to sync with a peer.
    SyncWanted { peer: PeerId, chat: ChatId },
    /// A sync with a peer was answered or failed.
    SyncEnded { peer: PeerId, chat: ChatId },
    /// The answer to [`Effect::ListRedialCandidates`]: peers with
    /// undelivered changes, and contacts.
    RedialCandidates(Vec<PeerId>),
    /// A deposit waits for this relay to connect.
    RelayAwaited(PeerId),
    /// Reserving a circuit at a relay failed.
    ReservationFailed(PeerId),
    /// Storage works again after a fault: resume pushing.
    StorageRecovered,
    /// Time passed (the shell calls at [`State::next_wake`]).
    Tick,
}

/// Something for the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Announce the peer as connected.
    Connected(PeerId),
    /// Announce the peer as gone.
    Disconnected(PeerId),
    /// Dial the peer; report [`Input::DialFailed`] if it cannot start.
    Dial(PeerId),
    /// Send the peer's next outbox batch; report [`Input::PushEnded`] when
    /// answered (or at once if there is nothing to send).
    Push(PeerId),
    /// List the chats shared with the peer, as [`Input::SyncWanted`]s.
    SyncAll(PeerId),
    /// Anti-entropy: the same, less the groups whose topic is bringing news
    /// (gossip is carrying them, and a gap shows as a missing dependency).
    Resync(PeerId),
    /// Send a sync request; report [`Input::SyncEnded`].
    Sync { peer: PeerId, chat: ChatId },
    /// Report the [`Input::RedialCandidates`].
    ListRedialCandidates,
    /// Send the read receipts queued for the peer.
    SendReceipts(PeerId),
    /// Greet a new connection: presence, profiles, tokens.
    Greet(PeerId),
    /// Ask a relay for this node's mail.
    FetchMail(PeerId),
    /// Listen through a relay's circuit.
    ReserveCircuit(PeerId),
    /// Deposit an unreachable peer's outbox at its relays.
    Deposit(PeerId),
    /// Deposit every unreachable peer's outbox.
    DepositAll,
    /// Hand out delivery tokens to contacts that lack fresh ones.
    HandOutTokens,
    /// Drop mail held past its time.
    ExpireMail,
    /// Heartbeats to the presence audience; mark silent peers offline.
    PresenceTick,
}

/// The engine's state: who is connected, what is in flight, what is due.
pub(crate) struct State {
    relays: BTreeSet<PeerId>,
    connected: BTreeSet<PeerId>,
    /// Peers with an outbox push in flight (one at a time keeps acks in order).
    pushing: BTreeSet<PeerId>,
    syncs: sync_slots::SyncSlots,
    redials: redial::Redials,
    /// Relays this node holds (or asked for) a circuit reservation at.
    reserved: BTreeSet<PeerId>,
    /// Relays a deposit waits for.
    awaited_relays: BTreeSet<PeerId>,
    timers: Timers,
    /// The resync slice the next [`Timer::Resync`] covers.
    resync_slice: u32,
}

impl State {
    /// A fresh engine for a node whose configured relays are `relays`,
    /// started at `now`.
    pub(crate) fn new(
        relays: impl IntoIterator<Item = PeerId>,
        periods: Periods,
        now: Instant,
    ) -> Self {
        Self {
            relays: relays.into_iter().collect(),
            connected: BTreeSet::new(),
            pushing: BTreeSet::new(),
            syncs: Default::default(),
            redials: redial::Redials::new(periods.redial, MAX_BACKOFF),
            reserved: BTreeSet::new(),
            awaited_relays: BTreeSet::new(),
            timers: Timers::new(periods, now),
            resync_slice: 0,
        }
    }

    /// When the shell should next call with [`Input::Tick`].
    pub(crate) fn next_wake(&self) -> Instant {
        self.timers.next()
    }

    /// Whether `peer` is connected, as far as the engine was told.
    #[cfg(test)]
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer)
    }

    /// Acts on `input` at `now`: the effects to carry out, in order.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Connected(peer) => self.connected(peer, now, &mut out),
            Input::Disconnected(peer) => {
                self.connected.remove(&peer);
                self.pushing.remove(&peer);
                self.syncs.forget(&peer);
                // A lost relay connection ends its reservation: renew on reconnect.
                self.reserved.remove(&peer);
                out.push(Effect::Disconnected(peer));
            }
            Input::DialFailed { peer, started } => {
                if started {
                    self.redials.failed(peer);
                }
                // Its mail goes to its relays now, not at the next tick.
                out.push(Effect::Deposit(peer));
            }
            Input::NetworkChanged => {
                if self.redials.network_changed(now) {
                    out.push(Effect::ListRedialCandidates);
                }
            }
            Input::Reach(peer) => {
                self.redials.forget(&peer);
                if !self.connected.contains(&peer) {
                    out.push(Effect::Dial(peer));
                }
            }
            Input::Outgoing(peer) => {
                if self.connected.contains(&peer) {
                    self.push(peer, &mut out);
                } else {
                    out.push(Effect::Dial(peer));
                }
            }
            Input::PushEnded { peer, more } => {
                self.pushing.remove(&peer);
                if more && self.connected.contains(&peer) {
                    self.push(peer, &mut out);
                }
            }
            Input::SyncWanted { peer, chat } => {
                if self.syncs.admit(peer, chat) {
                    out.push(Effect::Sync { peer, chat });
                }
            }
            Input::SyncEnded { peer, chat } => {
                if let Some(chat) = self.syncs.finish(peer, chat) {
                    out.push(Effect::Sync { peer, chat });
                }
            }
            Input::RedialCandidates(mut peers) => {
                peers.extend(self.relays.iter().copied());
                peers.sort();
                peers.dedup();
                for peer in peers {
                    if self.connected.contains(&peer) {
                        // Connected but undelivered (a push failed or timed out): retry.
                        self.push(peer, &mut out);
                    } else if self.redials.due(peer, now) {
                        out.push(Effect::Dial(peer));
                    }
                }
            }
            Input::RelayAwaited(relay) => {
                if self.awaited_relays.len() < MAX_AWAITED_RELAYS {
                    self.awaited_relays.insert(relay);
                }
            }
            Input::ReservationFailed(relay) => {
                self.reserved.remove(&relay);
            }
            Input::StorageRecovered => {
                let connected: Vec<PeerId> = self.connected.iter().copied().collect();
                for peer in connected {
                    self.push(peer, &mut out);
                }
            }
            Input::Tick => {
                for timer in self.timers.due(now) {
                    self.fire(timer, &mut out);
                }
            }
        }
        out
    }

    fn connected(&mut self, peer: PeerId, now: Instant, out: &mut Vec<Effect>) {
        if !self.connected.insert(peer) {
            return;
        }
        if self.redials.connected(peer, now) {
            // An unreachable peer is back: so may everyone else be.
            out.push(Effect::ListRedialCandidates);
        }
        out.push(Effect::Connected(peer));
        out.push(Effect::SyncAll(peer));
        self.push(peer, out);
        out.push(Effect::SendReceipts(peer));
        out.push(Effect::Greet(peer));
        if self.relays.contains(&peer) {
            out.push(Effect::FetchMail(peer));
            if self.reserved.insert(peer) {
                out.push(Effect::ReserveCircuit(peer));
            }
        }
        if self.awaited_relays.remove(&peer) {
            out.push(Effect::DepositAll);
        }
    }

    /// Pushes to a connected peer unless a push is in flight.
    fn push(&mut self, peer: PeerId, out: &mut Vec<Effect>) {
        if self.pushing.insert(peer) {
            out.push(Effect::Push(peer));
        }
    }

    fn fire(&mut self, timer: Timer, out: &mut Vec<Effect>) {
        match timer {
            Timer::Redial => {
                out.push(Effect::ListRedialCandidates);
                out.push(Effect::HandOutTokens);
                out.push(Effect::DepositAll);
            }
            Timer::Expiry => out.push(Effect::ExpireMail),
            Timer::Resync => {
                let slice = self.resync_slice;
                self.resync_slice = (slice + 1) % timers::RESYNC_SLICES;
                out.extend(
                    self.connected
                        .iter()
                        .filter(|p| resync_slice_of(p) == slice)
                        .map(|p| Effect::Resync(*p)),
                );
            }
            Timer::Presence => out.push(Effect::PresenceTick),
        }
    }
}

/// The resync slice `peer` belongs to: fixed for the peer, spread evenly
/// (the last byte of a peer id is a byte of its public key).
fn resync_slice_of(peer: &PeerId) -> u32 {
    u32::from(peer.to_bytes().last().copied().unwrap_or(0)) % timers::RESYNC_SLICES
}

//! The shell around the delivery engine (`crate::engine`): every input goes
//! through [`Actor::drive`], which carries out the effects the engine asks
//! for; an effect that needs an answer from the store feeds it back as the
//! next input.

use std::{collections::VecDeque, time::Instant};

use super::*;
use crate::engine::{Effect, Input};

impl Actor {
    /// Hands `input` to the engine and runs what follows from it.
    pub(crate) fn drive(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.engine.handle(input, Instant::now()) {
                self.run_effect(effect, &mut inputs);
            }
        }
    }

    fn run_effect(&mut self, effect: Effect, then: &mut VecDeque<Input>) {
        match effect {
            Effect::Connected(peer) => {
                tracing::debug!(%peer, "connected");
                self.topic_news.linked(peer, std::time::Instant::now());
                self.emit(Event::PeerConnected { peer });
            }
            Effect::Disconnected(peer) => {
                self.topic_news.unlinked(&peer);
                self.on_social_disconnected(peer);
                self.emit(Event::PeerDisconnected { peer });
            }
            Effect::Dial(peer) => {
                if !self.dial_peer(peer) {
                    then.push_back(Input::DialFailed {
                        peer,
                        started: false,
                    });
                }
            }
            Effect::Push(peer) => {
                if !self.push_outbox(peer) {
                    then.push_back(Input::PushEnded { peer, more: false });
                }
            }
            Effect::SyncAll(peer) => then.extend(
                self.chats_shared_with(peer)
                    .into_iter()
                    .map(|chat| Input::SyncWanted { peer, chat }),
            ),
            Effect::Resync(peer) => {
                let now = std::time::Instant::now();
                then.extend(
                    self.chats_shared_with(peer)
                        .into_iter()
                        .filter(|chat| self.topic_news.is_quiet(chat, now))
                        .map(|chat| Input::SyncWanted { peer, chat }),
                )
            }
            Effect::Sync { peer, chat } => {
                if !self.send_sync(peer, chat) {
                    then.push_back(Input::SyncEnded { peer, chat });
                }
            }
            Effect::ListRedialCandidates => {
                then.push_back(Input::RedialCandidates(self.redial_candidates()))
            }
            Effect::SendReceipts(peer) => self.send_read_receipts(peer),
            Effect::Greet(peer) => self.on_social_connected(peer),
            Effect::FetchMail(relay) => self.fetch_all_mail(relay),
            Effect::ReserveCircuit(relay) => {
                if !self.reserve_circuit(relay) {
                    then.push_back(Input::ReservationFailed(relay));
                }
            }
            Effect::Deposit(peer) => {
                if let Some(key) = public_key_of(&peer) {
                    let awaited = self.deposit_for(key);
                    then.extend(awaited.into_iter().map(Input::RelayAwaited));
                }
            }
            Effect::DepositAll => {
                let awaited = self.deposit_for_unreachable();
                then.extend(awaited.into_iter().map(Input::RelayAwaited));
            }
            Effect::HandOutTokens => self.hand_out_tokens(),
            Effect::ExpireMail => self.expire_mail(),
            Effect::PresenceTick => self.presence_tick(),
        }
    }

    /// Deposits `recipient`'s mail (everyone's, if `None`) at their relays
    /// now; relays still to be dialled take it when they connect.
    pub(crate) fn deposit_now(&mut self, recipient: Option<PublicKey>) {
        let awaited = match recipient {
            Some(key) => self.deposit_for(key),
            None => self.deposit_for_unreachable(),
        };
        for relay in awaited {
            self.drive(Input::RelayAwaited(relay));
        }
    }

    /// Peers to keep trying: those with undelivered changes, and contacts
    /// (the engine adds the relays).
    fn redial_candidates(&self) -> Vec<PeerId> {
        let store = self.chats.store();
        let mut peers: Vec<PeerId> = store
            .outbox_peers()
            .unwrap_or_default()
            .iter()
            .filter_map(peer_id_of)
            .collect();
        peers.extend(
            store
                .contacts()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.peer),
        );
        peers
    }
}

//! The engine with plain inputs and a clock that only moves when told.

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn periods() -> Periods {
    Periods {
        redial: 5 * SECOND,
        expiry: 60 * SECOND,
        resync: 30 * SECOND,
        presence: 20 * SECOND,
    }
}

struct Harness {
    state: State,
    now: Instant,
}

impl Harness {
    fn new(relays: &[PeerId]) -> Self {
        let now = Instant::now();
        let mut h = Self {
            state: State::new(relays.iter().copied(), periods(), now),
            now,
        };
        // The start-up tick, out of the way.
        h.on(Input::Tick);
        h
    }

    fn on(&mut self, input: Input) -> Vec<Effect> {
        self.state.handle(input, self.now)
    }

    fn wait(&mut self, d: Duration) -> Vec<Effect> {
        self.now += d;
        self.on(Input::Tick)
    }
}

fn peers(n: usize) -> Vec<PeerId> {
    let mut p: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
    p.sort();
    p
}

fn chat(i: u8) -> ChatId {
    ChatId::from_bytes([i; 32])
}

#[test]
fn a_connection_syncs_pushes_sends_receipts_and_greets_once() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    assert_eq!(
        h.on(Input::Connected(peer)),
        [
            Effect::Connected(peer),
            Effect::SyncAll(peer),
            Effect::Push(peer),
            Effect::SendReceipts(peer),
            Effect::Greet(peer),
        ]
    );
    assert!(h.state.is_connected(&peer));
    // A second connection to the same peer is not news.
    assert_eq!(h.on(Input::Connected(peer)), []);
}

#[test]
fn a_relay_connection_also_fetches_mail_and_reserves_a_circuit_once() {
    let [relay] = peers(1)[..] else {
        unreachable!()
    };
    let mut h = Harness::new(&[relay]);
    let effects = h.on(Input::Connected(relay));
    assert!(effects.ends_with(&[Effect::FetchMail(relay), Effect::ReserveCircuit(relay)]));
    h.on(Input::Disconnected(relay));
    // The reservation ended with the connection: renewed on reconnect.
    assert!(h
        .on(Input::Connected(relay))
        .contains(&Effect::ReserveCircuit(relay)));
    // A refused reservation is tried again on the next connection.
    h.on(Input::ReservationFailed(relay));
    h.on(Input::Disconnected(relay));
    let again = h.on(Input::Connected(relay));
    assert_eq!(
        again
            .iter()
            .filter(|e| **e == Effect::ReserveCircuit(relay))
            .count(),
        1
    );
}

#[test]
fn one_push_at_a_time_per_peer() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    h.on(Input::Connected(peer)); // push 1 in flight
    assert_eq!(
        h.on(Input::Outgoing(peer)),
        [],
        "waits for the push in flight"
    );
    assert_eq!(
        h.on(Input::PushEnded { peer, more: true }),
        [Effect::Push(peer)]
    );
    assert_eq!(h.on(Input::PushEnded { peer, more: false }), []);
    assert_eq!(h.on(Input::Outgoing(peer)), [Effect::Push(peer)]);
}

#[test]
fn mail_for_a_peer_that_is_not_connected_dials_it_and_deposits_when_the_dial_fails() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    assert_eq!(h.on(Input::Outgoing(peer)), [Effect::Dial(peer)]);
    assert_eq!(
        h.on(Input::DialFailed {
            peer,
            started: false
        }),
        [Effect::Deposit(peer)]
    );
    assert_eq!(
        h.on(Input::DialFailed {
            peer,
            started: true
        }),
        [Effect::Deposit(peer)]
    );
}

#[test]
fn a_push_answered_after_the_peer_left_does_not_push_again() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    h.on(Input::Connected(peer));
    h.on(Input::Disconnected(peer));
    assert_eq!(h.on(Input::PushEnded { peer, more: true }), []);
    // Back: the push starts over (nothing is left "in flight").
    assert!(h.on(Input::Connected(peer)).contains(&Effect::Push(peer)));
}

#[test]
fn redials_back_off_and_connected_candidates_are_pushed_to() {
    let [up, down] = peers(2)[..] else {
        unreachable!()
    };
    let mut h = Harness::new(&[]);
    h.on(Input::Connected(up));
    h.on(Input::PushEnded {
        peer: up,
        more: false,
    });
    let candidates = || Input::RedialCandidates(vec![down, up, down]);
    assert_eq!(h.on(candidates()), [Effect::Push(up), Effect::Dial(down)]);
    h.on(Input::DialFailed {
        peer: down,
        started: true,
    });
    // Push still in flight, dial in backoff (5 s): nothing.
    assert_eq!(h.on(candidates()), []);
    h.now += 5 * SECOND;
    assert_eq!(h.on(candidates()), [Effect::Dial(down)]);
    h.now += 5 * SECOND;
    assert_eq!(h.on(candidates()), [], "backoff doubled to 10 s");
    h.now += 5 * SECOND;
    assert_eq!(h.on(candidates()), [Effect::Dial(down)]);
}

#[test]
fn configured_relays_are_always_redial_candidates() {
    let [relay] = peers(1)[..] else {
        unreachable!()
    };
    let mut h = Harness::new(&[relay]);
    h.now += 5 * SECOND;
    assert_eq!(h.on(Input::RedialCandidates(vec![])), [Effect::Dial(relay)]);
}

#[test]
fn a_failed_peer_coming_back_makes_everyone_due_again() {
    let [back, waiting] = peers(2)[..] else {
        unreachable!()
    };
    let mut h = Harness::new(&[]);
    h.on(Input::RedialCandidates(vec![back, waiting]));
    for peer in [back, waiting] {
        h.on(Input::DialFailed {
            peer,
            started: true,
        });
    }
    h.now += SECOND;
    assert_eq!(
        h.on(Input::RedialCandidates(vec![waiting])),
        [],
        "in backoff"
    );
    let effects = h.on(Input::Connected(back));
    assert_eq!(effects[0], Effect::ListRedialCandidates);
    assert_eq!(
        h.on(Input::RedialCandidates(vec![waiting])),
        [Effect::Dial(waiting)]
    );
}

#[test]
fn a_new_address_of_our_own_redials_at_most_once_per_period() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    assert_eq!(h.on(Input::NetworkChanged), [], "nobody in backoff");
    h.on(Input::RedialCandidates(vec![peer]));
    assert_eq!(h.on(Input::NetworkChanged), [Effect::ListRedialCandidates]);
    assert_eq!(h.on(Input::NetworkChanged), [], "rate-limited");
    h.now += 5 * SECOND;
    assert_eq!(h.on(Input::NetworkChanged), [Effect::ListRedialCandidates]);
}

#[test]
fn reach_forgets_the_backoff_and_dials_at_once() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    h.on(Input::RedialCandidates(vec![peer]));
    h.on(Input::DialFailed {
        peer,
        started: true,
    });
    assert_eq!(h.on(Input::RedialCandidates(vec![peer])), []);
    assert_eq!(h.on(Input::Reach(peer)), [Effect::Dial(peer)]);
    h.on(Input::Connected(peer));
    assert_eq!(h.on(Input::Reach(peer)), [], "already connected");
}

#[test]
fn syncs_take_slots_and_the_rest_wait_their_turn() {
    let [peer] = peers(1)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    let started: Vec<Effect> = (0..6)
        .flat_map(|i| {
            h.on(Input::SyncWanted {
                peer,
                chat: chat(i),
            })
        })
        .collect();
    assert_eq!(started.len(), sync_slots::SYNCS_IN_FLIGHT);
    assert_eq!(
        h.on(Input::SyncEnded {
            peer,
            chat: chat(0)
        }),
        [Effect::Sync {
            peer,
            chat: chat(4)
        }]
    );
    // Gone: its waiting syncs are dropped, the next connection starts over.
    h.on(Input::Disconnected(peer));
    assert_eq!(
        h.on(Input::SyncEnded {
            peer,
            chat: chat(1)
        }),
        []
    );
    assert_eq!(
        h.on(Input::SyncWanted {
            peer,
            chat: chat(9)
        }),
        [Effect::Sync {
            peer,
            chat: chat(9)
        }]
    );
}

#[test]
fn timers_fire_their_work_on_time() {
    let now = Instant::now();
    let mut state = State::new([], periods(), now);
    assert_eq!(state.next_wake(), now);
    assert_eq!(
        state.handle(Input::Tick, now),
        [
            Effect::ListRedialCandidates,
            Effect::HandOutTokens,
            Effect::DepositAll,
            Effect::ExpireMail,
            Effect::PresenceTick,
        ]
    );
    assert_eq!(state.next_wake(), now + 5 * SECOND);
    assert_eq!(state.handle(Input::Tick, now + 4 * SECOND), []);
}

#[test]
fn resync_syncs_every_connected_peer_once_each_period_spread_over_slices() {
    let peers = peers(24);
    let mut h = Harness::new(&[]);
    for p in &peers {
        h.on(Input::Connected(*p));
    }
    let mut resynced: Vec<(Duration, PeerId)> = Vec::new();
    // Steps that divide a slice (30 s / 8), so each fires on time.
    let step = Duration::from_millis(250);
    let mut elapsed = Duration::ZERO;
    // Up to 89.75 s (at 90 s the first slice begins its third round).
    for _ in 0..359 {
        elapsed += step;
        for e in h.wait(step) {
            if let Effect::Resync(p) = e {
                resynced.push((elapsed, p));
            }
        }
    }
    // With a 30 s period and the first slice 30 s after start (connecting
    // synced): each peer twice, 30 s apart, none before 30 s.
    for p in &peers {
        let at: Vec<Duration> = resynced
            .iter()
            .filter(|(_, q)| q == p)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(at.len(), 2, "{p}: {at:?}");
        assert!(at[0] >= 30 * SECOND, "{p}: {at:?}");
        assert_eq!(at[1] - at[0], 30 * SECOND, "{p}: {at:?}");
    }
    // Not all at one moment.
    let moments: std::collections::BTreeSet<Duration> = resynced.iter().map(|(t, _)| *t).collect();
    assert!(moments.len() >= 4, "{moments:?}");
}

#[test]
fn a_deposit_waiting_for_a_relay_goes_when_it_connects_once() {
    let [relay] = peers(1)[..] else {
        unreachable!()
    };
    let mut h = Harness::new(&[]);
    h.on(Input::RelayAwaited(relay));
    assert_eq!(
        h.on(Input::Connected(relay)).last(),
        Some(&Effect::DepositAll)
    );
    h.on(Input::Disconnected(relay));
    assert!(!h.on(Input::Connected(relay)).contains(&Effect::DepositAll));
}

#[test]
fn awaited_relays_are_bounded() {
    let mut h = Harness::new(&[]);
    for relay in peers(MAX_AWAITED_RELAYS + 10) {
        h.on(Input::RelayAwaited(relay));
    }
    assert_eq!(h.state.awaited_relays.len(), MAX_AWAITED_RELAYS);
}

#[test]
fn storage_recovery_resumes_pushes_to_connected_peers_not_in_flight() {
    let [a, b] = peers(2)[..] else { unreachable!() };
    let mut h = Harness::new(&[]);
    h.on(Input::Connected(a));
    h.on(Input::Connected(b));
    h.on(Input::PushEnded {
        peer: a,
        more: false,
    });
    assert_eq!(h.on(Input::StorageRecovered), [Effect::Push(a)]);
}

#[test]
fn the_same_inputs_give_the_same_effects() {
    let ps = peers(5);
    let run = || {
        let start = Instant::now();
        let mut state = State::new([ps[0]], periods(), start);
        let mut all = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            all.extend(state.handle(Input::Connected(*p), start));
            all.extend(state.handle(
                Input::SyncWanted {
                    peer: *p,
                    chat: chat(i as u8),
                },
                start,
            ));
        }
        all.extend(state.handle(Input::RedialCandidates(ps.clone()), start));
        all.extend(state.handle(Input::Tick, start + 30 * SECOND));
        all
    };
    assert_eq!(run(), run());
}

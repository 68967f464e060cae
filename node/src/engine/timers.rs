//! The engine's periodic work, as deadlines: nothing here sleeps; the shell
//! asks for the next deadline and calls back when it has passed.
//!
//! A timer that fires late fires once, and its next deadline counts from
//! when it fired (missed periods are not caught up in a burst).

use std::time::{Duration, Instant};

/// The engine's periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Redial unreachable peers, hand out delivery tokens, deposit mail.
    Redial,
    /// Expire mail held past its time.
    Expiry,
    /// Anti-entropy with the connected peers of the next slice: every peer
    /// once per resync period, spread over [`RESYNC_SLICES`] firings.
    Resync,
    /// Heartbeats to the presence audience.
    Presence,
}

/// How often each timer fires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Periods {
    pub(crate) redial: Duration,
    pub(crate) expiry: Duration,
    pub(crate) resync: Duration,
    pub(crate) presence: Duration,
}

/// How many slices a resync period is cut into. A node resyncs with the
/// peers of one slice at a time, so a node with a thousand contacts does not
/// sync with all of them at the same moment (and a thousand nodes started
/// together do not all sync with it at once).
pub(crate) const RESYNC_SLICES: u32 = 8;

#[derive(Debug)]
pub(super) struct Timers {
    /// Each timer with its period and next deadline, in firing order.
    slots: [(Timer, Duration, Instant); 4],
}

impl Timers {
    /// Redial, expiry and presence fire at `start`; the first resync slice
    /// only after one whole period (connecting syncs anyway), then a slice
    /// every period / [`RESYNC_SLICES`].
    pub(super) fn new(periods: Periods, start: Instant) -> Self {
        let slice = periods.resync / RESYNC_SLICES;
        Self {
            slots: [
                (Timer::Redial, periods.redial, start),
                (Timer::Expiry, periods.expiry, start),
                (Timer::Resync, slice, start + periods.resync),
                (Timer::Presence, periods.presence, start),
            ],
        }
    }

    /// The timers due at `now`, each rescheduled one period after `now`.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        for (timer, period, next) in &mut self.slots {
            if *next <= now {
                due.push(*timer);
                *next = now + *period;
            }
        }
        due
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Instant {
        self.slots
            .iter()
            .map(|(_, _, next)| *next)
            .min()
            .expect("four timers")
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn all_but_resync_fire_at_start() {
        let start = Instant::now();
        let mut timers = Timers::new(periods(), start);
        assert_eq!(
            timers.due(start),
            [Timer::Redial, Timer::Expiry, Timer::Presence]
        );
        assert_eq!(timers.next(), start + 5 * SECOND);
        assert!(timers.due(start + 4 * SECOND).is_empty());
        // The first resync slice comes a whole period after start, the
        // next one a slice (30 s / 8) later.
        let mut now = start;
        let mut resyncs = Vec::new();
        while now <= start + 34 * SECOND {
            if timers.due(now).contains(&Timer::Resync) {
                resyncs.push(now - start);
            }
            now += SECOND / 4;
        }
        assert_eq!(
            resyncs,
            [30 * SECOND, 30 * SECOND + 30 * SECOND / RESYNC_SLICES]
        );
    }

    #[test]
    fn each_fires_once_per_period() {
        let start = Instant::now();
        let mut timers = Timers::new(periods(), start);
        let mut fired = Vec::new();
        let mut now = start;
        while now <= start + 60 * SECOND {
            fired.extend(timers.due(now));
            now += SECOND;
        }
        let count = |t: Timer| fired.iter().filter(|f| **f == t).count();
        assert_eq!(count(Timer::Redial), 13); // 0, 5, … 60
        assert_eq!(count(Timer::Presence), 4); // 0, 20, 40, 60
        assert_eq!(count(Timer::Resync), 8); // 30, then a slice (3.75 s) later: 34, 38, … 58
        assert_eq!(count(Timer::Expiry), 2); // 0, 60
    }

    #[test]
    fn a_late_timer_fires_once_and_counts_from_then() {
        let start = Instant::now();
        let mut timers = Timers::new(periods(), start);
        timers.due(start);
        let late = start + 17 * SECOND;
        assert_eq!(timers.due(late), [Timer::Redial]);
        // Presence (every 20 s) is next; then redial, counted from 17 s.
        assert_eq!(timers.next(), start + 20 * SECOND);
        assert_eq!(timers.due(start + 20 * SECOND), [Timer::Presence]);
        assert_eq!(timers.next(), late + 5 * SECOND);
    }
}

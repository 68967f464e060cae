//! Fixed one-minute windows per key, with a bound on the keys remembered.

use std::{collections::HashMap, hash::Hash};

use super::Refusal;

const MINUTE_MS: i64 = 60_000;
/// Keys remembered before windows that have ended are dropped.
const MAX_TRACKED: usize = 100_000;

/// At most `per_minute` events per key per one-minute window.
pub(crate) struct RateLimiter<K> {
    per_minute: u32,
    /// key → (window start, events in window)
    windows: HashMap<K, (i64, u32)>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: HashMap::new(),
        }
    }

    /// Counts one event for `key`, or says when to retry.
    pub(crate) fn admit(&mut self, key: K, now_ms: i64) -> Result<(), Refusal> {
        if self.windows.len() >= MAX_TRACKED {
            self.windows
                .retain(|_, (start, _)| now_ms - *start < MINUTE_MS);
        }
        if self.windows.len() >= MAX_TRACKED && !self.windows.contains_key(&key) {
            // Every tracked key is in its window: a flood of new keys waits.
            return Err(Refusal::RateLimited {
                retry_after_secs: 60,
            });
        }
        let window = self.windows.entry(key).or_insert((now_ms, 0));
        if now_ms - window.0 >= MINUTE_MS {
            *window = (now_ms, 0);
        }
        if window.1 >= self.per_minute {
            let retry_after_secs = ((window.0 + MINUTE_MS - now_ms).max(0) as u64).div_ceil(1000);
            return Err(Refusal::RateLimited { retry_after_secs });
        }
        window.1 += 1;
        Ok(())
    }
}

//! Figures benches print: percentiles of samples, rates, and ratios
//! against a baseline measured in the same run (printed, never asserted).

use std::{str::FromStr, time::Duration};

/// Percentiles and mean of a set of durations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Mean.
    pub mean: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Stats {
    /// The figures of `samples` (all zero when there are none).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let total: Duration = samples.iter().sum();
        Self {
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            mean: total / samples.len() as u32,
            max: samples[samples.len() - 1],
        }
    }
}

/// The nearest-rank `q` quantile of sorted, non-empty `samples`.
pub fn percentile(samples: &[Duration], q: f64) -> Duration {
    let rank = (samples.len() as f64 * q).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// `d` in milliseconds, three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Events per second: `n` in `d`.
pub fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// `ours / base` (durations).
pub fn ratio(ours: Duration, base: Duration) -> f64 {
    ours.as_secs_f64() / base.as_secs_f64().max(1e-12)
}

/// A target on a ratio against a baseline.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The ratio must be at most this (a latency).
    AtMost(f64),
    /// The ratio must be at least this (a throughput).
    AtLeast(f64),
}

impl Target {
    /// "target <= 1.3x: met" (or "not met"), to print beside a ratio.
    pub fn judge(self, ratio: f64) -> String {
        let (sign, bound, met) = match self {
            Self::AtMost(b) => ("<=", b, ratio <= b),
            Self::AtLeast(b) => (">=", b, ratio >= b),
        };
        format!(
            "target {sign} {bound}x: {}",
            if met { "met" } else { "not met" }
        )
    }
}

/// One line: `label: ratio (ours vs base) target …`.
pub fn ratio_line(label: &str, ratio: f64, target: Target) -> String {
    format!("{label}: {ratio:.2}x  ({})", target.judge(ratio))
}

/// An environment variable parsed as `T`, or `default` when unset or not
/// a `T` (benches' size knobs).
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tokio runtime with `workers` threads, as the benches run the node.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Stats::of(ms_list(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]));
        assert_eq!(s.p50, Duration::from_millis(5));
        assert_eq!(s.p99, Duration::from_millis(10));
        assert_eq!(s.max, Duration::from_millis(10));
        assert_eq!(s.mean, Duration::from_micros(5_500));
    }

    #[test]
    fn no_samples_give_zeros() {
        assert_eq!(Stats::of(Vec::new()), Stats::default());
    }

    #[test]
    fn targets_judge_both_ways() {
        assert!(Target::AtMost(1.3).judge(1.2).ends_with(": met"));
        assert!(Target::AtMost(1.3).judge(1.4).ends_with("not met"));
        assert!(Target::AtLeast(0.5).judge(0.6).ends_with(": met"));
        assert!(Target::AtLeast(0.5).judge(0.4).ends_with("not met"));
    }
}

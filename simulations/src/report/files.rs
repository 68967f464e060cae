//! Writing a run's output directory: report.json, schedule.json,
//! timeseries.csv, protocols.csv, latencies.csv and the plots (PNG + SVG).

use std::{io, path::Path};

use super::{
    metrics::CONNECTION,
    plots::{Chart, Series, Span},
};
use crate::run::{Outcome, Sample, SplitTimes};

/// Protocols drawn on their own line in the per-protocol plot; the rest
/// are summed as "other".
const PLOTTED_PROTOCOLS: usize = 7;

/// Writes everything into `dir` (created if needed).
pub fn write_all(dir: &Path, outcome: &Outcome) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), to_json(&outcome.report))?;
    std::fs::write(dir.join("schedule.json"), to_json(&outcome.schedule))?;
    std::fs::write(dir.join("timeseries.csv"), timeseries_csv(&outcome.samples))?;
    std::fs::write(dir.join("protocols.csv"), protocols_csv(&outcome.samples))?;
    let mut sorted = outcome.latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mut csv = String::from("latency_ms\n");
    for v in &sorted {
        csv.push_str(&format!("{v:.3}\n"));
    }
    std::fs::write(dir.join("latencies.csv"), csv)?;
    let spans = spans(&outcome.splits);
    let charts = [
        ("latency_cdf", latency_cdf(&sorted)),
        ("delivery", delivery_over_time(&outcome.samples, &spans)),
        ("bandwidth", bandwidth_over_time(&outcome.samples, &spans)),
        (
            "bandwidth_by_protocol",
            protocols_over_time(&outcome.samples, &spans),
        ),
    ];
    for (stem, chart) in charts {
        chart.write(dir, stem).map_err(io::Error::other)?;
    }
    Ok(())
}

/// Pretty JSON; an error (not expected for these types) becomes its text.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The time series as CSV, one row per second.
pub fn timeseries_csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "t_s,sent,expected,delivered,bytes,online,relay_messages,relay_bytes,rss_bytes\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{:.3},{},{},{},{},{},{},{},{}\n",
            s.t_s,
            s.sent,
            s.expected,
            s.delivered,
            s.bytes,
            s.online,
            s.relay_messages,
            s.relay_bytes,
            s.rss_bytes
        ));
    }
    out
}

/// Bytes written since the workload started, one row per second and one
/// column per protocol, plus the connection layer's (the total minus the
/// protocols').
pub fn protocols_csv(samples: &[Sample]) -> String {
    let names = protocol_names(samples);
    let mut out = String::from("t_s");
    for name in names.iter().map(String::as_str).chain([CONNECTION]) {
        out.push_str(&format!(",\"{name}\""));
    }
    out.push('\n');
    for s in samples {
        out.push_str(&format!("{:.3}", s.t_s));
        for name in &names {
            out.push_str(&format!(",{}", s.by_protocol.get(name).unwrap_or(&0)));
        }
        out.push_str(&format!(",{}\n", connection_bytes(s)));
    }
    out
}

/// Every protocol seen, most bytes first.
fn protocol_names(samples: &[Sample]) -> Vec<String> {
    let mut last: Vec<(String, u64)> = samples
        .last()
        .map(|s| s.by_protocol.clone().into_iter().collect())
        .unwrap_or_default();
    last.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    last.into_iter().map(|(n, _)| n).collect()
}

fn connection_bytes(s: &Sample) -> u64 {
    s.bytes.saturating_sub(s.by_protocol.values().sum())
}

fn spans(splits: &[SplitTimes]) -> Vec<Span> {
    splits
        .iter()
        .map(|s| Span {
            start: s.at_ms / 1_000.0,
            end: s.healed_ms.map(|h| h / 1_000.0),
        })
        .collect()
}

fn latency_cdf(sorted: &[f64]) -> Chart {
    let n = sorted.len().max(1) as f64;
    // At most ~1,000 points: every k-th sample, and the last.
    let step = (sorted.len() / 1_000).max(1);
    let mut points: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, v)| (v.max(0.01), (i + 1) as f64 / n))
        .collect();
    if let Some(last) = sorted.last() {
        points.push((last.max(0.01), 1.0));
    }
    Chart {
        title: "Latency CDF (send -> member's Event::Message)".into(),
        x_label: "latency (ms, log scale)".into(),
        y_label: "share of receptions".into(),
        log_x: true,
        series: vec![Series {
            name: format!("{} receptions", sorted.len()),
            points,
        }],
        spans: Vec::new(),
    }
}

fn delivery_over_time(samples: &[Sample], spans: &[Span]) -> Chart {
    let line = |name: &str, f: fn(&Sample) -> u64| Series {
        name: name.into(),
        points: samples.iter().map(|s| (s.t_s, f(s) as f64)).collect(),
    };
    Chart {
        title: "Delivery over time".into(),
        x_label: "seconds since the workload started".into(),
        y_label: "receptions".into(),
        log_x: false,
        series: vec![
            line("expected", |s| s.expected),
            line("delivered", |s| s.delivered),
        ],
        spans: spans.to_vec(),
    }
}

/// Per-second rates of a cumulative counter.
fn rate(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].t_s - w[0].t_s).max(1e-3);
            (w[1].t_s, f(&w[1]).saturating_sub(f(&w[0])) as f64 / dt)
        })
        .collect()
}

fn bandwidth_over_time(samples: &[Sample], spans: &[Span]) -> Chart {
    Chart {
        title: "Bandwidth over time (all nodes)".into(),
        x_label: "seconds since the workload started".into(),
        y_label: "bytes written per second".into(),
        log_x: false,
        series: vec![Series {
            name: "all bytes written".into(),
            points: rate(samples, |s| s.bytes),
        }],
        spans: spans.to_vec(),
    }
}

fn protocols_over_time(samples: &[Sample], spans: &[Span]) -> Chart {
    let names = protocol_names(samples);
    let (shown, rest) = names.split_at(names.len().min(PLOTTED_PROTOCOLS));
    let mut series: Vec<Series> = shown
        .iter()
        .map(|name| Series {
            name: name.clone(),
            points: rate(samples, |s| s.by_protocol.get(name).copied().unwrap_or(0)),
        })
        .collect();
    if !rest.is_empty() {
        let sum = |s: &Sample| -> u64 { rest.iter().filter_map(|n| s.by_protocol.get(n)).sum() };
        series.push(Series {
            name: format!("other ({} protocols)", rest.len()),
            points: rate(samples, sum),
        });
    }
    series.push(Series {
        name: CONNECTION.into(),
        points: rate(samples, connection_bytes),
    });
    Chart {
        title: "Bandwidth by protocol (all nodes)".into(),
        x_label: "seconds since the workload started".into(),
        y_label: "bytes written per second".into(),
        log_x: false,
        series,
        spans: spans.to_vec(),
    }
}

/// Protocol bytes of one sample, for tests.
#[cfg(test)]
fn sample(t_s: f64, bytes: u64, by: &[(&str, u64)]) -> Sample {
    Sample {
        t_s,
        sent: 0,
        expected: 0,
        delivered: 0,
        bytes,
        by_protocol: by
            .iter()
            .map(|(n, b)| (n.to_string(), *b))
            .collect::<std::collections::BTreeMap<_, _>>(),
        online: 0,
        relay_messages: 0,
        relay_bytes: 0,
        rss_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_csv_has_a_column_per_protocol_and_the_connection_rest() {
        let samples = [
            sample(1.0, 100, &[("/a", 10), ("/b", 60)]),
            sample(2.0, 300, &[("/a", 20), ("/b", 200)]),
        ];
        let csv = protocols_csv(&samples);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(format!("t_s,\"/b\",\"/a\",\"{CONNECTION}\"").as_str())
        );
        assert_eq!(lines.next(), Some("1.000,60,10,30"));
        assert_eq!(lines.next(), Some("2.000,200,20,80"));
        let chart = protocols_over_time(&samples, &[]);
        assert_eq!(chart.series.len(), 3);
        assert_eq!(chart.series[0].points, vec![(2.0, 140.0)]);
    }
}

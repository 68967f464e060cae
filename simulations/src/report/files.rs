//! Writing a run's output directory: report.json, schedule.json,
//! timeseries.csv, latencies.csv and the three SVG plots.

use std::{io, path::Path};

use super::{
    metrics::Report,
    plots::{line_chart, Series},
};
use crate::{run::Sample, schedule::Schedule};

/// Writes everything into `dir` (created if needed).
pub fn write_all(
    dir: &Path,
    report: &Report,
    schedule: &Schedule,
    samples: &[Sample],
    latencies_ms: &[f64],
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), to_json(report))?;
    std::fs::write(dir.join("schedule.json"), to_json(schedule))?;
    std::fs::write(dir.join("timeseries.csv"), timeseries_csv(samples))?;
    let mut sorted = latencies_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut csv = String::from("latency_ms\n");
    for v in &sorted {
        csv.push_str(&format!("{v:.3}\n"));
    }
    std::fs::write(dir.join("latencies.csv"), csv)?;
    std::fs::write(dir.join("latency_cdf.svg"), latency_cdf(&sorted))?;
    std::fs::write(dir.join("delivery.svg"), delivery_over_time(samples))?;
    std::fs::write(dir.join("bandwidth.svg"), bandwidth_over_time(samples))?;
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

fn latency_cdf(sorted: &[f64]) -> String {
    let n = sorted.len().max(1) as f64;
    // At most ~500 points: every k-th sample.
    let step = (sorted.len() / 500).max(1);
    let mut points: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    if let Some(last) = sorted.last() {
        points.push((*last, 1.0));
    }
    line_chart(
        "Latency CDF (send → member's Event::Message)",
        "latency (ms)",
        "share of receptions",
        &[Series {
            name: "receptions",
            points,
        }],
    )
}

fn delivery_over_time(samples: &[Sample]) -> String {
    line_chart(
        "Delivery over time",
        "seconds since the workload started",
        "receptions",
        &[
            Series {
                name: "expected",
                points: samples.iter().map(|s| (s.t_s, s.expected as f64)).collect(),
            },
            Series {
                name: "delivered",
                points: samples
                    .iter()
                    .map(|s| (s.t_s, s.delivered as f64))
                    .collect(),
            },
        ],
    )
}

fn bandwidth_over_time(samples: &[Sample]) -> String {
    let points = samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].t_s - w[0].t_s).max(1e-3);
            (w[1].t_s, w[1].bytes.saturating_sub(w[0].bytes) as f64 / dt)
        })
        .collect();
    line_chart(
        "Bandwidth over time (all nodes)",
        "seconds since the workload started",
        "bytes per second",
        &[Series {
            name: "bytes written / s",
            points,
        }],
    )
}

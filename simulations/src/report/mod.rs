//! The report: metrics, output files, plots.

mod files;
mod metrics;
mod plots;

pub use files::{timeseries_csv, to_json, write_all};
pub use metrics::{
    convergence, latencies, percentiles, reachable_latencies, undelivered, Bytes, Connections,
    Convergence, Memory, Percentiles, RelayStorage, Report, Undelivered,
};
pub use plots::{line_chart, Series};

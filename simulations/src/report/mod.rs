//! The report: metrics, output files, plots.

mod files;
mod metrics;
mod plots;

pub use files::{protocols_csv, timeseries_csv, to_json, write_all};
pub use metrics::{
    convergence, latencies, percentiles, protocol_breakdown, reachable_latencies, undelivered,
    Bytes, Connections, Convergence, Cpu, Memory, Percentiles, ProtocolUse, RelayStorage, Report,
    Undelivered, CONNECTION,
};
pub use plots::{Chart, Series, Span};

//! meshchat-sim: runs scenario files over real meshchat nodes (libp2p,
//! Automerge, sled) in one process, on an in-memory network with a fault
//! layer (latency, loss, partitions, people going offline), and reports
//! delivery, latency, convergence, bandwidth and relay storage.
//! docs/SIMULATIONS.md is the user's guide.

pub mod duration;
pub mod fault;
pub mod floor;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;

pub use report::Report;
pub use run::{run, Outcome, RunError, RunOptions};
pub use scenario::{Scenario, ScenarioError};
pub use schedule::{plan, Schedule};

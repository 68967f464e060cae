//! meshchat-sim: runs scenario files over real meshchat nodes (libp2p,
//! Automerge, sled) in one process, on an in-memory network with a fault
//! layer (latency, loss, partitions, people going offline), and reports
//! delivery, latency, convergence, bandwidth and relay storage.

pub mod duration;
pub mod fault;
pub mod scenario;
pub mod schedule;

pub use scenario::{Scenario, ScenarioError};
pub use schedule::{plan, Schedule};

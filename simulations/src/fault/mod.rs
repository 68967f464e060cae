//! The fault layer: an in-memory network whose links add latency and loss,
//! and which can take nodes offline and split the network.

mod counting;
mod multistream;
mod net;
mod stream;
mod transport;

pub use counting::{CountingMuxer, ProtocolBytes, UNNEGOTIATED};
pub use net::{FaultNet, LinkModel, LinkState};
pub use stream::FaultStream;
pub use transport::fault_transport;

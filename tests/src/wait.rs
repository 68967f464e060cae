//! Waiting for something to happen, bounded in time: an event from a
//! swarm, or any future. Tests never sleep to let the network settle.

use std::{future::Future, time::Duration};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, Swarm, SwarmEvent};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Runs `f` with the [`WAIT`] timeout, failing the test with `what`.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Drives `swarm` until `pick` maps one of its events to `Some`, for at most
/// `limit`; panics with `what` after that.
pub async fn swarm_until<B, T>(
    swarm: &mut Swarm<B>,
    what: &str,
    limit: Duration,
    mut pick: impl FnMut(SwarmEvent<B::ToSwarm>) -> Option<T>,
) -> T
where
    B: NetworkBehaviour,
{
    tokio::time::timeout(limit, async {
        loop {
            if let Some(t) = pick(swarm.select_next_some().await) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

//! Starting the simulated nodes: a data dir each (sled), a real meshchat node
//! each on the fault network, relays in relay mode, peers using their relay.

use std::{path::Path, sync::Arc};

use futures::{stream, StreamExt, TryStreamExt};
use meshchat_node::{
    mailbox::MailboxConfig, peer_id_of, DataDir, Multiaddr, Node, NodeConfig, PeerId, Protocol,
    SpawnOptions,
};

use crate::{
    fault::{fault_transport, FaultNet},
    scenario::Scenario,
    schedule::{NodeIx, Schedule},
};

/// Nodes started at once.
const SPAWN_CONCURRENCY: usize = 16;

/// A running simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Its index.
    pub ix: NodeIx,
    /// Its identity.
    pub peer: PeerId,
    /// Where it listens, ending in `/p2p/<peer>`.
    pub addr: Multiaddr,
    /// The handle.
    pub node: Node,
}

/// Why the nodes could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A data dir could not be created.
    #[error("node {ix}: data dir: {message}")]
    DataDir {
        /// Which node.
        ix: NodeIx,
        /// Why.
        message: String,
    },
    /// A node did not start.
    #[error("node {ix} did not start: {message}")]
    Spawn {
        /// Which node.
        ix: NodeIx,
        /// Why.
        message: String,
    },
}

/// Creates every data dir under `root` and starts every node.
pub(super) async fn start_nodes(
    scenario: &Scenario,
    schedule: &Schedule,
    net: &Arc<FaultNet>,
    root: &Path,
) -> Result<Vec<SimNode>, StartError> {
    // Identities first: peers need their relay's address before they start.
    let mut dirs = Vec::with_capacity(schedule.nodes());
    let mut peers = Vec::with_capacity(schedule.nodes());
    for ix in 0..schedule.nodes() {
        let dir = DataDir::new(root.join(format!("node-{ix}")));
        let identity = dir
            .init(Some(&format!("n{ix}")), &NodeConfig::loopback())
            .map_err(|e| StartError::DataDir {
                ix,
                message: e.to_string(),
            })?;
        peers.push(
            peer_id_of(&identity.public()).ok_or_else(|| StartError::DataDir {
                ix,
                message: "identity is not an Ed25519 key".into(),
            })?,
        );
        dirs.push(dir);
    }
    let addr_of = |ix: NodeIx| net.addr(ix).with(Protocol::P2p(peers[ix]));
    let configs: Vec<NodeConfig> = (0..schedule.nodes())
        .map(|ix| {
            let is_relay = ix >= schedule.peers;
            NodeConfig {
                listen: vec![net.addr(ix)],
                mdns: false,
                redial_secs: scenario.node.redial_secs,
                resync_secs: scenario.node.resync_secs,
                mailbox: is_relay.then(MailboxConfig::default),
                relays: schedule
                    .relay_of
                    .get(ix)
                    .copied()
                    .flatten()
                    .map(addr_of)
                    .into_iter()
                    .collect(),
                // Media is not simulated; its endpoint stays on loopback.
                blobs: meshchat_node::media::BlobConfig::loopback(),
                ..NodeConfig::default()
            }
        })
        .collect();
    let cache = scenario.node.store_cache_mib * 1024 * 1024;
    stream::iter(dirs.into_iter().zip(configs).enumerate())
        .map(|(ix, (dir, config))| {
            let net = net.clone();
            let addr = addr_of(ix);
            let peer = peers[ix];
            async move {
                let options = SpawnOptions::default()
                    .with_store_cache_bytes(cache)
                    .without_background_flush()
                    .with_transport(move |key| fault_transport(net, ix, key));
                let node = meshchat_node::spawn_with(&dir, config, options)
                    .await
                    .map_err(|e| StartError::Spawn {
                        ix,
                        message: e.to_string(),
                    })?;
                Ok(SimNode {
                    ix,
                    peer,
                    addr,
                    node,
                })
            }
        })
        .buffered(SPAWN_CONCURRENCY)
        .try_collect()
        .await
}

/// How long stopping all nodes may take; a node still busy after that is
/// left to end with the process (its data dir is temporary anyway).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Stops every node (flushes, closes connections), for at most [`STOP_TIMEOUT`].
pub(super) async fn stop_nodes(nodes: &[SimNode]) {
    let stop = stream::iter(nodes).for_each_concurrent(nodes.len().max(1), |n| n.node.shutdown());
    if tokio::time::timeout(STOP_TIMEOUT, stop).await.is_err() {
        tracing::warn!("some nodes did not stop within {STOP_TIMEOUT:?}; leaving them");
    }
}

//! The simulated network's shared state: which nodes are online, which
//! splits are in force, every live link (so a split can cut it), each link's
//! latency, and the bytes each node has written.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use futures::task::AtomicWaker;
use libp2p::{multiaddr::Protocol, Multiaddr};

use super::counting::ProtocolBytes;
use crate::schedule::NodeIx;

/// Memory ports are global to the process; each network takes its own block
/// so that several simulations (tests) can run side by side.
static NEXT_BASE: AtomicU64 = AtomicU64::new(1 << 40);
const PORTS_PER_NET: u64 = 1 << 24;

/// Link parameters.
#[derive(Clone)]
pub struct LinkModel {
    /// One-way latency of the link between two nodes, in microseconds.
    pub latency_us: Arc<dyn Fn(NodeIx, NodeIx) -> u64 + Send + Sync>,
    /// Probability that a chunk is lost (and retransmitted after `rto`).
    pub loss: f64,
    /// Retransmission delay charged per lost chunk.
    pub rto: Duration,
}

impl std::fmt::Debug for LinkModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkModel")
            .field("loss", &self.loss)
            .field("rto", &self.rto)
            .finish_non_exhaustive()
    }
}

/// One end of a live connection, as the network sees it.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Set when a split or an outage cuts the link: both ends then fail.
    pub cut: AtomicBool,
    /// Woken on a cut, so an idle connection notices at once.
    pub waker: AtomicWaker,
}

#[derive(Debug)]
struct State {
    offline: Vec<bool>,
    /// Partition id → side membership (true = first side).
    splits: BTreeMap<usize, Vec<bool>>,
    links: Vec<(NodeIx, NodeIx, Weak<LinkState>)>,
}

/// The network all simulated nodes share.
#[derive(Debug)]
pub struct FaultNet {
    base: u64,
    model: LinkModel,
    seed: u64,
    state: Mutex<State>,
    bytes: Vec<AtomicU64>,
    protocols: Arc<ProtocolBytes>,
    connections: AtomicU64,
    refused: AtomicU64,
}

impl FaultNet {
    /// A network of `nodes` nodes, all online, no splits.
    pub fn new(nodes: usize, model: LinkModel, seed: u64) -> Arc<Self> {
        let base = NEXT_BASE.fetch_add(PORTS_PER_NET, Ordering::Relaxed);
        Arc::new(Self {
            base,
            model,
            seed,
            state: Mutex::new(State {
                offline: vec![false; nodes],
                splits: BTreeMap::new(),
                links: Vec::new(),
            }),
            bytes: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            protocols: Arc::default(),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The address node `ix` listens on.
    pub fn addr(&self, ix: NodeIx) -> Multiaddr {
        Multiaddr::empty().with(Protocol::Memory(self.base + ix as u64))
    }

    /// The node listening at `addr`, if it is one of ours.
    pub fn node_at(&self, addr: &Multiaddr) -> Option<NodeIx> {
        match addr.iter().next() {
            Some(Protocol::Memory(port)) if port >= self.base => {
                let ix = (port - self.base) as usize;
                (ix < self.bytes.len()).then_some(ix)
            }
            _ => None,
        }
    }

    /// Nodes in the network.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the network has no nodes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn model(&self) -> &LinkModel {
        &self.model
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `a` and `b` cannot reach each other now.
    pub fn blocked(&self, a: NodeIx, b: NodeIx) -> bool {
        blocked(&self.lock(), a, b)
    }

    /// Records a new connection end between `me` and `peer`.
    pub(crate) fn register(&self, me: NodeIx, peer: NodeIx) -> Option<Arc<LinkState>> {
        let mut state = self.lock();
        if blocked(&state, me, peer) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let link = Arc::new(LinkState::default());
        if state.links.len() >= 1024 && state.links.len().is_power_of_two() {
            state.links.retain(|(_, _, l)| l.strong_count() > 0);
        }
        state.links.push((me, peer, Arc::downgrade(&link)));
        self.connections.fetch_add(1, Ordering::Relaxed);
        Some(link)
    }

    /// Takes a node off the network (its links are cut) or brings it back.
    pub fn set_online(&self, node: NodeIx, online: bool) {
        let mut state = self.lock();
        if let Some(slot) = state.offline.get_mut(node) {
            *slot = !online;
        }
        cut_blocked(&mut state);
    }

    /// Splits the network: `side` cannot reach the others until [`Self::heal`].
    pub fn split(&self, id: usize, side: &[NodeIx]) {
        let mut state = self.lock();
        let mut members = vec![false; self.bytes.len()];
        for &n in side {
            if let Some(slot) = members.get_mut(n) {
                *slot = true;
            }
        }
        state.splits.insert(id, members);
        cut_blocked(&mut state);
    }

    /// Ends split `id`.
    pub fn heal(&self, id: usize) {
        self.lock().splits.remove(&id);
    }

    /// Nodes online now.
    pub fn online_count(&self) -> usize {
        self.lock().offline.iter().filter(|o| !**o).count()
    }

    pub(crate) fn count_bytes(&self, node: NodeIx, n: usize) {
        if let Some(c) = self.bytes.get(node) {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Bytes written by all nodes so far (after the fault layer, before
    /// loss: what the nodes put on the wire, noise and yamux framing included).
    pub fn bytes_total(&self) -> u64 {
        self.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Bytes written by all nodes so far on the substreams of each
    /// application protocol (see [`super::CountingMuxer`]).
    pub fn bytes_by_protocol(&self) -> BTreeMap<String, u64> {
        self.protocols.snapshot()
    }

    pub(crate) fn protocol_counters(&self) -> Arc<ProtocolBytes> {
        self.protocols.clone()
    }

    /// Bytes written by one node.
    pub fn bytes_of(&self, node: NodeIx) -> u64 {
        self.bytes
            .get(node)
            .map(|b| b.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Connection ends opened so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connection attempts refused because of a split or an outage.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn blocked(state: &State, a: NodeIx, b: NodeIx) -> bool {
    let off = |n: NodeIx| state.offline.get(n).copied().unwrap_or(true);
    off(a) || off(b) || state.splits.values().any(|side| side.get(a) != side.get(b))
}

fn cut_blocked(state: &mut State) {
    let mut links = std::mem::take(&mut state.links);
    links.retain(|(a, b, link)| match link.upgrade() {
        Some(link) => {
            if blocked(state, *a, *b) {
                link.cut.store(true, Ordering::Relaxed);
                link.waker.wake();
                false
            } else {
                true
            }
        }
        None => false,
    });
    state.links = links;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(n: usize) -> Arc<FaultNet> {
        FaultNet::new(
            n,
            LinkModel {
                latency_us: Arc::new(|_, _| 0),
                loss: 0.0,
                rto: Duration::ZERO,
            },
            1,
        )
    }

    #[test]
    fn splits_and_outages_block_and_cut() {
        let net = net(4);
        let link = net.register(0, 2).unwrap();
        assert!(!net.blocked(0, 2));
        net.split(0, &[0, 1]);
        assert!(net.blocked(0, 2) && !net.blocked(0, 1) && !net.blocked(2, 3));
        assert!(link.cut.load(Ordering::Relaxed));
        assert!(net.register(2, 1).is_none());
        net.heal(0);
        assert!(!net.blocked(0, 2));
        net.set_online(3, false);
        assert!(net.blocked(3, 0));
        net.set_online(3, true);
        assert!(!net.blocked(3, 0));
    }

    #[test]
    fn addresses_map_back_to_nodes() {
        let a = net(3);
        let b = net(3);
        assert_eq!(a.node_at(&a.addr(2)), Some(2));
        assert_eq!(a.node_at(&b.addr(2)), None);
    }
}

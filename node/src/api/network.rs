//! `node.network()`: the node's connections and standing: status (with a
//! relay's mailbox counters), dialing, disconnecting, gossip scores.

use libp2p::Multiaddr;

use super::{
    errors::{ErrorCode, ReadError},
    Command, Node, NodeError, Status, Stopped,
};
use crate::PeerId;

/// The network side of a node: `node.network()`.
#[derive(Debug, Clone, Copy)]
pub struct Network<'a> {
    node: &'a Node,
}

impl<'a> Network<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// The node's state: addresses, connections, outbox, storage, and on a
    /// relay its mailboxes and counters.
    pub async fn status(&self) -> Result<Status, ReadError> {
        self.node
            .call(|reply| Command::Status { reply })
            .await
            .map_err(ReadError::from_reply)
    }

    /// Connects to an address (ending in `/p2p/<PEER_ID>` to check who answers).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), DialError> {
        self.node
            .call(|reply| Command::Dial { addr, reply })
            .await
            .map_err(|e| match e {
                NodeError::ActorDropped => DialError::Stopped(Stopped),
                NodeError::Invalid(why) => DialError::Refused(why),
                other => DialError::Refused(other.to_string()),
            })
    }

    /// Closes every connection to `peer` (it may reconnect later).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), Stopped> {
        self.node
            .call(|reply| Command::Disconnect { peer, reply })
            .await
            .map_err(|_| Stopped)
    }

    /// `peer`'s gossipsub score as this node sees it (0 for a peer it knows
    /// nothing about; `None` if scoring were off). Below
    /// [`crate::scoring::GRAYLIST_THRESHOLD`] the peer is ignored on every
    /// group topic.
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, Stopped> {
        self.node
            .call(|reply| Command::GossipScore { peer, reply })
            .await
            .map_err(|_| Stopped)
    }
}

/// `network().dial` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The dial could not start (an address it cannot use, a peer it
    /// refuses to dial); check the address.
    #[error("{0}; check the address (it should end in /p2p/<PEER_ID>)")]
    Refused(String),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

impl ErrorCode for DialError {
    fn code(&self) -> &'static str {
        match self {
            Self::Refused(_) => "invalid",
            Self::Stopped(e) => e.code(),
        }
    }
}

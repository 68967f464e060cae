//! The transports tests run on, and bare libp2p swarms built on them with
//! the same upgrades as a meshchat node (noise, yamux; TCP with `nodelay`).

use std::time::Duration;

use libp2p::{
    core::{transport::MemoryTransport, upgrade::Version, Transport},
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use meshchat_node::{
    crdt::Identity,
    transport::{CustomTransport, TransportFactoryError},
    SpawnOptions,
};

use crate::wait::{swarm_until, WAIT};

/// Where a test's nodes and bare swarms talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Net {
    /// TCP on 127.0.0.1, as a daemon runs.
    #[default]
    Loopback,
    /// libp2p's in-memory transport (`/memory/N`), noise and yamux on top:
    /// no sockets, still the node's real protocol handlers.
    Memory,
}

impl Net {
    /// An address to listen on that picks a free port.
    pub fn any_addr(self) -> Multiaddr {
        match self {
            Self::Loopback => "/ip4/127.0.0.1/tcp/0",
            Self::Memory => "/memory/0",
        }
        .parse()
        .expect("valid multiaddr")
    }

    /// The options that make [`meshchat_node::spawn_with`] build its swarm on
    /// this transport (the default ones for loopback).
    pub fn spawn_options(self) -> SpawnOptions {
        match self {
            Self::Loopback => SpawnOptions::default(),
            Self::Memory => SpawnOptions::default().with_transport(memory_transport),
        }
    }
}

/// The in-memory transport with noise and yamux, as a node takes it.
pub fn memory_transport(key: &Keypair) -> Result<CustomTransport, TransportFactoryError> {
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(WAIT)
        .boxed())
}

/// The libp2p key of a meshchat identity (one Ed25519 secret for both, as in
/// a real node).
pub fn keypair_of(identity: &Identity) -> Keypair {
    Keypair::ed25519_from_bytes(identity.secret_bytes()).expect("32 bytes are an ed25519 secret")
}

/// A bare swarm as `key` on `net`, keeping idle connections open for `idle`.
pub fn bare_swarm<B: NetworkBehaviour>(
    key: Keypair,
    net: Net,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    match net {
        Net::Loopback => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| behaviour(key))
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        Net::Memory => builder
            .with_other_transport(memory_transport)
            .expect("memory transport")
            .with_behaviour(|key| behaviour(key))
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    }
}

/// Starts listening on a free port of `net`; returns the address once the
/// swarm reports it.
pub async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>, net: Net) -> Multiaddr {
    swarm.listen_on(net.any_addr()).expect("listen");
    swarm_until(swarm, "a listen address", WAIT, |e| match e {
        SwarmEvent::NewListenAddr { address, .. } => Some(address),
        _ => None,
    })
    .await
}

/// The peer an address ends in (`/p2p/<id>`), if it names one.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `addr` without its `/p2p/<id>` part.
pub fn strip_p2p(addr: Multiaddr) -> Multiaddr {
    addr.into_iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Dials `addr` and drives the swarm until a connection is up: to `peer` if
/// given, else to whoever answers. Returns the connected peer; panics if
/// the dial fails or takes longer than `limit`.
pub async fn connect<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addr: Multiaddr,
    peer: Option<PeerId>,
    limit: Duration,
) -> PeerId {
    swarm.dial(addr.clone()).expect("dial");
    swarm_until(swarm, "a connection", limit, |e| match e {
        SwarmEvent::ConnectionEstablished { peer_id, .. }
            if peer.is_none_or(|want| want == peer_id) =>
        {
            Some(peer_id)
        }
        SwarmEvent::OutgoingConnectionError { error, .. } => {
            panic!("cannot connect to {addr}: {error}")
        }
        _ => None,
    })
    .await
}

//! How a node's swarm is built, and the hook that lets a caller (the network
//! simulator) supply its own transport instead of TCP and QUIC.
//!
//! [`spawn`](crate::spawn) builds TCP + QUIC + the relay client, as a daemon
//! needs. [`spawn_with`](crate::spawn_with) with a [`SpawnOptions::transport`]
//! builds the swarm on that transport alone (plus the relay client), so many
//! nodes can share one process over an in-memory network that adds latency,
//! loss and partitions.

use std::time::Duration;

use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Boxed},
    identity::Keypair,
    noise, tcp, yamux, PeerId, Swarm,
};

use crate::{api::SpawnError, behaviour::Behaviour, limits::Limits};

/// An authenticated, multiplexed transport, as libp2p's `SwarmBuilder` takes it.
pub type CustomTransport = Boxed<(PeerId, StreamMuxerBox)>;

/// Why a [`TransportFactory`] could not build its transport.
pub type TransportFactoryError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a [`CustomTransport`] for the node's own key (noise needs it).
pub type TransportFactory =
    Box<dyn FnOnce(&Keypair) -> Result<CustomTransport, TransportFactoryError> + Send>;

/// Options of [`spawn_with`](crate::spawn_with) that a daemon never needs.
/// `Default` gives exactly what [`spawn`](crate::spawn) does.
#[derive(Default)]
#[non_exhaustive]
pub struct SpawnOptions {
    /// Use this transport instead of TCP and QUIC. The node's listen
    /// addresses must be ones it understands (e.g. `/memory/N`).
    pub transport: Option<TransportFactory>,
    /// sled's page cache for this node's database, in bytes (sled's default
    /// is 1 GiB). Many nodes in one process want a small one.
    pub store_cache_bytes: Option<u64>,
    /// Keep no `storage.reserve` file (1 MiB per node). Without it a node
    /// whose disk filled up may have to wait for free space before it can
    /// reopen its database (see docs/SECURITY.md, "Storage faults").
    pub no_storage_reserve: bool,
    /// Run no flusher thread of sled's own for this node's database (sled
    /// flushes every 500 ms on a thread per database). Everything a node
    /// acknowledges is flushed by its group commit anyway; a write no group
    /// commit covers then reaches the disk at the next one or at shutdown
    /// instead of within 500 ms, so a crash can lose more of it. For many
    /// nodes in one process that are never killed (the simulator): there,
    /// 1,024 such threads wake 2,048 times a second, and each wake walks
    /// crossbeam's epoch list of every thread in the process.
    pub no_background_flush: bool,
}

impl SpawnOptions {
    /// Options with a custom transport.
    pub fn with_transport(
        mut self,
        factory: impl FnOnce(&Keypair) -> Result<CustomTransport, TransportFactoryError>
            + Send
            + 'static,
    ) -> Self {
        self.transport = Some(Box::new(factory));
        self
    }

    /// Options with a sled page cache of `bytes`.
    pub fn with_store_cache_bytes(mut self, bytes: u64) -> Self {
        self.store_cache_bytes = Some(bytes);
        self
    }

    /// Options without sled's own flusher thread (many nodes in one
    /// process, never killed): see [`SpawnOptions::no_background_flush`].
    pub fn without_background_flush(mut self) -> Self {
        self.no_background_flush = true;
        self
    }

    /// Options without the storage reserve file (many nodes on one disk).
    pub fn without_storage_reserve(mut self) -> Self {
        self.no_storage_reserve = true;
        self
    }
}

impl std::fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("transport", &self.transport.as_ref().map(|_| "custom"))
            .field("store_cache_bytes", &self.store_cache_bytes)
            .field("no_background_flush", &self.no_background_flush)
            .field("no_storage_reserve", &self.no_storage_reserve)
            .finish()
    }
}

/// Builds the swarm: on `custom` if given, else on TCP and QUIC.
pub(crate) fn build_swarm(
    keypair: Keypair,
    custom: Option<TransportFactory>,
    mdns: bool,
    relay_server: bool,
    idle: Duration,
    agent_version: String,
    limits: Limits,
) -> Result<Swarm<Behaviour>, SpawnError> {
    let network = |e: &dyn std::fmt::Display| SpawnError::Network(e.to_string());
    let behaviour = move |key: &Keypair, relay_client| {
        Behaviour::new(key, relay_client, mdns, relay_server, agent_version, limits)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    let swarm = match custom {
        Some(factory) => libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(factory)
            .map_err(|e| network(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| network(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| network(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        None => libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| network(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| network(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| network(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

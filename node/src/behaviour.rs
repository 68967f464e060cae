//! The composed libp2p behaviour: one struct, one field per protocol.

use std::time::Duration;

use libp2p::{
    allow_block_list::{self, BlockedPeers},
    autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, mdns, memory_connection_limits, relay, request_response,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    StreamProtocol,
};

use crate::{
    direct::{
        notice_wire::{NoticeCodec, NOTICE_PROTOCOL},
        sync_wire::{SyncCodec, SYNC_PROTOCOL},
    },
    limits::Limits,
    mailbox::wire::{MailboxCodec, MAILBOX_PROTOCOL},
    scoring,
};

/// Heartbeats (of 1 s) a gossiped frame stays in gossipsub's message cache,
/// forwardable once its verdict comes.
const FORWARDABLE_FOR_HEARTBEATS: usize = 30;

/// The identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/meshchat/id/1";
/// meshchat's own Kademlia protocol name, so its DHT is separate from IPFS's.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshchat/kad/1");

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // The limits come first: a refused connection is refused before any
    // other protocol allocates state for it.
    /// Per-peer and handshake limits, which nobody bypasses.
    pub(crate) limits_everyone: connection_limits::Behaviour,
    /// Total, inbound and dialling limits; contacts and relays bypass them.
    pub(crate) limits: connection_limits::Behaviour,
    /// No new connections while the process is short of memory.
    pub(crate) memory_limit: memory_connection_limits::Behaviour,
    /// Peers the user blocked: their connections are refused outright.
    pub(crate) blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    // No libp2p ping: nothing here reads its round trips and a failed ping
    // closes nothing. Its one other effect, traffic that keeps NAT
    // mappings open, is left to QUIC's own keep-alives (5 s), presence
    // heartbeats on contacts' connections, and for TCP the NAT's hold of
    // an established connection (RFC 5382: at least 2 h 4 min); an idle
    // TCP connection now carries nothing (yamux pings only while data
    // flows: the presence bench, docs/BENCHMARKS.md). Ping cost the most
    // of any protocol on an idle connection: 10 % of the CPU of 1,024 idle
    // nodes (docs/SIMULATIONS.md).
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    /// `/meshchat/sync/1`: pushes, syncs, read receipts.
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    /// `/meshchat/notice/1`: profiles, heartbeats, typing.
    pub(crate) notice: request_response::Behaviour<NoticeCodec>,
    pub(crate) mailbox: request_response::Behaviour<MailboxCodec>,
    /// Reservations at relays, so NAT'd peers are reachable through them.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Relay mode: circuit relay v2 server.
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    /// Upgrades relayed connections to direct ones (hole punching).
    pub(crate) dcutr: dcutr::Behaviour,
    /// Tells the node whether it is publicly reachable.
    pub(crate) autonat: autonat::Behaviour,
}

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BehaviourError {
    /// gossipsub rejected its configuration.
    #[error("gossipsub: {0}")]
    Gossipsub(String),
    /// mDNS could not start.
    #[error("mdns: {0}")]
    Mdns(#[from] std::io::Error),
}

impl Behaviour {
    pub(crate) fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        enable_mdns: bool,
        relay_server: bool,
        agent_version: String,
        limits: Limits,
    ) -> Result<Self, BehaviourError> {
        let peer_id = key.public().to_peer_id();
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(agent_version),
        );
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        // The node bootstraps itself when it has bootstrap peers; kad's own
        // periodic attempt would only warn "no known peers" on a fresh node.
        kad_config.set_periodic_bootstrap_interval(None);
        // Store only records the node validated (signed profiles): see
        // `social::handler::on_put_record`.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        // Relays hold their peers' profile records (a few hundred bytes each,
        // at most a signed 4 KiB body). How many is the RecordBook's call
        // (`dht_max_records`, with eviction), so the store itself is not
        // what refuses.
        let store_config = kad::store::MemoryStoreConfig {
            max_records: usize::MAX,
            max_value_bytes: crate::social::records::MAX_PROFILE_RECORD_BYTES,
            ..Default::default()
        };
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::with_config(peer_id, store_config),
            kad_config,
        );
        // Peers are Kademlia clients: relays (switched to server mode when
        // they start their mailbox) hold the records. A peer in server mode
        // answers everyone's routing queries, and in a network smaller than
        // k every new routing entry starts a bootstrap (kad's automatic
        // bootstrap on low peers): measured in the simulator as half the
        // bytes of `smoke` (docs/BENCHMARKS.md, "Bytes on the wire").
        kad.set_mode(Some(kad::Mode::Client));
        let gossip_config = gossipsub::ConfigBuilder::default()
            // Never forward a message before the node has checked it.
            .validate_messages()
            // Content-addressed ids: the same changes republished by another
            // member are recognised as duplicates.
            .message_id_fn(|m| {
                use sha2::Digest;
                gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
            })
            // No author on the wire: gossipsub's own signature, source and
            // sequence number are left out (and refused if present). Every
            // change inside is signed by its author already, and gossipsub
            // verified its signature on every copy it received, duplicates
            // included, before its seen-cache dropped them (13 % of the CPU
            // of the 1,024-member simulation).
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .max_transmit_size(1024 * 1024)
            // A frame stays forwardable for 30 heartbeats (30 s), not 5: a
            // verdict can come late (a frame sealed under a sender key
            // waits for the key, asked of the member that passed it on),
            // and gossipsub drops a late verdict's frame unforwarded
            // ("Message not in cache": 8 % of the receptions of the
            // 1,024-member simulation, each a hole in the mesh). Only
            // accepted or pending frames are kept; rejected and ignored
            // ones leave the cache at their verdict.
            .history_length(FORWARDABLE_FOR_HEARTBEATS)
            .build()
            .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
                .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
        // A peer whose frames the node rejects loses score and, after a
        // few, is graylisted and pruned (see `scoring`).
        gossipsub
            .with_peer_score(scoring::peer_score_params(), scoring::thresholds())
            .map_err(BehaviourError::Gossipsub)?;
        let mdns = if enable_mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };
        // A request frame may be 4 MiB and is read whole before it is
        // handled: the stream bound caps what one connection can make the
        // node hold (16 x 4 MiB by default); libp2p drops inbound streams
        // beyond it.
        let sync = request_response::Behaviour::new(
            [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(limits.max_streams_per_connection),
        );
        let notice = request_response::Behaviour::new(
            [(NOTICE_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(limits.max_streams_per_connection),
        );
        let mailbox = request_response::Behaviour::new(
            [(MAILBOX_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(limits.max_streams_per_connection),
        );
        Ok(Self {
            limits_everyone: limits.everyone(),
            limits: limits.shared(),
            memory_limit: limits.memory(),
            blocked: Default::default(),
            identify,
            kad,
            gossipsub,
            mdns: mdns.into(),
            sync,
            notice,
            mailbox,
            relay_client,
            relay_server: relay_server
                .then(|| relay::Behaviour::new(peer_id, relay::Config::default()))
                .into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        })
    }
}

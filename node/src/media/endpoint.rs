//! The iroh endpoint: the node's own Ed25519 key, no relay servers, peers'
//! addresses learned over libp2p and kept in a memory lookup.
//!
//! A peer's iroh endpoint id *is* its libp2p public key, so only socket
//! addresses travel: each node states its iroh UDP port in its libp2p
//! identify agent string (`meshchat/<version> blobs/<port>`), and a peer pairs
//! that port with the IP addresses it already knows for the node.

use std::net::{IpAddr, SocketAddr};

use iroh::{
    address_lookup::MemoryLookup,
    endpoint::{presets, PortmapperConfig},
    Endpoint, EndpointAddr, EndpointId, RelayMode, SecretKey, TransportAddr,
};
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use meshchat_crdt::{Identity, PublicKey};

use super::config::BlobConfig;

/// The part of the identify agent string that carries the iroh port.
const PORT_TAG: &str = "blobs/";

/// Binds the endpoint for `identity`.
pub(crate) async fn bind(
    identity: &Identity,
    config: &BlobConfig,
    lookup: &MemoryLookup,
) -> Result<Endpoint, String> {
    let secret = SecretKey::from_bytes(&identity.secret_bytes());
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(config.bind)
        .map_err(|e| format!("invalid blob bind address {}: {e}", config.bind))?
        .address_lookup(lookup.clone());
    if config.bind.ip().is_loopback() {
        // Gateway probing would leave the loopback interface.
        builder = builder.portmapper_config(PortmapperConfig::Disabled);
    }
    builder
        .bind()
        .await
        .map_err(|e| format!("cannot bind the blob endpoint on {}: {e}", config.bind))
}

/// The agent string announcing `port`.
pub(crate) fn agent_version(port: u16) -> String {
    format!("meshchat/{} {PORT_TAG}{port}", env!("CARGO_PKG_VERSION"))
}

/// The iroh port a peer's agent string announces.
pub(crate) fn port_in_agent(agent: &str) -> Option<u16> {
    agent
        .split_whitespace()
        .find_map(|part| part.strip_prefix(PORT_TAG))
        .and_then(|p| p.parse().ok())
        .filter(|p| *p != 0)
}

/// The endpoint id of a meshchat peer (the same Ed25519 key).
pub(crate) fn endpoint_of(peer: &PeerId) -> Option<EndpointId> {
    let key = crate::keys::public_key_of(peer)?;
    endpoint_of_key(&key)
}

/// The endpoint id of a meshchat public key.
pub(crate) fn endpoint_of_key(key: &PublicKey) -> Option<EndpointId> {
    EndpointId::from_bytes(key.as_bytes()).ok()
}

/// The meshchat key of an endpoint id.
pub(crate) fn key_of_endpoint(id: &EndpointId) -> PublicKey {
    PublicKey::from_bytes(*id.as_bytes())
}

/// Socket addresses for `port` on every IP in `addrs` (circuit addresses,
/// which are not the peer's own, skipped).
pub(crate) fn socket_addrs(port: u16, addrs: &[Multiaddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for addr in addrs {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            continue;
        }
        let ip = addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        });
        if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
            let socket = SocketAddr::new(ip, port);
            if !out.contains(&socket) {
                out.push(socket);
            }
        }
    }
    out
}

/// Remembers that `id` is reachable at `sockets` (and no longer at the
/// addresses it had before: a restarted peer may have a new port).
pub(crate) fn remember(lookup: &MemoryLookup, id: EndpointId, sockets: Vec<SocketAddr>) {
    if sockets.is_empty() {
        return;
    }
    let addr = EndpointAddr::from_parts(id, sockets.into_iter().map(TransportAddr::Ip));
    lookup.set_endpoint_info(addr);
}

/// This endpoint's address with its bound sockets (an unspecified bind is
/// replaced by loopback, which is what a local tool can always reach).
pub(crate) fn own_addr(endpoint: &Endpoint) -> EndpointAddr {
    let mut addr = endpoint.addr();
    for socket in endpoint.bound_sockets() {
        let socket = if socket.ip().is_unspecified() {
            let ip = if socket.is_ipv4() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            };
            SocketAddr::new(ip, socket.port())
        } else {
            socket
        };
        addr.addrs.insert(TransportAddr::Ip(socket));
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_round_trips_through_the_agent_string() {
        assert_eq!(port_in_agent(&agent_version(4702)), Some(4702));
        assert_eq!(port_in_agent("meshchat/0.1.0"), None);
        assert_eq!(port_in_agent("meshchat/0.1.0 blobs/x"), None);
        assert_eq!(port_in_agent("meshchat/0.1.0 blobs/0"), None);
    }

    #[test]
    fn sockets_pair_the_port_with_each_direct_ip() {
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4701".parse().unwrap(),
            "/ip4/127.0.0.1/udp/4701/quic-v1".parse().unwrap(),
            "/ip4/0.0.0.0/tcp/1".parse().unwrap(),
            "/ip4/10.0.0.1/tcp/1/p2p/12D3KooWLnxuHHsnwCGsBbsb9oDnVcS6BAyYhDkBPGQCqKbEYPWH/p2p-circuit"
                .parse()
                .unwrap(),
        ];
        assert_eq!(
            socket_addrs(9, &addrs),
            vec![SocketAddr::from(([127, 0, 0, 1], 9))]
        );
    }
}

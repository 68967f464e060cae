//! A node's transport on the simulated network: libp2p's in-memory transport
//! with the fault layer under noise and yamux, as TCP would be.
//!
//! The dialer names itself in a 4-byte preamble, so both ends know the link
//! (for its latency, and to refuse it across a split or to an offline node).
//! Above yamux, every substream counts its bytes per application protocol.

use std::{io, sync::Arc, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{
    core::{
        muxing::StreamMuxerBox, transport::MemoryTransport, upgrade::Version, ConnectedPoint,
        Transport,
    },
    identity::Keypair,
    noise, yamux,
};
use meshchat_node::transport::{CustomTransport, TransportFactoryError};

use super::{counting::CountingMuxer, net::FaultNet, stream::FaultStream};
use crate::schedule::NodeIx;

/// How long a connection may take to set up (noise + yamux).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);

/// The transport of node `me` on `net`.
pub fn fault_transport(
    net: Arc<FaultNet>,
    me: NodeIx,
    key: &Keypair,
) -> Result<CustomTransport, TransportFactoryError> {
    let protocols = net.protocol_counters();
    Ok(MemoryTransport::default()
        .and_then(move |conn, endpoint| handshake(conn, endpoint, net, me))
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(UPGRADE_TIMEOUT)
        .map(move |(peer, muxer), _| {
            (
                peer,
                StreamMuxerBox::new(CountingMuxer::new(muxer, protocols.clone())),
            )
        })
        .boxed())
}

async fn handshake<S>(
    mut conn: S,
    endpoint: ConnectedPoint,
    net: Arc<FaultNet>,
    me: NodeIx,
) -> io::Result<FaultStream<S>>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let peer = match &endpoint {
        ConnectedPoint::Dialer { address, .. } => {
            let peer = net.node_at(address).ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "not a simulated node")
            })?;
            conn.write_all(&(me as u32).to_be_bytes()).await?;
            conn.flush().await?;
            peer
        }
        ConnectedPoint::Listener { .. } => {
            let mut id = [0u8; 4];
            conn.read_exact(&mut id).await?;
            u32::from_be_bytes(id) as NodeIx
        }
    };
    if peer >= net.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown simulated node",
        ));
    }
    let link = net.register(me, peer).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "unreachable in the simulated network (split or offline)",
        )
    })?;
    Ok(FaultStream::new(conn, net, link, me, peer))
}

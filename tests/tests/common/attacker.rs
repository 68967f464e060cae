//! A bare libp2p swarm that speaks meshchat's request-response protocols
//! with any bytes: the attacker of the adversarial tests.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    noise,
    request_response::{self, OutboundFailure, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, PeerId, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::{ChatId, Identity, PublicKey, SignedChange},
    protocol::{
        DirectCodec, Inbound, Request, Response, DIRECT_PROTOCOL, MAX_REQUEST_BYTES,
        MAX_RESPONSE_BYTES,
    },
};

use super::{Peer, WAIT};

/// A codec that sends and receives raw bytes on the direct protocol, to put
/// arbitrary frames on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

async fn read_to_end_bounded<T: AsyncRead + Unpin>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame over limit",
        ));
    }
    Ok(buf)
}

async fn write_and_close<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_to_end_bounded(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_to_end_bounded(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_and_close(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_and_close(io, &res).await
    }
}

/// A bare libp2p swarm with one identity, connected to a meshchat node.
pub struct Attacker<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    pub identity: Identity,
    pub swarm: Swarm<request_response::Behaviour<C>>,
    pub target: PeerId,
}

impl<C> Attacker<C>
where
    C: request_response::Codec<Protocol = StreamProtocol> + Clone + Send + 'static,
{
    /// Connects to `target` on loopback as `identity` (the libp2p key and the
    /// meshchat signing key are the same Ed25519 secret, as in a real node).
    pub async fn connect(identity: Identity, codec: C, target: &Peer) -> Self {
        Self::connect_on(identity, codec, target, DIRECT_PROTOCOL).await
    }

    /// Like [`Attacker::connect`], speaking `protocol`.
    pub async fn connect_on(
        identity: Identity,
        codec: C,
        target: &Peer,
        protocol: StreamProtocol,
    ) -> Self {
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_bytes())
            .expect("32 bytes are an ed25519 secret");
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    codec,
                    // Outbound only: the attacker never serves the node's syncs.
                    [(protocol, ProtocolSupport::Outbound)],
                    request_response::Config::default().with_request_timeout(WAIT),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT * 3))
            .build();
        let target_id = target.peer_id();
        let addr = target
            .addrs()
            .await
            .into_iter()
            .next()
            .expect("the node listens somewhere");
        swarm.dial(addr.clone()).expect("dial");
        tokio::time::timeout(WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target_id => {
                        return
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("cannot connect to {addr}: {error}")
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("timed out connecting to the node");
        Self {
            identity,
            swarm,
            target: target_id,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    pub fn public(&self) -> PublicKey {
        self.identity.public()
    }

    /// Sends one request and drives the swarm until its response or failure.
    pub async fn request(&mut self, request: C::Request) -> Result<C::Response, OutboundFailure> {
        let target = self.target;
        let id = self.swarm.behaviour_mut().send_request(&target, request);
        let swarm = &mut self.swarm;
        tokio::time::timeout(WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) if request_id == id => return Ok(response),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) if request_id == id => return Err(error),
                    _ => {}
                }
            }
        })
        .await
        .expect("timed out waiting for the node's answer")
    }
}

impl Attacker<DirectCodec> {
    pub async fn push(&mut self, changes: Vec<SignedChange>) -> Response {
        self.request(Inbound::Request(Request::Push { changes }))
            .await
            .expect("the node answers a push")
    }

    pub async fn sync(&mut self, chat: ChatId) -> Response {
        self.request(Inbound::Request(Request::Sync {
            chat,
            heads: Vec::new(),
        }))
        .await
        .expect("the node answers a sync")
    }
}

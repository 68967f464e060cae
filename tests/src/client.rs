//! A bare libp2p request-response client of one node: it speaks one of
//! meshchat's protocols with any codec, so it can be an attacker sending
//! forged or garbage frames, or a plain client of a relay's mailbox.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    request_response::{self, OutboundFailure, OutboundRequestId, ProtocolSupport},
    swarm::SwarmEvent,
    Multiaddr, PeerId, StreamProtocol, Swarm,
};
use meshchat_node::{
    crdt::{ChatId, Identity, PublicKey, SignedChange},
    mailbox::DeliveryToken,
    protocol::{
        DepositItem, DepositOutcome, Inbound, MailboxCodec, MailboxRequest, MailboxResponse,
        Request, Response, SyncCodec, MAILBOX_PROTOCOL, SYNC_PROTOCOL,
    },
};

use crate::{
    net::{bare_swarm, connect, keypair_of, peer_of, Net},
    peer::Peer,
    wait::WAIT,
};

/// Requests one client keeps in flight at most (a node serves fewer per
/// connection; the node's refusal is what tests look at).
const MAX_STREAMS: usize = 256;

/// A bare swarm with one identity, connected to one node, speaking one
/// protocol outbound only (it never serves the node's requests).
pub struct BareClient<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    /// Its identity: the libp2p key and the meshchat signing key are the
    /// same Ed25519 secret, as in a real node.
    pub identity: Identity,
    /// The swarm, for tests that drive it by hand.
    pub swarm: Swarm<request_response::Behaviour<C>>,
    /// The node it is connected to.
    pub target: PeerId,
    /// How long one request may take before it fails with `Timeout`.
    timeout: Duration,
}

impl<C> BareClient<C>
where
    C: request_response::Codec<Protocol = StreamProtocol> + Clone + Send + 'static,
{
    /// Connects to `target` as `identity`, speaking the direct protocol.
    pub async fn connect(identity: Identity, codec: C, target: &Peer) -> Self {
        Self::connect_on(identity, codec, target, SYNC_PROTOCOL).await
    }

    /// Like [`BareClient::connect`], speaking `protocol`.
    pub async fn connect_on(
        identity: Identity,
        codec: C,
        target: &Peer,
        protocol: StreamProtocol,
    ) -> Self {
        let addr = target
            .addrs()
            .await
            .into_iter()
            .next()
            .expect("the node listens somewhere");
        Self::dial(identity, codec, protocol, target.net, addr, WAIT).await
    }

    /// Dials `addr` on `net` (the node is the one its `/p2p` part names, else
    /// whoever answers); each request may take `timeout`.
    pub async fn dial(
        identity: Identity,
        codec: C,
        protocol: StreamProtocol,
        net: Net,
        addr: Multiaddr,
        timeout: Duration,
    ) -> Self {
        let mut swarm = bare_swarm(keypair_of(&identity), net, timeout * 3, |_| {
            request_response::Behaviour::with_codec(
                codec,
                [(protocol, ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(timeout)
                    .with_max_concurrent_streams(MAX_STREAMS),
            )
        });
        let wanted = peer_of(&addr);
        let target = connect(&mut swarm, addr, wanted, timeout).await;
        Self {
            identity,
            swarm,
            target,
            timeout,
        }
    }

    /// This client's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// This client's meshchat public key.
    pub fn public(&self) -> PublicKey {
        self.identity.public()
    }

    /// Sends a request without waiting for its answer (see
    /// [`BareClient::next_outcome`]).
    pub fn send(&mut self, request: C::Request) -> OutboundRequestId {
        let target = self.target;
        self.swarm.behaviour_mut().send_request(&target, request)
    }

    /// Drives the swarm until some request's answer or failure.
    pub async fn next_outcome(
        &mut self,
    ) -> (OutboundRequestId, Result<C::Response, OutboundFailure>) {
        let swarm = &mut self.swarm;
        let outcome = async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) => return (request_id, Ok(response)),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) => return (request_id, Err(error)),
                    _ => {}
                }
            }
        };
        // The behaviour fails a request after `timeout`; this is the net
        // under it.
        tokio::time::timeout(self.timeout * 2, outcome)
            .await
            .expect("timed out waiting for the node's answer")
    }

    /// Sends one request and drives the swarm until its response or failure.
    pub async fn request(&mut self, request: C::Request) -> Result<C::Response, OutboundFailure> {
        let id = self.send(request);
        loop {
            let (done, outcome) = self.next_outcome().await;
            if done == id {
                return outcome;
            }
        }
    }
}

impl BareClient<SyncCodec> {
    /// Pushes changes; panics if the node does not answer.
    pub async fn push(&mut self, changes: Vec<SignedChange>) -> Response {
        self.request(Inbound::Request(Request::Push { changes }))
            .await
            .expect("the node answers a push")
    }

    /// Asks for a chat's changes from no heads; panics if the node does not
    /// answer.
    pub async fn sync(&mut self, chat: ChatId) -> Response {
        self.request(Inbound::Request(Request::Sync {
            chat,
            heads: Vec::new(),
        }))
        .await
        .expect("the node answers a sync")
    }
}

/// A bare client of a relay's mailbox protocol.
pub type MailboxClient = BareClient<MailboxCodec>;

/// One deposit: recipient, envelope, the recipient's token.
pub type Deposit = (PublicKey, Vec<u8>, DeliveryToken);

impl BareClient<MailboxCodec> {
    /// Connects to the relay at `addr` (on loopback) as `identity`.
    pub async fn to_relay(identity: Identity, addr: Multiaddr) -> Self {
        Self::dial(
            identity,
            MailboxCodec,
            MAILBOX_PROTOCOL,
            Net::Loopback,
            addr,
            WAIT,
        )
        .await
    }

    /// Sends a request; the response, or `None` if the request failed.
    pub async fn ask(&mut self, request: MailboxRequest) -> Option<MailboxResponse> {
        self.request(Inbound::Request(request)).await.ok()
    }

    /// Every envelope in this client's mailbox, oldest first, fetched page
    /// by page; panics if a fetch fails.
    pub async fn fetch_all(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let Some(MailboxResponse::Mail { items, more }) =
                self.ask(MailboxRequest::Fetch { after, limit: 100 }).await
            else {
                panic!("fetch failed");
            };
            after = items.last().map(|i| i.id).or(after);
            out.extend(items.into_iter().map(|i| i.envelope));
            if !more {
                return out;
            }
        }
    }

    /// Deposits every item, `window` in flight; returns once all are
    /// acknowledged (panics on a refusal or a failure).
    pub async fn deposit_all(&mut self, items: Vec<Deposit>, window: usize) {
        let total = items.len();
        let mut items = items.into_iter();
        let (mut in_flight, mut done) = (0, 0);
        while done < total {
            while in_flight < window {
                let Some((recipient, envelope, token)) = items.next() else {
                    break;
                };
                self.send(Inbound::Request(MailboxRequest::Deposit {
                    recipient,
                    envelope,
                    token: Some(token),
                }));
                in_flight += 1;
            }
            match self.next_outcome().await {
                (_, Ok(MailboxResponse::Deposited(_))) => {
                    in_flight -= 1;
                    done += 1;
                }
                (_, Ok(other)) => panic!("deposit refused: {other:?}"),
                (_, Err(error)) => panic!("deposit failed: {error}"),
            }
        }
    }

    /// Deposits every item in batches of `batch` (one `DepositBatch`
    /// request each), `window` batches in flight; returns once every
    /// deposit is acknowledged (panics on a refusal or a failure).
    pub async fn deposit_batches(&mut self, items: Vec<Deposit>, batch: usize, window: usize) {
        let mut batches = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let deposits: Vec<DepositItem> = items
                .by_ref()
                .take(batch)
                .map(|(recipient, envelope, token)| DepositItem {
                    recipient,
                    envelope,
                    token: Some(token),
                })
                .collect();
            batches.push(deposits);
        }
        let total = batches.len();
        let mut batches = batches.into_iter();
        let (mut in_flight, mut done) = (0, 0);
        while done < total {
            while in_flight < window {
                let Some(deposits) = batches.next() else {
                    break;
                };
                self.send(Inbound::Request(MailboxRequest::DepositBatch { deposits }));
                in_flight += 1;
            }
            match self.next_outcome().await {
                (_, Ok(MailboxResponse::DepositedBatch { outcomes })) => {
                    if let Some(refused) = outcomes
                        .iter()
                        .find(|o| !matches!(o, DepositOutcome::Deposited(_)))
                    {
                        panic!("deposit refused: {refused:?}");
                    }
                    in_flight -= 1;
                    done += 1;
                }
                (_, Ok(other)) => panic!("batch refused: {other:?}"),
                (_, Err(error)) => panic!("batch failed: {error}"),
            }
        }
    }
}

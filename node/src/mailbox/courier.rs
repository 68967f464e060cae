//! Sealed sender to relays (issue 16): one mailbox request carried to a
//! relay over a throwaway identity, so the relay learns a mailbox, a size
//! and a time, not who deposited.
//!
//! A courier is a minimal swarm of its own (TCP + QUIC, Noise, yamux, and
//! only the outbound side of `/meshchat/mailbox/2`) on a fresh Ed25519 key:
//! it dials the relay, sends the one request, waits (bounded) for the
//! answer and is dropped. One key per request, so two deposits are not
//! linkable by identity. The relay admits it on the recipient's delivery
//! token, which names no holder (see `mailbox::token`).
//!
//! What it does not hide: the relay still sees the connection's IP address
//! and timing, the envelope's size, the recipient and the token (so all
//! deposits under one token are linkable to "someone the recipient gave
//! this token to"). See docs/SECURITY.md, "Sealed mail at relays".

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    request_response::{self, OutboundFailure, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId,
};

use super::wire::{Envelope, MailboxCodec, MailboxRequest, MailboxResponse, MAILBOX_PROTOCOL};
use crate::framing::{decode_frame, Inbound};

/// Why a courier brought no answer back. The request may or may not have
/// reached the relay: the sender deposits again later, as after any failed
/// request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CourierError {
    /// The courier's swarm could not be built (no TCP or QUIC here).
    #[error("cannot build the courier: {0}")]
    Build(String),
    /// The relay has no address the courier can dial.
    #[error("no address to dial the relay at")]
    NoAddress,
    /// Dialling, negotiating or the request itself failed.
    #[error("mailbox request failed: {0}")]
    Failed(#[from] OutboundFailure),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The courier's task ended without an answer (it panicked).
    #[error("the courier was lost: {0}")]
    Lost(String),
}

/// Whether `envelope` may travel by courier: sealed to the recipient and
/// attaching no files. A relay caches an attached blob only for the
/// identified depositor of mail that attaches it
/// (`media::relay_proof::deposit_attaches` compares the stored depositor),
/// so mail attaching files stays on the identified path; a plain envelope
/// would name its author to the relay anyway.
pub(crate) fn carries(envelope: &[u8]) -> bool {
    matches!(
        decode_frame::<Envelope>(envelope),
        Ok(Envelope::Sealed { attaches, .. }) if attaches.is_empty()
    )
}

/// Carries `request` to `relay` (at any of `addrs`) over a fresh identity
/// and returns the relay's answer, within `timeout` in all (dial, Noise,
/// request and answer).
pub(crate) async fn deliver(
    relay: PeerId,
    addrs: Vec<Multiaddr>,
    request: MailboxRequest,
    timeout: Duration,
) -> Result<MailboxResponse, CourierError> {
    // The relay's id goes in the dial options, not in the address.
    let addrs: Vec<Multiaddr> = addrs
        .into_iter()
        .map(|mut addr| {
            if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                addr.pop();
            }
            addr
        })
        .collect();
    if addrs.is_empty() {
        return Err(CourierError::NoAddress);
    }
    let build = |e: &dyn std::fmt::Display| CourierError::Build(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic()
        .with_behaviour(|_| {
            request_response::Behaviour::<MailboxCodec>::new(
                [(MAILBOX_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(timeout),
            )
        })
        .map_err(|e| build(&e))?
        .build();
    let id =
        swarm
            .behaviour_mut()
            .send_request_with_addresses(&relay, Inbound::Request(request), addrs);
    let answer = async {
        loop {
            use request_response::{Event as E, Message as M};
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(E::Message {
                    message:
                        M::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(E::OutboundFailure {
                    request_id, error, ..
                }) if request_id == id => return Err(CourierError::Failed(error)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or(Err(CourierError::TimedOut(timeout)))
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::BlobHash;

    use super::*;
    use crate::framing::encode_frame;

    #[test]
    fn only_sealed_mail_attaching_nothing_goes_by_courier() {
        let sealed = |attaches| {
            encode_frame(&Envelope::Sealed {
                sealed: vec![7; 64],
                attaches,
            })
        };
        assert!(carries(&sealed(Vec::new())));
        assert!(!carries(&sealed(vec![BlobHash::from_bytes([1; 32])])));
        assert!(!carries(&encode_frame(&Envelope::Changes(Vec::new()))));
        assert!(!carries(b"not a frame"));
        assert!(!carries(&[]));
    }

    #[tokio::test]
    async fn a_courier_to_nowhere_fails_within_its_timeout() {
        let relay = PeerId::random();
        // Nothing listens on port 1 of loopback: the dial is refused.
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let timeout = Duration::from_secs(5);
        let request = MailboxRequest::Notify;
        let failed = deliver(relay, vec![addr], request.clone(), timeout).await;
        assert!(matches!(failed, Err(CourierError::Failed(_))), "{failed:?}");
        assert!(matches!(
            deliver(relay, Vec::new(), request, timeout).await,
            Err(CourierError::NoAddress)
        ));
    }
}

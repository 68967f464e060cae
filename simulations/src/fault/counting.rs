//! Bytes per application protocol: a muxer wrapper whose substreams count
//! what their node writes, under the protocol multistream-select agreed on
//! for that substream (read from the negotiation's plain-text lines).
//!
//! Counted per substream: the negotiation lines and the protocol's own bytes
//! (its framing, e.g. length prefixes, included). Not counted here: yamux
//! frame headers and window updates, noise's length prefixes and tags, the
//! noise handshake and the connection's own negotiation; the report shows
//! them as the connection total minus the sum of the protocols.

use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

use super::multistream::{DialerProposal, ListenerAnswer};

/// Bytes written on substreams that closed before their protocol was known:
/// mostly a listener refusing every proposal (`na`), e.g. a Kademlia client
/// asked by a peer that still lists it.
pub const UNNEGOTIATED: &str = "(refused or unfinished negotiations)";

/// Bytes written per protocol, all nodes together.
#[derive(Debug, Default)]
pub struct ProtocolBytes {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl ProtocolBytes {
    fn counter(&self, protocol: &str) -> Arc<AtomicU64> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.entry(protocol.to_owned()).or_default().clone()
    }

    /// Bytes written so far, per protocol.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters
            .iter()
            .map(|(name, c)| (name.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A muxer whose substreams count their bytes per protocol.
pub struct CountingMuxer<M> {
    inner: M,
    bytes: Arc<ProtocolBytes>,
}

impl<M> CountingMuxer<M> {
    /// Wraps `inner`, counting into `bytes`.
    pub fn new(inner: M, bytes: Arc<ProtocolBytes>) -> Self {
        Self { inner, bytes }
    }
}

impl<M> StreamMuxer for CountingMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = CountingSubstream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_inbound(cx)
            .map_ok(|s| CountingSubstream::new(s, this.bytes.clone(), Role::inbound()))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_ok(|s| CountingSubstream::new(s, this.bytes.clone(), Role::outbound()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// How a substream learns its protocol.
enum Role {
    /// We listen: our own answer names the protocol.
    Inbound(ListenerAnswer),
    /// We dial: our first proposal names it, until the answer we read says
    /// otherwise (a refused proposal).
    Outbound(DialerProposal, ListenerAnswer),
}

impl Role {
    fn inbound() -> Self {
        Role::Inbound(ListenerAnswer::default())
    }

    fn outbound() -> Self {
        Role::Outbound(DialerProposal::default(), ListenerAnswer::default())
    }
}

/// A substream that counts what its node writes, per protocol.
pub struct CountingSubstream<S> {
    inner: S,
    bytes: Arc<ProtocolBytes>,
    role: Role,
    /// The protocol the bytes go to, once known, and how many went there.
    counter: Option<(String, Arc<AtomicU64>)>,
    counted: u64,
    /// Written before the protocol was known.
    pending: u64,
}

impl<S> CountingSubstream<S> {
    fn new(inner: S, bytes: Arc<ProtocolBytes>, role: Role) -> Self {
        Self {
            inner,
            bytes,
            role,
            counter: None,
            counted: 0,
            pending: 0,
        }
    }

    fn on_written(&mut self, written: &[u8]) {
        let named = match &mut self.role {
            Role::Inbound(answer) if !answer.done() => answer.feed(written),
            Role::Outbound(proposal, _) if !proposal.done() => proposal.feed(written),
            _ => None,
        };
        if let Some(protocol) = named {
            if self.counter.is_none() {
                self.counter = Some((protocol.clone(), self.bytes.counter(&protocol)));
            }
        }
        self.pending += written.len() as u64;
        if let Some((_, counter)) = &self.counter {
            counter.fetch_add(self.pending, Ordering::Relaxed);
            self.counted += self.pending;
            self.pending = 0;
        }
    }

    fn on_read(&mut self, read: &[u8]) {
        let Role::Outbound(_, answer) = &mut self.role else {
            return;
        };
        if answer.done() {
            return;
        }
        let Some(protocol) = answer.feed(read) else {
            return;
        };
        // The listener accepted another protocol than our first proposal:
        // move what was counted.
        if self.counter.as_ref().map(|(p, _)| p) != Some(&protocol) {
            let counter = self.bytes.counter(&protocol);
            if let Some((_, old)) = &self.counter {
                old.fetch_sub(self.counted, Ordering::Relaxed);
            }
            counter.fetch_add(self.counted, Ordering::Relaxed);
            self.counter = Some((protocol, counter));
        }
    }
}

impl<S> Drop for CountingSubstream<S> {
    fn drop(&mut self) {
        if self.pending > 0 {
            self.bytes
                .counter(UNNEGOTIATED)
                .fetch_add(self.pending, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingSubstream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            this.on_read(&buf[..n]);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingSubstream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.on_written(&buf[..n]);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor, AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A stream that reads `reply` and keeps what is written apart.
    struct Duplex {
        reply: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().reply).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().written).poll_write(cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn line(text: &str) -> Vec<u8> {
        let mut out = vec![(text.len() + 1) as u8];
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        out
    }

    #[test]
    fn inbound_bytes_go_to_the_answered_protocol_including_negotiation() {
        let bytes = Arc::new(ProtocolBytes::default());
        let mut s = CountingSubstream::new(Cursor::new(Vec::new()), bytes.clone(), Role::inbound());
        let header = line("/multistream/1.0.0");
        let answer = line("/ipfs/ping/1.0.0");
        block_on(async {
            s.write_all(&header).await.unwrap();
            s.write_all(&answer).await.unwrap();
            s.write_all(&[0u8; 32]).await.unwrap();
        });
        let total = (header.len() + answer.len() + 32) as u64;
        assert_eq!(bytes.snapshot().get("/ipfs/ping/1.0.0"), Some(&total));
    }

    #[test]
    fn outbound_moves_its_bytes_when_the_listener_accepts_another_proposal() {
        let bytes = Arc::new(ProtocolBytes::default());
        let mut reply = line("/multistream/1.0.0");
        reply.extend(line("na"));
        reply.extend(line("/b/1"));
        let io = Duplex {
            reply: Cursor::new(reply),
            written: Vec::new(),
        };
        let mut s = CountingSubstream::new(io, bytes.clone(), Role::outbound());
        block_on(async {
            s.write_all(&line("/multistream/1.0.0")).await.unwrap();
            s.write_all(&line("/a/1")).await.unwrap();
            let mut buf = vec![0u8; 64];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(&[0u8; 10]).await.unwrap();
        });
        let snap = bytes.snapshot();
        assert_eq!(snap.get("/a/1"), Some(&0));
        // Header (20) and the first proposal (6) count with the stream.
        assert_eq!(snap.get("/b/1"), Some(&(20 + 6 + 10)));
    }

    #[test]
    fn bytes_of_a_substream_that_never_named_its_protocol_are_unnegotiated() {
        let bytes = Arc::new(ProtocolBytes::default());
        let mut s = CountingSubstream::new(Cursor::new(Vec::new()), bytes.clone(), Role::inbound());
        block_on(s.write_all(&line("/multistream/1.0.0"))).unwrap();
        drop(s);
        assert_eq!(bytes.snapshot().get(UNNEGOTIATED), Some(&20));
    }
}

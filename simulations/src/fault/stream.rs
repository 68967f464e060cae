//! One end of a simulated connection: a byte stream that counts what its
//! node writes, holds what arrives until the link's latency has passed
//! (plus a retransmission delay for "lost" chunks), and fails when the
//! network cuts the link.
//!
//! Loss model: the nodes speak a reliable stream protocol (as over TCP), so
//! a lost packet is not a lost byte but a late one: with probability `loss`
//! a chunk read off the wire is charged `rto` extra, and since the stream is
//! in order, everything behind it waits too (head-of-line blocking).

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{Instant, Sleep};

use super::net::{FaultNet, LinkState};
use crate::schedule::NodeIx;

/// Bytes held for delivery before reading from the wire pauses (backpressure).
const MAX_IN_FLIGHT: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;

/// A connection end with faults.
pub struct FaultStream<S> {
    inner: S,
    net: Arc<FaultNet>,
    link: Arc<LinkState>,
    me: NodeIx,
    latency: Duration,
    rng: ChaCha8Rng,
    arriving: VecDeque<(Instant, Vec<u8>, usize)>,
    held: usize,
    last_due: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    eof: bool,
    scratch: Vec<u8>,
}

impl<S> FaultStream<S> {
    pub(crate) fn new(
        inner: S,
        net: Arc<FaultNet>,
        link: Arc<LinkState>,
        me: NodeIx,
        peer: NodeIx,
    ) -> Self {
        let latency = Duration::from_micros((net.model().latency_us)(me, peer));
        let rng = ChaCha8Rng::seed_from_u64(
            net.seed() ^ ((me as u64) << 32) ^ peer as u64 ^ net.connections(),
        );
        Self {
            inner,
            net,
            link,
            me,
            latency,
            rng,
            arriving: VecDeque::new(),
            held: 0,
            last_due: None,
            timer: None,
            eof: false,
            scratch: vec![0u8; READ_CHUNK],
        }
    }

    fn check_cut(&self) -> io::Result<()> {
        if self.link.cut.load(Ordering::Relaxed) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "link cut by the simulated network",
            ))
        } else {
            Ok(())
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FaultStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.link.waker.register(cx.waker());
        this.check_cut()?;
        // Take everything the wire has now, stamped with when it is due.
        while !this.eof && this.held < MAX_IN_FLIGHT {
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.scratch) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(n)) => {
                    let chunk = this.scratch[..n].to_vec();
                    let model = this.net.model();
                    let mut due = Instant::now() + this.latency;
                    if model.loss > 0.0 && this.rng.gen::<f64>() < model.loss {
                        due += model.rto;
                    }
                    // In order: never before what came earlier.
                    if let Some(last) = this.last_due {
                        due = due.max(last);
                    }
                    this.last_due = Some(due);
                    this.held += n;
                    this.arriving.push_back((due, chunk, 0));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let Some((due, chunk, offset)) = this.arriving.front_mut() else {
                return if this.eof {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            if *due <= Instant::now() {
                let n = (chunk.len() - *offset).min(buf.len());
                buf[..n].copy_from_slice(&chunk[*offset..*offset + n]);
                *offset += n;
                if *offset == chunk.len() {
                    this.arriving.pop_front();
                }
                this.held -= n;
                this.timer = None;
                return Poll::Ready(Ok(n));
            }
            let due = *due;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FaultStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_cut()?;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.net.count_bytes(this.me, n);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_cut()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

//! A request-response codec of raw bytes: a frame is everything up to the
//! end of the stream, as meshchat's own codecs read it, so a test can put
//! any bytes on a node's protocol and a bench can move the same bytes
//! without meshchat's framing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use meshchat_node::protocol::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

/// Raw bytes both ways; a frame over its limit is an error (as the node's
/// codec treats it). `Default` takes the direct protocol's limits.
#[derive(Debug, Clone, Copy)]
pub struct RawCodec {
    /// Largest request read.
    pub request_limit: usize,
    /// Largest response read.
    pub response_limit: usize,
}

impl Default for RawCodec {
    fn default() -> Self {
        Self {
            request_limit: MAX_REQUEST_BYTES,
            response_limit: MAX_RESPONSE_BYTES,
        }
    }
}

impl RawCodec {
    /// A codec reading up to `limit` bytes each way.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            request_limit: limit,
            response_limit: limit,
        }
    }
}

/// Reads to the end of the stream, failing past `limit` bytes.
pub async fn read_to_end_bounded<T: AsyncRead + Unpin>(
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

/// Writes `bytes` and closes the stream (the end marks the frame's end).
pub async fn write_and_close<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
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
        read_to_end_bounded(io, self.request_limit).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_to_end_bounded(io, self.response_limit).await
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

//! Bounded framing for meshchat's request-response protocols: read at most the limit, decode
//! with a version check, and hand undecodable frames to the handler as a
//! refusal to answer (never a panic, never a silent drop).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// An inbound request as the handler sees it: decoded, or the reason it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<R> {
    /// A well-formed request.
    Request(R),
    /// A frame that could not be used; answer with [`Response::Error`].
    Refused(WireError),
}

/// The wire version this node speaks inside every protocol: the first byte
/// of each frame.
pub const WIRE_VERSION: u8 = 1;

/// Why a request was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame's wire version is not one this node speaks.
    #[error("unsupported wire version {got} (this node speaks {supported})")]
    UnsupportedVersion {
        /// Version received.
        got: u8,
        /// Version spoken here.
        supported: u8,
    },
    /// The frame could not be decoded.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame is larger than the limit.
    #[error("frame larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The requester is not a member of the chat it asked about.
    #[error("not a member of that chat")]
    NotMember,
    /// The answerer holds no such sender key.
    #[error("unknown sender key")]
    UnknownKey,
    /// The receiver could not store the changes (disk full, I/O error): retry later.
    #[error("receiver storage unavailable: {0}")]
    Storage(String),
}

/// Encodes a value as a frame: version byte, then CBOR.
pub fn encode_frame<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a frame produced by [`encode_frame`].
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| WireError::Malformed("empty frame".into()))?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion {
            got: version,
            supported: WIRE_VERSION,
        });
    }
    ciborium::from_reader(body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads the whole stream, but never more than `limit` bytes.
pub(crate) async fn read_bounded<T: AsyncRead + Unpin>(
    io: &mut T,
    limit: usize,
) -> io::Result<Result<Vec<u8>, WireError>> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Ok(Err(WireError::TooLarge {
            limit: limit as u64,
        }));
    }
    Ok(Ok(buf))
}

pub(crate) async fn write_frame<T: AsyncWrite + Unpin>(
    io: &mut T,
    frame: &[u8],
    limit: usize,
) -> io::Result<()> {
    if frame.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the {limit}-byte limit",
                frame.len()
            ),
        ));
    }
    io.write_all(frame).await?;
    io.close().await
}

/// Implements the request-response codec for a protocol's request and
/// response types with its frame limits.
macro_rules! frame_codec {
    ($codec:ty, $request:ty, $response:ty, $max_request:expr, $max_response:expr) => {
        impl ::libp2p::request_response::Codec for $codec {
            type Protocol = ::libp2p::StreamProtocol;
            type Request = $crate::framing::Inbound<$request>;
            type Response = $response;

            async fn read_request<T>(
                &mut self,
                _: &::libp2p::StreamProtocol,
                io: &mut T,
            ) -> ::std::io::Result<$crate::framing::Inbound<$request>>
            where
                T: ::futures::AsyncRead + Unpin + Send,
            {
                Ok(
                    match $crate::framing::read_bounded(io, $max_request).await? {
                        Ok(bytes) => match $crate::framing::decode_frame(&bytes) {
                            Ok(request) => $crate::framing::Inbound::Request(request),
                            Err(e) => $crate::framing::Inbound::Refused(e),
                        },
                        Err(e) => $crate::framing::Inbound::Refused(e),
                    },
                )
            }

            async fn read_response<T>(
                &mut self,
                _: &::libp2p::StreamProtocol,
                io: &mut T,
            ) -> ::std::io::Result<$response>
            where
                T: ::futures::AsyncRead + Unpin + Send,
            {
                let bytes = $crate::framing::read_bounded(io, $max_response)
                    .await?
                    .map_err(|e| ::std::io::Error::new(::std::io::ErrorKind::InvalidData, e))?;
                $crate::framing::decode_frame(&bytes)
                    .map_err(|e| ::std::io::Error::new(::std::io::ErrorKind::InvalidData, e))
            }

            async fn write_request<T>(
                &mut self,
                _: &::libp2p::StreamProtocol,
                io: &mut T,
                req: $crate::framing::Inbound<$request>,
            ) -> ::std::io::Result<()>
            where
                T: ::futures::AsyncWrite + Unpin + Send,
            {
                match req {
                    $crate::framing::Inbound::Request(request) => {
                        $crate::framing::write_frame(
                            io,
                            &$crate::framing::encode_frame(&request),
                            $max_request,
                        )
                        .await
                    }
                    $crate::framing::Inbound::Refused(_) => Err(::std::io::Error::new(
                        ::std::io::ErrorKind::InvalidInput,
                        "a refusal is not a request",
                    )),
                }
            }

            async fn write_response<T>(
                &mut self,
                _: &::libp2p::StreamProtocol,
                io: &mut T,
                res: $response,
            ) -> ::std::io::Result<()>
            where
                T: ::futures::AsyncWrite + Unpin + Send,
            {
                $crate::framing::write_frame(
                    io,
                    &$crate::framing::encode_frame(&res),
                    $max_response,
                )
                .await
            }
        }
    };
}

pub(crate) use frame_codec;

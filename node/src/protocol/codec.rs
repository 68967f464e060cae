//! Bounded framing for meshchat's request-response protocols: read at most the limit, decode
//! with a version check, and hand undecodable frames to the handler as a
//! refusal to answer (never a panic, never a silent drop).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use serde::{de::DeserializeOwned, Serialize};

use super::{
    mailbox::{
        MailboxRequest, MailboxResponse, MAILBOX_MAX_REQUEST_BYTES, MAILBOX_MAX_RESPONSE_BYTES,
    },
    notice::{Notice, NoticeResponse, MAX_NOTICE_BYTES},
    wire::{Request, Response, WireError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, WIRE_VERSION},
};

/// An inbound request as the handler sees it: decoded, or the reason it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<R = Request> {
    /// A well-formed request.
    Request(R),
    /// A frame that could not be used; answer with [`Response::Error`].
    Refused(WireError),
}

/// The codec of `/meshchat/sync/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCodec;

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
async fn read_bounded<T: AsyncRead + Unpin>(
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

async fn write_frame<T: AsyncWrite + Unpin>(
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
        impl request_response::Codec for $codec {
            type Protocol = StreamProtocol;
            type Request = Inbound<$request>;
            type Response = $response;

            async fn read_request<T>(
                &mut self,
                _: &StreamProtocol,
                io: &mut T,
            ) -> io::Result<Inbound<$request>>
            where
                T: AsyncRead + Unpin + Send,
            {
                Ok(match read_bounded(io, $max_request).await? {
                    Ok(bytes) => match decode_frame(&bytes) {
                        Ok(request) => Inbound::Request(request),
                        Err(e) => Inbound::Refused(e),
                    },
                    Err(e) => Inbound::Refused(e),
                })
            }

            async fn read_response<T>(
                &mut self,
                _: &StreamProtocol,
                io: &mut T,
            ) -> io::Result<$response>
            where
                T: AsyncRead + Unpin + Send,
            {
                let bytes = read_bounded(io, $max_response)
                    .await?
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                decode_frame(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }

            async fn write_request<T>(
                &mut self,
                _: &StreamProtocol,
                io: &mut T,
                req: Inbound<$request>,
            ) -> io::Result<()>
            where
                T: AsyncWrite + Unpin + Send,
            {
                match req {
                    Inbound::Request(request) => {
                        write_frame(io, &encode_frame(&request), $max_request).await
                    }
                    Inbound::Refused(_) => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a refusal is not a request",
                    )),
                }
            }

            async fn write_response<T>(
                &mut self,
                _: &StreamProtocol,
                io: &mut T,
                res: $response,
            ) -> io::Result<()>
            where
                T: AsyncWrite + Unpin + Send,
            {
                write_frame(io, &encode_frame(&res), $max_response).await
            }
        }
    };
}

frame_codec!(
    SyncCodec,
    Request,
    Response,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES
);

/// The codec of `/meshchat/notice/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoticeCodec;

frame_codec!(
    NoticeCodec,
    Notice,
    NoticeResponse,
    MAX_NOTICE_BYTES,
    MAX_NOTICE_BYTES
);

/// The codec of `/meshchat/mailbox/2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailboxCodec;

frame_codec!(
    MailboxCodec,
    MailboxRequest,
    MailboxResponse,
    MAILBOX_MAX_REQUEST_BYTES,
    MAILBOX_MAX_RESPONSE_BYTES
);

#[cfg(test)]
mod tests {
    use meshchat_crdt::ChatId;

    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let req = Request::Sync {
            chat: ChatId::from_bytes([3; 32]),
            heads: vec![],
        };
        let frame = encode_frame(&req);
        assert_eq!(decode_frame::<Request>(&frame), Ok(req));
        assert!(matches!(
            decode_frame::<Request>(&[]),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            decode_frame::<Request>(&[9, 1, 2]),
            Err(WireError::UnsupportedVersion {
                got: 9,
                supported: 1
            })
        );
        assert!(matches!(
            decode_frame::<Request>(&[1, 0xff, 0x00, 0x13]),
            Err(WireError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn oversize_frames_are_refused() {
        let big = vec![0u8; MAX_REQUEST_BYTES + 10];
        let mut reader = futures::io::Cursor::new(big);
        let mut codec = SyncCodec;
        let got = request_response::Codec::read_request(
            &mut codec,
            &super::super::wire::SYNC_PROTOCOL,
            &mut reader,
        )
        .await
        .unwrap();
        assert_eq!(
            got,
            Inbound::Refused(WireError::TooLarge {
                limit: MAX_REQUEST_BYTES as u64
            })
        );
    }
}

//! The client side of the control API, used by the CLI and tests.

use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LinesCodec};

use super::wire::{ControlError, ControlRequest, RequestLine, ResponseLine, MAX_LINE_BYTES};
use crate::api::Event;

/// A control API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No daemon listens on the data directory's socket.
    #[error("no daemon is running for {0}: start it with `meshchat daemon`")]
    NoDaemon(PathBuf),
    /// The daemon answered with an error.
    #[error(transparent)]
    Remote(#[from] ControlError),
    /// The connection failed or the answer was not understood.
    #[error("control connection: {0}")]
    Protocol(String),
}

/// One connection to a daemon's control socket.
pub struct ControlClient {
    framed: Framed<UnixStream, LinesCodec>,
    next_id: u64,
}

impl ControlClient {
    /// Connects to the socket of the daemon running on `data_dir`.
    pub async fn connect(data_dir: &Path, socket: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|_| ClientError::NoDaemon(data_dir.to_path_buf()))?;
        Ok(Self {
            framed: Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES * 16)),
            next_id: 1,
        })
    }

    /// Sends a request and returns its raw JSON result.
    pub async fn call_raw(
        &mut self,
        request: ControlRequest,
    ) -> Result<serde_json::Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&RequestLine { id, request })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.framed
            .send(line)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let reply = self
            .framed
            .next()
            .await
            .ok_or_else(|| ClientError::Protocol("daemon closed the connection".into()))?
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let reply: ResponseLine =
            serde_json::from_str(&reply).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Some(error) = reply.error {
            return Err(error.into());
        }
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    }

    /// Sends a request and decodes its result.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        request: ControlRequest,
    ) -> Result<T, ClientError> {
        let value = self.call_raw(request).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Turns the connection into an event stream.
    pub async fn watch(mut self) -> Result<EventStream, ClientError> {
        self.call_raw(ControlRequest::Watch).await?;
        Ok(EventStream {
            framed: self.framed,
        })
    }
}

/// Events from [`ControlClient::watch`].
pub struct EventStream {
    framed: Framed<UnixStream, LinesCodec>,
}

/// One item of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// An event.
    Event(Event),
    /// The stream fell behind and this many events were skipped.
    Lagged(u64),
}

impl EventStream {
    /// The next event, or `None` when the daemon stops.
    pub async fn next(&mut self) -> Option<Result<WatchItem, ClientError>> {
        let line = match self.framed.next().await? {
            Ok(line) => line,
            Err(e) => return Some(Err(ClientError::Protocol(e.to_string()))),
        };
        #[derive(serde::Deserialize)]
        struct Line {
            event: Option<Event>,
            lagged: Option<u64>,
        }
        Some(match serde_json::from_str::<Line>(&line) {
            Ok(Line { event: Some(e), .. }) => Ok(WatchItem::Event(e)),
            Ok(Line {
                lagged: Some(n), ..
            }) => Ok(WatchItem::Lagged(n)),
            Ok(_) => Err(ClientError::Protocol(format!("unexpected line: {line}"))),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        })
    }
}

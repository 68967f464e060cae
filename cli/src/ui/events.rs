//! `GET /api/events`: the node's events as server-sent events, one JSON
//! object per `data:` line as `watch` sends them (`{"event": …}`), or
//! `{"lagged": N}` when this client fell behind and should re-read.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{stream, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::routes::AppState;

pub(crate) async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = state.node.subscribe();
    let items = stream::unfold(events, |mut events| async move {
        let line = match events.recv().await {
            Ok(event) => serde_json::json!({ "event": event }),
            Err(RecvError::Lagged(missed)) => serde_json::json!({ "lagged": missed }),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().data(line.to_string())), events))
    });
    // Open streams end with the daemon, so a graceful shutdown does not wait on them.
    let cancel = state.cancel.clone();
    let items = items.take_until(async move { cancel.cancelled().await });
    Sse::new(items).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

//! `GET /api/events`: the node's events as server-sent events, one JSON
//! object per `data:` line as `watch` sends them (`{"event": …}`), or
//! `{"lagged": N}` when this client fell behind and should re-read.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{stream, Stream, StreamExt};
use meshchat_node::Event;
use tokio::sync::broadcast::{self, error::RecvError};

use super::state::AppState;

pub(crate) async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let items =
        lines(state.node.subscribe()).map(|line| Ok(SseEvent::default().data(line.to_string())));
    // Open streams end with the daemon, so a graceful shutdown does not wait on them.
    let cancel = state.cancel.clone();
    let items = items.take_until(async move { cancel.cancelled().await });
    Sse::new(items).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The lines a client reads: each event, or how many it missed.
fn lines(events: broadcast::Receiver<Event>) -> impl Stream<Item = serde_json::Value> {
    stream::unfold(events, |mut events| async move {
        let line = match events.recv().await {
            Ok(event) => serde_json::json!({ "event": event }),
            Err(RecvError::Lagged(missed)) => serde_json::json!({ "lagged": missed }),
            Err(RecvError::Closed) => return None,
        };
        Some((line, events))
    })
}

#[cfg(test)]
mod tests {
    use meshchat_node::PeerId;

    use super::*;

    #[tokio::test]
    async fn a_client_that_fell_behind_is_told_how_much_it_missed() {
        let (tx, rx) = broadcast::channel(2);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for peer in &peers {
            tx.send(Event::PeerConnected { peer: *peer }).unwrap();
        }
        drop(tx);
        let lines: Vec<_> = lines(rx).collect().await;
        assert_eq!(lines[0], serde_json::json!({ "lagged": 3 }));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["event"]["type"], "peer_connected");
        assert_eq!(lines[2]["event"]["peer"], peers[4].to_string());
    }
}

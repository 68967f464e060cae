//! The daemon side of the control API: a Unix socket, mode 0600, in a
//! directory of mode 0700 inside the data directory. Only the user who owns
//! the directory can connect.

use std::{
    fs::DirBuilder,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use futures::{SinkExt, StreamExt};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};

use super::{
    calls::call,
    wire::{ControlError, ControlRequest, RequestLine, ResponseLine, MAX_LINE_BYTES},
};
use crate::api::Node;

/// Concurrent control connections.
const MAX_CONNECTIONS: usize = 32;

/// Binds the control socket at `path` (replacing a stale one) with mode 0600.
///
/// The socket is created inside `path`'s parent, which is made (or checked
/// to be) a directory of this user's with mode 0700 first: `bind` creates the
/// socket with the process's umask and it can only be chmod'ed afterwards, so
/// only a private directory closes that window on other users.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    if path.symlink_metadata().is_ok() {
        // The caller holds the data directory lock, so no live daemon owns it.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Makes `dir` a directory only this user can enter: created with mode
/// 0700, or an existing one of this user's set to 0700. Refuses a symlink or
/// a directory another user owns.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = dir.symlink_metadata()?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of yours; remove it and start again",
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Serves control connections until `cancel` fires or a client asks for shutdown.
pub async fn serve(listener: UnixListener, node: Node, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "control accept failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("too many control connections; refusing one");
            continue;
        };
        let node = node.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handle(stream, node, cancel.clone()) => {}
            }
        });
    }
}

async fn handle(stream: UnixStream, node: Node, cancel: CancellationToken) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    while let Some(line) = framed.next().await {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let _ = send(
                    &mut framed,
                    error_line(0, ControlError::new("bad_request", error.to_string())),
                )
                .await;
                return;
            }
        };
        let request: RequestLine = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(error) => {
                let reply = error_line(0, ControlError::new("bad_request", error.to_string()));
                if send(&mut framed, reply).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match request.request {
            ControlRequest::Watch => {
                let ok = ResponseLine {
                    id: request.id,
                    result: Some(serde_json::Value::Null),
                    error: None,
                };
                if send(&mut framed, ok).await.is_err() {
                    return;
                }
                watch(framed, node).await;
                return;
            }
            ControlRequest::Shutdown => {
                let ok = ResponseLine {
                    id: request.id,
                    result: Some(serde_json::Value::Null),
                    error: None,
                };
                let _ = send(&mut framed, ok).await;
                cancel.cancel();
                return;
            }
            other => {
                let reply = match call(&node, other).await {
                    Ok(result) => ResponseLine {
                        id: request.id,
                        result: Some(result),
                        error: None,
                    },
                    Err(e) => error_line(request.id, e),
                };
                if send(&mut framed, reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn error_line(id: u64, error: ControlError) -> ResponseLine {
    ResponseLine {
        id,
        result: None,
        error: Some(error),
    }
}

async fn send(
    framed: &mut Framed<UnixStream, LinesCodec>,
    line: impl serde::Serialize,
) -> Result<(), ()> {
    let text = serde_json::to_string(&line).map_err(|_| ())?;
    framed.send(text).await.map_err(|_| ())
}

async fn watch(mut framed: Framed<UnixStream, LinesCodec>, node: Node) {
    let mut events = node.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if send(&mut framed, serde_json::json!({ "event": event }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                if send(&mut framed, serde_json::json!({ "lagged": missed }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_socket_is_private_and_bound_inside_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        // A data directory others may enter (allowed: it is not writable).
        let root = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let dir = crate::DataDir::new(&root);
        let socket = dir.socket_path();
        let _listener = bind(&socket).unwrap();
        assert_eq!(mode_of(&socket), 0o600);
        // Bound where nobody else can reach it, whatever the umask made of
        // the socket before the chmod.
        let parent = socket.parent().unwrap();
        assert_ne!(parent, root.as_path());
        assert_eq!(mode_of(parent), 0o700);
        for ancestor in socket.ancestors().skip(1) {
            if ancestor == root {
                break;
            }
            assert_eq!(mode_of(ancestor), 0o700, "{}", ancestor.display());
        }
    }

    #[tokio::test]
    async fn a_loosened_socket_directory_is_tightened_and_a_stale_socket_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("run/control.sock");
        drop(bind(&socket).unwrap());
        fs::set_permissions(socket.parent().unwrap(), fs::Permissions::from_mode(0o777)).unwrap();
        let _listener = bind(&socket).unwrap();
        assert_eq!(mode_of(socket.parent().unwrap()), 0o700);
        assert_eq!(mode_of(&socket), 0o600);
        tokio::net::UnixStream::connect(&socket).await.unwrap();
    }
}

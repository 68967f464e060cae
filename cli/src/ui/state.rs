//! What the app's handlers share (`routes.rs`, `events.rs`).

use std::{path::PathBuf, sync::Arc};

use meshchat_node::Node;
use tokio_util::sync::CancellationToken;

use super::auth::Auth;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Node,
    pub(crate) auth: Arc<Auth>,
    pub(crate) cancel: CancellationToken,
    /// Uploads and downloads pass through here (inside the private `run/`).
    pub(crate) files_dir: PathBuf,
    /// The largest upload (`blobs.max_file_bytes`).
    pub(crate) max_upload: u64,
}

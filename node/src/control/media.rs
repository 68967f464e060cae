//! The control API's media calls (`send_file`, `fetch_file`, `share`,
//! `fetch_ticket`, `auto_download`), kept apart from the other calls.

use super::{
    resolve::resolve_message,
    wire::{to_json, ControlError, ControlRequest},
};
use crate::{api::Node, blobs::SaveOptions};

/// Answers one media call.
pub(super) async fn call(
    node: &Node,
    request: ControlRequest,
) -> Result<serde_json::Value, ControlError> {
    match request {
        ControlRequest::SendFile { to, path, caption } => {
            let chat = node.resolve(to).await?;
            to_json(
                node.send_file(chat, path, caption.unwrap_or_default())
                    .await?,
            )
        }
        ControlRequest::FetchFile {
            chat,
            message,
            out,
            overwrite,
            allow_hidden,
        } => {
            let chat = node.resolve(chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            let save = SaveOptions {
                overwrite,
                allow_hidden,
            };
            to_json(node.fetch_file_with(chat, message, out, save).await?)
        }
        ControlRequest::Share { path } => {
            to_json(serde_json::json!({ "ticket": node.share(path).await? }))
        }
        ControlRequest::FetchTicket {
            ticket,
            out,
            overwrite,
            allow_hidden,
        } => {
            let save = SaveOptions {
                overwrite,
                allow_hidden,
            };
            to_json(node.fetch_ticket_with(&ticket, out, save).await?)
        }
        ControlRequest::AutoDownload { set } => {
            if let Some(policy) = set {
                node.set_auto_download(policy);
            }
            to_json(node.auto_download())
        }
        _ => Err(ControlError::new("bad_request", "not a media call")),
    }
}

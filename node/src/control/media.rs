//! The control API's media calls (`send_file`, `fetch_file`, `share`,
//! `fetch_ticket`, `auto_download`), kept apart from the other calls.

use super::SaveOptions;
use crate::{
    api::Node,
    control::{server::resolve_message, ControlError, ControlRequest},
};

fn to_json<T: serde::Serialize>(value: T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new("internal", e.to_string()))
}

/// Answers one media call.
pub(crate) async fn call(
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

//! The control API's media calls (`files_*`: `node.files()`), kept apart
//! from the other calls.

use super::{
    resolve::{resolve_chat, resolve_message},
    wire::{to_json, ControlError, ControlRequest},
};
use crate::{api::Node, media::SaveOptions};

/// Answers one media call.
pub(super) async fn call(
    node: &Node,
    request: ControlRequest,
) -> Result<serde_json::Value, ControlError> {
    let files = node.files();
    match request {
        ControlRequest::FilesSend { to, path, caption } => {
            let chat = resolve_chat(node, to).await?;
            to_json(files.send(chat, path, caption.unwrap_or_default()).await?)
        }
        ControlRequest::FilesFetch {
            chat,
            message,
            out,
            overwrite,
            allow_hidden,
        } => {
            let chat = resolve_chat(node, chat).await?;
            let message = resolve_message(node, chat, &message).await?;
            let save = SaveOptions {
                overwrite,
                allow_hidden,
            };
            to_json(files.fetch_with(chat, message, out, save).await?)
        }
        ControlRequest::FilesShare { path } => {
            to_json(serde_json::json!({ "ticket": files.share(path).await? }))
        }
        ControlRequest::FilesFetchTicket {
            ticket,
            out,
            overwrite,
            allow_hidden,
        } => {
            let save = SaveOptions {
                overwrite,
                allow_hidden,
            };
            to_json(files.fetch_ticket_with(&ticket, out, save).await?)
        }
        ControlRequest::FilesAutoDownload => to_json(files.auto_download()),
        ControlRequest::FilesSetAutoDownload { set } => {
            files.set_auto_download(set);
            to_json(files.auto_download())
        }
        _ => Err(ControlError::new("bad_request", "not a media call")),
    }
}

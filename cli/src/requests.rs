//! `meshchat requests`: messages from strangers and group invitations from
//! people who are not contacts, waiting for the user to accept or delete them.

use anyhow::Result;
use clap::Subcommand;
use meshchat_node::{control::ControlRequest, peer_id_of, DataDir, RequestSummary};

use crate::{
    client::{connect, print_json},
    format::say,
};

#[derive(Debug, Subcommand)]
pub(crate) enum RequestsCommand {
    /// List the requests (the default).
    List,
    /// Accept a request: the chat appears in `chats` with what was sent.
    Accept {
        /// The request's chat id (a prefix is enough) or the sender's PeerId.
        request: String,
    },
    /// Delete a request.
    Delete {
        /// The request's chat id (a prefix is enough) or the sender's PeerId.
        request: String,
        /// Also block the sender.
        #[arg(long)]
        block: bool,
    },
}

pub(crate) async fn run(dir: &DataDir, command: Option<RequestsCommand>, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    match command.unwrap_or(RequestsCommand::List) {
        RequestsCommand::List => {
            let requests: Vec<RequestSummary> =
                client.call(ControlRequest::ContactsRequests).await?;
            if json {
                for request in &requests {
                    print_json(request)?;
                }
                return Ok(());
            }
            if requests.is_empty() {
                say!("No message requests.");
            }
            for request in requests {
                let short = &request.chat.to_string()[..8];
                let from = peer_id_of(&request.from)
                    .map_or_else(|| request.from.to_string(), |p| p.to_string());
                match &request.group {
                    Some(name) => say!("{short}  {from} added you to the group \"{}\"", name),
                    None => say!(
                        "{short}  {from} wrote {} message(s)",
                        request.messages.len()
                    ),
                }
                for message in request.messages.iter().rev().take(3).rev() {
                    say!("          {}", message.text);
                }
            }
            say!("");
            say!("Accept with `meshchat requests accept ID`, delete with `meshchat requests delete ID [--block]`.");
        }
        RequestsCommand::Accept { request } => {
            let done: serde_json::Value = client
                .call(ControlRequest::ContactsAcceptRequest { chat: request })
                .await?;
            if json {
                print_json(&done)?;
            } else {
                say!("Accepted: the chat is in `meshchat chats` now.");
            }
        }
        RequestsCommand::Delete { request, block } => {
            let done: serde_json::Value = client
                .call(ControlRequest::ContactsDeleteRequest {
                    chat: request,
                    block,
                })
                .await?;
            if json {
                print_json(&done)?;
            } else if block {
                say!("Deleted, and the sender is blocked.");
            } else {
                say!("Deleted.");
            }
        }
    }
    Ok(())
}

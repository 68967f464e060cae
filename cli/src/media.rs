//! Media commands: `send-file`, `fetch`, `share`, `fetch-ticket`, with a
//! progress bar drawn from the daemon's `file` events.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, Result};
use clap::Subcommand;
use meshchat_node::{
    blobs::{Fetched, FileStatus, TicketFiles},
    control::{ControlRequest, WatchItem},
    DataDir, Event, Sent,
};

use crate::{
    client::{connect, print_json},
    format::{say, say_err},
};

/// The media subcommands (flattened into the top level).
#[derive(Debug, Subcommand)]
pub(crate) enum MediaCommand {
    /// Send a file (photo, video, anything up to the size limit) into a chat.
    SendFile {
        /// Who or where: a PeerId, a contact name, a group name or a chat id.
        to: String,
        /// The file.
        path: PathBuf,
        /// Text shown with the file.
        #[arg(long)]
        caption: Option<String>,
    },
    /// Download a message's file (verified; resumes where it stopped).
    Fetch {
        /// The chat.
        chat: String,
        /// The message (id or short id).
        message: String,
        /// Where to write it: a file, or a folder to write it into by name
        /// (default: the current folder).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Share a file outside chats: prints an iroh-blobs ticket anyone can download.
    Share {
        /// The file.
        path: PathBuf,
    },
    /// Download any iroh-blobs ticket into a folder.
    FetchTicket {
        /// The ticket (`blob…`).
        ticket: String,
        /// The folder to write into (default: the current folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path).with_context(|| format!("{}", path.display()))
}

/// Runs one media command.
pub(crate) async fn run(dir: &DataDir, command: MediaCommand, json: bool) -> Result<()> {
    match command {
        MediaCommand::SendFile { to, path, caption } => {
            let path = absolute(path)?;
            let mut client = connect(dir).await?;
            let sent: Sent = client
                .call(ControlRequest::SendFile { to, path, caption })
                .await?;
            if json {
                return print_json(&sent);
            }
            match &sent.message.attachment {
                Some(a) => say!(
                    "{}  {} ({}, {})",
                    sent.message.id,
                    a.name,
                    human_bytes(a.size),
                    a.mime
                ),
                None => say!("{}", sent.message.id),
            }
            Ok(())
        }
        MediaCommand::Fetch { chat, message, out } => {
            let out = absolute(out.unwrap_or_else(|| PathBuf::from(".")))?;
            let progress = progress_bar(dir, json).await?;
            let mut client = connect(dir).await?;
            let result = client
                .call::<Fetched>(ControlRequest::FetchFile {
                    chat,
                    message,
                    out: Some(out),
                })
                .await;
            finish(progress);
            let fetched = result.map_err(|e| {
                anyhow::anyhow!("{e}\nThe bytes already received are kept: run the same command again to resume.")
            })?;
            if json {
                return print_json(&fetched);
            }
            let path = fetched
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            say!("{path}  ({}, verified)", human_bytes(fetched.size));
            Ok(())
        }
        MediaCommand::Share { path } => {
            let path = absolute(path)?;
            let mut client = connect(dir).await?;
            let answer: serde_json::Value = client.call(ControlRequest::Share { path }).await?;
            if json {
                return print_json(&answer);
            }
            let ticket = answer["ticket"].as_str().unwrap_or_default();
            say!("{ticket}");
            say_err!("Anyone with this ticket can download the file from this node while it runs.");
            Ok(())
        }
        MediaCommand::FetchTicket { ticket, out } => {
            let out = absolute(out.unwrap_or_else(|| PathBuf::from(".")))?;
            let progress = progress_bar(dir, json).await?;
            let mut client = connect(dir).await?;
            let result = client
                .call::<TicketFiles>(ControlRequest::FetchTicket { ticket, out })
                .await;
            finish(progress);
            let files = result?;
            if json {
                return print_json(&files);
            }
            for (path, size) in files.files {
                say!("{}  ({})", path.display(), human_bytes(size));
            }
            Ok(())
        }
    }
}

/// Draws a progress bar on stderr from the daemon's `file` events, when
/// stderr is a terminal and output is for people.
async fn progress_bar(dir: &DataDir, json: bool) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if json || !std::io::stderr().is_terminal() {
        return Ok(None);
    }
    let mut events = connect(dir).await?.watch().await?;
    Ok(Some(tokio::spawn(async move {
        while let Some(Ok(item)) = events.next().await {
            let WatchItem::Event(Event::File { status, .. }) = item else {
                continue;
            };
            let line = match status {
                FileStatus::Progress { done, total } if total > 0 => {
                    let width = 30;
                    let filled = (done.min(total) * width / total) as usize;
                    format!(
                        "[{}{}] {:>3}%  {} / {}",
                        "#".repeat(filled),
                        " ".repeat(width as usize - filled),
                        done.min(total) * 100 / total,
                        human_bytes(done),
                        human_bytes(total)
                    )
                }
                FileStatus::Progress { done, .. } => format!("{} received", human_bytes(done)),
                FileStatus::Trying { source, stored } if stored > 0 => {
                    format!("resuming from {} at {source}", human_bytes(stored))
                }
                FileStatus::SourceFailed { source } => format!("{source} could not provide it"),
                _ => continue,
            };
            let mut err = std::io::stderr();
            // Our own escape clears the line; the text itself is neutralised.
            let _ = write!(err, "\r\x1b[2K{}", crate::format::terminal_safe(&line));
            let _ = err.flush();
        }
    })))
}

fn finish(progress: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = progress {
        task.abort();
        eprintln!();
    }
}

/// A `file` event for people.
pub(crate) fn describe_status(hash: &meshchat_node::crdt::BlobHash, status: &FileStatus) -> String {
    let short = &hash.to_string()[..12];
    match status {
        FileStatus::Trying { source, stored } if *stored > 0 => {
            format!(
                "file {short}: resuming at {} from {source}",
                human_bytes(*stored)
            )
        }
        FileStatus::Trying { source, .. } => format!("file {short}: asking {source}"),
        FileStatus::SourceFailed { source } => {
            format!("file {short}: {source} could not provide it")
        }
        FileStatus::Progress { done, total } => {
            format!(
                "file {short}: {} of {}",
                human_bytes(*done),
                human_bytes(*total)
            )
        }
        FileStatus::Ready { size } => {
            format!("file {short}: complete ({}, verified)", human_bytes(*size))
        }
        FileStatus::Cached {
            relay, recipient, ..
        } => {
            format!("file {short}: relay {relay} holds it for {recipient}")
        }
        FileStatus::Failed { reason } => format!("file {short}: {reason}"),
        other => format!("file {short}: {other:?}"),
    }
}

/// A file in a history line: `📎 cat.png (1.2 MiB, image/png) caption`.
pub(crate) fn attachment_line(a: &meshchat_node::crdt::Attachment, caption: &str) -> String {
    let line = format!("📎 {} ({}, {})", a.name, human_bytes(a.size), a.mime);
    if caption.is_empty() {
        line
    } else {
        format!("{line} {caption}")
    }
}

/// Bytes for people: 1.5 MiB.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

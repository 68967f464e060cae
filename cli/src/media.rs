//! Media commands: `send-file`, `fetch`, `share`, `fetch-ticket`,
//! `auto-download`, with a progress bar drawn from the daemon's `file` events.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, Result};
use clap::Subcommand;
use meshchat_node::{
    control::{ClientError, ControlClient, ControlRequest, WatchItem},
    media::{AutoDownload, Fetched, FileStatus, TicketFiles},
    DataDir, Event, NodeConfig, Sent,
};

use crate::{
    client::{connect, print_json},
    format::{human_bytes, say, say_err, terminal_safe},
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
        /// Where to write it: a file, or a folder to write it into under
        /// its sender's name, made safe (default: your Downloads folder).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Replace a file that exists already.
        #[arg(long)]
        force: bool,
        /// Keep a leading dot in the sender's file name (a hidden file).
        #[arg(long)]
        allow_hidden: bool,
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
        /// The folder to write into (default: your Downloads folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace files that exist already.
        #[arg(long)]
        force: bool,
        /// Keep leading dots in the file names (hidden files).
        #[arg(long)]
        allow_hidden: bool,
    },
    /// Show or change which received files download by themselves (like a
    /// phone messenger's media auto-download). Strangers' files never do.
    AutoDownload {
        /// In direct chats with contacts.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        contacts: Option<bool>,
        /// In groups you created or a contact added you to.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        groups: Option<bool>,
        /// Largest file that downloads by itself, e.g. 16MiB (0: none).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Disk space auto-downloaded files may take in total, e.g. 2GiB.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        budget: Option<u64>,
        /// Of that, what one sender's files may take, e.g. 256MiB.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        per_sender: Option<u64>,
    },
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

/// A size for people: `1048576`, `512KiB`, `16MiB`, `1.5GiB` (also `16M`, `16MB`: powers of 1024).
fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 16MiB, got {value:?}"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    let bytes = number * scale as f64;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{value:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Where fetched files go when `--out` is not given.
fn download_dir(dir: &DataDir, out: Option<PathBuf>) -> Result<PathBuf> {
    let out = match out {
        Some(out) => out,
        None => {
            let downloads = meshchat_node::media::default_download_dir(dir.root());
            std::fs::create_dir_all(&downloads)
                .with_context(|| format!("creating {}", downloads.display()))?;
            downloads
        }
    };
    absolute(out)
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
                .call(ControlRequest::FilesSend { to, path, caption })
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
        MediaCommand::Fetch {
            chat,
            message,
            out,
            force,
            allow_hidden,
        } => {
            let out = download_dir(dir, out)?;
            let progress = progress_bar(dir, json).await?;
            let mut client = connect(dir).await?;
            let result = client
                .call::<Fetched>(ControlRequest::FilesFetch {
                    chat,
                    message,
                    out: Some(out),
                    overwrite: force,
                    allow_hidden,
                })
                .await;
            finish(progress);
            let fetched = result.map_err(|e| match e {
                ClientError::Remote(e) if e.code == "exists" => anyhow::anyhow!("{e}"),
                e => anyhow::anyhow!(
                    "{e}\nThe bytes already received are kept: run the same command again to resume."
                ),
            })?;
            if json {
                return print_json(&fetched);
            }
            let path = fetched
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            say!("Saved to {path}  ({}, verified)", human_bytes(fetched.size));
            if let Some(name) = fetched.renamed_from {
                say!("(the sender named it {name:?}; renamed to be safe)");
            }
            Ok(())
        }
        MediaCommand::Share { path } => {
            let path = absolute(path)?;
            let mut client = connect(dir).await?;
            let answer: serde_json::Value =
                client.call(ControlRequest::FilesShare { path }).await?;
            if json {
                return print_json(&answer);
            }
            let ticket = answer["ticket"].as_str().unwrap_or_default();
            say!("{ticket}");
            say_err!("Anyone with this ticket can download the file from this node while it runs.");
            Ok(())
        }
        MediaCommand::FetchTicket {
            ticket,
            out,
            force,
            allow_hidden,
        } => {
            let out = download_dir(dir, out)?;
            let progress = progress_bar(dir, json).await?;
            let mut client = connect(dir).await?;
            let result = client
                .call::<TicketFiles>(ControlRequest::FilesFetchTicket {
                    ticket,
                    out,
                    overwrite: force,
                    allow_hidden,
                })
                .await;
            finish(progress);
            let files = result?;
            if json {
                return print_json(&files);
            }
            for (path, size) in files.files {
                say!("Saved to {}  ({})", path.display(), human_bytes(size));
            }
            Ok(())
        }
        MediaCommand::AutoDownload {
            contacts,
            groups,
            max_size,
            budget,
            per_sender,
        } => {
            let change = |mut policy: AutoDownload| {
                policy.contacts = contacts.unwrap_or(policy.contacts);
                policy.groups = groups.unwrap_or(policy.groups);
                policy.max_bytes = max_size.unwrap_or(policy.max_bytes);
                policy.budget_bytes = budget.unwrap_or(policy.budget_bytes);
                policy.per_sender_bytes = per_sender.unwrap_or(policy.per_sender_bytes);
                policy
            };
            let changing = contacts.is_some()
                || groups.is_some()
                || max_size.is_some()
                || budget.is_some()
                || per_sender.is_some();
            let policy = auto_download(dir, changing.then_some(change)).await?;
            if json {
                return print_json(&policy);
            }
            print_auto_download(&policy);
            Ok(())
        }
    }
}

/// Reads the auto-download policy (from the daemon if it runs, else from
/// `config.toml`) and, with `change`, saves the changed one in
/// `config.toml` and applies it to the running daemon.
async fn auto_download(
    dir: &DataDir,
    change: Option<impl FnOnce(AutoDownload) -> AutoDownload>,
) -> Result<AutoDownload> {
    let mut client = match ControlClient::connect(dir.root(), &dir.socket_path()).await {
        Ok(client) => Some(client),
        Err(ClientError::NoDaemon(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let current = match client.as_mut() {
        Some(client) => {
            client
                .call::<AutoDownload>(ControlRequest::FilesAutoDownload)
                .await?
        }
        None => AutoDownload::from(&dir.config()?.blobs),
    };
    let Some(change) = change else {
        return Ok(current);
    };
    let policy = change(current);
    let path = dir.root().join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            NodeConfig::default().commented_toml()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let edited = meshchat_node::media::config::with_auto_download(&text, &policy);
    toml_check(&edited).with_context(|| {
        format!(
            "{} would not parse after the change; edit it by hand",
            path.display()
        )
    })?;
    std::fs::write(&path, edited).with_context(|| format!("writing {}", path.display()))?;
    match client.as_mut() {
        Some(client) => Ok(client
            .call::<AutoDownload>(ControlRequest::FilesSetAutoDownload { set: policy })
            .await?),
        None => Ok(policy),
    }
}

fn toml_check(text: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text)?;
    NodeConfig::load(&path)?;
    Ok(())
}

fn print_auto_download(policy: &AutoDownload) {
    let on = |b: bool| if b { "on" } else { "off" };
    say!("Received files download by themselves:");
    say!("  direct chats with contacts  {}", on(policy.contacts));
    say!("  groups                      {}", on(policy.groups));
    say!("  strangers                   never");
    if policy.max_bytes == 0 {
        say!("  up to                       (none: auto-download is off)");
    } else {
        say!(
            "  up to                       {} per file",
            human_bytes(policy.max_bytes)
        );
    }
    say!(
        "  disk budget                 {} in total, {} per sender",
        human_bytes(policy.budget_bytes),
        human_bytes(policy.per_sender_bytes)
    );
    say!("Other files wait for `meshchat fetch`. Saved in config.toml under [blobs].");
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
            let _ = write!(err, "\r\x1b[2K{}", terminal_safe(&line));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(on_off("on"), Ok(true));
        assert!(on_off("maybe").is_err());
    }
}

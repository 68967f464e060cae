//! `meshchat`: the peer daemon, the commands that talk to it, and the demo.

mod client;
mod daemon;
mod demo;
mod format;
mod group;
mod media;
mod relay;
mod requests;
mod social;
mod ui;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use meshchat_node::{control::ControlRequest, LastSeenPrivacy, Multiaddr};

/// A messenger with no central server: peers find each other over libp2p,
/// chats are Automerge documents that merge.
#[derive(Debug, Parser)]
#[command(name = "meshchat", version, propagate_version = true)]
struct Cli {
    /// Data directory (default: the platform's data dir, e.g. ~/.local/share/meshchat).
    #[arg(long, global = true, env = "MESHCHAT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON for scripts (one object per line for streams).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory with a new identity and a commented config.toml.
    Init {
        /// Your display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the peer daemon in the foreground (Ctrl-C or `meshchat stop` ends it).
    Daemon {
        /// Listen address (repeatable); replaces config.toml's `listen`.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Bootstrap peer (repeatable); added to config.toml's `bootstrap`.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<Multiaddr>,
        /// Relay that holds your mail while you are offline (repeatable; ends in /p2p/<RELAY>).
        #[arg(long = "relay", value_name = "MULTIADDR")]
        relays: Vec<Multiaddr>,
        /// Turn off mDNS discovery on the local network.
        #[arg(long)]
        no_mdns: bool,
        /// Serve the desktop app here (a loopback address; replaces config.toml's `ui_listen`).
        #[arg(long, value_name = "ADDR:PORT")]
        ui_listen: Option<std::net::SocketAddr>,
    },
    /// Open the desktop app (served by the running daemon) in your browser.
    Ui {
        /// Only print the link (it signs one browser in, once), e.g. for an SSH tunnel.
        #[arg(long)]
        print_url: bool,
    },
    /// Run a relay node: holds mail for offline peers (limits in relay.toml).
    Relay {
        /// Listen address (repeatable), e.g. /ip4/0.0.0.0/tcp/4701.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Publicly reachable address to advertise (repeatable).
        #[arg(long = "external-addr", value_name = "MULTIADDR")]
        external_addr: Vec<Multiaddr>,
        /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Print your PeerId and the addresses to give to others.
    Id,
    /// Show the daemon's state: peers, chats, undelivered messages.
    Status,
    /// Manage contacts: add (from an invite or a PeerId), list, remove, block.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Messages from strangers and group invitations from people who are not
    /// your contacts: list, accept or delete them.
    Requests {
        #[command(subcommand)]
        command: Option<requests::RequestsCommand>,
    },
    /// Your profile (name, status) and your contacts' profiles.
    #[command(subcommand)]
    Profile(social::ProfileCommand),
    /// Print an invite (a string and a QR code) others can add you with.
    Invite {
        /// Print only the string, no QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Whether a contact is online, or when it was last seen (every contact's without PEER).
    LastSeen {
        /// PeerId or contact name.
        peer: Option<String>,
    },
    /// Show or change who sees your online status and last seen.
    Privacy {
        /// everyone (contacts and group members), contacts, or nobody (then you see nobody's).
        #[arg(long, value_name = "WHO")]
        last_seen: Option<LastSeenPrivacy>,
    },
    /// Tell a chat you are typing (shown by the others' `watch` for a few seconds).
    Typing {
        /// The chat.
        chat: String,
    },
    /// Send a message.
    Send {
        /// Who or where: a PeerId, a contact name, a group name or a chat id.
        to: String,
        /// The message text.
        text: String,
        /// Reply to this message (its id or the short id `history` shows).
        #[arg(long, value_name = "MSG")]
        reply_to: Option<String>,
    },
    /// Edit one of your messages.
    Edit {
        /// The chat.
        chat: String,
        /// The message (id or short id).
        message: String,
        /// The new text.
        text: String,
    },
    /// Delete a message for everyone (yours, or any as a group admin).
    Delete {
        /// The chat.
        chat: String,
        /// The message (id or short id).
        message: String,
    },
    /// React to a message with an emoji (one reaction per person; --remove takes yours back).
    React {
        /// The chat.
        chat: String,
        /// The message (id or short id).
        message: String,
        /// The emoji.
        #[arg(required_unless_present = "remove")]
        emoji: Option<String>,
        /// Remove your reaction.
        #[arg(long)]
        remove: bool,
    },
    /// Show where one of your messages stands, per recipient (with relay custody).
    Info {
        /// The chat.
        chat: String,
        /// The message (id or short id).
        message: String,
    },
    /// Create and manage group chats.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Write a chat's Automerge documents (.automerge) and a readable transcript to DIR.
    Export {
        /// The chat.
        chat: String,
        /// Output directory (created if needed).
        dir: PathBuf,
    },
    /// List chats, most recent first.
    Chats,
    /// Show a chat's messages, oldest first.
    History {
        /// A PeerId, a contact name or a chat id.
        chat: String,
        /// Show only the newest N messages.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Stream events (messages, delivery receipts, peers) as they happen.
    Watch,
    #[command(flatten)]
    Media(media::MediaCommand),
    /// Stop the running daemon.
    Stop,
    /// A self-contained tour on loopback: two peers chat, one goes offline and catches up, then a group.
    Demo,
}

#[derive(Debug, Subcommand)]
enum ContactsCommand {
    /// Add (or update) a contact from an invite (`MC1:…`) or a PeerId.
    Add {
        /// Their invite string, or their PeerId.
        #[arg(value_name = "INVITE|PEER_ID")]
        peer: String,
        /// A name to call them by.
        #[arg(long)]
        name: Option<String>,
        /// An address to reach them at (repeatable), e.g. /ip4/192.0.2.7/tcp/4701.
        #[arg(long = "addr", value_name = "MULTIADDR")]
        addrs: Vec<Multiaddr>,
        /// A relay holding their mail while they are offline (repeatable; ends in /p2p/<RELAY>).
        #[arg(long = "relay", value_name = "MULTIADDR")]
        relays: Vec<Multiaddr>,
    },
    /// List contacts.
    List,
    /// Remove a contact (the chat history stays; a blocked one stays blocked).
    Remove {
        /// PeerId or contact name.
        peer: String,
    },
    /// Block someone: their messages, receipts and presence are dropped, and they get nothing from you.
    Block {
        /// PeerId or contact name.
        peer: String,
    },
    /// Unblock someone.
    Unblock {
        /// PeerId or contact name.
        peer: String,
    },
    /// Show the safety number you and a contact compare (read aloud or scan the QR code).
    Verify {
        /// PeerId or contact name.
        peer: String,
        /// Print the digits only, without the QR code.
        #[arg(long)]
        no_qr: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote text from the daemon or the network: each of
            // their lines is neutralised like any other human output.
            let message = format!("error: {e:#}");
            for line in message.lines() {
                format::say_err!("{line}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = meshchat_node::DataDir::new(
        cli.data_dir
            .clone()
            .unwrap_or_else(meshchat_node::DataDir::default_root),
    );
    let json = cli.json;
    match cli.command {
        Command::Init { name } => client::init(&dir, name, json),
        Command::Daemon {
            listen,
            bootstrap,
            relays,
            no_mdns,
            ui_listen,
        } => daemon::run(&dir, listen, bootstrap, relays, no_mdns, ui_listen, json).await,
        Command::Ui { print_url } => ui::open(&dir, print_url, json),
        Command::Relay {
            listen,
            external_addr,
            metrics,
        } => {
            let args = relay::RelayArgs {
                listen,
                external: external_addr,
                metrics,
            };
            relay::run(&dir, args, json).await
        }
        Command::Id => client::id(&dir, json).await,
        Command::Status => client::status(&dir, json).await,
        Command::Contacts(ContactsCommand::Add {
            peer,
            name,
            addrs,
            relays,
        }) => client::contacts_add(&dir, peer, name, addrs, relays, json).await,
        Command::Contacts(ContactsCommand::List) => client::contacts_list(&dir, json).await,
        Command::Requests { command } => requests::run(&dir, command, json).await,
        Command::Contacts(ContactsCommand::Remove { peer }) => {
            client::simple(
                &dir,
                ControlRequest::ContactsRemove { peer },
                "Removed (the chat history stays).",
                json,
            )
            .await
        }
        Command::Contacts(ContactsCommand::Block { peer }) => {
            client::simple(
                &dir,
                ControlRequest::ContactsBlock {
                    peer,
                    blocked: true,
                },
                "Blocked.",
                json,
            )
            .await
        }
        Command::Contacts(ContactsCommand::Unblock { peer }) => {
            client::simple(
                &dir,
                ControlRequest::ContactsBlock {
                    peer,
                    blocked: false,
                },
                "Unblocked.",
                json,
            )
            .await
        }
        Command::Contacts(ContactsCommand::Verify { peer, no_qr }) => {
            social::verify(&dir, peer, !no_qr, json).await
        }
        Command::Profile(command) => social::profile(&dir, command, json).await,
        Command::Invite { no_qr } => social::invite(&dir, !no_qr, json).await,
        Command::LastSeen { peer } => social::last_seen(&dir, peer, json).await,
        Command::Privacy { last_seen } => social::privacy(&dir, last_seen, json).await,
        Command::Typing { chat } => {
            client::simple(&dir, ControlRequest::ChatsTyping { chat }, "Typing…", json).await
        }
        Command::Send { to, text, reply_to } => client::send(&dir, to, text, reply_to, json).await,
        Command::Edit {
            chat,
            message,
            text,
        } => {
            client::simple(
                &dir,
                ControlRequest::ChatsEdit {
                    chat,
                    message,
                    text,
                },
                "Edited.",
                json,
            )
            .await
        }
        Command::Delete { chat, message } => {
            client::simple(
                &dir,
                ControlRequest::ChatsDelete { chat, message },
                "Deleted for everyone.",
                json,
            )
            .await
        }
        Command::React {
            chat,
            message,
            emoji,
            remove,
        } => {
            let emoji = if remove {
                String::new()
            } else {
                emoji.unwrap_or_default()
            };
            client::simple(
                &dir,
                ControlRequest::ChatsReact {
                    chat,
                    message,
                    emoji,
                },
                "Reacted.",
                json,
            )
            .await
        }
        Command::Info { chat, message } => client::message_info(&dir, chat, message, json).await,
        Command::Group(command) => group::run(&dir, command, json).await,
        Command::Export { chat, dir: out } => client::export(&dir, chat, out, json).await,
        Command::Chats => client::chats(&dir, json).await,
        Command::History { chat, limit } => client::history(&dir, chat, limit, json).await,
        Command::Watch => client::watch(&dir, json).await,
        Command::Media(command) => media::run(&dir, command, json).await,
        Command::Stop => client::stop(&dir, json).await,
        Command::Demo => {
            // Quiet unless asked: the demo's own narration is its output.
            if std::env::var_os("MESHCHAT_LOG").is_some() {
                daemon::init_tracing();
            }
            demo::run(json).await
        }
    }
}

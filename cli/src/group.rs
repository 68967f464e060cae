//! `meshchat group …`: create and administer group chats.

use anyhow::Result;
use clap::Subcommand;
use meshchat_node::{
    control::ControlRequest,
    crdt::{GroupInfo, Role},
    DataDir,
};

use crate::{
    client::{self, connect, names, print_json},
    format::{say, say_err},
};

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with you as admin (members: PeerIds or contact names).
    Create {
        /// The group's name.
        name: String,
        /// People to add.
        members: Vec<String>,
    },
    /// Add a member (admins).
    Add {
        /// The group (name or chat id).
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// Remove a member (admins).
    Remove {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// Make a member an admin (admins).
    Promote {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// Make an admin a plain member (admins).
    Demote {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// Leave a group.
    Leave {
        /// The group.
        chat: String,
    },
    /// Rename a group (admins).
    Rename {
        /// The group.
        chat: String,
        /// The new name.
        name: String,
    },
    /// Change a group's settings (admins).
    Settings {
        /// The group.
        chat: String,
        /// Whether people added from now on see the history from before they joined.
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        history_for_new_members: bool,
    },
    /// Show a group's name, members, roles and settings.
    Info {
        /// The group.
        chat: String,
    },
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

pub(crate) async fn run(dir: &DataDir, command: GroupCommand, json: bool) -> Result<()> {
    match command {
        GroupCommand::Create { name, members } => {
            let mut client = connect(dir).await?;
            let created = client
                .call_raw(ControlRequest::GroupsCreate {
                    name: name.clone(),
                    members,
                })
                .await?;
            if json {
                return print_json(&created);
            }
            say!("{}", created["chat"].as_str().unwrap_or_default());
            say_err!("Created group {name:?}; members are invited as soon as they are reachable.");
            Ok(())
        }
        GroupCommand::Add { chat, peer } => {
            client::simple(
                dir,
                ControlRequest::GroupsAddMember { chat, peer },
                "Added.",
                json,
            )
            .await
        }
        GroupCommand::Remove { chat, peer } => {
            client::simple(
                dir,
                ControlRequest::GroupsRemoveMember { chat, peer },
                "Removed.",
                json,
            )
            .await
        }
        GroupCommand::Promote { chat, peer } => {
            client::simple(
                dir,
                ControlRequest::GroupsSetRole {
                    chat,
                    peer,
                    role: Role::Admin,
                },
                "Promoted to admin.",
                json,
            )
            .await
        }
        GroupCommand::Demote { chat, peer } => {
            client::simple(
                dir,
                ControlRequest::GroupsSetRole {
                    chat,
                    peer,
                    role: Role::Member,
                },
                "Now a plain member.",
                json,
            )
            .await
        }
        GroupCommand::Leave { chat } => {
            client::simple(
                dir,
                ControlRequest::GroupsLeave { chat },
                "You left the group.",
                json,
            )
            .await
        }
        GroupCommand::Rename { chat, name } => {
            client::simple(
                dir,
                ControlRequest::GroupsRename { chat, name },
                "Renamed.",
                json,
            )
            .await
        }
        GroupCommand::Settings {
            chat,
            history_for_new_members,
        } => {
            let step = ControlRequest::GroupsSetHistoryForNewMembers {
                chat,
                on: history_for_new_members,
            };
            client::simple(dir, step, "Settings saved.", json).await
        }
        GroupCommand::Info { chat } => {
            let mut client = connect(dir).await?;
            let info: GroupInfo = client.call(ControlRequest::GroupsInfo { chat }).await?;
            if json {
                return print_json(&info);
            }
            let names = names(&mut client).await?;
            say!("{}", info.name);
            say!("Created by {}", names.key(&info.creator));
            say!(
                "New members see older history: {}",
                if info.settings.history_for_new_members {
                    "yes"
                } else {
                    "no"
                }
            );
            say!("Members ({}):", info.members.len());
            for member in &info.members {
                let role = match member.role {
                    Role::Admin => "admin",
                    Role::Member => "member",
                };
                say!(
                    "  {:<16} {:<7} {}",
                    names.key(&member.key),
                    role,
                    member.key
                );
            }
            Ok(())
        }
    }
}

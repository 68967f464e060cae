//! The control API's messages: one JSON object per line each way.
//! Documented in `docs/CONTROL_API.md`.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::api::ErrorCode;

/// Longest request line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A request line: `{"id": 1, "request": {"method": "status"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    /// Echoed in the response.
    pub id: u64,
    /// The call.
    pub request: ControlRequest,
}

/// The calls: one per operation of the [`crate::Node`] sub-handles, named
/// `<handle>_<operation>` (`chats_send` is `node.chats().send`), plus the
/// server's own `watch` and `shutdown`. Where a call names a chat or a peer
/// by a string, the server resolves it first (`chats().resolve`, contact
/// names). Old method names are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlRequest {
    // ----- network() -----
    /// `network().status`: `Status`.
    #[serde(alias = "status")]
    NetworkStatus,
    /// `network().dial`: `null`.
    #[serde(alias = "dial")]
    NetworkDial {
        /// The address.
        addr: Multiaddr,
    },
    /// `network().disconnect`: `null`.
    NetworkDisconnect {
        /// PeerId or contact name.
        peer: String,
    },

    // ----- contacts() -----
    /// `contacts().add_with_relays`: `Contact`.
    ContactsAdd {
        /// Their PeerId.
        peer: PeerId,
        /// A name for them.
        #[serde(default)]
        name: Option<String>,
        /// Addresses to reach them.
        #[serde(default)]
        addrs: Vec<Multiaddr>,
        /// Relays holding their mail (addresses ending in `/p2p/<RELAY>`).
        #[serde(default)]
        relays: Vec<Multiaddr>,
    },
    /// `contacts().add_from_invite`: `Contact`.
    ContactsAddInvite {
        /// The `MC1:…` string.
        invite: String,
        /// A name for them (default: the name in the invite).
        #[serde(default)]
        name: Option<String>,
    },
    /// `contacts().list`: `[Contact]`.
    ContactsList,
    /// `contacts().remove` (chats stay): `{"removed": bool}`.
    ContactsRemove {
        /// PeerId or contact name.
        peer: String,
    },
    /// `contacts().set_blocked`: `null`.
    ContactsBlock {
        /// PeerId or contact name.
        peer: String,
        /// Block (true) or unblock (false).
        blocked: bool,
    },
    /// `contacts().safety_number`: `SafetyNumberReport`.
    ContactsVerify {
        /// PeerId or contact name.
        peer: String,
    },
    /// `contacts().invite`: `{"invite": "MC1:…", "peer", "name", "addrs", "relays"}`.
    #[serde(alias = "invite")]
    ContactsInvite,
    /// `contacts().requests`, newest first: `[RequestSummary]`.
    #[serde(alias = "requests")]
    ContactsRequests,
    /// `contacts().accept_request` (the chat is created): `{"chat": id}`.
    #[serde(alias = "requests_accept")]
    ContactsAcceptRequest {
        /// The request's chat id (or a unique prefix), or its sender's PeerId.
        chat: String,
    },
    /// `contacts().delete_request`: `{"chat": id}`.
    #[serde(alias = "requests_delete")]
    ContactsDeleteRequest {
        /// The request's chat id (or a unique prefix), or its sender's PeerId.
        chat: String,
        /// Also block the sender.
        #[serde(default)]
        block: bool,
    },

    // ----- chats() -----
    /// `chats().list`: `[ChatSummary]`.
    #[serde(alias = "chats")]
    ChatsList,
    /// `chats().send`, or with `reply_to` `chats().reply`: `Sent`.
    #[serde(alias = "send")]
    ChatsSend {
        /// A chat id, peer id, contact name or group name.
        to: String,
        /// The text.
        text: String,
        /// A message id (or unique prefix) this one replies to.
        #[serde(default)]
        reply_to: Option<String>,
    },
    /// `chats().edit`: `OpResult`.
    #[serde(alias = "edit")]
    ChatsEdit {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
        /// New text.
        text: String,
    },
    /// `chats().delete`, for everyone: `OpResult`.
    #[serde(alias = "delete")]
    ChatsDelete {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
    },
    /// `chats().react` (empty emoji removes your reaction): `OpResult`.
    #[serde(alias = "react")]
    ChatsReact {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
        /// The emoji.
        emoji: String,
    },
    /// `chats().typing`: `null`.
    #[serde(alias = "typing")]
    ChatsTyping {
        /// The chat.
        chat: String,
    },
    /// `chats().history`: `[HistoryEntry]`.
    #[serde(alias = "history")]
    ChatsHistory {
        /// A chat id, peer id or contact name.
        chat: String,
        /// Only the newest N.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// `chats().message_info`, where a message stands per recipient:
    /// `MessageInfo`.
    #[serde(alias = "message_info")]
    ChatsMessageInfo {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
    },
    /// `chats().export`, the Automerge documents and a transcript:
    /// `ExportSummary`.
    #[serde(alias = "export")]
    ChatsExport {
        /// The chat.
        chat: String,
        /// Directory to write into (created if needed).
        dir: std::path::PathBuf,
    },

    // ----- groups() -----
    /// `groups().create`: `{"chat": id}`.
    #[serde(alias = "group_create")]
    GroupsCreate {
        /// Its name.
        name: String,
        /// Members: peer ids or contact names.
        #[serde(default)]
        members: Vec<String>,
    },
    /// `groups().info`, name, members, roles, settings: `GroupInfo`.
    #[serde(alias = "group_info")]
    GroupsInfo {
        /// The group.
        chat: String,
    },
    /// `groups().add_member`: `OpResult`.
    GroupsAddMember {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// `groups().remove_member`: `OpResult`.
    GroupsRemoveMember {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
    },
    /// `groups().set_role` (promote to `admin`, demote to `member`): `OpResult`.
    GroupsSetRole {
        /// The group.
        chat: String,
        /// PeerId or contact name.
        peer: String,
        /// `admin` or `member`.
        role: meshchat_crdt::Role,
    },
    /// `groups().rename`: `OpResult`.
    GroupsRename {
        /// The group.
        chat: String,
        /// The new name.
        name: String,
    },
    /// `groups().set_history_for_new_members`: `OpResult`.
    GroupsSetHistoryForNewMembers {
        /// The group.
        chat: String,
        /// On or off.
        on: bool,
    },
    /// `groups().leave`: `OpResult`.
    GroupsLeave {
        /// The group.
        chat: String,
    },

    // ----- profiles() -----
    /// `profiles().set`, or with `avatar_path` `profiles().set_with_picture`
    /// (`""` clears a field): `PeerProfile`.
    #[serde(alias = "profile_set")]
    ProfilesSet {
        /// Display name.
        #[serde(default)]
        name: Option<String>,
        /// "About" status.
        #[serde(default)]
        status: Option<String>,
        /// BLAKE3 hash (hex) of a profile picture blob.
        #[serde(default)]
        avatar: Option<String>,
        /// A picture file to import and use as the profile picture.
        #[serde(default)]
        avatar_path: Option<std::path::PathBuf>,
    },
    /// `profiles().get` (yours when `peer` is absent): `PeerProfile` or `null`.
    #[serde(alias = "profile_show")]
    ProfilesGet {
        /// PeerId or contact name.
        #[serde(default)]
        peer: Option<String>,
    },
    /// `profiles().save_picture` (yours when `peer` is absent) to `out`:
    /// `{hash, size, path}`.
    #[serde(alias = "profile_avatar")]
    ProfilesSavePicture {
        /// PeerId or contact name.
        #[serde(default)]
        peer: Option<String>,
        /// File to write.
        out: std::path::PathBuf,
    },
    /// `profiles().last_seen`, online or when last seen: `LastSeen`.
    #[serde(alias = "last_seen")]
    ProfilesLastSeen {
        /// PeerId or contact name.
        peer: String,
    },
    /// `profiles().last_seen_privacy`: `{"last_seen": …}`.
    ProfilesLastSeenPrivacy,
    /// `profiles().set_last_seen_privacy`: `{"last_seen": …}` (the setting
    /// after the call).
    ProfilesSetLastSeenPrivacy {
        /// `everyone`, `contacts` or `nobody`.
        last_seen: crate::LastSeenPrivacy,
    },

    // ----- files() -----
    /// `files().send`, a file into a chat: `Sent`.
    #[serde(alias = "send_file")]
    FilesSend {
        /// A chat id, peer id, contact name or group name.
        to: String,
        /// The file, as a path the daemon can read.
        path: std::path::PathBuf,
        /// Text shown with the file.
        #[serde(default)]
        caption: Option<String>,
    },
    /// `files().fetch_with`, a message's file (copied to `out`): `Fetched`.
    #[serde(alias = "fetch_file")]
    FilesFetch {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
        /// Where to write it (a file, or a folder to write it into by name).
        #[serde(default)]
        out: Option<std::path::PathBuf>,
        /// Replace an existing file.
        #[serde(default)]
        overwrite: bool,
        /// Keep a leading dot in the sender's file name.
        #[serde(default)]
        allow_hidden: bool,
    },
    /// `files().share`, a file outside chats: `{"ticket": str}`.
    #[serde(alias = "share")]
    FilesShare {
        /// The file.
        path: std::path::PathBuf,
    },
    /// `files().fetch_ticket_with`, any iroh-blobs ticket into a folder:
    /// `TicketFiles`.
    #[serde(alias = "fetch_ticket")]
    FilesFetchTicket {
        /// The ticket.
        ticket: String,
        /// The folder.
        out: std::path::PathBuf,
        /// Replace existing files.
        #[serde(default)]
        overwrite: bool,
        /// Keep leading dots in the names.
        #[serde(default)]
        allow_hidden: bool,
    },
    /// `files().auto_download`, when received files download by themselves:
    /// `AutoDownload`.
    FilesAutoDownload,
    /// `files().set_auto_download`: `AutoDownload` (the policy after the call).
    FilesSetAutoDownload {
        /// The new policy.
        set: crate::media::AutoDownload,
    },

    // ----- the server's own -----
    /// Turn this connection into an event stream: `{"event": Event}` lines.
    Watch,
    /// Stop the daemon: `null`.
    Shutdown,
}

/// A response line: `{"id": 1, "result": …}` or `{"id": 1, "error": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseLine {
    /// The request's id (0 when the request could not be parsed).
    pub id: u64,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ControlError>,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// Machine-readable: `bad_request`, `not_found`, `ambiguous`, `invalid`,
    /// `write`, `storage`, `shutting_down`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ControlError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// A call's result as the JSON a response line carries.
pub(crate) fn to_json<T: Serialize>(value: T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new("internal", e.to_string()))
}

impl<E: ErrorCode + std::fmt::Display> From<E> for ControlError {
    fn from(e: E) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

//! The control API's messages: one JSON object per line each way.
//! Documented in `docs/CONTROL_API.md`.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::api::NodeError;

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

/// The calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlRequest {
    /// Node status: `Status`.
    Status,
    /// Add or update a contact: `Contact`.
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
    /// All contacts: `[Contact]`.
    ContactsList,
    /// Message requests waiting for an answer, newest first: `[RequestSummary]`.
    Requests,
    /// Accept a message request (the chat is created): `{"chat": id}`.
    RequestsAccept {
        /// The request's chat id (or a unique prefix), or its sender's PeerId.
        chat: String,
    },
    /// Delete a message request: `{"chat": id}`.
    RequestsDelete {
        /// The request's chat id (or a unique prefix), or its sender's PeerId.
        chat: String,
        /// Also block the sender.
        #[serde(default)]
        block: bool,
    },
    /// Send a message: `Sent`.
    Send {
        /// A chat id, peer id, contact name or group name.
        to: String,
        /// The text.
        text: String,
        /// A message id (or unique prefix) this one replies to.
        #[serde(default)]
        reply_to: Option<String>,
    },
    /// Edit your message: `OpResult`.
    Edit {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
        /// New text.
        text: String,
    },
    /// Delete a message for everyone: `OpResult`.
    Delete {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
    },
    /// React to a message (empty emoji removes your reaction): `OpResult`.
    React {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
        /// The emoji.
        emoji: String,
    },
    /// Create a group: `{"chat": id}`.
    GroupCreate {
        /// Its name.
        name: String,
        /// Members: peer ids or contact names.
        #[serde(default)]
        members: Vec<String>,
    },
    /// Administer a group: `OpResult`.
    GroupUpdate {
        /// The group.
        chat: String,
        /// What to do.
        update: GroupUpdate,
    },
    /// Where a message stands per recipient: `MessageInfo`.
    MessageInfo {
        /// The chat.
        chat: String,
        /// Message id or unique prefix.
        message: String,
    },
    /// A group's name, members, roles, settings: `GroupInfo`.
    GroupInfo {
        /// The group.
        chat: String,
    },
    /// Write a chat's Automerge documents and a transcript: `ExportSummary`.
    Export {
        /// The chat.
        chat: String,
        /// Directory to write into (created if needed).
        dir: std::path::PathBuf,
    },
    /// All chats: `[ChatSummary]`.
    Chats,
    /// A chat's messages: `[HistoryEntry]`.
    History {
        /// A chat id, peer id or contact name.
        chat: String,
        /// Only the newest N.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Connect to an address: `null`.
    Dial {
        /// The address.
        addr: Multiaddr,
    },
    /// Change your profile (`""` clears a field): `PeerProfile`.
    ProfileSet {
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
    /// Download a profile picture (yours when `peer` is absent) to `out`:
    /// `{hash, size, path}`.
    ProfileAvatar {
        /// PeerId or contact name.
        #[serde(default)]
        peer: Option<String>,
        /// File to write.
        out: std::path::PathBuf,
    },
    /// A profile (yours when `peer` is absent): `PeerProfile` or `null`.
    ProfileShow {
        /// PeerId or contact name.
        #[serde(default)]
        peer: Option<String>,
    },
    /// Your invite: `{"invite": "MC1:…", "peer", "name", "addrs", "relays"}`.
    Invite,
    /// Add a contact from an invite string: `Contact`.
    ContactsAddInvite {
        /// The `MC1:…` string.
        invite: String,
        /// A name for them (default: the name in the invite).
        #[serde(default)]
        name: Option<String>,
    },
    /// Remove a contact (chats stay): `{"removed": bool}`.
    ContactsRemove {
        /// PeerId or contact name.
        peer: String,
    },
    /// Block or unblock a peer: `null`.
    ContactsBlock {
        /// PeerId or contact name.
        peer: String,
        /// Block (true) or unblock (false).
        blocked: bool,
    },
    /// Online, or when last seen: `LastSeen`.
    LastSeen {
        /// PeerId or contact name.
        peer: String,
    },
    /// Read (and with `last_seen`, change) privacy: `{"last_seen": …}`.
    Privacy {
        /// `everyone`, `contacts` or `nobody`.
        #[serde(default)]
        last_seen: Option<crate::LastSeenPrivacy>,
    },
    /// Tell a chat's connected members you are typing: `null`.
    Typing {
        /// The chat.
        chat: String,
    },
    /// Send a file into a chat: `Sent`.
    SendFile {
        /// A chat id, peer id, contact name or group name.
        to: String,
        /// The file, as a path the daemon can read.
        path: std::path::PathBuf,
        /// Text shown with the file.
        #[serde(default)]
        caption: Option<String>,
    },
    /// Fetch a message's file (and copy it to `out`): `Fetched`.
    FetchFile {
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
    /// Share a file outside chats: `{"ticket": str}`.
    Share {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Download any iroh-blobs ticket into a folder: `TicketFiles`.
    FetchTicket {
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
    /// Read (and with `set`, change) when received files download by
    /// themselves: `AutoDownload`.
    AutoDownload {
        /// The new policy.
        #[serde(default)]
        set: Option<crate::blobs::AutoDownload>,
    },
    /// Turn this connection into an event stream: `{"event": Event}` lines.
    Watch,
    /// Stop the daemon: `null`.
    Shutdown,
}

/// A group administration step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupUpdate {
    /// Add a member (peer id or contact name).
    Add {
        /// Who.
        peer: String,
    },
    /// Remove a member.
    Remove {
        /// Who.
        peer: String,
    },
    /// Make a member an admin.
    Promote {
        /// Who.
        peer: String,
    },
    /// Make an admin a plain member.
    Demote {
        /// Who.
        peer: String,
    },
    /// Leave the group.
    Leave,
    /// Rename it.
    Rename {
        /// New name.
        name: String,
    },
    /// Whether members added later receive older history.
    HistoryForNewMembers {
        /// On or off.
        on: bool,
    },
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

impl From<NodeError> for ControlError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::ActorDropped => "shutting_down",
            NodeError::NotFound(_) => "not_found",
            NodeError::Ambiguous(_) => "ambiguous",
            NodeError::Invalid(_) => "invalid",
            NodeError::Write(_) => "write",
            NodeError::Store(_) => "storage",
            NodeError::Io(_) => "io",
            NodeError::Blob(crate::blobs::BlobError::TooLarge { .. }) => "too_large",
            NodeError::Blob(crate::blobs::BlobError::Exists(_)) => "exists",
            NodeError::Blob(_) => "blob",
        };
        Self::new(code, e.to_string())
    }
}

//! `node.chats()`: finding chats, writing in them (send, reply, edit,
//! delete, react, typing) and reading them (list, history, message info,
//! export).

use std::path::PathBuf;

use meshchat_crdt::{ChatId, MessageId, WriteError, MAX_TEXT_BYTES};

use super::{
    errors::{key_of, shared_into, sort, ErrorCode, NotEd25519, ReadError, Shared, StorageError},
    Command, Node, NodeError, Sent, Stopped,
};
use crate::{
    chats::{ChatOp, ChatSummary, ExportSummary, HistoryEntry, MessageInfo, OpOutcome},
    social::SocialCommand,
    PeerId,
};

/// The chats of a node: `node.chats()`.
#[derive(Debug, Clone, Copy)]
pub struct Chats<'a> {
    node: &'a Node,
}

impl<'a> Chats<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// All chats, most recent first.
    pub async fn list(&self) -> Result<Vec<ChatSummary>, ReadError> {
        self.node
            .call(|reply| Command::Chats { reply })
            .await
            .map_err(ReadError::from_reply)
    }

    /// The direct chat with `peer`, created if new.
    pub async fn direct(&self, peer: PeerId) -> Result<ChatId, DirectChatError> {
        let peer = key_of(&peer)?;
        self.node
            .call(|reply| Command::DirectChat { peer, reply })
            .await
            .map_err(|e| ReadError::from_reply(e).into())
    }

    /// Finds a chat by chat id, peer id, contact name or group name
    /// (creating the direct chat with a peer or contact if needed). Names
    /// are looked up in an index: nothing is read from any chat's history.
    pub async fn resolve(&self, query: impl Into<String>) -> Result<ChatId, ResolveError> {
        let query = query.into();
        self.node
            .call(|reply| Command::Resolve {
                query: query.clone(),
                reply,
            })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(NodeError::Ambiguous(_)) => ResolveError::Ambiguous(query),
                // Only a PeerId without an Ed25519 key is invalid here.
                Err(NodeError::Invalid(_)) => match query.parse() {
                    Ok(peer) => ResolveError::NotEd25519(NotEd25519(peer)),
                    Err(_) => ResolveError::NotFound(query),
                },
                Err(_) => ResolveError::NotFound(query),
            })
    }

    /// Writes `text` into `chat`. Returns once it is durably stored locally
    /// (state `pending`); delivery proceeds in the background.
    pub async fn send(&self, chat: ChatId, text: impl Into<String>) -> Result<Sent, SendError> {
        self.send_op(chat, text.into(), None).await
    }

    /// Writes `text` into `chat` as a reply to `to`.
    pub async fn reply(
        &self,
        chat: ChatId,
        to: MessageId,
        text: impl Into<String>,
    ) -> Result<Sent, SendError> {
        self.send_op(chat, text.into(), Some(to)).await
    }

    async fn send_op(
        &self,
        chat: ChatId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<Sent, SendError> {
        let op = ChatOp::Send { text, reply_to };
        let outcome = self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => SendError::NoSuchChat(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => SendError::from_write(w),
        })?;
        let message = outcome.message.ok_or_else(|| {
            SendError::Refused("the chat produced no message; please report this".into())
        })?;
        Ok(Sent { chat, message })
    }

    /// Replaces the text of your message.
    pub async fn edit(
        &self,
        chat: ChatId,
        message: MessageId,
        text: impl Into<String>,
    ) -> Result<OpOutcome, EditError> {
        let op = ChatOp::Edit {
            message,
            text: text.into(),
        };
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => EditError::NoSuchChat(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotMember => EditError::NotMember,
                WriteError::NotAuthor => EditError::NotAuthor,
                WriteError::UnknownMessage(m) => EditError::NoSuchMessage(m),
                WriteError::TooLong { len } => EditError::TooLong {
                    len,
                    max: MAX_TEXT_BYTES,
                },
                other => EditError::Refused(other.to_string()),
            },
        })
    }

    /// Deletes a message for everyone (yours, or anyone's as a group admin).
    pub async fn delete(&self, chat: ChatId, message: MessageId) -> Result<OpOutcome, DeleteError> {
        let op = ChatOp::Delete { message };
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => DeleteError::NoSuchChat(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotMember => DeleteError::NotMember,
                WriteError::NotAuthor | WriteError::NotAdmin => DeleteError::NotAllowed,
                WriteError::UnknownMessage(m) => DeleteError::NoSuchMessage(m),
                other => DeleteError::Refused(other.to_string()),
            },
        })
    }

    /// Sets your reaction to a message, or with `None` removes it.
    pub async fn react(
        &self,
        chat: ChatId,
        message: MessageId,
        emoji: Option<String>,
    ) -> Result<OpOutcome, ReactError> {
        let op = ChatOp::React { message, emoji };
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => ReactError::NoSuchChat(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotMember => ReactError::NotMember,
                WriteError::UnknownMessage(m) => ReactError::NoSuchMessage(m),
                WriteError::Invalid(why) => ReactError::InvalidEmoji(why),
                other => ReactError::Refused(other.to_string()),
            },
        })
    }

    /// A chat's messages, oldest first; the newest `limit` if given. Marks
    /// the chat read (the user is looking at it).
    pub async fn history(
        &self,
        chat: ChatId,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        self.history_of(chat, limit, true).await
    }

    /// A chat's messages, without marking it read.
    pub async fn history_quiet(&self, chat: ChatId) -> Result<Vec<HistoryEntry>, HistoryError> {
        self.history_of(chat, None, false).await
    }

    async fn history_of(
        &self,
        chat: ChatId,
        limit: Option<usize>,
        mark_read: bool,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        self.node
            .call(|reply| Command::History {
                chat,
                limit,
                mark_read,
                reply,
            })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => HistoryError::NoSuchChat(chat),
            })
    }

    /// Where one of your messages stands, per recipient, with relay custody.
    pub async fn message_info(
        &self,
        chat: ChatId,
        message: MessageId,
    ) -> Result<MessageInfo, MessageInfoError> {
        self.node
            .call(|reply| Command::MessageInfo {
                chat,
                message,
                reply,
            })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => MessageInfoError::NoSuchMessage { chat, message },
            })
    }

    /// Writes the chat's Automerge documents and a transcript into `dir`.
    pub async fn export(
        &self,
        chat: ChatId,
        dir: impl Into<PathBuf>,
    ) -> Result<ExportSummary, ExportError> {
        let dir = dir.into();
        self.node
            .call(|reply| Command::Export {
                chat,
                dir: dir.clone(),
                reply,
            })
            .await
            .map_err(|e| match e {
                NodeError::Io(reason) => ExportError::Write { dir, reason },
                e => match sort(e) {
                    Ok(shared) => shared.into(),
                    Err(_) => ExportError::NoSuchChat(chat),
                },
            })
    }

    /// Tells the chat's connected members the user is typing (ephemeral).
    pub async fn typing(&self, chat: ChatId) -> Result<(), TypingError> {
        self.node
            .call(|reply| Command::Social(SocialCommand::Typing { chat, reply }))
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => TypingError::NoSuchChat(chat),
            })
    }
}

/// Why a chat operation failed, before the operation names it.
pub(crate) enum OpFailure {
    NoSuchChat,
    Write(WriteError),
    Shared(Shared),
}

impl Node {
    /// Performs an operation on a chat; returns once it is durably stored.
    pub(crate) async fn op(&self, chat: ChatId, op: ChatOp) -> Result<OpOutcome, OpFailure> {
        self.call(|reply| Command::Op { chat, op, reply })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => OpFailure::Shared(shared),
                Err(NodeError::Write(w)) => OpFailure::Write(w),
                // Local writes fail otherwise only on an unknown chat.
                Err(_) => OpFailure::NoSuchChat,
            })
    }
}

/// `chats().direct` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectChatError {
    /// The peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl From<ReadError> for DirectChatError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(s) => Self::Storage(s),
            ReadError::Stopped(s) => Self::Stopped(s),
        }
    }
}

/// `chats().resolve` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No chat, contact, peer or group matches.
    #[error(
        "no chat, contact or peer matches {0:?} (nor any group name); see `meshchat chats` \
         and `meshchat contacts`, or use a peer id"
    )]
    NotFound(String),
    /// More than one contact or group has that name.
    #[error("{0:?} matches more than one contact or group; use the chat id or peer id")]
    Ambiguous(String),
    /// A peer id that is no meshchat identity.
    #[error(transparent)]
    NotEd25519(NotEd25519),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().send` or `chats().reply` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this chat; ask an admin to add you again")]
    NotMember,
    /// The text is too long.
    #[error("the message is {len} bytes; the limit is {max}: split it into several")]
    TooLong {
        /// Bytes in the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message replied to is not in the chat.
    #[error("no message {0} in this chat to reply to; see `meshchat history`")]
    NoSuchMessage(MessageId),
    /// The chat refused the message (a full chat, an invalid attachment).
    #[error("the message was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was sent.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl SendError {
    pub(crate) fn from_write(w: WriteError) -> Self {
        match w {
            WriteError::NotMember => Self::NotMember,
            WriteError::TooLong { len } => Self::TooLong {
                len,
                max: MAX_TEXT_BYTES,
            },
            WriteError::UnknownMessage(m) => Self::NoSuchMessage(m),
            other => Self::Refused(other.to_string()),
        }
    }
}

/// `chats().edit` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// No such message in the chat.
    #[error("no message {0} in this chat; see `meshchat history`")]
    NoSuchMessage(MessageId),
    /// Only a message's author edits it.
    #[error("only the author of a message can edit it")]
    NotAuthor,
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this chat; ask an admin to add you again")]
    NotMember,
    /// The new text is too long.
    #[error("the new text is {len} bytes; the limit is {max}")]
    TooLong {
        /// Bytes in the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The chat refused the edit (a deleted message, nothing changed).
    #[error("the edit was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().delete` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// No such message in the chat.
    #[error("no message {0} in this chat; see `meshchat history`")]
    NoSuchMessage(MessageId),
    /// Only the author, or a group admin, deletes a message.
    #[error("only the author of a message, or a group admin, can delete it")]
    NotAllowed,
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this chat; ask an admin to add you again")]
    NotMember,
    /// The chat refused the deletion.
    #[error("the deletion was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().react` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReactError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// No such message in the chat.
    #[error("no message {0} in this chat; see `meshchat history`")]
    NoSuchMessage(MessageId),
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this chat; ask an admin to add you again")]
    NotMember,
    /// The reaction is empty or too long.
    #[error("{0}; use a single emoji")]
    InvalidEmoji(String),
    /// The chat refused the reaction.
    #[error("the reaction was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().history` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().message_info` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageInfoError {
    /// No such message (or chat).
    #[error("no message {message} in chat {chat}; see `meshchat history`")]
    NoSuchMessage {
        /// The chat.
        chat: ChatId,
        /// The message.
        message: MessageId,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().export` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// The files could not be written.
    #[error("cannot write the export into {}: {reason}; choose another folder", dir.display())]
    Write {
        /// The folder.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `chats().typing` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypingError {
    /// No such chat.
    #[error("no chat {0}; see `meshchat chats`")]
    NoSuchChat(ChatId),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

shared_into!(
    DirectChatError,
    ResolveError,
    SendError,
    EditError,
    DeleteError,
    ReactError,
    HistoryError,
    MessageInfoError,
    ExportError,
    TypingError,
);

impl ErrorCode for DirectChatError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotEd25519(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for ResolveError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Ambiguous(_) => "ambiguous",
            Self::NotEd25519(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for SendError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) | Self::NoSuchMessage(_) => "not_found",
            Self::NotMember | Self::TooLong { .. } | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for EditError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) | Self::NoSuchMessage(_) => "not_found",
            Self::NotAuthor | Self::NotMember | Self::TooLong { .. } | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for DeleteError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) | Self::NoSuchMessage(_) => "not_found",
            Self::NotAllowed | Self::NotMember | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for ReactError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) | Self::NoSuchMessage(_) => "not_found",
            Self::NotMember | Self::InvalidEmoji(_) | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for HistoryError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) => "not_found",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for MessageInfoError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchMessage { .. } => "not_found",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for ExportError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) => "not_found",
            Self::Write { .. } => "io",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for TypingError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchChat(_) => "not_found",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

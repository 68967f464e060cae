//! `node.groups()`: creating groups, reading their members and settings,
//! and administering them (members, roles, name, settings, leaving).

use meshchat_crdt::{ChatId, GroupInfo, Role, WriteError};

use super::{
    chats::OpFailure,
    errors::{key_of, shared_into, sort, ErrorCode, NotEd25519, StorageError},
    Command, Node, NodeError, Stopped,
};
use crate::{
    chats::{ChatOp, OpOutcome},
    PeerId,
};

/// The groups of a node: `node.groups()`.
#[derive(Debug, Clone, Copy)]
pub struct Groups<'a> {
    node: &'a Node,
}

impl<'a> Groups<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// Creates a group with this node as its admin and `members` in it.
    pub async fn create(
        &self,
        name: impl Into<String>,
        members: Vec<PeerId>,
    ) -> Result<ChatId, CreateGroupError> {
        let name = name.into();
        let members = members.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;
        self.node
            .call(|reply| Command::CreateGroup {
                name,
                members,
                reply,
            })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(NodeError::Write(WriteError::Invalid(why))) => {
                    CreateGroupError::InvalidName(why)
                }
                Err(other) => CreateGroupError::Refused(other.to_string()),
            })
    }

    /// A group's name, members, roles and settings.
    pub async fn info(&self, chat: ChatId) -> Result<GroupInfo, GroupInfoError> {
        self.node
            .call(|reply| Command::GroupInfo { chat, reply })
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(_) => GroupInfoError::NoSuchGroup(chat),
            })
    }

    /// Adds `peer` to the group (admins).
    pub async fn add_member(&self, chat: ChatId, peer: PeerId) -> Result<OpOutcome, MemberError> {
        let key = key_of(&peer)?;
        self.member_op(chat, ChatOp::AddMember(key)).await
    }

    /// Removes `peer` from the group (admins).
    pub async fn remove_member(
        &self,
        chat: ChatId,
        peer: PeerId,
    ) -> Result<OpOutcome, MemberError> {
        let key = key_of(&peer)?;
        self.member_op(chat, ChatOp::RemoveMember(key)).await
    }

    /// Makes `peer` an admin or a plain member (admins).
    pub async fn set_role(
        &self,
        chat: ChatId,
        peer: PeerId,
        role: Role,
    ) -> Result<OpOutcome, MemberError> {
        let key = key_of(&peer)?;
        self.member_op(chat, ChatOp::SetRole(key, role)).await
    }

    async fn member_op(&self, chat: ChatId, op: ChatOp) -> Result<OpOutcome, MemberError> {
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => MemberError::NoSuchGroup(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotAGroup => MemberError::NotAGroup(chat),
                WriteError::NotAdmin => MemberError::NotAdmin,
                WriteError::NotMember => MemberError::NotMember,
                WriteError::Membership(why) => MemberError::Membership(why),
                other => MemberError::Refused(other.to_string()),
            },
        })
    }

    /// Renames the group (admins).
    pub async fn rename(
        &self,
        chat: ChatId,
        name: impl Into<String>,
    ) -> Result<OpOutcome, RenameError> {
        let op = ChatOp::Rename(name.into());
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => RenameError::NoSuchGroup(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotAGroup => RenameError::NotAGroup(chat),
                WriteError::NotAdmin => RenameError::NotAdmin,
                WriteError::NotMember => RenameError::NotMember,
                WriteError::Invalid(why) => RenameError::InvalidName(why),
                other => RenameError::Refused(other.to_string()),
            },
        })
    }

    /// Whether members added from now on receive the older history (admins).
    pub async fn set_history_for_new_members(
        &self,
        chat: ChatId,
        on: bool,
    ) -> Result<OpOutcome, SettingsError> {
        let op = ChatOp::HistoryForNewMembers(on);
        self.node.op(chat, op).await.map_err(|f| match f {
            OpFailure::NoSuchChat => SettingsError::NoSuchGroup(chat),
            OpFailure::Shared(shared) => shared.into(),
            OpFailure::Write(w) => match w {
                WriteError::NotAGroup => SettingsError::NotAGroup(chat),
                WriteError::NotAdmin => SettingsError::NotAdmin,
                WriteError::NotMember => SettingsError::NotMember,
                other => SettingsError::Refused(other.to_string()),
            },
        })
    }

    /// Leaves the group.
    pub async fn leave(&self, chat: ChatId) -> Result<OpOutcome, LeaveError> {
        self.node
            .op(chat, ChatOp::Leave)
            .await
            .map_err(|f| match f {
                OpFailure::NoSuchChat => LeaveError::NoSuchGroup(chat),
                OpFailure::Shared(shared) => shared.into(),
                OpFailure::Write(w) => match w {
                    WriteError::NotAGroup => LeaveError::NotAGroup(chat),
                    WriteError::NotMember => LeaveError::NotMember,
                    other => LeaveError::Refused(other.to_string()),
                },
            })
    }
}

/// `groups().create` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateGroupError {
    /// A member's peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// The name is empty or too long.
    #[error("{0}; choose another group name")]
    InvalidName(String),
    /// The group could not be written.
    #[error("the group could not be created: {0}")]
    Refused(String),
    /// Storage failed: no group was created.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `groups().info` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupInfoError {
    /// No such group (or the chat is a direct chat).
    #[error("no group {0}; see `meshchat chats`")]
    NoSuchGroup(ChatId),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `groups().add_member`, `remove_member` or `set_role` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// No such chat.
    #[error("no group {0}; see `meshchat chats`")]
    NoSuchGroup(ChatId),
    /// The chat is a direct chat.
    #[error("{0} is a direct chat, not a group")]
    NotAGroup(ChatId),
    /// The peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// Only admins change members and roles.
    #[error("only group admins can change members and roles; ask an admin")]
    NotAdmin,
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this group")]
    NotMember,
    /// The peer already is (or is not) a member.
    #[error("{0}; see `meshchat group info`")]
    Membership(String),
    /// The group refused the change.
    #[error("the change was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `groups().rename` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenameError {
    /// No such chat.
    #[error("no group {0}; see `meshchat chats`")]
    NoSuchGroup(ChatId),
    /// The chat is a direct chat.
    #[error("{0} is a direct chat, not a group")]
    NotAGroup(ChatId),
    /// Only admins rename a group.
    #[error("only group admins can rename it; ask an admin")]
    NotAdmin,
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this group")]
    NotMember,
    /// The name is empty, too long or unchanged.
    #[error("{0}; choose another name")]
    InvalidName(String),
    /// The group refused the change.
    #[error("the rename was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `groups().set_history_for_new_members` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// No such chat.
    #[error("no group {0}; see `meshchat chats`")]
    NoSuchGroup(ChatId),
    /// The chat is a direct chat.
    #[error("{0} is a direct chat, not a group")]
    NotAGroup(ChatId),
    /// Only admins change settings.
    #[error("only group admins can change its settings; ask an admin")]
    NotAdmin,
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this group")]
    NotMember,
    /// The group refused the change (nothing to change).
    #[error("the setting was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `groups().leave` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveError {
    /// No such chat.
    #[error("no group {0}; see `meshchat chats`")]
    NoSuchGroup(ChatId),
    /// The chat is a direct chat.
    #[error("{0} is a direct chat, not a group")]
    NotAGroup(ChatId),
    /// You are not (or no longer) a member of the group.
    #[error("you are not a member of this group (already left or removed)")]
    NotMember,
    /// The group refused the change.
    #[error("leaving was refused: {0}")]
    Refused(String),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

shared_into!(
    CreateGroupError,
    GroupInfoError,
    MemberError,
    RenameError,
    SettingsError,
    LeaveError,
);

impl ErrorCode for CreateGroupError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotEd25519(e) => e.code(),
            Self::InvalidName(_) | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for GroupInfoError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchGroup(_) => "not_found",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for MemberError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchGroup(_) => "not_found",
            Self::NotEd25519(e) => e.code(),
            Self::NotAGroup(_)
            | Self::NotAdmin
            | Self::NotMember
            | Self::Membership(_)
            | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for RenameError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchGroup(_) => "not_found",
            Self::NotAGroup(_)
            | Self::NotAdmin
            | Self::NotMember
            | Self::InvalidName(_)
            | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for SettingsError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchGroup(_) => "not_found",
            Self::NotAGroup(_) | Self::NotAdmin | Self::NotMember | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for LeaveError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchGroup(_) => "not_found",
            Self::NotAGroup(_) | Self::NotMember | Self::Refused(_) => "write",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

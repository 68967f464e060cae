//! `node.profiles()`: the user's own profile and others' (name, status,
//! picture), and presence: who is online, when others were last seen, and
//! who may see that of this node.

use std::path::{Path, PathBuf};

use meshchat_crdt::BlobHash;
use serde::{Deserialize, Serialize};

use super::{
    errors::{key_of, shared_into, sort, ErrorCode, PeerError, StorageError},
    files::{ExportBlobError, FetchBlobError, ImportError},
    Command, Node, NodeError, Stopped,
};
use crate::{
    social::presence::{LastSeen, LastSeenPrivacy},
    social::{PeerProfile, ProfileUpdate, SocialCommand, MAX_AVATAR_BYTES},
    PeerId,
};

/// The profiles and presence a node knows: `node.profiles()`.
#[derive(Debug, Clone, Copy)]
pub struct Profiles<'a> {
    node: &'a Node,
}

/// A profile picture saved to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPicture {
    /// The picture's blob.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
    /// Where it was written.
    pub path: PathBuf,
}

impl<'a> Profiles<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// Changes the user's profile: signed with a new version, stored,
    /// sent to connected contacts and published in the DHT.
    pub async fn set(&self, update: ProfileUpdate) -> Result<PeerProfile, SetProfileError> {
        self.node
            .call(|reply| Command::Social(SocialCommand::SetProfile { update, reply }))
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                Err(other) => SetProfileError::Invalid(match other {
                    NodeError::Invalid(why) => why,
                    other => other.to_string(),
                }),
            })
    }

    /// [`Profiles::set`], with the picture at `picture` imported (anyone may
    /// fetch it from this node) and made the profile picture.
    pub async fn set_with_picture(
        &self,
        mut update: ProfileUpdate,
        picture: impl AsRef<Path>,
    ) -> Result<PeerProfile, SetProfileError> {
        let hash = self.node.files().import_blob(picture).await?;
        update.avatar = Some(hash.to_string());
        self.set(update).await
    }

    /// The profile of `peer` (or the user's own, for `None`), if known. A
    /// peer's is refreshed in the background.
    pub async fn get(&self, peer: Option<PeerId>) -> Result<Option<PeerProfile>, PeerError> {
        if let Some(peer) = &peer {
            key_of(peer)?;
        }
        let me = self.node.peer_id();
        self.node
            .call(|reply| Command::Social(SocialCommand::Profile { peer, reply }))
            .await
            .map_err(|e| PeerError::from_reply(e, peer.unwrap_or(me)))
    }

    /// Writes the profile picture of `peer` (or the user's own, for `None`)
    /// to `out`, fetching a peer's from that peer first.
    pub async fn save_picture(
        &self,
        peer: Option<PeerId>,
        out: impl Into<PathBuf>,
    ) -> Result<SavedPicture, SavePictureError> {
        let out = out.into();
        let profile = self.get(peer).await?.ok_or(SavePictureError::NoProfile)?;
        let hash: BlobHash = profile
            .profile
            .avatar
            .ok_or(SavePictureError::NoPicture)?
            .parse()
            .map_err(|_| SavePictureError::BadHash)?;
        if peer.is_some() {
            self.node
                .files()
                .fetch_blob(hash, MAX_AVATAR_BYTES, profile.peer)
                .await?;
        }
        let size = self.node.files().export_blob(hash, &out).await?;
        Ok(SavedPicture {
            hash,
            size,
            path: out,
        })
    }

    /// Whether `peer` is online, or when it was last seen.
    pub async fn last_seen(&self, peer: PeerId) -> Result<LastSeen, PeerError> {
        key_of(&peer)?;
        self.node
            .call(|reply| Command::Social(SocialCommand::LastSeen { peer, reply }))
            .await
            .map_err(|e| PeerError::from_reply(e, peer))
    }

    /// Sets who sees this node's presence (and, with `nobody`, hides others').
    pub async fn set_last_seen_privacy(
        &self,
        privacy: LastSeenPrivacy,
    ) -> Result<(), SetPrivacyError> {
        self.node
            .call(|reply| Command::Social(SocialCommand::SetPrivacy { privacy, reply }))
            .await
            .map_err(|e| match sort(e) {
                Ok(shared) => shared.into(),
                // The actor answers with storage failures only.
                Err(other) => SetPrivacyError::Storage(StorageError::Database(other.to_string())),
            })
    }

    /// The current last-seen privacy setting.
    pub async fn last_seen_privacy(&self) -> Result<LastSeenPrivacy, Stopped> {
        self.node
            .call(|reply| Command::Social(SocialCommand::Privacy { reply }))
            .await
            .map_err(|_| Stopped)
    }
}

/// `profiles().set` or `set_with_picture` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetProfileError {
    /// The profile is not valid (a field too long).
    #[error("{0}; shorten it and retry")]
    Invalid(String),
    /// The picture could not be imported.
    #[error(transparent)]
    Picture(#[from] ImportError),
    /// Storage failed: the profile was not changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

/// `profiles().save_picture` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SavePictureError {
    /// The peer is not valid, or reading failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// No profile is known for the peer yet.
    #[error("no profile is known for that peer yet; try again once it has been online")]
    NoProfile,
    /// The profile has no picture.
    #[error("that profile has no picture")]
    NoPicture,
    /// The profile names its picture with an invalid hash.
    #[error("the profile's picture hash is invalid")]
    BadHash,
    /// The picture could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchBlobError),
    /// The picture could not be written.
    #[error(transparent)]
    Save(#[from] ExportBlobError),
}

/// `profiles().set_last_seen_privacy` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetPrivacyError {
    /// Storage failed: the setting was not changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

shared_into!(SetProfileError, SetPrivacyError);

impl ErrorCode for SetProfileError {
    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Picture(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for SavePictureError {
    fn code(&self) -> &'static str {
        match self {
            Self::Peer(e) => e.code(),
            Self::NoProfile | Self::NoPicture => "not_found",
            Self::BadHash => "invalid",
            Self::Fetch(e) => e.code(),
            Self::Save(e) => e.code(),
        }
    }
}

impl ErrorCode for SetPrivacyError {
    fn code(&self) -> &'static str {
        match self {
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

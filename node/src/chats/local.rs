//! Local writes: messages, edits, deletions, reactions, group creation and
//! administration. Each is persisted (with outbox entries where a specific
//! peer must get it) and flushed before the caller hears "done".

use meshchat_crdt::{
    Authored, ChangeHash, ChatId, ChatReplica, GroupSettings, Message, MessageId, PublicKey, Role,
    SignedChange, WriteError, META_SEGMENT,
};

use super::Chats;
use crate::store::{ChatRecord, OutboxEntry, StoreError};

/// Something the user does to a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ChatOp {
    /// Write a message, optionally as a reply.
    Send {
        /// The text.
        text: String,
        /// The message it answers.
        reply_to: Option<MessageId>,
    },
    /// Write a message carrying a file (its bytes are already in the blob store).
    SendFile {
        /// Text shown with the file (may be empty).
        caption: String,
        /// The file's hash, size, type, name and preview.
        attachment: meshchat_crdt::Attachment,
    },
    /// Replace the text of your message.
    Edit {
        /// Which.
        message: MessageId,
        /// New text.
        text: String,
    },
    /// Delete a message for everyone (yours, or any as an admin).
    Delete {
        /// Which.
        message: MessageId,
    },
    /// Set (or with `None` remove) your reaction.
    React {
        /// Which.
        message: MessageId,
        /// The emoji.
        emoji: Option<String>,
    },
    /// Add a member (admins).
    AddMember(PublicKey),
    /// Remove a member (admins).
    RemoveMember(PublicKey),
    /// Change a member's role (admins).
    SetRole(PublicKey, Role),
    /// Leave the group.
    Leave,
    /// Rename the group (admins).
    Rename(String),
    /// Whether new members get older history (admins).
    HistoryForNewMembers(bool),
}

/// Why a local write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LocalWriteError {
    /// No such chat.
    #[error("no chat {0}")]
    UnknownChat(ChatId),
    /// The data model refused it.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Storage failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a local write produced.
#[derive(Debug, Clone)]
pub struct OpOutcome {
    /// The chat.
    pub chat: ChatId,
    /// The change's hash.
    pub hash: ChangeHash,
    /// The signed change, to publish.
    pub change: SignedChange,
    /// A new message (for `Send`).
    pub message: Option<Message>,
    /// A message whose content changed (edit, delete, react).
    pub updated: Option<Message>,
    /// Whether the chat is a group (publish on its topic) or direct (push).
    pub is_group: bool,
    /// Peers that were given outbox entries (push these when connected).
    pub push_to: Vec<PublicKey>,
}

impl Chats {
    /// Applies a user's operation to a chat and writes it with its outbox
    /// entries, unflushed: it may be pushed at once, but confirmed to the
    /// user only once a flush covering it succeeds. If that flush fails,
    /// call [`Chats::local_write_lost`].
    pub(crate) fn local_op(
        &mut self,
        chat: ChatId,
        op: ChatOp,
        now_ms: i64,
    ) -> Result<OpOutcome, LocalWriteError> {
        let me = self.me.clone();
        // A rename (or any metadata write) changes what the index says.
        self.names.touch(chat);
        let replica = self
            .replica(&chat)?
            .ok_or(LocalWriteError::UnknownChat(chat))?;
        let is_group = replica.kind().is_group();
        let (authored, message, touched) = match &op {
            ChatOp::Send { text, reply_to } => {
                let w = replica.write_message(&me, text, *reply_to, now_ms)?;
                let id = w.message.id;
                (
                    Authored {
                        change: w.change,
                        hash: w.hash,
                    },
                    Some(w.message),
                    Some(id),
                )
            }
            ChatOp::SendFile {
                caption,
                attachment,
            } => {
                let w = replica.write_attachment(&me, caption, attachment, now_ms)?;
                let id = w.message.id;
                (
                    Authored {
                        change: w.change,
                        hash: w.hash,
                    },
                    Some(w.message),
                    Some(id),
                )
            }
            ChatOp::Edit { message, text } => (
                replica.edit_message(&me, *message, text, now_ms)?,
                None,
                Some(*message),
            ),
            ChatOp::Delete { message } => {
                (replica.delete_message(&me, *message)?, None, Some(*message))
            }
            ChatOp::React { message, emoji } => (
                replica.react(&me, *message, emoji.as_deref())?,
                None,
                Some(*message),
            ),
            ChatOp::AddMember(key) => (replica.add_member(&me, *key)?, None, None),
            ChatOp::RemoveMember(key) => (replica.remove_member(&me, *key)?, None, None),
            ChatOp::SetRole(key, role) => (replica.set_role(&me, *key, *role)?, None, None),
            ChatOp::Leave => (replica.leave(&me)?, None, None),
            ChatOp::Rename(name) => (replica.rename(&me, name)?, None, None),
            ChatOp::HistoryForNewMembers(on) => {
                (replica.set_history_for_new_members(&me, *on)?, None, None)
            }
        };
        let updated = if message.is_none() {
            touched.and_then(|id| replica.message(&id))
        } else {
            None
        };
        // Direct chats: the peer gets an outbox entry (pushed, acknowledged).
        // Groups travel by gossip and anti-entropy; an invited member gets the
        // metadata through its outbox so it can join.
        let mut push_to: Vec<(PublicKey, Vec<SignedChange>)> = Vec::new();
        if let Some(peer) = replica
            .kind()
            .peer_of(&me.public())
            .filter(|p| *p != me.public())
        {
            push_to.push((peer, vec![authored.change.clone()]));
        }
        if let ChatOp::AddMember(key) = op {
            push_to.push((key, replica.changes_missing_from(&[], META_SEGMENT)));
        }
        // Group members who have relays also get the change through their
        // outbox: pushed when connected, deposited at their relays when not,
        // with per-member delivery states.
        let members: Vec<PublicKey> = if is_group {
            replica.members().into_keys().collect()
        } else {
            Vec::new()
        };
        for member in members {
            let queued = push_to.iter().any(|(k, _)| *k == member);
            if member == me.public() || queued {
                continue;
            }
            let has_relays = self
                .store
                .contact(&member)?
                .is_some_and(|c| !c.relays.is_empty());
            if has_relays {
                push_to.push((member, vec![authored.change.clone()]));
            }
        }
        if let Err(e) = self.persist_local(&authored, message.as_ref(), &push_to) {
            // Nothing of it left this device: the replica reloads from disk.
            self.evict(&chat);
            return Err(e.into());
        }
        Ok(OpOutcome {
            chat,
            hash: authored.hash,
            change: authored.change,
            message,
            updated,
            is_group,
            push_to: push_to.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Creates a group with this node as admin; members get the genesis through
    /// their outboxes.
    pub(crate) async fn create_group(
        &mut self,
        name: &str,
        members: &[PublicKey],
        now_ms: i64,
    ) -> Result<(ChatId, SignedChange, Vec<PublicKey>), LocalWriteError> {
        let me = self.me.public();
        let (replica, genesis) =
            ChatReplica::create_group(&self.me, name, members, GroupSettings::default())?;
        let chat = replica.id();
        self.store.put_chat(
            &chat,
            &ChatRecord {
                kind: replica.kind().clone(),
                created_at_ms: now_ms,
            },
        )?;
        self.replicas.insert(chat, replica);
        self.names.touch(chat);
        let invited: Vec<PublicKey> = members.iter().copied().filter(|m| *m != me).collect();
        let push_to: Vec<(PublicKey, Vec<SignedChange>)> = invited
            .iter()
            .map(|m| (*m, vec![genesis.change.clone()]))
            .collect();
        let result = self.persist_local(&genesis, None, &push_to);
        self.finish_write(&chat, result).await?;
        Ok((chat, genesis.change, invited))
    }

    /// The flush that was to cover a local write to `chat` failed, and the
    /// write may already have been pushed or published. The replica reloads
    /// from disk, without it; later writes take a fresh actor epoch, so the
    /// sequence number the lost change used is never used again for
    /// another change.
    pub(crate) fn local_write_lost(&mut self, lost: &OpOutcome) {
        self.store.write_lost(&lost.change, &lost.hash);
        let chat = &lost.chat;
        self.evict(chat);
        self.recent.clear();
        self.me = self.me.with_new_epoch();
    }

    /// Stores the change with its outbox entries and pending delivery states
    /// in one transaction, so a crash or a failed flush never leaves one
    /// without the other.
    fn persist_local(
        &mut self,
        authored: &Authored,
        message: Option<&Message>,
        push_to: &[(PublicKey, Vec<SignedChange>)],
    ) -> Result<(), StoreError> {
        let mut outbox = Vec::new();
        let mut pending = Vec::new();
        for (peer, changes) in push_to {
            for signed in changes {
                // Most of what is pushed is the change just written, whose
                // hash is known: only others are decoded for theirs.
                let is_this = signed.signature == authored.change.signature;
                let hash = if is_this {
                    authored.hash
                } else {
                    let Ok(verified) = signed.decode_stored() else {
                        continue;
                    };
                    verified.hash
                };
                outbox.push((
                    *peer,
                    OutboxEntry {
                        chat: signed.chat,
                        segment: signed.segment,
                        hash,
                        message: message.filter(|_| is_this).map(|m| m.id),
                    },
                ));
            }
            if let Some(m) = message {
                pending.push((m.id, *peer));
            }
        }
        self.store
            .put_local_write(&authored.change, authored.hash, &outbox, &pending)?;
        self.recent.keep(&authored.change, authored.hash);
        Ok(())
    }

    async fn finish_write(
        &mut self,
        chat: &ChatId,
        persisted: Result<(), StoreError>,
    ) -> Result<(), LocalWriteError> {
        let flushed = match persisted {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            self.evict(chat);
            return Err(e.into());
        }
        Ok(())
    }
}

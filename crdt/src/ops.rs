//! Local writes: messages, edits, deletions, reactions, and group
//! administration. Each produces one signed change, already applied to the
//! local replica, that the node persists and sends.
//!
//! Local writes obey the same rules receivers enforce, so an honest node never
//! produces a change its peers would refuse.

use automerge::{
    transaction::{CommitOptions, Transactable, Transaction},
    ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT,
};

use crate::{
    attachment::Attachment,
    chat::{ChatKind, ChatReplica},
    identity::Identity,
    ids::{ChangeHash, GroupNonce, MessageId, PublicKey},
    message::{self, Message, MAX_REACTION_BYTES, MAX_TEXT_BYTES},
    meta::{self, GroupSettings, MAX_GROUP_NAME_BYTES, MAX_SEGMENT},
    role::Role,
    segment::Segment,
    signed::{binding, SegmentIndex, SignedChange, META_SEGMENT},
};

/// Why a local write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The writer is not a member of the chat.
    #[error("you are not a member of this chat")]
    NotMember,
    /// Only admins may do this.
    #[error("only group admins can do that")]
    NotAdmin,
    /// Only the message's author may do this.
    #[error("only the author can do that")]
    NotAuthor,
    /// No such message.
    #[error("no message {0} in this chat")]
    UnknownMessage(MessageId),
    /// Groups only.
    #[error("that works in groups only")]
    NotAGroup,
    /// That key is not (or already) a member.
    #[error("{0}")]
    Membership(String),
    /// The text is longer than [`MAX_TEXT_BYTES`].
    #[error("message is {len} bytes; the limit is {MAX_TEXT_BYTES}")]
    TooLong {
        /// Bytes in the text.
        len: usize,
    },
    /// A name or reaction is too long or empty.
    #[error("{0}")]
    Invalid(String),
    /// Automerge refused the transaction (a bug, reported rather than hidden).
    #[error("automerge: {0}")]
    Automerge(String),
}

fn am(e: automerge::AutomergeError) -> WriteError {
    WriteError::Automerge(e.to_string())
}

/// A change written locally.
#[derive(Debug, Clone)]
pub struct Authored {
    /// The change to persist and send.
    pub change: SignedChange,
    /// Its hash.
    pub hash: ChangeHash,
}

/// A message written locally, and the signed change that carries it.
#[derive(Debug, Clone)]
pub struct Written {
    /// The new message.
    pub message: Message,
    /// The change to persist and send.
    pub change: SignedChange,
    /// Its hash.
    pub hash: ChangeHash,
}

impl ChatReplica {
    /// Creates a group with `identity` as its admin and `members` as members.
    pub fn create_group(
        identity: &Identity,
        name: &str,
        members: &[PublicKey],
        settings: GroupSettings,
    ) -> Result<(Self, Authored), WriteError> {
        Self::create_group_with_nonce(identity, name, members, settings, GroupNonce::random())
    }

    /// [`ChatReplica::create_group`] with a chosen nonce (deterministic
    /// fixtures for tests and fuzzing).
    pub(crate) fn create_group_with_nonce(
        identity: &Identity,
        name: &str,
        members: &[PublicKey],
        settings: GroupSettings,
        nonce: GroupNonce,
    ) -> Result<(Self, Authored), WriteError> {
        check_name(name)?;
        let creator = identity.public();
        let mut replica = Self::new(ChatKind::Group { creator, nonce });
        let authored = replica.commit(identity, META_SEGMENT, |tx| {
            meta::write_genesis(tx, &creator, nonce.as_bytes(), name, members, &settings)
                .map_err(am)
        })?;
        Ok((replica, authored.1))
    }

    /// Writes a new message, optionally replying to another.
    pub fn write_message(
        &mut self,
        identity: &Identity,
        text: &str,
        reply_to: Option<MessageId>,
        sent_at_ms: i64,
    ) -> Result<Written, WriteError> {
        let id = MessageId::for_author(&identity.public());
        self.write_message_with(identity, id, text, reply_to, None, sent_at_ms)
    }

    /// Writes a new message carrying a file (`caption` may be empty).
    pub fn write_attachment(
        &mut self,
        identity: &Identity,
        caption: &str,
        attachment: &Attachment,
        sent_at_ms: i64,
    ) -> Result<Written, WriteError> {
        attachment.validate().map_err(WriteError::Invalid)?;
        let id = MessageId::for_author(&identity.public());
        self.write_message_with(identity, id, caption, None, Some(attachment), sent_at_ms)
    }

    /// Writes a message under a chosen id (which must carry the author's tag).
    pub(crate) fn write_message_with(
        &mut self,
        identity: &Identity,
        id: MessageId,
        text: &str,
        reply_to: Option<MessageId>,
        attachment: Option<&Attachment>,
        sent_at_ms: i64,
    ) -> Result<Written, WriteError> {
        let author = identity.public();
        self.writer_role(&author)?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(WriteError::TooLong { len: text.len() });
        }
        if let Some(parent) = reply_to {
            self.message(&parent)
                .ok_or(WriteError::UnknownMessage(parent))?;
        }
        let index = self.segment_for_write()?;
        let sent_at_ms = sent_at_ms.max(self.last_sent_at_ms.saturating_add(1));
        let (_, authored) = self.commit_on(identity, index, Base::Settled(sent_at_ms), |tx| {
            let obj = tx
                .put_object(ROOT, id.to_string(), ObjType::Map)
                .map_err(am)?;
            tx.put(&obj, message::AUTHOR, author.to_string())
                .map_err(am)?;
            tx.put(&obj, message::SENT_AT, ScalarValue::Timestamp(sent_at_ms))
                .map_err(am)?;
            tx.put(&obj, message::TEXT, text).map_err(am)?;
            if let Some(parent) = reply_to {
                tx.put(&obj, message::REPLY_TO, parent.to_string())
                    .map_err(am)?;
            }
            tx.put_object(&obj, message::REACTIONS, ObjType::Map)
                .map_err(am)?;
            if let Some(attachment) = attachment {
                attachment.write(tx, &obj).map_err(am)?;
            }
            Ok(())
        })?;
        self.last_sent_at_ms = sent_at_ms;
        let message = self
            .segments
            .get(&index)
            .and_then(|s| s.message(&id))
            .ok_or_else(|| WriteError::Automerge("written message not readable".into()))?;
        Ok(Written {
            message,
            change: authored.change,
            hash: authored.hash,
        })
    }

    /// Replaces the text of one of your messages.
    pub fn edit_message(
        &mut self,
        identity: &Identity,
        id: MessageId,
        text: &str,
        edited_at_ms: i64,
    ) -> Result<Authored, WriteError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(WriteError::TooLong { len: text.len() });
        }
        let (segment, obj, msg) = self.locate(identity, id)?;
        if msg.author != identity.public() {
            return Err(WriteError::NotAuthor);
        }
        if msg.deleted {
            return Err(WriteError::Invalid(
                "a deleted message cannot be edited".into(),
            ));
        }
        self.commit(identity, segment, |tx| {
            tx.put(&obj, message::TEXT, text).map_err(am)?;
            tx.put(
                &obj,
                message::EDITED_AT,
                ScalarValue::Timestamp(edited_at_ms),
            )
            .map_err(am)
        })
        .map(|(_, a)| a)
    }

    /// Deletes a message for everyone: your own, or anyone's if you are an admin.
    pub fn delete_message(
        &mut self,
        identity: &Identity,
        id: MessageId,
    ) -> Result<Authored, WriteError> {
        let me = identity.public();
        let (segment, obj, msg) = self.locate(identity, id)?;
        let own = msg.author == me;
        if !own && self.writer_role(&me)? != Role::Admin {
            return Err(WriteError::NotAuthor);
        }
        self.commit(identity, segment, |tx| {
            tx.put(&obj, message::DELETED, true).map_err(am)?;
            if own {
                // Authors also blank the text; an admin may only mark it.
                tx.put(&obj, message::TEXT, "").map_err(am)?;
            }
            Ok(())
        })
        .map(|(_, a)| a)
    }

    /// Sets (or with `None` removes) your reaction to a message.
    pub fn react(
        &mut self,
        identity: &Identity,
        id: MessageId,
        emoji: Option<&str>,
    ) -> Result<Authored, WriteError> {
        if let Some(e) = emoji {
            if e.is_empty() || e.len() > MAX_REACTION_BYTES {
                return Err(WriteError::Invalid(format!(
                    "a reaction is 1 to {MAX_REACTION_BYTES} bytes"
                )));
            }
        }
        let (segment, obj, _) = self.locate(identity, id)?;
        let doc = &self.segments[&segment].doc;
        let Ok(Some((Value::Object(ObjType::Map), reactions))) = doc.get(&obj, message::REACTIONS)
        else {
            return Err(WriteError::Invalid(
                "that message takes no reactions".into(),
            ));
        };
        let me = identity.public().to_string();
        self.commit(identity, segment, |tx| match emoji {
            Some(e) => tx.put(&reactions, me.as_str(), e).map_err(am),
            None => tx.delete(&reactions, me.as_str()).map_err(am),
        })
        .map(|(_, a)| a)
    }

    /// Adds a member (admins only).
    pub fn add_member(
        &mut self,
        identity: &Identity,
        key: PublicKey,
    ) -> Result<Authored, WriteError> {
        self.require_admin(identity)?;
        if self.is_member(&key) {
            return Err(WriteError::Membership(format!("{key} is already a member")));
        }
        let info = self.group_info().ok_or(WriteError::NotAGroup)?;
        let joined = if info.settings.history_for_new_members {
            0
        } else {
            self.history().map(|s| s.index + 1).max().unwrap_or(0)
        };
        let me = identity.public().to_string();
        self.meta_commit(identity, |tx, doc_objs| {
            tx.put(&doc_objs.members, key.to_string(), Role::Member.as_str())
                .map_err(am)?;
            tx.put(&doc_objs.added_by, key.to_string(), me.as_str())
                .map_err(am)?;
            tx.put(
                &doc_objs.joined,
                key.to_string(),
                ScalarValue::Uint(joined.into()),
            )
            .map_err(am)
        })
    }

    /// Removes a member (admins only). The removal records what the member
    /// had written as this replica sees it (its *cut*): anything else it
    /// wrote without having seen its removal takes no effect.
    pub fn remove_member(
        &mut self,
        identity: &Identity,
        key: PublicKey,
    ) -> Result<Authored, WriteError> {
        self.require_admin(identity)?;
        if !self.is_member(&key) {
            return Err(WriteError::Membership(format!("{key} is not a member")));
        }
        let cut = self.cut_of(&key).encode();
        self.meta_commit(identity, |tx, objs| {
            tx.delete(&objs.members, key.to_string()).map_err(am)?;
            tx.put(&objs.removed, key.to_string(), ScalarValue::Bytes(cut))
                .map_err(am)
        })
    }

    /// Leaves the group.
    pub fn leave(&mut self, identity: &Identity) -> Result<Authored, WriteError> {
        let me = identity.public();
        self.writer_role(&me)?;
        if !self.kind.is_group() {
            return Err(WriteError::NotAGroup);
        }
        let cut = self.cut_of(&me).encode();
        self.meta_commit(identity, |tx, objs| {
            tx.delete(&objs.members, me.to_string()).map_err(am)?;
            tx.put(&objs.removed, me.to_string(), ScalarValue::Bytes(cut))
                .map_err(am)
        })
    }

    /// Sets a member's role (admins only).
    pub fn set_role(
        &mut self,
        identity: &Identity,
        key: PublicKey,
        role: Role,
    ) -> Result<Authored, WriteError> {
        self.require_admin(identity)?;
        if !self.is_member(&key) {
            return Err(WriteError::Membership(format!("{key} is not a member")));
        }
        self.meta_commit(identity, |tx, objs| {
            tx.put(&objs.members, key.to_string(), role.as_str())
                .map_err(am)
        })
    }

    /// Renames the group (admins only).
    pub fn rename(&mut self, identity: &Identity, name: &str) -> Result<Authored, WriteError> {
        check_name(name)?;
        self.require_admin(identity)?;
        self.meta_commit(identity, |tx, _| tx.put(ROOT, meta::NAME, name).map_err(am))
    }

    /// Whether members added from now on receive older history (admins only).
    pub fn set_history_for_new_members(
        &mut self,
        identity: &Identity,
        on: bool,
    ) -> Result<Authored, WriteError> {
        self.require_admin(identity)?;
        self.meta_commit(identity, |tx, objs| {
            tx.put(&objs.settings, meta::HISTORY_FOR_NEW_MEMBERS, on)
                .map_err(am)
        })
    }

    fn writer_role(&self, key: &PublicKey) -> Result<Role, WriteError> {
        self.role_of(key).ok_or(WriteError::NotMember)
    }

    fn require_admin(&self, identity: &Identity) -> Result<(), WriteError> {
        if !self.kind.is_group() {
            return Err(WriteError::NotAGroup);
        }
        match self.writer_role(&identity.public())? {
            Role::Admin => Ok(()),
            Role::Member => Err(WriteError::NotAdmin),
        }
    }

    /// Finds a message you may act on: its segment, object id and content.
    fn locate(
        &self,
        identity: &Identity,
        id: MessageId,
    ) -> Result<(SegmentIndex, ObjId, Message), WriteError> {
        self.writer_role(&identity.public())?;
        for segment in self.history() {
            if let Ok(Some((Value::Object(ObjType::Map), obj))) =
                segment.doc.get(ROOT, id.to_string())
            {
                let msg = segment.message(&id).ok_or(WriteError::UnknownMessage(id))?;
                return Ok((segment.index, obj, msg));
            }
        }
        Err(WriteError::UnknownMessage(id))
    }

    /// The newest segment, or the next one once it is full; never one older
    /// than a member's first entitled segment.
    fn segment_for_write(&self) -> Result<SegmentIndex, WriteError> {
        let floor = self
            .group_info_shared()
            .map(|i| {
                i.members
                    .iter()
                    .map(|m| m.joined_segment)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let newest = match self.history().last() {
            None => 0,
            Some(seg) if seg.message_count() >= self.segment_capacity => seg.index + 1,
            Some(seg) => seg.index,
        };
        // A floor beyond the next segment (an admin's mistake or malice)
        // would leave a gap receivers wait on forever.
        let next = self.history().last().map_or(0, |s| s.index + 1);
        let index = newest.max(floor.min(next));
        if index >= MAX_SEGMENT {
            return Err(WriteError::Invalid("this chat is full".into()));
        }
        Ok(index)
    }

    fn meta_commit(
        &mut self,
        identity: &Identity,
        f: impl FnOnce(&mut Transaction<'_>, &MetaObjects) -> Result<(), WriteError>,
    ) -> Result<Authored, WriteError> {
        let doc = &self.meta().ok_or(WriteError::NotAGroup)?.doc;
        let objs = MetaObjects {
            members: meta::container(doc, meta::MEMBERS).ok_or(WriteError::NotAGroup)?,
            added_by: meta::container(doc, meta::ADDED_BY).ok_or(WriteError::NotAGroup)?,
            joined: meta::container(doc, meta::JOINED_SEGMENT).ok_or(WriteError::NotAGroup)?,
            settings: meta::container(doc, meta::SETTINGS).ok_or(WriteError::NotAGroup)?,
            removed: meta::container(doc, meta::REMOVED).ok_or(WriteError::NotAGroup)?,
        };
        self.commit(identity, META_SEGMENT, |tx| f(tx, &objs))
            .map(|(_, a)| a)
    }

    /// Runs `f` in a transaction on `segment` as `identity`, built on
    /// everything the segment holds, commits and signs.
    pub(crate) fn commit<T>(
        &mut self,
        identity: &Identity,
        index: SegmentIndex,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, WriteError>,
    ) -> Result<(T, Authored), WriteError> {
        self.commit_on(identity, index, Base::Everything, f)
    }

    /// [`ChatReplica::commit`] on the chosen [`Base`].
    fn commit_on<T>(
        &mut self,
        identity: &Identity,
        index: SegmentIndex,
        base: Base,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, WriteError>,
    ) -> Result<(T, Authored), WriteError> {
        let meta_heads = if index != META_SEGMENT && self.kind.is_group() {
            self.meta().map(|m| m.heads()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let chat = self.id;
        let segment = self
            .segments
            .entry(index)
            .or_insert_with(|| Segment::new(index));
        let actor = identity.actor();
        let lean = match base {
            Base::Settled(now_ms) => segment.lean_base(&actor, now_ms),
            Base::Everything => None,
        };
        segment.doc.set_actor(actor);
        let mut tx = match lean {
            Some(deps) => {
                let deps: Vec<automerge::ChangeHash> = deps.into_iter().map(Into::into).collect();
                segment
                    .doc
                    .transaction_at(automerge::PatchLog::inactive(), &deps)
                    .map_err(|e| WriteError::Automerge(e.to_string()))?
            }
            None => segment.doc.transaction(),
        };
        let value = match f(&mut tx) {
            Ok(v) => v,
            Err(e) => {
                tx.rollback();
                return Err(e);
            }
        };
        if tx.pending_ops() == 0 {
            tx.rollback();
            return Err(WriteError::Invalid("nothing to change".into()));
        }
        tx.commit_with(CommitOptions::default().with_message(binding(index, &meta_heads)));
        let change = segment
            .doc
            .get_last_local_change()
            .ok_or_else(|| WriteError::Automerge("commit produced no change".into()))?;
        let signed = SignedChange::sign(identity, chat, index, meta_heads, &change);
        // Local writes obey exactly the rules receivers enforce.
        let hash = self
            .accept_local(&signed)
            .map_err(|why| WriteError::Automerge(format!("own change refused: {why}")))?;
        Ok((
            value,
            Authored {
                change: signed,
                hash,
            },
        ))
    }
}

/// What a local change is built on (its Automerge dependencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Everything the segment holds: the current heads.
    Everything,
    /// The heads settled at this time (ms) and the writer's own last
    /// change, where [`Segment::lean_base`] allows it (a new message).
    Settled(i64),
}

struct MetaObjects {
    members: ObjId,
    added_by: ObjId,
    joined: ObjId,
    settings: ObjId,
    removed: ObjId,
}

fn check_name(name: &str) -> Result<(), WriteError> {
    if name.trim().is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
        return Err(WriteError::Invalid(format!(
            "a group name is 1 to {MAX_GROUP_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

//! Read-side views for UIs: history, chat list with unread counts, group
//! info, and export to standard Automerge files.

use std::path::Path;

use meshchat_crdt::{ChatId, ChatKind, GroupInfo, Message, MessageId, PublicKey, META_SEGMENT};
use serde::{Deserialize, Serialize};

use super::Chats;
use crate::store::{DeliveryState, StoreError};

/// A message in a history listing, with its delivery state when it is ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The message.
    pub message: Message,
    /// Whether this node's user wrote it.
    pub outgoing: bool,
    /// For outgoing messages: the least-advanced state over the recipients
    /// tracked (the peer of a direct chat; group members with relays).
    pub delivery: Option<DeliveryState>,
}

/// One line of the chat list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSummary {
    /// The chat.
    pub id: ChatId,
    /// Who is in it.
    pub kind: ChatKind,
    /// A group's name.
    pub name: Option<String>,
    /// Number of messages.
    pub messages: usize,
    /// Messages by others not yet seen with `history`.
    pub unread: usize,
    /// The newest message.
    pub last: Option<Message>,
}

/// Where one message stands, per recipient (`meshchat info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The message.
    pub message: Message,
    /// Delivery state per tracked recipient.
    pub recipients: Vec<RecipientState>,
}

/// One recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    /// The recipient.
    pub peer: PublicKey,
    /// Its state.
    pub state: DeliveryState,
    /// Relays that signed custody receipts for it: (relay, held until ms).
    pub held_by: Vec<(PublicKey, i64)>,
}

/// What `export` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// Files written, relative to the export directory.
    pub files: Vec<String>,
    /// Messages in the transcript.
    pub messages: usize,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("no chat {0}")]
    UnknownChat(ChatId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Chats {
    /// A chat's messages, oldest first; the newest `limit` if given;
    /// optionally marks the chat read.
    pub(crate) fn history(
        &mut self,
        chat: &ChatId,
        limit: Option<usize>,
        mark_read: bool,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let me = self.me.public();
        let Some(replica) = self.replica(chat)? else {
            return Ok(None);
        };
        let mut messages = replica.messages();
        // Kept for the group's sake (others build on them), never shown.
        messages.retain(|m| m.author == me || !self.store.is_blocked(&m.author));
        let from_others = messages.iter().filter(|m| m.author != me).count() as u64;
        let skip = limit.map_or(0, |l| messages.len().saturating_sub(l));
        let mut out = Vec::with_capacity(messages.len() - skip);
        for message in messages.into_iter().skip(skip) {
            let outgoing = message.author == me;
            let delivery = if outgoing {
                self.store
                    .delivery(chat, &message.id)?
                    .into_iter()
                    .map(|(_, s)| s)
                    .min()
            } else {
                None
            };
            out.push(HistoryEntry {
                message,
                outgoing,
                delivery,
            });
        }
        if mark_read {
            if let Err(error) = self.mark_read(chat, from_others, &out) {
                // History is still served while storage refuses writes; the
                // chat stays unread until it takes them again.
                tracing::debug!(%chat, %error, "cannot mark the chat read");
            }
        }
        Ok(Some(out))
    }

    /// Records that the user saw `entries` and queues their read receipts.
    fn mark_read(
        &mut self,
        chat: &ChatId,
        from_others: u64,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        self.store.set_seen(chat, from_others)?;
        // Read receipts for what the user has now seen, once per message.
        for entry in entries.iter().filter(|e| !e.outgoing) {
            let key = (*chat, entry.message.id);
            if !self.read_receipts_queued.contains(&key) {
                self.store
                    .queue_receipt(&entry.message.author, chat, &entry.message.id)?;
                self.read_receipts_queued.insert(key);
            }
        }
        Ok(())
    }

    pub(crate) fn summaries(&mut self) -> Result<Vec<ChatSummary>, StoreError> {
        let me = self.me.public();
        let mut out = Vec::new();
        for (id, kind) in self.chat_ids()? {
            let seen = self.store.seen(&id)? as usize;
            let Some(replica) = self.replica(&id)? else {
                continue;
            };
            let mut messages = replica.messages();
            let name = replica.group_info().map(|i| i.name);
            messages.retain(|m| m.author == me || !self.store.is_blocked(&m.author));
            let from_others = messages.iter().filter(|m| m.author != me).count();
            out.push(ChatSummary {
                id,
                name,
                kind,
                messages: messages.len(),
                unread: from_others.saturating_sub(seen),
                last: messages.last().cloned(),
            });
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.last.as_ref().map(|m| m.sent_at_ms)));
        Ok(out)
    }

    pub(crate) fn message_info(
        &mut self,
        chat: &ChatId,
        id: &MessageId,
    ) -> Result<Option<MessageInfo>, StoreError> {
        let Some(message) = self.replica(chat)?.and_then(|r| r.message(id)) else {
            return Ok(None);
        };
        let custody = self.store.custody(chat, id)?;
        let recipients = self
            .store
            .delivery(chat, id)?
            .into_iter()
            .map(|(peer, state)| RecipientState {
                peer,
                state,
                held_by: custody
                    .iter()
                    .filter(|(r, _, _)| *r == peer)
                    .map(|(_, relay, until)| (*relay, *until))
                    .collect(),
            })
            .collect();
        Ok(Some(MessageInfo {
            message,
            recipients,
        }))
    }

    pub(crate) fn group_info(&mut self, chat: &ChatId) -> Result<Option<GroupInfo>, StoreError> {
        Ok(self.replica(chat)?.and_then(|r| r.group_info()))
    }

    /// Writes the chat's Automerge documents (`meta.automerge` for a group,
    /// `segment-NNNNNN.automerge` per history segment) and `transcript.txt`.
    pub(crate) fn export(
        &mut self,
        chat: &ChatId,
        dir: &Path,
    ) -> Result<ExportSummary, ExportError> {
        let replica = self.replica(chat)?.ok_or(ExportError::UnknownChat(*chat))?;
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ExportError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = Vec::new();
        for index in replica.segment_indices() {
            let name = if index == META_SEGMENT {
                "meta.automerge".to_owned()
            } else {
                format!("segment-{index:06}.automerge")
            };
            let bytes = replica.save_segment(index).unwrap_or_default();
            let path = dir.join(&name);
            std::fs::write(&path, bytes).map_err(io(&path))?;
            files.push(name);
        }
        let messages = replica.messages();
        let mut transcript = String::new();
        if let Some(info) = replica.group_info() {
            transcript.push_str(&format!("# {}\n\n", info.name));
        }
        for m in &messages {
            let text = if m.deleted {
                "(deleted)"
            } else {
                m.text.as_str()
            };
            let edited = if m.edited_at_ms.is_some() {
                " (edited)"
            } else {
                ""
            };
            let reply = m
                .reply_to
                .map(|r| format!(" [reply to {}]", &r.to_string()[..8]))
                .unwrap_or_default();
            transcript.push_str(&format!(
                "{} {} {}{reply}: {text}{edited}\n",
                m.sent_at_ms,
                &m.id.to_string()[..8],
                m.author
            ));
        }
        let path = dir.join("transcript.txt");
        std::fs::write(&path, transcript).map_err(io(&path))?;
        files.push("transcript.txt".into());
        Ok(ExportSummary {
            files,
            messages: messages.len(),
        })
    }
}

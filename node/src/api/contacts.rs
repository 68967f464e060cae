//! `node.contacts()`: the people the user knows (add, list, remove, block),
//! invites, and message requests from people who are not contacts.

use libp2p::{multiaddr::Protocol, Multiaddr};
use meshchat_crdt::ChatId;

use super::{
    errors::{
        key_of, shared_into, sort, ErrorCode, NotEd25519, PeerError, ReadError, StorageError,
    },
    Command, Node, NodeError, Stopped,
};
use crate::{
    chats::RequestSummary,
    command::RequestCommand,
    social::invite::Invite,
    social::{SafetyNumberReport, SocialCommand},
    store::Contact,
    PeerId,
};

/// The contacts of a node: `node.contacts()`.
#[derive(Debug, Clone, Copy)]
pub struct Contacts<'a> {
    node: &'a Node,
}

impl<'a> Contacts<'a> {
    pub(super) fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// Adds or updates a contact. Addresses are merged with known ones.
    pub async fn add(
        &self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
    ) -> Result<Contact, AddContactError> {
        self.add_with_relays(peer, name, addrs, Vec::new()).await
    }

    /// Adds or updates a contact, with the relays that hold its mail while
    /// it is offline (each address ending in `/p2p/<RELAY>`).
    pub async fn add_with_relays(
        &self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
        relays: Vec<Multiaddr>,
    ) -> Result<Contact, AddContactError> {
        check_contact(&peer, &addrs, &relays)?;
        let contact = self
            .node
            .call(|reply| Command::AddContact {
                peer,
                name,
                addrs,
                relays,
                reply,
            })
            .await
            .map_err(AddContactError::from_reply);
        self.node.media_contacts_changed().await;
        contact
    }

    /// Adds (or updates) a contact from its invite: its addresses, relays,
    /// suggested name (unless `name` is given), and the delivery tokens that
    /// let this node leave mail for it at its relays.
    pub async fn add_from_invite(
        &self,
        invite: Invite,
        name: Option<String>,
    ) -> Result<Contact, AddContactError> {
        check_contact(&invite.peer, &invite.addrs, &invite.relays)?;
        let contact = self
            .node
            .call(|reply| {
                Command::Social(SocialCommand::AddFromInvite {
                    invite,
                    name,
                    reply,
                })
            })
            .await
            .map_err(AddContactError::from_reply);
        self.node.media_contacts_changed().await;
        contact
    }

    /// All contacts (blocked peers included, marked).
    pub async fn list(&self) -> Result<Vec<Contact>, ReadError> {
        self.node
            .call(|reply| Command::Contacts { reply })
            .await
            .map_err(ReadError::from_reply)
    }

    /// Removes a contact (its chat history stays). Returns whether it was one.
    pub async fn remove(&self, peer: PeerId) -> Result<bool, PeerError> {
        key_of(&peer)?;
        let removed = self
            .node
            .call(|reply| Command::Social(SocialCommand::RemoveContact { peer, reply }))
            .await
            .map_err(|e| PeerError::from_reply(e, peer));
        self.node.media_contacts_changed().await;
        removed
    }

    /// Blocks or unblocks a peer. A blocked peer's messages, receipts and
    /// presence are dropped, it is disconnected, and it gets nothing from
    /// this node (its messages in shared groups are kept but not shown).
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), PeerError> {
        key_of(&peer)?;
        let done = self
            .node
            .call(|reply| {
                Command::Social(SocialCommand::SetBlocked {
                    peer,
                    blocked,
                    reply,
                })
            })
            .await
            .map_err(|e| PeerError::from_reply(e, peer));
        self.node.media_contacts_changed().await;
        done
    }

    /// An invite to this node: PeerId, listen addresses, relays, name and
    /// delivery tokens.
    pub async fn invite(&self) -> Result<Invite, Stopped> {
        self.node
            .call(|reply| Command::Social(SocialCommand::Invite { reply }))
            .await
            .map_err(|_| Stopped)
    }

    /// The safety number between this node and `peer` (a fingerprint of
    /// both identity keys; see `meshchat_crdt::e2e::SafetyNumber`), with
    /// both encryption keys as this node holds them. Both sides show the
    /// same digits; they change when either identity key changes.
    pub async fn safety_number(&self, peer: PeerId) -> Result<SafetyNumberReport, PeerError> {
        let theirs = key_of(&peer)?;
        let me = self.node.peer_id();
        let mine = key_of(&me)?;
        let number = meshchat_crdt::e2e::SafetyNumber::between(&mine, &theirs);
        let profiles = self.node.profiles();
        let encryption_key =
            |held: Option<crate::social::PeerProfile>| held.and_then(|p| p.profile.encryption_key);
        Ok(SafetyNumberReport {
            peer,
            safety_number: number.to_string(),
            digits: number.digits().to_owned(),
            their_encryption_key: encryption_key(profiles.get(Some(peer)).await?),
            my_encryption_key: encryption_key(profiles.get(None).await?),
        })
    }

    /// Message requests waiting for the user: strangers who wrote, and
    /// groups someone who is not a contact added this node to. Newest first.
    pub async fn requests(&self) -> Result<Vec<RequestSummary>, ReadError> {
        self.node
            .call(|reply| Command::Requests(RequestCommand::List { reply }))
            .await
            .map_err(ReadError::from_reply)
    }

    /// Accepts a message request: the chat is created with what was kept,
    /// and from now on its messages arrive like any other.
    pub async fn accept_request(&self, chat: ChatId) -> Result<(), RequestError> {
        self.node
            .call(|reply| Command::Requests(RequestCommand::Accept { chat, reply }))
            .await
            .map_err(|e| RequestError::from_reply(e, chat))
    }

    /// Deletes a message request, and with `block` blocks its sender.
    pub async fn delete_request(&self, chat: ChatId, block: bool) -> Result<(), RequestError> {
        self.node
            .call(|reply| Command::Requests(RequestCommand::Delete { chat, block, reply }))
            .await
            .map_err(|e| RequestError::from_reply(e, chat))
    }
}

/// What the actor checks of a new contact, checked before asking it, so
/// each mistake has its own variant.
fn check_contact(
    peer: &PeerId,
    addrs: &[Multiaddr],
    relays: &[Multiaddr],
) -> Result<(), AddContactError> {
    key_of(peer)?;
    if let Some(bad) = relays.iter().find(|a| crate::config::peer_of(a).is_none()) {
        return Err(AddContactError::RelayWithoutPeer(bad.clone()));
    }
    if let Some(bad) = addrs
        .iter()
        .find(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p != *peer))
    {
        return Err(AddContactError::AddressOfAnotherPeer(bad.clone()));
    }
    Ok(())
}

/// `contacts().add`, `add_with_relays` or `add_from_invite` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddContactError {
    /// The peer id is no meshchat identity.
    #[error(transparent)]
    NotEd25519(#[from] NotEd25519),
    /// A relay address does not say which relay it is.
    #[error("relay address {0} must end with /p2p/<RELAY_PEER_ID>")]
    RelayWithoutPeer(Multiaddr),
    /// An address ends in another peer's id.
    #[error("{0} belongs to another peer; give the contact's own addresses")]
    AddressOfAnotherPeer(Multiaddr),
    /// The node refused the contact for a reason checked only there.
    #[error("the contact was refused: {0}")]
    Refused(String),
    /// Storage failed: the contact was not saved.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl AddContactError {
    fn from_reply(e: NodeError) -> Self {
        match sort(e) {
            Ok(shared) => shared.into(),
            Err(other) => Self::Refused(other.to_string()),
        }
    }
}

/// `contacts().accept_request` or `delete_request` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No message request for that chat.
    #[error("no message request for {0}; see `meshchat requests`")]
    NoSuchRequest(ChatId),
    /// Storage failed: nothing was changed.
    #[error(transparent)]
    Storage(StorageError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(Stopped),
}

impl RequestError {
    fn from_reply(e: NodeError, chat: ChatId) -> Self {
        match sort(e) {
            Ok(shared) => shared.into(),
            Err(_) => Self::NoSuchRequest(chat),
        }
    }
}

shared_into!(AddContactError, RequestError);

impl ErrorCode for AddContactError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotEd25519(e) => e.code(),
            Self::RelayWithoutPeer(_) | Self::AddressOfAnotherPeer(_) | Self::Refused(_) => {
                "invalid"
            }
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

impl ErrorCode for RequestError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchRequest(_) => "not_found",
            Self::Storage(e) => e.code(),
            Self::Stopped(e) => e.code(),
        }
    }
}

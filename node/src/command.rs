//! The commands handles send to the actor, and [`Caller`], the narrowest
//! way to send one (what the media task and the API's handles share).

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{ChatId, GroupInfo, MessageId, PublicKey};
use tokio::sync::{mpsc, oneshot};

use crate::{
    chats::{
        ChatOp, ChatSummary, ExportSummary, HistoryEntry, MessageInfo, OpOutcome, RequestSummary,
    },
    events::Status,
    reply::{NodeError, Reply},
    store::Contact,
};

/// Commands from handles to the actor.
pub(crate) enum Command {
    Op {
        chat: ChatId,
        op: ChatOp,
        reply: Reply<OpOutcome>,
    },
    CreateGroup {
        name: String,
        members: Vec<PublicKey>,
        reply: Reply<ChatId>,
    },
    GroupInfo {
        chat: ChatId,
        reply: Reply<GroupInfo>,
    },
    MessageInfo {
        chat: ChatId,
        message: MessageId,
        reply: Reply<MessageInfo>,
    },
    Export {
        chat: ChatId,
        dir: std::path::PathBuf,
        reply: Reply<ExportSummary>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    DirectChat {
        peer: PublicKey,
        reply: Reply<ChatId>,
    },
    Resolve {
        query: String,
        reply: Reply<ChatId>,
    },
    AddContact {
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
        relays: Vec<Multiaddr>,
        reply: Reply<Contact>,
    },
    Contacts {
        reply: Reply<Vec<Contact>>,
    },
    Chats {
        reply: Reply<Vec<ChatSummary>>,
    },
    History {
        chat: ChatId,
        limit: Option<usize>,
        mark_read: bool,
        reply: Reply<Vec<HistoryEntry>>,
    },
    Status {
        reply: Reply<Status>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Social(crate::social::SocialCommand),
    Requests(RequestCommand),
    GossipScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
}

/// What a handle asks of the node's message requests.
pub(crate) enum RequestCommand {
    List {
        reply: Reply<Vec<RequestSummary>>,
    },
    Accept {
        chat: ChatId,
        reply: Reply<()>,
    },
    Delete {
        chat: ChatId,
        block: bool,
        reply: Reply<()>,
    },
}

/// Sends commands to the actor and awaits their answers.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
}

impl Caller {
    /// Sends the command `make` builds around a reply channel; its answer.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::ActorDropped)?;
        rx.await.map_err(|_| NodeError::ActorDropped)?
    }
}

//! meshchat's runtime. One actor task owns the libp2p swarm and the sled
//! store; a cloneable [`Node`] handle and its sub-handles ([`api`]:
//! `node.chats()`, `.groups()`, `.contacts()`, `.profiles()`, `.files()`,
//! `.network()`) are the whole Rust API, each operation with its own error
//! type. The daemon's local control API ([`control`]) exposes the same
//! operations to the CLI, one request per operation.

mod actor;
pub mod api;
mod behaviour;
mod chats;
mod clock;
mod command;
pub mod config;
pub mod control;
mod data_dir;
mod direct;
mod disk;
mod durable;
mod engine;
mod events;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod keys;
pub mod limits;
pub mod mailbox;
pub mod media;
pub mod protocol;
mod rejections;
mod reply;
pub mod scoring;
mod social;
mod store;
pub mod transport;

pub use actor::{spawn, spawn_with};
pub use api::{Event, Node, RelayMetrics, Sent, SpawnError, Status, Traffic};
pub use behaviour::BehaviourError;
pub use chats::{
    ChatSummary, ExportSummary, HistoryEntry, MessageInfo, OpOutcome, RecipientState,
    RequestSummary, MAX_REQUESTS, MAX_REQUEST_BYTES, MAX_REQUEST_CHANGES,
};
pub use config::{NodeConfig, DEFAULT_UI_LISTEN};
pub use data_dir::{DataDir, DataDirError, DirLock, LocalProfile};
pub use disk::{StorageFault, StorageState};
pub use keys::{peer_id_of, public_key_of};
pub use social::invite;
pub use social::presence::{LastSeen, LastSeenPrivacy};
pub use social::{PeerProfile, ProfileUpdate, SafetyNumberReport, MAX_AVATAR_BYTES};
pub use store::{Contact, DeliveryState, StoreError};
pub use transport::SpawnOptions;

pub use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
pub use meshchat_crdt as crdt;

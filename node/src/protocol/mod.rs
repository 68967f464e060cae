//! Wire formats: the request-response protocols `/meshchat/sync/1`
//! (changes, sync, receipts), `/meshchat/notice/1` (profiles, presence,
//! typing) and `/meshchat/mailbox/2`, their bounded codec, signed records,
//! sealed mail, and what group topics carry.

mod codec;
mod mailbox;
mod notice;
mod records;
mod sealed_mail;
mod topic;
mod wire;

pub use codec::{decode_frame, encode_frame, Inbound, MailboxCodec, NoticeCodec, SyncCodec};
pub use mailbox::{
    DepositItem, DepositOutcome, Envelope, MailboxRequest, MailboxResponse,
    MAILBOX_MAX_REQUEST_BYTES, MAILBOX_MAX_RESPONSE_BYTES, MAILBOX_PAGE_BYTES, MAILBOX_PROTOCOL,
    MAX_DEPOSITS_PER_BATCH, MAX_TOKENS_PER_REQUEST,
};
pub use notice::{Notice, NoticeResponse, MAX_NOTICE_BYTES, NOTICE_PROTOCOL};
pub use records::{
    peer_of_profile_key, profile_dht_key, Heartbeat, Profile, RecordError, SignedProfile,
    MAX_NAME_CHARS, MAX_PROFILE_BYTES, MAX_PROFILE_RECORD_BYTES, MAX_PROFILE_RELAYS,
    MAX_STATUS_CHARS,
};
pub use sealed_mail::{open_envelope, seal_envelope, EnvelopeError, MAX_ENVELOPE_ATTACHES};
pub use topic::group_topic;
pub use wire::{
    GossipMessage, GossipPayload, RejectedChange, Request, Response, WireError, MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES, SYNC_PROTOCOL, WIRE_VERSION,
};

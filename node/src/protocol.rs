//! The wire formats, gathered in one place for tests, fuzzing and other
//! implementations: `/meshchat/sync/1` (changes, sync, receipts) and
//! `/meshchat/notice/1` (profiles, presence, typing) from `direct/`, group
//! gossip from `groups/`, `/meshchat/mailbox/2` and sealed mail from
//! `mailbox/`, signed records from `social/`, and the bounded framing all
//! of them share (`framing.rs`). Each lives with its subsystem; this module
//! only names them, and nothing inside the node imports through it.

pub use crate::{
    direct::{
        notice_wire::{Notice, NoticeCodec, NoticeResponse, MAX_NOTICE_BYTES, NOTICE_PROTOCOL},
        sync_wire::{
            RejectedChange, Request, Response, SyncCodec, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
            SYNC_PROTOCOL,
        },
    },
    framing::{decode_frame, encode_frame, Inbound, WireError, WIRE_VERSION},
    groups::wire::{group_topic, GossipMessage, GossipPayload},
    mailbox::{
        sealed_mail::{open_envelope, seal_envelope, EnvelopeError, MAX_ENVELOPE_ATTACHES},
        wire::{
            DepositItem, DepositOutcome, Envelope, MailboxCodec, MailboxRequest, MailboxResponse,
            MAILBOX_MAX_REQUEST_BYTES, MAILBOX_MAX_RESPONSE_BYTES, MAILBOX_PAGE_BYTES,
            MAILBOX_PROTOCOL, MAX_DEPOSITS_PER_BATCH, MAX_FETCH_ITEMS, MAX_TOKENS_PER_REQUEST,
        },
    },
    social::records::{
        peer_of_profile_key, profile_dht_key, Heartbeat, Profile, RecordError, SignedProfile,
        MAX_NAME_CHARS, MAX_PROFILE_BYTES, MAX_PROFILE_RECORD_BYTES, MAX_PROFILE_RELAYS,
        MAX_STATUS_CHARS,
    },
};

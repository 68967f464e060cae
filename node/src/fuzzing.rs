//! Fuzz harness for every decoder that reads bytes from a peer or from the
//! control socket (shared by `fuzz/fuzz_targets/wire_decoders.rs` and the
//! smoke test below). Decoders must refuse, never panic. The e2e records'
//! own target is `meshchat_crdt::fuzzing::e2e_records`.

use crate::{
    direct::{
        notice_wire::{Notice, NoticeResponse},
        sync_wire::{Request, Response},
    },
    framing::decode_frame,
    groups::wire::{GossipMessage, GossipPayload},
    mailbox::{
        sealed_mail::open_envelope,
        wire::{Envelope, MailboxRequest, MailboxResponse},
    },
    social::records::SignedProfile,
};

thread_local! {
    static KEYRING: meshchat_crdt::e2e::DeviceKeyring = meshchat_crdt::e2e::DeviceKeyring::generate();
    static SENDER_KEY: meshchat_crdt::e2e::SenderKey = meshchat_crdt::e2e::SenderKey::from_parts(
        meshchat_crdt::ChatId::from_bytes([3; 32]),
        meshchat_crdt::PublicKey::from_bytes([4; 32]),
        0,
        [6; 32],
    );
}

/// Feeds `data` to each decoder; the first byte picks a variation so the
/// fuzzer reaches each one with frames that start right.
pub fn wire_decoders(data: &[u8]) {
    let _ = decode_frame::<Request>(data);
    let _ = decode_frame::<Response>(data);
    let _ = decode_frame::<Notice>(data);
    let _ = decode_frame::<NoticeResponse>(data);
    let _ = decode_frame::<MailboxRequest>(data);
    let _ = decode_frame::<MailboxResponse>(data);
    let _ = decode_frame::<GossipMessage>(data);
    let _ = decode_frame::<Envelope>(data);
    // Mail as a recipient opens it: plain, or sealed to a device key.
    KEYRING.with(|keyring| {
        let me = meshchat_crdt::PublicKey::from_bytes([5; 32]);
        let _ = open_envelope(data, &me, keyring);
    });
    // The relay's blob-cache protocol, and its proof search in mail.
    let _ = ciborium::from_reader::<crate::media::relay_cache::CacheRequest, _>(data);
    let _ = ciborium::from_reader::<crate::media::relay_cache::CacheResponse, _>(data);
    let someone = meshchat_crdt::PublicKey::from_bytes([7; 32]);
    let _ = crate::media::relay_proof::envelope_attaches(
        data,
        &someone,
        &iroh_blobs::Hash::from_bytes([9; 32]),
    );
    // Sealed gossip as a member opens it (with the key its id names, as
    // `key_requests.rs` checks), then the payload inside.
    if let Ok(GossipMessage::Sealed(sealed)) = decode_frame::<GossipMessage>(data) {
        let key = SENDER_KEY.with(Clone::clone);
        let _ = sealed.open(&key);
    }
    if let Ok(payload) = decode_frame::<GossipPayload>(data) {
        for change in payload.changes {
            let _ = change.verify();
        }
    }
    if let Ok((signed, _)) = SignedProfile::from_bytes(data) {
        let _ = signed.verify();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::social::invite::Invite::decode(text);
        let _ = serde_json::from_str::<crate::control::RequestLine>(text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke_wire_decoders() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..2000 {
            let len = (state % 300) as usize;
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            // Half the frames carry the right version byte.
            if round % 2 == 0 && !data.is_empty() {
                data[0] = crate::framing::WIRE_VERSION;
            }
            super::wire_decoders(&data);
        }
    }
}

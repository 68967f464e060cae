//! What a relay demands before it holds a blob for someone, so that knowing
//! a hash never gets anyone the bytes:
//! - **a reason**: the recipient's mailbox holds mail from the requester
//!   that attaches the blob (a deposit: a change the requester signed,
//!   putting the blob's hash in a message). The recipient's delivery token
//!   (branch relay-limits) is the other accepted reason once it lands; see
//!   [`super::relay_cache::HoldProof`];
//! - **possession**: the requester serves the blob. When the relay does not
//!   have it yet it pulls it from the requester (verified), which proves
//!   it; when it has it already (held for someone else), it asks the
//!   requester for a few random chunks and verifies them against the hash.
//!   Without this, anyone could deposit a message naming a hash for a
//!   second identity of theirs and have the relay hand that identity the
//!   bytes it holds for someone else.

use iroh::{Endpoint, EndpointId};
use iroh_blobs::{
    get::fsm,
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
    Hash,
};
use meshchat_crdt::PublicKey;
use rand::Rng;

use super::blob_hash;
use crate::{
    framing::decode_frame, mailbox::wire::Envelope, mailbox::MailboxStore, store::StoreError,
};

/// Mail items read from a mailbox per page while looking for a deposit.
const PAGE_ITEMS: usize = 256;
/// Envelope bytes read per page.
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Mail items looked at, at most, per request: a recipient's mailbox is
/// bounded by the relay's quotas, but a request must stay cheap.
const MAX_SCANNED_ITEMS: usize = 4096;
/// Envelope bytes looked at, at most, per request.
const MAX_SCANNED_BYTES: usize = 32 * 1024 * 1024;
/// Random chunks a requester must produce to show it has a blob.
const PROBE_CHUNKS: usize = 8;
/// A BLAKE3 chunk.
const CHUNK_BYTES: u64 = 1024;
/// The message-map key under which an attachment names its blob.
const ATTACHMENT_HASH_KEY: &str = "hash";

/// Whether `recipient`'s mailbox holds mail from `sender` attaching `hash`
/// (among its first [`MAX_SCANNED_ITEMS`] items). Reads sled: run it off
/// the async threads.
pub(crate) fn deposit_attaches(
    mail: &MailboxStore,
    recipient: &PublicKey,
    sender: &PublicKey,
    hash: &Hash,
) -> Result<bool, StoreError> {
    let (mut after, mut items, mut bytes) = (None, 0, 0);
    loop {
        let (page, more) = mail.fetch(recipient, after, PAGE_ITEMS, PAGE_BYTES)?;
        for item in &page {
            items += 1;
            bytes += item.envelope.len();
            if item.sender == *sender && envelope_attaches(&item.envelope, sender, hash) {
                return Ok(true);
            }
        }
        after = page.last().map(|item| item.id);
        if !more || after.is_none() || items >= MAX_SCANNED_ITEMS || bytes >= MAX_SCANNED_BYTES {
            return Ok(false);
        }
    }
}

/// Whether `envelope` carries a change signed by `author` that puts
/// `hash` into an attachment. A sealed envelope cannot be read here: what
/// counts is the hash list its depositor put beside the ciphertext (the
/// caller has checked that `author` deposited it).
pub(crate) fn envelope_attaches(envelope: &[u8], author: &PublicKey, hash: &Hash) -> bool {
    let changes = match decode_frame::<Envelope>(envelope) {
        Ok(Envelope::Changes(changes)) => changes,
        Ok(Envelope::Sealed { attaches, .. }) => return attaches.contains(&blob_hash(*hash)),
        Err(_) => return false,
    };
    let wanted = blob_hash(*hash).to_string();
    changes.iter().any(|signed| {
        signed
            .verify()
            .is_ok_and(|v| v.author == *author && change_attaches(&v.change, &wanted))
    })
}

/// The blob hashes `changes` put into attachments: what a sealed envelope
/// names in the clear so that its relay can still be asked to hold them.
pub(crate) fn attached_hashes(
    changes: &[meshchat_crdt::SignedChange],
) -> Vec<meshchat_crdt::BlobHash> {
    let mut hashes = Vec::new();
    for signed in changes {
        let Ok(verified) = signed.decode_stored() else {
            continue;
        };
        let Some(expanded) = meshchat_crdt::expand(&verified.change) else {
            continue;
        };
        for op in &expanded.operations {
            let is_hash_key = matches!(&op.key, automerge::legacy::Key::Map(key) if key.as_str() == ATTACHMENT_HASH_KEY);
            if let (true, automerge::legacy::OpType::Put(automerge::ScalarValue::Str(s))) =
                (is_hash_key, &op.action)
            {
                if let Ok(hash) = s.parse() {
                    hashes.push(hash);
                }
            }
        }
    }
    hashes
}

/// Whether a change puts `wanted` (a blob hash, as attachments write it)
/// under an attachment's hash key.
fn change_attaches(change: &automerge::Change, wanted: &str) -> bool {
    // Remote bytes: expanded without ever panicking.
    let Some(expanded) = meshchat_crdt::expand(change) else {
        return false;
    };
    expanded.operations.iter().any(|op| {
        matches!(&op.key, automerge::legacy::Key::Map(key) if key.as_str() == ATTACHMENT_HASH_KEY)
            && matches!(&op.action, automerge::legacy::OpType::Put(automerge::ScalarValue::Str(s)) if s.as_str() == wanted)
    })
}

/// Asks `from` for [`PROBE_CHUNKS`] random chunks of `hash` (which is
/// `size` bytes) and verifies them: `Ok` when it has them.
pub(crate) async fn prove_possession(
    endpoint: &Endpoint,
    from: EndpointId,
    hash: Hash,
    size: u64,
) -> Result<(), String> {
    let connection = endpoint
        .connect(from, iroh_blobs::ALPN)
        .await
        .map_err(|e| format!("cannot reach the requester: {e}"))?;
    let result = probe(&connection, hash, size).await;
    connection.close(0u32.into(), b"done");
    result
}

async fn probe(
    connection: &iroh::endpoint::Connection,
    hash: Hash,
    size: u64,
) -> Result<(), String> {
    let chunks = size.div_ceil(CHUNK_BYTES).max(1);
    let mut ranges = ChunkRanges::empty();
    {
        let mut rng = rand::thread_rng();
        for _ in 0..PROBE_CHUNKS {
            ranges |= ChunkRanges::chunk(rng.gen_range(0..chunks));
        }
    }
    let request = GetRequest::blob_ranges(hash, ranges);
    let failed =
        |e: &dyn std::fmt::Display| format!("the requester did not prove it has the blob: {e}");
    let connected = fsm::start(connection.clone(), request, Default::default())
        .next()
        .await
        .map_err(|e| failed(&e))?;
    let fsm::ConnectedNext::StartRoot(root) = connected.next().await.map_err(|e| failed(&e))?
    else {
        return Err(failed(&"unexpected answer"));
    };
    let (content, claimed) = root.next().next().await.map_err(|e| failed(&e))?;
    if claimed != size {
        return Err(failed(&format!("it claims {claimed} bytes, not {size}")));
    }
    // Every chunk asked for must arrive and verify against the hash.
    let end = content.drain().await.map_err(|e| failed(&e))?;
    let fsm::EndBlobNext::Closing(closing) = end.next() else {
        return Err(failed(&"unexpected answer"));
    };
    let stats = closing.next().await.map_err(|e| failed(&e))?;
    if stats.counters.payload_bytes_read == 0 {
        return Err(failed(&"no data"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::{Attachment, BlobHash, ChatKind, ChatReplica, Identity};

    use super::*;
    use crate::framing::encode_frame;

    fn file_change(author: &Identity, hash: Hash) -> Vec<u8> {
        let peer = Identity::generate().public();
        let mut replica = ChatReplica::new(ChatKind::direct(author.public(), peer));
        let attachment = Attachment {
            hash: BlobHash::from_bytes(*hash.as_bytes()),
            size: 5,
            mime: "text/plain".into(),
            name: "a.txt".into(),
            preview: Vec::new(),
            key: None,
        };
        let written = replica
            .write_attachment(author, "", &attachment, 1)
            .unwrap();
        encode_frame(&Envelope::Changes(vec![written.change]))
    }

    #[test]
    fn a_deposit_attaches_only_the_hash_its_author_signed() {
        let alice = Identity::generate();
        let hash = Hash::new(b"photo");
        let envelope = file_change(&alice, hash);
        assert!(envelope_attaches(&envelope, &alice.public(), &hash));
        assert!(!envelope_attaches(
            &envelope,
            &alice.public(),
            &Hash::new(b"other")
        ));
        let mallory = Identity::generate();
        assert!(!envelope_attaches(&envelope, &mallory.public(), &hash));
        for garbage in [&[][..], &[1, 0xff, 0x13], &envelope[..envelope.len() / 2]] {
            assert!(!envelope_attaches(garbage, &alice.public(), &hash));
        }
    }
}

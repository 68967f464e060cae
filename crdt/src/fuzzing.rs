//! Fuzz harnesses, shared by the coverage-guided fuzz targets (`fuzz/`) and
//! by the smoke tests that run them in the ordinary test suite.
//!
//! [`hostile_changes`] builds *structured* hostile changes: it takes real
//! changes of a real group (a deterministic fixture: three members, a few
//! messages, an edit, a reaction, a removal), expands them into Automerge's
//! `ExpandedChange`, bends them as the fuzzer's bytes say (sequence numbers,
//! start ops, dependencies, objects, keys, values, predecessors, actors,
//! segments, metadata heads), signs them properly, and feeds them to
//! replicas. It panics (the fuzzer's signal) if any replica panics, if two
//! replicas fed the same changes in different orders disagree, or if a
//! replica reloaded from what another keeps disagrees with it.

use automerge::{
    legacy::{Key, ObjectId, OpId, OpType},
    ExpandedChange, ObjType, ScalarValue,
};

use crate::{
    chat::{ChatKind, ChatReplica},
    identity::Identity,
    ids::{ChangeHash, GroupNonce, MessageId, PublicKey},
    meta::GroupSettings,
    signed::{SignedChange, META_SEGMENT},
};

/// The fixture: a group and every change its replicas hold.
struct Fixture {
    kind: ChatKind,
    members: Vec<Identity>,
    changes: Vec<SignedChange>,
    /// A replica holding every fixture change.
    base: ChatReplica,
}

thread_local! {
    /// Built once per thread (a replica is not `Sync`; fuzzers run one thread).
    static FIXTURE: Fixture = build_fixture();
}

fn build_fixture() -> Fixture {
    let members: Vec<Identity> = (1..=4u8)
        .map(|i| Identity::with_epoch([i; 32], [i; 8]))
        .collect();
    let keys: Vec<PublicKey> = members[1..3].iter().map(Identity::public).collect();
    let (mut admin, genesis) = ChatReplica::create_group_with_nonce(
        &members[0],
        "fuzz",
        &keys,
        GroupSettings::default(),
        GroupNonce::from_bytes([9; 16]),
    )
    .expect("fixture group");
    admin.segment_capacity = 3;
    let kind = admin.kind().clone();
    let mut changes = vec![genesis.change];
    let mut others: Vec<ChatReplica> = (1..3)
        .map(|_| {
            let mut r = ChatReplica::new(kind.clone());
            r.segment_capacity = 3;
            r
        })
        .collect();
    let sync = |changes: &[SignedChange], admin: &mut ChatReplica, others: &mut [ChatReplica]| {
        admin.receive(changes.to_vec(), 0);
        for other in others.iter_mut() {
            other.receive(changes.to_vec(), 0);
        }
    };
    sync(&changes, &mut admin, &mut others);
    for (i, who) in [0usize, 1, 2, 1].into_iter().enumerate() {
        let id = MessageId::with_prefix(&members[who].public(), [i as u8; 8]);
        let written = if who == 0 {
            admin.write_message_with(&members[0], id, "hello", None, None, i as i64)
        } else {
            others[who - 1].write_message_with(&members[who], id, "hi", None, None, i as i64)
        }
        .expect("fixture message");
        changes.push(written.change);
        sync(&changes, &mut admin, &mut others);
    }
    let first = admin.messages()[0].id;
    let edit = admin
        .edit_message(&members[0], first, "hello, edited", 10)
        .expect("fixture edit");
    changes.push(edit.change);
    let react = others[0]
        .react(&members[1], first, Some("👍"))
        .expect("fixture reaction");
    changes.push(react.change);
    sync(&changes, &mut admin, &mut others);
    let removal = admin
        .remove_member(&members[0], members[2].public())
        .expect("fixture removal");
    changes.push(removal.change);
    sync(&changes, &mut admin, &mut others);
    Fixture {
        kind,
        members,
        changes,
        base: admin,
    }
}

/// Reads the fuzzer's bytes as a stream of choices.
struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let wide = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(wide) % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A value of any type Automerge knows, some of them oversize.
fn scalar(c: &mut Choices<'_>) -> ScalarValue {
    match c.below(10) {
        0 => {
            let n = c.below(40);
            ScalarValue::Str(String::from_utf8_lossy(&c.bytes(n)).into())
        }
        1 => ScalarValue::Str("x".repeat(70_000).into()),
        2 => ScalarValue::Int(i64::from(c.byte()) - 128),
        3 => ScalarValue::Uint(u64::from(c.byte())),
        4 => ScalarValue::Timestamp(i64::from(c.byte())),
        5 => ScalarValue::Boolean(c.byte() & 1 == 1),
        6 => {
            let n = c.below(64);
            ScalarValue::Bytes(c.bytes(n))
        }
        7 => ScalarValue::Counter(i64::from(c.byte()).into()),
        8 => ScalarValue::F64(f64::from(c.byte())),
        _ => ScalarValue::Null,
    }
}

/// A map key: a field name, a member's key, a message id, or junk.
fn key(c: &mut Choices<'_>, fx: &Fixture) -> String {
    const FIELDS: [&str; 17] = [
        "author",
        "sent_at",
        "text",
        "reply_to",
        "edited_at",
        "deleted",
        "reactions",
        "attachment",
        "key",
        "name",
        "members",
        "added_by",
        "joined_segment",
        "settings",
        "removed",
        "created_by",
        "history_for_new_members",
    ];
    match c.below(5) {
        0 | 1 => FIELDS[c.below(FIELDS.len())].to_string(),
        2 => fx.members[c.below(fx.members.len())].public().to_string(),
        3 => {
            let who = &fx.members[c.below(fx.members.len())];
            MessageId::with_prefix(&who.public(), [c.byte(); 8]).to_string()
        }
        _ => {
            let n = c.below(20);
            String::from_utf8_lossy(&c.bytes(n)).into()
        }
    }
}

/// Some op id: one of the fixture's (objects and values), or a stranger's.
fn op_id(c: &mut Choices<'_>, fx: &Fixture) -> OpId {
    let actor = match c.below(3) {
        0 => Identity::with_epoch([77; 32], [c.byte(); 8]).actor(),
        _ => fx.members[c.below(fx.members.len())].actor(),
    };
    OpId(u64::from(c.byte() % 40), actor)
}

/// Bends one fixture change as the choices say; returns it signed by the
/// member whose key its actor starts with (or by the first member).
fn bend(c: &mut Choices<'_>, fx: &Fixture) -> SignedChange {
    let template = &fx.changes[c.below(fx.changes.len())];
    let parsed = automerge::Change::try_from(&template.change[..]).expect("fixture change");
    let mut e: ExpandedChange = parsed.decode();
    e.hash = None;
    let mut signer = fx
        .members
        .iter()
        .find(|m| m.actor() == e.actor_id)
        .unwrap_or(&fx.members[0])
        .clone();
    let mut segment = template.segment;
    let mut meta_heads = template.meta_heads.clone();
    for _ in 0..=c.below(4) {
        match c.below(14) {
            0 => e.seq = u64::from(c.byte() % 8),
            1 => {
                let start = (e.start_op.get() + u64::from(c.byte() % 8)).saturating_sub(4);
                e.start_op = std::num::NonZeroU64::new(start.max(1)).expect("not zero");
            }
            2 => {
                e.deps.pop();
            }
            3 => {
                let other = &fx.changes[c.below(fx.changes.len())];
                e.deps.push(hash_of(other).into());
            }
            4 => e.deps.push(automerge::ChangeHash(
                c.bytes(32).try_into().expect("32 bytes"),
            )),
            5 => {
                let who = fx.members[c.below(fx.members.len())].clone();
                e.actor_id = who.actor();
                signer = who;
            }
            6 if !e.operations.is_empty() => {
                let i = c.below(e.operations.len());
                e.operations[i].obj = match c.below(3) {
                    0 => ObjectId::Root,
                    _ => ObjectId::Id(op_id(c, fx)),
                };
            }
            7 if !e.operations.is_empty() => {
                let i = c.below(e.operations.len());
                e.operations[i].key = Key::Map(key(c, fx).into());
            }
            8 if !e.operations.is_empty() => {
                let i = c.below(e.operations.len());
                e.operations[i].action = match c.below(6) {
                    0 => OpType::Delete,
                    1 => OpType::Make(ObjType::Map),
                    2 => OpType::Make(ObjType::List),
                    3 => OpType::Increment(1),
                    _ => OpType::Put(scalar(c)),
                };
            }
            9 if !e.operations.is_empty() => {
                let i = c.below(e.operations.len());
                let mut pred: Vec<OpId> = e.operations[i].pred.iter().cloned().collect();
                match c.below(3) {
                    0 => pred.clear(),
                    1 => pred.push(op_id(c, fx)),
                    _ => {
                        pred.pop();
                    }
                }
                e.operations[i].pred = pred.into();
            }
            10 if !e.operations.is_empty() => {
                let i = c.below(e.operations.len());
                match c.below(3) {
                    0 => {
                        e.operations.remove(i);
                    }
                    1 => {
                        let op = e.operations[i].clone();
                        e.operations.push(op);
                    }
                    _ => e.operations[i].insert = true,
                }
            }
            11 => {
                segment = match c.below(4) {
                    0 => META_SEGMENT,
                    1 => 0xFFFF_FFFE,
                    _ => c.byte().into(),
                }
            }
            12 => match c.below(3) {
                0 => meta_heads.clear(),
                1 => meta_heads.push(ChangeHash::from_bytes(c.bytes(32).try_into().expect("32"))),
                _ => meta_heads.push(hash_of(&fx.changes[0])),
            },
            _ => e.time = i64::from(c.byte()),
        }
    }
    // Most bent changes still bind their envelope (so they reach the deeper
    // checks); some do not.
    if !c.byte().is_multiple_of(8) {
        e.message = Some(crate::signed::binding(segment, &meta_heads));
    }
    // `Change::from` panics on out-of-order predecessors only; keep them sorted.
    for op in &mut e.operations {
        let mut pred: Vec<OpId> = op.pred.iter().cloned().collect();
        pred.sort();
        pred.dedup();
        op.pred = pred.into();
    }
    let change = automerge::Change::from(e);
    SignedChange::sign(&signer, template.chat, segment, meta_heads, &change)
}

fn hash_of(change: &SignedChange) -> ChangeHash {
    change.decode_stored().expect("fixture change decodes").hash
}

/// What a replica shows: compared across replicas.
fn visible(rep: &ChatReplica) -> impl PartialEq + std::fmt::Debug {
    (rep.messages(), rep.members(), rep.group_info(), rep.heads())
}

/// One fuzz case of structured hostile changes (see the module docs).
pub fn hostile_changes(data: &[u8]) {
    FIXTURE.with(|fx| hostile_changes_on(fx, data));
}

fn hostile_changes_on(fx: &Fixture, data: &[u8]) {
    let mut c = Choices { data };
    let mut batch = Vec::new();
    while !c.is_empty() && batch.len() < 8 {
        if c.byte().is_multiple_of(4) {
            // An honest fixture change, to mix with the hostile ones.
            batch.push(fx.changes[c.below(fx.changes.len())].clone());
        } else {
            batch.push(bend(&mut c, fx));
        }
    }
    // Replica A: the group, then the batch at once.
    let mut a = fx.base.clone();
    a.receive(batch.clone(), 0);
    // Replica B: the batch first, one change at a time backwards, then the
    // group (and the batch again: what was not kept is sent again).
    let mut b = ChatReplica::new(fx.kind.clone());
    for change in batch.iter().rev() {
        b.receive(vec![change.clone()], 0);
    }
    b.receive(fx.changes.clone(), 0);
    b.receive(batch.clone(), 0);
    a.receive(batch.clone(), 0);
    assert_eq!(visible(&a), visible(&b), "replicas diverged");
    // Replica C: loads what A keeps, as from A's own store.
    let mut kept = Vec::new();
    for index in a.segment_indices() {
        if let Some(segment) = a.segments.get(&index) {
            kept.extend(segment.signed.values().cloned());
        }
    }
    let mut c_rep = ChatReplica::new(fx.kind.clone());
    let loaded = c_rep.load(kept);
    assert!(loaded.rejected.is_empty(), "a kept change fails to load");
    assert_eq!(visible(&a), visible(&c_rep), "reload differs");
}

/// One fuzz case for `SignedChange` decoding and verification: any bytes as
/// a CBOR signed change, then as the raw change inside a signed change.
pub fn signed_change(data: &[u8]) {
    if let Ok(signed) = ciborium::from_reader::<SignedChange, _>(data) {
        let _ = signed.verify();
        let _ = signed.decode_stored();
    }
    FIXTURE.with(|fx| {
        let raw = SignedChange {
            chat: fx.kind.chat_id(),
            segment: 0,
            meta_heads: Vec::new(),
            change: data.to_vec(),
            signature: [0; 64],
        };
        let _ = raw.decode_stored();
        let _ = ChatReplica::new(fx.kind.clone()).load(vec![raw]);
    });
}

/// The e2e fixture: a recipient device, a sender key, and one valid record
/// of each kind sealed to or under them.
struct E2eFixture {
    me: PublicKey,
    keyring: crate::e2e::DeviceKeyring,
    key: crate::e2e::SenderKey,
    records: [Vec<u8>; 3],
}

fn build_e2e_fixture() -> E2eFixture {
    use crate::e2e::{DeviceKeyring, SealedBox, SealedChange, SenderKey, SignedKeyShare};
    let author = Identity::from_secret_bytes([11; 32]);
    let me = Identity::from_secret_bytes([12; 32]).public();
    let keyring = DeviceKeyring::from_bytes(&[&1u32.to_be_bytes()[..], &[13; 32]].concat())
        .expect("a one-entry keyring");
    let device_key = keyring.current().public();
    let key = SenderKey::from_parts(
        crate::ids::ChatId::from_bytes([14; 32]),
        author.public(),
        1,
        [15; 32],
    );
    let share = SignedKeyShare::seal(&author, &key, &[(me, device_key)]).expect("seals");
    let sealed = SealedChange::seal(&key, b"a signed change").expect("seals");
    let boxed = SealedBox::seal(E2E_BOX_CONTEXT, &me, &device_key, b"an envelope").expect("seals");
    E2eFixture {
        me,
        keyring,
        key,
        records: [share.to_bytes(), sealed.to_bytes(), boxed.to_bytes()],
    }
}

const E2E_BOX_CONTEXT: &[u8] = b"meshchat/fuzz";

thread_local! {
    static E2E_FIXTURE: E2eFixture = build_e2e_fixture();
}

/// Tries to decode and open `bytes` as each e2e record; true if any opened.
fn open_any(fx: &E2eFixture, bytes: &[u8]) -> [bool; 3] {
    use crate::e2e::{DeviceKeyring, SealedBox, SealedChange, SignedKeyShare};
    let share = SignedKeyShare::from_bytes(bytes)
        .ok()
        .and_then(|(signed, _)| signed.verify().ok())
        .is_some_and(|share| share.open(&fx.me, &fx.keyring).is_ok());
    let change = SealedChange::from_bytes(bytes).is_ok_and(|s| s.open(&fx.key).is_ok());
    let boxed = SealedBox::from_bytes(bytes)
        .is_ok_and(|b| b.open(E2E_BOX_CONTEXT, &fx.me, &fx.keyring).is_ok());
    let _ = DeviceKeyring::from_bytes(bytes);
    [share, change, boxed]
}

/// One fuzz case for the e2e decoders (`crate::e2e`): the first byte picks
/// raw bytes, or one of three valid records (key share, sealed change,
/// sealed box) bent at the positions and with the values the rest says.
/// Panics (the fuzzer's signal) if a decoder panics, or if a bent record
/// still opens: any change to a record's bytes must be refused.
pub fn e2e_records(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    E2E_FIXTURE.with(|fx| {
        let pick = usize::from(mode % 4);
        if pick == 3 {
            let _ = open_any(fx, rest);
            return;
        }
        let original = &fx.records[pick];
        let mut bent = original.clone();
        for edit in rest.chunks(3) {
            let [at_hi, at_lo, value] = [
                edit.first().copied().unwrap_or(0),
                edit.get(1).copied().unwrap_or(0),
                edit.get(2).copied().unwrap_or(0),
            ];
            let at = usize::from(u16::from_be_bytes([at_hi, at_lo]));
            match value {
                // Cut here.
                0 => bent.truncate(at % (bent.len() + 1)),
                // Append a byte.
                1 => bent.push(at_lo),
                _ if !bent.is_empty() => {
                    let i = at % bent.len();
                    bent[i] ^= value;
                }
                _ => {}
            }
        }
        let opened = open_any(fx, &bent);
        if bent != *original {
            assert!(!opened[pick], "a bent e2e record still opens");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_deterministic() {
        let again = build_fixture();
        let hashes = |f: &Fixture| f.changes.iter().map(hash_of).collect::<Vec<_>>();
        FIXTURE.with(|fx| {
            assert_eq!(hashes(fx), hashes(&again));
            assert!(fx.base.messages().len() >= 3);
        });
    }

    #[test]
    fn the_e2e_fixture_records_open() {
        E2E_FIXTURE.with(|fx| {
            for (pick, record) in fx.records.iter().enumerate() {
                assert!(open_any(fx, record)[pick], "record {pick}");
            }
        });
    }

    #[test]
    fn smoke_e2e_records() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let len = 1 + (state % 40) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            e2e_records(&data);
        }
    }

    #[test]
    fn smoke_hostile_changes() {
        // A short, deterministic run (the real campaign is `cargo fuzz`):
        // every input derived from a simple generator.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..300 {
            let len = 8 + (state % 120) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            hostile_changes(&data);
            signed_change(&data);
            e2e_records(&data);
        }
    }
}

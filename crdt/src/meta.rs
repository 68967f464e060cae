//! A group's metadata document: name, members with roles, settings.
//!
//! Schema (root map), all created by the group's first ("genesis") change:
//! `created_by` (hex key), `nonce` (hex), `name` (str), `members` (map: hex
//! key → "admin" | "member"), `added_by` (map: hex key → hex key),
//! `joined_segment` (map: hex key → uint), `settings` (map, see
//! [`GroupSettings`]).
//!
//! Every later change is checked against the state *at its dependencies*, the
//! state its author saw, so every replica reaches the same verdict. Concurrent
//! membership edits then resolve by Automerge's deterministic map semantics
//! (a put concurrent with a delete survives: an add wins over a remove).

use std::collections::BTreeMap;

use automerge::{
    legacy::{Key, ObjectId, OpType},
    transaction::Transactable,
    Automerge, ChangeHash as AmHash, ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef, Value,
    ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    ids::{ChatId, PublicKey},
    rules::{expand, RuleViolation},
    signed::SegmentIndex,
};

pub(crate) const CREATED_BY: &str = "created_by";
pub(crate) const NONCE: &str = "nonce";
pub(crate) const NAME: &str = "name";
pub(crate) const MEMBERS: &str = "members";
pub(crate) const ADDED_BY: &str = "added_by";
pub(crate) const JOINED_SEGMENT: &str = "joined_segment";
pub(crate) const SETTINGS: &str = "settings";
pub(crate) const HISTORY_FOR_NEW_MEMBERS: &str = "history_for_new_members";

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 256;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May add and remove members, promote, rename, change settings, delete any message.
    Admin,
    /// May write, edit and delete its own messages, react, leave.
    Member,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// Group settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Whether a new member receives the history from before it joined.
    pub history_for_new_members: bool,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            history_for_new_members: true,
        }
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Their key.
    pub key: PublicKey,
    /// Their role.
    pub role: Role,
    /// Who added them (none for the creator).
    pub added_by: Option<PublicKey>,
    /// The first history segment they are entitled to (0 = all history).
    pub joined_segment: SegmentIndex,
}

/// The state of a group's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Display name.
    pub name: String,
    /// Who created it.
    pub creator: PublicKey,
    /// Members, by key.
    pub members: Vec<Member>,
    /// Settings.
    pub settings: GroupSettings,
}

/// The chat id of a group: binds the creator, so nobody else can write its genesis.
pub(crate) fn group_id(creator: &PublicKey, nonce: &[u8; 16]) -> ChatId {
    let mut hasher = Sha256::new();
    hasher.update(b"meshchat/group/v1");
    hasher.update(creator.as_bytes());
    hasher.update(nonce);
    ChatId::from_bytes(hasher.finalize().into())
}

/// Writes the genesis change's content.
pub(crate) fn write_genesis(
    tx: &mut impl Transactable,
    creator: &PublicKey,
    nonce: &[u8; 16],
    name: &str,
    members: &[PublicKey],
    settings: &GroupSettings,
) -> Result<(), automerge::AutomergeError> {
    tx.put(ROOT, CREATED_BY, creator.to_string())?;
    tx.put(ROOT, NONCE, crate::ids::to_hex(nonce))?;
    tx.put(ROOT, NAME, name)?;
    let roles = tx.put_object(ROOT, MEMBERS, ObjType::Map)?;
    let added_by = tx.put_object(ROOT, ADDED_BY, ObjType::Map)?;
    let joined = tx.put_object(ROOT, JOINED_SEGMENT, ObjType::Map)?;
    let config = tx.put_object(ROOT, SETTINGS, ObjType::Map)?;
    tx.put(
        &config,
        HISTORY_FOR_NEW_MEMBERS,
        settings.history_for_new_members,
    )?;
    tx.put(&roles, creator.to_string(), Role::Admin.as_str())?;
    for member in members.iter().filter(|m| *m != creator) {
        tx.put(&roles, member.to_string(), Role::Member.as_str())?;
        tx.put(&added_by, member.to_string(), creator.to_string())?;
        tx.put(&joined, member.to_string(), ScalarValue::Uint(0))?;
    }
    Ok(())
}

pub(crate) fn container(doc: &Automerge, key: &str) -> Option<ObjId> {
    match doc.get(ROOT, key).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

fn str_at(doc: &Automerge, obj: &ObjId, key: &str, heads: Option<&[AmHash]>) -> Option<String> {
    let got = match heads {
        Some(h) => doc.get_at(obj, key, h),
        None => doc.get(obj, key),
    };
    match got.ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The string values of a map, now or as at `heads`, in one pass (a `get`
/// per key would cost time proportional to the map for each key).
fn map_strings(doc: &Automerge, obj: &ObjId, heads: Option<&[AmHash]>) -> Vec<(String, String)> {
    let range = match heads {
        Some(h) => doc.map_range_at(obj, .., h),
        None => doc.map_range(obj, ..),
    };
    range
        .filter_map(|item| match item.value {
            ValueRef::Scalar(ScalarValueRef::Str(s)) => {
                Some((item.key.into_owned(), s.into_owned()))
            }
            _ => None,
        })
        .collect()
}

/// Members and roles, now or as at `heads`. If no admin remains (concurrent
/// demotions), the member with the smallest key is treated as admin, the same
/// on every replica.
pub(crate) fn roles_at(doc: &Automerge, heads: Option<&[AmHash]>) -> BTreeMap<PublicKey, Role> {
    let Some(members) = container(doc, MEMBERS) else {
        return BTreeMap::new();
    };
    let mut roles: BTreeMap<PublicKey, Role> = map_strings(doc, &members, heads)
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, Role::parse(&v)?)))
        .collect();
    if !roles.values().any(|r| *r == Role::Admin) {
        if let Some(first) = roles.values_mut().next() {
            *first = Role::Admin;
        }
    }
    roles
}

/// The creator and nonce recorded by the genesis change.
pub(crate) fn founder(doc: &Automerge) -> Option<(PublicKey, crate::ids::GroupNonce)> {
    let creator = str_at(doc, &ROOT, CREATED_BY, None)?.parse().ok()?;
    let nonce = str_at(doc, &ROOT, NONCE, None)?.parse().ok()?;
    Some((creator, nonce))
}

/// Whether `key` is or ever was a member: the creator, or anyone an admin added.
pub(crate) fn ever_member(doc: &Automerge, key: &PublicKey) -> bool {
    founder(doc).is_some_and(|(creator, _)| creator == *key)
        || container(doc, ADDED_BY)
            .is_some_and(|m| matches!(doc.get(&m, key.to_string()), Ok(Some(_))))
}

/// The full metadata state.
pub(crate) fn info(doc: &Automerge) -> Option<GroupInfo> {
    let creator = str_at(doc, &ROOT, CREATED_BY, None)?.parse().ok()?;
    let name = str_at(doc, &ROOT, NAME, None).unwrap_or_default();
    let added_by: BTreeMap<String, String> = container(doc, ADDED_BY)
        .map(|m| map_strings(doc, &m, None).into_iter().collect())
        .unwrap_or_default();
    let joined: BTreeMap<String, u32> = container(doc, JOINED_SEGMENT)
        .map(|m| {
            doc.map_range(&m, ..)
                .filter_map(|item| {
                    let segment = match item.value {
                        ValueRef::Scalar(ScalarValueRef::Uint(n)) => u32::try_from(n).ok(),
                        ValueRef::Scalar(ScalarValueRef::Int(n)) => u32::try_from(n).ok(),
                        _ => None,
                    }?;
                    Some((item.key.into_owned(), segment))
                })
                .collect()
        })
        .unwrap_or_default();
    let members = roles_at(doc, None)
        .into_iter()
        .map(|(key, role)| {
            let hex = key.to_string();
            Member {
                key,
                role,
                added_by: added_by.get(&hex).and_then(|s| s.parse().ok()),
                joined_segment: joined.get(&hex).copied().unwrap_or(0),
            }
        })
        .collect();
    let settings = container(doc, SETTINGS)
        .map(|s| GroupSettings {
            history_for_new_members: !matches!(
                doc.get(&s, HISTORY_FOR_NEW_MEMBERS).ok().flatten(),
                Some((Value::Scalar(v), _)) if matches!(v.as_ref(), ScalarValue::Boolean(false))
            ),
        })
        .unwrap_or_default();
    Some(GroupInfo {
        name,
        creator,
        members,
        settings,
    })
}

/// Checks a metadata change against the rules, in the state at its deps.
pub(crate) fn check_meta_change(
    doc: &Automerge,
    roles_at_deps: &BTreeMap<PublicKey, Role>,
    change: &automerge::Change,
    author: &PublicKey,
    creator: &PublicKey,
) -> Result<(), RuleViolation> {
    if change.deps().is_empty() {
        // The genesis: only the creator, only once.
        if author != creator || change.seq() != 1 || !doc.get_heads().is_empty() {
            return Err(RuleViolation::NotAllowed(
                "only the creator writes a group's first change",
            ));
        }
        return Ok(());
    }
    let role = *roles_at_deps.get(author).ok_or(RuleViolation::NotMember)?;
    let is_admin = role == Role::Admin;
    let containers: BTreeMap<String, &str> = [MEMBERS, ADDED_BY, JOINED_SEGMENT, SETTINGS]
        .into_iter()
        .filter_map(|k| Some((container(doc, k)?.to_string(), k)))
        .collect();
    let author_hex = author.to_string();
    for op in &expand(change)?.operations {
        let key = match &op.key {
            Key::Map(k) => k.to_string(),
            Key::Seq(_) => return Err(RuleViolation::NotAllowed("metadata has no lists")),
        };
        let target = match &op.obj {
            ObjectId::Root => "root",
            ObjectId::Id(id) => containers
                .get(&format!("{}@{}", id.counter(), id.actor()))
                .copied()
                .ok_or(RuleViolation::NotAllowed("unknown metadata object"))?,
        };
        let allowed = match (target, &op.action) {
            ("root", OpType::Put(ScalarValue::Str(s))) if key == NAME => {
                is_admin && s.len() <= MAX_GROUP_NAME_BYTES
            }
            (MEMBERS, OpType::Put(ScalarValue::Str(s))) => {
                is_admin && Role::parse(s).is_some() && key.parse::<PublicKey>().is_ok()
            }
            // Leaving is removing yourself; removing others is for admins.
            (MEMBERS, OpType::Delete) => is_admin || key == author_hex,
            (ADDED_BY, OpType::Put(ScalarValue::Str(s))) => is_admin && *s == author_hex,
            (JOINED_SEGMENT, OpType::Put(ScalarValue::Uint(_))) => is_admin,
            (SETTINGS, OpType::Put(ScalarValue::Boolean(_))) => {
                is_admin && key == HISTORY_FOR_NEW_MEMBERS
            }
            _ => false,
        };
        if !allowed {
            return Err(RuleViolation::NotAllowed(if is_admin {
                "not a metadata operation"
            } else {
                "only admins change a group"
            }));
        }
    }
    Ok(())
}

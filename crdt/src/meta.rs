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

use automerge::{
    transaction::Transactable, Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    authority::{Cut, MetaAction, MetaEntry},
    ids::{ChatId, GroupNonce, PublicKey},
    model::{Container, Effects, ObjKind},
    role::Role,
    rules::{canonical, record, RuleViolation},
    signed::SegmentIndex,
    structure::{Action, Schema, Shaped},
};

pub(crate) const CREATED_BY: &str = "created_by";
pub(crate) const NONCE: &str = "nonce";
pub(crate) const NAME: &str = "name";
pub(crate) const MEMBERS: &str = "members";
pub(crate) const ADDED_BY: &str = "added_by";
pub(crate) const JOINED_SEGMENT: &str = "joined_segment";
pub(crate) const SETTINGS: &str = "settings";
pub(crate) const REMOVED: &str = "removed";
pub(crate) const HISTORY_FOR_NEW_MEMBERS: &str = "history_for_new_members";

/// History segment indexes stay below this (a billion-odd messages); joined
/// segments too, so no index can run into the metadata's.
pub const MAX_SEGMENT: SegmentIndex = 1 << 24;

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 256;

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
    tx.put_object(ROOT, REMOVED, ObjType::Map)?;
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

/// The schema of a group's metadata document.
pub(crate) struct MetaSchema;

fn container_named(key: &str) -> Option<Container> {
    Some(match key {
        MEMBERS => Container::Members,
        ADDED_BY => Container::AddedBy,
        JOINED_SEGMENT => Container::JoinedSegment,
        SETTINGS => Container::Settings,
        REMOVED => Container::Removed,
        _ => return None,
    })
}

impl Schema for MetaSchema {
    fn child_kind(&self, parent: Option<ObjKind>, key: &str) -> Option<ObjKind> {
        match parent {
            None => container_named(key).map(ObjKind::Container),
            _ => None,
        }
    }

    fn tracked(&self, parent: Option<ObjKind>, key: &str) -> bool {
        // Root fields other than the name are written only by the first
        // change (the rules say so); tracking them keeps every root write's
        // predecessors checked.
        let _ = key;
        matches!(parent, None | Some(ObjKind::Container(_)))
    }
}

fn not_allowed(reason: &'static str) -> RuleViolation {
    RuleViolation::NotAllowed(reason)
}

fn name_ok(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_GROUP_NAME_BYTES
}

/// Checks the shape of a metadata change of the group founded by `creator`
/// with `nonce`, and turns it into the actions the resolver applies, plus its
/// effects on the model. Whether its author may take those actions is for
/// the resolver to say, in the state at its dependencies.
pub(crate) fn check_meta(
    shaped: &Shaped,
    creator: &PublicKey,
    nonce: &GroupNonce,
) -> Result<(MetaEntry, Effects), RuleViolation> {
    let author = shaped.author;
    let genesis = shaped.deps.is_empty();
    if genesis && author != *creator {
        return Err(not_allowed(
            "only the creator writes a group's first change",
        ));
    }
    let mut effects = Effects::default();
    let mut actions = Vec::new();
    let mut root_fields: Vec<&str> = Vec::new();
    let mut members_set: Vec<PublicKey> = Vec::new();
    for op in &shaped.ops {
        if op.obj_created_here && !genesis {
            return Err(not_allowed(
                "containers are created by the first change only",
            ));
        }
        match (op.obj_kind, op.key.as_str(), &op.action) {
            (None, key, Action::MakeMap) if genesis && container_named(key).is_some() => {
                root_fields.push(key);
            }
            (None, CREATED_BY, Action::Put(ScalarValue::Str(s)))
                if genesis && s.as_str() == creator.to_string() =>
            {
                root_fields.push(CREATED_BY);
            }
            (None, NONCE, Action::Put(ScalarValue::Str(s)))
                if genesis && s.as_str() == nonce.to_string() =>
            {
                root_fields.push(NONCE);
            }
            (None, NAME, Action::Put(ScalarValue::Str(s))) if name_ok(s) => {
                root_fields.push(NAME);
                actions.push(MetaAction::Name(s.to_string()));
            }
            (Some(ObjKind::Container(c)), key, action) => {
                actions.push(container_action(c, key, action, &author, genesis)?);
                if c == Container::Members && matches!(action, Action::Put(_)) {
                    members_set.extend(canonical::<PublicKey>(key));
                }
            }
            _ => {
                return Err(RuleViolation::Schema(format!(
                    "metadata field {:?} not allowed so",
                    op.key
                )))
            }
        }
        record(&mut effects, op, author, &MetaSchema, None);
    }
    if genesis {
        for required in [
            CREATED_BY,
            NONCE,
            NAME,
            MEMBERS,
            ADDED_BY,
            JOINED_SEGMENT,
            SETTINGS,
            REMOVED,
        ] {
            if !root_fields.contains(&required) {
                return Err(RuleViolation::Schema(format!(
                    "a group's first change needs {required:?}"
                )));
            }
        }
        if !actions.contains(&MetaAction::Role(*creator, Role::Admin)) {
            return Err(not_allowed("the creator must be an admin"));
        }
        for action in &actions {
            let member = match action {
                MetaAction::AddedBy(k, _) | MetaAction::Joined(k, _) => k,
                MetaAction::Remove(_) | MetaAction::Cut(..) => {
                    return Err(not_allowed("a new group removes nobody"))
                }
                _ => continue,
            };
            if !members_set.contains(member) {
                return Err(not_allowed("bookkeeping for someone who is not a member"));
            }
        }
    }
    Ok((
        MetaEntry {
            author,
            deps: shaped.deps.clone(),
            genesis,
            actions,
        },
        effects,
    ))
}

fn container_action(
    container: Container,
    key: &str,
    action: &Action,
    author: &PublicKey,
    genesis: bool,
) -> Result<MetaAction, RuleViolation> {
    let bad = || RuleViolation::Schema(format!("metadata entry {key:?} not allowed so"));
    if container == Container::Settings {
        return match (key, action) {
            (HISTORY_FOR_NEW_MEMBERS, Action::Put(ScalarValue::Boolean(on))) => {
                Ok(MetaAction::History(*on))
            }
            _ => Err(bad()),
        };
    }
    let member: PublicKey = canonical(key).ok_or_else(bad)?;
    match (container, action) {
        (Container::Members, Action::Put(ScalarValue::Str(role))) => {
            Ok(MetaAction::Role(member, Role::parse(role).ok_or_else(bad)?))
        }
        (Container::Members, Action::Delete) if !genesis => Ok(MetaAction::Remove(member)),
        (Container::AddedBy, Action::Put(ScalarValue::Str(by))) => {
            let by: PublicKey = canonical(by).ok_or_else(bad)?;
            if by != *author {
                return Err(not_allowed("added_by names the author"));
            }
            Ok(MetaAction::AddedBy(member, by))
        }
        (Container::JoinedSegment, Action::Put(ScalarValue::Uint(n))) => {
            let segment = SegmentIndex::try_from(*n)
                .ok()
                .filter(|s| *s < MAX_SEGMENT)
                .ok_or_else(bad)?;
            Ok(MetaAction::Joined(member, segment))
        }
        (Container::Removed, Action::Put(ScalarValue::Bytes(bytes))) if !genesis => {
            Ok(MetaAction::Cut(member, Cut::decode(bytes).ok_or_else(bad)?))
        }
        _ => Err(bad()),
    }
}

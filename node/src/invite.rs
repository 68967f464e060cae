//! Invites: everything needed to add someone as a contact (PeerId, addresses,
//! relays, suggested name) as one compact string, `MC1:` followed by
//! uppercase base32 of a CBOR body. Uppercase base32 is QR-code alphanumeric,
//! so the QR code stays small; see `docs/PROTOCOL.md#invites`.
//!
//! An invite is not signed: whoever gives it to you vouches for it. The
//! PeerId inside is still verified by Noise on the first connection, so a
//! tampered address cannot impersonate the peer, only fail to reach it.

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

use crate::keys::{peer_id_of, public_key_of};

const PREFIX: &str = "MC1:";
/// Longest invite accepted (characters).
pub const MAX_INVITE_CHARS: usize = 4096;
/// Addresses (and relays) kept in an invite.
const MAX_INVITE_ADDRS: usize = 8;

/// Someone's contact details, to share out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Who.
    pub peer: PeerId,
    /// The name they suggest for themselves.
    pub name: Option<String>,
    /// Where to reach them directly.
    pub addrs: Vec<Multiaddr>,
    /// Their relays (each ending in `/p2p/<RELAY>`).
    pub relays: Vec<Multiaddr>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    v: u8,
    key: PublicKey,
    name: Option<String>,
    #[serde(default)]
    addrs: Vec<serde_bytes::ByteBuf>,
    #[serde(default)]
    relays: Vec<serde_bytes::ByteBuf>,
}

/// Why a string is not a usable invite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// It does not start with `MC1:`.
    #[error("not a meshchat invite (it should start with {PREFIX})")]
    NotAnInvite,
    /// It is longer than any invite this version makes.
    #[error("invite longer than {MAX_INVITE_CHARS} characters")]
    TooLong,
    /// The text after the prefix is damaged.
    #[error("damaged invite ({0}); copy it again")]
    Damaged(String),
    /// A newer meshchat made it.
    #[error("invite version {0} is newer than this meshchat understands; upgrade")]
    UnsupportedVersion(u8),
}

impl Invite {
    /// The invite string.
    pub fn encode(&self) -> String {
        let key = public_key_of(&self.peer).expect("meshchat peers have Ed25519 PeerIds");
        let bytes = |v: &[Multiaddr]| {
            v.iter()
                .take(MAX_INVITE_ADDRS)
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect()
        };
        let body = Body {
            v: 1,
            key,
            name: self.name.clone(),
            addrs: bytes(&self.addrs),
            relays: bytes(&self.relays),
        };
        let mut cbor = Vec::new();
        ciborium::into_writer(&body, &mut cbor).expect("writing CBOR to a Vec cannot fail");
        format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&cbor))
    }

    /// Parses an invite (surrounding whitespace and case are forgiven).
    pub fn decode(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        if text.len() > MAX_INVITE_CHARS {
            return Err(InviteError::TooLong);
        }
        let upper = text.to_ascii_uppercase();
        let encoded = upper.strip_prefix(PREFIX).ok_or(InviteError::NotAnInvite)?;
        let cbor = data_encoding::BASE32_NOPAD
            .decode(encoded.as_bytes())
            .map_err(|e| InviteError::Damaged(e.to_string()))?;
        let body: Body = ciborium::from_reader(cbor.as_slice())
            .map_err(|e| InviteError::Damaged(e.to_string()))?;
        if body.v != 1 {
            return Err(InviteError::UnsupportedVersion(body.v));
        }
        let peer = peer_id_of(&body.key)
            .ok_or_else(|| InviteError::Damaged("not an Ed25519 key".into()))?;
        let addrs = |v: Vec<serde_bytes::ByteBuf>| -> Result<Vec<Multiaddr>, InviteError> {
            v.into_iter()
                .take(MAX_INVITE_ADDRS)
                .map(|b| {
                    Multiaddr::try_from(b.into_vec())
                        .map_err(|e| InviteError::Damaged(format!("bad address: {e}")))
                })
                .collect()
        };
        Ok(Self {
            peer,
            name: body.name,
            addrs: addrs(body.addrs)?,
            relays: addrs(body.relays)?,
        })
    }

    /// Whether `text` looks like an invite rather than a PeerId.
    pub fn looks_like_one(text: &str) -> bool {
        text.trim().to_ascii_uppercase().starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    fn invite() -> Invite {
        let relay = peer_id_of(&Identity::generate().public()).unwrap();
        Invite {
            peer: peer_id_of(&Identity::generate().public()).unwrap(),
            name: Some("alice".into()),
            addrs: vec!["/ip4/127.0.0.1/tcp/4701".parse().unwrap()],
            relays: vec![format!("/ip4/127.0.0.1/tcp/4702/p2p/{relay}")
                .parse()
                .unwrap()],
        }
    }

    #[test]
    fn invites_round_trip_and_forgive_case_and_whitespace() {
        let invite = invite();
        let text = invite.encode();
        assert!(text.starts_with("MC1:"));
        assert!(text.len() < 400, "{} chars", text.len());
        assert_eq!(Invite::decode(&text).unwrap(), invite);
        let sloppy = format!("  {}\n", text.to_ascii_lowercase());
        assert!(Invite::looks_like_one(&sloppy));
        assert_eq!(Invite::decode(&sloppy).unwrap(), invite);
    }

    #[test]
    fn damaged_invites_are_clear_errors() {
        assert_eq!(Invite::decode("hello"), Err(InviteError::NotAnInvite));
        let text = invite().encode();
        let cut = &text[..text.len() - 9];
        assert!(matches!(Invite::decode(cut), Err(InviteError::Damaged(_))));
        assert!(matches!(
            Invite::decode("MC1:0189"),
            Err(InviteError::Damaged(_))
        ));
        let long = format!("MC1:{}", "A".repeat(MAX_INVITE_CHARS));
        assert_eq!(Invite::decode(&long), Err(InviteError::TooLong));
    }
}

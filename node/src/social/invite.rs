//! Invites: everything needed to add someone as a contact (PeerId, addresses,
//! relays, suggested name) as one compact string, `MC1:` followed by
//! uppercase base32 of a CBOR body. Uppercase base32 is QR-code alphanumeric,
//! so the QR code stays small; see `docs/PROTOCOL.md#invites`.
//!
//! An invite is not signed: whoever gives it to you vouches for it. The
//! PeerId inside is still verified by Noise on the first connection, so a
//! tampered address cannot impersonate the peer, only fail to reach it.
//!
//! It carries the peer's delivery tokens for its relays (signed by the
//! peer, so they are checked whatever the invite's origin), so the new
//! contact can leave mail for it before they have ever met. Compactly: one
//! expiry and one signature per relay; the rest of each token is implied.
//! And its current encryption key, so that mail is sealed.

use libp2p::{Multiaddr, PeerId};
use meshchat_crdt::{e2e::DeviceKey, PublicKey};
use serde::{Deserialize, Serialize};

use crate::{
    keys::{peer_id_of, public_key_of},
    mailbox::DeliveryToken,
};

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
    /// Their delivery tokens for those relays (for whoever holds the
    /// invite); invalid ones are dropped when decoding.
    pub tokens: Vec<DeliveryToken>,
    /// Their current encryption key, so mail left at their relays before
    /// their signed profile arrives is sealed too (vouched for like the rest
    /// of the invite; the profile's key wins once it arrives).
    pub encryption_key: Option<DeviceKey>,
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
    /// Expiry shared by the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Per relay (same order), the signature of the token bound to it; empty
    /// where there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sigs: Vec<serde_bytes::ByteBuf>,
    /// The peer's current encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ek: Option<DeviceKey>,
}

/// The key of the relay an address names (`…/p2p/<RELAY>`).
fn relay_key(relay: &Multiaddr) -> Option<PublicKey> {
    crate::config::peer_of(relay).and_then(|p| public_key_of(&p))
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
        let relays: Vec<&Multiaddr> = self.relays.iter().take(MAX_INVITE_ADDRS).collect();
        let exp = self.tokens.iter().map(|t| t.expires_at_ms).max();
        let sigs: Vec<serde_bytes::ByteBuf> = match exp {
            Some(exp) => relays
                .iter()
                .map(|relay| {
                    let relay = relay_key(relay);
                    self.tokens
                        .iter()
                        .find(|t| {
                            t.recipient == key
                                && t.relay.is_some()
                                && t.relay == relay
                                && t.holder.is_none()
                                && t.expires_at_ms == exp
                        })
                        .map_or_else(Vec::new, |t| t.signature.to_vec())
                        .into()
                })
                .collect(),
            None => Vec::new(),
        };
        let has_tokens = sigs.iter().any(|s| !s.is_empty());
        let body = Body {
            v: 1,
            key,
            name: self.name.clone(),
            addrs: bytes(&self.addrs),
            relays: bytes(&self.relays),
            exp: exp.filter(|_| has_tokens),
            sigs: if has_tokens { sigs } else { Vec::new() },
            ek: self.encryption_key,
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
        let relays = addrs(body.relays)?;
        let tokens = match body.exp {
            Some(exp) => relays
                .iter()
                .zip(&body.sigs)
                .filter_map(|(relay, sig)| {
                    let token = DeliveryToken {
                        recipient: body.key,
                        relay: Some(relay_key(relay)?),
                        holder: None,
                        expires_at_ms: exp,
                        signature: sig.as_slice().try_into().ok()?,
                    };
                    token.verify_signature().is_ok().then_some(token)
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            peer,
            name: body.name,
            addrs: addrs(body.addrs)?,
            relays,
            tokens,
            encryption_key: body.ek,
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
        let alice = Identity::generate();
        let relay = Identity::generate().public();
        let token = DeliveryToken::issue(&alice, Some(relay), None, 1_900_000_000_000);
        let relay = peer_id_of(&relay).unwrap();
        Invite {
            peer: peer_id_of(&alice.public()).unwrap(),
            name: Some("alice".into()),
            addrs: vec!["/ip4/127.0.0.1/tcp/4701".parse().unwrap()],
            relays: vec![format!("/ip4/127.0.0.1/tcp/4702/p2p/{relay}")
                .parse()
                .unwrap()],
            tokens: vec![token],
            encryption_key: Some(
                meshchat_crdt::e2e::DeviceKeyring::generate()
                    .current()
                    .public(),
            ),
        }
    }

    #[test]
    fn invites_round_trip_and_forgive_case_and_whitespace() {
        let invite = invite();
        let text = invite.encode();
        assert!(text.starts_with("MC1:"));
        // A QR code's worth, with the token for the relay.
        assert!(text.len() < 500, "{} chars", text.len());
        assert_eq!(Invite::decode(&text).unwrap(), invite);
        let sloppy = format!("  {}\n", text.to_ascii_lowercase());
        assert!(Invite::looks_like_one(&sloppy));
        assert_eq!(Invite::decode(&sloppy).unwrap(), invite);
    }

    #[test]
    fn invite_tokens_are_checked_and_optional() {
        let mut invite = invite();
        // A token signed by someone else is dropped, not trusted.
        let mallory = Identity::generate();
        let relay = relay_key(&invite.relays[0]).unwrap();
        let mut forged = DeliveryToken::issue(&mallory, Some(relay), None, 1_900_000_000_000);
        forged.recipient = public_key_of(&invite.peer).unwrap();
        invite.tokens = vec![forged];
        assert!(Invite::decode(&invite.encode()).unwrap().tokens.is_empty());
        // An invite without tokens or encryption key (or from an older
        // meshchat) still works.
        invite.tokens.clear();
        invite.encryption_key = None;
        let plain = Invite::decode(&invite.encode()).unwrap();
        assert_eq!(plain, invite);
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

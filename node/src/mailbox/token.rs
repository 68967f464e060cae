//! Delivery tokens: a recipient's signed permission to leave mail for it at
//! a relay. A relay takes a deposit only with a valid token (or from its
//! optional stranger budget), so a stranger cannot fill anyone's mailbox.
//!
//! The token binds the recipient, the relay (or any relay of the
//! recipient's) and an expiry; it may name a holder, but the tokens meshchat
//! hands out do not, so a sender can later deposit over a throwaway identity
//! (end-to-end encryption, issue 16) and the relay still learns nothing but
//! "someone this recipient authorised". Like Signal's delivery tokens for
//! sealed sender: the token, not the sender's identity, is what the relay
//! checks and rate-limits.

use meshchat_crdt::{Identity, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"meshchat/delivery-token/v1";

/// How long the tokens a node hands out last (30 days).
pub const TOKEN_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// "Whoever holds this may leave mail for `recipient` at `relay` until
/// `expires_at_ms`." Signed by the recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryToken {
    /// The mailbox owner, who signed it.
    pub recipient: PublicKey,
    /// The relay it is valid at; `None`: any relay of the recipient's.
    pub relay: Option<PublicKey>,
    /// The only depositor allowed to use it; `None`: whoever holds it.
    pub holder: Option<PublicKey>,
    /// Not valid from then on (ms since the epoch, the relay's clock decides).
    pub expires_at_ms: i64,
    /// Ed25519 by `recipient` over the fields above, domain-tagged.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// Why a relay refuses a deposit's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token came with the deposit and the relay takes no mail from strangers.
    #[error("no delivery token (this relay takes mail only from the recipient's contacts)")]
    Missing,
    /// The token is for another recipient.
    #[error("the delivery token is for another recipient")]
    WrongRecipient,
    /// The token is for another relay.
    #[error("the delivery token is for another relay")]
    WrongRelay,
    /// The token names another holder.
    #[error("the delivery token belongs to another sender")]
    WrongHolder,
    /// The token has expired.
    #[error("the delivery token has expired; the recipient renews it when you next meet")]
    Expired,
    /// The recipient did not sign it.
    #[error("the delivery token's signature does not verify")]
    BadSignature,
}

fn signed_bytes(
    recipient: &PublicKey,
    relay: Option<&PublicKey>,
    holder: Option<&PublicKey>,
    expires_at_ms: i64,
) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(recipient.as_bytes());
    for key in [relay, holder] {
        match key {
            Some(key) => {
                out.push(1);
                out.extend_from_slice(key.as_bytes());
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out
}

impl DeliveryToken {
    /// Issues a token as `recipient`.
    pub fn issue(
        recipient: &Identity,
        relay: Option<PublicKey>,
        holder: Option<PublicKey>,
        expires_at_ms: i64,
    ) -> Self {
        let me = recipient.public();
        let signature = recipient.sign(&signed_bytes(
            &me,
            relay.as_ref(),
            holder.as_ref(),
            expires_at_ms,
        ));
        Self {
            recipient: me,
            relay,
            holder,
            expires_at_ms,
            signature,
        }
    }

    fn message(&self) -> Vec<u8> {
        signed_bytes(
            &self.recipient,
            self.relay.as_ref(),
            self.holder.as_ref(),
            self.expires_at_ms,
        )
    }

    /// Checks the recipient's signature only.
    pub fn verify_signature(&self) -> Result<(), TokenError> {
        meshchat_crdt::verify(&self.recipient, &self.message(), &self.signature)
            .map_err(|_| TokenError::BadSignature)
    }

    /// What a relay checks before taking a deposit: this token lets
    /// `depositor` leave mail for `recipient` at `relay` at `now_ms`. The
    /// cheap checks run first; the signature last.
    pub fn admits(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        depositor: &PublicKey,
        now_ms: i64,
    ) -> Result<(), TokenError> {
        self.check_claims(recipient, relay, depositor, now_ms)?;
        self.verify_signature()
    }

    /// Every check of [`Self::admits`] but the signature (for a token whose
    /// signature is known good).
    pub fn check_claims(
        &self,
        recipient: &PublicKey,
        relay: &PublicKey,
        depositor: &PublicKey,
        now_ms: i64,
    ) -> Result<(), TokenError> {
        if self.recipient != *recipient {
            return Err(TokenError::WrongRecipient);
        }
        if self.relay.is_some_and(|r| r != *relay) {
            return Err(TokenError::WrongRelay);
        }
        if self.holder.is_some_and(|h| h != *depositor) {
            return Err(TokenError::WrongHolder);
        }
        if self.expires_at_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// A stable id of the token's content (not of its signature's encoding):
    /// the unit a relay rate-limits.
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.message()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_admit_only_what_they_name() {
        let (bob, relay, other_relay, alice) = (
            Identity::generate(),
            Identity::generate().public(),
            Identity::generate().public(),
            Identity::generate().public(),
        );
        let token = DeliveryToken::issue(&bob, Some(relay), None, 1_000);
        assert_eq!(token.admits(&bob.public(), &relay, &alice, 999), Ok(()));
        assert_eq!(
            token.admits(&alice, &relay, &alice, 999),
            Err(TokenError::WrongRecipient)
        );
        assert_eq!(
            token.admits(&bob.public(), &other_relay, &alice, 999),
            Err(TokenError::WrongRelay)
        );
        assert_eq!(
            token.admits(&bob.public(), &relay, &alice, 1_000),
            Err(TokenError::Expired)
        );
        // Any relay of bob's, but only for carol.
        let carol = Identity::generate().public();
        let bound = DeliveryToken::issue(&bob, None, Some(carol), 1_000);
        assert_eq!(bound.admits(&bob.public(), &other_relay, &carol, 0), Ok(()));
        assert_eq!(
            bound.admits(&bob.public(), &relay, &alice, 0),
            Err(TokenError::WrongHolder)
        );
    }

    #[test]
    fn forged_and_altered_tokens_do_not_verify() {
        let (bob, mallory, relay) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate().public(),
        );
        let me = mallory.public();
        // Mallory signs a token in bob's name.
        let mut forged = DeliveryToken::issue(&mallory, Some(relay), None, i64::MAX);
        forged.recipient = bob.public();
        assert_eq!(
            forged.admits(&bob.public(), &relay, &me, 0),
            Err(TokenError::BadSignature)
        );
        // A genuine token with its expiry pushed out, or made relay-agnostic.
        let genuine = DeliveryToken::issue(&bob, Some(relay), None, 1_000);
        let mut extended = genuine.clone();
        extended.expires_at_ms = i64::MAX;
        assert_eq!(
            extended.admits(&bob.public(), &relay, &me, 2_000),
            Err(TokenError::BadSignature)
        );
        let mut widened = genuine.clone();
        widened.relay = None;
        assert_eq!(
            widened.admits(&bob.public(), &relay, &me, 0),
            Err(TokenError::BadSignature)
        );
        assert_ne!(genuine.id(), widened.id());
    }
}

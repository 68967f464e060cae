//! HPKE (RFC 9180), base mode, single-shot, one cipher suite:
//! DHKEM(X25519, HKDF-SHA256) `0x0020`, HKDF-SHA256 `0x0001`,
//! ChaCha20-Poly1305 `0x0003`.
//!
//! Built here on `x25519-dalek`, `hkdf` and `chacha20poly1305` rather than
//! taken from the `hpke` crate: that crate pulls a second generation of the
//! curve and RNG crates (x25519-dalek 2, rand_core 0.9) next to the ones the
//! workspace already builds. It is checked byte for byte against the RFC's
//! test vector (Appendix A.2.1, sequence number 0). Only what sealing one
//! message to one key needs is here: no PSK or auth modes, no exporter, one
//! message per encapsulation (so the nonce is the base nonce).

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    ChaCha20Poly1305,
};
use hkdf::{Hkdf, HkdfExtract};
use sha2_for_hkdf::Sha256;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

/// Bytes of the encapsulated key (the ephemeral X25519 public key).
pub(crate) const ENC_LEN: usize = 32;
/// Bytes the AEAD adds to the plaintext.
pub(crate) const TAG_LEN: usize = 16;

const KEM_ID: [u8; 2] = 0x0020u16.to_be_bytes();
const KDF_ID: [u8; 2] = 0x0001u16.to_be_bytes();
const AEAD_ID: [u8; 2] = 0x0003u16.to_be_bytes();
const VERSION_LABEL: &[u8] = b"HPKE-v1";
const MODE_BASE: u8 = 0x00;

fn kem_suite() -> Vec<u8> {
    [&b"KEM"[..], &KEM_ID].concat()
}

fn hpke_suite() -> Vec<u8> {
    [&b"HPKE"[..], &KEM_ID, &KDF_ID, &AEAD_ID].concat()
}

/// Why sealing or opening failed. Deliberately coarse: an attacker learns
/// nothing from which step refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HpkeError {
    /// The Diffie-Hellman output was all zeros (a low-order public key):
    /// RFC 9180 §7.1.4 says to abort.
    LowOrderKey,
    /// The ciphertext did not authenticate under this key, info and aad.
    Open,
}

/// `LabeledExtract(salt, label, ikm)`.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut extract = HkdfExtract::<Sha256>::new(Some(salt));
    for part in [VERSION_LABEL, suite, label, ikm] {
        extract.input_ikm(part);
    }
    let (prk, _) = extract.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    out
}

/// `LabeledExpand(prk, label, info, L)` for the lengths this suite uses.
fn labeled_expand<const L: usize>(
    suite: &[u8],
    prk: &[u8; 32],
    label: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; L]> {
    let hkdf = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte PRK is SHA-256's length");
    let length = u16::try_from(L).expect("HPKE lengths fit two bytes");
    let labeled_info = [&length.to_be_bytes()[..], VERSION_LABEL, suite, label, info].concat();
    let mut out = Zeroizing::new([0u8; L]);
    hkdf.expand(&labeled_info, out.as_mut())
        .expect("L is far below 255 * 32");
    out
}

/// DHKEM's `ExtractAndExpand`: the shared secret from one DH output.
fn extract_and_expand(dh: &[u8; 32], enc: &[u8; 32], pk_r: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let suite = kem_suite();
    let eae_prk = labeled_extract(&suite, b"", b"eae_prk", dh);
    let kem_context = [&enc[..], &pk_r[..]].concat();
    labeled_expand::<32>(&suite, &eae_prk, b"shared_secret", &kem_context)
}

/// The base-mode key schedule: the AEAD key and nonce.
fn key_schedule(shared_secret: &[u8; 32], info: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let suite = hpke_suite();
    let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&suite, b"", b"info_hash", info);
    let context = [&[MODE_BASE][..], &psk_id_hash[..], &info_hash[..]].concat();
    let secret = labeled_extract(&suite, shared_secret, b"secret", b"");
    let key = labeled_expand::<32>(&suite, &secret, b"key", &context);
    let nonce = labeled_expand::<12>(&suite, &secret, b"base_nonce", &context);
    (key, *nonce)
}

fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, HpkeError> {
    let shared = secret.diffie_hellman(&X25519Public::from(*public));
    if !shared.was_contributory() {
        return Err(HpkeError::LowOrderKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// Seals `plaintext` to `recipient` with a fresh ephemeral key; returns the
/// encapsulated key and the ciphertext (plaintext + 16 bytes).
pub(crate) fn seal(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>), HpkeError> {
    let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
    seal_with_ephemeral(&ephemeral, recipient, info, aad, plaintext)
}

/// [`seal`] with a given ephemeral secret: the RFC's test vector, and
/// deterministic sealing (`SealedBox::seal_deterministic`).
pub(crate) fn seal_with_ephemeral(
    ephemeral: &StaticSecret,
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>), HpkeError> {
    let enc = X25519Public::from(ephemeral).to_bytes();
    let dh = dh(ephemeral, recipient)?;
    let shared = extract_and_expand(&dh, &enc, recipient);
    let (key, nonce) = key_schedule(&shared, info);
    let cipher = ChaCha20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| HpkeError::Open)?;
    Ok((enc, ciphertext))
}

/// Opens what [`seal`] made for the holder of `secret`.
pub(crate) fn open(
    secret: &StaticSecret,
    enc: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
    let recipient = X25519Public::from(secret).to_bytes();
    let dh = dh(secret, enc)?;
    let shared = extract_and_expand(&dh, enc, &recipient);
    let (key, nonce) = key_schedule(&shared, info);
    let cipher = ChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            (&nonce).into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| HpkeError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    fn hex_vec(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 9180, Appendix A.2.1 (base mode) and A.2.1.1 (sequence number 0).
    const SK_E: &str = "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600";
    const PK_R: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    const SK_R: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    const ENC: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    const SHARED: &str = "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
    const KEY: &str = "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91";
    const NONCE: &str = "5c4d98150661b848853b547f";
    const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    const AAD: &str = "436f756e742d30";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    const CT: &str = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";

    #[test]
    fn the_rfc_9180_vector_seals_and_opens_byte_for_byte() {
        let ephemeral = StaticSecret::from(hex::<32>(SK_E));
        let recipient = StaticSecret::from(hex::<32>(SK_R));
        assert_eq!(X25519Public::from(&recipient).to_bytes(), hex::<32>(PK_R));

        let dh = dh(&ephemeral, &hex(PK_R)).unwrap();
        let shared = extract_and_expand(&dh, &hex(ENC), &hex(PK_R));
        assert_eq!(*shared, hex::<32>(SHARED));
        let (key, nonce) = key_schedule(&shared, &hex_vec(INFO));
        assert_eq!(*key, hex::<32>(KEY));
        assert_eq!(nonce, hex::<12>(NONCE));

        let (enc, ct) = seal_with_ephemeral(
            &ephemeral,
            &hex(PK_R),
            &hex_vec(INFO),
            &hex_vec(AAD),
            &hex_vec(PT),
        )
        .unwrap();
        assert_eq!(enc, hex::<32>(ENC));
        assert_eq!(ct, hex_vec(CT));
        let opened = open(&recipient, &enc, &hex_vec(INFO), &hex_vec(AAD), &ct).unwrap();
        assert_eq!(*opened, hex_vec(PT));
    }

    #[test]
    fn another_info_aad_key_or_a_cut_ciphertext_does_not_open() {
        let recipient = StaticSecret::from([5u8; 32]);
        let public = X25519Public::from(&recipient).to_bytes();
        let (enc, ct) = seal(&public, b"info", b"aad", b"secret").unwrap();
        assert!(open(&recipient, &enc, b"info", b"aad", &ct).is_ok());
        assert_eq!(
            open(&recipient, &enc, b"other", b"aad", &ct),
            Err(HpkeError::Open)
        );
        assert_eq!(
            open(&recipient, &enc, b"info", b"other", &ct),
            Err(HpkeError::Open)
        );
        let stranger = StaticSecret::from([6u8; 32]);
        assert_eq!(
            open(&stranger, &enc, b"info", b"aad", &ct),
            Err(HpkeError::Open)
        );
        for cut in 0..ct.len() {
            assert!(open(&recipient, &enc, b"info", b"aad", &ct[..cut]).is_err());
        }
    }

    #[test]
    fn a_low_order_key_is_refused_on_both_sides() {
        // The all-zero point: every DH with it is zero.
        assert_eq!(
            seal(&[0u8; 32], b"", b"", b"x"),
            Err(HpkeError::LowOrderKey)
        );
        let recipient = StaticSecret::from([5u8; 32]);
        assert_eq!(
            open(&recipient, &[0u8; 32], b"", b"", &[0u8; 17]),
            Err(HpkeError::LowOrderKey)
        );
    }
}

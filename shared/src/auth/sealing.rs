//! The sealed form of a credential's secret (AES-256-GCM bound to the credential, tagged with
//! the key version that sealed it) and the keyed look-up digest (HMAC-SHA256) that finds a
//! credential by its secret alone.
//!
//! A sealed secret is text, one of:
//! - `v{V}:{base64(nonce ‖ ciphertext)}`: sealed under version V with the key the store
//!   derives from V's root (the embedded store);
//! - `v{V}:{base64(wrapped data key)}:{base64(nonce ‖ ciphertext)}`: sealed under version V
//!   with a data key of its own, kept wrapped beside it (on AWS, by KMS);
//! - `{base64(nonce ‖ ciphertext)}` without a version: sealed before versions existed, with
//!   version 1's root itself as the key; opened as version 1 until a rotation re-seals it.
//!
//! Base64 has no `:`, so the forms cannot be mistaken for each other. The ciphertext's
//! associated data is tenant, NUL, key id (tenant names hold no NUL, so the pair is
//! unambiguous): a sealed secret moved to another credential does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::keys::{KeyBytes, SealContext};

/// Bytes of the AES-GCM nonce in front of a sealed secret.
const NONCE_BYTES: usize = 12;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// A sealed secret, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The version that sealed it; `None` for a secret sealed before versions (version 1's
    /// root as the key).
    pub version: Option<u32>,
    /// The data key, as the store wrapped it; `None` when derived from the version's root.
    pub wrapped_key: Option<Vec<u8>>,
    /// Nonce ‖ AES-256-GCM ciphertext (with its tag).
    pub boxed: Vec<u8>,
}

impl Sealed {
    /// Reads a sealed secret; `None` when it is none of the forms.
    pub fn parse(text: &str) -> Option<Sealed> {
        let decode = |part: &str| STANDARD.decode(part).ok();
        let Some(rest) = text.strip_prefix('v').filter(|rest| rest.contains(':')) else {
            return Some(Sealed {
                version: None,
                wrapped_key: None,
                boxed: decode(text)?,
            });
        };
        let mut parts = rest.split(':');
        let version = parts.next()?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let version = version.parse::<u32>().ok().filter(|v| *v > 0)?;
        let (wrapped_key, boxed) = match (parts.next(), parts.next(), parts.next()) {
            (Some(boxed), None, None) => (None, decode(boxed)?),
            (Some(wrapped), Some(boxed), None) => (Some(decode(wrapped)?), decode(boxed)?),
            _ => return None,
        };
        Some(Sealed {
            version: Some(version),
            wrapped_key,
            boxed,
        })
    }

    /// The version that sealed it (1 for a secret sealed before versions).
    pub fn key_version(&self) -> u32 {
        self.version.unwrap_or(1)
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let boxed = STANDARD.encode(&self.boxed);
        match (self.version, &self.wrapped_key) {
            (None, _) => boxed,
            (Some(version), None) => format!("v{version}:{boxed}"),
            (Some(version), Some(wrapped)) => {
                format!("v{version}:{}:{boxed}", STANDARD.encode(wrapped))
            }
        }
    }
}

/// The version a stored sealed secret names (1 for one sealed before versions); `None` when
/// the text is no sealed secret.
pub fn sealed_version(text: &str) -> Option<u32> {
    Sealed::parse(text).map(|sealed| sealed.key_version())
}

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    Aes256Gcm::new(key.expose().into())
}

/// Nonce ‖ AES-256-GCM ciphertext of `secret` under `key`, bound to `context`.
pub(crate) fn seal_with(key: &KeyBytes, context: SealContext<'_>, secret: &str) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let aad = associated_data(context);
    let ciphertext = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: &aad,
            },
        )
        // Only inputs beyond 64 GiB make AES-GCM encryption fail.
        .expect("AES-GCM seals a short secret");
    let mut boxed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    boxed.extend_from_slice(&nonce);
    boxed.extend_from_slice(&ciphertext);
    boxed
}

/// The secret in `boxed` when it was sealed under `key` for `context` and not altered.
pub(super) fn open_with(key: &KeyBytes, context: SealContext<'_>, boxed: &[u8]) -> Option<String> {
    if boxed.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, ciphertext) = boxed.split_at(NONCE_BYTES);
    let aad = associated_data(context);
    let plain = cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

/// Hex HMAC-SHA256(`key`, `"secret:" + secret`): how a credential is found by its secret
/// alone. `key` is a version's look-up key (or, for secrets sealed before versions, version
/// 1's root).
pub(crate) fn lookup_digest(key: &KeyBytes, secret: &str) -> String {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(b"secret:");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn associated_data(context: SealContext<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(context.tenant.len() + 1 + context.key_id.len());
    aad.extend_from_slice(context.tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(context.key_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::super::sdk_signature::hmac_sha256;
    use super::*;

    const ACME_K1: SealContext<'static> = SealContext {
        tenant: "acme",
        key_id: "k1",
    };

    #[test]
    fn sealed_boxes_round_trip_and_resist_tampering() {
        let key = KeyBytes::generate();
        let boxed = seal_with(&key, ACME_K1, "s3cret");
        assert_eq!(open_with(&key, ACME_K1, &boxed).as_deref(), Some("s3cret"));
        // A fresh nonce every time.
        assert_ne!(seal_with(&key, ACME_K1, "s3cret"), boxed);
        let mut bytes = boxed.clone();
        for index in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[index] ^= 1;
            assert_eq!(open_with(&key, ACME_K1, &bytes), None, "byte {index}");
            bytes[index] ^= 1;
        }
        assert_eq!(open_with(&key, ACME_K1, &[0; 5]), None);
        // The associated data binds the tenant and the key id.
        for (tenant, key_id) in [("globex", "k1"), ("acme", "k2"), ("acm", "ek1")] {
            let other = SealContext { tenant, key_id };
            assert_eq!(open_with(&key, other, &boxed), None);
        }
        assert_eq!(open_with(&KeyBytes::generate(), ACME_K1, &boxed), None);
    }

    #[test]
    fn sealed_text_names_its_version_and_reads_the_unversioned_form_as_version_one() {
        let derived = Sealed {
            version: Some(12),
            wrapped_key: None,
            boxed: vec![1, 2, 3],
        };
        let wrapped = Sealed {
            wrapped_key: Some(vec![9; 40]),
            ..derived.clone()
        };
        let legacy = Sealed {
            version: None,
            ..derived.clone()
        };
        for sealed in [&derived, &wrapped, &legacy] {
            assert_eq!(Sealed::parse(&sealed.to_text()).as_ref(), Some(sealed));
        }
        assert!(derived.to_text().starts_with("v12:"));
        assert_eq!(sealed_version(&legacy.to_text()), Some(1));
        assert_eq!(sealed_version(&wrapped.to_text()), Some(12));
        for bad in [
            "v:AAAA",
            "v0:AAAA",
            "vx:AAAA",
            "v1:!!",
            "v1:AA==:AA==:AA==",
            "not base64!",
        ] {
            assert_eq!(Sealed::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn lookup_digests_are_keyed_and_deterministic() {
        let key = KeyBytes::from_bytes([7; 32]);
        assert_eq!(lookup_digest(&key, "abc"), lookup_digest(&key, "abc"));
        assert_ne!(lookup_digest(&key, "abc"), lookup_digest(&key, "abd"));
        let other = KeyBytes::from_bytes([8; 32]);
        assert_ne!(lookup_digest(&key, "abc"), lookup_digest(&other, "abc"));
        assert_ne!(
            lookup_digest(&key, "abc"),
            hex::encode(Sha256::digest("abc"))
        );
        // HMAC-SHA256(key, "secret:abc"), computed independently.
        let expected = hmac_sha256(&[7; 32], b"secret:abc");
        assert_eq!(lookup_digest(&key, "abc"), hex::encode(expected));
    }
}

//! The key material behind credential secrets: a keyring of numbered versions, each with a
//! 32-byte root key, and the keys derived from a root (HKDF-SHA256), one per purpose, so that
//! the key finding a credential by its secret never seals one.

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

/// Bytes of a root key and of every key derived from one or sealing a secret (AES-256,
/// HMAC-SHA256).
pub const KEY_BYTES: usize = 32;

/// HKDF `info` of the key keying the look-up digests of a version.
const LOOKUP_INFO: &[u8] = b"bulk-users credential secrets: lookup";
/// HKDF `info` of the key sealing secrets under a version whose store derives it from the root
/// (the embedded store; on AWS each secret has a data key of its own from KMS).
const SEAL_INFO: &[u8] = b"bulk-users credential secrets: seal";

/// 32 bytes of key material. Its `Debug` output never shows them; they are overwritten when
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes([u8; KEY_BYTES]);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl KeyBytes {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> KeyBytes {
        KeyBytes(bytes)
    }

    /// `bytes` when they are exactly [`KEY_BYTES`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<KeyBytes> {
        <[u8; KEY_BYTES]>::try_from(bytes).ok().map(KeyBytes)
    }

    /// Fresh random bytes.
    pub fn generate() -> KeyBytes {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        KeyBytes(bytes)
    }

    /// A key written as 64 hex characters or as base64 (standard or URL-safe, padded or not)
    /// of 32 bytes: the single master key of before versions.
    pub fn parse_text(text: &str) -> Option<KeyBytes> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        use base64::Engine;
        let text = text.trim();
        let decoded = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            hex::decode(text).ok()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        decoded.and_then(|bytes| KeyBytes::from_slice(&bytes))
    }

    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    fn derive(&self, info: &[u8]) -> KeyBytes {
        let mut out = [0u8; KEY_BYTES];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(info, &mut out)
            // 32 bytes are far below HKDF-SHA256's limit of 255 × 32.
            .expect("HKDF expands to 32 bytes");
        KeyBytes(out)
    }

    /// The key of the look-up digests of this root's version.
    pub fn lookup_key(&self) -> KeyBytes {
        self.derive(LOOKUP_INFO)
    }

    /// The key sealing secrets under this root's version, for a store that derives it.
    pub fn seal_key(&self) -> KeyBytes {
        self.derive(SEAL_INFO)
    }
}

/// The versions of a keyring (no key material): the current one, which seals, and the older
/// ones still active, whose sealed secrets still open and whose look-up digests still find,
/// until a rotation has re-sealed every credential under the current one and retired them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyVersions {
    /// `None` before the first credential: no key yet.
    pub current: Option<u32>,
    /// Active versions other than the current one, newest first.
    pub retiring: Vec<u32>,
    /// Version 1's root is the single master key of before versions: secrets sealed without a
    /// version (and their look-up digests) were made with it as it is, not with derived keys.
    pub legacy: bool,
}

impl KeyVersions {
    /// Every active version, the current one first.
    pub fn active(&self) -> Vec<u32> {
        self.current
            .into_iter()
            .chain(self.retiring.iter().copied())
            .collect()
    }

    pub fn is_active(&self, version: u32) -> bool {
        self.current == Some(version) || self.retiring.contains(&version)
    }

    /// Whether secrets sealed without a version still open (under version 1's root).
    pub fn opens_legacy(&self) -> bool {
        self.legacy && self.is_active(1)
    }
}

/// What a sealed secret is bound to: the KMS encryption context of its data key and the
/// associated data of its AES-GCM ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext<'a> {
    pub tenant: &'a str,
    pub key_id: &'a str,
}

/// A key that seals one secret, and what is stored beside the sealed secret to have the key
/// again (`None` when the store derives it from the version's root).
#[derive(Debug, Clone)]
pub struct SealKey {
    pub key: KeyBytes,
    pub wrapped: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose_and_root_and_never_print() {
        let root = KeyBytes::from_bytes([7; 32]);
        assert_ne!(root.lookup_key(), root.seal_key());
        assert_ne!(root.lookup_key(), root);
        assert_eq!(
            root.lookup_key(),
            KeyBytes::from_bytes([7; 32]).lookup_key()
        );
        assert_ne!(
            root.lookup_key(),
            KeyBytes::from_bytes([8; 32]).lookup_key()
        );
        assert_eq!(format!("{root:?}"), "KeyBytes(..)");
        assert!(KeyBytes::from_slice(&[1; 31]).is_none());
    }

    #[test]
    fn versions_list_the_current_one_first() {
        let versions = KeyVersions {
            current: Some(3),
            retiring: vec![2, 1],
            legacy: true,
        };
        assert_eq!(versions.active(), vec![3, 2, 1]);
        assert!(versions.opens_legacy());
        assert!(!versions.is_active(4));
        assert!(KeyVersions::default().active().is_empty());
    }
}

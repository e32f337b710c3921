//! Sealing credential secrets under the master key (AES-256-GCM, bound to the credential) and
//! their keyed look-up digests (HMAC-SHA256).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::master_key::MasterKey;
use crate::model::{Credential, TenantId};

/// Bytes of the AES-GCM nonce in front of a sealed secret.
const NONCE_BYTES: usize = 12;

pub(super) type HmacSha256 = Hmac<Sha256>;

impl MasterKey {
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Seals a credential's secret: base64 of nonce ‖ AES-256-GCM ciphertext, bound to the
    /// credential's tenant and key id.
    pub fn seal(&self, tenant: &TenantId, key_id: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(tenant, key_id);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            // Only inputs beyond 64 GiB make AES-GCM encryption fail.
            .expect("AES-GCM seals a short secret");
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Opens a sealed secret; `None` when it was not sealed under this key for this tenant and
    /// key id, or was altered.
    pub fn open(&self, tenant: &TenantId, key_id: &str, sealed: &str) -> Option<String> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated_data(tenant, key_id);
        let plain = self
            .cipher()
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

    /// Opens a stored credential's secret.
    pub fn open_credential(&self, credential: &Credential) -> Option<String> {
        self.open(
            &credential.tenant,
            &credential.key_id,
            &credential.sealed_secret,
        )
    }

    /// Hex HMAC-SHA256(master key, `"secret:" + secret`): how a credential is found by its
    /// secret alone.
    pub fn secret_lookup(&self, secret: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"secret:");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The associated data of a sealed secret: tenant, NUL, key id (tenant names hold no NUL, so
/// the pair is unambiguous).
fn associated_data(tenant: &TenantId, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant.as_str().len() + 1 + key_id.len());
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::super::sdk_signature::hmac_sha256;
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn sealed_secrets_round_trip_and_resist_tampering() {
        let key = MasterKey::generate();
        let acme = tenant("acme");
        let sealed = key.seal(&acme, "k1", "s3cret");
        assert_eq!(key.open(&acme, "k1", &sealed).as_deref(), Some("s3cret"));
        // A fresh nonce every time.
        assert_ne!(key.seal(&acme, "k1", "s3cret"), sealed);

        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        for index in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[index] ^= 1;
            let tampered = base64::engine::general_purpose::STANDARD.encode(&bytes);
            assert_eq!(key.open(&acme, "k1", &tampered), None, "byte {index}");
            bytes[index] ^= 1;
        }
        assert_eq!(key.open(&acme, "k1", "AAAA"), None);
        assert_eq!(key.open(&acme, "k1", "not base64!"), None);
        // The associated data binds the tenant and the key id.
        assert_eq!(key.open(&tenant("globex"), "k1", &sealed), None);
        assert_eq!(key.open(&acme, "k2", &sealed), None);
        assert_eq!(key.open(&tenant("acm"), "ek1", &sealed), None);
        // And only the master key opens it.
        assert_eq!(MasterKey::generate().open(&acme, "k1", &sealed), None);
    }

    #[test]
    fn secret_lookups_are_keyed_and_deterministic() {
        let key = MasterKey::from_bytes([7; 32]);
        assert_eq!(key.secret_lookup("abc"), key.secret_lookup("abc"));
        assert_ne!(key.secret_lookup("abc"), key.secret_lookup("abd"));
        assert_ne!(
            key.secret_lookup("abc"),
            MasterKey::from_bytes([8; 32]).secret_lookup("abc")
        );
        assert_ne!(key.secret_lookup("abc"), hex::encode(Sha256::digest("abc")));
        // HMAC-SHA256(key, "secret:abc"), computed independently.
        let expected = hmac_sha256(&[7; 32], b"secret:abc");
        assert_eq!(key.secret_lookup("abc"), hex::encode(expected));
    }
}

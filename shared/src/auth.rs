//! API credentials: issuing, hashing and checking secrets, and reading the Basic header.

use base64::Engine;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::{Credential, TenantId, Timestamp};

/// Length of generated secrets (alphanumeric: ~238 bits).
const SECRET_CHARS: usize = 40;
/// Length of generated key ids.
const KEY_ID_CHARS: usize = 20;

/// A credential and its secret, as issued: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    pub credential: Credential,
    pub secret: String,
}

/// Hex SHA-256 of a secret, the only form in which secrets are stored.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Issues a credential with a fresh random secret (and key id unless one is given).
pub fn issue_credential(tenant: &TenantId, name: &str, key_id: Option<&str>) -> IssuedCredential {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_CHARS);
    credential_with_secret(tenant, name, key_id, secret)
}

/// A credential for a secret chosen by the operator (the local server's seeded credential).
pub fn credential_with_secret(
    tenant: &TenantId,
    name: &str,
    key_id: Option<&str>,
    secret: String,
) -> IssuedCredential {
    let key_id = match key_id {
        Some(key_id) => key_id.to_owned(),
        None => Alphanumeric
            .sample_string(&mut rand::rng(), KEY_ID_CHARS)
            .to_uppercase(),
    };
    IssuedCredential {
        credential: Credential {
            tenant: tenant.clone(),
            key_id,
            name: name.to_owned(),
            secret_sha256: secret_digest(&secret),
            revoked: false,
            created_at: Timestamp::now(),
        },
        secret,
    }
}

/// The first live credential whose secret matches, compared in constant time.
pub fn matching_credential<'c>(
    credentials: &'c [Credential],
    secret: &str,
) -> Option<&'c Credential> {
    let presented = secret_digest(secret);
    let mut found = None;
    for credential in credentials {
        let equal: bool = credential
            .secret_sha256
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        if equal && !credential.revoked && found.is_none() {
            found = Some(credential);
        }
    }
    found
}

/// `Authorization: Basic base64(user:password)` → (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_secrets_match_only_their_live_credential() {
        let tenant = TenantId::parse("acme").unwrap();
        let issued = issue_credential(&tenant, "ops", None);
        assert_eq!(issued.secret.len(), SECRET_CHARS);
        assert_ne!(issued.credential.secret_sha256, issued.secret);
        let mut stored = vec![issued.credential.clone()];
        assert!(matching_credential(&stored, &issued.secret).is_some());
        assert!(matching_credential(&stored, "wrong").is_none());
        stored[0].revoked = true;
        assert!(matching_credential(&stored, &issued.secret).is_none());
    }

    #[test]
    fn parses_basic_headers() {
        assert_eq!(
            parse_basic("Basic YWNtZTpzM2NyZXQ6eA=="),
            Some(("acme".to_owned(), "s3cret:x".to_owned()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}

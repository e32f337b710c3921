//! Issuing credentials and checking a secret against a stored credential.

use rand::distr::{Alphanumeric, SampleString};
use subtle::ConstantTimeEq;

use super::master_key::MasterKey;
use crate::model::{Credential, TenantId, Timestamp};

/// Length of generated secrets (alphanumeric: ~238 bits).
const SECRET_CHARS: usize = 40;
/// Length of generated key ids.
const KEY_ID_CHARS: usize = 20;

/// A credential and its secret, as issued: the secret is shown once and only stored sealed.
/// Its `Debug` output leaves the secret out.
#[derive(Clone)]
pub struct IssuedCredential {
    pub credential: Credential,
    pub secret: String,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("credential", &self.credential)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Issues a credential with a fresh random secret (and key id unless one is given).
pub fn issue_credential(
    master_key: &MasterKey,
    tenant: &TenantId,
    name: &str,
    key_id: Option<&str>,
) -> IssuedCredential {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_CHARS);
    credential_with_secret(master_key, tenant, name, key_id, secret)
}

/// A credential for a secret chosen by the operator (the local server's seeded credential).
pub fn credential_with_secret(
    master_key: &MasterKey,
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
            sealed_secret: master_key.seal(tenant, &key_id, &secret),
            secret_lookup: master_key.secret_lookup(&secret),
            key_id,
            name: name.to_owned(),
            revoked: false,
            created_at: Timestamp::now(),
        },
        secret,
    }
}

/// Whether `secret` is the live credential's secret: its look-up digest matches and its sealed
/// secret opens to the same text, both compared in constant time.
pub fn secret_matches(master_key: &MasterKey, credential: &Credential, secret: &str) -> bool {
    if credential.revoked {
        return false;
    }
    let lookup = master_key.secret_lookup(secret);
    let lookup_equal: bool = credential
        .secret_lookup
        .as_bytes()
        .ct_eq(lookup.as_bytes())
        .into();
    let Some(stored) = master_key.open_credential(credential) else {
        return false;
    };
    let secret_equal: bool = stored.as_bytes().ct_eq(secret.as_bytes()).into();
    lookup_equal && secret_equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn issued_secrets_match_only_their_live_credential() {
        let key = MasterKey::generate();
        let issued = issue_credential(&key, &tenant("acme"), "ops", None);
        assert_eq!(issued.secret.len(), SECRET_CHARS);
        assert_eq!(issued.credential.key_id.len(), KEY_ID_CHARS);
        assert!(!issued.credential.sealed_secret.contains(&issued.secret));
        assert_ne!(issued.credential.secret_lookup, issued.secret);
        assert_eq!(
            issued.credential.secret_lookup,
            key.secret_lookup(&issued.secret)
        );
        let mut credential = issued.credential.clone();
        assert!(secret_matches(&key, &credential, &issued.secret));
        assert!(!secret_matches(&key, &credential, "wrong"));
        assert!(!secret_matches(
            &MasterKey::generate(),
            &credential,
            &issued.secret
        ));
        credential.revoked = true;
        assert!(!secret_matches(&key, &credential, &issued.secret));
        assert!(!format!("{issued:?}").contains(&issued.secret));
    }
}

//! Issuing credentials and checking a secret against a stored credential.

use rand::distr::{Alphanumeric, SampleString};

use super::vault::Vault;
use crate::model::{Credential, TenantId, Timestamp};
use crate::ports::StoreResult;

/// Whether `text` can be a key id: 1-128 ASCII letters, digits or `-`, `_`, `.`, `~`.
pub fn is_key_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

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

/// Issues a credential with a fresh random secret (and key id unless one is given), sealed
/// under the current key version.
pub async fn issue_credential(
    vault: &Vault,
    tenant: &TenantId,
    name: &str,
    key_id: Option<&str>,
) -> StoreResult<IssuedCredential> {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_CHARS);
    credential_with_secret(vault, tenant, name, key_id, secret).await
}

/// A credential for a secret chosen by the operator (the local server's seeded credential).
pub async fn credential_with_secret(
    vault: &Vault,
    tenant: &TenantId,
    name: &str,
    key_id: Option<&str>,
    secret: String,
) -> StoreResult<IssuedCredential> {
    let key_id = match key_id {
        Some(key_id) => key_id.to_owned(),
        None => Alphanumeric
            .sample_string(&mut rand::rng(), KEY_ID_CHARS)
            .to_uppercase(),
    };
    let stored = vault.seal(tenant, &key_id, &secret).await?;
    Ok(IssuedCredential {
        credential: Credential {
            tenant: tenant.clone(),
            sealed_secret: stored.sealed,
            secret_lookup: stored.lookup,
            key_id,
            name: name.to_owned(),
            revoked: false,
            created_at: Timestamp::now(),
        },
        secret,
    })
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use super::*;
    use crate::adapters::embedded::FileKeyring;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn vault(dir: &tempfile::TempDir) -> Vault {
        let keyring = FileKeyring::load_or_create(&dir.path().join("master.key")).unwrap();
        Vault::new(std::sync::Arc::new(keyring))
    }

    #[tokio::test]
    async fn issued_secrets_match_only_their_live_credential() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(&dir);
        let issued = issue_credential(&vault, &tenant("acme"), "ops", None)
            .await
            .unwrap();
        assert_eq!(issued.secret.len(), SECRET_CHARS);
        assert_eq!(issued.credential.key_id.len(), KEY_ID_CHARS);
        assert!(!issued.credential.sealed_secret.contains(&issued.secret));
        assert!(issued.credential.sealed_secret.starts_with("v1:"));
        assert_ne!(issued.credential.secret_lookup, issued.secret);
        assert_eq!(
            vault.lookups(&issued.secret).await.unwrap(),
            vec![issued.credential.secret_lookup.clone()]
        );
        let mut credential = issued.credential.clone();
        assert!(vault.matches(&credential, &issued.secret).await.unwrap());
        assert!(!vault.matches(&credential, "wrong").await.unwrap());
        let other = tempfile::tempdir().unwrap();
        assert!(!self::vault(&other)
            .matches(&credential, &issued.secret)
            .await
            .unwrap());
        credential.revoked = true;
        assert!(!vault.matches(&credential, &issued.secret).await.unwrap());
        assert!(!format!("{issued:?}").contains(&issued.secret));
    }
}

//! The keyring of credentials' secrets: its state, and its rotation by the operator.
//!
//! A rotation adds a version and makes it current (new credentials are sealed under it at
//! once), then re-seals every credential under it — opened under its old version, sealed
//! under the new, with the new look-up digest and pointer, the old pointer dropped — and
//! retires the older versions once no credential needs them. Until then the old versions still
//! open and find, so no credential stops working at any point. A rotation stopped part way
//! (a crash, or a limit on how many to re-seal per run) is finished by running it again: while
//! an older version is still active the run adds none, and skips the credentials already
//! under the current version.

use std::collections::BTreeMap;

use super::{BulkService, ServiceResult};
use crate::auth::{sealed_version, KeyVersions, Sealed};
use crate::model::{Credential, Resealed};

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The version credentials are re-sealed under: the current one.
    pub version: u32,
    /// Whether this run added it (`false`: it went on with a rotation stopped earlier).
    pub added: bool,
    /// Credentials re-sealed by this run.
    pub resealed: usize,
    /// Credentials still under an older version (a limit stopped the run, or they could not
    /// be re-sealed): their versions stay active.
    pub remaining: usize,
    /// Key ids of the credentials whose secret could not be re-sealed (it does not open under
    /// the keyring, or its new digest is another credential's).
    pub failed: Vec<String>,
    /// The versions retired by this run.
    pub retired: Vec<u32>,
}

/// The keyring's versions, and how many credentials each one seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub versions: KeyVersions,
    /// Credentials (revoked ones included) by the version that sealed them; version 0 counts
    /// those whose sealed secret cannot be read.
    pub credentials: BTreeMap<u32, usize>,
}

/// Whether `credential` is sealed under `version` in the current form (not the unversioned one
/// of before versions).
fn sealed_under(credential: &Credential, version: u32) -> bool {
    Sealed::parse(&credential.sealed_secret).is_some_and(|sealed| sealed.version == Some(version))
}

impl BulkService {
    /// The keyring's versions and the credentials under each.
    pub async fn key_status(&self) -> ServiceResult<KeyStatus> {
        let versions = self.vault().reload().await?;
        let mut credentials = BTreeMap::new();
        for credential in self.ports.tenants.all_credentials().await? {
            let version = sealed_version(&credential.sealed_secret).unwrap_or(0);
            *credentials.entry(version).or_insert(0) += 1;
        }
        Ok(KeyStatus {
            versions,
            credentials,
        })
    }

    /// Rotates the keyring (see the module's documentation), re-sealing at most `limit`
    /// credentials in this run when given.
    pub async fn rotate_keys(&self, limit: Option<usize>) -> ServiceResult<Rotation> {
        let vault = self.vault();
        let versions = vault.reload().await?;
        let (version, added) = match versions.current {
            Some(current) if !versions.retiring.is_empty() => (current, false),
            _ => (self.ports.keyring.add_version().await?, true),
        };
        let mut rotation = Rotation {
            version,
            added,
            resealed: 0,
            remaining: 0,
            failed: Vec::new(),
            retired: Vec::new(),
        };
        for credential in self.ports.tenants.all_credentials().await? {
            if sealed_under(&credential, version) {
                continue;
            }
            if limit.is_some_and(|limit| rotation.resealed >= limit) {
                break;
            }
            if self.reseal(&credential, version).await? {
                rotation.resealed += 1;
            } else {
                rotation.failed.push(credential.key_id.clone());
            }
        }
        rotation.remaining = self
            .ports
            .tenants
            .all_credentials()
            .await?
            .iter()
            .filter(|credential| !sealed_under(credential, version))
            .count();
        if rotation.remaining == 0 {
            for old in vault.reload().await?.retiring {
                self.ports.keyring.retire(old).await?;
                rotation.retired.push(old);
            }
        }
        tracing::info!(
            version,
            added,
            resealed = rotation.resealed,
            remaining = rotation.remaining,
            failed = rotation.failed.len(),
            retired = ?rotation.retired,
            "key rotation"
        );
        Ok(rotation)
    }

    /// Re-seals one credential under `version`; false when it cannot be (its secret does not
    /// open, or its new digest is another credential's). A credential replaced meanwhile is
    /// left as the replacement made it.
    async fn reseal(&self, credential: &Credential, version: u32) -> ServiceResult<bool> {
        let vault = self.vault();
        let Some(secret) = vault.open_credential(credential).await? else {
            tracing::warn!(
                key_id = %credential.key_id,
                tenant = %credential.tenant,
                "a credential's secret does not open under the keyring: it cannot be re-sealed"
            );
            return Ok(false);
        };
        let stored = vault
            .seal_under(version, &credential.tenant, &credential.key_id, &secret)
            .await?;
        let resealed = Credential {
            sealed_secret: stored.sealed,
            secret_lookup: stored.lookup,
            ..credential.clone()
        };
        let outcome = self
            .ports
            .tenants
            .reseal_credential(&resealed, &credential.secret_lookup)
            .await?;
        match outcome {
            Resealed::Stored | Resealed::Changed => Ok(true),
            Resealed::SecretTaken => {
                tracing::warn!(
                    key_id = %credential.key_id,
                    tenant = %credential.tenant,
                    "another credential holds this credential's secret: it cannot be re-sealed"
                );
                Ok(false)
            }
        }
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use super::*;
    use crate::adapters::embedded;
    use crate::auth::sealing::{lookup_digest, seal_with};
    use crate::auth::{KeyBytes, SealContext};
    use crate::model::{TenantId, Timestamp};
    use crate::service::ServiceConfig;

    /// A data directory of before versions: `master.key` a single key, and a credential sealed
    /// with that key itself (no version) and found by its digest under that key.
    #[tokio::test]
    async fn a_key_file_and_credentials_of_before_versions_work_until_a_rotation_reseals_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = [5u8; 32];
        let key_file = dir.path().join(embedded::KEY_FILE);
        std::fs::write(&key_file, format!("{}\n", hex::encode(root))).unwrap();
        let adapters = embedded::open(dir.path()).await.unwrap();
        let service = BulkService::new(adapters.ports.clone(), ServiceConfig::default());
        let key = KeyBytes::from_bytes(root);
        let context = SealContext {
            tenant: "acme",
            key_id: "old",
        };
        let sealed = Sealed {
            version: None,
            wrapped_key: None,
            boxed: seal_with(&key, context, "old-secret"),
        };
        let credential = Credential {
            tenant: TenantId::parse("acme").unwrap(),
            key_id: "old".to_owned(),
            name: "of before".to_owned(),
            sealed_secret: sealed.to_text(),
            secret_lookup: lookup_digest(&key, "old-secret"),
            revoked: false,
            created_at: Timestamp::now(),
        };
        adapters
            .ports
            .tenants
            .put_credential(&credential)
            .await
            .unwrap();

        let status = service.key_status().await.unwrap();
        assert!(status.versions.legacy);
        assert_eq!(status.versions.active(), vec![1]);
        assert_eq!(status.credentials, BTreeMap::from([(1, 1)]));
        assert!(service.authenticate("acme", "old-secret").await.is_ok());
        assert!(service.authenticate_secret("old-secret").await.is_ok());

        let rotation = service.rotate_keys(None).await.unwrap();
        assert_eq!((rotation.version, rotation.resealed), (2, 1));
        assert_eq!(rotation.retired, vec![1]);
        assert!(service.authenticate("acme", "old-secret").await.is_ok());
        assert!(service.authenticate_secret("old-secret").await.is_ok());
        let stored = service
            .credentials(&TenantId::parse("acme").unwrap())
            .await
            .unwrap();
        assert!(stored[0].sealed_secret.starts_with("v2:"));
        let text = std::fs::read_to_string(&key_file).unwrap();
        assert!(!text.contains(&hex::encode(root)), "the old key is gone");
        assert!(!text.contains("legacy"), "{text}");
    }
}

//! Sealing, opening and finding credentials' secrets with the keys of a [`Keyring`]: the one
//! place that decides which version seals, which versions still open and find, and what a
//! sealed secret and a look-up digest are made of. Adapters only keep the keys.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::keys::{KeyBytes, KeyVersions, SealContext};
use super::sealing::{lookup_digest, open_with, seal_with, Sealed};
use crate::model::{Credential, TenantId};
use crate::ports::{Keyring, StoreError, StoreResult};

/// A secret as stored: sealed, and its look-up digest, both under one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub version: u32,
    pub sealed: String,
    pub lookup: String,
}

/// The domain's use of a [`Keyring`].
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<dyn Keyring>,
}

impl Vault {
    pub fn new(keyring: Arc<dyn Keyring>) -> Vault {
        Vault { keyring }
    }

    /// The keyring's versions (as its adapter last read them).
    pub async fn versions(&self) -> StoreResult<KeyVersions> {
        self.keyring.versions().await
    }

    /// The versions read again from where they are kept.
    pub async fn reload(&self) -> StoreResult<KeyVersions> {
        self.keyring.reload().await
    }

    /// The current version; the keyring's first one is made for the first secret sealed.
    async fn current(&self) -> StoreResult<u32> {
        if let Some(current) = self.keyring.versions().await?.current {
            return Ok(current);
        }
        match self.keyring.reload().await?.current {
            Some(current) => Ok(current),
            None => self.keyring.add_version().await,
        }
    }

    /// Seals `secret` of the tenant's credential `key_id` under the current version.
    pub async fn seal(
        &self,
        tenant: &TenantId,
        key_id: &str,
        secret: &str,
    ) -> StoreResult<StoredSecret> {
        let version = self.current().await?;
        self.seal_under(version, tenant, key_id, secret).await
    }

    /// Seals `secret` under `version`, which must be active.
    pub async fn seal_under(
        &self,
        version: u32,
        tenant: &TenantId,
        key_id: &str,
        secret: &str,
    ) -> StoreResult<StoredSecret> {
        let context = SealContext {
            tenant: tenant.as_str(),
            key_id,
        };
        let gone = || StoreError::Corrupt(format!("key version {version} is not in the keyring"));
        let lookup = self
            .digest(version, false, secret)
            .await?
            .ok_or_else(gone)?;
        let key = self.keyring.seal_key(version, context).await?;
        let sealed = Sealed {
            version: Some(version),
            wrapped_key: key.wrapped,
            boxed: seal_with(&key.key, context, secret),
        };
        Ok(StoredSecret {
            version,
            sealed: sealed.to_text(),
            lookup,
        })
    }

    /// The look-up digest of `secret` under `version`: keyed by the version's look-up key, or
    /// by version 1's root itself for a secret sealed before versions (`legacy`).
    async fn digest(
        &self,
        version: u32,
        legacy: bool,
        secret: &str,
    ) -> StoreResult<Option<String>> {
        let Some(root) = self.keyring.root(version).await? else {
            return Ok(None);
        };
        let key: KeyBytes = if legacy { root } else { root.lookup_key() };
        Ok(Some(lookup_digest(&key, secret)))
    }

    /// The look-up digests that may find `secret`'s credential: under every active version,
    /// the current one first (and, while version 1 still opens secrets sealed before versions,
    /// its legacy digest last).
    pub async fn lookups(&self, secret: &str) -> StoreResult<Vec<String>> {
        let versions = self.keyring.versions().await?;
        self.lookups_under(&versions, secret).await
    }

    /// The look-up digests under the versions read again, but those in `tried`: empty unless
    /// the keyring changed since (a rotation in another process).
    pub async fn lookups_after_reload(
        &self,
        secret: &str,
        tried: &[String],
    ) -> StoreResult<Vec<String>> {
        let versions = self.keyring.reload().await?;
        let mut lookups = self.lookups_under(&versions, secret).await?;
        lookups.retain(|lookup| !tried.contains(lookup));
        Ok(lookups)
    }

    async fn lookups_under(
        &self,
        versions: &KeyVersions,
        secret: &str,
    ) -> StoreResult<Vec<String>> {
        let mut lookups = Vec::new();
        for version in versions.active() {
            lookups.extend(self.digest(version, false, secret).await?);
        }
        if versions.opens_legacy() {
            lookups.extend(self.digest(1, true, secret).await?);
        }
        Ok(lookups)
    }

    /// The versions, read again when they lack `version` (sealed by a rotation this process
    /// has not seen yet).
    async fn versions_with(&self, version: u32) -> StoreResult<KeyVersions> {
        let versions = self.keyring.versions().await?;
        if versions.is_active(version) {
            return Ok(versions);
        }
        self.keyring.reload().await
    }

    /// Opens a sealed secret of the tenant's credential `key_id`; `None` when it was sealed for
    /// another credential, altered, or under a version no longer active.
    pub async fn open(
        &self,
        tenant: &TenantId,
        key_id: &str,
        sealed: &str,
    ) -> StoreResult<Option<String>> {
        let Some(sealed) = Sealed::parse(sealed) else {
            return Ok(None);
        };
        let version = sealed.key_version();
        let versions = self.versions_with(version).await?;
        let legacy = sealed.version.is_none();
        if !versions.is_active(version) || (legacy && !versions.opens_legacy()) {
            return Ok(None);
        }
        let context = SealContext {
            tenant: tenant.as_str(),
            key_id,
        };
        let key = if legacy {
            self.keyring.root(1).await?
        } else {
            self.keyring
                .open_key(version, context, sealed.wrapped_key.as_deref())
                .await?
        };
        Ok(key.and_then(|key| open_with(&key, context, &sealed.boxed)))
    }

    /// Opens a stored credential's secret.
    pub async fn open_credential(&self, credential: &Credential) -> StoreResult<Option<String>> {
        self.open(
            &credential.tenant,
            &credential.key_id,
            &credential.sealed_secret,
        )
        .await
    }

    /// Whether `secret` is the live credential's secret: its look-up digest under the version
    /// that sealed it is the stored one and the sealed secret opens to it, both compared in
    /// constant time.
    pub async fn matches(&self, credential: &Credential, secret: &str) -> StoreResult<bool> {
        if credential.revoked {
            return Ok(false);
        }
        let Some(sealed) = Sealed::parse(&credential.sealed_secret) else {
            return Ok(false);
        };
        let Some(stored) = self.open_credential(credential).await? else {
            return Ok(false);
        };
        let legacy = sealed.version.is_none();
        let Some(lookup) = self.digest(sealed.key_version(), legacy, secret).await? else {
            return Ok(false);
        };
        let lookup_equal: bool = credential
            .secret_lookup
            .as_bytes()
            .ct_eq(lookup.as_bytes())
            .into();
        let secret_equal: bool = stored.as_bytes().ct_eq(secret.as_bytes()).into();
        Ok(lookup_equal && secret_equal)
    }
}

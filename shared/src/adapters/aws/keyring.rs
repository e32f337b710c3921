//! The AWS [`Keyring`]: envelope encryption under the stack's customer-managed KMS key
//! (`BULK_KMS_KEY_ARN`).
//!
//! - Each secret is sealed with a data key of its own (KMS `GenerateDataKey`, AES-256) whose
//!   encryption context is `{tenant, key_id}`; the data key's ciphertext blob is stored beside
//!   the sealed secret, and opening it is a KMS `Decrypt` with the same context, so a sealed
//!   secret moved to another credential does not open, and CloudTrail names the credential of
//!   every decryption.
//! - A version's root (which keys the look-up digests) is a KMS data key too, kept wrapped in
//!   the table's item `KEYRING` / `KEYRING` (`current`, and `roots`: version → ciphertext
//!   blob), with the encryption context `{keyring_version}`. The version a secret is sealed
//!   under names the root of its look-up digest; its data key is its own whatever the version.
//! - A stack of before the keyring sealed its credentials under one master key (a template
//!   parameter): [`KmsKeyring::import_master_key`] makes that key version 1 of an empty keyring,
//!   wrapped like any root and marked `legacy`, so that those credentials keep working until a
//!   rotation re-seals them.
//!
//! Decrypted roots and data keys are kept in this process's memory only (data keys up to
//! [`DATA_KEYS_CACHED`]), never written nor logged. Only the operator (`bulk-admin`) generates
//! data keys and changes the keyring; the functions that authenticate may only `kms:Decrypt`
//! with these context keys, and the others have no KMS permission at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use super::sdk_failure;
use crate::auth::{KeyBytes, KeyVersions, SealContext, SealKey};
use crate::ports::{Keyring, StoreError, StoreResult};

const STORE: &str = "kms";
/// The encryption context key naming a sealed secret's tenant.
pub const CONTEXT_TENANT: &str = "tenant";
/// The encryption context key naming a sealed secret's credential.
pub const CONTEXT_KEY_ID: &str = "key_id";
/// The encryption context key naming the version of a wrapped root.
pub const CONTEXT_VERSION: &str = "keyring_version";
/// Every encryption context key the stack's key is used with (the functions' `kms:Decrypt` is
/// conditioned on them).
pub const CONTEXT_KEYS: [&str; 3] = [CONTEXT_TENANT, CONTEXT_KEY_ID, CONTEXT_VERSION];
/// Decrypted data keys kept in memory at most (the cache is emptied when full).
pub const DATA_KEYS_CACHED: usize = 1024;

const KEYRING_PK: &str = "KEYRING";

/// The keyring item, read.
#[derive(Debug, Clone, Default)]
struct StoredRing {
    current: Option<u32>,
    roots: BTreeMap<u32, Vec<u8>>,
    /// Version 1 is the imported master key of before versions.
    legacy: bool,
}

impl StoredRing {
    fn versions(&self) -> KeyVersions {
        KeyVersions {
            current: self.current,
            retiring: self
                .roots
                .keys()
                .rev()
                .copied()
                .filter(|version| Some(*version) != self.current)
                .collect(),
            legacy: self.legacy && self.roots.contains_key(&1),
        }
    }
}

#[derive(Default)]
struct Cache {
    ring: Option<StoredRing>,
    roots: HashMap<u32, KeyBytes>,
    /// Keyed by tenant, key id and the wrapped key: a data key is handed out only for the
    /// context KMS checked it against.
    data_keys: HashMap<(String, String, Vec<u8>), KeyBytes>,
}

/// The keyring under a KMS key, with its item in the table. Its `Debug` output shows no key.
pub struct KmsKeyring {
    kms: aws_sdk_kms::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key_arn: Option<String>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for KmsKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyring")
            .field("table", &self.table)
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

impl KmsKeyring {
    /// The keyring under the KMS key `key_arn` (`None`: this process has none, and every use
    /// of a key fails as a denial naming the missing setting).
    pub fn new(
        kms: aws_sdk_kms::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        table: String,
        key_arn: Option<String>,
    ) -> KmsKeyring {
        KmsKeyring {
            kms,
            dynamodb,
            table,
            key_arn,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key_arn(&self) -> StoreResult<&str> {
        self.key_arn.as_deref().ok_or_else(|| StoreError::Denied {
            store: STORE,
            message: "BULK_KMS_KEY_ARN is not set: this function has no key to open or seal \
                      credentials' secrets with"
                .to_owned(),
        })
    }

    fn item_key() -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(KEYRING_PK.to_owned())),
            ("sk".to_owned(), AttributeValue::S(KEYRING_PK.to_owned())),
        ])
    }

    async fn read_ring(&self) -> StoreResult<StoredRing> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(KmsKeyring::item_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| sdk_failure("dynamodb", error))?;
        let Some(item) = out.item else {
            return Ok(StoredRing::default());
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("the keyring item {what}"));
        let current = item
            .get("current")
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse::<u32>().ok())
            .ok_or_else(|| corrupt("has no current version"))?;
        let mut roots = BTreeMap::new();
        if let Some(AttributeValue::M(map)) = item.get("roots") {
            for (version, wrapped) in map {
                let version = version
                    .parse::<u32>()
                    .map_err(|_| corrupt("names a version that is no number"))?;
                let wrapped = wrapped
                    .as_b()
                    .map_err(|_| corrupt("holds a root that is no binary"))?;
                roots.insert(version, wrapped.as_ref().to_vec());
            }
        }
        if !roots.contains_key(&current) {
            return Err(corrupt("lacks the root of its current version"));
        }
        let legacy = matches!(item.get("legacy"), Some(AttributeValue::Bool(true)));
        Ok(StoredRing {
            current: Some(current),
            roots,
            legacy,
        })
    }

    async fn ring(&self) -> StoreResult<StoredRing> {
        if let Some(ring) = self.cache().ring.clone() {
            return Ok(ring);
        }
        self.read_again().await
    }

    async fn read_again(&self) -> StoreResult<StoredRing> {
        let ring = self.read_ring().await?;
        let mut cache = self.cache();
        cache
            .roots
            .retain(|version, _| ring.roots.contains_key(version));
        cache.ring = Some(ring.clone());
        Ok(ring)
    }

    /// KMS `Decrypt` of `wrapped` under the stack's key with `context`; `None` when KMS says
    /// the blob does not decrypt so (altered, another context).
    async fn decrypt(
        &self,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> StoreResult<Option<KeyBytes>> {
        let mut request = self
            .kms
            .decrypt()
            .key_id(self.key_arn()?)
            .ciphertext_blob(Blob::new(wrapped.to_vec()));
        for (name, value) in context {
            request = request.encryption_context(*name, *value);
        }
        match request.send().await {
            Ok(out) => Ok(out
                .plaintext()
                .and_then(|key| KeyBytes::from_slice(key.as_ref()))),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_ciphertext_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(sdk_failure(STORE, error)),
        }
    }

    /// KMS `GenerateDataKey` (AES-256) under the stack's key with `context`: the key and its
    /// ciphertext blob.
    async fn generate(&self, context: &[(&str, &str)]) -> StoreResult<(KeyBytes, Vec<u8>)> {
        let mut request = self
            .kms
            .generate_data_key()
            .key_id(self.key_arn()?)
            .key_spec(DataKeySpec::Aes256);
        for (name, value) in context {
            request = request.encryption_context(*name, *value);
        }
        let out = request
            .send()
            .await
            .map_err(|error| sdk_failure(STORE, error))?;
        let key = out
            .plaintext()
            .and_then(|key| KeyBytes::from_slice(key.as_ref()));
        let wrapped = out.ciphertext_blob().map(|blob| blob.as_ref().to_vec());
        match (key, wrapped) {
            (Some(key), Some(wrapped)) => Ok((key, wrapped)),
            _ => Err(StoreError::unavailable(
                STORE,
                "GenerateDataKey answered no 32-byte key and blob",
            )),
        }
    }

    /// Makes `master_key`, the single key that sealed the credentials of a stack of before
    /// versions, version 1 of this keyring, which must be empty: wrapped by KMS (`Encrypt`)
    /// with the context of version 1, marked `legacy`. The operator's, once.
    pub async fn import_master_key(&self, master_key: &KeyBytes) -> StoreResult<()> {
        let wrapped = self
            .kms
            .encrypt()
            .key_id(self.key_arn()?)
            .plaintext(Blob::new(master_key.expose().to_vec()))
            .encryption_context(CONTEXT_VERSION, "1")
            .send()
            .await
            .map_err(|error| sdk_failure(STORE, error))?
            .ciphertext_blob
            .ok_or_else(|| StoreError::unavailable(STORE, "Encrypt answered no blob"))?;
        let blob = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
            wrapped.into_inner(),
        ));
        let mut item = KmsKeyring::item_key();
        item.insert("current".to_owned(), AttributeValue::N("1".to_owned()));
        item.insert(
            "roots".to_owned(),
            AttributeValue::M(HashMap::from([("1".to_owned(), blob)])),
        );
        item.insert("legacy".to_owned(), AttributeValue::Bool(true));
        let sent = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(error) if super::dynamo::is_conditional_failure(&error) => {
                return Err(StoreError::Corrupt(
                    "the keyring has versions already: a master key is imported into an empty \
                     keyring only"
                        .to_owned(),
                ))
            }
            Err(error) => return Err(sdk_failure("dynamodb", error)),
        }
        self.read_again().await?;
        Ok(())
    }

    fn remember_data_key(&self, context: SealContext<'_>, wrapped: &[u8], key: &KeyBytes) {
        let mut cache = self.cache();
        if cache.data_keys.len() >= DATA_KEYS_CACHED {
            cache.data_keys.clear();
        }
        cache.data_keys.insert(
            (
                context.tenant.to_owned(),
                context.key_id.to_owned(),
                wrapped.to_vec(),
            ),
            key.clone(),
        );
    }
}

#[async_trait]
impl Keyring for KmsKeyring {
    async fn versions(&self) -> StoreResult<KeyVersions> {
        Ok(self.ring().await?.versions())
    }

    async fn reload(&self) -> StoreResult<KeyVersions> {
        Ok(self.read_again().await?.versions())
    }

    async fn root(&self, version: u32) -> StoreResult<Option<KeyBytes>> {
        if let Some(root) = self.cache().roots.get(&version) {
            return Ok(Some(root.clone()));
        }
        let ring = self.ring().await?;
        let Some(wrapped) = ring.roots.get(&version) else {
            return Ok(None);
        };
        let label = version.to_string();
        let Some(root) = self.decrypt(wrapped, &[(CONTEXT_VERSION, &label)]).await? else {
            return Err(StoreError::Corrupt(format!(
                "the root of key version {version} does not decrypt under the stack's key"
            )));
        };
        self.cache().roots.insert(version, root.clone());
        Ok(Some(root))
    }

    async fn seal_key(&self, _version: u32, context: SealContext<'_>) -> StoreResult<SealKey> {
        let (key, wrapped) = self
            .generate(&[
                (CONTEXT_TENANT, context.tenant),
                (CONTEXT_KEY_ID, context.key_id),
            ])
            .await?;
        self.remember_data_key(context, &wrapped, &key);
        Ok(SealKey {
            key,
            wrapped: Some(wrapped),
        })
    }

    async fn open_key(
        &self,
        _version: u32,
        context: SealContext<'_>,
        wrapped: Option<&[u8]>,
    ) -> StoreResult<Option<KeyBytes>> {
        // A key derived from a root is another store's: every secret here has its data key.
        let Some(wrapped) = wrapped else {
            return Ok(None);
        };
        let cached = self
            .cache()
            .data_keys
            .get(&(
                context.tenant.to_owned(),
                context.key_id.to_owned(),
                wrapped.to_vec(),
            ))
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let key = self
            .decrypt(
                wrapped,
                &[
                    (CONTEXT_TENANT, context.tenant),
                    (CONTEXT_KEY_ID, context.key_id),
                ],
            )
            .await?;
        if let Some(key) = &key {
            self.remember_data_key(context, wrapped, key);
        }
        Ok(key)
    }

    async fn add_version(&self) -> StoreResult<u32> {
        let ring = self.read_again().await?;
        let next = ring.roots.keys().next_back().copied().unwrap_or(0) + 1;
        let label = next.to_string();
        let (root, wrapped) = self.generate(&[(CONTEXT_VERSION, &label)]).await?;
        let blob = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(wrapped));
        let request = self.dynamodb.update_item().table_name(&self.table);
        let request = match ring.current {
            None => request
                .set_key(Some(KmsKeyring::item_key()))
                .update_expression("SET #current = :next, #roots = :roots")
                .condition_expression("attribute_not_exists(pk)")
                .expression_attribute_values(
                    ":roots",
                    AttributeValue::M(HashMap::from([(label.clone(), blob)])),
                ),
            Some(current) => request
                .set_key(Some(KmsKeyring::item_key()))
                .update_expression("SET #current = :next, #roots.#version = :root")
                .condition_expression("#current = :current")
                .expression_attribute_names("#version", label.clone())
                .expression_attribute_values(":root", blob)
                .expression_attribute_values(":current", AttributeValue::N(current.to_string())),
        };
        let sent = request
            .expression_attribute_names("#current", "current")
            .expression_attribute_names("#roots", "roots")
            .expression_attribute_values(":next", AttributeValue::N(label))
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(error) if super::dynamo::is_conditional_failure(&error) => {
                return Err(StoreError::unavailable(
                    STORE,
                    "the keyring was changed by another process meanwhile: run again",
                ))
            }
            Err(error) => return Err(sdk_failure("dynamodb", error)),
        }
        self.cache().roots.insert(next, root);
        self.read_again().await?;
        Ok(next)
    }

    async fn retire(&self, version: u32) -> StoreResult<()> {
        let sent = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(KmsKeyring::item_key()))
            .update_expression("REMOVE #roots.#version")
            .condition_expression("#current <> :version")
            .expression_attribute_names("#roots", "roots")
            .expression_attribute_names("#version", version.to_string())
            .expression_attribute_names("#current", "current")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(error) if super::dynamo::is_conditional_failure(&error) => {
                return Err(StoreError::Corrupt(format!(
                    "key version {version} is current: it cannot be retired"
                )))
            }
            Err(error) => return Err(sdk_failure("dynamodb", error)),
        }
        self.cache().roots.remove(&version);
        self.read_again().await?;
        Ok(())
    }
}

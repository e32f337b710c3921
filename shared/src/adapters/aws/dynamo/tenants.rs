//! [`TenantStore`] on DynamoDB.
//!
//! Credentials are keyed by key id alone (`CREDENTIAL#{key_id}`), since key ids are unique
//! across tenants, and listed per tenant through `gsi1` (`CREDENTIALS#{tenant}`). A pointer item
//! `SECRET#{secret_lookup}` → key id finds a credential by its secret. Both are written in one
//! transaction whose conditions refuse a key id of another tenant and a secret of another
//! credential. Authentication reads both with strongly consistent `GetItem`s.
//!
//! Credential items of the earlier layout (`TENANT#{tenant}` / `CRED#{key_id}`, holding only a
//! SHA-256 digest of the secret) are ignored: their secrets cannot be recovered, so those
//! credentials must be issued again.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{
    backoff, build_error, from_item, is_conditional_failure, key, n, s, text_of, to_item,
    unavailable, Cancellation, DynamoStore, Item, MAX_RETRIES, STORE,
};
use crate::model::{
    Credential, CredentialPut, Resealed, SlotLease, TenantId, TenantSettings, Timestamp,
};
use crate::ports::{StoreError, StoreResult, TenantStore};

fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

fn settings_key(tenant: &TenantId) -> Item {
    key(tenant_pk(tenant), "SETTINGS")
}

fn credential_key(key_id: &str) -> Item {
    key(format!("CREDENTIAL#{key_id}"), "CREDENTIAL")
}

fn credentials_partition(tenant: &TenantId) -> String {
    format!("CREDENTIALS#{tenant}")
}

fn secret_key(lookup: &str) -> Item {
    key(format!("SECRET#{lookup}"), "SECRET")
}

/// The item finding a credential by its secret's look-up digest.
fn secret_pointer(credential: &Credential) -> Item {
    let mut item = secret_key(&credential.secret_lookup);
    item.insert("key_id".to_owned(), s(credential.key_id.clone()));
    item.insert("tenant".to_owned(), s(credential.tenant.as_str()));
    item
}

/// The writes of storing `credential` over `existing` (read just before): the credential,
/// the pointer of its secret and, unless `keep_old_pointer`, the removal of the pointer of the
/// secret it replaces.
fn credential_writes(
    table: &str,
    credential: &Credential,
    existing: Option<&Credential>,
    keep_old_pointer: bool,
) -> StoreResult<Vec<TransactWriteItem>> {
    let mut writes = vec![
        TransactWriteItem::builder()
            .put(credential_put(table, credential, existing)?)
            .build(),
        TransactWriteItem::builder()
            .put(pointer_put(table, credential)?)
            .build(),
    ];
    // The replaced secret no longer finds this credential.
    if let Some(existing) = existing
        .filter(|existing| existing.secret_lookup != credential.secret_lookup)
        .filter(|_| !keep_old_pointer)
    {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(secret_key(&existing.secret_lookup)))
            .condition_expression("attribute_not_exists(pk) OR #key_id = :key_id")
            .expression_attribute_names("#key_id", "key_id")
            .expression_attribute_values(":key_id", s(credential.key_id.clone()))
            .build()
            .map_err(|e| build_error(STORE, e))?;
        writes.push(TransactWriteItem::builder().delete(delete).build());
    }
    Ok(writes)
}

/// The credential's item, listed by its tenant, conditioned on what was read.
fn credential_put(
    table: &str,
    credential: &Credential,
    existing: Option<&Credential>,
) -> StoreResult<Put> {
    let mut item = to_item(credential)?;
    item.extend(credential_key(&credential.key_id));
    item.insert(
        "gsi1pk".to_owned(),
        s(credentials_partition(&credential.tenant)),
    );
    item.insert("gsi1sk".to_owned(), s(credential.key_id.clone()));
    let put = Put::builder().table_name(table).set_item(Some(item));
    // Replace only what was read: the same tenant's credential with the same secret.
    match existing {
        Some(existing) => put
            .condition_expression("#tenant = :tenant AND #lookup = :old_lookup")
            .expression_attribute_names("#tenant", "tenant")
            .expression_attribute_names("#lookup", "secret_lookup")
            .expression_attribute_values(":tenant", s(credential.tenant.as_str()))
            .expression_attribute_values(":old_lookup", s(existing.secret_lookup.clone())),
        None => put.condition_expression("attribute_not_exists(pk)"),
    }
    .build()
    .map_err(|e| build_error(STORE, e))
}

/// The pointer of the credential's secret, unless another credential's holds the secret.
fn pointer_put(table: &str, credential: &Credential) -> StoreResult<Put> {
    Put::builder()
        .table_name(table)
        .set_item(Some(secret_pointer(credential)))
        .condition_expression("attribute_not_exists(pk) OR #key_id = :key_id")
        .expression_attribute_names("#key_id", "key_id")
        .expression_attribute_values(":key_id", s(credential.key_id.clone()))
        .build()
        .map_err(|e| build_error(STORE, e))
}

/// The writes of re-sealing a credential whose look-up digest was `previous`: its sealed
/// secret and digest (nothing else), the new digest's pointer, and, unless `keep_old_pointer`,
/// the old pointer's removal.
fn reseal_writes(
    table: &str,
    resealed: &Credential,
    previous: &str,
    keep_old_pointer: bool,
) -> StoreResult<Vec<TransactWriteItem>> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(credential_key(&resealed.key_id)))
        .update_expression("SET #sealed = :sealed, #lookup = :lookup")
        .condition_expression("#tenant = :tenant AND #lookup = :previous")
        .expression_attribute_names("#sealed", "sealed_secret")
        .expression_attribute_names("#lookup", "secret_lookup")
        .expression_attribute_names("#tenant", "tenant")
        .expression_attribute_values(":sealed", s(resealed.sealed_secret.clone()))
        .expression_attribute_values(":lookup", s(resealed.secret_lookup.clone()))
        .expression_attribute_values(":tenant", s(resealed.tenant.as_str()))
        .expression_attribute_values(":previous", s(previous))
        .build()
        .map_err(|e| build_error(STORE, e))?;
    let mut writes = vec![
        TransactWriteItem::builder().update(update).build(),
        TransactWriteItem::builder()
            .put(pointer_put(table, resealed)?)
            .build(),
    ];
    if previous != resealed.secret_lookup && !keep_old_pointer {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(secret_key(previous)))
            .condition_expression("attribute_not_exists(pk) OR #key_id = :key_id")
            .expression_attribute_names("#key_id", "key_id")
            .expression_attribute_values(":key_id", s(resealed.key_id.clone()))
            .build()
            .map_err(|e| build_error(STORE, e))?;
        writes.push(TransactWriteItem::builder().delete(delete).build());
    }
    Ok(writes)
}

impl DynamoStore {
    async fn put_plain(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn settings(&self, tenant: &TenantId) -> StoreResult<Option<TenantSettings>> {
        self.get_item(settings_key(tenant))
            .await?
            .map(from_item::<TenantSettings>)
            .transpose()
    }

    async fn put_settings(&self, settings: &TenantSettings) -> StoreResult<()> {
        let mut item = to_item(settings)?;
        item.extend(settings_key(&settings.tenant));
        self.put_plain(item).await
    }

    async fn credentials(&self, tenant: &TenantId) -> StoreResult<Vec<Credential>> {
        let partition = credentials_partition(tenant);
        let items = self
            .query_all(|| self.gsi1_partition(&partition, true))
            .await?;
        let mut credentials = items
            .into_iter()
            .map(from_item::<Credential>)
            .collect::<StoreResult<Vec<_>>>()?;
        credentials.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(credentials)
    }

    async fn put_credential(&self, credential: &Credential) -> StoreResult<CredentialPut> {
        let mut attempt = 0;
        // Set when the pointer of the replaced secret turns out to be another credential's.
        let mut keep_old_pointer = false;
        loop {
            let existing = self.credential_by_key_id(&credential.key_id).await?;
            if existing
                .as_ref()
                .is_some_and(|existing| existing.tenant != credential.tenant)
            {
                return Ok(CredentialPut::KeyIdTaken);
            }
            let writes =
                credential_writes(&self.table, credential, existing.as_ref(), keep_old_pointer)?;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await;
            let error = match sent {
                Ok(_) => return Ok(CredentialPut::Stored),
                Err(error) => error,
            };
            let Some(cancellation) = Cancellation::of(&error) else {
                return Err(unavailable(error));
            };
            let failed = |index: usize| cancellation.condition_failed(index);
            if failed(1) {
                return Ok(CredentialPut::SecretTaken);
            }
            if failed(2) {
                keep_old_pointer = true;
            }
            // The credential changed since it was read (or a transient conflict): read again.
            let retry = failed(0) || failed(2) || cancellation.transient();
            attempt += 1;
            if !retry || attempt > MAX_RETRIES {
                return Err(unavailable(error));
            }
            backoff(attempt).await;
        }
    }

    async fn credential_by_key_id(&self, key_id: &str) -> StoreResult<Option<Credential>> {
        self.get_item(credential_key(key_id))
            .await?
            .map(from_item::<Credential>)
            .transpose()
    }

    async fn credential_by_secret_lookup(&self, lookup: &str) -> StoreResult<Option<Credential>> {
        let Some(pointer) = self.get_item(secret_key(lookup)).await? else {
            return Ok(None);
        };
        let Some(key_id) = text_of(&pointer, "key_id") else {
            return Err(StoreError::Corrupt(
                "a secret pointer has no key id".to_owned(),
            ));
        };
        // A pointer left by an interrupted replacement finds nothing.
        Ok(self
            .credential_by_key_id(key_id)
            .await?
            .filter(|credential| credential.secret_lookup == lookup))
    }

    async fn count_request(&self, tenant: &TenantId, window: i64) -> StoreResult<u64> {
        // One item per tenant and minute, deleted by the table's TTL an hour later.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{tenant}#{window}"), "RATE")))
            .update_expression("ADD request_count :one SET expires_at = :expires")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n((window + 61) * 60))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        out.attributes()
            .and_then(|attributes| attributes.get("request_count"))
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("request count of {tenant} is not a number"))
            })
    }

    async fn count_failed_authentication(&self, source: &str, window: i64) -> StoreResult<u64> {
        DynamoStore::count_failed_authentication(self, source, window).await
    }

    async fn failed_authentications(&self, source: &str, window: i64) -> StoreResult<u64> {
        DynamoStore::failed_authentications(self, source, window).await
    }

    async fn take_slot(
        &self,
        tenant: &TenantId,
        lease: &SlotLease,
        at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        DynamoStore::take_slot(self, tenant, lease, at).await
    }

    async fn free_slot(
        &self,
        tenant: &TenantId,
        name: &str,
        slot: u64,
        holder: &str,
    ) -> StoreResult<()> {
        DynamoStore::free_slot(self, tenant, name, slot, holder).await
    }

    async fn all_credentials(&self) -> StoreResult<Vec<Credential>> {
        // The operator's scan (key rotation): credentials are keyed by key id alone.
        let mut credentials = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :credential) AND sk = :sk")
                .expression_attribute_values(":credential", s("CREDENTIAL#"))
                .expression_attribute_values(":sk", s("CREDENTIAL"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items.unwrap_or_default() {
                credentials.push(from_item::<Credential>(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        credentials.sort_by(|a, b| {
            (&a.tenant, a.created_at, &a.key_id).cmp(&(&b.tenant, b.created_at, &b.key_id))
        });
        Ok(credentials)
    }

    async fn reseal_credential(
        &self,
        resealed: &Credential,
        previous_lookup: &str,
    ) -> StoreResult<Resealed> {
        let mut attempt = 0;
        // Set when the old pointer turns out to be another credential's.
        let mut keep_old_pointer = false;
        loop {
            let writes = reseal_writes(&self.table, resealed, previous_lookup, keep_old_pointer)?;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await;
            let error = match sent {
                Ok(_) => return Ok(Resealed::Stored),
                Err(error) => error,
            };
            let Some(cancellation) = Cancellation::of(&error) else {
                return Err(unavailable(error));
            };
            if cancellation.condition_failed(0) {
                return Ok(Resealed::Changed);
            }
            if cancellation.condition_failed(1) {
                return Ok(Resealed::SecretTaken);
            }
            // The old pointer is another credential's now: it stays.
            keep_old_pointer |= cancellation.condition_failed(2);
            attempt += 1;
            if !(cancellation.condition_failed(2) || cancellation.transient())
                || attempt > MAX_RETRIES
            {
                return Err(unavailable(error));
            }
            backoff(attempt).await;
        }
    }

    async fn revoke_credential(&self, tenant: &TenantId, key_id: &str) -> StoreResult<bool> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(credential_key(key_id)))
            .update_expression("SET #revoked = :true")
            .condition_expression("attribute_exists(pk) AND #tenant = :tenant")
            .expression_attribute_names("#revoked", "revoked")
            .expression_attribute_names("#tenant", "tenant")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_failure(&error) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }
}

//! `TenantStore` on SQLite: settings as JSON per tenant, and API credentials.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::store::{from_json, millis, timestamp, to_json};
use super::SqliteStore;
use crate::model::{
    Credential, CredentialPut, Resealed, SlotLease, TenantId, TenantSettings, Timestamp,
};
use crate::ports::{StoreError, StoreResult, TenantStore};

/// The columns [`credential_from_row`] reads, in order.
const CREDENTIAL_COLUMNS: &str =
    "key_id, tenant, name, sealed_secret, secret_lookup, revoked, created_at";

fn credential_from_row(row: &Row<'_>) -> StoreResult<Credential> {
    let tenant: String = row.get(1)?;
    Ok(Credential {
        key_id: row.get(0)?,
        tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
        name: row.get(2)?,
        sealed_secret: row.get(3)?,
        secret_lookup: row.get(4)?,
        revoked: row.get(5)?,
        created_at: timestamp(row.get(6)?)?,
    })
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn settings(&self, tenant: &TenantId) -> StoreResult<Option<TenantSettings>> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let body: Option<String> = conn
                    .query_row(
                        "SELECT body FROM tenant_settings WHERE tenant = ?1",
                        [tenant.as_str()],
                        |row| row.get(0),
                    )
                    .optional()?;
                body.map(|body| from_json("tenant settings", &body))
                    .transpose()
            })
            .await
    }

    async fn put_settings(&self, settings: &TenantSettings) -> StoreResult<()> {
        let tenant = settings.tenant.clone();
        let body = to_json(settings)?;
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO tenant_settings (tenant, body) VALUES (?1, ?2) \
                     ON CONFLICT (tenant) DO UPDATE SET body = excluded.body",
                    params![tenant.as_str(), body],
                )?;
                Ok(())
            })
            .await
    }

    async fn credentials(&self, tenant: &TenantId) -> StoreResult<Vec<Credential>> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
                     WHERE tenant = ?1 ORDER BY created_at, key_id"
                ))?;
                let mut rows = stmt.query([tenant.as_str()])?;
                let mut credentials = Vec::new();
                while let Some(row) = rows.next()? {
                    credentials.push(credential_from_row(row)?);
                }
                Ok(credentials)
            })
            .await
    }

    async fn put_credential(&self, credential: &Credential) -> StoreResult<CredentialPut> {
        let credential = credential.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let key_holder: Option<String> = tx
                    .query_row(
                        "SELECT tenant FROM credentials WHERE key_id = ?1",
                        [&credential.key_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if key_holder.is_some_and(|tenant| tenant != credential.tenant.as_str()) {
                    return Ok(CredentialPut::KeyIdTaken);
                }
                let secret_holder: Option<String> = tx
                    .query_row(
                        "SELECT key_id FROM credentials WHERE secret_lookup = ?1",
                        [&credential.secret_lookup],
                        |row| row.get(0),
                    )
                    .optional()?;
                if secret_holder.is_some_and(|key_id| key_id != credential.key_id) {
                    return Ok(CredentialPut::SecretTaken);
                }
                tx.execute(
                    "INSERT INTO credentials \
                     (key_id, tenant, name, sealed_secret, secret_lookup, revoked, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (key_id) DO UPDATE SET name = excluded.name, \
                     sealed_secret = excluded.sealed_secret, \
                     secret_lookup = excluded.secret_lookup, revoked = excluded.revoked, \
                     created_at = excluded.created_at",
                    params![
                        credential.key_id,
                        credential.tenant.as_str(),
                        credential.name,
                        credential.sealed_secret,
                        credential.secret_lookup,
                        credential.revoked,
                        millis(credential.created_at),
                    ],
                )?;
                tx.commit()?;
                Ok(CredentialPut::Stored)
            })
            .await
    }

    async fn credential_by_key_id(&self, key_id: &str) -> StoreResult<Option<Credential>> {
        let key_id = key_id.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE key_id = ?1"
                ))?;
                let mut rows = stmt.query([key_id])?;
                rows.next()?.map(credential_from_row).transpose()
            })
            .await
    }

    async fn credential_by_secret_lookup(&self, lookup: &str) -> StoreResult<Option<Credential>> {
        let lookup = lookup.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE secret_lookup = ?1"
                ))?;
                let mut rows = stmt.query([lookup])?;
                rows.next()?.map(credential_from_row).transpose()
            })
            .await
    }

    async fn count_request(&self, tenant: &TenantId, window: i64) -> StoreResult<u64> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                // One row per tenant: the current window's count, restarted by a new window.
                let count: u64 = conn.query_row(
                    "INSERT INTO request_counts (tenant, window, count) VALUES (?1, ?2, 1) \
                     ON CONFLICT (tenant) DO UPDATE SET \
                     count = CASE WHEN window = excluded.window THEN count + 1 ELSE 1 END, \
                     window = excluded.window \
                     RETURNING count",
                    params![tenant.as_str(), window],
                    |row| row.get(0),
                )?;
                Ok(count)
            })
            .await
    }

    async fn count_failed_authentication(&self, source: &str, window: i64) -> StoreResult<u64> {
        SqliteStore::count_failed_authentication(self, source, window).await
    }

    async fn failed_authentications(&self, source: &str, window: i64) -> StoreResult<u64> {
        SqliteStore::failed_authentications(self, source, window).await
    }

    async fn take_slot(
        &self,
        tenant: &TenantId,
        lease: &SlotLease,
        at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        SqliteStore::take_slot(self, tenant, lease, at).await
    }

    async fn free_slot(
        &self,
        tenant: &TenantId,
        name: &str,
        slot: u64,
        holder: &str,
    ) -> StoreResult<()> {
        SqliteStore::free_slot(self, tenant, name, slot, holder).await
    }

    async fn all_credentials(&self) -> StoreResult<Vec<Credential>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY tenant, created_at, key_id"
                ))?;
                let mut rows = stmt.query([])?;
                let mut credentials = Vec::new();
                while let Some(row) = rows.next()? {
                    credentials.push(credential_from_row(row)?);
                }
                Ok(credentials)
            })
            .await
    }

    async fn reseal_credential(
        &self,
        resealed: &Credential,
        previous_lookup: &str,
    ) -> StoreResult<Resealed> {
        let resealed = resealed.clone();
        let previous_lookup = previous_lookup.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let secret_holder: Option<String> = tx
                    .query_row(
                        "SELECT key_id FROM credentials WHERE secret_lookup = ?1",
                        [&resealed.secret_lookup],
                        |row| row.get(0),
                    )
                    .optional()?;
                if secret_holder.is_some_and(|key_id| key_id != resealed.key_id) {
                    return Ok(Resealed::SecretTaken);
                }
                let changed = tx.execute(
                    "UPDATE credentials SET sealed_secret = ?1, secret_lookup = ?2 \
                     WHERE key_id = ?3 AND tenant = ?4 AND secret_lookup = ?5",
                    params![
                        resealed.sealed_secret,
                        resealed.secret_lookup,
                        resealed.key_id,
                        resealed.tenant.as_str(),
                        previous_lookup
                    ],
                )?;
                tx.commit()?;
                Ok(if changed == 1 {
                    Resealed::Stored
                } else {
                    Resealed::Changed
                })
            })
            .await
    }

    async fn revoke_credential(&self, tenant: &TenantId, key_id: &str) -> StoreResult<bool> {
        let tenant = tenant.clone();
        let key_id = key_id.to_owned();
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE credentials SET revoked = 1 WHERE tenant = ?1 AND key_id = ?2",
                    params![tenant.as_str(), key_id],
                )?;
                Ok(changed == 1)
            })
            .await
    }
}

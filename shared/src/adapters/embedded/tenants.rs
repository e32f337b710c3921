//! `TenantStore` on SQLite: settings as JSON per tenant, and API credentials.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::store::{from_json, millis, timestamp, to_json};
use super::SqliteStore;
use crate::model::{Credential, TenantId, TenantSettings};
use crate::ports::{StoreResult, TenantStore};

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
                let mut stmt = conn.prepare_cached(
                    "SELECT key_id, name, secret_sha256, revoked, created_at FROM credentials \
                     WHERE tenant = ?1 ORDER BY created_at, key_id",
                )?;
                let mut rows = stmt.query([tenant.as_str()])?;
                let mut credentials = Vec::new();
                while let Some(row) = rows.next()? {
                    credentials.push(Credential {
                        tenant: tenant.clone(),
                        key_id: row.get(0)?,
                        name: row.get(1)?,
                        secret_sha256: row.get(2)?,
                        revoked: row.get(3)?,
                        created_at: timestamp(row.get(4)?)?,
                    });
                }
                Ok(credentials)
            })
            .await
    }

    async fn put_credential(&self, credential: &Credential) -> StoreResult<()> {
        let credential = credential.clone();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO credentials \
                     (tenant, key_id, name, secret_sha256, revoked, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (tenant, key_id) DO UPDATE SET name = excluded.name, \
                     secret_sha256 = excluded.secret_sha256, revoked = excluded.revoked, \
                     created_at = excluded.created_at",
                    params![
                        credential.tenant.as_str(),
                        credential.key_id,
                        credential.name,
                        credential.secret_sha256,
                        credential.revoked,
                        millis(credential.created_at),
                    ],
                )?;
                Ok(())
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

#[cfg(test)]
mod tests {
    use super::super::store::testing::{at, store, tenant};
    use super::*;

    fn credential(tenant_name: &str, key_id: &str, created: i64) -> Credential {
        Credential {
            tenant: tenant(tenant_name),
            key_id: key_id.to_owned(),
            name: format!("{key_id} user"),
            secret_sha256: "00ff".to_owned(),
            revoked: false,
            created_at: at(created),
        }
    }

    #[tokio::test]
    async fn stores_settings_per_tenant() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        assert_eq!(store.settings(&acme).await.unwrap(), None);
        let mut settings = TenantSettings::with_defaults(acme.clone());
        store.put_settings(&settings).await.unwrap();
        settings.max_chat_limit = 3;
        store.put_settings(&settings).await.unwrap();
        assert_eq!(store.settings(&acme).await.unwrap(), Some(settings));
        assert_eq!(store.settings(&tenant("other")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn stores_and_revokes_credentials_per_tenant() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        store
            .put_credential(&credential("acme", "k2", 2))
            .await
            .unwrap();
        store
            .put_credential(&credential("acme", "k1", 1))
            .await
            .unwrap();
        store
            .put_credential(&credential("other", "k3", 1))
            .await
            .unwrap();

        assert!(store.revoke_credential(&acme, "k2").await.unwrap());
        assert!(!store.revoke_credential(&acme, "k3").await.unwrap());
        assert!(!store.revoke_credential(&acme, "nope").await.unwrap());

        let mut revoked = credential("acme", "k2", 2);
        revoked.revoked = true;
        let expected = vec![credential("acme", "k1", 1), revoked];
        assert_eq!(store.credentials(&acme).await.unwrap(), expected);
        assert_eq!(
            store.credentials(&tenant("other")).await.unwrap(),
            vec![credential("other", "k3", 1)]
        );
    }
}

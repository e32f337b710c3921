//! `IdempotencyStore` on SQLite: one row per (tenant, key).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::store::{millis, timestamp};
use super::SqliteStore;
use crate::model::{IdempotentRequest, KeyClaim, TenantId, IDEMPOTENCY_TTL_SECONDS};
use crate::ports::{IdempotencyStore, StoreError, StoreResult};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_key(&self, request: &IdempotentRequest) -> StoreResult<KeyClaim> {
        let request = request.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Records past their lifetime are dropped as the tenant's keys are used.
                tx.execute(
                    "DELETE FROM idempotency_keys WHERE tenant = ?1 AND claimed_at < ?2",
                    params![
                        request.tenant.as_str(),
                        millis(request.claimed_at.plus_seconds(-IDEMPOTENCY_TTL_SECONDS)),
                    ],
                )?;
                let held = tx
                    .query_row(
                        "SELECT fingerprint, claim_id, claimed_at, answer FROM idempotency_keys \
                         WHERE tenant = ?1 AND key = ?2",
                        params![request.tenant.as_str(), request.key],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, Option<String>>(3)?,
                            ))
                        },
                    )
                    .optional()?;
                if let Some((fingerprint, claim_id, claimed_at, answer)) = held {
                    let record = IdempotentRequest {
                        tenant: request.tenant.clone(),
                        key: request.key.clone(),
                        fingerprint,
                        claim_id,
                        claimed_at: timestamp(claimed_at)?,
                        answer,
                    };
                    if record.holds_key_at(request.claimed_at) {
                        return Ok(KeyClaim::Held(record));
                    }
                }
                tx.execute(
                    "INSERT INTO idempotency_keys \
                     (tenant, key, fingerprint, claim_id, claimed_at, answer) \
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL) \
                     ON CONFLICT (tenant, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     claim_id = excluded.claim_id, claimed_at = excluded.claimed_at, answer = NULL",
                    params![
                        request.tenant.as_str(),
                        request.key,
                        request.fingerprint,
                        request.claim_id,
                        millis(request.claimed_at),
                    ],
                )?;
                tx.commit()?;
                Ok(KeyClaim::Claimed)
            })
            .await
    }

    async fn record_answer(
        &self,
        tenant: &TenantId,
        key: &str,
        claim_id: &str,
        answer: &str,
    ) -> StoreResult<()> {
        let (tenant, key, claim_id, answer) = (
            tenant.clone(),
            key.to_owned(),
            claim_id.to_owned(),
            answer.to_owned(),
        );
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE idempotency_keys SET answer = ?4 \
                     WHERE tenant = ?1 AND key = ?2 AND claim_id = ?3",
                    params![tenant.as_str(), key, claim_id, answer],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
    }

    async fn release_key(&self, tenant: &TenantId, key: &str, claim_id: &str) -> StoreResult<()> {
        let (tenant, key, claim_id) = (tenant.clone(), key.to_owned(), claim_id.to_owned());
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM idempotency_keys \
                     WHERE tenant = ?1 AND key = ?2 AND claim_id = ?3 AND answer IS NULL",
                    params![tenant.as_str(), key, claim_id],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
    }
}

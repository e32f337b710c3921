//! `IdempotencyStore` on SQLite: one row per (tenant, key).

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::store::{millis, timestamp};
use super::SqliteStore;
use crate::model::{
    IdempotentRequest, JobId, KeyClaim, KeyCutoffs, TenantId, Timestamp, IDEMPOTENCY_TTL_SECONDS,
};
use crate::ports::{IdempotencyStore, StoreError, StoreResult};

/// What the holder of a claim records on its key's row.
#[derive(Clone, Copy)]
enum Claimed {
    Answer,
    JobId,
}

impl SqliteStore {
    /// Sets one column of a key's row while the claim `claim_id` holds it; nothing when
    /// another claim does.
    async fn set_while_claimed(
        &self,
        tenant: &TenantId,
        key: &str,
        claim_id: &str,
        column: Claimed,
        value: Value,
    ) -> StoreResult<()> {
        let (tenant, key, claim_id) = (tenant.clone(), key.to_owned(), claim_id.to_owned());
        let sql = match column {
            Claimed::Answer => {
                "UPDATE idempotency_keys SET answer = ?4 \
                 WHERE tenant = ?1 AND key = ?2 AND claim_id = ?3"
            }
            Claimed::JobId => {
                "UPDATE idempotency_keys SET job_id = ?4 \
                 WHERE tenant = ?1 AND key = ?2 AND claim_id = ?3"
            }
        };
        self.db
            .call(move |conn| {
                conn.execute(sql, params![tenant.as_str(), key, claim_id, value])?;
                Ok::<_, StoreError>(())
            })
            .await
    }
}

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
                        "SELECT fingerprint, claim_id, claimed_at, answer, job_id \
                         FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
                        params![request.tenant.as_str(), request.key],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, Option<String>>(3)?,
                                row.get::<_, Option<i64>>(4)?,
                            ))
                        },
                    )
                    .optional()?;
                let mut resume = None;
                if let Some((fingerprint, claim_id, claimed_at, answer, job_id)) = held {
                    let record = IdempotentRequest {
                        tenant: request.tenant.clone(),
                        key: request.key.clone(),
                        fingerprint,
                        claim_id,
                        claimed_at: timestamp(claimed_at)?,
                        answer,
                        job_id: job_id.and_then(|id| u64::try_from(id).ok()),
                    };
                    if record.holds_key_at(request.claimed_at) {
                        return Ok(KeyClaim::Held(record));
                    }
                    resume = record.job_resumed_by(&request);
                }
                tx.execute(
                    "INSERT INTO idempotency_keys \
                     (tenant, key, fingerprint, claim_id, claimed_at, answer, job_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6) \
                     ON CONFLICT (tenant, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     claim_id = excluded.claim_id, claimed_at = excluded.claimed_at, answer = NULL, \
                     job_id = excluded.job_id",
                    params![
                        request.tenant.as_str(),
                        request.key,
                        request.fingerprint,
                        request.claim_id,
                        millis(request.claimed_at),
                        resume.and_then(|id| i64::try_from(id).ok()),
                    ],
                )?;
                tx.commit()?;
                Ok(KeyClaim::Claimed { resume })
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
        let answer = Value::Text(answer.to_owned());
        self.set_while_claimed(tenant, key, claim_id, Claimed::Answer, answer)
            .await
    }

    async fn record_job(
        &self,
        tenant: &TenantId,
        key: &str,
        claim_id: &str,
        job_id: JobId,
    ) -> StoreResult<()> {
        let job_id = i64::try_from(job_id)
            .map_err(|_| StoreError::Corrupt(format!("job id {job_id} is out of range")))?;
        self.set_while_claimed(
            tenant,
            key,
            claim_id,
            Claimed::JobId,
            Value::Integer(job_id),
        )
        .await
    }

    async fn release_key(&self, tenant: &TenantId, key: &str, claim_id: &str) -> StoreResult<()> {
        let (tenant, key, claim_id) = (tenant.clone(), key.to_owned(), claim_id.to_owned());
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "UPDATE idempotency_keys SET claim_id = '' WHERE tenant = ?1 AND key = ?2 \
                     AND claim_id = ?3 AND answer IS NULL AND job_id IS NOT NULL",
                    params![tenant.as_str(), key, claim_id],
                )?;
                tx.execute(
                    "DELETE FROM idempotency_keys \
                     WHERE tenant = ?1 AND key = ?2 AND claim_id = ?3 AND answer IS NULL",
                    params![tenant.as_str(), key, claim_id],
                )?;
                tx.commit()?;
                Ok::<_, StoreError>(())
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: u64) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // IdempotentRequest::is_expired_at as SQL: claimed at or before the answered cutoff.
        let cutoff = millis(KeyCutoffs::at(now).answered);
        self.db
            .call(move |conn| {
                let purged = conn.execute(
                    "DELETE FROM idempotency_keys WHERE (tenant, key) IN \
                     (SELECT tenant, key FROM idempotency_keys WHERE claimed_at <= ?1 LIMIT ?2)",
                    params![cutoff, limit],
                )?;
                Ok::<_, StoreError>(purged as u64)
            })
            .await
    }
}

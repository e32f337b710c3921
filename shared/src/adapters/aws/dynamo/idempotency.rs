//! [`IdempotencyStore`] on DynamoDB: one item per (tenant, key), `IDEM#{tenant}#{key}` /
//! `IDEM` (tenant ids hold no `#`). Claims are conditional puts; `expires_at` lets the table's
//! TTL delete records a day after their claim, when they have expired
//! ([`IdempotentRequest::is_expired_at`]).

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{is_conditional_failure, key, n, s, text_of, unavailable, DynamoStore, Item};
use crate::model::{
    IdempotentRequest, JobId, KeyClaim, KeyCutoffs, TenantId, Timestamp, IDEMPOTENCY_TTL_SECONDS,
};
use crate::ports::{IdempotencyStore, StoreError, StoreResult};

fn request_key(tenant: &TenantId, key_text: &str) -> Item {
    key(format!("IDEM#{tenant}#{key_text}"), "IDEM")
}

fn number_of(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn request_of(tenant: &TenantId, key_text: &str, item: &Item) -> StoreResult<IdempotentRequest> {
    let corrupt = || StoreError::Corrupt(format!("idempotency record {key_text} is incomplete"));
    Ok(IdempotentRequest {
        tenant: tenant.clone(),
        key: key_text.to_owned(),
        fingerprint: text_of(item, "fingerprint").ok_or_else(corrupt)?.to_owned(),
        claim_id: text_of(item, "claim_id").ok_or_else(corrupt)?.to_owned(),
        claimed_at: number_of(item, "claimed_at")
            .and_then(Timestamp::from_unix_millis)
            .ok_or_else(corrupt)?,
        answer: text_of(item, "answer").map(str::to_owned),
        job_id: number_of(item, "job_id").and_then(|id| u64::try_from(id).ok()),
    })
}

/// The `claim_id` of a record given up by a request that failed after recording its job.
const RELEASED: &str = "";

/// A conditional write by a claim's holder: done when it wrote, and when its condition failed
/// (the key moved on, so there is nothing left for this claim to do).
fn done_unless_unavailable<T, E>(outcome: Result<T, SdkError<E, HttpResponse>>) -> StoreResult<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match outcome {
        Ok(_) => Ok(()),
        Err(error) if is_conditional_failure(&error) => Ok(()),
        Err(error) => Err(unavailable(error)),
    }
}

impl DynamoStore {
    /// Sets one attribute of a key's record while the claim `claim_id` holds it; nothing when
    /// another claim does.
    async fn set_while_claimed(
        &self,
        tenant: &TenantId,
        key_text: &str,
        claim_id: &str,
        attribute: &str,
        value: AttributeValue,
    ) -> StoreResult<()> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(request_key(tenant, key_text)))
            .update_expression("SET #attribute = :value")
            .condition_expression("claim_id = :claim")
            .expression_attribute_names("#attribute", attribute)
            .expression_attribute_values(":value", value)
            .expression_attribute_values(":claim", s(claim_id))
            .send()
            .await;
        done_unless_unavailable(outcome)
    }
}

/// The item of a new claim, without answer or job.
fn claim_item(request: &IdempotentRequest) -> Item {
    let at = request.claimed_at;
    let mut item = request_key(&request.tenant, &request.key);
    item.insert("fingerprint".to_owned(), s(request.fingerprint.clone()));
    item.insert("claim_id".to_owned(), s(request.claim_id.clone()));
    item.insert("claimed_at".to_owned(), n(at.unix_millis()));
    item.insert(
        "expires_at".to_owned(),
        n(at.plus_seconds(IDEMPOTENCY_TTL_SECONDS).unix_seconds_ceil()),
    );
    item
}

impl DynamoStore {
    /// Writes the claim `item` claimed at `at` unless a record still holding the key is there:
    /// the record it replaced (empty when none), or `None` when the key is held.
    async fn put_claim(&self, item: &Item, at: Timestamp) -> StoreResult<Option<Item>> {
        let cutoffs = KeyCutoffs::at(at);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            // IdempotentRequest::holds_key_at, as a condition: free when absent, given up, or
            // claimed at or before the cutoff of its kind.
            .condition_expression(
                "attribute_not_exists(pk) OR claimed_at <= :answered_cutoff \
                 OR (attribute_not_exists(answer) \
                     AND (claimed_at <= :unanswered_cutoff OR claim_id = :released))",
            )
            .expression_attribute_values(":released", s(RELEASED))
            .expression_attribute_values(":answered_cutoff", n(cutoffs.answered.unix_millis()))
            .expression_attribute_values(":unanswered_cutoff", n(cutoffs.unanswered.unix_millis()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(error) if is_conditional_failure(&error) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// A claim that replaced the record `taken_over`: it resumes the job that record's request
    /// recorded when it is the same request, and names that job itself, for a retry of a retry.
    async fn take_over(
        &self,
        request: &IdempotentRequest,
        taken_over: Item,
    ) -> StoreResult<KeyClaim> {
        let resume = if taken_over.is_empty() {
            None
        } else {
            request_of(&request.tenant, &request.key, &taken_over)?.job_resumed_by(request)
        };
        if let Some(job_id) = resume {
            self.record_job(&request.tenant, &request.key, &request.claim_id, job_id)
                .await?;
        }
        Ok(KeyClaim::Claimed { resume })
    }
}

/// Reads and writes racing a claim can find the key free again; a claim tries this often.
const CLAIM_ATTEMPTS: usize = 3;

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_key(&self, request: &IdempotentRequest) -> StoreResult<KeyClaim> {
        let item = claim_item(request);
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(taken_over) = self.put_claim(&item, request.claimed_at).await? {
                return self.take_over(request, taken_over).await;
            }
            let held = self
                .get_item(request_key(&request.tenant, &request.key))
                .await?;
            if let Some(held) = held {
                let held = request_of(&request.tenant, &request.key, &held)?;
                // The SDK sends the put again when its answer was lost: a key held by this very
                // claim is claimed, not held by a request still running.
                if held.claim_id == request.claim_id {
                    return Ok(KeyClaim::Claimed { resume: None });
                }
                return Ok(KeyClaim::Held(held));
            }
            // Released or expired between the put and the read: claim again.
        }
        Err(StoreError::unavailable(
            "dynamodb",
            format!(
                "idempotency key {} kept changing while claimed",
                request.key
            ),
        ))
    }

    async fn record_answer(
        &self,
        tenant: &TenantId,
        key_text: &str,
        claim_id: &str,
        answer: &str,
    ) -> StoreResult<()> {
        // A failed condition: another claim holds the key now, and its request's answer counts.
        self.set_while_claimed(tenant, key_text, claim_id, "answer", s(answer))
            .await
    }

    async fn record_job(
        &self,
        tenant: &TenantId,
        key_text: &str,
        claim_id: &str,
        job_id: JobId,
    ) -> StoreResult<()> {
        self.set_while_claimed(tenant, key_text, claim_id, "job_id", n(job_id))
            .await
    }

    async fn release_key(
        &self,
        tenant: &TenantId,
        key_text: &str,
        claim_id: &str,
    ) -> StoreResult<()> {
        // A record naming its job is kept, given up, for a retry to resume the job.
        let kept = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(request_key(tenant, key_text)))
            .update_expression("SET claim_id = :released")
            .condition_expression(
                "claim_id = :claim AND attribute_not_exists(answer) AND attribute_exists(job_id)",
            )
            .expression_attribute_values(":released", s(RELEASED))
            .expression_attribute_values(":claim", s(claim_id))
            .send()
            .await;
        match kept {
            Ok(_) => return Ok(()),
            Err(error) if is_conditional_failure(&error) => {}
            Err(error) => return Err(unavailable(error)),
        }
        let outcome = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(request_key(tenant, key_text)))
            .condition_expression("claim_id = :claim AND attribute_not_exists(answer)")
            .expression_attribute_values(":claim", s(claim_id))
            .send()
            .await;
        // A failed condition: the key has an answer, or another claim.
        done_unless_unavailable(outcome)
    }

    async fn purge_expired(&self, _now: Timestamp, _limit: u64) -> StoreResult<u64> {
        // Every record carries `expires_at`, a day after its claim: the table's TTL deletes it,
        // and a claim takes over a record past it (IdempotentRequest::is_expired_at).
        Ok(0)
    }
}

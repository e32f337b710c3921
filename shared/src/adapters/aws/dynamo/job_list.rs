//! A tenant's jobs in the order they were created. Each job gets the next number of its
//! tenant (1, 2, …), its id and its ordinal alike, in one transaction with the tenant's job
//! count (`TENANT#{tenant}` / `JOBS`), and is listed by it on `gsi1` (`JOBS#{tenant}` /
//! ordinal₂₀). The count only grows (expired jobs are not subtracted), so an id is never given
//! twice within a tenant. The count is the job
//! list's `Total`, and page *n* of the newest-first list is one range of ordinals: neither is
//! found by reading the tenant's jobs.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::jobs::{expires_at, job_key, live_jobs, EXPIRES_AT};
use super::{
    backoff, build_error, key, n, padded, s, to_item, unavailable, Cancellation, DynamoStore, GSI1,
    MAX_RETRIES, STORE,
};
use crate::model::{Job, TenantId};
use crate::ports::{PageRequest, StoreResult};

fn count_key(tenant: &TenantId) -> super::Item {
    key(format!("TENANT#{tenant}"), "JOBS")
}

fn list_partition(tenant: &TenantId) -> String {
    format!("JOBS#{tenant}")
}

impl DynamoStore {
    /// Stores a new job with the next number of its tenant as its id and ordinal. Two jobs of
    /// one tenant created at once race for the count: the loser reads it again.
    pub(super) async fn insert_job(&self, mut job: Job) -> StoreResult<Job> {
        let mut attempt = 0;
        loop {
            let count = self.job_count(&job.tenant).await?;
            job.ordinal = count + 1;
            job.id = job.ordinal;
            let mut item = to_item(&job)?;
            item.extend(job_key(&job.tenant, job.id));
            item.insert(EXPIRES_AT.to_owned(), expires_at(job.keep_until));
            item.insert("gsi1pk".to_owned(), s(list_partition(&job.tenant)));
            item.insert("gsi1sk".to_owned(), s(padded(job.ordinal)));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| build_error(STORE, e))?;
            let mut counted = Update::builder()
                .table_name(&self.table)
                .set_key(Some(count_key(&job.tenant)))
                .update_expression("SET job_count = :next")
                .expression_attribute_values(":next", n(job.ordinal));
            counted = if count == 0 {
                counted.condition_expression("attribute_not_exists(job_count)")
            } else {
                counted
                    .condition_expression("job_count = :count")
                    .expression_attribute_values(":count", n(count))
            };
            let counted = counted.build().map_err(|e| build_error(STORE, e))?;
            let outcome = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(counted).build())
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await;
            let error = match outcome {
                Ok(_) => return Ok(job),
                Err(error) => error,
            };
            let Some(cancellation) = Cancellation::of(&error) else {
                return Err(unavailable(error));
            };
            let failed = |index: usize| cancellation.condition_failed(index);
            if failed(1) {
                // The SDK sent the transaction again after its answer was lost: the job found
                // is the one the first send stored. Otherwise another creation took the number.
                if let Some(stored) = self.read_job(&job.tenant, job.id).await? {
                    if stored == job {
                        return Ok(stored);
                    }
                }
            }
            attempt += 1;
            let raced = failed(0) || cancellation.transient();
            if !raced || attempt > MAX_RETRIES {
                return Err(unavailable(error));
            }
            backoff(attempt).await;
        }
    }

    /// How many jobs the tenant has (the ordinal of its newest).
    async fn job_count(&self, tenant: &TenantId) -> StoreResult<u64> {
        Ok(self
            .get_item(count_key(tenant))
            .await?
            .and_then(|item| item.get("job_count")?.as_n().ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// A page of the tenant's jobs, newest first, and how many it has.
    pub(super) async fn job_page(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<(Vec<Job>, u64)> {
        let total = self.job_count(tenant).await?;
        let newest = total.saturating_sub(page.offset());
        if newest == 0 || page.per_page == 0 {
            return Ok((Vec::new(), total));
        }
        let oldest = newest.saturating_sub(page.per_page - 1).max(1);
        let partition = list_partition(tenant);
        let items = self
            .query_all(|| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(GSI1)
                    .key_condition_expression(
                        "gsi1pk = :partition AND gsi1sk BETWEEN :oldest AND :newest",
                    )
                    .expression_attribute_values(":partition", s(partition.clone()))
                    .expression_attribute_values(":oldest", s(padded(oldest)))
                    .expression_attribute_values(":newest", s(padded(newest)))
                    .scan_index_forward(false)
            })
            .await?;
        Ok((live_jobs(items)?, total))
    }

    /// Up to `limit` of the tenant's jobs with ordinals below `before`, newest first.
    pub(super) async fn jobs_with_ordinals_below(
        &self,
        tenant: &TenantId,
        before: Option<u64>,
        limit: u64,
    ) -> StoreResult<Vec<Job>> {
        let partition = list_partition(tenant);
        let mut jobs = Vec::new();
        let mut start = None;
        while (jobs.len() as u64) < limit {
            let wanted = i32::try_from(limit - jobs.len() as u64).unwrap_or(i32::MAX);
            let mut query = self
                .gsi1_partition(&partition, false)
                .limit(wanted)
                .set_exclusive_start_key(start.take());
            if let Some(before) = before {
                query = query
                    .key_condition_expression("gsi1pk = :partition AND gsi1sk < :before")
                    .expression_attribute_values(":before", s(padded(before)));
            }
            let out = query.send().await.map_err(unavailable)?;
            jobs.extend(live_jobs(out.items.unwrap_or_default())?);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        jobs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(jobs)
    }
}

//! Batches: the JSON bodies of users the Zendesk and Huawei Workspace dialects send. Each batch
//! is stored as a job file and recorded as a job, like an upload, and processed by the same
//! pipeline: queued (Zendesk) or inline, in the request (Huawei Workspace).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use super::{
    new_file_key, not_proceedable, BulkService, KeyTicket, Principal, ServiceError, ServiceResult,
};
use crate::deadline::Deadline;
use crate::model::{
    ChunkPlan, Job, JobId, JobKind, JobStatus, NewJob, ProceedOutcome, RowResult, SchemeError,
    SchemeReport, Timestamp, User, UserFilter, UserId, UserKey,
};
use crate::ports::Window;
use crate::processing::ChunkOutcome;

impl BulkService {
    /// Records a batch as a job and queues it.
    pub async fn submit_batch(
        &self,
        who: &Principal,
        kind: JobKind,
        records: &[Box<RawValue>],
    ) -> ServiceResult<Job> {
        self.check_concurrent_jobs(&who.tenant).await?;
        let job = self.record_batch(who, kind, records, Vec::new()).await?;
        match self.start_job(&who.tenant, job.id, &who.name).await? {
            ProceedOutcome::Started(job) => Ok(job),
            ProceedOutcome::NotProceedable(job) => Err(not_proceedable(&job)),
        }
    }

    /// Records a batch as a job and processes it before answering: the rows' results. Under an
    /// idempotency key the job is recorded with the key, and a dependency failure leaves it in
    /// progress for the retry to resume ([`BulkService::resume_batch`]); without one, the job
    /// ends `failed`. A chunk the `deadline` leaves no time for is queued for the processor
    /// instead, and the answer is [`ServiceError::Unfinished`]: the job goes on either way.
    pub async fn run_batch(
        &self,
        who: &Principal,
        kind: JobKind,
        records: &[Box<RawValue>],
        ticket: Option<&KeyTicket>,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        self.check_concurrent_jobs(&who.tenant).await?;
        let job = self.record_batch(who, kind, records, Vec::new()).await?;
        if let Some(ticket) = ticket {
            self.record_keyed_job(ticket, job.id).await?;
        }
        let job = match self
            .begin_processing(&who.tenant, job.id, &who.name)
            .await?
        {
            ProceedOutcome::Started(job) => job,
            ProceedOutcome::NotProceedable(job) => return Err(not_proceedable(&job)),
        };
        self.finish_batch(who, job, ticket.is_none(), deadline)
            .await
    }

    /// Processes what is left of a batch job an earlier run of the same keyed request left in
    /// progress, and answers all its rows' results.
    pub async fn resume_batch(
        &self,
        who: &Principal,
        id: JobId,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        let job = self.job(who, id).await?;
        self.finish_batch(who, job, false, deadline).await
    }

    /// Processes the chunks of an in-progress batch job not yet committed (all of them, for a
    /// new job); a dependency failure ends the job `failed` when `fail_on_error`. The chunks the
    /// `deadline` leaves no time for are queued for the processor.
    async fn finish_batch(
        &self,
        who: &Principal,
        job: Job,
        fail_on_error: bool,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        if job.status == JobStatus::InProgress {
            let items = job
                .chunk_plan
                .work_items(&job.tenant, job.id, job.total_rows);
            for (at, item) in items.iter().enumerate() {
                if deadline.is_some_and(|deadline| !deadline.allows_a_chunk()) {
                    self.ports.queue.enqueue(&items[at..]).await?;
                    tracing::info!(
                        job_id = job.id,
                        queued = items.len() - at,
                        "out of time: the batch's chunks go to the processor"
                    );
                    return Err(ServiceError::Unfinished { job_id: job.id });
                }
                let outcome = match self.process(item).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        if fail_on_error {
                            let reason = format!("the batch could not be processed: {error}");
                            self.fail_job(&job.tenant, job.id, &reason).await?;
                        }
                        return Err(error.into());
                    }
                };
                if let ChunkOutcome::JobFailed { reason } = outcome {
                    return Err(ServiceError::Conflict(reason));
                }
            }
        }
        Ok(self.ports.jobs.results(&who.tenant, job.id).await?)
    }

    /// Records a batch that was refused as a whole (`invalid_scheme`, with its errors), so
    /// refused requests leave the same audit trail as accepted ones.
    pub async fn reject_batch(
        &self,
        who: &Principal,
        kind: JobKind,
        records: &[Box<RawValue>],
        errors: Vec<SchemeError>,
    ) -> ServiceResult<Job> {
        self.record_batch(who, kind, records, errors).await
    }

    async fn record_batch(
        &self,
        who: &Principal,
        kind: JobKind,
        records: &[Box<RawValue>],
        errors: Vec<SchemeError>,
    ) -> ServiceResult<Job> {
        let (body, chunk_plan) = batch_file(records, self.config.rows_per_chunk);
        let file_key = new_file_key(&who.tenant, crate::jobfile::FileFormat::Json);
        let file_bytes = body.len() as u64;
        let file_version = self.ports.files.put(&file_key, body).await?;
        let limits = self.settings(&who.tenant).await?.limits;
        let now = Timestamp::now();
        let job = self
            .create_job(NewJob {
                tenant: who.tenant.clone(),
                kind,
                filename: format!("{}.json", kind.as_str()),
                file_key: file_key.clone(),
                file_bytes,
                uploaded_api_user_name: who.name.clone(),
                created_at: now,
                keep_until: limits.keep_until(now),
            })
            .await?;
        let report = SchemeReport {
            total_rows: records.len() as u64,
            error_count: errors.len() as u64,
            errors,
            chunk_plan,
            file_version: Some(file_version),
        };
        Ok(self
            .ports
            .jobs
            .record_scheme_report(&who.tenant, job.id, &file_key, &report, Timestamp::now())
            .await?)
    }

    /// A job and the per-row results it has recorded so far, in row order.
    pub async fn job_with_results(
        &self,
        who: &Principal,
        id: JobId,
    ) -> ServiceResult<(Job, Vec<RowResult>)> {
        let job = self.job(who, id).await?;
        let results = self.ports.jobs.results(&who.tenant, id).await?;
        Ok((job, results))
    }

    /// Up to `limit` jobs older than the job of ordinal `before`, newest first.
    pub async fn jobs_before(
        &self,
        who: &Principal,
        before: Option<u64>,
        limit: u64,
    ) -> ServiceResult<Vec<Job>> {
        Ok(self
            .ports
            .jobs
            .jobs_before(&who.tenant, before, limit)
            .await?)
    }

    /// The tenant's live users from `offset`, at most `limit`, and how many match in all.
    pub async fn directory(
        &self,
        who: &Principal,
        filter: &UserFilter,
        offset: u64,
        limit: u64,
    ) -> ServiceResult<(Vec<User>, u64)> {
        Ok(self
            .ports
            .users
            .list_users(&who.tenant, filter, Window { offset, limit })
            .await?)
    }

    /// The live users holding any of these keys.
    pub async fn users_with_keys(
        &self,
        who: &Principal,
        keys: &[UserKey],
    ) -> ServiceResult<Vec<User>> {
        Ok(self.ports.users.users_by_keys(&who.tenant, keys).await?)
    }

    /// The live users with these ids.
    pub async fn users_with_ids(
        &self,
        who: &Principal,
        ids: &[UserId],
    ) -> ServiceResult<Vec<User>> {
        let users = self.ports.users.users_by_ids(&who.tenant, ids).await?;
        Ok(users
            .into_iter()
            .filter(|user| !user.is_deleted())
            .collect())
    }
}

/// The job file of a batch (a JSON array of the records, as sent) and its chunk plan.
fn batch_file(records: &[Box<RawValue>], rows_per_chunk: u64) -> (Bytes, ChunkPlan) {
    let rows_per_chunk = rows_per_chunk.max(1);
    let size: usize = records.iter().map(|record| record.get().len() + 1).sum();
    let mut body = BytesMut::with_capacity(size + 2);
    let mut offsets = Vec::new();
    body.put_u8(b'[');
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.put_u8(b',');
        }
        if index as u64 % rows_per_chunk == 0 {
            offsets.push(body.len() as u64);
        }
        body.put_slice(record.get().as_bytes());
    }
    body.put_u8(b']');
    (
        body.freeze(),
        ChunkPlan {
            rows_per_chunk,
            offsets,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_file_is_the_records_as_an_array_cut_in_chunks() {
        let records: Vec<Box<RawValue>> = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
            .iter()
            .map(|text| RawValue::from_string((*text).to_owned()).unwrap())
            .collect();
        let (body, plan) = batch_file(&records, 2);
        assert_eq!(&body[..], b"[{\"a\":1},{\"b\":2},{\"c\":3}]");
        assert_eq!(plan.offsets, vec![1, 17]);
        assert_eq!(&body[17..24], b"{\"c\":3}");
    }
}

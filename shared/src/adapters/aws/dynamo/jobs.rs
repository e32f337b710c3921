//! [`JobStore`] on DynamoDB.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, Select, TransactWriteItem, Update,
};

use super::errors::{scheme_error_sk, update_count_sk, update_error_sk};
use super::{
    backoff, build_error, from_item, is_conditional_failure, key, n, padded, s, text_of,
    to_attribute, to_item, unavailable, Cancellation, DynamoStore, Item, Write, MAX_RETRIES, STORE,
};
use crate::model::{
    ChunkCommit, ChunkPlan, ChunkResult, Job, JobId, JobStatus, NewFile, NewJob, RowResult,
    SchemeError, SchemeReport, StatusChange, StatusChanged, TenantId, Timestamp, Transition,
    UpdateError,
};
use crate::ports::{JobStore, PageRequest, StoreError, StoreResult};

pub(super) const SCHEME_ERROR_PREFIX: &str = "SERR#";
pub(super) const UPDATE_ERROR_PREFIX: &str = "UERR#";
const CHUNK_PREFIX: &str = "CHUNK#";
const RESULT_PREFIX: &str = "RESULT#";
/// Most bytes of serialized row results stored in one item (DynamoDB items are at most 400 KB;
/// the rest of the item and the attribute names need room too).
const RESULTS_PER_ITEM_MAX: usize = 350 * 1024;

/// The partition of a job and of everything recorded about it (tenant ids hold no `#`).
pub(super) fn job_pk(tenant: &TenantId, id: JobId) -> String {
    format!("JOB#{tenant}#{id}")
}

pub(super) fn job_key(tenant: &TenantId, id: JobId) -> Item {
    key(job_pk(tenant, id), "JOB")
}

/// The time-to-live attribute of an item kept until `keep_until`: the table's TTL deletes it
/// some time after (DynamoDB deletes expired items within days, so reads apply
/// [`Job::is_expired_at`] themselves).
pub(super) const EXPIRES_AT: &str = "expires_at";

pub(super) fn expires_at(keep_until: Timestamp) -> AttributeValue {
    n(keep_until.unix_seconds_ceil())
}

/// The `gsi2` partition of the jobs in progress: a job holds `gsi2pk` only while it is
/// `in_progress`, so the index lists exactly those, by `gsi2sk` = `{tenant}#{id₂₀}`.
const IN_PROGRESS: &str = "JOBS_IN_PROGRESS";

fn in_progress_sk_prefix(tenant: &TenantId) -> String {
    format!("{tenant}#")
}

fn chunk_sk(chunk: u32) -> String {
    format!("{CHUNK_PREFIX}{chunk:06}")
}

fn result_part_sk(chunk: u32, part: usize) -> String {
    format!("{RESULT_PREFIX}{chunk:06}#{part:03}")
}

/// The chunk and part of a result part item.
fn result_part_of(item: &Item) -> Option<(u32, usize)> {
    let (chunk, part) = text_of(item, "sk")?
        .strip_prefix(RESULT_PREFIX)?
        .split_once('#')?;
    Some((chunk.parse().ok()?, part.parse().ok()?))
}

/// A chunk's row results as stored: JSON arrays of at most [`RESULTS_PER_ITEM_MAX`] bytes
/// each (a single row larger than that gets a part of its own), none when there are no results.
fn encode_results(results: &[RowResult]) -> StoreResult<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::from("[");
    for result in results {
        let row = serde_json::to_string(result)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a row result: {e}")))?;
        if current.len() > 1 && current.len() + row.len() + 2 > RESULTS_PER_ITEM_MAX {
            current.push(']');
            parts.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&row);
    }
    if current.len() > 1 {
        current.push(']');
        parts.push(current);
    }
    Ok(parts)
}

/// The row results stored in an item's `results` attribute.
fn decode_results(item: &Item) -> StoreResult<Vec<RowResult>> {
    match text_of(item, "results") {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            StoreError::Corrupt(format!(
                "the row results of {} do not decode: {e}",
                text_of(item, "sk").unwrap_or_default()
            ))
        }),
    }
}

/// A numeric attribute of an item.
fn number_of(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn status(status: JobStatus) -> AttributeValue {
    s(status.as_str())
}

/// The condition that a job's status allows `transition`, and the values it names.
fn status_allows(transition: Transition) -> (String, Vec<(String, AttributeValue)>) {
    let values: Vec<(String, AttributeValue)> = transition
        .from()
        .iter()
        .map(|from| (format!(":from_{from}"), status(*from)))
        .collect();
    let names: Vec<&str> = values.iter().map(|(name, _)| name.as_str()).collect();
    (format!("#status IN ({})", names.join(", ")), values)
}

fn not_found(id: JobId) -> StoreError {
    StoreError::NotFound(format!("job {id}"))
}

/// The jobs of `items`, the expired ones left out.
pub(super) fn live_jobs(items: Vec<Item>) -> StoreResult<Vec<Job>> {
    let now = Timestamp::now();
    let jobs = items
        .into_iter()
        .map(from_item::<Job>)
        .collect::<StoreResult<Vec<Job>>>()?;
    Ok(jobs
        .into_iter()
        .filter(|job| !job.is_expired_at(now))
        .collect())
}

impl DynamoStore {
    /// The tenant's job, read consistently; `None` once it has expired, whether or not the
    /// table's TTL has deleted it yet.
    pub(super) async fn read_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        let item = self.get_item(job_key(tenant, id)).await?;
        Ok(live_jobs(item.into_iter().collect())?
            .into_iter()
            .find(|job| &job.tenant == tenant))
    }

    async fn read_tenant_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        self.read_job(tenant, id).await
    }

    /// A job taking `transition`: an UpdateItem conditioned on the job being live and its
    /// status allowing it (and on `also`, when given), in which `:to_status` names the status it leads to and the names
    /// `#status`, `#tenant` and `#filename` are declared when used. The new job; `None` when
    /// the condition failed.
    async fn transition_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        transition: Transition,
        also: Option<&str>,
        build: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> StoreResult<Option<Job>> {
        let (allowed, mut values) = status_allows(transition);
        // Job::is_expired_at as a condition: timestamps are written in one fixed-width format,
        // so their text order is their time order.
        let live = "keep_until > :now";
        values.push((":now".to_owned(), s(Timestamp::now().to_string())));
        let condition = match also {
            Some(also) => format!("{also} AND {live} AND {allowed}"),
            None => format!("{live} AND {allowed}"),
        };
        let mut request = build(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(job_key(tenant, id)))
                .return_values(ReturnValue::AllNew),
        )
        .condition_expression(condition);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        let uses = |request: &UpdateItemFluentBuilder, word: &str| {
            [
                request.get_update_expression(),
                request.get_condition_expression(),
            ]
            .into_iter()
            .flatten()
            .any(|expression| expression.contains(word))
        };
        // DynamoDB rejects declared names and values that no expression uses (a resumption
        // keeps the status: it sets none).
        if uses(&request, ":to_status") {
            request = request.expression_attribute_values(":to_status", status(transition.to()));
        }
        for name in ["status", "tenant", "filename"] {
            let alias = format!("#{name}");
            if uses(&request, &alias) {
                request = request.expression_attribute_names(alias, name);
            }
        }
        match request.send().await {
            Ok(out) => from_item(out.attributes.unwrap_or_default()).map(Some),
            Err(error) if is_conditional_failure(&error) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Stores the chunk marker with the chunk's row results (`results`: the encoded results
    /// when they fit one item, else only their number of parts, written before) and adds the
    /// chunk's counts to the job, in one transaction. False when the marker existed: the chunk
    /// had been committed before.
    pub(super) async fn commit_counts(
        &self,
        result: &ChunkResult,
        results: &[String],
    ) -> StoreResult<bool> {
        let (tenant, id) = (&result.tenant, result.job_id);
        let mut attempt = 0;
        loop {
            let mut marker = Put::builder()
                .table_name(&self.table)
                .item("pk", s(job_pk(tenant, id)))
                .item("sk", s(chunk_sk(result.chunk)))
                .item(EXPIRES_AT, expires_at(result.keep_until))
                .item("job_id", n(id))
                .item("chunk", n(result.chunk))
                .item("affected_rows", n(result.affected_rows))
                .item("failed_rows", n(result.failed_rows))
                .item("update_error_count", n(result.errors.len()))
                .item("committed_at", s(result.at.to_string()))
                .condition_expression("attribute_not_exists(pk)");
            marker = match results {
                [] => marker,
                [only] => marker.item("results", s(only.clone())),
                parts => marker.item("result_parts", n(parts.len())),
            };
            let marker = marker.build().map_err(|e| build_error(STORE, e))?;
            let counts = Update::builder()
                .table_name(&self.table)
                .set_key(Some(job_key(tenant, id)))
                .update_expression(
                    "ADD affected_rows :a, failed_rows :f, update_error_count :e, chunks_done :one \
                     SET updated_at = :at",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":a", n(result.affected_rows))
                .expression_attribute_values(":f", n(result.failed_rows))
                .expression_attribute_values(":e", n(result.errors.len()))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":at", s(result.at.to_string()))
                .build()
                .map_err(|e| build_error(STORE, e))?;
            let mut transaction = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(marker).build())
                .transact_items(TransactWriteItem::builder().update(counts).build());
            if !result.errors.is_empty() {
                // Where the chunk's errors lie in the log, for reading it a page at a time.
                let errors = Put::builder()
                    .table_name(&self.table)
                    .item("pk", s(job_pk(tenant, id)))
                    .item("sk", s(update_count_sk(result.chunk)))
                    .item(EXPIRES_AT, expires_at(result.keep_until))
                    .item("count", n(result.errors.len()))
                    .build()
                    .map_err(|e| build_error(STORE, e))?;
                transaction =
                    transaction.transact_items(TransactWriteItem::builder().put(errors).build());
            }
            let outcome = transaction.send().await;
            let error = match outcome {
                Ok(_) => return Ok(true),
                Err(error) => error,
            };
            let Some(cancellation) = Cancellation::of(&error) else {
                return Err(unavailable(error));
            };
            if cancellation.condition_failed(0) {
                return Ok(false);
            }
            if cancellation.condition_failed(1) {
                return Err(not_found(id));
            }
            let transient = cancellation.transient();
            attempt += 1;
            if !transient || attempt > MAX_RETRIES {
                return Err(unavailable(error));
            }
            backoff(attempt).await;
        }
    }

    /// Moves the job to `completed` when all its chunks are done; true only for the caller
    /// whose conditional update did it.
    /// (b) The marker, the results and the counts, atomically, once; (c) completion, also
    /// attempted on re-delivery: a commit whose completion step failed after its transaction
    /// must not leave the job in progress forever.
    async fn commit_again(
        &self,
        result: &ChunkResult,
        results: &[String],
    ) -> StoreResult<ChunkCommit> {
        let newly_committed = self.commit_counts(result, results).await?;
        let completed_job = self
            .complete_when_done(&result.tenant, result.job_id, result.at)
            .await?;
        Ok(ChunkCommit {
            newly_committed,
            completed_job,
        })
    }

    async fn complete_when_done(
        &self,
        tenant: &TenantId,
        id: JobId,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let job = self
            .read_job(tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        // Chunks are only ever counted up: all done when read, all done when updated.
        if !Transition::Complete.allowed_for(&job) {
            return Ok(false);
        }
        let completed = self
            .transition_job(
                tenant,
                id,
                Transition::Complete,
                Some("#tenant = :tenant"),
                |update| status_update(update, tenant, id, &StatusChange::Complete, at),
            )
            .await?;
        Ok(completed.is_some())
    }
}

/// The update making `change` to the tenant's job `id` at `at`: the status it leads to, what
/// it records, and the job's place in the index of jobs in progress (in it while in progress).
fn status_update(
    update: UpdateItemFluentBuilder,
    tenant: &TenantId,
    id: JobId,
    change: &StatusChange,
    at: Timestamp,
) -> UpdateItemFluentBuilder {
    let update = update
        .expression_attribute_values(":tenant", s(tenant.as_str()))
        .expression_attribute_values(":at", s(at.to_string()));
    match change {
        StatusChange::Proceed { by } => update
            .update_expression(
                "SET #status = :to_status, proceed_api_user_name = :user, \
                 process_requested_at = :at, updated_at = :at, gsi2pk = :active, gsi2sk = :id",
            )
            .expression_attribute_values(":active", s(IN_PROGRESS))
            .expression_attribute_values(
                ":id",
                s(format!("{}{}", in_progress_sk_prefix(tenant), padded(id))),
            )
            .expression_attribute_values(":user", s(by)),
        StatusChange::Resume => update
            .update_expression("SET updated_at = :at ADD resumptions :one")
            .expression_attribute_values(":one", n(1)),
        StatusChange::Complete => update.update_expression(
            "SET #status = :to_status, completed_at = :at, updated_at = :at REMOVE gsi2pk, gsi2sk",
        ),
        StatusChange::Fail { reason } => update
            .update_expression(
                "SET #status = :to_status, failure_reason = :reason, updated_at = :at \
                 REMOVE gsi2pk, gsi2sk",
            )
            .expression_attribute_values(":reason", s(reason)),
        StatusChange::Cancel => update
            .update_expression("SET #status = :to_status, updated_at = :at REMOVE gsi2pk, gsi2sk"),
    }
}

/// An update that also keeps the job until `keep_until`, when given (a proceed, whose update
/// expression ends in its SET clause).
trait KeptUntil {
    fn kept_until(self, keep_until: Option<Timestamp>) -> Self;
}

impl KeptUntil for UpdateItemFluentBuilder {
    fn kept_until(self, keep_until: Option<Timestamp>) -> Self {
        let Some(keep_until) = keep_until else {
            return self;
        };
        let expression = self.get_update_expression().clone().unwrap_or_default();
        self.update_expression(format!(
            "{expression}, keep_until = :keep_until, {EXPIRES_AT} = :expires_at"
        ))
        .expression_attribute_values(":keep_until", s(keep_until.to_string()))
        .expression_attribute_values(":expires_at", expires_at(keep_until))
    }
}

/// The sequence number of a scheme error item.
fn scheme_error_seq(item: &Item) -> Option<usize> {
    text_of(item, "sk")?
        .strip_prefix(SCHEME_ERROR_PREFIX)?
        .parse()
        .ok()
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, new: NewJob) -> StoreResult<Job> {
        // The id and the ordinal are both the next of the tenant's job count (insert_job).
        let job = Job {
            resumptions: 0,
            ordinal: 0,
            id: 0,
            keep_until: new.keep_until,
            tenant: new.tenant,
            kind: new.kind,
            status: JobStatus::Created,
            filename: new.filename,
            file_key: new.file_key,
            file_version: None,
            file_bytes: new.file_bytes,
            created_at: new.created_at,
            updated_at: new.created_at,
            process_requested_at: None,
            completed_at: None,
            total_rows: 0,
            affected_rows: 0,
            failed_rows: 0,
            scheme_error_count: 0,
            update_error_count: 0,
            uploaded_api_user_name: new.uploaded_api_user_name,
            proceed_api_user_name: None,
            chunk_plan: ChunkPlan::default(),
            chunks_done: 0,
            failure_reason: None,
        };
        self.insert_job(job).await
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        self.read_tenant_job(tenant, id).await
    }

    async fn list_jobs(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<(Vec<Job>, u64)> {
        self.job_page(tenant, page).await
    }

    async fn jobs_before(
        &self,
        tenant: &TenantId,
        before: Option<u64>,
        limit: u64,
    ) -> StoreResult<Vec<Job>> {
        self.jobs_with_ordinals_below(tenant, before, limit).await
    }

    async fn replace_file(
        &self,
        tenant: &TenantId,
        id: JobId,
        file: NewFile,
    ) -> StoreResult<Option<Result<Job, Job>>> {
        let plan = to_attribute(&ChunkPlan::default())?;
        // A failed condition whose re-read shows an accepting status is a race with another
        // change of status: try again a few times.
        for _ in 0..3 {
            let updated = self
                .transition_job(
                    tenant,
                    id,
                    Transition::ReplaceFile,
                    Some("#tenant = :tenant"),
                    |update| {
                        update
                            .update_expression(
                                "SET #filename = :filename, file_key = :file_key, \
                             file_bytes = :file_bytes, updated_at = :at, #status = :to_status, \
                             total_rows = :zero, scheme_error_count = :zero, chunk_plan = :plan \
                             REMOVE file_version",
                            )
                            .expression_attribute_values(":filename", s(file.filename.clone()))
                            .expression_attribute_values(":file_key", s(file.file_key.clone()))
                            .expression_attribute_values(":file_bytes", n(file.file_bytes))
                            .expression_attribute_values(":at", s(file.at.to_string()))
                            .expression_attribute_values(":zero", n(0))
                            .expression_attribute_values(":plan", plan.clone())
                            .expression_attribute_values(":tenant", s(tenant.as_str()))
                    },
                )
                .await?;
            match updated {
                Some(job) => {
                    // Drop the scheme errors of earlier files.
                    self.delete_where(&job_pk(tenant, id), SCHEME_ERROR_PREFIX, |item| {
                        text_of(item, "file_key") != Some(job.file_key.as_str())
                    })
                    .await?;
                    return Ok(Some(Ok(job)));
                }
                None => match self.read_tenant_job(tenant, id).await? {
                    None => return Ok(None),
                    Some(job) if Transition::ReplaceFile.allowed_from(job.status) => continue,
                    Some(job) => return Ok(Some(Err(job))),
                },
            }
        }
        Err(StoreError::unavailable(
            STORE,
            format!("job {id} kept changing while its file was replaced"),
        ))
    }

    async fn record_scheme_report(
        &self,
        tenant: &TenantId,
        id: JobId,
        file_key: &str,
        report: &SchemeReport,
        at: Timestamp,
    ) -> StoreResult<Job> {
        let job = self
            .read_tenant_job(tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let transition = report.transition();
        if job.file_key != file_key || !transition.allowed_from(job.status) {
            return Ok(job);
        }
        let pk = job_pk(tenant, id);
        let writes = report
            .errors
            .iter()
            .enumerate()
            .map(|(seq, error)| {
                let mut item = to_item(error)?;
                item.extend(key(pk.clone(), scheme_error_sk(seq as u64)));
                item.insert("file_key".to_owned(), s(file_key));
                item.insert(EXPIRES_AT.to_owned(), expires_at(job.keep_until));
                Ok(Write::Put(item))
            })
            .collect::<StoreResult<Vec<Write>>>()?;
        if !writes.is_empty() {
            self.batch_write(writes).await?;
        }
        let plan = to_attribute(&report.chunk_plan)?;
        let also = "#tenant = :tenant AND file_key = :file_key";
        let updated = self
            .transition_job(tenant, id, transition, Some(also), |update| {
                let update = update
                    .update_expression(match report.file_version {
                        Some(_) => {
                            "SET #status = :to_status, total_rows = :rows, \
                             scheme_error_count = :errors, chunk_plan = :plan, updated_at = :at, \
                             file_version = :version"
                        }
                        None => {
                            "SET #status = :to_status, total_rows = :rows, \
                             scheme_error_count = :errors, chunk_plan = :plan, updated_at = :at"
                        }
                    })
                    .expression_attribute_values(":rows", n(report.total_rows))
                    .expression_attribute_values(":errors", n(report.error_count))
                    .expression_attribute_values(":plan", plan)
                    .expression_attribute_values(":at", s(at.to_string()))
                    .expression_attribute_values(":tenant", s(tenant.as_str()))
                    .expression_attribute_values(":file_key", s(file_key));
                match &report.file_version {
                    Some(version) => {
                        update.expression_attribute_values(":version", s(version.as_str()))
                    }
                    None => update,
                }
            })
            .await?;
        match updated {
            Some(job) => {
                // Leftovers of an earlier report (another file, or more errors) go.
                let recorded = report.errors.len();
                self.delete_where(&pk, SCHEME_ERROR_PREFIX, |item| {
                    text_of(item, "file_key") != Some(file_key)
                        || scheme_error_seq(item).is_none_or(|seq| seq >= recorded)
                })
                .await?;
                Ok(job)
            }
            None => self
                .read_tenant_job(tenant, id)
                .await?
                .ok_or_else(|| not_found(id)),
        }
    }

    async fn change_status(
        &self,
        tenant: &TenantId,
        id: JobId,
        change: &StatusChange,
        at: Timestamp,
    ) -> StoreResult<StatusChanged> {
        let transition = change.transition();
        // A completion is checked against the chunks, a proceed keeps the job longer: both
        // read the job first. Chunks are only ever counted up: all done when read, all done
        // when updated.
        let mut keep_until = None;
        if matches!(transition, Transition::Complete | Transition::Proceed) {
            match self.read_tenant_job(tenant, id).await? {
                None => return Ok(StatusChanged::Missing),
                Some(job) if !transition.allowed_for(&job) => {
                    return Ok(StatusChanged::Refused(job))
                }
                Some(job) if transition == Transition::Proceed => {
                    keep_until = Some(job.keep_until_when_proceeded(at));
                }
                Some(_) => {}
            }
        }
        let changed = self
            .transition_job(
                tenant,
                id,
                transition,
                Some("#tenant = :tenant"),
                |update| status_update(update, tenant, id, change, at).kept_until(keep_until),
            )
            .await?;
        if let Some(job) = changed {
            return Ok(StatusChanged::Changed(job));
        }
        // The SDK sends the update again when its answer was lost, and the condition then
        // fails on the change this very call made.
        Ok(match self.read_tenant_job(tenant, id).await? {
            None => StatusChanged::Missing,
            Some(job) if change.made(&job, at) => StatusChanged::Changed(job),
            Some(job) => StatusChanged::Refused(job),
        })
    }

    async fn scheme_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<SchemeError>> {
        self.scheme_error_page(job, page).await
    }

    async fn update_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<UpdateError>> {
        self.update_error_page(job, page).await
    }

    async fn results(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<RowResult>> {
        if self.read_tenant_job(tenant, id).await?.is_none() {
            return Ok(Vec::new());
        }
        let pk = job_pk(tenant, id);
        // Only committed chunks count: their markers hold the results, or how many parts of
        // them were written before the marker.
        let mut rows = Vec::new();
        let mut parted: HashMap<u32, u64> = HashMap::new();
        for marker in self.query_prefix(pk.clone(), CHUNK_PREFIX).await? {
            rows.extend(decode_results(&marker)?);
            if let (Some(chunk), Some(parts)) = (
                number_of(&marker, "chunk"),
                number_of(&marker, "result_parts"),
            ) {
                parted.insert(u32::try_from(chunk).unwrap_or(u32::MAX), parts);
            }
        }
        if !parted.is_empty() {
            for part in self.query_prefix(pk, RESULT_PREFIX).await? {
                let committed = result_part_of(&part).is_some_and(|(chunk, part)| {
                    parted
                        .get(&chunk)
                        .is_some_and(|&parts| (part as u64) < parts)
                });
                if committed {
                    rows.extend(decode_results(&part)?);
                }
            }
        }
        rows.sort_by_key(|row| row.index);
        Ok(rows)
    }

    async fn chunk_committed(&self, tenant: &TenantId, id: JobId, chunk: u32) -> StoreResult<bool> {
        Ok(self
            .get_item(key(job_pk(tenant, id), chunk_sk(chunk)))
            .await?
            .is_some())
    }

    async fn commit_chunk(&self, result: ChunkResult) -> StoreResult<ChunkCommit> {
        // (a) The errors, numbered within the chunk in row order, under keys that a
        // re-delivery racing the first delivery rewrites identically; a chunk already
        // committed keeps the errors it has.
        let pk = job_pk(&result.tenant, result.job_id);
        let ttl = expires_at(result.keep_until);
        let results = encode_results(&result.results)?;
        let writes_first = !result.errors.is_empty() || results.len() > 1;
        let committed = self.chunk_committed(&result.tenant, result.job_id, result.chunk);
        if writes_first && committed.await? {
            return self.commit_again(&result, &results).await;
        }
        let writes = result
            .errors
            .iter()
            .enumerate()
            .map(|(nth, error)| {
                let mut item = to_item(error)?;
                item.extend(key(pk.clone(), update_error_sk(result.chunk, nth as u64)));
                item.insert("chunk".to_owned(), n(result.chunk));
                item.insert(EXPIRES_AT.to_owned(), ttl.clone());
                Ok(Write::Put(item))
            })
            .collect::<StoreResult<Vec<Write>>>()?;
        if !writes.is_empty() {
            self.batch_write(writes).await?;
        }
        // Row results too large for the marker go to parts, also written before the marker
        // and only counted once it names them; a re-delivery that got here concurrently
        // rewrites them identically (a re-run of a row reports what the first run did).
        if results.len() > 1 {
            let parts = results
                .iter()
                .enumerate()
                .map(|(part, json)| {
                    let mut item = key(pk.clone(), result_part_sk(result.chunk, part));
                    item.insert("chunk".to_owned(), n(result.chunk));
                    item.insert("results".to_owned(), s(json.clone()));
                    item.insert(EXPIRES_AT.to_owned(), ttl.clone());
                    Write::Put(item)
                })
                .collect();
            self.batch_write(parts).await?;
        }
        self.commit_again(&result, &results).await
    }

    async fn count_in_progress(&self, tenant: &TenantId) -> StoreResult<u64> {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :pk AND begins_with(gsi2sk, :tenant)")
                .expression_attribute_values(":pk", s(IN_PROGRESS))
                .expression_attribute_values(":tenant", s(in_progress_sk_prefix(tenant)))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            count += u64::try_from(page.count).unwrap_or_default();
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(count),
            }
        }
    }

    async fn stale_jobs(&self, idle_since: Timestamp) -> StoreResult<Vec<Job>> {
        let items = self
            .query_all(|| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi2")
                    .key_condition_expression("gsi2pk = :pk")
                    .filter_expression("updated_at < :idle_since")
                    .expression_attribute_values(":pk", s(IN_PROGRESS))
                    .expression_attribute_values(":idle_since", s(idle_since.to_string()))
            })
            .await?;
        live_jobs(items)
    }

    async fn committed_chunks(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<u32>> {
        let items = self.query_prefix(job_pk(tenant, id), CHUNK_PREFIX).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                text_of(item, "sk")?
                    .strip_prefix(CHUNK_PREFIX)?
                    .parse()
                    .ok()
            })
            .collect())
    }

    async fn purge_expired(&self, _now: Timestamp, _limit: u64) -> StoreResult<u64> {
        // Every item of a job carries `expires_at`: the table's TTL deletes them.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded() {
        assert_eq!(scheme_error_sk(7), "SERR#0000000007");
        assert_eq!(update_error_sk(12, 1), "UERR#00000012#0000001");
        assert_eq!(update_count_sk(12), "UCOUNT#00000012");
        assert_eq!(chunk_sk(3), "CHUNK#000003");
        assert_eq!(result_part_sk(3, 12), "RESULT#000003#012");
        assert_eq!(
            result_part_of(&key("JOB#acme#1", result_part_sk(3, 12))),
            Some((3, 12))
        );
        let item = key("JOB#acme#1", scheme_error_sk(42));
        assert_eq!(scheme_error_seq(&item), Some(42));
    }
}

#[cfg(test)]
mod result_tests {
    use super::*;
    use crate::model::RowAction;

    fn row(index: u64, details: usize) -> RowResult {
        RowResult {
            index,
            action: RowAction::Failed,
            user_id: None,
            email: Some(format!("user{index}@example.com")),
            external_id: None,
            error: Some("InvalidValue".to_owned()),
            details: Some("x".repeat(details)),
            field: Some("email".to_owned()),
        }
    }

    fn decoded(parts: &[String]) -> Vec<RowResult> {
        parts
            .iter()
            .flat_map(|json| {
                let item = Item::from([("results".to_owned(), s(json.clone()))]);
                decode_results(&item).unwrap()
            })
            .collect()
    }

    #[test]
    fn results_fit_one_item_or_are_split_in_order() {
        assert!(encode_results(&[]).unwrap().is_empty());

        let few: Vec<RowResult> = (0..1_000).map(|i| row(i, 100)).collect();
        let parts = encode_results(&few).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(decoded(&parts), few);

        // 1,000 rows of ~1 KB: about 1 MB, in parts of at most the item budget.
        let many: Vec<RowResult> = (0..1_000).map(|i| row(i, 1_000)).collect();
        let parts = encode_results(&many).unwrap();
        assert!(parts.len() >= 3, "{}", parts.len());
        assert!(parts.iter().all(|part| part.len() <= RESULTS_PER_ITEM_MAX));
        assert_eq!(decoded(&parts), many);
    }
}

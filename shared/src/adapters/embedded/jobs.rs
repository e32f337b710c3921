//! `JobStore` on SQLite: jobs, scheme errors, chunk commits with their update errors and row
//! results.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, Connection, Row, TransactionBehavior};

use super::store::{from_json, limit_offset, millis, optional_timestamp, timestamp, to_json};
use super::SqliteStore;
use crate::model::{
    ChunkCommit, ChunkPlan, ChunkResult, ErrorType, Job, JobId, JobKind, JobStatus, NewFile,
    NewJob, RowResult, SchemeError, SchemeReport, StatusChange, StatusChanged, TenantId, Timestamp,
    Transition, UpdateError,
};
use crate::ports::{JobStore, PageRequest, StoreError, StoreResult};

const JOB_COLUMNS: &str = "id, tenant, kind, status, filename, file_key, file_bytes, created_at, \
    updated_at, process_requested_at, completed_at, total_rows, affected_rows, failed_rows, \
    scheme_error_count, update_error_count, uploaded_api_user_name, proceed_api_user_name, \
    chunk_plan, chunks_done, failure_reason, resumptions, ordinal, file_version, keep_until";

/// The SQL condition that a job's status allows `transition` (the statuses are the domain's
/// constants, never input).
fn status_allows(transition: Transition) -> String {
    let statuses: Vec<String> = transition
        .from()
        .iter()
        .map(|status| format!("'{status}'"))
        .collect();
    format!("status IN ({})", statuses.join(", "))
}

/// The SQL value of a job id. Ids above `i64::MAX` wrap to negative values, which match no job
/// (ids are positive), so such an id reads as a missing job.
fn sql_id(id: JobId) -> i64 {
    id as i64
}

fn job_from_row(row: &Row<'_>) -> StoreResult<Job> {
    let tenant: String = row.get("tenant")?;
    let kind: String = row.get("kind")?;
    let status: String = row.get("status")?;
    let chunk_plan: String = row.get("chunk_plan")?;
    Ok(Job {
        id: row.get("id")?,
        tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job kind '{kind}'")))?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job status '{status}'")))?,
        filename: row.get("filename")?,
        file_key: row.get("file_key")?,
        file_version: row.get("file_version")?,
        file_bytes: row.get("file_bytes")?,
        created_at: timestamp(row.get("created_at")?)?,
        updated_at: timestamp(row.get("updated_at")?)?,
        process_requested_at: optional_timestamp(row.get("process_requested_at")?)?,
        completed_at: optional_timestamp(row.get("completed_at")?)?,
        total_rows: row.get("total_rows")?,
        affected_rows: row.get("affected_rows")?,
        failed_rows: row.get("failed_rows")?,
        scheme_error_count: row.get("scheme_error_count")?,
        update_error_count: row.get("update_error_count")?,
        uploaded_api_user_name: row.get("uploaded_api_user_name")?,
        proceed_api_user_name: row.get("proceed_api_user_name")?,
        chunk_plan: from_json("chunk plan", &chunk_plan)?,
        chunks_done: row.get("chunks_done")?,
        failure_reason: row.get("failure_reason")?,
        resumptions: row.get("resumptions")?,
        ordinal: row.get("ordinal")?,
        keep_until: timestamp(row.get("keep_until")?)?,
    })
}

/// The tenant's job `id`, unless it has [expired](Job::is_expired_at).
fn load_job(conn: &Connection, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
    let job = load_stored_job(conn, tenant, id)?;
    Ok(job.filter(|job| !job.is_expired_at(Timestamp::now())))
}

/// The tenant's job `id` as stored, expired or not.
fn load_stored_job(conn: &Connection, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 AND id = ?2"
    ))?;
    let mut rows = stmt.query(params![tenant.as_str(), sql_id(id)])?;
    rows.next()?.map(job_from_row).transpose()
}

fn existing_job(conn: &Connection, tenant: &TenantId, id: JobId) -> StoreResult<Job> {
    load_job(conn, tenant, id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// The jobs a query selects, the expired ones left out.
fn live_jobs(mut rows: rusqlite::Rows<'_>) -> StoreResult<Vec<Job>> {
    let now = Timestamp::now();
    let mut jobs = Vec::new();
    while let Some(row) = rows.next()? {
        let job = job_from_row(row)?;
        if !job.is_expired_at(now) {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Takes the tenant's next job id from its counter (ids are never given twice, even once
/// their jobs have expired and been purged).
fn next_job_id(tx: &Connection, tenant: &TenantId) -> StoreResult<JobId> {
    Ok(tx.query_row(
        "INSERT INTO counters (name, next) VALUES ('jobs:' || ?1, 2) \
         ON CONFLICT (name) DO UPDATE SET next = next + 1 RETURNING next - 1",
        [tenant.as_str()],
        |row| row.get(0),
    )?)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: NewJob) -> StoreResult<Job> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let id = next_job_id(&tx, &job.tenant)?;
                // The next ordinal of the tenant: the largest, found on the unique index.
                tx.execute(
                    "INSERT INTO jobs (tenant, id, status, filename, file_key, file_bytes, \
                     created_at, updated_at, uploaded_api_user_name, chunk_plan, kind, keep_until, \
                     ordinal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, \
                     (SELECT COALESCE(MAX(ordinal), 0) + 1 FROM jobs WHERE tenant = ?1))",
                    params![
                        job.tenant.as_str(),
                        sql_id(id),
                        JobStatus::Created.as_str(),
                        job.filename,
                        job.file_key,
                        job.file_bytes,
                        millis(job.created_at),
                        job.uploaded_api_user_name,
                        to_json(&ChunkPlan::default())?,
                        job.kind.as_str(),
                        millis(job.keep_until),
                    ],
                )?;
                let created = load_stored_job(&tx, &job.tenant, id)?
                    .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
                tx.commit()?;
                Ok(created)
            })
            .await
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        let tenant = tenant.clone();
        self.db.call(move |conn| load_job(conn, &tenant, id)).await
    }

    async fn list_jobs(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<(Vec<Job>, u64)> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                // Ordinals run 1..=total without gaps: the page is a range of them.
                let total: u64 = tx.query_row(
                    "SELECT COALESCE(MAX(ordinal), 0) FROM jobs WHERE tenant = ?1",
                    [tenant.as_str()],
                    |row| row.get(0),
                )?;
                let newest = total.saturating_sub(page.offset());
                let oldest = newest
                    .saturating_sub(page.per_page.saturating_sub(1))
                    .max(1);
                let mut jobs = Vec::new();
                if newest > 0 {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 \
                         AND ordinal BETWEEN ?2 AND ?3 ORDER BY ordinal DESC"
                    ))?;
                    let bound = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    jobs = live_jobs(stmt.query(params![
                        tenant.as_str(),
                        bound(oldest),
                        bound(newest)
                    ])?)?;
                }
                tx.commit()?;
                Ok((jobs, total))
            })
            .await
    }

    async fn jobs_before(
        &self,
        tenant: &TenantId,
        before: Option<u64>,
        limit: u64,
    ) -> StoreResult<Vec<Job>> {
        let tenant = tenant.clone();
        // Every ordinal is below i64::MAX, so a larger cursor is no bound.
        let before = before.map(|ordinal| i64::try_from(ordinal).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 \
                     AND (?2 IS NULL OR ordinal < ?2) ORDER BY ordinal DESC LIMIT ?3"
                ))?;
                let jobs = live_jobs(stmt.query(params![tenant.as_str(), before, limit])?)?;
                Ok(jobs)
            })
            .await
    }

    async fn replace_file(
        &self,
        tenant: &TenantId,
        id: JobId,
        file: NewFile,
    ) -> StoreResult<Option<Result<Job, Job>>> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(job) = load_job(&tx, &tenant, id)? else {
                    return Ok(None);
                };
                if !Transition::ReplaceFile.allowed_from(job.status) {
                    return Ok(Some(Err(job)));
                }
                tx.execute(
                    "UPDATE jobs SET filename = ?2, file_key = ?3, file_bytes = ?4, status = ?5, \
                     file_version = NULL, total_rows = 0, scheme_error_count = 0, \
                     chunk_plan = ?6, chunks_done = 0, updated_at = ?7 WHERE id = ?1 AND tenant = ?8",
                    params![
                        sql_id(id),
                        file.filename,
                        file.file_key,
                        file.file_bytes,
                        Transition::ReplaceFile.to().as_str(),
                        to_json(&ChunkPlan::default())?,
                        millis(file.at),
                        tenant.as_str(),
                    ],
                )?;
                delete_scheme_errors(&tx, &tenant, id)?;
                let replaced = existing_job(&tx, &tenant, id)?;
                tx.commit()?;
                Ok(Some(Ok(replaced)))
            })
            .await
    }

    async fn record_scheme_report(
        &self,
        tenant: &TenantId,
        id: JobId,
        file_key: &str,
        report: &SchemeReport,
        at: Timestamp,
    ) -> StoreResult<Job> {
        let tenant = tenant.clone();
        let file_key = file_key.to_owned();
        let report = report.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let job = existing_job(&tx, &tenant, id)?;
                let transition = report.transition();
                if !transition.allowed_from(job.status) || job.file_key != file_key {
                    return Ok(job);
                }
                delete_scheme_errors(&tx, &tenant, id)?;
                insert_scheme_errors(&tx, &tenant, id, &report.errors)?;
                tx.execute(
                    "UPDATE jobs SET scheme_error_count = ?2, total_rows = ?3, chunk_plan = ?4, \
                     status = ?5, updated_at = ?6, file_version = ?7 WHERE id = ?1 AND tenant = ?8",
                    params![
                        sql_id(id),
                        report.error_count,
                        report.total_rows,
                        to_json(&report.chunk_plan)?,
                        transition.to().as_str(),
                        millis(at),
                        report.file_version,
                        tenant.as_str(),
                    ],
                )?;
                let recorded = existing_job(&tx, &tenant, id)?;
                tx.commit()?;
                Ok(recorded)
            })
            .await
    }

    async fn change_status(
        &self,
        tenant: &TenantId,
        id: JobId,
        change: &StatusChange,
        at: Timestamp,
    ) -> StoreResult<StatusChanged> {
        let tenant = tenant.clone();
        let change = change.clone();
        self.db
            .call(move |conn| {
                // An immediate transaction holds the write lock from its first read: the job
                // read is the job changed.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(job) = load_job(&tx, &tenant, id)? else {
                    return Ok(StatusChanged::Missing);
                };
                if !change.transition().allowed_for(&job) {
                    return Ok(StatusChanged::Refused(job));
                }
                let (sql, values) = status_update(&job, &change, at);
                tx.execute(&sql, rusqlite::params_from_iter(values))?;
                let changed = existing_job(&tx, &tenant, id)?;
                tx.commit()?;
                Ok(StatusChanged::Changed(changed))
            })
            .await
    }

    async fn scheme_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<SchemeError>> {
        let (id, (limit, offset)) = (job.id, limit_offset(page));
        let tenant = job.tenant.clone();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT message, column_no, row_no, field FROM scheme_errors \
                     WHERE tenant = ?4 AND job_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3",
                )?;
                let errors = stmt
                    .query_map(params![sql_id(id), limit, offset, tenant.as_str()], |row| {
                        Ok(SchemeError {
                            message: row.get(0)?,
                            column: row.get(1)?,
                            row: row.get(2)?,
                            field: row.get(3)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(errors)
            })
            .await
    }

    async fn update_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<UpdateError>> {
        let (id, (limit, offset)) = (job.id, limit_offset(page));
        let tenant = job.tenant.clone();
        self.db
            .call(move |conn| {
                // Chunks are consecutive row ranges and each numbers its errors in row order:
                // the primary key's order is row order.
                let mut stmt = conn.prepare_cached(
                    "SELECT message, column_no, row_no, field, error_type FROM update_errors \
                     WHERE tenant = ?4 AND job_id = ?1 ORDER BY chunk, seq LIMIT ?2 OFFSET ?3",
                )?;
                let mut rows = stmt.query(params![sql_id(id), limit, offset, tenant.as_str()])?;
                let mut errors = Vec::new();
                while let Some(row) = rows.next()? {
                    let error_type: String = row.get(4)?;
                    errors.push(UpdateError {
                        message: row.get(0)?,
                        column: row.get(1)?,
                        row: row.get(2)?,
                        field: row.get(3)?,
                        error_type: ErrorType::parse(&error_type).ok_or_else(|| {
                            StoreError::Corrupt(format!("unknown error type '{error_type}'"))
                        })?,
                    });
                }
                Ok(errors)
            })
            .await
    }

    async fn results(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<RowResult>> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                if load_job(conn, &tenant, id)?.is_none() {
                    return Ok(Vec::new());
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT results FROM job_chunks \
                     WHERE job_id = ?1 AND tenant = ?2 AND results IS NOT NULL ORDER BY chunk",
                )?;
                let mut rows = stmt.query(params![sql_id(id), tenant.as_str()])?;
                let mut results = Vec::new();
                while let Some(row) = rows.next()? {
                    let chunk: String = row.get(0)?;
                    results.extend(from_json::<Vec<RowResult>>("row results", &chunk)?);
                }
                // Chunks cover consecutive rows; the sort only guards the order within one.
                results.sort_by_key(|result| result.index);
                Ok(results)
            })
            .await
    }

    async fn chunk_committed(&self, tenant: &TenantId, id: JobId, chunk: u32) -> StoreResult<bool> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                Ok(conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM job_chunks \
                     WHERE tenant = ?3 AND job_id = ?1 AND chunk = ?2)",
                    params![sql_id(id), chunk, tenant.as_str()],
                    |row| row.get(0),
                )?)
            })
            .await
    }

    async fn commit_chunk(&self, result: ChunkResult) -> StoreResult<ChunkCommit> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let job = existing_job(&tx, &result.tenant, result.job_id)?;
                if !insert_chunk(&tx, &result)? {
                    return Ok(ChunkCommit {
                        newly_committed: false,
                        completed_job: false,
                    });
                }
                let counted = Job {
                    chunks_done: job.chunks_done.saturating_add(1),
                    ..job
                };
                let completed_job = Transition::Complete.allowed_for(&counted);
                let (status, completed_at) = if completed_job {
                    (Transition::Complete.to(), Some(millis(result.at)))
                } else {
                    (counted.status, None)
                };
                tx.execute(
                    "UPDATE jobs SET affected_rows = affected_rows + ?2, \
                     failed_rows = failed_rows + ?3, update_error_count = update_error_count + ?4, \
                     chunks_done = ?5, updated_at = ?6, status = ?7, \
                     completed_at = coalesce(?8, completed_at) WHERE id = ?1 AND tenant = ?9",
                    params![
                        sql_id(result.job_id),
                        result.affected_rows,
                        result.failed_rows,
                        result.errors.len(),
                        counted.chunks_done,
                        millis(result.at),
                        status.as_str(),
                        completed_at,
                        result.tenant.as_str(),
                    ],
                )?;
                tx.commit()?;
                Ok(ChunkCommit {
                    newly_committed: true,
                    completed_job,
                })
            })
            .await
    }

    async fn count_in_progress(&self, tenant: &TenantId) -> StoreResult<u64> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let count: u64 = conn.query_row(
                    "SELECT count(*) FROM jobs WHERE tenant = ?1 AND status = 'in_progress'",
                    [tenant.as_str()],
                    |row| row.get(0),
                )?;
                Ok(count)
            })
            .await
    }

    async fn stale_jobs(&self, idle_since: Timestamp) -> StoreResult<Vec<Job>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE {} AND updated_at < ?1 ORDER BY id",
                    status_allows(Transition::Resume)
                ))?;
                let mut rows = stmt.query([millis(idle_since)])?;
                let mut jobs = Vec::new();
                while let Some(row) = rows.next()? {
                    jobs.push(job_from_row(row)?);
                }
                Ok(jobs)
            })
            .await
    }

    async fn committed_chunks(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<u32>> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT chunk FROM job_chunks WHERE tenant = ?2 AND job_id = ?1 ORDER BY chunk",
                )?;
                let chunks = stmt
                    .query_map(params![sql_id(id), tenant.as_str()], |row| row.get(0))?
                    .collect::<Result<Vec<u32>, _>>()?;
                Ok(chunks)
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: u64) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                // Job::is_expired_at as SQL: `now >= keep_until`. The job's scheme errors,
                // chunks and update errors go with it (foreign keys, ON DELETE CASCADE).
                let purged = conn.execute(
                    "DELETE FROM jobs WHERE (tenant, id) IN \
                     (SELECT tenant, id FROM jobs WHERE keep_until <= ?1 LIMIT ?2)",
                    params![millis(now), limit],
                )?;
                Ok(purged as u64)
            })
            .await
    }
}

fn delete_scheme_errors(tx: &Connection, tenant: &TenantId, id: JobId) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM scheme_errors WHERE tenant = ?1 AND job_id = ?2",
        params![tenant.as_str(), sql_id(id)],
    )?;
    Ok(())
}

fn insert_scheme_errors(
    tx: &Connection,
    tenant: &TenantId,
    id: JobId,
    errors: &[SchemeError],
) -> StoreResult<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO scheme_errors (tenant, job_id, seq, message, column_no, row_no, field) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (seq, error) in errors.iter().enumerate() {
        insert.execute(params![
            tenant.as_str(),
            sql_id(id),
            seq,
            error.message,
            error.column,
            error.row,
            error.field,
        ])?;
    }
    Ok(())
}

/// Records a chunk's marker (with its row results: committed together, exactly once) and its
/// update errors; false when the chunk had been committed before.
fn insert_chunk(tx: &Connection, result: &ChunkResult) -> StoreResult<bool> {
    let (tenant, id) = (result.tenant.as_str(), sql_id(result.job_id));
    let results = if result.results.is_empty() {
        None
    } else {
        Some(to_json(&result.results)?)
    };
    let inserted = tx.execute(
        "INSERT INTO job_chunks (tenant, job_id, chunk, committed_at, results) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, job_id, chunk) DO NOTHING",
        params![tenant, id, result.chunk, millis(result.at), results],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO update_errors \
         (tenant, job_id, chunk, seq, message, column_no, row_no, field, error_type) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (seq, error) in result.errors.iter().enumerate() {
        insert.execute(params![
            tenant,
            id,
            result.chunk,
            seq,
            error.message,
            error.column,
            error.row,
            error.field,
            error.error_type.as_str(),
        ])?;
    }
    Ok(true)
}

/// The UPDATE making `change` to `job` at `at`, and its values: the status it leads to, and
/// what it records (a proceed also how long the job is kept).
fn status_update(job: &Job, change: &StatusChange, at: Timestamp) -> (String, Vec<Value>) {
    let (records, text) = match change {
        StatusChange::Proceed { by } => (
            ", process_requested_at = ?3, proceed_api_user_name = ?4, keep_until = ?5",
            Some(by),
        ),
        StatusChange::Resume => (", resumptions = resumptions + 1", None),
        StatusChange::Complete => (", completed_at = ?3", None),
        StatusChange::Fail { reason } => (", failure_reason = ?4", Some(reason)),
        StatusChange::Cancel => ("", None),
    };
    let sql = format!(
        "UPDATE jobs SET status = ?2, updated_at = ?3{records} WHERE id = ?1 AND tenant = ?6"
    );
    let values = vec![
        Value::Integer(sql_id(job.id)),
        Value::Text(change.transition().to().as_str().to_owned()),
        Value::Integer(millis(at)),
        Value::Text(text.cloned().unwrap_or_default()),
        Value::Integer(millis(job.keep_until_when_proceeded(at))),
        Value::Text(job.tenant.as_str().to_owned()),
    ];
    (sql, values)
}

#[cfg(test)]
mod tests {
    //! What only SQLite has: ids across reopening, and databases of the first schema. The
    //! port's contract is tested on both stores by the test crate's `contracts`.
    use super::super::store::testing::{at, store, tenant, version_1_database};
    use super::*;

    fn new_job(key: &str) -> NewJob {
        NewJob {
            tenant: tenant("acme"),
            kind: JobKind::Upload,
            filename: format!("{key}.json"),
            file_key: key.to_owned(),
            file_bytes: 100,
            uploaded_api_user_name: "uploader".to_owned(),
            created_at: at(0),
            keep_until: Timestamp::now().plus_seconds(3600),
        }
    }

    #[tokio::test]
    async fn ids_are_never_reused_across_reopen() {
        let (dir, store) = store();
        store.create_job(new_job("a")).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&dir.path().join("test.sqlite3")).unwrap();
        assert_eq!(store.create_job(new_job("b")).await.unwrap().id, 2);
    }

    #[tokio::test]
    async fn a_version_1_database_keeps_its_jobs_as_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let conn = version_1_database(&path);
        conn.execute_batch(
            "INSERT INTO jobs (tenant, status, filename, file_key, file_bytes, created_at, \
             updated_at, uploaded_api_user_name, chunk_plan, chunks_done) \
             VALUES ('acme', 'in_progress', 'f.json', 'k', 10, 0, \
             CAST(strftime('%s', 'now') AS INTEGER) * 1000, 'me', \
             '{\"rows_per_chunk\":10,\"offsets\":[1,2]}', 1); \
             INSERT INTO job_chunks (job_id, chunk, committed_at) VALUES (1, 0, 0);",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let acme = tenant("acme");
        let job = store.get_job(&acme, 1).await.unwrap().unwrap();
        assert_eq!(
            (job.kind, job.status),
            (JobKind::Upload, JobStatus::InProgress)
        );
        assert!(store.chunk_committed(&acme, 1, 0).await.unwrap());
        assert!(store.results(&acme, 1).await.unwrap().is_empty());
        let last_chunk = ChunkResult {
            tenant: acme.clone(),
            job_id: 1,
            keep_until: job.keep_until,
            chunk: 1,
            affected_rows: 10,
            failed_rows: 0,
            errors: vec![],
            results: vec![],
            at: at(101),
        };
        let commit = store.commit_chunk(last_chunk).await.unwrap();
        assert!(commit.completed_job);
    }

    #[tokio::test]
    async fn existing_jobs_keep_their_ids_and_each_tenant_numbers_on_from_its_largest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let conn = super::super::schema::database_at_version(&path, 6);
        // Global ids 1-3: acme's 1 and 3, globex's 2, each with something recorded.
        let now = "CAST(strftime('%s', 'now') AS INTEGER) * 1000";
        for (id, tenant, ordinal) in [(1, "acme", 1), (2, "globex", 1), (3, "acme", 2)] {
            conn.execute_batch(&format!(
                "INSERT INTO jobs (id, tenant, status, filename, file_key, file_bytes, \
                 created_at, updated_at, uploaded_api_user_name, chunk_plan, ordinal) \
                 VALUES ({id}, '{tenant}', 'in_progress', 'f.json', 'k{id}', 10, {now}, {now}, \
                 'me', '{{\"rows_per_chunk\":10,\"offsets\":[1,2]}}', {ordinal}); \
                 INSERT INTO scheme_errors (job_id, seq, message) VALUES ({id}, 0, 'bad'); \
                 INSERT INTO job_chunks (job_id, chunk, committed_at) VALUES ({id}, 0, 0); \
                 INSERT INTO update_errors (job_id, chunk, seq, message, row_no, error_type) \
                 VALUES ({id}, 0, 0, 'no', 1, 'error');"
            ))
            .unwrap();
        }
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        for (tenant, id) in [(&acme, 1), (&globex, 2), (&acme, 3)] {
            let job = store.get_job(tenant, id).await.unwrap().unwrap();
            assert_eq!(job.file_key, format!("k{id}"));
            assert!(store.chunk_committed(tenant, id, 0).await.unwrap());
            let errors = store.update_errors(
                &job,
                PageRequest {
                    page: 1,
                    per_page: 10,
                },
            );
            assert_eq!(errors.await.unwrap().len(), 1);
            let errors = store.scheme_errors(
                &job,
                PageRequest {
                    page: 1,
                    per_page: 10,
                },
            );
            assert_eq!(errors.await.unwrap().len(), 1);
        }
        assert_eq!(store.get_job(&acme, 2).await.unwrap(), None);
        assert_eq!(store.create_job(new_job("a")).await.unwrap().id, 4);
        let theirs = NewJob {
            tenant: globex.clone(),
            ..new_job("g")
        };
        assert_eq!(store.create_job(theirs).await.unwrap().id, 3);
        let first = NewJob {
            tenant: tenant("initech"),
            ..new_job("i")
        };
        assert_eq!(store.create_job(first).await.unwrap().id, 1);
    }
}

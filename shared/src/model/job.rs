//! Bulk jobs: one uploaded file, its validation outcome and its processing progress.

use serde::{Deserialize, Serialize};

use super::{TenantId, Timestamp, UserAction, UserId};

/// Job ids are integers numbered per tenant (1, 2, 3, … for each tenant, in creation order):
/// a job is named by its tenant and its id, and one tenant's ids say nothing of another's
/// volume. An id is never given twice within a tenant, even after its job expired.
pub type JobId = u64;

/// How long a job's processing may take after it was proceeded, beyond its retention: the
/// sweeper ends a job idle for [`STALE_JOB_AFTER`](crate::service::STALE_JOB_AFTER) after a few
/// resumptions, so a proceeded job ends well within a day.
pub const PROCESSING_ALLOWANCE_SECONDS: i64 = 24 * 60 * 60;

/// What a job does with its file's records, and which dialect asked for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// CCAI: an uploaded file of user rows, matched by email (create or update).
    #[default]
    Upload,
    /// Zendesk `users/create_many`: every record creates a user.
    CreateMany,
    /// Zendesk `users/create_or_update_many`: matched by email or external id.
    CreateOrUpdateMany,
    /// Zendesk `users/update_many`: every record names an existing user by id or external id.
    UpdateMany,
    /// Zendesk `users/destroy_many`: every record names a user to delete.
    DestroyMany,
    /// Huawei Workspace `users/batch-create`, processed synchronously.
    WorkspaceCreate,
    /// Huawei Workspace `users/batch-delete` and `DELETE users/{id}`, processed synchronously.
    WorkspaceDelete,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Upload,
        JobKind::CreateMany,
        JobKind::CreateOrUpdateMany,
        JobKind::UpdateMany,
        JobKind::DestroyMany,
        JobKind::WorkspaceCreate,
        JobKind::WorkspaceDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Upload => "upload",
            JobKind::CreateMany => "create_many",
            JobKind::CreateOrUpdateMany => "create_or_update_many",
            JobKind::UpdateMany => "update_many",
            JobKind::DestroyMany => "destroy_many",
            JobKind::WorkspaceCreate => "workspace_create",
            JobKind::WorkspaceDelete => "workspace_delete",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether the job records a result per row (the dialects that report them); CCAI uploads
    /// record only their update errors, so a million-row job writes no million results.
    pub fn records_results(self) -> bool {
        self != JobKind::Upload
    }
}

/// Where a job is: `created` → `valid_scheme` | `invalid_scheme` → (`valid_scheme` only)
/// `in_progress` → `completed`, with `failed` for job-level failures and `cancelled` for jobs
/// stopped on request. The changes between them are [`Transition`](super::Transition)s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Created,
    ValidScheme,
    InvalidScheme,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Created,
        JobStatus::ValidScheme,
        JobStatus::InvalidScheme,
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::ValidScheme => "valid_scheme",
            JobStatus::InvalidScheme => "invalid_scheme",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "created" => JobStatus::Created,
            "valid_scheme" => JobStatus::ValidScheme,
            "invalid_scheme" => JobStatus::InvalidScheme,
            "in_progress" => JobStatus::InProgress,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a validated file is cut into independently processable chunks: chunk `i` covers rows
/// `[i * rows_per_chunk, min((i + 1) * rows_per_chunk, total_rows))` and starts at byte
/// `offsets[i]` of the file (the first byte of its first element).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub rows_per_chunk: u64,
    pub offsets: Vec<u64>,
}

impl ChunkPlan {
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.offsets.len()).unwrap_or(u32::MAX)
    }

    /// The work items of a job whose file has `total_rows` rows.
    pub fn work_items(&self, tenant: &TenantId, job_id: JobId, total_rows: u64) -> Vec<WorkItem> {
        self.offsets
            .iter()
            .enumerate()
            .map(|(index, &byte_offset)| {
                let first_row = index as u64 * self.rows_per_chunk;
                WorkItem {
                    tenant: tenant.clone(),
                    job_id,
                    chunk: index as u32,
                    first_row,
                    rows: self
                        .rows_per_chunk
                        .min(total_rows.saturating_sub(first_row)),
                    byte_offset,
                }
            })
            .collect()
    }
}

/// One queue message: a chunk of a job's file to process. Never carries user records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub tenant: TenantId,
    pub job_id: JobId,
    pub chunk: u32,
    /// 0-based index of the chunk's first row in the file.
    pub first_row: u64,
    pub rows: u64,
    pub byte_offset: u64,
}

/// A bulk job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    #[serde(default)]
    pub kind: JobKind,
    pub status: JobStatus,
    pub filename: String,
    /// Where the job's file lives in the file store.
    pub file_key: String,
    /// The version of `file_key` the job validated (the file store's version id): every read
    /// of the job's file asks for exactly these bytes, so nothing written to the key later is
    /// ever processed. `None` until the file is validated (and for jobs validated before
    /// versions were recorded, whose file is read as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_version: Option<String>,
    pub file_bytes: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub process_requested_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub total_rows: u64,
    pub affected_rows: u64,
    pub failed_rows: u64,
    pub scheme_error_count: u64,
    pub update_error_count: u64,
    pub uploaded_api_user_name: String,
    pub proceed_api_user_name: Option<String>,
    pub chunk_plan: ChunkPlan,
    pub chunks_done: u32,
    /// Why a job ended `failed`.
    pub failure_reason: Option<String>,
    /// How often the sweeper queued the job's work again (it was in progress and idle).
    #[serde(default)]
    pub resumptions: u32,
    /// The job's place among its tenant's jobs, in the order they were created (1, 2, …): the
    /// stores list a tenant's jobs by it, so a page of the list is one range of ordinals.
    #[serde(default)]
    pub ordinal: u64,
    /// Until when the job and everything recorded about it (scheme and update error logs, row
    /// results, chunk markers) are kept: see [`Job::is_expired_at`].
    pub keep_until: Timestamp,
}

impl Job {
    /// The one rule of expiry: a job is expired from its `keep_until` on. An expired job reads
    /// as missing everywhere, whether or not its store has deleted it yet.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now >= self.keep_until
    }

    /// The `keep_until` of the job once proceeded at `at`: its retention counted again from
    /// `at`, plus [`PROCESSING_ALLOWANCE_SECONDS`], so that a job proceeded late is still kept
    /// its retention after it ends (never earlier than before).
    pub fn keep_until_when_proceeded(&self, at: Timestamp) -> Timestamp {
        let retention = self.keep_until.seconds_since(self.created_at).max(0);
        self.keep_until
            .max(at.plus_seconds(retention + PROCESSING_ALLOWANCE_SECONDS))
    }
}

/// What the upload step knows about a job before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub tenant: TenantId,
    pub kind: JobKind,
    pub filename: String,
    pub file_key: String,
    pub file_bytes: u64,
    pub uploaded_api_user_name: String,
    pub created_at: Timestamp,
    /// Until when the job is kept: its tenant's retention from `created_at`
    /// ([`Limits::keep_until`](super::Limits::keep_until)).
    pub keep_until: Timestamp,
}

/// A replacement file for a job that has not been proceeded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFile {
    pub filename: String,
    pub file_key: String,
    pub file_bytes: u64,
    pub at: Timestamp,
}

/// The result of validating a job's file ("scheme" validation).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemeReport {
    pub total_rows: u64,
    /// Every error found, up to the recording cap; `error_count` counts them all.
    pub errors: Vec<SchemeError>,
    pub error_count: u64,
    pub chunk_plan: ChunkPlan,
    /// The version of the file the report is about (see [`Job::file_version`]); recorded with
    /// the report, it pins the job to those bytes.
    pub file_version: Option<String>,
}

impl SchemeReport {
    /// The transition the report makes: a file without errors is accepted.
    pub fn transition(&self) -> super::Transition {
        if self.error_count == 0 {
            super::Transition::AcceptScheme
        } else {
            super::Transition::RejectScheme
        }
    }

    pub fn status(&self) -> JobStatus {
        self.transition().to()
    }
}

/// One problem found in a job file. `row` is the 1-based position of the user in the file,
/// `None` for problems of the whole file; `column` is the 1-based position of the field in the
/// template's layout, `None` when the problem is not tied to a template field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemeError {
    pub message: String,
    pub column: Option<u32>,
    pub row: Option<u64>,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The row was applied, with a remark.
    Warning,
    /// The row was not applied.
    Error,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Warning => "warning",
            ErrorType::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorType> {
        match text {
            "warning" => Some(ErrorType::Warning),
            "error" => Some(ErrorType::Error),
            _ => None,
        }
    }
}

/// One problem met while applying a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateError {
    pub message: String,
    pub column: Option<u32>,
    pub row: u64,
    pub field: Option<String>,
    pub error_type: ErrorType,
}

/// The outcome of processing one chunk, committed exactly once per (job, chunk).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkResult {
    pub tenant: TenantId,
    pub job_id: JobId,
    /// The job's `keep_until` when the chunk was processed: what the chunk records is kept as
    /// long as its job.
    pub keep_until: Timestamp,
    pub chunk: u32,
    pub affected_rows: u64,
    pub failed_rows: u64,
    pub errors: Vec<UpdateError>,
    /// One per row, in row order, for jobs that [record results](JobKind::records_results).
    pub results: Vec<RowResult>,
    pub at: Timestamp,
}

/// What happened to one row of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowAction {
    Created,
    Updated,
    Deleted,
    Failed,
}

impl From<UserAction> for RowAction {
    fn from(action: UserAction) -> RowAction {
        match action {
            UserAction::Created => RowAction::Created,
            UserAction::Updated => RowAction::Updated,
            UserAction::Deleted => RowAction::Deleted,
        }
    }
}

/// The result of one row, as the dialects that report per-record results show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowResult {
    /// 0-based position of the record in the request / file.
    pub index: u64,
    pub action: RowAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// For failures: a short error code (`InvalidValue`, `NotFound`, `DuplicateValue`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For failures: what was wrong, naming the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What committing a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCommit {
    /// False when the chunk had been committed before (a re-delivery): nothing was counted again.
    pub newly_committed: bool,
    /// True for exactly one commit: the one that moved the job to `completed`.
    pub completed_job: bool,
}

/// What asking to proceed a job did.
#[derive(Debug, Clone, PartialEq)]
pub enum ProceedOutcome {
    /// The job moved from `valid_scheme` to `in_progress`; its chunks must now be queued.
    Started(Job),
    /// The job was not in `valid_scheme`; nothing changed.
    NotProceedable(Job),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(created: &str, keep_until: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "id": 1, "tenant": "acme", "status": "valid_scheme", "filename": "f",
            "file_key": "k", "file_bytes": 1, "created_at": created, "updated_at": created,
            "process_requested_at": null, "completed_at": null, "total_rows": 3,
            "affected_rows": 0, "failed_rows": 0, "scheme_error_count": 0,
            "update_error_count": 0, "uploaded_api_user_name": "u",
            "proceed_api_user_name": null, "chunk_plan": {"rows_per_chunk": 1, "offsets": [1]},
            "chunks_done": 0, "failure_reason": null, "keep_until": keep_until
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn a_job_is_expired_from_its_keep_until_on() {
        let job = job("2024-01-01T00:00:00.000Z", "2024-01-31T00:00:00.000Z");
        assert!(!job.is_expired_at(at("2024-01-30T23:59:59.999Z")));
        assert!(job.is_expired_at(at("2024-01-31T00:00:00.000Z")));
    }

    #[test]
    fn a_proceeded_job_is_kept_its_retention_after_it_ends() {
        let job = job("2024-01-01T00:00:00.000Z", "2024-01-31T00:00:00.000Z");
        // Proceeded at once: its retention is not shortened.
        assert_eq!(
            job.keep_until_when_proceeded(at("2024-01-01T00:00:00.000Z")),
            at("2024-02-01T00:00:00.000Z")
        );
        // Proceeded on day 29: 30 days and the processing allowance from then.
        assert_eq!(
            job.keep_until_when_proceeded(at("2024-01-30T00:00:00.000Z")),
            at("2024-03-01T00:00:00.000Z")
        );
    }

    #[test]
    fn the_default_retention_is_thirty_days() {
        let created = at("2024-01-01T00:00:00.000Z");
        assert_eq!(
            super::super::Limits::default().keep_until(created),
            at("2024-01-31T00:00:00.000Z")
        );
        assert_eq!(created.unix_seconds_ceil(), 1_704_067_200);
        assert_eq!(created.plus_seconds(0).unix_seconds_ceil(), 1_704_067_200);
        let later = Timestamp::from_unix_millis(1_704_067_200_001).unwrap();
        assert_eq!(later.unix_seconds_ceil(), 1_704_067_201);
    }
}

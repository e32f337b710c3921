//! The application's operations, free of HTTP and of any vendor: what every route, Lambda and
//! admin command calls.

mod admission;
mod batches;
mod credentials;
mod idempotency;
mod intake;
mod keys;
mod workspace;

pub use idempotency::{KeyTicket, KeyedRequest, MAX_IDEMPOTENCY_KEY_CHARS};
pub use intake::{
    Arrival, IncomingKey, IntakeOutcome, PresignRequest, PresignedJob, DROP_USER_NAME,
};
pub use keys::{KeyStatus, Rotation};
pub use workspace::MAX_USERS_PER_BATCH;

use std::io::Cursor;

use bytes::Bytes;
use rand::RngCore;

use crate::jobfile::FileFormat;
use crate::model::{
    Job, JobId, JobKind, JobStatus, NewFile, NewJob, ProceedOutcome, SchemeError, SchemeReport,
    StatusChange, StatusChanged, TenantId, TenantSettings, Timestamp, Transition, UpdateError,
    User, UserFilter, UserSelector, WorkItem, RETENTION_DAYS,
};
use crate::ports::{FileReader, PageRequest, Ports, StoreError};
use crate::processing::{self, ChunkOutcome, ProcessingOptions};
use crate::validation::{validate_job_file, FileValidation, ValidationContext};

/// Why an operation was refused. Mapped to HTTP in one place, `api::errors`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// A value that must be unique is held already (409).
    #[error("{message}")]
    Duplicate { field: String, message: String },
    /// Well-formed but refused: it contradicts an earlier request (422).
    #[error("{message}")]
    Unprocessable { field: String, message: String },
    #[error("{message}")]
    TooLarge {
        limit: &'static str,
        message: String,
    },
    /// Over a rate or concurrency limit: the same request may succeed after `retry_after`
    /// seconds.
    #[error("{message}")]
    TooMany {
        limit: &'static str,
        message: String,
        retry_after: u64,
    },
    /// This deployment cannot do it (a feature of another file store).
    #[error("{0}")]
    Unsupported(String),
    /// Out of time before a batch was applied: it goes on as job `job_id` (its chunks queued),
    /// and the same request sent again under its idempotency key answers when it is done.
    #[error("the batch is not applied yet: it goes on as job {job_id}")]
    Unfinished { job_id: JobId },
    /// A fault of this service itself, not of a dependency nor of the request.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The caller of an operation, as established by authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub key_id: String,
    /// The credential's name, reported as `uploaded_api_user_name` / `proceed_api_user_name`.
    pub name: String,
}

/// Tunables shared by every host.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    pub rows_per_chunk: u64,
    pub processing: ProcessingOptions,
    pub max_recorded_scheme_errors: usize,
    /// Failed authentications one client address may make in a UTC minute; past them its
    /// requests are refused (429) until the minute ends, before any credential is read.
    pub failed_authentications_per_minute: u64,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            rows_per_chunk: 1000,
            processing: ProcessingOptions::default(),
            max_recorded_scheme_errors: FileValidation::DEFAULT_MAX_RECORDED_ERRORS,
            failed_authentications_per_minute: 30,
        }
    }
}

impl ServiceConfig {
    /// Defaults, overridden by `BULK_ROWS_PER_CHUNK`, `BULK_BATCH_ROWS` and
    /// `BULK_FAILED_AUTHENTICATIONS_PER_MINUTE` when set.
    pub fn from_env() -> Result<ServiceConfig, String> {
        let mut config = ServiceConfig::default();
        if let Some(rows) = env_number("BULK_ROWS_PER_CHUNK")? {
            config.rows_per_chunk = rows;
        }
        if let Some(rows) = env_number("BULK_BATCH_ROWS")? {
            config.processing.batch_rows = rows as usize;
        }
        if let Some(failures) = env_number("BULK_FAILED_AUTHENTICATIONS_PER_MINUTE")? {
            config.failed_authentications_per_minute = failures;
        }
        Ok(config)
    }
}

fn env_number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(value) if value > 0 => Ok(Some(value)),
            _ => Err(format!("{name} must be a positive integer, got '{text}'")),
        },
    }
}

/// What [`BulkService::resume_stale_jobs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub resumed: Vec<ResumedJob>,
    /// Jobs resumed [`MAX_RESUMPTIONS`] times already and still stale: failed, with the reason.
    pub given_up: Vec<GivenUpJob>,
}

/// A stale job that [`BulkService::resume_stale_jobs`] resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedJob {
    pub job_id: JobId,
    /// The chunks queued again; none when the job only needed completing.
    pub requeued_chunks: Vec<u32>,
}

/// A stale job that the sweeper gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUpJob {
    pub job_id: JobId,
    pub reason: String,
}

/// How often a stale job is resumed before the sweeper ends it `failed`: work lost once is
/// an accident (a purged queue, a process killed between starting a job and queueing it);
/// work lost again and again is a job whose chunks cannot be processed (each attempt timing out
/// or crashing into the dead-letter queue), which would otherwise stay `in_progress` forever.
pub const MAX_RESUMPTIONS: u32 = 3;

/// Most expired jobs (or idempotency records) one write of [`BulkService::purge_expired`]
/// deletes: a job's purge deletes its error logs and chunks too.
pub const PURGE_BATCH: u64 = 100;

/// How long a job in progress may change nothing before it counts as stale and is resumed:
/// longer than a chunk can wait in the queue through its retries.
pub const STALE_JOB_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 60 * 60);

/// A file received from a client.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub filename: String,
    pub body: Bytes,
    /// JSON, or CSV (a part sent as `text/csv` or named `*.csv`).
    pub format: FileFormat,
}

/// How "get user configuration data" selects users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserQuery {
    Page(PageRequest),
    Select(UserSelector),
}

/// The application: ports plus configuration. Cheap to clone.
#[derive(Clone)]
pub struct BulkService {
    ports: Ports,
    config: ServiceConfig,
}

impl BulkService {
    pub fn new(ports: Ports, config: ServiceConfig) -> BulkService {
        BulkService { ports, config }
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The tenant's settings (defaults when none were stored).
    pub async fn settings(&self, tenant: &TenantId) -> ServiceResult<TenantSettings> {
        Ok(self
            .ports
            .tenants
            .settings(tenant)
            .await?
            .unwrap_or_else(|| TenantSettings::with_defaults(tenant.clone())))
    }

    /// Validates an uploaded file, then stores it and creates its job. A file over the
    /// tenant's `max_file_bytes` or `max_rows` is refused (413) and nothing is stored.
    pub async fn upload(&self, who: &Principal, upload: FileUpload) -> ServiceResult<Job> {
        let settings = self.settings(&who.tenant).await?;
        let (filename, file_key) = self.accept_file(&settings, &upload)?;
        let mut report = self.checked_report(&settings, &upload).await?;
        report.file_version = Some(self.ports.files.put(&file_key, upload.body.clone()).await?);
        let now = Timestamp::now();
        let job = self
            .create_job(NewJob {
                kind: JobKind::Upload,
                tenant: who.tenant.clone(),
                filename,
                file_key,
                file_bytes: upload.body.len() as u64,
                uploaded_api_user_name: who.name.clone(),
                created_at: now,
                keep_until: settings.limits.keep_until(now),
            })
            .await?;
        self.record_report(&job, &report).await
    }

    /// Replaces the file of a job that has not been proceeded, and validates the new file.
    pub async fn replace_file(
        &self,
        who: &Principal,
        id: JobId,
        upload: FileUpload,
    ) -> ServiceResult<Job> {
        let settings = self.settings(&who.tenant).await?;
        let current = self.job(who, id).await?;
        // Only an upload has a file to replace: a Zendesk or Workspace request's job keeps the
        // records it was sent (a refused Workspace batch is invalid_scheme and stays so).
        if current.kind != JobKind::Upload {
            return Err(ServiceError::Conflict(format!(
                "job {id} is a {} request, not an uploaded file; its file cannot be replaced",
                current.kind.as_str()
            )));
        }
        if !Transition::ReplaceFile.allowed_from(current.status) {
            return Err(already_proceeded(&current));
        }
        let (filename, file_key) = self.accept_file(&settings, &upload)?;
        let mut report = self.checked_report(&settings, &upload).await?;
        report.file_version = Some(self.ports.files.put(&file_key, upload.body.clone()).await?);
        let file = NewFile {
            filename,
            file_key,
            file_bytes: upload.body.len() as u64,
            at: Timestamp::now(),
        };
        match self.ports.jobs.replace_file(&who.tenant, id, file).await? {
            None => Err(job_not_found(id)),
            Some(Err(job)) => Err(already_proceeded(&job)),
            Some(Ok(job)) => self.record_report(&job, &report).await,
        }
    }

    /// The scheme report of an uploaded file, refused (413) over the tenant's `max_rows`.
    async fn checked_report(
        &self,
        settings: &TenantSettings,
        upload: &FileUpload,
    ) -> ServiceResult<SchemeReport> {
        let report = self
            .scheme_report(
                settings,
                upload.format,
                Box::new(Cursor::new(upload.body.clone())),
            )
            .await?;
        let max = settings.limits.max_rows;
        if report.total_rows > max {
            return Err(ServiceError::TooLarge {
                limit: "max_rows",
                message: format!("file holds more than {max} users; the limit max_rows is {max}"),
            });
        }
        Ok(report)
    }

    fn accept_file(
        &self,
        settings: &TenantSettings,
        upload: &FileUpload,
    ) -> ServiceResult<(String, String)> {
        let max = settings.limits.max_file_bytes;
        if upload.body.is_empty() {
            return Err(ServiceError::invalid("file", "file must not be empty"));
        }
        if upload.body.len() as u64 > max {
            return Err(ServiceError::TooLarge {
                limit: "max_file_bytes",
                message: format!(
                    "file is {} bytes; the limit max_file_bytes is {max} bytes",
                    upload.body.len()
                ),
            });
        }
        Ok((
            clean_filename(&upload.filename),
            new_file_key(&settings.tenant, upload.format),
        ))
    }

    /// Validates version `version` of a job's file and records the outcome, pinning the job to
    /// that version: from here on the job reads those bytes and no others.
    async fn validate(
        &self,
        job: Job,
        settings: &TenantSettings,
        version: &str,
    ) -> ServiceResult<Job> {
        let file = self
            .ports
            .files
            .open(&job.file_key, Some(version), 0)
            .await?;
        let format = FileFormat::of_key(&job.file_key);
        let mut report = self.scheme_report(settings, format, file).await?;
        report.file_version = Some(version.to_owned());
        self.record_report(&job, &report).await
    }

    /// Validates a file: its scheme report.
    async fn scheme_report(
        &self,
        settings: &TenantSettings,
        format: FileFormat,
        file: FileReader,
    ) -> ServiceResult<SchemeReport> {
        let options = FileValidation {
            emails_in_memory_bytes: FileValidation::DEFAULT_EMAILS_IN_MEMORY_BYTES,
            limits: settings.limits,
            rows_per_chunk: self.config.rows_per_chunk,
            max_recorded_errors: self.config.max_recorded_scheme_errors,
            max_row_bytes: self.config.processing.max_row_bytes,
        };
        validate_job_file(file, format, &ValidationContext::new(settings), options)
            .await
            .map_err(|error| StoreError::unavailable("file store", error).into())
    }

    async fn record_report(&self, job: &Job, report: &SchemeReport) -> ServiceResult<Job> {
        Ok(self
            .ports
            .jobs
            .record_scheme_report(&job.tenant, job.id, &job.file_key, report, Timestamp::now())
            .await?)
    }

    /// Starts processing a `valid_scheme` job: queues its chunks. A job is proceeded once; a
    /// repeated proceed (a client retrying after a lost answer) answers the job as it is now
    /// and queues nothing.
    pub async fn proceed(&self, who: &Principal, id: JobId) -> ServiceResult<Job> {
        crate::observe::record_job(id);
        if Transition::Proceed.allowed_from(self.job(who, id).await?.status) {
            self.check_concurrent_jobs(&who.tenant).await?;
        }
        match self.start_job(&who.tenant, id, &who.name).await? {
            ProceedOutcome::Started(job) => Ok(job),
            ProceedOutcome::NotProceedable(job) if job.process_requested_at.is_some() => Ok(job),
            ProceedOutcome::NotProceedable(job) => Err(not_proceedable(&job)),
        }
    }

    /// Moves a `valid_scheme` job to `in_progress` and queues its chunks; a job in any other
    /// state is answered as it is, unchanged.
    async fn start_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        by: &str,
    ) -> ServiceResult<ProceedOutcome> {
        let outcome = self.begin_processing(tenant, id, by).await?;
        let ProceedOutcome::Started(job) = outcome else {
            return Ok(outcome);
        };
        let items = job
            .chunk_plan
            .work_items(&job.tenant, job.id, job.total_rows);
        if let Err(error) = self.ports.queue.enqueue(&items).await {
            let reason = format!("the job could not be queued: {error}");
            self.fail_job(&job.tenant, job.id, &reason).await?;
            return Err(error.into());
        }
        Ok(ProceedOutcome::Started(job))
    }

    /// Moves a `valid_scheme` job to `in_progress`; a job in any other state is answered as it
    /// is, unchanged.
    async fn begin_processing(
        &self,
        tenant: &TenantId,
        id: JobId,
        by: &str,
    ) -> ServiceResult<ProceedOutcome> {
        let proceed = StatusChange::Proceed { by: by.to_owned() };
        let started = self
            .ports
            .jobs
            .change_status(tenant, id, &proceed, Timestamp::now())
            .await?;
        match started {
            StatusChanged::Changed(job) => Ok(ProceedOutcome::Started(job)),
            StatusChanged::Refused(job) => Ok(ProceedOutcome::NotProceedable(job)),
            StatusChanged::Missing => Err(job_not_found(id)),
        }
    }

    /// Cancels a job that has not ended: no chunk of it starts after this, chunks already
    /// running still count. Cancelling a cancelled job answers it as it is; a job that
    /// completed or failed cannot be cancelled.
    pub async fn cancel(&self, who: &Principal, id: JobId) -> ServiceResult<Job> {
        crate::observe::record_job(id);
        let cancelled = self
            .ports
            .jobs
            .change_status(&who.tenant, id, &StatusChange::Cancel, Timestamp::now())
            .await?;
        match cancelled {
            StatusChanged::Changed(job) => {
                crate::observe::count(crate::observe::metric::JOBS_CANCELLED);
                tracing::info!(job_id = job.id, by = %who.key_id, "job cancelled");
                Ok(job)
            }
            StatusChanged::Refused(job) if job.status == JobStatus::Cancelled => Ok(job),
            StatusChanged::Refused(job) => Err(ServiceError::Conflict(format!(
                "job {} has already ended (status {}); only a job that has not ended can be cancelled",
                job.id, job.status
            ))),
            StatusChanged::Missing => Err(job_not_found(id)),
        }
    }

    pub async fn job(&self, who: &Principal, id: JobId) -> ServiceResult<Job> {
        crate::observe::record_job(id);
        self.ports
            .jobs
            .get_job(&who.tenant, id)
            .await?
            .ok_or_else(|| job_not_found(id))
    }

    pub async fn jobs(&self, who: &Principal, page: PageRequest) -> ServiceResult<(Vec<Job>, u64)> {
        Ok(self.ports.jobs.list_jobs(&who.tenant, page).await?)
    }

    /// A page of a job's scheme errors, and how many entries the log lists: the errors found
    /// in its current file, up to the number recorded (the rest are only counted). A job whose
    /// file is not validated yet lists none.
    pub async fn scheme_errors(
        &self,
        who: &Principal,
        id: JobId,
        page: PageRequest,
    ) -> ServiceResult<(Vec<SchemeError>, u64)> {
        let job = self.job(who, id).await?;
        let listed = match job.status {
            JobStatus::Created => 0,
            _ => job
                .scheme_error_count
                .min(self.config.max_recorded_scheme_errors as u64),
        };
        if page.offset() >= listed {
            return Ok((Vec::new(), listed));
        }
        Ok((self.ports.jobs.scheme_errors(&job, page).await?, listed))
    }

    /// A page of a job's update error log, and how many entries it has.
    pub async fn update_errors(
        &self,
        who: &Principal,
        id: JobId,
        page: PageRequest,
    ) -> ServiceResult<(Vec<UpdateError>, u64)> {
        let job = self.job(who, id).await?;
        let listed = job.update_error_count;
        if page.offset() >= listed {
            return Ok((Vec::new(), listed));
        }
        Ok((self.ports.jobs.update_errors(&job, page).await?, listed))
    }

    /// "Get user configuration data": a page of all users, or a selection.
    pub async fn users(&self, who: &Principal, query: &UserQuery) -> ServiceResult<Vec<User>> {
        Ok(match query {
            UserQuery::Page(page) => {
                self.ports
                    .users
                    .list_users(&who.tenant, &UserFilter::default(), (*page).into())
                    .await?
                    .0
            }
            UserQuery::Select(selector) => {
                self.ports.users.select_users(&who.tenant, selector).await?
            }
        })
    }

    /// Records a new job, and names it on the log lines of the request or file from here on.
    async fn create_job(&self, job: NewJob) -> Result<Job, StoreError> {
        let job = self.ports.jobs.create_job(job).await?;
        crate::observe::record_tenant(&job.tenant);
        crate::observe::record_job(job.id);
        Ok(job)
    }

    /// Processes one queued chunk. `Err` means a dependency failed: retry the item.
    pub async fn process(&self, item: &WorkItem) -> Result<ChunkOutcome, StoreError> {
        let started = std::time::Instant::now();
        let processed =
            processing::process_work_item(&self.ports, item, &self.config.processing).await;
        crate::observe::chunk_processed(&processed, started.elapsed());
        processed
    }

    /// Resumes the jobs in progress that have changed nothing for `idle_for`: their chunks not
    /// yet committed are queued again, and a job whose chunks are all committed is completed.
    /// Such a job lost its work with a process that died between starting it and queueing its
    /// chunks, or with its queue messages. Chunks are idempotent, so queueing one that is
    /// still queued or running costs a second run and changes nothing. A job resumed
    /// [`MAX_RESUMPTIONS`] times already ends `failed` instead.
    pub async fn resume_stale_jobs(
        &self,
        idle_for: std::time::Duration,
    ) -> Result<Sweep, StoreError> {
        let now = Timestamp::now();
        let idle_seconds = i64::try_from(idle_for.as_secs()).unwrap_or(i64::MAX);
        let jobs = self
            .ports
            .jobs
            .stale_jobs(now.plus_seconds(-idle_seconds))
            .await?;
        let mut sweep = Sweep::default();
        metrics::counter!(crate::observe::metric::STALE_JOBS).increment(jobs.len() as u64);
        for job in jobs {
            let committed = self
                .ports
                .jobs
                .committed_chunks(&job.tenant, job.id)
                .await?;
            let items: Vec<WorkItem> = job
                .chunk_plan
                .work_items(&job.tenant, job.id, job.total_rows)
                .into_iter()
                .filter(|item| !committed.contains(&item.chunk))
                .collect();
            if items.is_empty() {
                let complete = StatusChange::Complete;
                let completed = self
                    .ports
                    .jobs
                    .change_status(&job.tenant, job.id, &complete, now);
                if completed.await?.changed() {
                    crate::observe::count(crate::observe::metric::JOBS_COMPLETED);
                }
            } else if job.resumptions >= MAX_RESUMPTIONS {
                let reason = format!(
                    "resumed {} times after its work was lost, and {} of its chunks still \
                     never completed (each timed out or crashed): given up",
                    job.resumptions,
                    items.len()
                );
                tracing::error!(job_id = job.id, %reason, "stale job given up");
                let fail = StatusChange::Fail {
                    reason: reason.clone(),
                };
                let failed = self
                    .ports
                    .jobs
                    .change_status(&job.tenant, job.id, &fail, now);
                if failed.await?.changed() {
                    crate::observe::count(crate::observe::metric::JOBS_FAILED);
                }
                sweep.given_up.push(GivenUpJob {
                    job_id: job.id,
                    reason,
                });
                continue;
            } else if self
                .ports
                .jobs
                .change_status(&job.tenant, job.id, &StatusChange::Resume, now)
                .await?
                .changed()
            {
                self.ports.queue.enqueue(&items).await?;
            }
            tracing::warn!(job_id = job.id, requeued = items.len(), "stale job resumed");
            sweep.resumed.push(ResumedJob {
                job_id: job.id,
                requeued_chunks: items.iter().map(|item| item.chunk).collect(),
            });
        }
        Ok(sweep)
    }

    /// Deletes what has expired at `now` from a store that does not delete it by itself (the
    /// embedded one; DynamoDB's time to live does it on AWS): jobs with everything recorded
    /// about them, and idempotency records, [`PURGE_BATCH`] at a time (each batch one short
    /// write), until none is left. How many jobs and records it deleted.
    pub async fn purge_expired(&self, now: Timestamp) -> Result<(u64, u64), StoreError> {
        let mut purged = (0, 0);
        loop {
            let jobs = self.ports.jobs.purge_expired(now, PURGE_BATCH).await?;
            purged.0 += jobs;
            if jobs < PURGE_BATCH {
                break;
            }
        }
        loop {
            let records = self
                .ports
                .idempotency
                .purge_expired(now, PURGE_BATCH)
                .await?;
            purged.1 += records;
            if records < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    /// Ends the tenant's job `failed` if it is in progress (the processor gave up on one of
    /// its chunks); a job that ended already is left as it ended.
    pub async fn fail_job(
        &self,
        tenant: &TenantId,
        job_id: JobId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let fail = StatusChange::Fail {
            reason: reason.to_owned(),
        };
        let failed = self
            .ports
            .jobs
            .change_status(tenant, job_id, &fail, Timestamp::now())
            .await?;
        match failed {
            StatusChanged::Missing => Err(StoreError::NotFound(format!("job {job_id}"))),
            StatusChanged::Changed(_) => {
                crate::observe::count(crate::observe::metric::JOBS_FAILED);
                Ok(())
            }
            StatusChanged::Refused(_) => Ok(()),
        }
    }

    /// Creates the tenant with default settings when it has none; returns its settings.
    pub async fn ensure_tenant(&self, tenant: &TenantId) -> ServiceResult<TenantSettings> {
        if let Some(settings) = self.ports.tenants.settings(tenant).await? {
            return Ok(settings);
        }
        let settings = TenantSettings::with_defaults(tenant.clone());
        self.ports.tenants.put_settings(&settings).await?;
        Ok(settings)
    }

    /// Changes a tenant's settings (creating the tenant when needed) and stores them.
    pub async fn update_settings(
        &self,
        tenant: &TenantId,
        change: SettingsChange,
    ) -> ServiceResult<TenantSettings> {
        let mut settings = self.ensure_tenant(tenant).await?;
        change.apply(&mut settings)?;
        self.ports.tenants.put_settings(&settings).await?;
        Ok(settings)
    }
}

/// A change to a tenant's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub roles: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub locations: Option<Vec<String>>,
    pub max_chat_limit: Option<u32>,
    pub max_file_bytes: Option<u64>,
    pub max_rows: Option<u64>,
    pub max_concurrent_jobs: Option<u64>,
    pub requests_per_minute: Option<u64>,
    pub max_concurrent_batch_creates: Option<u64>,
    /// Whether files dropped into the bucket become jobs (see [`TenantSettings::bucket_drops`]).
    pub bucket_drops: Option<bool>,
    pub retention_days: Option<u64>,
}

impl SettingsChange {
    fn apply(self, settings: &mut TenantSettings) -> ServiceResult<()> {
        if let Some(on) = self.bucket_drops {
            settings.bucket_drops = on;
        }
        for (field, names, target) in [
            ("roles", self.roles, &mut settings.roles),
            ("teams", self.teams, &mut settings.teams),
            ("locations", self.locations, &mut settings.locations),
        ] {
            if let Some(names) = names {
                *target = clean_names(field, names)?;
            }
        }
        if let Some(limit) = self.max_chat_limit {
            if limit == 0 {
                return Err(ServiceError::invalid(
                    "max_chat_limit",
                    "max_chat_limit must be at least 1",
                ));
            }
            settings.max_chat_limit = limit;
        }
        let limits = &mut settings.limits;
        for (field, value, target) in [
            (
                "max_file_bytes",
                self.max_file_bytes,
                &mut limits.max_file_bytes,
            ),
            ("max_rows", self.max_rows, &mut limits.max_rows),
            (
                "max_concurrent_jobs",
                self.max_concurrent_jobs,
                &mut limits.max_concurrent_jobs,
            ),
            (
                "requests_per_minute",
                self.requests_per_minute,
                &mut limits.requests_per_minute,
            ),
            (
                "max_concurrent_batch_creates",
                self.max_concurrent_batch_creates,
                &mut limits.max_concurrent_batch_creates,
            ),
        ] {
            match value {
                Some(0) => {
                    return Err(ServiceError::invalid(
                        field,
                        format!("{field} must be at least 1"),
                    ))
                }
                Some(value) => *target = value,
                None => {}
            }
        }
        if let Some(days) = self.retention_days {
            limits.retention_days = checked_retention(days)?;
        }
        Ok(())
    }
}

/// A retention within [`RETENTION_DAYS`].
fn checked_retention(days: u64) -> ServiceResult<u64> {
    if RETENTION_DAYS.contains(&days) {
        return Ok(days);
    }
    Err(ServiceError::invalid(
        "retention_days",
        format!(
            "retention_days must be {} to {} days, got {days}",
            RETENTION_DAYS.start(),
            RETENTION_DAYS.end()
        ),
    ))
}

/// Trimmed, non-empty names, unique case-insensitively.
fn clean_names(field: &str, names: Vec<String>) -> ServiceResult<Vec<String>> {
    let mut cleaned: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ServiceError::invalid(
                field,
                format!("{field} names must be 1-100 characters"),
            ));
        }
        if cleaned
            .iter()
            .any(|existing| existing.eq_ignore_ascii_case(&name))
        {
            return Err(ServiceError::invalid(
                field,
                format!("{field} lists '{name}' twice"),
            ));
        }
        cleaned.push(name);
    }
    Ok(cleaned)
}

/// A file must hold something and stay within the tenant's `max_file_bytes`.
fn check_file_size(settings: &TenantSettings, field: &str, bytes: u64) -> ServiceResult<()> {
    let max = settings.limits.max_file_bytes;
    if bytes == 0 {
        return Err(ServiceError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if bytes > max {
        return Err(ServiceError::TooLarge {
            limit: "max_file_bytes",
            message: format!("{field} is {bytes} bytes; the limit max_file_bytes is {max} bytes"),
        });
    }
    Ok(())
}

/// A fresh, unguessable file store key for a job file of the tenant, its extension the
/// file's format (how processing knows it).
fn new_file_key(tenant: &TenantId, format: FileFormat) -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    format!(
        "uploads/{tenant}/{}.{}",
        hex::encode(id),
        format.extension()
    )
}

fn job_not_found(id: JobId) -> ServiceError {
    ServiceError::NotFound(format!("job {id} not found"))
}

fn already_proceeded(job: &Job) -> ServiceError {
    ServiceError::Conflict(format!(
        "job {} has already been proceeded (status {}); upload a new file instead",
        job.id, job.status
    ))
}

fn not_proceedable(job: &Job) -> ServiceError {
    use crate::model::JobStatus::*;
    ServiceError::Conflict(match job.status {
        InvalidScheme => format!(
            "job {} cannot be proceeded: its file has scheme errors (status invalid_scheme); see errors/scheme/{}",
            job.id, job.id
        ),
        Created => format!("job {} cannot be proceeded yet: its file is still being validated (status created)", job.id),
        InProgress | Completed | Failed | Cancelled => format!(
            "job {} has already been proceeded (status {}); a job is processed once",
            job.id, job.status
        ),
        ValidScheme => format!("job {} could not be proceeded, try again", job.id),
    })
}

/// The file name as shown in the job: no directories, no control characters, at most 255 chars.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if cleaned.trim().is_empty() {
        "upload.json".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_bounded() {
        let mut settings = TenantSettings::with_defaults(TenantId::parse("acme").unwrap());
        assert_eq!(settings.limits.retention_days, 30);
        for refused in [0, 3651] {
            let change = SettingsChange {
                retention_days: Some(refused),
                ..SettingsChange::default()
            };
            let error = change.apply(&mut settings).unwrap_err();
            assert!(
                matches!(&error, ServiceError::Invalid { field, .. } if field == "retention_days"),
                "{error}"
            );
        }
        let change = SettingsChange {
            retention_days: Some(7),
            ..SettingsChange::default()
        };
        change.apply(&mut settings).unwrap();
        assert_eq!(settings.limits.retention_days, 7);
    }

    #[test]
    fn file_names_lose_their_directories() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\users\\a.json"), "a.json");
        assert_eq!(clean_filename(""), "upload.json");
    }
}

//! Files that arrive without an API call: dropped into the bucket (or the local drop folder),
//! or uploaded to a presigned URL. Both end as a job validated exactly as an upload would be.
//!
//! Keys under `incoming/`:
//! - `incoming/{tenant}/{name}` — a dropped file: a new job, validated;
//! - `incoming/{tenant}/proceed/{name}` — the same, proceeded automatically when valid;
//! - `incoming/{tenant}/jobs/{id}/{name}` and `incoming/{tenant}/jobs/{id}/proceed/{name}` — the
//!   file of job `{id}`: where dropped files are moved once their job exists, and where
//!   presigned uploads land.
//!
//! Objects that cannot become a job (unknown tenant, a tenant whose drops are switched off, not a
//! JSON array, too large, a key outside the scheme, a write to a job's file after the job
//! validated it) are moved under `rejected/` (same path after `incoming/`) and the reason is
//! logged: never lost, never retried forever, never processed.

use std::time::Duration;

use super::{check_file_size, clean_filename, BulkService, Principal, ServiceError, ServiceResult};
use crate::jobfile::{FileFormat, RecordReader, ScanError};
use crate::model::{
    Job, JobId, JobKind, JobStatus, NewFile, NewJob, ProceedOutcome, TenantId, TenantSettings,
    Timestamp, Transition,
};
use crate::ports::{FileHead, PresignedUpload};
use crate::validation::FileValidation;

/// The `uploaded_api_user_name` / `proceed_api_user_name` of jobs made from dropped files.
pub const DROP_USER_NAME: &str = "bucket-drop";

/// How many of a tenant's newest jobs a dropped file's intake searches for a job an earlier,
/// stopped intake of the same file created.
const RECENT_JOBS_SEARCHED: u64 = 50;

const INCOMING: &str = "incoming/";
const REJECTED: &str = "rejected/";
/// How long a presigned upload URL stays valid.
const PRESIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// A key under `incoming/`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingKey {
    pub tenant: TenantId,
    /// The job whose file this is (`jobs/{id}/…`); `None` for a dropped file.
    pub job: Option<JobId>,
    /// Proceed automatically once valid.
    pub proceed: bool,
    pub filename: String,
}

impl IncomingKey {
    pub fn parse(key: &str) -> Option<IncomingKey> {
        let rest = key.strip_prefix(INCOMING)?;
        let (tenant, mut rest) = rest.split_once('/')?;
        let tenant = TenantId::parse(tenant).ok()?;
        let mut job = None;
        if let Some(after) = rest.strip_prefix("jobs/") {
            let (id, after) = after.split_once('/')?;
            job = Some(id.parse::<JobId>().ok().filter(|id| *id > 0)?);
            rest = after;
        }
        let proceed = match rest.strip_prefix("proceed/") {
            Some(after) => {
                rest = after;
                true
            }
            None => false,
        };
        if rest.is_empty() || rest.ends_with('/') {
            return None;
        }
        Some(IncomingKey {
            tenant,
            job,
            proceed,
            filename: clean_filename(rest),
        })
    }

    /// Where the file of job `id` lives.
    pub fn slot(tenant: &TenantId, id: JobId, proceed: bool, filename: &str) -> String {
        let proceed = if proceed { "proceed/" } else { "" };
        format!(
            "{INCOMING}{tenant}/jobs/{id}/{proceed}{}",
            clean_filename(filename)
        )
    }
}

/// What the intake did with an object.
#[derive(Debug, Clone, PartialEq)]
pub enum IntakeOutcome {
    /// The object is a job's file; the job was validated (and proceeded, when asked and valid).
    Job(Box<Job>),
    /// The object was moved under `rejected/`.
    Rejected { moved_to: String, reason: String },
    /// Nothing to do (the object is gone, or is not its job's current file).
    Ignored { reason: String },
}

/// An object that appeared under `incoming/`, as its notification tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrival {
    pub key: String,
    /// The version the notification is about (S3's `versionId`); the key's current file when
    /// `None` (a bucket without versions, the local drop folder).
    pub version: Option<String>,
    /// Who put it there (S3's `userIdentity.principalId`).
    pub principal: Option<String>,
    /// From where (S3's `requestParameters.sourceIPAddress`).
    pub source_ip: Option<String>,
}

impl Arrival {
    /// The current file of `key`, from nobody known.
    pub fn of(key: &str) -> Arrival {
        Arrival {
            key: key.to_owned(),
            ..Arrival::default()
        }
    }
}

/// A request for a presigned upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignRequest {
    pub filename: String,
    /// The exact size of the file to upload.
    pub bytes: u64,
    pub proceed: bool,
}

/// A job waiting for its file, and where to upload it.
#[derive(Debug, Clone)]
pub struct PresignedJob {
    pub job: Job,
    pub upload: PresignedUpload,
    pub expires_at: Timestamp,
}

impl BulkService {
    /// Creates a job whose file the client uploads straight to the file store, and the URL to
    /// upload it to. The intake validates the file when it arrives.
    pub async fn presign_upload(
        &self,
        who: &Principal,
        request: PresignRequest,
    ) -> ServiceResult<PresignedJob> {
        if !self.ports.files.presigns() {
            return Err(ServiceError::Unsupported(
                "presigned uploads need the S3 file store; here, use POST upload or the drop folder".to_owned(),
            ));
        }
        let settings = self.settings(&who.tenant).await?;
        check_file_size(&settings, "bytes", request.bytes)?;
        let filename = clean_filename(&request.filename);
        let now = Timestamp::now();
        let job = self
            .create_job(NewJob {
                kind: JobKind::Upload,
                tenant: who.tenant.clone(),
                filename: filename.clone(),
                file_key: String::new(),
                file_bytes: request.bytes,
                uploaded_api_user_name: who.name.clone(),
                created_at: now,
                keep_until: settings.limits.keep_until(now),
            })
            .await?;
        let slot = IncomingKey::slot(&who.tenant, job.id, request.proceed, &filename);
        let file = NewFile {
            filename,
            file_key: slot.clone(),
            file_bytes: request.bytes,
            at: now,
        };
        let job = match self
            .ports
            .jobs
            .replace_file(&who.tenant, job.id, file)
            .await?
        {
            Some(Ok(job)) => job,
            _ => {
                return Err(ServiceError::Conflict(format!(
                    "job {} changed while it was created",
                    job.id
                )))
            }
        };
        let upload = self
            .ports
            .files
            .presign_put(&slot, request.bytes, PRESIGNED_FOR)
            .await?
            .ok_or_else(|| {
                ServiceError::Unsupported("this file store cannot presign uploads".to_owned())
            })?;
        Ok(PresignedJob {
            job,
            upload,
            expires_at: now.plus_seconds(PRESIGNED_FOR.as_secs() as i64),
        })
    }

    /// Takes in the current file of `key` (see [`BulkService::take_in`]), for callers that know
    /// nothing else of it.
    pub async fn intake(&self, key: &str) -> ServiceResult<IntakeOutcome> {
        self.take_in(&Arrival::of(key)).await
    }

    /// Takes in an object that appeared under `incoming/`, and logs who put what there and
    /// what became of it. Safe to call again for the same object (notifications are delivered
    /// at least once): a dropped file is moved into its job's slot, so a second delivery finds
    /// nothing; a job's file is validated only while the job is `created`, and proceeded only
    /// while it is `valid_scheme`.
    ///
    /// A job reads only the bytes it validated: validating pins the job to the file's version.
    /// An object written to a job's key after that is never its file: it is moved aside under
    /// `rejected/`, and the validated version is the key's current file again.
    pub async fn take_in(&self, arrival: &Arrival) -> ServiceResult<IntakeOutcome> {
        let outcome = self.arrive(arrival).await;
        log_arrival(arrival, &outcome);
        outcome
    }

    async fn arrive(&self, arrival: &Arrival) -> ServiceResult<IntakeOutcome> {
        let key = arrival.key.as_str();
        let files = &self.ports.files;
        let Some(head) = files.head(key, arrival.version.as_deref()).await? else {
            return Ok(IntakeOutcome::Ignored {
                reason: format!("{key} no longer exists (taken or rejected before)"),
            });
        };
        let version = head.version.as_str();
        let Some(incoming) = IncomingKey::parse(key) else {
            let reason = "the key must look like incoming/{tenant}/[proceed/]{file name}";
            return self.reject(key, Some(version), reason.to_owned()).await;
        };
        crate::observe::record_tenant(&incoming.tenant);
        let settings = match self.refused_arrival(&incoming, head.bytes).await? {
            Ok(settings) => settings,
            Err(reason) => return self.reject(key, Some(version), reason).await,
        };
        if let Some(reason) = self.not_a_job_file(key, version).await? {
            return self.reject(key, Some(version), reason).await;
        }
        let (job, version) = match incoming.job {
            Some(id) => match self.job_file_arrived(key, version, id, head.bytes).await? {
                Ok(job) => (job, version.to_owned()),
                Err(outcome) => return Ok(outcome),
            },
            None => self.adopt_dropped_file(key, &head, &incoming).await?,
        };
        crate::observe::record_job(job.id);
        let job = if job.status == JobStatus::Created {
            self.validate(job, &settings, &version).await?
        } else {
            job
        };
        // Validated before (or by a racing delivery), another version: never this job's file.
        if let Some(pinned) = job
            .file_version
            .as_deref()
            .filter(|pinned| *pinned != version)
        {
            let reason = format!(
                "job {} validated version {pinned} of {}; a file written to its key after that \
                 is never processed",
                job.id, job.file_key
            );
            return self.reject(&job.file_key, Some(&version), reason).await;
        }
        let job = if incoming.proceed && Transition::Proceed.allowed_from(job.status) {
            let by = job.uploaded_api_user_name.clone();
            // A job another delivery of the notification proceeded is answered as it is.
            match self.start_job(&incoming.tenant, job.id, &by).await? {
                ProceedOutcome::Started(job) | ProceedOutcome::NotProceedable(job) => job,
            }
        } else {
            job
        };
        Ok(IntakeOutcome::Job(Box::new(job)))
    }

    /// The tenant's settings, or why the file is refused: the tenant does not exist, it does
    /// not take dropped files (a job's slot, where presigned uploads land, is no drop), or the
    /// file is empty or over its `max_file_bytes`.
    async fn refused_arrival(
        &self,
        incoming: &IncomingKey,
        size: u64,
    ) -> ServiceResult<Result<TenantSettings, String>> {
        let tenant = &incoming.tenant;
        if !self.tenant_exists(tenant).await? {
            return Ok(Err(format!("tenant '{tenant}' does not exist")));
        }
        let settings = self.settings(tenant).await?;
        if incoming.job.is_none() && !settings.bucket_drops {
            return Ok(Err(format!(
                "tenant '{tenant}' does not take dropped files (bucket drops are switched off)"
            )));
        }
        Ok(match check_file_size(&settings, "the file", size) {
            Ok(()) => Ok(settings),
            Err(error) => Err(error.to_string()),
        })
    }

    /// The job whose slot `key` is, when `key` is (or, its adoption finished, becomes) its
    /// file; what became of the file otherwise.
    async fn job_file_arrived(
        &self,
        key: &str,
        version: &str,
        id: JobId,
        size: u64,
    ) -> ServiceResult<Result<Job, IntakeOutcome>> {
        let incoming = IncomingKey::parse(key).map(|incoming| incoming.tenant);
        let Some(tenant) = incoming else {
            return Ok(Err(IntakeOutcome::Ignored {
                reason: format!("{key} is no job's file"),
            }));
        };
        Ok(match self.ports.jobs.get_job(&tenant, id).await? {
            None => {
                let reason = format!("tenant '{tenant}' has no job {id}");
                Err(self.reject(key, Some(version), reason).await?)
            }
            Some(job) if job.file_key == key => Ok(job),
            Some(job) if self.moved_but_not_recorded(&job, key).await? => {
                Ok(self.point_job_at_slot(&job, key, size).await?)
            }
            Some(_) => Err(IntakeOutcome::Ignored {
                reason: format!("{key} is not the current file of job {id}"),
            }),
        })
    }

    /// Whether the intake has something left to do for `key`, a file found under `incoming/`
    /// without a notification (the local drop folder, after a restart): a dropped file not yet
    /// taken in, a job's file not yet validated (or, in `proceed/`, not yet proceeded), a slot
    /// a stopped adoption moved the file into, or a file the intake would move aside. A job's
    /// file the intake has finished with is not.
    pub async fn intake_pending(&self, key: &str) -> ServiceResult<bool> {
        let Some(IncomingKey {
            tenant,
            job: Some(id),
            proceed,
            ..
        }) = IncomingKey::parse(key)
        else {
            return Ok(true);
        };
        Ok(match self.ports.jobs.get_job(&tenant, id).await? {
            None => true,
            Some(job) if job.file_key == key => {
                job.status == JobStatus::Created
                    || (proceed && Transition::Proceed.allowed_from(job.status))
            }
            Some(job) => self.moved_but_not_recorded(&job, key).await?,
        })
    }

    /// A dropped file becomes a new job's file: the job is created, then exactly the version
    /// taken in is moved into the job's slot; the job, and the version its slot now holds.
    async fn adopt_dropped_file(
        &self,
        key: &str,
        head: &FileHead,
        incoming: &IncomingKey,
    ) -> ServiceResult<(Job, String)> {
        let tenant = &incoming.tenant;
        let job = match self.unfinished_adoption(tenant, key).await? {
            Some(job) => job,
            None => {
                let limits = self.settings(tenant).await?.limits;
                let now = Timestamp::now();
                self.create_job(NewJob {
                    kind: JobKind::Upload,
                    tenant: tenant.clone(),
                    filename: incoming.filename.clone(),
                    file_key: key.to_owned(),
                    file_bytes: head.bytes,
                    uploaded_api_user_name: DROP_USER_NAME.to_owned(),
                    created_at: now,
                    keep_until: limits.keep_until(now),
                })
                .await?
            }
        };
        let slot = IncomingKey::slot(tenant, job.id, incoming.proceed, &incoming.filename);
        let moved = self
            .ports
            .files
            .rename(key, Some(&head.version), &slot)
            .await?;
        let job = self.point_job_at_slot(&job, &slot, head.bytes).await?;
        Ok((job, moved))
    }

    /// The job an earlier adoption of the dropped file `key` created and did not get to move
    /// the file for (it stopped: a crash, a failed write): still `created`, made by a drop,
    /// its file `key`. Only the tenant's newest jobs are searched, enough for a notification
    /// delivered again within minutes; the adoption goes on with that job instead of making a
    /// second one and leaving the first without a file.
    async fn unfinished_adoption(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> ServiceResult<Option<Job>> {
        let recent = self
            .ports
            .jobs
            .jobs_before(tenant, None, RECENT_JOBS_SEARCHED)
            .await?;
        Ok(recent.into_iter().find(|job| {
            job.status == JobStatus::Created
                && job.file_key == key
                && job.uploaded_api_user_name == DROP_USER_NAME
        }))
    }

    /// Records a dropped file's move into its job's slot: the job's file is now `slot`.
    async fn point_job_at_slot(&self, job: &Job, slot: &str, size: u64) -> ServiceResult<Job> {
        let file = NewFile {
            filename: job.filename.clone(),
            file_key: slot.to_owned(),
            file_bytes: size,
            at: Timestamp::now(),
        };
        match self
            .ports
            .jobs
            .replace_file(&job.tenant, job.id, file)
            .await?
        {
            Some(Ok(job)) => Ok(job),
            _ => Err(ServiceError::Conflict(format!(
                "job {} changed while it was created",
                job.id
            ))),
        }
    }

    /// Whether `slot` is the file of a dropped file's job whose adoption stopped (a crash, a
    /// failed write) after the file was moved into the slot and before the job was pointed at
    /// it: the job is still `created` with the dropped key as its file, that key is gone, and
    /// `slot` is where the adoption moves it. The slot's own notification then finishes the
    /// adoption; without it the file would never be taken in (a redelivery of the drop's
    /// notification finds the dropped key gone).
    async fn moved_but_not_recorded(&self, job: &Job, slot: &str) -> ServiceResult<bool> {
        let Some(dropped) = IncomingKey::parse(&job.file_key) else {
            return Ok(false);
        };
        let adopted_into =
            IncomingKey::slot(&job.tenant, job.id, dropped.proceed, &dropped.filename);
        Ok(job.status == JobStatus::Created
            && dropped.job.is_none()
            && dropped.tenant == job.tenant
            && adopted_into == slot
            && self.ports.files.size(&job.file_key).await?.is_none())
    }

    async fn tenant_exists(&self, tenant: &TenantId) -> ServiceResult<bool> {
        Ok(self.ports.tenants.settings(tenant).await?.is_some()
            || !self.ports.tenants.credentials(tenant).await?.is_empty())
    }

    /// Reads just enough of version `version` of the file to tell whether it is a job file at
    /// all: a JSON array, or a CSV file (`*.csv`) with a header row. What is wrong past that is
    /// the job's scheme errors.
    async fn not_a_job_file(&self, key: &str, version: &str) -> ServiceResult<Option<String>> {
        let file = self.ports.files.open(key, Some(version), 0).await?;
        let max = FileValidation::DEFAULT_MAX_ROW_BYTES;
        let mut records = RecordReader::from_start(FileFormat::of_key(key), file, max);
        Ok(match records.next_element().await {
            Err(ScanError::Io(error)) => {
                return Err(crate::ports::StoreError::unavailable("file store", error).into())
            }
            Err(error @ (ScanError::Empty | ScanError::NotAnArray { .. })) => {
                Some(error.to_string())
            }
            Ok(_) | Err(ScanError::Syntax { .. } | ScanError::Header(_)) => None,
        })
    }

    /// Moves version `version` of `key` (its current file when `None`) aside under
    /// `rejected/`, unprocessed.
    async fn reject(
        &self,
        key: &str,
        version: Option<&str>,
        reason: String,
    ) -> ServiceResult<IntakeOutcome> {
        let moved_to = format!("{REJECTED}{}", key.strip_prefix(INCOMING).unwrap_or(key));
        match self.ports.files.rename(key, version, &moved_to).await {
            Ok(_) => Ok(IntakeOutcome::Rejected { moved_to, reason }),
            Err(crate::ports::StoreError::NotFound(_)) => Ok(IntakeOutcome::Ignored {
                reason: format!("{key} no longer exists (taken or rejected before)"),
            }),
            Err(error) => Err(error.into()),
        }
    }
}

/// Who put what under `incoming/` and what became of it: one line per arrival, taken in or
/// refused (the principal and source address as the notification gives them).
fn log_arrival(arrival: &Arrival, outcome: &ServiceResult<IntakeOutcome>) {
    let Arrival {
        key,
        version,
        principal,
        source_ip,
    } = arrival;
    let (version, principal, source_ip) = (
        version.as_deref().unwrap_or("current"),
        principal.as_deref().unwrap_or("unknown"),
        source_ip.as_deref().unwrap_or("unknown"),
    );
    match outcome {
        Ok(IntakeOutcome::Job(job)) => {
            let (job_id, status, pinned) = (job.id, job.status, job.file_version.as_deref());
            tracing::info!(key, version, principal, source_ip, job_id, %status, pinned, "took in a file");
        }
        Ok(IntakeOutcome::Rejected { moved_to, reason }) => {
            tracing::warn!(
                key,
                version,
                principal,
                source_ip,
                moved_to,
                reason,
                "refused a file: moved aside unprocessed"
            );
        }
        Ok(IntakeOutcome::Ignored { reason }) => {
            tracing::info!(
                key,
                version,
                principal,
                source_ip,
                reason,
                "nothing to take in"
            );
        }
        Err(error) => {
            tracing::warn!(key, version, principal, source_ip, %error, "a file could not be taken in");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_incoming_key_scheme() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            IncomingKey::parse("incoming/acme/users.json"),
            Some(IncomingKey {
                tenant: acme.clone(),
                job: None,
                proceed: false,
                filename: "users.json".into()
            })
        );
        assert_eq!(
            IncomingKey::parse("incoming/acme/proceed/batch/monday.json"),
            Some(IncomingKey {
                tenant: acme.clone(),
                job: None,
                proceed: true,
                filename: "monday.json".into()
            })
        );
        assert_eq!(
            IncomingKey::parse("incoming/acme/jobs/12/proceed/users.json"),
            Some(IncomingKey {
                tenant: acme.clone(),
                job: Some(12),
                proceed: true,
                filename: "users.json".into()
            })
        );
        assert_eq!(
            IncomingKey::slot(&acme, 12, true, "a/users.json"),
            "incoming/acme/jobs/12/proceed/users.json"
        );
        for bad in [
            "uploads/acme/x.json",
            "incoming/acme",
            "incoming/acme/",
            "incoming/Bad Tenant/x",
            "incoming/acme/jobs/x/y",
            "incoming/acme/proceed/",
        ] {
            assert_eq!(IncomingKey::parse(bad), None, "{bad}");
        }
    }
}

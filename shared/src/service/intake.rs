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
//! Objects that cannot become a job (unknown tenant, not a JSON array, too large, a key outside
//! the scheme) are moved under `rejected/` (same path after `incoming/`) and the reason is logged:
//! never lost, never retried forever.

use std::time::Duration;

use super::{check_file_size, clean_filename, BulkService, Principal, ServiceError, ServiceResult};
use crate::jobfile::{ArrayReader, ScanError};
use crate::model::{
    Job, JobId, JobKind, JobStatus, NewFile, NewJob, ProceedOutcome, TenantId, Timestamp,
    Transition,
};
use crate::ports::PresignedUpload;

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

    /// Takes in an object that appeared under `incoming/`. Safe to call again for the same
    /// object (notifications are delivered at least once): a dropped file is moved into its
    /// job's slot, so a second delivery finds nothing; a job's file is validated only while the
    /// job is `created`, and proceeded only while it is `valid_scheme`.
    pub async fn intake(&self, key: &str) -> ServiceResult<IntakeOutcome> {
        let Some(incoming) = IncomingKey::parse(key) else {
            return self
                .reject(
                    key,
                    "the key must look like incoming/{tenant}/[proceed/]{file name}".to_owned(),
                )
                .await;
        };
        let Some(size) = self.ports.files.size(key).await? else {
            return Ok(IntakeOutcome::Ignored {
                reason: format!("{key} no longer exists (taken or rejected before)"),
            });
        };
        let tenant = &incoming.tenant;
        if !self.tenant_exists(tenant).await? {
            return self
                .reject(key, format!("tenant '{tenant}' does not exist"))
                .await;
        }
        let settings = self.settings(tenant).await?;
        if let Err(error) = check_file_size(&settings, "the file", size) {
            return self.reject(key, error.to_string()).await;
        }
        if let Some(reason) = self.not_a_json_array(key).await? {
            return self.reject(key, reason).await;
        }

        let job = match incoming.job {
            Some(id) => match self.ports.jobs.get_job(tenant, id).await? {
                None => {
                    return self
                        .reject(key, format!("tenant '{tenant}' has no job {id}"))
                        .await
                }
                Some(job) if job.file_key == key => job,
                Some(job) if self.moved_but_not_recorded(&job, key).await? => {
                    self.point_job_at_slot(&job, key, size).await?
                }
                Some(_) => {
                    return Ok(IntakeOutcome::Ignored {
                        reason: format!("{key} is not the current file of job {id}"),
                    })
                }
            },
            None => self.adopt_dropped_file(key, &incoming, size).await?,
        };
        let job = if job.status == JobStatus::Created {
            let file = self.ports.files.open(&job.file_key, 0).await?;
            self.validate(job, &settings, file).await?
        } else {
            job
        };
        let job = if incoming.proceed && Transition::Proceed.allowed_from(job.status) {
            let by = job.uploaded_api_user_name.clone();
            // A job another delivery of the notification proceeded is answered as it is.
            match self.start_job(tenant, job.id, &by).await? {
                ProceedOutcome::Started(job) | ProceedOutcome::NotProceedable(job) => job,
            }
        } else {
            job
        };
        tracing::info!(key, job_id = job.id, status = %job.status, "took in a file");
        Ok(IntakeOutcome::Job(Box::new(job)))
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

    /// A dropped file becomes a new job's file: the job is created, then the file is moved into
    /// the job's slot.
    async fn adopt_dropped_file(
        &self,
        key: &str,
        incoming: &IncomingKey,
        size: u64,
    ) -> ServiceResult<Job> {
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
                    file_bytes: size,
                    uploaded_api_user_name: DROP_USER_NAME.to_owned(),
                    created_at: now,
                    keep_until: limits.keep_until(now),
                })
                .await?
            }
        };
        let slot = IncomingKey::slot(tenant, job.id, incoming.proceed, &incoming.filename);
        self.ports.files.rename(key, &slot).await?;
        self.point_job_at_slot(&job, &slot, size).await
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

    /// Reads just enough of the file to tell whether it is a JSON array at all.
    async fn not_a_json_array(&self, key: &str) -> ServiceResult<Option<String>> {
        let file = self.ports.files.open(key, 0).await?;
        let mut array = ArrayReader::from_start(file, 0);
        Ok(match array.next_element().await {
            Err(ScanError::Io(error)) => {
                return Err(crate::ports::StoreError::unavailable("file store", error).into())
            }
            Err(error @ (ScanError::Empty | ScanError::NotAnArray { .. })) => {
                Some(error.to_string())
            }
            Ok(_) | Err(ScanError::Syntax { .. }) => None,
        })
    }

    async fn reject(&self, key: &str, reason: String) -> ServiceResult<IntakeOutcome> {
        let moved_to = format!("{REJECTED}{}", key.strip_prefix(INCOMING).unwrap_or(key));
        match self.ports.files.rename(key, &moved_to).await {
            Ok(()) => {
                tracing::warn!(key, %moved_to, %reason, "rejected a file");
                Ok(IntakeOutcome::Rejected { moved_to, reason })
            }
            Err(crate::ports::StoreError::NotFound(_)) => Ok(IntakeOutcome::Ignored {
                reason: format!("{key} no longer exists (taken or rejected before)"),
            }),
            Err(error) => Err(error.into()),
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

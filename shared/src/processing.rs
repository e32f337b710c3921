//! The processor: applies one chunk of a job's file to the user store.
//!
//! A chunk is read from its byte offset, validated row by row with the same rules as the upload,
//! and applied in batches (one batched read and one batched write per batch). Re-processing a
//! chunk (queue re-delivery, a worker that died mid-chunk) converges to the same users, and the
//! job store counts a chunk exactly once.

use std::collections::{BTreeSet, HashMap};

use crate::jobfile::{ArrayReader, Element, ScanError};
use crate::model::{
    ChunkResult, ErrorType, Job, JobStatus, TenantId, TenantSettings, Timestamp, UpdateError, User,
    UserId, UserWrite, WorkItem,
};
use crate::ports::{Ports, StoreError};
use crate::validation::{validate_row, RowError, UserRow, UserStatus, ValidationContext};

/// How chunks are processed.
#[derive(Debug, Clone, Copy)]
pub struct ProcessingOptions {
    /// Rows read, looked up and written together.
    pub batch_rows: usize,
    /// A user record longer than this is a failed row.
    pub max_row_bytes: usize,
}

impl Default for ProcessingOptions {
    fn default() -> ProcessingOptions {
        ProcessingOptions {
            batch_rows: 100,
            max_row_bytes: crate::validation::FileValidation::DEFAULT_MAX_ROW_BYTES,
        }
    }
}

/// What processing a work item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    Committed {
        affected_rows: u64,
        failed_rows: u64,
        completed_job: bool,
    },
    /// The chunk had been committed before; nothing was done.
    AlreadyCommitted,
    /// The job is gone or no longer in progress (cancelled, failed); the item is dropped.
    Skipped { reason: String },
    /// The job's file cannot be processed; the job was ended `failed`.
    JobFailed { reason: String },
}

/// Processes one work item. `Err` means a dependency failed and the item should be retried.
pub async fn process_work_item(
    ports: &Ports,
    item: &WorkItem,
    options: &ProcessingOptions,
) -> Result<ChunkOutcome, StoreError> {
    let Some(job) = ports.jobs.get_job(&item.tenant, item.job_id).await? else {
        return Ok(ChunkOutcome::Skipped {
            reason: format!("job {} does not exist", item.job_id),
        });
    };
    if job.status != JobStatus::InProgress {
        return Ok(ChunkOutcome::Skipped {
            reason: format!("job {} is {}", job.id, job.status),
        });
    }
    if ports.jobs.chunk_committed(job.id, item.chunk).await? {
        return Ok(ChunkOutcome::AlreadyCommitted);
    }
    let settings = ports
        .tenants
        .settings(&item.tenant)
        .await?
        .unwrap_or_else(|| TenantSettings::with_defaults(item.tenant.clone()));
    let context = ValidationContext::new(&settings);

    let reader = match ports.files.open(&job.file_key, item.byte_offset).await {
        Ok(reader) => reader,
        Err(StoreError::NotFound(_)) => {
            return fail(ports, &job, "the job's file no longer exists".to_owned()).await;
        }
        Err(error) => return Err(error),
    };
    let mut array = ArrayReader::at_element(
        reader,
        item.byte_offset,
        item.first_row,
        options.max_row_bytes,
    );
    let mut chunk = ChunkTally::default();
    let mut batch: Vec<Element> = Vec::with_capacity(options.batch_rows);
    let mut remaining = item.rows;
    while remaining > 0 {
        match array.next_element().await {
            Ok(Some(element)) => {
                remaining -= 1;
                batch.push(element);
                if batch.len() >= options.batch_rows.max(1) {
                    apply_batch(ports, &item.tenant, &context, &mut batch, &mut chunk).await?;
                }
            }
            Ok(None) => {
                let reason = format!(
                    "the job's file ended {remaining} rows before the end of chunk {}",
                    item.chunk
                );
                return fail(ports, &job, reason).await;
            }
            Err(ScanError::Io(error)) => return Err(StoreError::unavailable("file store", error)),
            Err(error) => {
                return fail(
                    ports,
                    &job,
                    format!("the job's file is unreadable: {error}"),
                )
                .await
            }
        }
    }
    apply_batch(ports, &item.tenant, &context, &mut batch, &mut chunk).await?;

    let (affected_rows, failed_rows) = (chunk.affected_rows, chunk.failed_rows);
    let commit = ports
        .jobs
        .commit_chunk(ChunkResult {
            job_id: job.id,
            chunk: item.chunk,
            affected_rows,
            failed_rows,
            errors: chunk.errors,
            at: Timestamp::now(),
        })
        .await?;
    Ok(if commit.newly_committed {
        ChunkOutcome::Committed {
            affected_rows,
            failed_rows,
            completed_job: commit.completed_job,
        }
    } else {
        ChunkOutcome::AlreadyCommitted
    })
}

async fn fail(ports: &Ports, job: &Job, reason: String) -> Result<ChunkOutcome, StoreError> {
    tracing::warn!(job_id = job.id, %reason, "job failed");
    ports
        .jobs
        .fail_job(job.id, &reason, Timestamp::now())
        .await?;
    Ok(ChunkOutcome::JobFailed { reason })
}

#[derive(Debug, Default)]
struct ChunkTally {
    affected_rows: u64,
    failed_rows: u64,
    errors: Vec<UpdateError>,
}

impl ChunkTally {
    fn remark(&mut self, row: u64, remark: Remark) {
        self.errors.push(UpdateError {
            message: remark.message,
            column: remark.field.and_then(crate::validation::column_of),
            row,
            field: remark.field.map(str::to_owned),
            error_type: remark.error_type,
        });
    }

    fn failed_validation(&mut self, row: u64, errors: Vec<RowError>) {
        self.failed_rows += 1;
        for error in errors {
            self.errors.push(UpdateError {
                message: error.message,
                column: error.column,
                row,
                field: error.field,
                error_type: ErrorType::Error,
            });
        }
    }
}

/// A note about one row: a warning (applied) or an error (not applied).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remark {
    field: Option<&'static str>,
    message: String,
    error_type: ErrorType,
}

impl Remark {
    fn error(field: &'static str, message: String) -> Remark {
        Remark {
            field: Some(field),
            message,
            error_type: ErrorType::Error,
        }
    }
}

/// The users a batch reads and changes, keyed by email key.
struct BatchState {
    users: HashMap<String, User>,
    changed: BTreeSet<String>,
    vacated: BTreeSet<String>,
    next_id: UserId,
    ids_left: u64,
}

async fn apply_batch(
    ports: &Ports,
    tenant: &TenantId,
    context: &ValidationContext,
    batch: &mut Vec<Element>,
    chunk: &mut ChunkTally,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows: Vec<(u64, Result<UserRow, Vec<RowError>>)> = batch
        .drain(..)
        .map(|element| {
            let row = element.index + 1;
            let checked = match &element.bytes {
                Some(bytes) => validate_row(bytes, context),
                None => Err(vec![RowError {
                    field: None,
                    column: None,
                    message: format!("the user is {} bytes long, over the limit", element.len),
                }]),
            };
            (row, checked)
        })
        .collect();

    let mut keys: Vec<String> = Vec::with_capacity(rows.len() * 2);
    for user in rows.iter().filter_map(|(_, checked)| checked.as_ref().ok()) {
        keys.push(user.email_key.clone());
        keys.extend(user.new_email_key());
    }
    keys.sort();
    keys.dedup();
    let found = ports.users.users_by_email_keys(tenant, &keys).await?;
    let users: HashMap<String, User> = found.into_iter().map(|u| (u.email_key(), u)).collect();

    let creations = rows
        .iter()
        .filter_map(|(_, checked)| checked.as_ref().ok())
        .filter(|user| {
            !users.contains_key(&user.email_key)
                && user
                    .new_email_key()
                    .is_none_or(|key| !users.contains_key(&key))
        })
        .count() as u64;
    let next_id = if creations > 0 {
        ports.users.allocate_user_ids(creations).await?
    } else {
        0
    };
    let mut state = BatchState {
        users,
        changed: BTreeSet::new(),
        vacated: BTreeSet::new(),
        next_id,
        ids_left: creations,
    };

    let now = Timestamp::now();
    for (row, checked) in rows {
        match checked {
            Err(errors) => chunk.failed_validation(row, errors),
            Ok(user) => match state.apply(user, now) {
                Ok(warnings) => {
                    chunk.affected_rows += 1;
                    for warning in warnings {
                        chunk.remark(row, warning);
                    }
                }
                Err(error) => {
                    chunk.failed_rows += 1;
                    chunk.remark(row, error);
                }
            },
        }
    }

    let mut writes: Vec<UserWrite> = Vec::with_capacity(state.changed.len() + state.vacated.len());
    for key in &state.vacated {
        if !state.users.contains_key(key) {
            writes.push(UserWrite::DeleteEmail(key.clone()));
        }
    }
    for key in &state.changed {
        if let Some(user) = state.users.get(key) {
            writes.push(UserWrite::Put(user.clone()));
        }
    }
    if !writes.is_empty() {
        ports.users.write_users(tenant, writes).await?;
    }
    Ok(())
}

impl BatchState {
    /// Applies one valid row to the batch's users: create, update, rename, (de)activate.
    fn apply(&mut self, row: UserRow, now: Timestamp) -> Result<Vec<Remark>, Remark> {
        let mut warnings = Vec::new();
        let rename_to = row.new_email_key().filter(|key| *key != row.email_key);
        let (current_key, mut user) = match self.users.get(&row.email_key) {
            Some(user) => (Some(row.email_key.clone()), user.clone()),
            None => match &rename_to {
                Some(target) => match self.users.get(target) {
                    // The rename was applied before (a re-delivered chunk) or by an earlier job.
                    Some(user) => {
                        warnings.push(Remark {
                            field: Some("new_email"),
                            message: format!(
                                "no user has email '{}'; '{}' already exists and was updated",
                                row.email,
                                row.new_email.as_deref().unwrap_or_default()
                            ),
                            error_type: ErrorType::Warning,
                        });
                        (Some(target.clone()), user.clone())
                    }
                    None => {
                        return Err(Remark::error(
                            "email",
                            format!("no user with email '{}' exists to rename", row.email),
                        ))
                    }
                },
                None => (None, self.new_user(&row, now)?),
            },
        };
        if let (Some(target), Some(new_email)) = (&rename_to, &row.new_email) {
            if current_key.as_ref() != Some(target) {
                if self.users.contains_key(target) {
                    return Err(Remark::error(
                        "new_email",
                        format!("new_email '{new_email}' is already used by another user"),
                    ));
                }
                user.email = new_email.clone();
            }
        }
        apply_fields(&mut user, &row, now);

        let key = user.email_key();
        if let Some(old) = current_key.filter(|old| *old != key) {
            self.users.remove(&old);
            self.changed.remove(&old);
            self.vacated.insert(old);
        }
        self.vacated.remove(&key);
        self.changed.insert(key.clone());
        self.users.insert(key, user);
        Ok(warnings)
    }

    fn new_user(&mut self, row: &UserRow, now: Timestamp) -> Result<User, Remark> {
        if self.ids_left == 0 {
            return Err(Remark::error(
                "email",
                "no user id could be reserved for a new user".to_owned(),
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids_left -= 1;
        Ok(User {
            id,
            email: row.email.clone(),
            agent_number: None,
            first_name: row.first_name.clone(),
            last_name: row.last_name.clone(),
            location: None,
            max_chat_limit: None,
            max_chat_limit_enabled: false,
            roles: Vec::new(),
            teams: Vec::new(),
            deactivated_at: None,
            created_at: now,
            updated_at: now,
        })
    }
}

fn apply_fields(user: &mut User, row: &UserRow, now: Timestamp) {
    user.first_name.clone_from(&row.first_name);
    user.last_name.clone_from(&row.last_name);
    user.agent_number = row.agent_number.apply(user.agent_number.take());
    user.location = row.location.apply(user.location.take());
    user.max_chat_limit = row.max_chat_limit.apply(user.max_chat_limit);
    if let Some(enabled) = row.max_chat_limit_enabled {
        user.max_chat_limit_enabled = enabled;
    }
    match row.status {
        Some(UserStatus::Active) => user.deactivated_at = None,
        Some(UserStatus::Inactive) => user.deactivated_at = user.deactivated_at.or(Some(now)),
        None => {}
    }
    apply_memberships(&mut user.roles, &row.roles);
    apply_memberships(&mut user.teams, &row.teams);
    user.updated_at = now;
}

fn apply_memberships(held: &mut Vec<String>, changes: &[(String, bool)]) {
    for (name, granted) in changes {
        let position = held.iter().position(|h| h == name);
        match (granted, position) {
            (true, None) => held.push(name.clone()),
            (false, Some(at)) => {
                held.remove(at);
            }
            _ => {}
        }
    }
    held.sort();
}

//! The processor: applies one chunk of a job's file to the user store.
//!
//! A chunk is read from its byte offset, each record judged by the same rules as at its intake
//! (whatever the dialect) and turned into a command, and applied in batches: one batched read of
//! the users the batch names, one batched, conditional save. A save that loses a race with
//! another writer (the user changed, or a key was taken meanwhile) is read and applied again, or
//! reported for its rows. Every changed user carries a stamp of the job row that changed it, so
//! re-processing a chunk (queue re-delivery, a worker that died mid-chunk) neither writes twice
//! nor reports differently, and the job store counts a chunk exactly once.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use crate::csvfile::{CsvLayout, CsvReader};
use crate::jobfile::{ArrayReader, Element, FileFormat, RecordReader, ScanError};
use crate::model::{
    ChangeStamp, ChunkResult, ErrorType, Job, JobId, JobKind, JobStatus, RowAction, RowResult,
    SaveOutcome, StatusChange, TenantId, TenantSettings, Timestamp, Transition, UpdateError, User,
    UserAction, UserChange, UserId, UserKey, WorkItem,
};
use crate::ports::{FileReader, Ports, StoreError};
use crate::validation::{
    record_command, Intent, Patch, RowError, Target, UserCommand, ValidationContext,
};

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
            // A batch of created users with one key each (2 items a user) fits two DynamoDB
            // transactions of 100 items with the counts of live users they change (one item
            // per bucket of ids); 100 rows would take a third.
            batch_rows: 98,
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
    /// The chunk had been committed before; nothing was counted. A re-delivery still
    /// completes the job when the commit that counted the last chunk did not get to it.
    AlreadyCommitted { completed_job: bool },
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
    let job = match job_to_process(ports, item).await? {
        ControlFlow::Continue(job) => job,
        ControlFlow::Break(outcome) => return Ok(outcome),
    };
    let settings = ports
        .tenants
        .settings(&item.tenant)
        .await?
        .unwrap_or_else(|| TenantSettings::with_defaults(item.tenant.clone()));
    let batches = RowBatches {
        ports,
        job: &job,
        context: ValidationContext::new(&settings),
    };
    match batches.apply_chunk(item, options).await {
        Ok(chunk) => chunk.commit(ports, &job, item.chunk).await,
        Err(ChunkError::Unprocessable(reason)) => fail(ports, &job, reason).await,
        Err(ChunkError::Store(error)) => Err(error),
    }
}

/// The job of a work item when its chunk is still to be processed; otherwise what the item
/// comes to (the job gone or no longer in progress, the chunk committed before).
async fn job_to_process(
    ports: &Ports,
    item: &WorkItem,
) -> Result<ControlFlow<ChunkOutcome, Job>, StoreError> {
    let Some(job) = ports.jobs.get_job(&item.tenant, item.job_id).await? else {
        return Ok(ControlFlow::Break(ChunkOutcome::Skipped {
            reason: format!("job {} does not exist", item.job_id),
        }));
    };
    if job.status != JobStatus::InProgress {
        return Ok(ControlFlow::Break(ChunkOutcome::Skipped {
            reason: format!("job {} is {}", job.id, job.status),
        }));
    }
    if ports
        .jobs
        .chunk_committed(&job.tenant, job.id, item.chunk)
        .await?
    {
        // Every chunk counted but the job still in progress: the completion was lost after
        // the last commit (a process died between the two). This delivery completes it.
        let completed_job = Transition::Complete.allowed_for(&job)
            && ports
                .jobs
                .change_status(
                    &job.tenant,
                    job.id,
                    &StatusChange::Complete,
                    Timestamp::now(),
                )
                .await?
                .changed();
        return Ok(ControlFlow::Break(ChunkOutcome::AlreadyCommitted {
            completed_job,
        }));
    }
    Ok(ControlFlow::Continue(job))
}

async fn fail(ports: &Ports, job: &Job, reason: String) -> Result<ChunkOutcome, StoreError> {
    tracing::warn!(job_id = job.id, %reason, "job failed");
    let change = StatusChange::Fail {
        reason: reason.clone(),
    };
    ports
        .jobs
        .change_status(&job.tenant, job.id, &change, Timestamp::now())
        .await?;
    Ok(ChunkOutcome::JobFailed { reason })
}

/// Why a chunk was not applied.
#[derive(Debug)]
enum ChunkError {
    /// A dependency failed: the item is tried again.
    Store(StoreError),
    /// The job's file cannot be processed (gone, cut short, unreadable), for this reason:
    /// the job is ended `failed`.
    Unprocessable(String),
}

impl From<StoreError> for ChunkError {
    fn from(error: StoreError) -> ChunkError {
        ChunkError::Store(error)
    }
}

/// Rounds of one batch: rows whose user changed, or whose key was taken, concurrently are read
/// and applied again.
const MAX_ROUNDS: usize = 3;

/// Why a row was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    /// Short error code of the row's result (`InvalidValue`, `DuplicateValue`, …).
    code: &'static str,
    field: Option<String>,
    message: String,
}

impl Failure {
    fn new(code: &'static str, field: Option<&str>, message: String) -> Failure {
        Failure {
            code,
            field: field.map(str::to_owned),
            message,
        }
    }
}

/// A row that was applied (or had been, by an earlier run of its chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    action: UserAction,
    user: User,
    warnings: Vec<(String, String)>,
}

/// What became of one row.
type RowFate = Result<Applied, Failure>;

#[derive(Debug, Default)]
struct ChunkTally {
    affected_rows: u64,
    failed_rows: u64,
    errors: Vec<UpdateError>,
    results: Vec<RowResult>,
}

impl ChunkTally {
    /// Commits the chunk's counts, errors and results to its job.
    async fn commit(
        self,
        ports: &Ports,
        job: &Job,
        chunk: u32,
    ) -> Result<ChunkOutcome, StoreError> {
        let (affected_rows, failed_rows) = (self.affected_rows, self.failed_rows);
        // The log is in row order: rows are recorded as their batch settles (a batch that lost a
        // race settles later), so a row's errors are sorted into place, keeping their own order.
        let mut errors = self.errors;
        errors.sort_by_key(|error| error.row);
        let commit = ports
            .jobs
            .commit_chunk(ChunkResult {
                tenant: job.tenant.clone(),
                job_id: job.id,
                keep_until: job.keep_until,
                chunk,
                affected_rows,
                failed_rows,
                errors,
                results: self.results,
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
            ChunkOutcome::AlreadyCommitted {
                completed_job: commit.completed_job,
            }
        })
    }

    fn record(&mut self, kind: JobKind, index: u64, command: Option<&UserCommand>, fate: RowFate) {
        let row = index + 1;
        let column = |field: &Option<String>| match kind {
            JobKind::Upload => field.as_deref().and_then(crate::validation::column_of),
            _ => None,
        };
        match fate {
            Ok(applied) => {
                self.affected_rows += 1;
                for (field, message) in applied.warnings {
                    let field = Some(field);
                    self.errors.push(UpdateError {
                        message,
                        column: column(&field),
                        row,
                        field,
                        error_type: ErrorType::Warning,
                    });
                }
                if kind.records_results() {
                    self.results.push(RowResult {
                        index,
                        action: RowAction::from(applied.action),
                        user_id: Some(applied.user.id),
                        email: applied.user.email.clone(),
                        external_id: applied.user.external_id.clone(),
                        error: None,
                        details: None,
                        field: None,
                    });
                }
            }
            Err(failure) => {
                self.failed_rows += 1;
                if kind.records_results() {
                    let email = command.and_then(|command| match &command.patch.email {
                        Patch::Set(email) => Some(email.clone()),
                        _ => None,
                    });
                    self.results.push(RowResult {
                        index,
                        action: RowAction::Failed,
                        user_id: None,
                        email,
                        external_id: None,
                        error: Some(failure.code.to_owned()),
                        details: Some(failure.message.clone()),
                        field: failure.field.clone(),
                    });
                }
                self.errors.push(UpdateError {
                    column: column(&failure.field),
                    message: failure.message,
                    row,
                    field: failure.field,
                    error_type: ErrorType::Error,
                });
            }
        }
    }

    fn invalid(&mut self, kind: JobKind, index: u64, errors: Vec<RowError>) {
        let row = index + 1;
        self.failed_rows += 1;
        if kind.records_results() {
            let details = errors
                .iter()
                .map(|error| error.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            self.results.push(RowResult {
                index,
                action: RowAction::Failed,
                user_id: None,
                email: None,
                external_id: None,
                error: Some("InvalidValue".to_owned()),
                details: Some(details),
                field: errors.first().and_then(|error| error.field.clone()),
            });
        }
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

/// Ids for the users a chunk creates, reserved from the store's counter in blocks.
#[derive(Debug, Default)]
struct IdPool {
    next: UserId,
    left: u64,
}

impl IdPool {
    /// Makes sure `needed` ids are at hand, reserving at least `block` when more are needed
    /// (the ids left over from the last block are given up: ids need not be dense).
    async fn reserve(&mut self, ports: &Ports, needed: u64, block: u64) -> Result<(), StoreError> {
        if needed > self.left {
            let count = needed.max(block);
            self.next = ports.users.allocate_user_ids(count).await?;
            self.left = count;
        }
        Ok(())
    }

    fn take(&mut self) -> Option<UserId> {
        if self.left == 0 {
            return None;
        }
        let id = self.next;
        self.next += 1;
        self.left -= 1;
        Some(id)
    }
}

/// A job file that cannot be read: the store failed (retried), or its content is not what
/// validation read (the job fails).
fn unreadable(error: ScanError) -> ChunkError {
    match error {
        ScanError::Io(error) => StoreError::unavailable("file store", error).into(),
        error => ChunkError::Unprocessable(format!("the job's file is unreadable: {error}")),
    }
}

/// What every batch of rows of a chunk is applied with (a batch of rows, not a request batch:
/// those are the jobs of the Zendesk and Workspace batch routes).
struct RowBatches<'a> {
    ports: &'a Ports,
    job: &'a Job,
    context: ValidationContext,
}

/// The rows of one batch as judged (by index in the file), and what became of each valid one
/// so far, by position in the batch.
struct BatchRows {
    rows: Vec<(u64, Result<UserCommand, Vec<RowError>>)>,
    fates: Vec<Option<RowFate>>,
}

impl RowBatches<'_> {
    /// Reads the rows of a work item's chunk and applies them batch by batch.
    async fn apply_chunk(
        &self,
        item: &WorkItem,
        options: &ProcessingOptions,
    ) -> Result<ChunkTally, ChunkError> {
        let mut array = self.open_chunk(item, options).await?;
        let layout = array.csv_layout().cloned();
        let mut chunk = ChunkTally::default();
        let mut batch: Vec<Element> = Vec::with_capacity(options.batch_rows);
        let mut ids = IdPool::default();
        let mut remaining = item.rows;
        while remaining > 0 {
            let element = match array.next_element().await {
                Ok(Some(element)) => element,
                Ok(None) => {
                    return Err(ChunkError::Unprocessable(format!(
                        "the job's file ended {remaining} rows before the end of chunk {}",
                        item.chunk
                    )));
                }
                Err(error) => return Err(unreadable(error)),
            };
            remaining -= 1;
            batch.push(element);
            if batch.len() >= options.batch_rows.max(1) {
                // Ids are reserved for the rest of the chunk at once: one counter update
                // per chunk of new users, not one per batch.
                let rows_left = remaining + batch.len() as u64;
                self.apply(&mut batch, layout.as_ref(), &mut ids, rows_left, &mut chunk)
                    .await?;
            }
        }
        let rows_left = batch.len() as u64;
        self.apply(&mut batch, layout.as_ref(), &mut ids, rows_left, &mut chunk)
            .await?;
        Ok(chunk)
    }

    /// The job's file, read from the work item's first row (a CSV file's header first, for
    /// its columns).
    async fn open_chunk(
        &self,
        item: &WorkItem,
        options: &ProcessingOptions,
    ) -> Result<RecordReader<FileReader>, ChunkError> {
        let key = &self.job.file_key;
        let max = options.max_row_bytes;
        match FileFormat::of_key(key) {
            FileFormat::Json => Ok(RecordReader::Json(ArrayReader::at_element(
                self.open_file(item.byte_offset).await?,
                item.byte_offset,
                item.first_row,
                max,
            ))),
            FileFormat::Csv => {
                let mut header = CsvReader::from_start(self.open_file(0).await?, max);
                let layout = header.layout().await.map_err(unreadable)?.clone();
                let rows = self.open_file(item.byte_offset).await?;
                let (offset, first) = (item.byte_offset, item.first_row);
                Ok(RecordReader::Csv(Box::new(CsvReader::at_row(
                    rows, layout, offset, first, max,
                ))))
            }
        }
    }

    /// The job's file from byte `offset`: exactly the bytes the job validated, the version it
    /// recorded.
    async fn open_file(&self, offset: u64) -> Result<FileReader, ChunkError> {
        let version = self.job.file_version.as_deref();
        match self
            .ports
            .files
            .open(&self.job.file_key, version, offset)
            .await
        {
            Ok(reader) => Ok(reader),
            Err(StoreError::NotFound(_)) => Err(ChunkError::Unprocessable(
                "the job's file no longer exists".to_owned(),
            )),
            Err(error) => Err(error.into()),
        }
    }

    /// Applies one batch of rows; `rows_left` (this batch's rows and the chunk's rows after it)
    /// sizes the block of ids reserved when the batch creates users.
    async fn apply(
        &self,
        batch: &mut Vec<Element>,
        layout: Option<&CsvLayout>,
        ids: &mut IdPool,
        rows_left: u64,
        chunk: &mut ChunkTally,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut rows = self.judge(batch, layout);
        let mut pending: Vec<usize> = (0..rows.rows.len())
            .filter(|&at| rows.rows[at].1.is_ok())
            .collect();
        for round in 1..=MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let may_retry = round < MAX_ROUNDS;
            pending = self
                .round(&mut rows, &pending, ids, rows_left, may_retry)
                .await?;
        }
        rows.record(self.job.kind, chunk);
        Ok(())
    }

    /// Judges the rows of a batch (taking them out of it): each a command, or its errors, a CSV
    /// file's located by its `layout`.
    fn judge(&self, batch: &mut Vec<Element>, layout: Option<&CsvLayout>) -> BatchRows {
        let rows: Vec<(u64, Result<UserCommand, Vec<RowError>>)> = batch
            .drain(..)
            .map(|element| {
                let checked = match &element.bytes {
                    Some(bytes) => {
                        record_command(self.job.kind, bytes, &self.context).map_err(|errors| {
                            let locate = |error| CsvLayout::locate_in(layout, error);
                            errors.into_iter().map(locate).collect()
                        })
                    }
                    None => Err(vec![RowError {
                        field: None,
                        column: None,
                        message: element.problem.clone().unwrap_or_else(|| {
                            format!("the user is {} bytes long, over the limit", element.len)
                        }),
                    }]),
                };
                (element.index, checked)
            })
            .collect();
        BatchRows {
            fates: vec![None; rows.len()],
            rows,
        }
    }

    /// One round of a batch: reads the users the `pending` rows name, applies the rows to them
    /// and saves what they changed. Returns the rows to apply again: those whose save lost a
    /// race with another writer, when `may_retry`; otherwise such a row fails.
    async fn round(
        &self,
        rows: &mut BatchRows,
        pending: &[usize],
        ids: &mut IdPool,
        rows_left: u64,
        may_retry: bool,
    ) -> Result<Vec<usize>, StoreError> {
        let (ports, job) = (self.ports, self.job);
        let commands: Vec<(usize, u64, &UserCommand)> = pending
            .iter()
            .filter_map(|&at| {
                let (index, checked) = &rows.rows[at];
                checked.as_ref().ok().map(|command| (at, *index, command))
            })
            .collect();
        let mut state = BatchState::load(ports, &job.tenant, &commands).await?;
        ids.reserve(ports, state.creations_at_most(&commands), rows_left)
            .await?;
        let now = Timestamp::now();
        for &(at, index, command) in &commands {
            rows.fates[at] = Some(state.apply(at, job.id, index + 1, command, now, ids));
        }
        let (changes, rows_of_change) = state.into_changes();
        let saved = if changes.is_empty() {
            Vec::new()
        } else {
            ports.users.save_users(&job.tenant, &changes).await?
        };
        Ok(rows.settle(&changes, saved, rows_of_change, may_retry))
    }
}

impl BatchRows {
    /// Settles the rows of each change by what its save came to. Returns the rows to apply
    /// again: those whose save lost a race with another writer, when `may_retry`; otherwise
    /// such a row fails.
    fn settle(
        &mut self,
        changes: &[UserChange],
        saved: Vec<SaveOutcome>,
        rows_of_change: Vec<Vec<usize>>,
        may_retry: bool,
    ) -> Vec<usize> {
        let mut retry = Vec::new();
        for ((change, outcome), touching) in changes.iter().zip(saved).zip(rows_of_change) {
            match outcome {
                SaveOutcome::Saved => {}
                // Another writer took the key since the batch read it (a concurrent run of
                // this very chunk, or another job): read again and apply the rows to what is
                // stored now; a row another run of this chunk applied is then found by its
                // stamp, an upsert updates the new holder, a create fails as a duplicate.
                SaveOutcome::KeyTaken(_) if may_retry => retry.extend(touching),
                SaveOutcome::KeyTaken(key) => self.fail(&touching, |command| match command {
                    Some(command) => key_taken(command, &key, None),
                    None => Failure::new(
                        "DuplicateValue",
                        Some(key.field()),
                        format!("{key} is already used by another user"),
                    ),
                }),
                SaveOutcome::Stale if may_retry => retry.extend(touching),
                SaveOutcome::Stale => self.fail(&touching, |_| {
                    Failure::new(
                        "ChangedConcurrently",
                        None,
                        format!(
                            "user {} was changed by another request at the same time; send the record again",
                            change.after.id
                        ),
                    )
                }),
            }
        }
        retry.sort_unstable();
        retry
    }

    /// Ends the rows at the positions `touching` with the failure `of` their command.
    fn fail(&mut self, touching: &[usize], of: impl Fn(Option<&UserCommand>) -> Failure) {
        for &at in touching {
            let command = self.rows[at].1.as_ref().ok();
            self.fates[at] = Some(Err(of(command)));
        }
    }

    /// Records every row of the batch in the chunk's tally, in row order.
    fn record(self, kind: JobKind, chunk: &mut ChunkTally) {
        let BatchRows { rows, mut fates } = self;
        for (at, (index, checked)) in rows.into_iter().enumerate() {
            match checked {
                Err(errors) => chunk.invalid(kind, index, errors),
                Ok(command) => {
                    let fate = fates[at].take().unwrap_or_else(|| {
                        Err(Failure::new(
                            "ChangedConcurrently",
                            None,
                            "the user could not be saved; send the record again".to_owned(),
                        ))
                    });
                    chunk.record(kind, index, Some(&command), fate);
                }
            }
        }
    }
}

/// A key the row would give its user is held by another user.
fn key_taken(command: &UserCommand, key: &UserKey, holder: Option<UserId>) -> Failure {
    let by = match holder {
        Some(id) => format!("user {id}"),
        None => "another user".to_owned(),
    };
    let field = match key {
        UserKey::Email(_) => command.email_field,
        UserKey::UserName(_) if command.email_field == "user_email" => "user_name",
        other => other.field(),
    };
    Failure::new(
        "DuplicateValue",
        Some(field),
        format!("{field} '{}' is already used by {by}", key.value()),
    )
}

/// The users one round of a batch reads and changes.
struct BatchState {
    /// Current state of every user read or created, by id.
    users: HashMap<UserId, User>,
    /// The stored form of every user read (`None`: created in this batch).
    originals: HashMap<UserId, Option<User>>,
    /// Which live user holds each key, as the batch goes.
    holders: HashMap<UserKey, UserId>,
    /// Rows (positions in the batch) that changed each user, in order of first change.
    touched: Vec<(UserId, Vec<usize>)>,
}

impl BatchState {
    async fn load(
        ports: &Ports,
        tenant: &TenantId,
        commands: &[(usize, u64, &UserCommand)],
    ) -> Result<BatchState, StoreError> {
        let mut keys: BTreeSet<UserKey> = BTreeSet::new();
        let mut ids: BTreeSet<UserId> = BTreeSet::new();
        for (_, _, command) in commands {
            match &command.target {
                Target::Keys(targets) => keys.extend(targets.iter().cloned()),
                Target::Id(id) => {
                    ids.insert(*id);
                }
            }
            keys.extend(command.patch.keys());
        }
        let keys: Vec<UserKey> = keys.into_iter().collect();
        let ids: Vec<UserId> = ids.into_iter().collect();
        let mut found = if keys.is_empty() {
            Vec::new()
        } else {
            ports.users.users_by_keys(tenant, &keys).await?
        };
        if !ids.is_empty() {
            found.extend(ports.users.users_by_ids(tenant, &ids).await?);
        }
        let mut state = BatchState {
            users: HashMap::with_capacity(found.len() + commands.len()),
            originals: HashMap::with_capacity(found.len()),
            holders: HashMap::with_capacity(keys.len()),
            touched: Vec::new(),
        };
        for user in found {
            for key in user.keys() {
                state.holders.insert(key, user.id);
            }
            state.originals.insert(user.id, Some(user.clone()));
            state.users.insert(user.id, user);
        }
        Ok(state)
    }

    /// How many users the commands can create at most: those that may create and whose
    /// target no stored user holds.
    fn creations_at_most(&self, commands: &[(usize, u64, &UserCommand)]) -> u64 {
        commands
            .iter()
            .filter(|(_, _, command)| matches!(command.intent, Intent::Create | Intent::Upsert))
            .filter(|(_, _, command)| {
                self.resolve(&command.target)
                    .is_none_or(|(id, _)| self.users[&id].is_deleted())
            })
            .count() as u64
    }

    /// The user a command targets: its id and the position of the key that found it.
    fn resolve(&self, target: &Target) -> Option<(UserId, usize)> {
        match target {
            Target::Keys(keys) => keys
                .iter()
                .enumerate()
                .find_map(|(at, key)| self.holders.get(key).map(|id| (*id, at))),
            Target::Id(id) => self.users.contains_key(id).then_some((*id, 0)),
        }
    }

    /// Applies one valid row to the batch's users; a user it creates takes its id from `ids`.
    fn apply(
        &mut self,
        at: usize,
        job: JobId,
        row: u64,
        command: &UserCommand,
        now: Timestamp,
        ids: &mut IdPool,
    ) -> RowFate {
        let found = self.resolve(&command.target);
        if let Some(applied) = self.applied_before(found, job, row, command) {
            return Ok(applied);
        }
        let found = found.filter(|(id, _)| !self.users[id].is_deleted());
        let mut changing = self.changing(command, found, now, ids)?;
        let warnings = changing.carry_out(command, found, now)?;
        let keys = changing.user.keys();
        for key in keys
            .iter()
            .filter(|key| !changing.previous_keys.contains(key))
        {
            if let Some(holder) = self
                .holders
                .get(key)
                .filter(|holder| **holder != changing.user.id)
            {
                return Err(key_taken(command, key, Some(*holder)));
            }
        }
        let Changing {
            mut user,
            action,
            previous_keys,
        } = changing;
        user.last_change = Some(ChangeStamp {
            job,
            row,
            action,
            warned: !warnings.is_empty(),
        });
        self.remember(at, &user, &previous_keys);
        Ok(Applied {
            action,
            user,
            warnings,
        })
    }

    /// The same report as before when this very row was applied by an earlier run of the
    /// chunk (the user `found` carries its stamp).
    fn applied_before(
        &self,
        found: Option<(UserId, usize)>,
        job: JobId,
        row: u64,
        command: &UserCommand,
    ) -> Option<Applied> {
        let (id, _) = found?;
        let stamp = self.users[&id]
            .last_change
            .filter(|stamp| stamp.job == job && stamp.row == row)?;
        let warnings = if stamp.warned {
            fallback_warning(command, found).into_iter().collect()
        } else {
            Vec::new()
        };
        Some(Applied {
            action: stamp.action,
            user: self.users[&id].clone(),
            warnings,
        })
    }

    /// The user a command changes, as it is now, and how: the live user `found`, or a new one.
    /// A create whose target is held, or an update or delete of no one, fails.
    fn changing(
        &self,
        command: &UserCommand,
        found: Option<(UserId, usize)>,
        now: Timestamp,
        ids: &mut IdPool,
    ) -> Result<Changing, Failure> {
        let existing = |id: UserId, action| {
            let user = self.users[&id].clone();
            Changing {
                previous_keys: user.keys(),
                user,
                action,
            }
        };
        match (command.intent, found) {
            (Intent::Create, Some((id, matched))) => {
                let key = match &command.target {
                    Target::Keys(keys) => keys[matched].clone(),
                    Target::Id(_) => return Err(not_found(command)),
                };
                Err(key_taken(command, &key, Some(id)))
            }
            (Intent::Update | Intent::Delete, None) => Err(not_found(command)),
            (Intent::Create | Intent::Upsert, None) => {
                let Some(id) = ids.take() else {
                    return Err(Failure::new(
                        "InvalidValue",
                        None,
                        "no user id could be reserved for a new user".to_owned(),
                    ));
                };
                Ok(Changing {
                    user: User::new(id, now),
                    action: UserAction::Created,
                    previous_keys: Vec::new(),
                })
            }
            (Intent::Update | Intent::Upsert, Some((id, _))) => {
                Ok(existing(id, UserAction::Updated))
            }
            (Intent::Delete, Some((id, _))) => Ok(existing(id, UserAction::Deleted)),
        }
    }

    /// Takes a changed user into the batch: its keys held, the row that changed it noted.
    fn remember(&mut self, at: usize, user: &User, previous_keys: &[UserKey]) {
        let keys = user.keys();
        for key in previous_keys.iter().filter(|key| !keys.contains(key)) {
            self.holders.remove(key);
        }
        for key in keys {
            self.holders.insert(key, user.id);
        }
        match self.touched.iter_mut().find(|(id, _)| *id == user.id) {
            Some((_, rows)) => rows.push(at),
            None => self.touched.push((user.id, vec![at])),
        }
        self.originals.entry(user.id).or_insert(None);
        self.users.insert(user.id, user.clone());
    }

    /// The changes to save, and for each the rows that made it.
    fn into_changes(mut self) -> (Vec<UserChange>, Vec<Vec<usize>>) {
        let mut changes = Vec::with_capacity(self.touched.len());
        let mut rows = Vec::with_capacity(self.touched.len());
        for (id, touching) in self.touched {
            let (Some(mut after), Some(before)) =
                (self.users.remove(&id), self.originals.remove(&id))
            else {
                continue;
            };
            after.version = before.as_ref().map_or(1, |before| before.version + 1);
            changes.push(UserChange { before, after });
            rows.push(touching);
        }
        (changes, rows)
    }
}

/// A user as one row changes it: found or new, and the keys it held before the row.
struct Changing {
    user: User,
    action: UserAction,
    previous_keys: Vec<UserKey>,
}

impl Changing {
    /// Makes the row's change to the user (found by the target key at `found`): the warnings
    /// of the row, or why a new user cannot be made as the row has it.
    fn carry_out(
        &mut self,
        command: &UserCommand,
        found: Option<(UserId, usize)>,
        now: Timestamp,
    ) -> Result<Vec<(String, String)>, Failure> {
        let user = &mut self.user;
        if self.action == UserAction::Deleted {
            user.delete(now);
            return Ok(Vec::new());
        }
        command.patch.apply(user, now);
        let created = self.action == UserAction::Created;
        if created && user.email.is_none() {
            user.email.clone_from(&command.email_for_new_user);
        }
        if created
            && command.name_required_on_create
            && format!("{}{}", user.first_name, user.last_name)
                .trim()
                .is_empty()
        {
            return Err(Failure::new(
                "InvalidValue",
                Some("name"),
                "name is required to create a user".to_owned(),
            ));
        }
        Ok(fallback_warning(command, found).into_iter().collect())
    }
}

/// The warning of a row whose user was found by a fallback key (its `new_email`) rather than
/// its first key (its email): the rename had already been done.
fn fallback_warning(
    command: &UserCommand,
    found: Option<(UserId, usize)>,
) -> Option<(String, String)> {
    match (command.fallback_warning, found, &command.target) {
        (true, Some((_, matched)), Target::Keys(keys)) if matched > 0 => Some((
            "new_email".to_owned(),
            format!(
                "no user has email '{}'; '{}' already exists and was updated",
                keys[0].value(),
                keys[matched].value()
            ),
        )),
        _ => None,
    }
}

fn not_found(command: &UserCommand) -> Failure {
    let wanted = match &command.target {
        Target::Id(id) => format!("id {id}"),
        Target::Keys(keys) => match keys.first() {
            Some(key) => key.to_string(),
            None => "these values".to_owned(),
        },
    };
    Failure::new(
        "RecordNotFound",
        Some(command.target_field),
        format!("no user with {wanted} exists"),
    )
}

//! The local host's runtime: its settings, its seeded credential, and the in-process worker that
//! drains the durable embedded queue (the local stand-in for SQS → processor Lambda).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::Instrument;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::adapters::embedded::{visible_files, LeasedWork, LocalFileStore, SqliteWorkQueue};
use crate::delivery::{
    give_up, log_intake, log_retry, retry_delay, settle_chunk, settle_intake, Settlement,
};
use crate::model::TenantId;
use crate::processing::ChunkOutcome;
use crate::service::{Arrival, BulkService, ServiceError, STALE_JOB_AFTER};

/// Settings of the local server, from the environment.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub tenant: TenantId,
    pub secret: Option<String>,
    pub key_id: String,
    pub max_request_bytes: u64,
    /// Chunks processed at once by the in-process worker; 0 runs no worker (jobs wait queued).
    pub workers: usize,
}

impl LocalSettings {
    pub fn from_env() -> Result<LocalSettings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name} must be a number, got '{text}'")),
            }
        };
        let tenant =
            TenantId::parse(&var("BULK_LOCAL_TENANT").unwrap_or_else(|| "local".to_owned()))
                .map_err(|error| format!("BULK_LOCAL_TENANT: {error}"))?;
        Ok(LocalSettings {
            host: var("BULK_LOCAL_HOST").unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: u16::try_from(number("PORT", 3000)?)
                .map_err(|_| "PORT must be a port number".to_owned())?,
            data_dir: PathBuf::from(
                var("BULK_DATA_DIR").unwrap_or_else(|| "./.bulk-local".to_owned()),
            ),
            key_id: var("BULK_LOCAL_KEY_ID").unwrap_or_else(|| tenant.to_string()),
            secret: var("BULK_LOCAL_SECRET"),
            tenant,
            max_request_bytes: number("BULK_MAX_REQUEST_BYTES", 1024 * 1024 * 1024 + 1024 * 1024)?,
            workers: number("BULK_LOCAL_WORKERS", 2)?.min(64) as usize,
        })
    }
}

/// Seeds the local tenant's credential. With `BULK_LOCAL_SECRET` set, that secret is installed
/// under `BULK_LOCAL_KEY_ID` (idempotently, on every start). Without it, a credential is created
/// when the tenant has no live one, and its secret is returned so it can be printed once.
pub async fn seed_credential(
    service: &BulkService,
    settings: &LocalSettings,
) -> Result<Option<String>, ServiceError> {
    if let Some(secret) = &settings.secret {
        service
            .install_credential(&settings.tenant, "local", &settings.key_id, secret)
            .await?;
        return Ok(None);
    }
    let credentials = service
        .ports()
        .tenants
        .credentials(&settings.tenant)
        .await?;
    if credentials.iter().any(|credential| !credential.revoked) {
        service.ensure_tenant(&settings.tenant).await?;
        return Ok(None);
    }
    let issued = service
        .create_credential(&settings.tenant, "local", Some(&settings.key_id))
        .await?;
    Ok(Some(issued.secret))
}

/// The local stand-in for dropping a file into the bucket: files placed under
/// `{data_dir}/drop/` are moved into the file store under `incoming/` (same relative path) and
/// taken in like a bucket drop: `drop/{tenant}/users.json` becomes a validated job,
/// `drop/{tenant}/proceed/users.json` one that is also proceeded. Files whose name starts with
/// `.` are ignored (write to a dot-file, then rename), and a file is taken once it has not
/// changed for a second. A failed intake is tried again later; what a killed process was
/// taking in is taken in at the next start.
pub struct DropFolder {
    service: BulkService,
    files: LocalFileStore,
    dir: PathBuf,
    poll_every: Duration,
}

/// The drop folder inside the data directory.
pub const DROP_DIR: &str = "drop";

impl DropFolder {
    pub fn new(
        service: BulkService,
        files: LocalFileStore,
        data_dir: &std::path::Path,
    ) -> DropFolder {
        DropFolder {
            service,
            files,
            dir: data_dir.join(DROP_DIR),
            poll_every: Duration::from_millis(500),
        }
    }

    /// Takes in again what a process stopped in the middle of taking in (killed, or an intake
    /// that failed): files moved out of the drop folder that are not jobs yet, and jobs' files
    /// not yet validated or proceeded. There is no notification to deliver again locally.
    async fn finish_earlier_intakes(&self) {
        let keys = match self.files.keys_under("incoming/") {
            Ok(keys) => keys,
            Err(error) => {
                tracing::error!(%error, "cannot list the files taken in before");
                return;
            }
        };
        for key in keys {
            let outcome = match self.service.intake_pending(&key).await {
                Ok(false) => continue,
                Ok(true) => self.service.intake(&key).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(outcome) => tracing::info!(key, ?outcome, "took in a file left from before"),
                Err(error) => {
                    tracing::error!(key, %error, "intake of a file left from before failed")
                }
            }
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Err(error) = tokio::fs::create_dir_all(&self.dir).await {
            tracing::error!(%error, dir = %self.dir.display(), "cannot create the drop folder");
            return;
        }
        self.finish_earlier_intakes().await;
        let mut retries = IntakeRetries::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            for key in retries.due(Instant::now()) {
                self.take_in(&key, &mut retries).await;
            }
            for (path, relative) in settled_files(&self.dir, Duration::from_secs(1)) {
                let key = format!("incoming/{relative}");
                if let Err(error) = self.files.import(&path, &key).await {
                    tracing::error!(%error, path = %path.display(), "cannot take a dropped file");
                    continue;
                }
                self.take_in(&key, &mut retries).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll_every) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Takes in a file moved out of the drop folder; an intake that failed for a reason that
    /// may pass is tried again later.
    async fn take_in(&self, key: &str, retries: &mut IntakeRetries) {
        // Who dropped it: the local user who owns the file.
        let owner = self.files.owner(key).map(|uid| format!("uid {uid}"));
        let arrival = Arrival {
            principal: owner,
            source_ip: Some("local drop folder".to_owned()),
            ..Arrival::of(key)
        };
        let taken_in = self
            .service
            .take_in(&arrival)
            .instrument(crate::observe::intake_span(key))
            .await;
        log_intake(key, &taken_in);
        match settle_intake(&taken_in) {
            Settlement::Retry => {
                let after = retries.failed(key, Instant::now());
                tracing::info!(key, retry_in_s = after.as_secs(), "intake scheduled again");
            }
            Settlement::Done | Settlement::GiveUp { .. } => retries.succeeded(key),
        }
    }
}

/// Dropped files whose intake failed (the store could not be written, for example), tried
/// again after a delay doubling from one second up to five minutes, as a notification would
/// be delivered again. The intake goes on with what a failed attempt did.
#[derive(Debug, Default)]
struct IntakeRetries {
    /// Per key: when to try again, and the delay after the next failure.
    pending: BTreeMap<String, (Instant, Duration)>,
}

impl IntakeRetries {
    const FIRST_DELAY: Duration = Duration::from_secs(1);
    const LONGEST_DELAY: Duration = Duration::from_secs(300);

    fn due(&self, now: Instant) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Schedules `key` again; the delay until then.
    fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let delay = self
            .pending
            .get(key)
            .map_or(Self::FIRST_DELAY, |(_, next)| *next);
        let next = (delay * 2).min(Self::LONGEST_DELAY);
        self.pending.insert(key.to_owned(), (now + delay, next));
        delay
    }

    fn succeeded(&mut self, key: &str) {
        self.pending.remove(key);
    }
}

/// Regular files under `dir` (recursively) unchanged for `quiet`, not hidden, with their path
/// relative to `dir` (`/`-separated).
fn settled_files(dir: &std::path::Path, quiet: Duration) -> Vec<(PathBuf, String)> {
    visible_files(dir)
        .into_iter()
        .filter(|file| {
            file.metadata
                .modified()
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= quiet)
        })
        .map(|file| (file.path, file.relative))
        .collect()
}

/// How often the local worker looks for stale jobs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);

/// Drains the embedded queue with up to `concurrency` chunks in flight.
#[derive(Clone)]
pub struct LocalWorker {
    service: BulkService,
    queue: SqliteWorkQueue,
    concurrency: usize,
    lease_for: Duration,
    poll_every: Duration,
}

impl LocalWorker {
    pub fn new(service: BulkService, queue: SqliteWorkQueue, concurrency: usize) -> LocalWorker {
        LocalWorker {
            service,
            queue,
            concurrency: concurrency.max(1),
            lease_for: Duration::from_secs(300),
            poll_every: Duration::from_millis(100),
        }
    }

    /// Runs until `shutdown` turns true. Leases left by a process that died are released first,
    /// so work in progress at a crash is resumed; jobs whose work was lost altogether (stale
    /// for [`STALE_JOB_AFTER`]) are resumed at start and every [`SWEEP_EVERY`], when what has
    /// expired is purged too.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Err(error) = self.queue.release_all_leases().await {
            tracing::error!(%error, "could not release old leases");
        }
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = JoinSet::new();
        while !*shutdown.borrow() {
            let leased = self.lease_into(&mut running).await.unwrap_or_else(|error| {
                tracing::error!(%error, "could not lease work");
                0
            });
            if leased > 0 && running.len() < self.concurrency {
                continue;
            }
            // Every slot busy: the next chunk is leased the moment a running one ends. Nothing
            // to lease: that, or the next look at the queue.
            tokio::select! {
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(self.poll_every), if leased == 0 => {}
                _ = sweep.tick() => self.sweep().await,
                changed = shutdown.changed() => if changed.is_err() {
                    break;
                },
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// Resumes stale jobs, and purges what has expired (jobs, idempotency records): the
    /// embedded store has no time to live of its own.
    async fn sweep(&self) {
        if let Err(error) = self.service.resume_stale_jobs(STALE_JOB_AFTER).await {
            tracing::error!(%error, "could not look for stale jobs");
        }
        match self
            .service
            .purge_expired(crate::model::Timestamp::now())
            .await
        {
            Ok((0, 0)) => {}
            Ok((jobs, records)) => tracing::info!(jobs, records, "purged what has expired"),
            Err(error) => tracing::error!(%error, "could not purge what has expired"),
        }
    }

    /// Processes queued work until the queue is empty (for tests and one-shot runs).
    pub async fn run_until_idle(&self) -> Result<(), crate::ports::StoreError> {
        let mut running = JoinSet::new();
        loop {
            let leased = self.lease_into(&mut running).await?;
            if leased > 0 && running.len() < self.concurrency {
                continue;
            }
            // Every slot busy, or nothing to lease: wait for a running chunk to end.
            if running.join_next().await.is_none() {
                if self.queue.pending().await? == 0 {
                    return Ok(());
                }
                // Work waiting for its retry time.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Leases work for the free slots and starts it; how many chunks were leased.
    async fn lease_into(
        &self,
        running: &mut JoinSet<()>,
    ) -> Result<usize, crate::ports::StoreError> {
        let free = self.concurrency.saturating_sub(running.len());
        if free == 0 {
            return Ok(0);
        }
        let leased = self.queue.lease(free, self.lease_for).await?;
        let count = leased.len();
        for work in leased {
            let worker = self.clone();
            let span = crate::observe::chunk_span(&work.item);
            running.spawn(async move { worker.handle(work).await }.instrument(span));
        }
        Ok(count)
    }

    async fn handle(&self, work: LeasedWork) {
        let item = &work.item;
        let processed = self.service.process(item).await;
        let settled = match settle_chunk(item, work.receive_count, &processed) {
            Settlement::Done => {
                if let Ok(
                    ChunkOutcome::Committed {
                        completed_job: true,
                        ..
                    }
                    | ChunkOutcome::AlreadyCommitted {
                        completed_job: true,
                    },
                ) = processed
                {
                    tracing::info!(job_id = item.job_id, "job completed");
                }
                true
            }
            // No dead-letter queue here: the work is settled once its job has failed.
            Settlement::GiveUp { reason, .. } => give_up(&self.service, item, &reason).await,
            Settlement::Retry => {
                log_retry(item, work.receive_count, &processed);
                let delay = retry_delay(work.receive_count);
                if let Err(error) = self.queue.retry_later(work.receipt, delay).await {
                    tracing::error!(%error, "could not reschedule work");
                }
                false
            }
        };
        if settled {
            if let Err(error) = self.queue.ack(work.receipt).await {
                tracing::error!(%error, "could not acknowledge work");
            }
        }
    }
}

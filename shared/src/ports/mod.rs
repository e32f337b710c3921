//! Ports: what the domain needs from the outside world. Adapters (AWS, embedded) implement them.
//!
//! Every method is scoped by tenant where the data belongs to one: an adapter answers `None`
//! (never another tenant's data) for an id that exists under another tenant.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncBufRead;

use crate::auth::{KeyBytes, KeyVersions, SealContext, SealKey};
use crate::model::{
    ChunkCommit, ChunkResult, Credential, IdempotentRequest, Job, JobId, KeyClaim, NewFile, NewJob,
    RowResult, SaveOutcome, SchemeError, SchemeReport, SlotLease, StatusChange, StatusChanged,
    TenantId, TenantSettings, Timestamp, UpdateError, User, UserChange, UserFilter, UserId,
    UserKey, UserSelector, WorkItem,
};

/// A failure of a dependency (database, object store, queue): never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store} is unavailable: {message}")]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// The dependency refused the request and always will: this deployment lacks a permission
    /// (an IAM action on a resource) or its credentials are not accepted. Not the client's
    /// fault, and no retry helps: the operator must fix the deployment.
    #[error("{store} denied the request (a permission this deployment lacks): {message}")]
    Denied {
        store: &'static str,
        message: String,
    },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl StoreError {
    pub fn unavailable(store: &'static str, error: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store,
            message: error.to_string(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a listing: 1-based `page`, `per_page` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub per_page: u64,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        (self.page.saturating_sub(1)).saturating_mul(self.per_page)
    }
}

/// Entries `offset..offset + limit` of a listing, wherever the offset falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    pub limit: u64,
}

impl From<PageRequest> for Window {
    fn from(page: PageRequest) -> Window {
        Window {
            offset: page.offset(),
            limit: page.per_page,
        }
    }
}

/// Jobs, their scheme errors, update errors and chunk commits.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new job in status `created`, allocating its id and its ordinal (each the next
    /// of its tenant's; an id is never given twice within a tenant).
    async fn create_job(&self, job: NewJob) -> StoreResult<Job>;

    /// The tenant's job `id`; `None` when it is missing or [expired](Job::is_expired_at), and
    /// every other method reads an expired job as missing too.
    async fn get_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>>;

    /// The tenant's jobs, newest first, and the tenant's total number of jobs: a page is the
    /// range of ordinals it covers, read without the jobs before it, and the total is kept on
    /// write, not counted.
    async fn list_jobs(&self, tenant: &TenantId, page: PageRequest)
        -> StoreResult<(Vec<Job>, u64)>;

    /// Up to `limit` of the tenant's jobs with ordinals below `before` (all when `None`),
    /// newest first: cursor paging.
    async fn jobs_before(
        &self,
        tenant: &TenantId,
        before: Option<u64>,
        limit: u64,
    ) -> StoreResult<Vec<Job>>;

    /// Points a job that has not been proceeded at a new file and puts it back to `created`,
    /// dropping the old scheme errors and the version validated before (none is yet). `None` when the job is missing; the unchanged job when its
    /// status no longer accepts a new file.
    async fn replace_file(
        &self,
        tenant: &TenantId,
        id: JobId,
        file: NewFile,
    ) -> StoreResult<Option<Result<Job, Job>>>;

    /// Records the validation of the job's file `file_key`: all scheme errors, the row count,
    /// the chunk plan, the version validated (`report.file_version`: the job reads only it from
    /// here on), and the status `valid_scheme` / `invalid_scheme`. Ignored (returns the
    /// job unchanged) when the job's file is no longer `file_key` or the job is not `created`.
    async fn record_scheme_report(
        &self,
        tenant: &TenantId,
        id: JobId,
        file_key: &str,
        report: &SchemeReport,
        at: Timestamp,
    ) -> StoreResult<Job>;

    /// Makes `change` to the tenant's job `id` at `at` if the job may take its transition
    /// ([`Transition::allowed_for`](crate::model::Transition::allowed_for): its status, and for a completion its chunks), atomically:
    /// of racing changes, those the first one leaves allowed follow it, the others are refused.
    async fn change_status(
        &self,
        tenant: &TenantId,
        id: JobId,
        change: &StatusChange,
        at: Timestamp,
    ) -> StoreResult<StatusChanged>;

    /// Entries `page.offset()..` (at most `page.per_page`) of the scheme errors of `job`'s
    /// current file, in file order. `job` was read for its tenant; the service decides
    /// whether its log lists anything.
    async fn scheme_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<SchemeError>>;

    /// Entries `page.offset()..` (at most `page.per_page`) of `job`'s update error log (the
    /// errors of its committed chunks), in row order. An adapter finds where the page starts
    /// without reading the entries before it.
    async fn update_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<UpdateError>>;

    /// The recorded row results of the job's committed chunks, in row order.
    async fn results(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<RowResult>>;

    /// Whether the chunk's result has already been committed.
    async fn chunk_committed(&self, tenant: &TenantId, id: JobId, chunk: u32) -> StoreResult<bool>;

    /// Records a chunk's update errors (in row order: the log keeps them in that order) and
    /// row results and adds its counts to the job, exactly once per (job, chunk) however often
    /// it is called; the commit that completes the last chunk moves the job to `completed`.
    async fn commit_chunk(&self, result: ChunkResult) -> StoreResult<ChunkCommit>;

    /// How many of the tenant's jobs are `in_progress`. On DynamoDB an eventually consistent
    /// count: a job that just started or ended may be missed or counted.
    async fn count_in_progress(&self, tenant: &TenantId) -> StoreResult<u64>;

    /// Every tenant's jobs `in_progress` whose last change (`updated_at`) is before
    /// `idle_since`: work that may have been lost with a process or a queue message.
    async fn stale_jobs(&self, idle_since: Timestamp) -> StoreResult<Vec<Job>>;

    /// The chunks of a job whose results have been committed.
    async fn committed_chunks(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<u32>>;

    /// Deletes up to `limit` jobs [expired](Job::is_expired_at) at `now`, each with everything
    /// recorded about it, and answers how many it deleted (fewer than `limit`: none is left).
    /// Idempotent, and safe beside processing: only expired jobs go, and they read as missing
    /// already. A store whose records expire by themselves (DynamoDB's time to live) answers 0.
    async fn purge_expired(&self, now: Timestamp, limit: u64) -> StoreResult<u64>;
}

/// The users of each tenant.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The live users holding any of these keys, each once (strongly consistent).
    async fn users_by_keys(&self, tenant: &TenantId, keys: &[UserKey]) -> StoreResult<Vec<User>>;

    /// The users with these ids, deleted ones included (a re-run sees what it did), each once.
    async fn users_by_ids(&self, tenant: &TenantId, ids: &[UserId]) -> StoreResult<Vec<User>>;

    /// Saves each change atomically with the keys it claims and releases, independently of
    /// the others, and answers one outcome per change, in order. A change is saved only when
    /// the stored user is still its `before` (by version; for a new user: no user with that id,
    /// or the very same user already saved by an earlier run) and every key it claims is free
    /// or already its own.
    async fn save_users(
        &self,
        tenant: &TenantId,
        changes: &[UserChange],
    ) -> StoreResult<Vec<SaveOutcome>>;

    /// Reserves `count` fresh user ids and returns the first; the ids are `first..first + count`.
    async fn allocate_user_ids(&self, count: u64) -> StoreResult<UserId>;

    /// The tenant's live users matching `filter` in its order (see [`UserFilter`]), one window
    /// of them, and how many match in all. Unfiltered, neither is found by reading the users
    /// before the window; filtered, by reading no users but the matching ones.
    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: &UserFilter,
        window: Window,
    ) -> StoreResult<(Vec<User>, u64)>;

    /// The tenant's live users matching the selector, in id order.
    async fn select_users(
        &self,
        tenant: &TenantId,
        selector: &UserSelector,
    ) -> StoreResult<Vec<User>>;
}

/// Tenants' settings and API credentials.
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn settings(&self, tenant: &TenantId) -> StoreResult<Option<TenantSettings>>;

    async fn put_settings(&self, settings: &TenantSettings) -> StoreResult<()>;

    /// All credentials of a tenant, revoked ones included, oldest first (then by key id).
    async fn credentials(&self, tenant: &TenantId) -> StoreResult<Vec<Credential>>;

    /// Stores a credential, replacing the one with the same tenant and key id. Key ids and
    /// secret look-up digests are unique across tenants: when another tenant holds the key id,
    /// or another credential the look-up digest, nothing is written and the outcome says which.
    async fn put_credential(
        &self,
        credential: &Credential,
    ) -> StoreResult<crate::model::CredentialPut>;

    /// The credential with this key id, whatever its tenant, revoked or not (strongly
    /// consistent: used to authenticate).
    async fn credential_by_key_id(&self, key_id: &str) -> StoreResult<Option<Credential>>;

    /// The credential whose `secret_lookup` is `lookup`, whatever its tenant, revoked or not
    /// (strongly consistent: used to authenticate).
    async fn credential_by_secret_lookup(&self, lookup: &str) -> StoreResult<Option<Credential>>;

    /// Counts one request of the tenant in the rate window `window` (a UTC minute number) and
    /// answers the window's count so far, this request included.
    async fn count_request(&self, tenant: &TenantId, window: i64) -> StoreResult<u64>;

    /// Counts one failed authentication from `source` (a client's address) in the rate window
    /// `window` (a UTC minute number) and answers the window's count so far, this one included.
    async fn count_failed_authentication(&self, source: &str, window: i64) -> StoreResult<u64>;

    /// The failed authentications from `source` counted in the rate window `window`.
    async fn failed_authentications(&self, source: &str, window: i64) -> StoreResult<u64>;

    /// Takes a slot of the tenant's `lease.name` slots `0..lease.slots` for `lease.holder`
    /// until `lease.until`: one no lease holds, or whose lease
    /// [has ended](SlotLease::ended) at `at`, atomically (two takers never get the same slot).
    /// `None` when every slot is held.
    async fn take_slot(
        &self,
        tenant: &TenantId,
        lease: &SlotLease,
        at: Timestamp,
    ) -> StoreResult<Option<u64>>;

    /// Frees the slot `slot` of the tenant's `name` slots if `holder` still holds it.
    async fn free_slot(
        &self,
        tenant: &TenantId,
        name: &str,
        slot: u64,
        holder: &str,
    ) -> StoreResult<()>;

    /// Every tenant's credentials, revoked ones included (the operator's key rotation: a scan).
    async fn all_credentials(&self) -> StoreResult<Vec<Credential>>;

    /// Replaces the sealed secret and look-up digest of the credential with `resealed`'s key
    /// id by `resealed`'s, atomically with the pointer of the new digest (the old one's goes),
    /// if its digest is still `previous_lookup`; nothing else of it changes (its revocation
    /// stays as it is now).
    async fn reseal_credential(
        &self,
        resealed: &Credential,
        previous_lookup: &str,
    ) -> StoreResult<crate::model::Resealed>;

    /// Marks a credential revoked; false when the tenant has no such key id.
    async fn revoke_credential(&self, tenant: &TenantId, key_id: &str) -> StoreResult<bool>;
}

/// Requests remembered under clients' idempotency keys.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores `request` (a claim, without answer) unless a record that
    /// [still holds its key](IdempotentRequest::holds_key_at) at `request.claimed_at` exists,
    /// atomically: of two concurrent claims of a key, one wins. A claim taking over a record of
    /// the same request (same fingerprint) that names a job keeps the job and answers it.
    async fn claim_key(&self, request: &IdempotentRequest) -> StoreResult<KeyClaim>;

    /// Records the answer of the claim `claim_id`; nothing when the key has another claim now.
    async fn record_answer(
        &self,
        tenant: &TenantId,
        key: &str,
        claim_id: &str,
        answer: &str,
    ) -> StoreResult<()>;

    /// Records the job the claim `claim_id`'s request recorded.
    async fn record_job(
        &self,
        tenant: &TenantId,
        key: &str,
        claim_id: &str,
        job_id: JobId,
    ) -> StoreResult<()>;

    /// Gives up the claim `claim_id` (its request failed), so that a retry runs again: the
    /// record is dropped, or, when it names a job, kept without a claim for the retry to
    /// resume that job.
    async fn release_key(&self, tenant: &TenantId, key: &str, claim_id: &str) -> StoreResult<()>;

    /// Deletes up to `limit` records [expired](IdempotentRequest::is_expired_at) at `now` and
    /// answers how many; 0 from a store whose records expire by themselves.
    async fn purge_expired(&self, now: Timestamp, limit: u64) -> StoreResult<u64>;
}

/// A readable job file, positioned where it was opened.
pub type FileReader = Box<dyn AsyncBufRead + Send + Unpin>;

/// A presigned upload: the client sends the file's bytes with `method` to `url`, with exactly
/// these `headers` (they are part of the signature, `Content-Length` among them: the size cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUpload {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What the file store holds under a key: one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHead {
    pub bytes: u64,
    /// The store's id of these bytes: what [`FileStore::open`] is given to read exactly them
    /// however often the key is written after.
    pub version: String,
}

/// Job files. Every write of a key makes a new version of it; a version, once written, never
/// changes: it is read by its id until it is removed (the job's rule that it reads only the
/// bytes it validated rests on this).
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Stores `body` under `key` (a new version of it) and answers the version written.
    async fn put(&self, key: &str, body: Bytes) -> StoreResult<String>;

    /// Opens version `version` of the file (the current one when `None`) at byte `offset`;
    /// `NotFound` when there is no such file, or that version is gone.
    async fn open(&self, key: &str, version: Option<&str>, offset: u64) -> StoreResult<FileReader>;

    /// The size and id of version `version` of the file (the current one when `None`); `None`
    /// when there is no such file or version.
    async fn head(&self, key: &str, version: Option<&str>) -> StoreResult<Option<FileHead>>;

    /// The size in bytes of the file's current version; `None` when there is no such file.
    async fn size(&self, key: &str) -> StoreResult<Option<u64>> {
        Ok(self.head(key, None).await?.map(|head| head.bytes))
    }

    /// Moves version `version` of a file (the current one when `None`) to another key, as that
    /// key's new version, and answers it. With a version, exactly that version leaves `from`
    /// (the one before it, if any, is current again); without, `from` no longer has a current
    /// file. `NotFound` when there is no such file or version.
    async fn rename(&self, from: &str, version: Option<&str>, to: &str) -> StoreResult<String>;

    /// Whether [`FileStore::presign_put`] gives URLs.
    fn presigns(&self) -> bool;

    /// A URL a client can upload exactly `bytes` bytes to, stored under `key` only while
    /// nothing is stored there (a second upload through it is refused); `None` when the store
    /// has no such URLs (the local file store).
    async fn presign_put(
        &self,
        key: &str,
        bytes: u64,
        expires_in: std::time::Duration,
    ) -> StoreResult<Option<PresignedUpload>>;
}

/// The queue of work items, consumed by the processor.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()>;
}

/// The keyring that seals API credentials' secrets: numbered versions, each with a root key,
/// one of them current. What a key seals, how a sealed secret reads and how a look-up digest is
/// made is the domain's ([`Vault`](crate::auth::Vault)); an adapter keeps the versions and hands
/// out their keys. Key material never leaves the process: an adapter neither logs nor writes
/// it anywhere but where the keyring is kept (the embedded store's key file; on AWS, wrapped by
/// KMS).
#[async_trait]
pub trait Keyring: Send + Sync {
    /// The versions, as last read (an adapter may keep them in memory).
    async fn versions(&self) -> StoreResult<KeyVersions>;

    /// The versions, read again from where they are kept: another process (the operator's
    /// rotation) may have changed them.
    async fn reload(&self) -> StoreResult<KeyVersions>;

    /// The root key of `version`; `None` when the keyring has no such version (never had it,
    /// or it was retired).
    async fn root(&self, version: u32) -> StoreResult<Option<KeyBytes>>;

    /// A key to seal one secret of `context` under `version`, and what to store beside the
    /// sealed secret to have the key again.
    async fn seal_key(&self, version: u32, context: SealContext<'_>) -> StoreResult<SealKey>;

    /// The key a secret of `context` was sealed with under `version`, from what was stored
    /// beside it; `None` when it cannot be had (wrapped for another credential, altered, or a
    /// version the keyring no longer has).
    async fn open_key(
        &self,
        version: u32,
        context: SealContext<'_>,
        wrapped: Option<&[u8]>,
    ) -> StoreResult<Option<KeyBytes>>;

    /// Adds a version with a fresh root key and makes it current (the first version of an
    /// empty keyring). Answers the new current version. The operator's only.
    async fn add_version(&self) -> StoreResult<u32>;

    /// Removes `version`, which must not be current, and its root key from the keyring.
    async fn retire(&self, version: u32) -> StoreResult<()>;
}

/// Everything the domain needs, wired once per process.
#[derive(Clone)]
pub struct Ports {
    pub jobs: Arc<dyn JobStore>,
    pub users: Arc<dyn UserStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub files: Arc<dyn FileStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The keys API credentials' secrets are sealed with.
    pub keyring: Arc<dyn Keyring>,
}

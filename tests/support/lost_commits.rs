//! A job store whose chunk commits are lost: the processor's users are saved, then it dies
//! before its commit, as a process killed between the two would leave them.

use std::sync::Arc;

use async_trait::async_trait;
use bulk_users::model::{
    ChunkCommit, ChunkResult, Job, JobId, NewFile, NewJob, RowResult, SchemeError, SchemeReport,
    StatusChange, StatusChanged, TenantId, Timestamp, UpdateError,
};
use bulk_users::ports::{JobStore, PageRequest, Ports, StoreError, StoreResult};

/// `ports` with every chunk commit failing (nothing committed).
pub fn losing_commits(ports: &Ports) -> Ports {
    Ports {
        jobs: Arc::new(LostCommits(ports.jobs.clone())),
        ..ports.clone()
    }
}

struct LostCommits(Arc<dyn JobStore>);

#[async_trait]
impl JobStore for LostCommits {
    async fn create_job(&self, job: NewJob) -> StoreResult<Job> {
        self.0.create_job(job).await
    }
    async fn get_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        self.0.get_job(tenant, id).await
    }
    async fn list_jobs(&self, t: &TenantId, p: PageRequest) -> StoreResult<(Vec<Job>, u64)> {
        self.0.list_jobs(t, p).await
    }
    async fn jobs_before(&self, t: &TenantId, b: Option<u64>, l: u64) -> StoreResult<Vec<Job>> {
        self.0.jobs_before(t, b, l).await
    }
    async fn replace_file(
        &self,
        tenant: &TenantId,
        id: JobId,
        file: NewFile,
    ) -> StoreResult<Option<Result<Job, Job>>> {
        self.0.replace_file(tenant, id, file).await
    }
    async fn record_scheme_report(
        &self,
        tenant: &TenantId,
        id: JobId,
        file_key: &str,
        report: &SchemeReport,
        at: Timestamp,
    ) -> StoreResult<Job> {
        self.0
            .record_scheme_report(tenant, id, file_key, report, at)
            .await
    }
    async fn change_status(
        &self,
        tenant: &TenantId,
        id: JobId,
        change: &StatusChange,
        at: Timestamp,
    ) -> StoreResult<StatusChanged> {
        self.0.change_status(tenant, id, change, at).await
    }
    async fn scheme_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<SchemeError>> {
        self.0.scheme_errors(job, page).await
    }
    async fn update_errors(&self, job: &Job, page: PageRequest) -> StoreResult<Vec<UpdateError>> {
        self.0.update_errors(job, page).await
    }
    async fn results(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<RowResult>> {
        self.0.results(tenant, id).await
    }
    async fn chunk_committed(&self, t: &TenantId, id: JobId, chunk: u32) -> StoreResult<bool> {
        self.0.chunk_committed(t, id, chunk).await
    }
    async fn commit_chunk(&self, _result: ChunkResult) -> StoreResult<ChunkCommit> {
        Err(StoreError::unavailable(
            "jobs",
            "the process died before its commit",
        ))
    }
    async fn count_in_progress(&self, tenant: &TenantId) -> StoreResult<u64> {
        self.0.count_in_progress(tenant).await
    }
    async fn stale_jobs(&self, idle_since: Timestamp) -> StoreResult<Vec<Job>> {
        self.0.stale_jobs(idle_since).await
    }
    async fn committed_chunks(&self, tenant: &TenantId, id: JobId) -> StoreResult<Vec<u32>> {
        self.0.committed_chunks(tenant, id).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: u64) -> StoreResult<u64> {
        self.0.purge_expired(now, limit).await
    }
}

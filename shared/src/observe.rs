//! What every log line of a request, a chunk or a dropped file carries: the tenant and the job,
//! as fields of the span it runs in (on Lambda, the runtime's own span adds the invocation's
//! `requestId`). Fields not known yet are left out of the lines before them.

use tracing::field::Empty;
use tracing::Span;

use crate::model::{JobId, TenantId, WorkItem};

/// The span of an API request: its tenant once authenticated, its job once known.
pub fn request_span() -> Span {
    tracing::info_span!("request", tenant = Empty, job_id = Empty)
}

/// The span of a queued chunk's processing.
pub fn chunk_span(item: &WorkItem) -> Span {
    tracing::info_span!(
        "chunk",
        tenant = %item.tenant,
        job_id = item.job_id,
        chunk = item.chunk
    )
}

/// The span of a dropped file's intake: its key, then its tenant and job.
pub fn intake_span(key: &str) -> Span {
    tracing::info_span!("intake", key, tenant = Empty, job_id = Empty)
}

/// Names the tenant on the lines of the current span from here on.
pub fn record_tenant(tenant: &TenantId) {
    Span::current().record("tenant", tenant.as_str());
}

/// Names the job on the lines of the current span from here on.
pub fn record_job(id: JobId) {
    Span::current().record("job_id", id);
}

/// The metrics the service records through the `metrics` facade, dimensioned by the function
/// that records them (never by tenant: one series per function, whatever the number of
/// tenants). On Lambda they are written as CloudWatch Embedded Metric Format after each
/// invocation; elsewhere nothing records them unless a recorder is installed.
pub mod metric {
    pub const ROWS_APPLIED: &str = "RowsApplied";
    pub const ROWS_FAILED: &str = "RowsFailed";
    pub const CHUNK_DURATION: &str = "ChunkDuration";
    pub const JOBS_COMPLETED: &str = "JobsCompleted";
    pub const JOBS_FAILED: &str = "JobsFailed";
    pub const JOBS_CANCELLED: &str = "JobsCancelled";
    pub const AUTHENTICATION_FAILURES: &str = "AuthenticationFailures";
    pub const THROTTLED_REQUESTS: &str = "ThrottledRequests";
    /// Jobs in progress that changed nothing for the stale window, found by a sweep.
    pub const STALE_JOBS: &str = "StaleJobs";
}

/// Gives each metric its unit, once per process, before any is recorded.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(metric::ROWS_APPLIED, Unit::Count, "rows a chunk applied");
    describe_counter!(metric::ROWS_FAILED, Unit::Count, "rows a chunk failed");
    describe_histogram!(
        metric::CHUNK_DURATION,
        Unit::Milliseconds,
        "a chunk's processing"
    );
    describe_counter!(metric::JOBS_COMPLETED, Unit::Count, "jobs completed");
    describe_counter!(metric::JOBS_FAILED, Unit::Count, "jobs ended failed");
    describe_counter!(metric::JOBS_CANCELLED, Unit::Count, "jobs cancelled");
    describe_counter!(
        metric::AUTHENTICATION_FAILURES,
        Unit::Count,
        "refused credentials"
    );
    describe_counter!(
        metric::THROTTLED_REQUESTS,
        Unit::Count,
        "requests answered 429"
    );
    describe_counter!(
        metric::STALE_JOBS,
        Unit::Count,
        "jobs idle past the stale window"
    );
}

/// Counts what processing a chunk did, and how long it took.
pub fn chunk_processed(
    processed: &Result<crate::processing::ChunkOutcome, crate::ports::StoreError>,
    took: std::time::Duration,
) {
    use crate::processing::ChunkOutcome;
    metrics::histogram!(metric::CHUNK_DURATION).record(took.as_secs_f64() * 1000.0);
    match processed {
        Ok(ChunkOutcome::Committed {
            affected_rows,
            failed_rows,
            completed_job,
        }) => {
            metrics::counter!(metric::ROWS_APPLIED).increment(*affected_rows);
            metrics::counter!(metric::ROWS_FAILED).increment(*failed_rows);
            if *completed_job {
                metrics::counter!(metric::JOBS_COMPLETED).increment(1);
            }
        }
        Ok(ChunkOutcome::AlreadyCommitted {
            completed_job: true,
        }) => metrics::counter!(metric::JOBS_COMPLETED).increment(1),
        Ok(ChunkOutcome::JobFailed { .. }) => metrics::counter!(metric::JOBS_FAILED).increment(1),
        Ok(_) | Err(_) => {}
    }
}

/// Counts one of the job or request events named in [`metric`].
pub fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

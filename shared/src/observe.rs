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

//! The delivery policy of queued work, one for every host (the Lambda functions on SQS and the
//! local worker and drop folder): what is tried again, when to give up, and how giving up ends
//! the job. The hosts only carry it out with their own queues.

use std::time::Duration;

use crate::model::WorkItem;
use crate::ports::StoreError;
use crate::processing::ChunkOutcome;
use crate::service::{BulkService, IntakeOutcome, ServiceError};

/// Deliveries of a chunk that keeps failing before it is given up and its job ended `failed`:
/// the local worker's attempts, and the SQS work queue's `maxReceiveCount`.
pub const MAX_DELIVERIES: u32 = 5;

/// What becomes of a delivered message once it has been handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Handled, or refused for good: the message is done with.
    Done,
    /// Failed for a reason that may pass (a dependency down, a permission missing until the
    /// operator grants it): delivered again later.
    Retry,
    /// Failed on its last delivery: the job ends `failed` with this reason, and the message
    /// goes where the host keeps what it gave up on (the dead-letter queue).
    GiveUp { job_id: u64, reason: String },
}

/// What becomes of the `delivery`th delivery (1-based) of a chunk, given how processing it
/// ended.
pub fn settle_chunk(
    item: &WorkItem,
    delivery: u32,
    processed: &Result<ChunkOutcome, StoreError>,
) -> Settlement {
    match processed {
        Ok(_) => Settlement::Done,
        Err(error) if delivery >= MAX_DELIVERIES => Settlement::GiveUp {
            job_id: item.job_id,
            reason: format!(
                "chunk {} failed {delivery} times, last: {error}",
                item.chunk
            ),
        },
        Err(_) => Settlement::Retry,
    }
}

/// What becomes of the notification of a file to take in: only a dependency's failure is
/// worth another delivery; any other error is an answer about the file itself (refused, not
/// found), the same on every delivery.
pub fn settle_intake(taken_in: &Result<IntakeOutcome, ServiceError>) -> Settlement {
    match taken_in {
        Err(ServiceError::Store(_)) => Settlement::Retry,
        Ok(_) | Err(_) => Settlement::Done,
    }
}

/// How long a host without a queue of its own timing waits before delivering a failed
/// message again: doubling from 200 ms with each delivery, up to 51.2 s.
pub fn retry_delay(delivery: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(delivery.min(8)))
}

/// The failure reason of a job whose chunk's message went to the dead-letter queue without
/// the processor giving up on it: every delivery ended without an answer.
pub fn dead_letter_reason(item: &WorkItem) -> String {
    format!(
        "chunk {} was delivered {MAX_DELIVERIES} times without being processed (the processor \
         timed out or stopped each time) and went to the dead-letter queue",
        item.chunk
    )
}

/// Ends the job of a chunk given up on, with the reason.
pub async fn give_up(service: &BulkService, item: &WorkItem, reason: &str) -> bool {
    let job_id = item.job_id;
    tracing::error!(job_id, %reason, "giving up on a chunk");
    match service.fail_job(&item.tenant, job_id, reason).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(job_id, %error, "could not fail the job");
            false
        }
    }
}

/// A chunk's failure that will be delivered again; a missing permission is the operator's to
/// fix, so it is logged as an error.
pub fn log_retry(item: &WorkItem, delivery: u32, processed: &Result<ChunkOutcome, StoreError>) {
    match processed {
        Err(error @ StoreError::Denied { .. }) => {
            tracing::error!(job_id = item.job_id, chunk = item.chunk, delivery, %error, "chunk failed: this deployment lacks a permission; it will be retried");
        }
        Err(error) => {
            tracing::warn!(job_id = item.job_id, chunk = item.chunk, delivery, %error, "chunk failed; it will be retried");
        }
        Ok(_) => {}
    }
}

/// How taking in a file ended, for the log.
pub fn log_intake(key: &str, taken_in: &Result<IntakeOutcome, ServiceError>) {
    match taken_in {
        Ok(outcome) => tracing::info!(key, ?outcome, "intake"),
        Err(ServiceError::Store(error @ StoreError::Denied { .. })) => {
            tracing::error!(key, %error, "intake failed: this deployment lacks a permission")
        }
        Err(error @ ServiceError::Store(_)) => {
            tracing::warn!(key, %error, "intake failed; it will be tried again")
        }
        Err(error) => tracing::warn!(key, %error, "intake refused a file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;

    fn item() -> WorkItem {
        WorkItem {
            tenant: TenantId::parse("acme").unwrap(),
            job_id: 7,
            chunk: 2,
            first_row: 0,
            rows: 10,
            byte_offset: 1,
        }
    }

    #[test]
    fn a_failing_chunk_is_retried_then_given_up_on_its_last_delivery() {
        let down = || Err(StoreError::unavailable("DynamoDB", "timeout"));
        for delivery in 1..MAX_DELIVERIES {
            assert_eq!(settle_chunk(&item(), delivery, &down()), Settlement::Retry);
        }
        assert_eq!(
            settle_chunk(&item(), MAX_DELIVERIES, &down()),
            Settlement::GiveUp {
                job_id: 7,
                reason: "chunk 2 failed 5 times, last: DynamoDB is unavailable: timeout".into()
            }
        );
        let done = Ok(ChunkOutcome::Skipped {
            reason: "job 7 is cancelled".into(),
        });
        assert_eq!(
            settle_chunk(&item(), MAX_DELIVERIES, &done),
            Settlement::Done
        );
    }

    #[test]
    fn an_intake_is_retried_only_when_a_dependency_failed() {
        let down = Err(ServiceError::Store(StoreError::unavailable(
            "S3", "timeout",
        )));
        assert_eq!(settle_intake(&down), Settlement::Retry);
        let refused = Err(ServiceError::Conflict("not a file of ours".into()));
        assert_eq!(settle_intake(&refused), Settlement::Done);
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_a_bound() {
        assert_eq!(retry_delay(1), Duration::from_millis(400));
        assert_eq!(retry_delay(30), retry_delay(8));
    }
}

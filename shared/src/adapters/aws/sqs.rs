//! [`WorkQueue`] on SQS.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::{backoff, build_error};
use crate::model::WorkItem;
use crate::ports::{StoreError, StoreResult, WorkQueue};

const STORE: &str = "sqs";
/// Most entries one SendMessageBatch may carry.
const BATCH_MAX: usize = 10;
/// Retries of the entries SQS reports as failed.
const MAX_RETRIES: u32 = 4;

/// Work items as JSON messages of one queue.
#[derive(Debug, Clone)]
pub struct SqsWorkQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsWorkQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> SqsWorkQueue {
        SqsWorkQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one batch, retrying the entries SQS did not accept.
    async fn send_batch(&self, items: &[WorkItem]) -> StoreResult<()> {
        let mut pending: HashMap<String, SendMessageBatchRequestEntry> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let body = serde_json::to_string(item)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode a work item: {e}")))?;
            let id = index.to_string();
            let entry = SendMessageBatchRequestEntry::builder()
                .id(id.clone())
                .message_body(body)
                .build()
                .map_err(|e| build_error(STORE, e))?;
            pending.insert(id, entry);
        }
        let mut attempt = 0;
        loop {
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(pending.values().cloned().collect()))
                .send()
                .await
                .map_err(|e| StoreError::unavailable(STORE, DisplayErrorContext(e)))?;
            for sent in out.successful() {
                pending.remove(sent.id());
            }
            let failed = out.failed();
            if let Some(fault) = failed.iter().find(|entry| entry.sender_fault()) {
                return Err(StoreError::unavailable(
                    STORE,
                    format!(
                        "message rejected: {} {}",
                        fault.code(),
                        fault.message().unwrap_or_default()
                    ),
                ));
            }
            if pending.is_empty() {
                return Ok(());
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                let reason = failed
                    .first()
                    .map(|entry| {
                        format!("{} {}", entry.code(), entry.message().unwrap_or_default())
                    })
                    .unwrap_or_else(|| "no answer for them".to_owned());
                return Err(StoreError::unavailable(
                    STORE,
                    format!(
                        "{} messages not sent after {MAX_RETRIES} retries: {reason}",
                        pending.len()
                    ),
                ));
            }
            backoff(attempt).await;
        }
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()> {
        for batch in items.chunks(BATCH_MAX) {
            self.send_batch(batch).await?;
        }
        Ok(())
    }
}

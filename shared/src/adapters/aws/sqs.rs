//! [`WorkQueue`] on SQS.

use std::collections::HashMap;

use async_trait::async_trait;
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
                .map_err(|e| super::sdk_failure(STORE, e))?;
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::adapters::aws::fake::fake;
    use crate::adapters::aws::{load_sdk_config, AwsSettings, Credentials};
    use crate::model::TenantId;

    async fn queue(endpoint: &str) -> SqsWorkQueue {
        let settings = AwsSettings {
            table: "t".to_owned(),
            bucket: "b".to_owned(),
            queue_url: format!("{endpoint}/123456789012/q"),
            kms_key_arn: None,
            endpoint_url: Some(endpoint.to_owned()),
            region: "us-east-1".to_owned(),
        };
        let credentials = Credentials::new("testing", "testing", None, None, "unit-tests");
        let config = load_sdk_config(&settings, Some(credentials)).await;
        SqsWorkQueue::new(aws_sdk_sqs::Client::new(&config), settings.queue_url)
    }

    fn items(count: u32) -> Vec<WorkItem> {
        (0..count)
            .map(|chunk| WorkItem {
                tenant: TenantId::parse("acme").unwrap(),
                job_id: 1,
                chunk,
                first_row: u64::from(chunk) * 10,
                rows: 10,
                byte_offset: 1,
            })
            .collect()
    }

    fn ok(id: &str) -> Value {
        json!({ "Id": id, "MessageId": format!("m{id}"), "MD5OfMessageBody": "x" })
    }

    fn failed(id: &str, sender_fault: bool) -> Value {
        json!({ "Id": id, "SenderFault": sender_fault, "Code": "InternalError", "Message": "try later" })
    }

    fn ids(body: &Value) -> Vec<String> {
        body["Entries"]
            .as_array()
            .map(|entries| {
                let mut ids: Vec<String> = entries
                    .iter()
                    .map(|e| e["Id"].as_str().unwrap_or("?").to_owned())
                    .collect();
                ids.sort();
                ids
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn failed_entries_are_sent_again() {
        let first: Vec<Value> = (0..10)
            .map(|i| i.to_string())
            .filter(|id| id != "4")
            .map(|id| ok(&id))
            .collect();
        let fake = fake(vec![
            json!({ "Successful": first, "Failed": [failed("4", false)] }),
            json!({ "Successful": [ok("4")], "Failed": [] }),
            json!({ "Successful": [ok("0"), ok("1")], "Failed": [] }),
        ])
        .await;
        queue(&fake.endpoint)
            .await
            .enqueue(&items(12))
            .await
            .unwrap();
        let requests = fake.requests.lock().unwrap().clone();
        let sent: Vec<Vec<String>> = requests.iter().map(|(_, body)| ids(body)).collect();
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(sent[0].len(), 10);
        assert_eq!(sent[1], vec!["4"]);
        assert_eq!(sent[2], vec!["0", "1"]);
        assert!(requests
            .iter()
            .all(|(target, _)| target == "AmazonSQS.SendMessageBatch"));
    }

    #[tokio::test]
    async fn entries_the_queue_rejects_are_an_error() {
        let fake = fake(vec![
            json!({ "Successful": [ok("0")], "Failed": [failed("1", true)] }),
        ])
        .await;
        let outcome = queue(&fake.endpoint).await.enqueue(&items(2)).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
}

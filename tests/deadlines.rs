//! Lambda's time limits, on the real binaries under the runtime emulator. AWS stops a function
//! at its timeout, mid-chunk, and counts a delivery against every message of its batch; the
//! emulator stops nothing in time, but it hands each invocation its deadline
//! (`Lambda-Runtime-Deadline-Ms`, its `--timeout` after the invocation), which is what the
//! functions go by. The tests set the functions' budgets against that deadline so that the
//! deadline falls within the work, as a real timeout would.

use std::sync::Arc;
use std::time::Duration;

use bulk_tests::emulator::{deployed_environment, MASTER_KEY};
use bulk_tests::moto::fresh_stack;
use bulk_tests::runtime_api::LambdaHost;
use bulk_tests::users_file;
use bulk_users::auth::MasterKey;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, FileUpload, ServiceConfig};
use serde_json::{json, Value};

/// Chunks of the job, and rows in each.
const CHUNKS: usize = 10;
const ROWS_PER_CHUNK: u64 = 50;
/// The invocation's timeout.
const TIMEOUT_SECONDS: u64 = 30;
/// How long after its start an invocation may still begin a chunk: the chunk budget is the
/// rest of the timeout. Ten chunks of 50 new users take longer on moto.
const STARTS_WITHIN_SECONDS: u64 = 1;

/// The processor begins a chunk only while its budget is left before the deadline, and hands
/// back the messages it did not begin as batch item failures (SQS delivers them again): the
/// chunks it began are committed, the ones it handed back are untouched, and it answers before
/// the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_hands_back_the_chunks_it_has_no_time_for() {
    let stack = fresh_stack("deadline-processor").await;
    let mut ports = stack.admin.ports.clone();
    ports.master_key = Arc::new(MasterKey::parse(MASTER_KEY, "the emulator's master key").unwrap());
    let config = ServiceConfig {
        rows_per_chunk: ROWS_PER_CHUNK,
        ..Default::default()
    };
    let service = BulkService::new(ports, config);
    let acme = TenantId::parse("acme").unwrap();
    let issued = service
        .create_credential(&acme, "acme-sync", None)
        .await
        .expect("credential");
    let who = service
        .authenticate("acme", &issued.secret)
        .await
        .expect("acme");
    let file = users_file(CHUNKS * ROWS_PER_CHUNK as usize, "");
    let job = service
        .upload(
            &who,
            FileUpload {
                filename: "users.json".to_owned(),
                body: file.into(),
            },
        )
        .await
        .expect("upload");
    service.proceed(&who, job.id).await.expect("proceed");

    let mut environment =
        deployed_environment(&stack.settings(), &stack.credentials_of("processor").await);
    environment.insert(
        "BULK_CHUNK_BUDGET_SECONDS".to_owned(),
        (TIMEOUT_SECONDS - STARTS_WITHIN_SECONDS).to_string(),
    );
    let mut processor = LambdaHost::start("processor", &environment).await;

    let admin = &stack.admin;
    let mut messages = Vec::new();
    while messages.len() < CHUNKS {
        let received = admin
            .sqs
            .receive_message()
            .queue_url(&admin.settings.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .send()
            .await
            .expect("receive");
        messages.extend(received.messages.unwrap_or_default());
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let response = processor
        .invoke(
            &json!({ "Records": records }),
            Duration::from_secs(TIMEOUT_SECONDS),
        )
        .await
        .expect("the processor answers");
    let took = started.elapsed();
    let handed_back: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap_or_default())
        .collect();
    eprintln!(
        "{} of {CHUNKS} chunks handed back after {took:.1?}",
        handed_back.len()
    );
    assert!(
        !handed_back.is_empty() && handed_back.len() < CHUNKS,
        "some chunks begun, the rest handed back: {response}"
    );
    for message in &messages {
        let item: bulk_users::model::WorkItem =
            serde_json::from_str(message.body().unwrap_or_default()).expect("a work item");
        let committed = service
            .ports()
            .jobs
            .chunk_committed(job.id, item.chunk)
            .await
            .unwrap();
        let back = handed_back.contains(&message.message_id().unwrap_or_default());
        assert_eq!(
            committed, !back,
            "chunk {}: committed {committed}, handed back {back}",
            item.chunk
        );
    }
    assert!(
        took < Duration::from_secs(TIMEOUT_SECONDS),
        "answered after the deadline"
    );
}

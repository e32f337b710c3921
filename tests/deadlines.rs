//! Lambda's time limits, on the real binaries under the runtime emulator. AWS stops a function
//! at its timeout, mid-chunk, and counts a delivery against every message of its batch; the
//! emulator stops nothing in time, but it hands each invocation its deadline
//! (`Lambda-Runtime-Deadline-Ms`, its `--timeout` after the invocation), which is what the
//! functions go by. The tests set the functions' budgets against that deadline so that the
//! deadline falls within the work, as a real timeout would.

use std::time::Duration;

use bulk_tests::emulator::{deployed_environment, sample_event, HttpResponse};
use bulk_tests::moto::fresh_stack;
use bulk_tests::runtime_api::{queued_work, LambdaHost};
use bulk_tests::users_file;
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
    let config = ServiceConfig {
        rows_per_chunk: ROWS_PER_CHUNK,
        ..Default::default()
    };
    let service = admin_service(&stack, config);
    let acme = TenantId::parse("acme").unwrap();
    let issued = service.create_credential(&acme, "acme-sync", None).await;
    let secret = issued.expect("credential").secret;
    let who = service.authenticate("acme", &secret).await.expect("acme");
    let file = users_file(CHUNKS * ROWS_PER_CHUNK as usize, "");
    let filename = "users.json".to_owned();
    let upload = FileUpload {
        filename,
        body: file.into(),
        format: bulk_users::jobfile::FileFormat::Json,
    };
    let job = service.upload(&who, upload).await.expect("upload");
    service.proceed(&who, job.id).await.expect("proceed");

    let mut environment =
        deployed_environment(&stack.settings(), &stack.credentials_of("processor").await);
    environment.insert(
        "BULK_CHUNK_BUDGET_SECONDS".to_owned(),
        (TIMEOUT_SECONDS - STARTS_WITHIN_SECONDS).to_string(),
    );
    let mut processor = LambdaHost::start("processor", &environment).await;

    let records = queued_work(&stack, CHUNKS).await;
    let started = std::time::Instant::now();
    let response = processor
        .invoke(
            &json!({ "Records": records }),
            Duration::from_secs(TIMEOUT_SECONDS),
        )
        .await
        .expect("the processor answers");
    let took = started.elapsed();
    let failures = response["batchItemFailures"].as_array();
    let failures = failures.expect("batchItemFailures").iter();
    let handed_back =
        failures.map(|failure| failure["itemIdentifier"].as_str().unwrap_or_default());
    let handed_back: Vec<&str> = handed_back.collect();
    let back = handed_back.len();
    eprintln!("{back} of {CHUNKS} chunks handed back after {took:.1?}");
    assert!(
        !handed_back.is_empty() && handed_back.len() < CHUNKS,
        "some chunks begun, the rest handed back: {response}"
    );
    for record in &records {
        let body = record["body"].as_str().unwrap_or_default();
        let item: bulk_users::model::WorkItem = serde_json::from_str(body).expect("a work item");
        let committed = service
            .ports()
            .jobs
            .chunk_committed(&item.tenant, job.id, item.chunk)
            .await;
        let committed = committed.unwrap();
        let back = handed_back.contains(&record["messageId"].as_str().unwrap_or_default());
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

/// A Huawei Workspace batch is applied within the request, under API Gateway's 30 s. When its
/// invocation has not its chunk budget left, the batch is not left half done nor dropped: its
/// job goes on (its chunks queued for the processor), and the client is answered 503 with
/// `Retry-After`. The same request sent again under its `Idempotency-Key` answers as the
/// batch that succeeded; without a key, the processor finishes the job all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_batch_out_of_time_goes_on_and_its_retry_answers() {
    let stack = fresh_stack("deadline-directory").await;
    let service = admin_service(&stack, ServiceConfig::default());
    let acme = TenantId::parse("acme").unwrap();
    service
        .install_credential(&acme, "events", "acme-events", "change-me")
        .await
        .expect("credential");
    let mut environment =
        deployed_environment(&stack.settings(), &stack.credentials_of("directory").await);
    environment.insert("BULK_CHUNK_BUDGET_SECONDS".to_owned(), "20".to_owned());
    let mut directory = LambdaHost::start("directory", &environment).await;
    let batch = |users: Value, key: Option<&str>| {
        let mut event = sample_event("workspace-batch-create.json");
        event["body"] = json!(json!({ "users": users }).to_string());
        if let Some(key) = key {
            event["headers"]["idempotency-key"] = json!(key);
        }
        event
    };
    let short = Duration::from_secs(5);
    let long = Duration::from_secs(60);

    // With a key: out of time, then answered by the retry.
    let kay = json!([{"user_name": "kay", "user_email": "kay@example.com"}]);
    let keyed = batch(kay, Some("batch-1"));
    let first = answer(directory.invoke(&keyed, short).await);
    assert_eq!(first.status, 503, "{:?}", first.body);
    assert_eq!(first.body["error_code"], "WKS.00000503");
    assert!(first.header("retry-after").is_some());
    let job = latest_job(&service, &acme).await;
    assert_eq!(job.status.as_str(), "in_progress");
    let retried = answer(directory.invoke(&keyed, long).await);
    assert_eq!((retried.status, retried.body.clone()), (200, json!({})));
    let latest = latest_job(&service, &acme).await;
    assert_eq!(latest.status.as_str(), "completed");

    // Without a key: out of time; the processor finishes the queued job.
    let lou = json!([{"user_name": "lou", "user_email": "lou@example.com"}]);
    let plain = batch(lou, None);
    let first = answer(directory.invoke(&plain, short).await);
    assert_eq!(first.status, 503, "{:?}", first.body);
    let job = latest_job(&service, &acme).await;
    assert_eq!(job.status.as_str(), "in_progress");
    let processor = stack.function("processor").await.ports;
    let processor = BulkService::new(processor, ServiceConfig::default());
    bulk_tests::drain_sqs(&processor, &stack.admin, 1).await;
    let done = latest_job(&service, &acme).await;
    assert_eq!((done.status.as_str(), done.affected_rows), ("completed", 1));
    // The first batch's queued chunk ran again: it changed nothing.
    let who = service.authenticate("acme", "change-me").await.unwrap();
    let first = bulk_users::ports::PageRequest {
        page: 1,
        per_page: 10,
    };
    let (jobs, total) = service.jobs(&who, first).await.unwrap();
    assert_eq!(total, 2);
    assert!(jobs
        .iter()
        .all(|job| job.status.as_str() == "completed" && job.affected_rows == 1));
}

/// The tenant's newest job.
async fn latest_job(service: &BulkService, tenant: &TenantId) -> bulk_users::model::Job {
    let newest = bulk_users::ports::PageRequest {
        page: 1,
        per_page: 1,
    };
    let (jobs, _) = service
        .ports()
        .jobs
        .list_jobs(tenant, newest)
        .await
        .expect("jobs");
    jobs.into_iter().next().expect("a job")
}

/// The service as the administrator runs it (credentials sealed under the stack's KMS key).
fn admin_service(stack: &bulk_tests::moto::Stack, config: ServiceConfig) -> BulkService {
    BulkService::new(stack.admin.ports.clone(), config)
}

fn answer(response: Result<Value, Value>) -> HttpResponse {
    HttpResponse::parse(&response.expect("the function answers"))
}

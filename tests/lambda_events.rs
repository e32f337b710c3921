//! The sample events in `events/` through the Lambda glue (API Gateway → route table, SQS batch →
//! processor) on the AWS adapters (moto): what each function does with the events a deployment
//! or `sam local invoke` / `cargo lambda invoke` feeds it — the CCAI flow, the Zendesk batch and
//! job status, and the Huawei Workspace batch and user list.

use bulk_tests::cases;
use bulk_tests::expect;
use bulk_tests::{Backend, TestApp, HTTP_FUNCTIONS};
use bulk_users::api::RouteGroup;
use bulk_users::lambda::{api_request, handle_intake_event, lambda_response, process_sqs_batch};
use bulk_users::model::TenantId;
use serde_json::Value;

fn event(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|error| panic!("events/{name}: {error}"))
}

async fn invoke(app: &TestApp, group: RouteGroup, name: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event(name)).expect("API Gateway event");
    let response = lambda_response(app.handle_group(group, api_request(request)).await);
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("{name}: unexpected body {other:?}"),
    };
    (status, body)
}

/// The credential of the sample events: tenant `acme`, secret `change-me`.
async fn install_events_credential(app: &TestApp) {
    let acme = TenantId::parse("acme").unwrap();
    app.service
        .install_credential(&acme, "events", "acme-events", "change-me")
        .await
        .unwrap();
}

/// Runs the steps of `tests/corpus/lambda_events/{file}` on `app`, with the sample events'
/// credential (the steps' format: that folder's README).
async fn run_steps(file: &str) {
    let app = TestApp::new(Backend::Aws).await;
    install_events_credential(&app).await;
    for step in cases::load(&format!("lambda_events/{file}")) {
        let what = format!("{file}: {step}");
        if step["drain"] == true {
            app.drain().await;
        } else if let Some(name) = step["process"].as_str() {
            let batch = serde_json::from_str(&event(name)).expect("SQS event");
            let response = process_sqs_batch(&app.function("processor").await, batch, None).await;
            assert!(response.batch_item_failures.is_empty(), "{what}");
        } else {
            let bin = step["bin"].as_str().expect("a step's bin");
            let (_, group) = HTTP_FUNCTIONS
                .iter()
                .find(|(name, _)| *name == bin)
                .expect(bin);
            let (status, body) = invoke(&app, *group, step["event"].as_str().unwrap()).await;
            let what = format!("{what}: {status} {body}");
            if let Some(expected) = step["expect"]["status"].as_u64() {
                assert_eq!(u64::from(status), expected, "{what}");
            }
            expect::check_body(&body, &step["expect"], &what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_is_handled_by_its_function() {
    run_steps("ccai.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zendesk_events_are_handled_by_their_functions() {
    run_steps("zendesk.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_events_are_handled_by_their_functions() {
    run_steps("workspace.jsonl").await;
}

/// The file the intake events name.
pub const INTAKE_FILE: &str = r#"[{"email":"ann@example.com","first_name":"Ann","last_name":"Lee"},{"email":"bo@example.com","first_name":"Bo","last_name":"Ng"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_events_take_in_their_files() {
    let app = TestApp::new(Backend::Aws).await;
    let files = &app.service.ports().files;
    // A plain S3 event (sam local invoke -e events/intake-s3.json): a drop that is proceeded.
    files
        .put("incoming/acme/proceed/users.json", INTAKE_FILE.into())
        .await
        .unwrap();
    let s3_event: Value = serde_json::from_str(&event("intake-s3.json")).unwrap();
    handle_intake_event(&app.function("intake").await, s3_event)
        .await
        .expect("intake");
    app.drain().await;
    let jobs = app.get("jobs").await.body;
    assert_eq!(
        (
            jobs[0]["status"].as_str(),
            jobs[0]["affected_rows"].as_u64()
        ),
        (Some("completed"), Some(2)),
        "{jobs}"
    );

    // The deployed wiring: an SQS batch carrying the notification, key URL-encoded ('+' = ' ').
    files
        .put("incoming/acme/weekly import.json", INTAKE_FILE.into())
        .await
        .unwrap();
    let sqs_event: Value = serde_json::from_str(&event("intake-sqs.json")).unwrap();
    let response = handle_intake_event(&app.function("intake").await, sqs_event)
        .await
        .expect("intake");
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    let jobs = app.get("jobs").await.body;
    assert_eq!(
        (jobs[0]["filename"].as_str(), jobs[0]["status"].as_str()),
        (Some("weekly import.json"), Some("valid_scheme")),
        "{jobs}"
    );

    let (status, presigned) = invoke(&app, RouteGroup::Upload, "upload-presigned.json").await;
    assert_eq!(
        status, 401,
        "the sample events' credential is not installed in this test: {presigned}"
    );
}

/// S3 sends a test event when a bucket's notifications are set up: it names no file and is
/// not a failure; a message that is no notification at all fails alone, for its retries and
/// then the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_passes_s3_test_events_and_fails_only_messages_that_are_no_notification() {
    let app = TestApp::new(Backend::Aws).await;
    let test_event = serde_json::json!({
        "Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-12-05T10:00:00.000Z",
        "Bucket": "bulk-uploads", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    });
    let event = serde_json::json!({"Records": [
        {"messageId": "setup", "eventSource": "aws:sqs", "body": test_event.to_string()},
        {"messageId": "poison", "eventSource": "aws:sqs", "body": "not a notification"},
    ]});
    let response = handle_intake_event(&app.function("intake").await, event)
        .await
        .expect("intake");
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "poison"}])
    );
    assert_eq!(app.get("jobs").await.body, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_only_its_bad_messages_as_failures() {
    let app = TestApp::new(Backend::Aws).await;
    let mut batch: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&event("processor-sqs.json")).unwrap();
    let mut poison = batch.records[0].clone();
    poison.message_id = Some("poison".to_owned());
    poison.body = Some("not a work item".to_owned());
    batch.records.push(poison);
    // Job 1 does not exist yet: its chunk is dropped as done, the poison message fails alone.
    let response = process_sqs_batch(&app.function("processor").await, batch, None).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["poison"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_failing_on_its_last_delivery_fails_its_job_and_goes_to_the_dead_letter_queue() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = TestApp::new(Backend::Aws).await;
    let upload = app.upload(&bulk_tests::users_file(3, "")).await;
    let id = upload.id();
    assert_eq!(app.proceed(id).await.status, 202);
    // A poison chunk: the tenant's settings no longer read as settings, so every attempt fails.
    let aws = app.aws().unwrap();
    aws.dynamodb
        .put_item()
        .table_name(&aws.settings.table)
        .item("pk", AttributeValue::S("TENANT#acme".to_owned()))
        .item("sk", AttributeValue::S("SETTINGS".to_owned()))
        .item("roles", AttributeValue::S("not a list".to_owned()))
        .send()
        .await
        .unwrap();
    let received = aws
        .sqs
        .receive_message()
        .queue_url(&aws.settings.queue_url)
        .send()
        .await
        .unwrap();
    let message = &received.messages.unwrap()[0];
    let delivery = |receives: u32| {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.body = message.body.clone();
        record
            .attributes
            .insert("ApproximateReceiveCount".to_owned(), receives.to_string());
        let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
        batch.records.push(record);
        batch
    };
    // Read from the store: with the tenant's settings broken the API answers nothing but 500.
    let tenant = bulk_users::model::TenantId::parse("acme").unwrap();
    let stored = || async {
        let job = app.service.ports().jobs.get_job(&tenant, id).await.unwrap();
        serde_json::to_value(job.unwrap()).unwrap()
    };
    let status = |job: &Value| job["status"].as_str().unwrap_or_default().to_owned();

    // Before the last delivery the failure is reported for a retry; the job stays in progress.
    for receives in 1..bulk_users::lambda::MAX_RECEIVES {
        let response =
            process_sqs_batch(&app.function("processor").await, delivery(receives), None).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let job = stored().await;
        assert_eq!(status(&job), "in_progress", "{job}");
    }
    // The last delivery: still reported (SQS moves the message to the dead-letter queue), and
    // the job ends failed, saying why.
    let last = bulk_users::lambda::MAX_RECEIVES;
    let response = process_sqs_batch(&app.function("processor").await, delivery(last), None).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let job = stored().await;
    assert_eq!(status(&job), "failed", "{job}");
    let reason = job["failure_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("chunk 0 failed {last} times, last: ")),
        "{reason}"
    );
}

#[test]
fn a_named_stage_is_not_part_of_the_route() {
    let mut event: Value = serde_json::from_str(&event("status.json")).unwrap();
    event["requestContext"]["stage"] = "Prod".into();
    event["rawPath"] = "/Prod/apps/api/v1/bulk/users/jobs/1".into();
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(api_request(request).path, "/apps/api/v1/bulk/users/jobs/1");
}

/// A chunk whose every delivery timed out or crashed reaches the dead-letter queue with its
/// job still in progress: the dead-letter consumer ends the job `failed`, saying why. A job
/// that ended otherwise stays as it is, and a message that is no work item is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_in_the_dead_letter_queue_fails_its_job() {
    let app = TestApp::new(Backend::Aws).await;
    let done = app.run_job(&bulk_tests::users_file(2, "")).await;
    let running = app.upload(&bulk_tests::users_file(3, "")).await.id();
    assert_eq!(app.proceed(running).await.status, 202);
    let mut batch: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&event("deadletters-sqs.json")).unwrap();
    let template = batch.records[0].clone();
    batch.records.clear();
    for (n, body) in [
        format!(r#"{{"tenant":"acme","job_id":{running},"chunk":0,"first_row":0,"rows":3,"byte_offset":1}}"#),
        format!(r#"{{"tenant":"acme","job_id":{},"chunk":0,"first_row":0,"rows":2,"byte_offset":1}}"#, done["id"]),
        "not a work item".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut record = template.clone();
        record.message_id = Some(format!("dead-{n}"));
        record.body = Some(body);
        batch.records.push(record);
    }
    let dead_letters = app.function("deadletters").await;
    let response = bulk_users::lambda::process_dead_letters(&dead_letters, batch).await;
    assert!(response.batch_item_failures.is_empty());
    let failed = app.get(&format!("jobs/{running}")).await.body;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("chunk 0 was delivered 5 times")),
        "{failed}"
    );
    let completed = app.get(&format!("jobs/{}", done["id"])).await.body;
    assert_eq!(completed["status"], "completed", "{completed}");
}

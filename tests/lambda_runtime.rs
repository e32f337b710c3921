//! Every Lambda binary under the Lambda runtime emulator (`cargo lambda watch`), invoked with the
//! sample events in `events/` through the real Lambda runtime API, against moto.
//!
//! `lambda_events.rs` feeds the same events to the Lambda glue as Rust functions; this test goes
//! one step further: each event is serialized, handed to the function's process by the runtime
//! API, deserialized by `lambda_runtime`/`lambda_http`, and its response serialized back. A
//! function that only works when called as a Rust function (it panics at start, reads the wrong
//! variable, cannot deserialize its event, answers something API Gateway cannot use) fails here.
//!
//! One test, so each function compiles (or is found already built) once.

use std::sync::Arc;
use std::time::Instant;

use bulk_tests::emulator::{sample_event, Emulator, HttpResponse, MASTER_KEY};
use bulk_tests::moto::fresh_aws;
use bulk_users::auth::MasterKey;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, ServiceConfig};
use serde_json::{json, Value};

/// The job URL the sample events' host and scheme give job 1.
const JOB_LINK: &str = "https://api.example.com/apps/api/v1/bulk/users/jobs/1";
/// Job 1 as the Zendesk dialect names it.
const ZENDESK_JOB_1: &str = "00000000000000000000000000000001";

/// One invocation: function, event file in `events/`, and what its response must be.
struct Step {
    bin: &'static str,
    event: &'static str,
    check: fn(&Value),
}

/// In order: each step sees what the previous ones did to the shared table, bucket and queue.
const STEPS: &[Step] = &[
    Step {
        bin: "upload",
        event: "upload-post.json",
        check: upload_created,
    },
    Step {
        bin: "upload",
        event: "upload-put.json",
        check: upload_replaced,
    },
    Step {
        bin: "reads",
        event: "template.json",
        check: template,
    },
    Step {
        bin: "reads",
        event: "config.json",
        check: config_before_processing,
    },
    Step {
        bin: "reads",
        event: "errors-scheme.json",
        check: empty_error_log,
    },
    Step {
        bin: "reads",
        event: "errors-update.json",
        check: empty_error_log,
    },
    // A function answers only its own routes.
    Step {
        bin: "reads",
        event: "proceed.json",
        check: not_found,
    },
    Step {
        bin: "proceed",
        event: "proceed.json",
        check: proceeded,
    },
    Step {
        bin: "processor",
        event: "processor-sqs.json",
        check: no_batch_item_failures,
    },
    Step {
        bin: "status",
        event: "status.json",
        check: completed,
    },
    Step {
        bin: "jobs",
        event: "jobs.json",
        check: one_job,
    },
    Step {
        bin: "reads",
        event: "config.json",
        check: config_after_processing,
    },
    Step {
        bin: "upload",
        event: "upload-presigned.json",
        check: presigned,
    },
    // The files these two name are put into the bucket before the run.
    Step {
        bin: "intake",
        event: "intake-s3.json",
        check: intake_from_s3,
    },
    Step {
        bin: "intake",
        event: "intake-sqs.json",
        check: no_batch_item_failures,
    },
    // The Zendesk batch becomes job 5, queued (nothing consumes the queue in this test).
    Step {
        bin: "batches",
        event: "zendesk-create-many.json",
        check: zendesk_queued,
    },
    // Cancelling job 5 (queued, not yet processed): its chunks will be skipped.
    Step {
        bin: "proceed",
        event: "cancel.json",
        check: job_5_cancelled,
    },
    // The scheduled sweeper: no job has been idle long enough to count as stale.
    Step {
        bin: "sweeper",
        event: "sweeper-schedule.json",
        check: nothing_resumed,
    },
    // Job 1, the upload above, through Zendesk's job status (`{id}.json`).
    Step {
        bin: "status",
        event: "zendesk-job-status.json",
        check: zendesk_job_1_completed,
    },
    // The Huawei Workspace batch becomes job 6, processed in the request.
    Step {
        bin: "directory",
        event: "workspace-batch-create.json",
        check: workspace_created,
    },
    Step {
        bin: "reads",
        event: "workspace-list-users.json",
        check: workspace_users_listed,
    },
    Step {
        bin: "directory",
        event: "workspace-list-users.json",
        check: workspace_not_found,
    },
];

/// The files the intake events name, put into the bucket before the run.
const DROPPED: [&str; 2] = [
    "incoming/acme/proceed/users.json",
    "incoming/acme/weekly import.json",
];
const DROPPED_FILE: &str = r#"[{"email":"ann@example.com","first_name":"Ann","last_name":"Lee"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_its_sample_events_through_the_runtime_api() {
    let aws = fresh_aws("lambda-runtime").await;
    // The credential is sealed under the functions' master key, so that they can open it.
    let mut ports = aws.ports.clone();
    ports.master_key = Arc::new(MasterKey::parse(MASTER_KEY, "the emulator's master key").unwrap());
    let service = BulkService::new(ports, ServiceConfig::default());
    service
        .install_credential(
            &TenantId::parse("acme").unwrap(),
            "events",
            "acme-events",
            "change-me",
        )
        .await
        .expect("credential");
    for key in DROPPED {
        aws.ports
            .files
            .put(key, DROPPED_FILE.into())
            .await
            .expect("put");
    }
    let emulator = Emulator::start(&aws.settings).await;
    eprintln!(
        "cargo lambda watch on {} (output: {})",
        emulator.endpoint,
        emulator.log.display()
    );

    let started = Instant::now();
    for (index, step) in STEPS.iter().enumerate() {
        let response = match emulator
            .try_invoke(step.bin, &sample_event(step.event))
            .await
        {
            Ok(response) => response,
            Err(error) => panic!(
                "step {index}: {} with events/{} through the runtime API: {error}\n\
                 last lines of the emulator's output ({}):\n{}",
                step.bin,
                step.event,
                emulator.log.display(),
                emulator.log_tail(60)
            ),
        };
        eprintln!("step {index}: {} {} → {response}", step.bin, step.event);
        (step.check)(&response);
    }
    eprintln!(
        "{} invocations in {:.1?}; crates compiled by the emulator: {:?}",
        STEPS.len(),
        started.elapsed(),
        emulator.compiled_crates()
    );

    // The functions worked on the test's own table: the in-process service sees the result.
    let acme = service
        .authenticate("acme", "change-me")
        .await
        .expect("acme");
    let job = service.job(&acme, 1).await.expect("job 1");
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!((job.affected_rows, job.failed_rows), (2, 0));
    // Job 2 waits for its presigned upload; the dropped files became jobs 3 (proceeded) and 4;
    // the Zendesk batch is job 5 (queued, then cancelled), the Workspace batch job 6 (done in
    // the request).
    let (jobs, total) = service
        .jobs(
            &acme,
            bulk_users::ports::PageRequest {
                page: 1,
                per_page: 10,
            },
        )
        .await
        .expect("jobs");
    assert_eq!(total, 6);
    let statuses: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.filename.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("workspace_create.json", "completed"),
            ("create_many.json", "cancelled"),
            ("weekly import.json", "valid_scheme"),
            ("users.json", "in_progress"),
            ("users.json", "created"),
            ("users.json", "completed")
        ]
    );
}

fn presigned(response: &Value) {
    let http = http(response, 201);
    assert_eq!(http.body["status"], "created", "{response}");
    assert_eq!(http.body["upload"]["method"], "PUT", "{response}");
}

fn intake_from_s3(response: &Value) {
    assert_eq!(response, &json!({}), "{response}");
}

/// The function's response as an API Gateway v2 response with `status` and a JSON body.
fn http(response: &Value, status: u16) -> HttpResponse {
    let http = HttpResponse::parse(response);
    assert_eq!(http.status, status, "{response}");
    assert_eq!(
        response["isBase64Encoded"], false,
        "JSON is sent as text: {response}"
    );
    assert!(
        http.header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "{response}"
    );
    http
}

fn upload_created(response: &Value) {
    let http = http(response, 201);
    assert_eq!(
        http.body,
        json!({"id": 1, "status": "valid_scheme", "link": JOB_LINK}),
        "{response}"
    );
    assert_eq!(
        http.header("link"),
        Some(format!("<{JOB_LINK}>").as_str()),
        "{response}"
    );
}

fn upload_replaced(response: &Value) {
    let http = http(response, 200);
    assert_eq!(
        http.body,
        json!({"id": 1, "status": "valid_scheme", "link": JOB_LINK}),
        "{response}"
    );
}

fn template(response: &Value) {
    let http = http(response, 200);
    let users = http.body.as_array().expect("an array of users");
    assert_eq!(users.len(), 1, "{response}");
    assert!(users[0]["email"].is_string(), "{response}");
}

fn config_before_processing(response: &Value) {
    let http = http(response, 200);
    assert_eq!(http.body, json!([]), "no user exists yet: {response}");
}

fn empty_error_log(response: &Value) {
    let http = http(response, 200);
    assert_eq!(http.body, json!([]), "{response}");
}

fn not_found(response: &Value) {
    let http = http(response, 404);
    assert!(http.body["error"].is_string(), "{response}");
}

fn proceeded(response: &Value) {
    let http = http(response, 202);
    assert_eq!(
        http.body,
        json!({"id": 1, "status": "in_progress", "link": JOB_LINK}),
        "{response}"
    );
}

fn job_5_cancelled(response: &Value) {
    let http = http(response, 200);
    assert_eq!(
        (http.body["id"].as_u64(), http.body["status"].as_str()),
        (Some(5), Some("cancelled")),
        "{response}"
    );
}

fn nothing_resumed(response: &Value) {
    assert_eq!(response, &json!({"resumed": []}));
}

fn no_batch_item_failures(response: &Value) {
    assert_eq!(response, &json!({"batchItemFailures": []}));
}

fn completed(response: &Value) {
    let http = http(response, 200);
    let job = &http.body;
    assert_eq!(job["id"], 1, "{response}");
    assert_eq!(job["status"], "completed", "{response}");
    assert_eq!(
        (
            job["total_rows"].as_u64(),
            job["affected_rows"].as_u64(),
            job["failed_rows"].as_u64()
        ),
        (Some(2), Some(2), Some(0)),
        "{response}"
    );
    assert_eq!(job["link"], JOB_LINK, "{response}");
}

fn one_job(response: &Value) {
    let http = http(response, 200);
    let jobs = http.body.as_array().expect("an array of jobs");
    assert_eq!(jobs.len(), 1, "{response}");
    assert_eq!(jobs[0]["status"], "completed", "{response}");
    assert_eq!(http.header("total"), Some("1"), "{response}");
    assert_eq!(http.header("per-page"), Some("20"), "{response}");
}

fn config_after_processing(response: &Value) {
    let http = http(response, 200);
    let users = http.body.as_array().expect("an array of users");
    assert_eq!(users.len(), 1, "{response}");
    assert_eq!(users[0]["email"], "jane@example.com", "{response}");
    assert_eq!(users[0]["agent_number"], "1001", "{response}");
    assert_eq!(
        users[0]["roles"],
        json!([{"name": "Agent", "value": 1}]),
        "{response}"
    );
}

fn zendesk_queued(response: &Value) {
    let http = http(response, 200);
    let job_status = &http.body["job_status"];
    assert_eq!(
        (
            job_status["id"].as_str(),
            job_status["job_type"].as_str(),
            job_status["status"].as_str(),
            job_status["total"].as_u64()
        ),
        (
            Some("00000000000000000000000000000005"),
            Some("bulk_create_users"),
            Some("queued"),
            Some(2)
        ),
        "{response}"
    );
}

fn zendesk_job_1_completed(response: &Value) {
    let http = http(response, 200);
    let job_status = &http.body["job_status"];
    assert_eq!(
        (
            job_status["id"].as_str(),
            job_status["job_type"].as_str(),
            job_status["status"].as_str(),
            job_status["progress"].as_u64()
        ),
        (
            Some(ZENDESK_JOB_1),
            Some("bulk_upload_users"),
            Some("completed"),
            Some(2)
        ),
        "{response}"
    );
    assert_eq!(
        job_status["url"],
        format!("https://api.example.com/api/v2/job_statuses/{ZENDESK_JOB_1}.json"),
        "{response}"
    );
    assert!(job_status["results"].is_array(), "{response}");
}

fn workspace_created(response: &Value) {
    let http = http(response, 200);
    assert_eq!(http.body, json!({}), "{response}");
}

/// The batch's users are listed (with the users the other dialects created: one directory).
fn workspace_users_listed(response: &Value) {
    let http = http(response, 200);
    let users = http.body["users"].as_array().expect("users");
    assert_eq!(
        http.body["total_count"].as_u64(),
        Some(users.len() as u64),
        "{response}"
    );
    for (name, field, value) in [
        ("ann.lee", "user_email", "ann.lee@example.com"),
        ("bo.ng", "user_phone", "15550100"),
    ] {
        let user = users
            .iter()
            .find(|user| user["user_name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {response}"));
        assert_eq!(user[field], value, "{response}");
    }
}

fn workspace_not_found(response: &Value) {
    let http = http(response, 404);
    assert_eq!(http.body["error_code"], "WKS.0202", "{response}");
}

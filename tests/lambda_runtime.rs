//! Every Lambda binary under the Lambda runtime emulator (`cargo lambda watch`), invoked with the
//! sample events in `events/` through the real Lambda runtime API, against moto.
//!
//! `lambda_events.rs` feeds the same events to the Lambda glue as Rust functions; this test goes
//! one step further: each event is serialized, handed to the function's process by the runtime
//! API, deserialized by `lambda_runtime`/`lambda_http`, and its response serialized back. A
//! function that only works when called as a Rust function (it panics at start, reads the wrong
//! variable, cannot deserialize its event, answers something API Gateway cannot use) fails here.
//! Each function runs as its own IAM principal, whose only policy is the function's `Policies`
//! in template.yaml, enforced by the emulator as AWS enforces it: a function that needs an
//! action its policy lacks fails here as it would when deployed.
//!
//! One test, so each function compiles (or is found already built) once.

use std::sync::Arc;
use std::time::Instant;

use bulk_tests::emulator::{
    deployed_environment, sample_event, Emulator, FunctionEmulators, HttpResponse, MASTER_KEY,
};
use bulk_tests::moto::{fresh_stack, Stack};
use bulk_tests::runtime_api::LambdaHost;
use bulk_tests::template::{functions, strings};
use bulk_users::auth::MasterKey;
use bulk_users::model::{TenantId, Timestamp};
use bulk_users::service::{BulkService, ServiceConfig};
use serde_json::{json, Value};

/// The job URL the sample events' host and scheme give job 1.
const JOB_LINK: &str = "https://api.example.com/apps/api/v1/bulk/users/jobs/1";
/// Job 1 as the Zendesk dialect names it.
const ZENDESK_JOB_1: &str = "00000000000000000000000000000001";

/// One moment of the day.
enum Step {
    /// Function `bin` invoked with an event, and what its response must be.
    Invoke {
        bin: &'static str,
        event: Event,
        check: fn(&Value),
    },
    /// The event source mapping hands every message waiting in the work queue to the
    /// processor (ten at a time, as the template's batch size), which must fail none.
    DeliverWorkQueue,
    /// Function `bin` invoked with an event as Lambda would with too little time left for its
    /// work (the emulator sends no real deadline: the tests' own runtime API does).
    OutOfTime {
        bin: &'static str,
        event: Event,
        check: fn(&Value),
    },
    /// What happens outside the functions between two invocations.
    Outside(Outside),
}

/// The event of an invocation.
enum Event {
    /// A sample event of `events/`, as it is.
    Sample(&'static str),
    /// A sample event changed (another route, body, key or header), given the day so far.
    Changed(&'static str, &'static str, fn(Value, &Day) -> Value),
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Sample(name) => name,
            Event::Changed(_, name, _) => name,
        }
    }
}

/// Outside the functions.
enum Outside {
    /// A client PUTs its file to the presigned URL that the upload function answered to
    /// event `of`.
    PutPresigned { of: &'static str },
    /// A job in progress has changed nothing for `hours` (its work was lost).
    JobIdle { job: u64, hours: i64 },
    /// A job's file is deleted (by hand, or a lifecycle rule) before its chunks ran.
    FileDeleted { job: u64 },
}

/// The answers so far, by function and event name.
#[derive(Default)]
struct Day {
    answers: std::collections::HashMap<(&'static str, &'static str), Value>,
}

impl Day {
    fn answer(&self, bin: &'static str, name: &'static str) -> HttpResponse {
        let raw = self
            .answers
            .get(&(bin, name))
            .unwrap_or_else(|| panic!("no answer of {bin} to {name} yet"));
        HttpResponse::parse(raw)
    }
}

use Event::{Changed, Sample};
use Step::{DeliverWorkQueue, Invoke};

/// A day of use, in order: each step sees what the previous ones did to the shared table,
/// bucket and queue. Between them the steps use every action every function's policy grants
/// (the test checks that too).
const DAY: &[Step] = &[
    Invoke {
        bin: "upload",
        event: Sample("upload-post.json"),
        check: upload_created,
    },
    Invoke {
        bin: "upload",
        event: Sample("upload-put.json"),
        check: upload_replaced,
    },
    Invoke {
        bin: "reads",
        event: Sample("template.json"),
        check: template,
    },
    Invoke {
        bin: "reads",
        event: Sample("config.json"),
        check: config_before_processing,
    },
    Invoke {
        bin: "reads",
        event: Sample("errors-scheme.json"),
        check: empty_error_log,
    },
    Invoke {
        bin: "reads",
        event: Sample("errors-update.json"),
        check: empty_error_log,
    },
    // A function answers only its own routes.
    Invoke {
        bin: "reads",
        event: Sample("proceed.json"),
        check: not_found,
    },
    Invoke {
        bin: "proceed",
        event: Sample("proceed.json"),
        check: proceeded,
    },
    Invoke {
        bin: "processor",
        event: Sample("processor-sqs.json"),
        check: no_batch_item_failures,
    },
    Invoke {
        bin: "status",
        event: Sample("status.json"),
        check: completed,
    },
    Invoke {
        bin: "jobs",
        event: Sample("jobs.json"),
        check: one_job,
    },
    Invoke {
        bin: "reads",
        event: Sample("config.json"),
        check: config_after_processing,
    },
    // Job 2 waits for its file.
    Invoke {
        bin: "upload",
        event: Sample("upload-presigned.json"),
        check: presigned,
    },
    // The files these two name are put into the bucket before the day: jobs 3 (proceeded)
    // and 4.
    Invoke {
        bin: "intake",
        event: Sample("intake-s3.json"),
        check: intake_answered,
    },
    Invoke {
        bin: "intake",
        event: Sample("intake-sqs.json"),
        check: no_batch_item_failures,
    },
    // The Zendesk batch becomes job 5, queued; cancelled before its chunk runs.
    Invoke {
        bin: "batches",
        event: Sample("zendesk-create-many.json"),
        check: zendesk_queued,
    },
    Invoke {
        bin: "proceed",
        event: Sample("cancel.json"),
        check: job_5_cancelled,
    },
    // Job 3's queued work is not delivered for hours: the sweeper queues its chunk again.
    Step::Outside(Outside::JobIdle { job: 3, hours: 3 }),
    Invoke {
        bin: "sweeper",
        event: Sample("sweeper-schedule.json"),
        check: job_3_resumed,
    },
    // Job 1, the upload above, through Zendesk's job status (`{id}.json`).
    Invoke {
        bin: "status",
        event: Sample("zendesk-job-status.json"),
        check: zendesk_job_1_completed,
    },
    // The Huawei Workspace batch becomes job 6, processed in the request.
    Invoke {
        bin: "directory",
        event: Sample("workspace-batch-create.json"),
        check: workspace_created,
    },
    Invoke {
        bin: "reads",
        event: Sample("workspace-list-users.json"),
        check: workspace_users_listed,
    },
    Invoke {
        bin: "directory",
        event: Sample("workspace-list-users.json"),
        check: workspace_not_found,
    },
    // bo.ng is deleted (job 7), as the Workspace's DELETE users/{user_id}.
    Invoke {
        bin: "directory",
        event: Changed(
            "workspace-batch-create.json",
            "workspace-delete-user",
            delete_bo_ng,
        ),
        check: no_content,
    },
    // Refused requests under an Idempotency-Key free their key: a Workspace batch breaking a
    // rule (recorded as job 8, invalid), a Zendesk body that is no batch, an upload without a
    // file.
    Invoke {
        bin: "directory",
        event: Changed(
            "workspace-batch-create.json",
            "workspace-refused",
            workspace_refused,
        ),
        check: workspace_bad_request,
    },
    Invoke {
        bin: "batches",
        event: Changed(
            "zendesk-create-many.json",
            "zendesk-refused",
            zendesk_refused,
        ),
        check: zendesk_bad_request,
    },
    Invoke {
        bin: "upload",
        event: Changed("upload-post.json", "upload-refused", upload_refused),
        check: ccai_bad_request,
    },
    // Job 2's file arrives through its presigned URL, and its notification is taken in.
    Step::Outside(Outside::PutPresigned {
        of: "upload-presigned.json",
    }),
    Invoke {
        bin: "intake",
        event: Changed("intake-s3.json", "intake-presigned", presigned_notification),
        check: intake_answered,
    },
    // A redelivered notification of a file already taken in is ignored.
    Invoke {
        bin: "intake",
        event: Sample("intake-s3.json"),
        check: intake_answered,
    },
    // A dropped file with scheme errors (job 9), and one of an unknown tenant (moved aside).
    Invoke {
        bin: "intake",
        event: Changed("intake-s3.json", "intake-bad-file", bad_file_notification),
        check: intake_answered,
    },
    Invoke {
        bin: "intake",
        event: Changed(
            "intake-s3.json",
            "intake-unknown-tenant",
            unknown_tenant_notification,
        ),
        check: intake_answered,
    },
    // An upload with a scheme error (job 10), its file replaced by one that renames John and
    // one that renames a user who does not exist, proceeded.
    Invoke {
        bin: "upload",
        event: Changed("upload-post.json", "upload-invalid", upload_invalid),
        check: job_10_invalid,
    },
    Invoke {
        bin: "reads",
        event: Changed("errors-scheme.json", "errors-scheme-10", |event, _| {
            route(event, "GET", "/apps/api/v1/bulk/users/errors/scheme/10", "")
        }),
        check: one_error_entry,
    },
    Invoke {
        bin: "upload",
        event: Changed("upload-put.json", "upload-renames", upload_renames),
        check: job_10_valid,
    },
    Invoke {
        bin: "proceed",
        event: Changed("proceed.json", "proceed-10", |event, _| {
            proceed_job(event, 10)
        }),
        check: accepted,
    },
    // Job 4 is proceeded, and its file deleted before its chunk runs.
    Invoke {
        bin: "proceed",
        event: Changed("proceed.json", "proceed-4", |event, _| {
            proceed_job(event, 4)
        }),
        check: accepted,
    },
    Step::Outside(Outside::FileDeleted { job: 4 }),
    // Job 2's chunk reached the dead-letter queue (its deliveries timed out): job 2 fails. A
    // dead letter of a job that has ended already (delivered again) changes nothing.
    Invoke {
        bin: "deadletters",
        event: Changed(
            "deadletters-sqs.json",
            "dead-letter-2",
            dead_letter_of_job_2,
        ),
        check: no_batch_item_failures,
    },
    Invoke {
        bin: "deadletters",
        event: Changed(
            "deadletters-sqs.json",
            "dead-letter-2-again",
            dead_letter_of_job_2,
        ),
        check: no_batch_item_failures,
    },
    DeliverWorkQueue,
    // The rename of a user who does not exist failed: job 10's update error log.
    Invoke {
        bin: "reads",
        event: Changed("errors-update.json", "errors-update-10", |event, _| {
            route(event, "GET", "/apps/api/v1/bulk/users/errors/update/10", "")
        }),
        check: one_error_entry,
    },
    // A Workspace batch out of time (job 11): its chunk goes to the processor, the client is
    // told to retry; the processor completes it.
    Step::OutOfTime {
        bin: "directory",
        event: Changed(
            "workspace-batch-create.json",
            "workspace-out-of-time",
            |mut event, _| {
                event["body"] =
                    json!(r#"{"users": [{"user_name": "dee", "user_email": "dee@example.com"}]}"#);
                event
            },
        ),
        check: workspace_unavailable,
    },
    DeliverWorkQueue,
];

/// The files the intake events name, put into the bucket before the day.
const DROPPED: [(&str, &str); 4] = [
    ("incoming/acme/proceed/users.json", DROPPED_FILE),
    ("incoming/acme/weekly import.json", DROPPED_FILE),
    ("incoming/acme/bad.json", BAD_FILE),
    ("incoming/nobody/users.json", DROPPED_FILE),
];
const DROPPED_FILE: &str = r#"[{"email":"ann@example.com","first_name":"Ann","last_name":"Lee"}]"#;
const BAD_FILE: &str = r#"[{"email":"not-an-email","first_name":"Ann","last_name":"Lee"}]"#;

/// The statuses of the day's jobs at its end, newest first.
const JOBS_AT_THE_END: [(&str, &str); 11] = [
    ("workspace_create.json", "completed"),
    ("users.json", "completed"),
    ("bad.json", "invalid_scheme"),
    ("workspace_create.json", "invalid_scheme"),
    ("workspace_delete.json", "completed"),
    ("workspace_create.json", "completed"),
    ("create_many.json", "cancelled"),
    ("weekly import.json", "failed"),
    ("users.json", "completed"),
    ("users.json", "failed"),
    ("users.json", "completed"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_use_runs_every_function_under_its_own_template_policy() {
    let stack = fresh_stack("lambda-runtime").await;
    let aws = &stack.admin;
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
    for (key, file) in DROPPED {
        aws.ports.files.put(key, file.into()).await.expect("put");
    }
    let emulators = FunctionEmulators::new(&stack);
    let mut day = Day::default();
    let started = Instant::now();
    for (index, step) in DAY.iter().enumerate() {
        match step {
            Invoke { bin, event, check } => {
                let name = event.name();
                let payload = match event {
                    Sample(file) => sample_event(file),
                    Changed(file, _, change) => change(sample_event(file), &day),
                };
                let response = invoke(&emulators, bin, &payload, index, name).await;
                eprintln!("step {index}: {bin} {name} → {response}");
                check(&response);
                day.answers.insert((bin, name), response);
            }
            DeliverWorkQueue => deliver_work_queue(&stack, &emulators, index).await,
            Step::OutOfTime { bin, event, check } => {
                let payload = match event {
                    Sample(file) => sample_event(file),
                    Changed(file, _, change) => change(sample_event(file), &day),
                };
                let response = out_of_time(&stack, bin, &payload).await;
                eprintln!(
                    "step {index}: {bin} {} (out of time) → {response}",
                    event.name()
                );
                check(&response);
            }
            Step::Outside(outside) => happen(outside, &stack, &service, &day).await,
        }
    }
    eprintln!(
        "{} steps in {:.1?}; crates compiled by the emulators: {:?}",
        DAY.len(),
        started.elapsed(),
        emulators.compiled_crates().await
    );
    assert_jobs_at_the_end(&service).await;
    assert_every_grant_used_and_nothing_denied(&stack).await;
}

/// A permission the deployment lacks is the operator's to fix, not the client's to retry: the
/// function answers 500 (never 503 + Retry-After, which would send clients into retries that
/// cannot succeed) in the dialect's shape, and logs an error naming the denied action and the
/// resource. Here the reads function runs under its template policy without the request count
/// (as the template was before the count was granted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_action_answers_500_and_logs_the_action_and_the_resource() {
    let stack = fresh_stack("lambda-denied").await;
    let mut ports = stack.admin.ports.clone();
    ports.master_key = Arc::new(MasterKey::parse(MASTER_KEY, "the emulator's master key").unwrap());
    BulkService::new(ports, ServiceConfig::default())
        .install_credential(
            &TenantId::parse("acme").unwrap(),
            "events",
            "acme-events",
            "change-me",
        )
        .await
        .expect("credential");
    let mut policy = stack.names.policy_of("reads");
    policy["Statement"]
        .as_array_mut()
        .expect("statements")
        .retain(|statement| statement["Sid"] != "RequestRateCount");
    let credentials = stack.create_principal("reads-without-count", &policy).await;
    let emulator = Emulator::start(&stack.settings(), &credentials).await;
    for (event, body) in [
        (
            "template.json",
            json!({"error": "internal_error", "message": "internal error"}),
        ),
        (
            "workspace-list-users.json",
            json!({"error_code": "WKS.00000500", "error_msg": "internal error"}),
        ),
    ] {
        let response = emulator.invoke("reads", &sample_event(event)).await;
        let http = http(&response, 500);
        assert_eq!(http.body, body, "{event}: {response}");
        assert_eq!(http.header("retry-after"), None, "{event}: {response}");
    }
    let table = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
        stack.names.table
    );
    let log = emulator.log_text();
    let logged = log.lines().find(|line| {
        line.contains("ERROR") && line.contains("dynamodb:UpdateItem") && line.contains(&table)
    });
    assert!(
        logged.is_some(),
        "no error naming dynamodb:UpdateItem on {table} in the function's log:\n{}",
        emulator.log_tail(40)
    );
}

async fn invoke(
    emulators: &FunctionEmulators<'_>,
    bin: &str,
    payload: &Value,
    index: usize,
    name: &str,
) -> Value {
    let emulator = emulators.of(bin).await;
    match emulator.try_invoke(bin, payload).await {
        Ok(response) => response,
        Err(error) => panic!(
            "step {index}: {bin} with {name} through the runtime API: {error}\n\
             last lines of the emulator's output ({}):\n{}",
            emulator.log.display(),
            emulator.log_tail(60)
        ),
    }
}

/// Invokes function `bin` on the tests' runtime API with a deadline 5 s away and a chunk
/// budget of 20 s: no chunk of work begins.
async fn out_of_time(stack: &Stack, bin: &str, payload: &Value) -> Value {
    let mut environment = deployed_environment(&stack.settings(), &stack.credentials_of(bin).await);
    environment.insert("BULK_CHUNK_BUDGET_SECONDS".to_owned(), "20".to_owned());
    let mut host = LambdaHost::start(bin, &environment).await;
    host.invoke(payload, std::time::Duration::from_secs(5))
        .await
        .unwrap_or_else(|error| panic!("{bin} failed out of time: {error}"))
}

/// Receives every message of the work queue (as the administrator: on AWS the event source
/// mapping reads the queue, not the function), hands them to the processor ten at a time and
/// deletes those it did not report as failed.
async fn deliver_work_queue(stack: &Stack, emulators: &FunctionEmulators<'_>, index: usize) {
    let sqs = &stack.admin.sqs;
    let queue_url = &stack.admin.settings.queue_url;
    let template = sample_event("processor-sqs.json")["Records"][0].clone();
    let mut delivered = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|message| {
                let mut record = template.clone();
                record["messageId"] = json!(message.message_id());
                record["receiptHandle"] = json!(message.receipt_handle());
                record["body"] = json!(message.body());
                record
            })
            .collect();
        let event = json!({ "Records": records });
        let response = invoke(emulators, "processor", &event, index, "work queue").await;
        eprintln!(
            "step {index}: processor ← {} queued messages → {response}",
            messages.len()
        );
        no_batch_item_failures(&response);
        for message in &messages {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        delivered += messages.len();
    }
    assert!(delivered > 0, "step {index}: nothing was queued");
}

async fn happen(outside: &Outside, stack: &Stack, service: &BulkService, day: &Day) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = &stack.admin;
    match outside {
        Outside::PutPresigned { of } => {
            let upload = &day.answer("upload", of).body["upload"];
            let mut request = reqwest::Client::new().put(upload["url"].as_str().expect("a URL"));
            for (name, value) in upload["headers"].as_object().expect("headers") {
                request = request.header(name.as_str(), value.as_str().unwrap_or_default());
            }
            let answer = request
                .body(presigned_file())
                .send()
                .await
                .expect("the presigned PUT");
            assert!(answer.status().is_success(), "presigned PUT: {answer:?}");
        }
        Outside::JobIdle { job, hours } => {
            let idle = Timestamp::now().plus_seconds(-hours * 3600).to_string();
            aws.dynamodb
                .update_item()
                .table_name(&aws.settings.table)
                .key("pk", AttributeValue::S(format!("JOB#{job}")))
                .key("sk", AttributeValue::S("JOB".to_owned()))
                .update_expression("SET updated_at = :idle")
                .expression_attribute_values(":idle", AttributeValue::S(idle))
                .send()
                .await
                .expect("job made idle");
        }
        Outside::FileDeleted { job } => {
            let acme = TenantId::parse("acme").unwrap();
            let record = service
                .ports()
                .jobs
                .get_job(&acme, *job)
                .await
                .expect("job")
                .expect("the job exists");
            aws.s3
                .delete_object()
                .bucket(&aws.settings.bucket)
                .key(&record.file_key)
                .send()
                .await
                .expect("file deleted");
        }
    }
}

async fn assert_jobs_at_the_end(service: &BulkService) {
    let acme = service
        .authenticate("acme", "change-me")
        .await
        .expect("acme");
    let (jobs, total) = service
        .jobs(
            &acme,
            bulk_users::ports::PageRequest {
                page: 1,
                per_page: 20,
            },
        )
        .await
        .expect("jobs");
    let statuses: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.filename.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(statuses, JOBS_AT_THE_END);
    assert_eq!(total, JOBS_AT_THE_END.len() as u64);
    let by_id = |id: u64| jobs.iter().find(|job| job.id == id).expect("job");
    assert_eq!((by_id(1).affected_rows, by_id(1).failed_rows), (2, 0));
    assert_eq!((by_id(10).affected_rows, by_id(10).failed_rows), (1, 1));
    assert_eq!(
        by_id(4).failure_reason.as_deref(),
        Some("the job's file no longer exists")
    );
    assert!(
        by_id(2)
            .failure_reason
            .as_deref()
            .is_some_and(|reason| reason.contains("dead-letter queue")),
        "{:?}",
        by_id(2)
    );
}

/// The template's least privilege, held against what the code needs: no function was denied
/// anything, and every action of every statement of every function's policy was used on each
/// of the statement's resources.
async fn assert_every_grant_used_and_nothing_denied(stack: &Stack) {
    let denials = stack.denials().await;
    assert!(denials.is_empty(), "IAM denied:\n{}", denials.join("\n"));
    let decisions = stack.decisions().await;
    let prefix = format!("{}-", stack.names.stage);
    let mut unused = Vec::new();
    for function in functions() {
        let user = format!("{prefix}{}", function.binary);
        let policy = stack.names.policy_of(&function.binary);
        for statement in policy["Statement"].as_array().expect("statements") {
            let sid = statement["Sid"].as_str().unwrap_or_default();
            for action in strings(&statement["Action"]) {
                for resource in strings(&statement["Resource"]) {
                    let used = decisions.iter().any(|decision| {
                        decision["principal"] == user.as_str()
                            && decision["statement"] == sid
                            && decision["action"] == action.as_str()
                            && decision["resource"]
                                .as_str()
                                .is_some_and(|arn| glob(&resource, arn))
                    });
                    if !used {
                        unused.push(format!(
                            "{}: {sid} grants {action} on {resource}",
                            function.binary
                        ));
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "granted but never used in a day of use (drop it, or add the step that needs it):\n{}",
        unused.join("\n")
    );
}

/// IAM's resource match: `*` is any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|at| tail.is_char_boundary(*at))
                .any(|at| glob(rest, &tail[at..]))
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Events changed from the samples
// ------------------------------------------------------------------------------------------------

/// An API Gateway event of the sample's credentials on another route.
fn route(mut event: Value, method: &str, path: &str, query: &str) -> Value {
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["routeKey"] = json!(format!("{method} {path}"));
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event
}

/// The event with a JSON body (as text) and, when given, an `Idempotency-Key`.
fn with_json_body(mut event: Value, body: &Value, key: Option<&str>) -> Value {
    event["body"] = json!(body.to_string());
    event["isBase64Encoded"] = json!(false);
    event["headers"]["content-type"] = json!("application/json");
    if let Some(key) = key {
        event["headers"]["idempotency-key"] = json!(key);
    }
    event
}

/// The upload event with `file` as its multipart file (and `id` as a part, when given).
fn with_file(mut event: Value, file: &str, id: Option<u64>) -> Value {
    use base64::Engine;
    let boundary = "----bulk-event-boundary";
    let mut body = String::new();
    if let Some(id) = id {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n{id}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"users.json\"\r\n\
         Content-Type: application/json\r\n\r\n{file}\r\n--{boundary}--\r\n"
    ));
    event["headers"]["content-type"] = json!(format!("multipart/form-data; boundary={boundary}"));
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    event["isBase64Encoded"] = json!(true);
    event
}

/// The intake's S3 event for another key.
fn notification_of(mut event: Value, key: &str) -> Value {
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    event["Records"][0]["s3"]["object"]["key"] = json!(encoded.replace("%2F", "/"));
    event
}

fn delete_bo_ng(event: Value, day: &Day) -> Value {
    let users = day.answer("reads", "workspace-list-users.json").body["users"].clone();
    let id = users
        .as_array()
        .into_iter()
        .flatten()
        .find(|user| user["user_name"] == "bo.ng")
        .and_then(|user| user["id"].as_str().map(str::to_owned))
        .expect("bo.ng's id");
    let mut event = route(event, "DELETE", &format!("/v2/acme/users/{id}"), "");
    event["body"] = Value::Null;
    event["pathParameters"]["user_id"] = json!(id);
    event
}

fn workspace_refused(event: Value, _: &Day) -> Value {
    let body = json!({"users": [{"user_name": "cy", "user_email": "not-an-email"}]});
    with_json_body(event, &body, Some("refused-workspace-batch"))
}

fn zendesk_refused(event: Value, _: &Day) -> Value {
    with_json_body(event, &json!({"users": 5}), Some("refused-zendesk-batch"))
}

fn upload_refused(event: Value, _: &Day) -> Value {
    with_json_body(
        event,
        &json!({"file": "not a form"}),
        Some("refused-upload"),
    )
}

fn presigned_notification(event: Value, day: &Day) -> Value {
    let url = day.answer("upload", "upload-presigned.json").body["upload"]["url"]
        .as_str()
        .expect("a URL")
        .to_owned();
    // Path-style: /{bucket}/{key}?{signature}
    let path = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split_once('/'))
        .expect("a path")
        .1;
    let path = path.split('?').next().unwrap_or_default();
    let key = path.split_once('/').expect("bucket/key").1;
    let key = percent_decode(key);
    notification_of(event, &key)
}

fn bad_file_notification(event: Value, _: &Day) -> Value {
    notification_of(event, "incoming/acme/bad.json")
}

fn unknown_tenant_notification(event: Value, _: &Day) -> Value {
    notification_of(event, "incoming/nobody/users.json")
}

fn upload_invalid(event: Value, _: &Day) -> Value {
    with_file(
        event,
        r#"[{"email":"john@example.com","first_name":"","last_name":"Roe"}]"#,
        None,
    )
}

fn upload_renames(event: Value, _: &Day) -> Value {
    with_file(
        event,
        r#"[{"email":"john@example.com","new_email":"johnny@example.com","first_name":"John","last_name":"Roe"},
            {"email":"ghost@example.com","new_email":"g@example.com","first_name":"G","last_name":"Host"}]"#,
        Some(10),
    )
}

fn dead_letter_of_job_2(mut event: Value, _: &Day) -> Value {
    event["Records"][0]["body"] =
        json!(r#"{"tenant":"acme","job_id":2,"chunk":0,"first_row":0,"rows":1,"byte_offset":1}"#);
    event
}

fn proceed_job(event: Value, id: u64) -> Value {
    with_json_body(event, &json!({ "id": id }), None)
}

/// The file of the presigned upload: exactly the `bytes` the sample event asks to upload.
fn presigned_file() -> Vec<u8> {
    let bytes = sample_event("upload-presigned.json")["body"]
        .as_str()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| body["bytes"].as_u64())
        .expect("bytes in upload-presigned.json") as usize;
    let mut file =
        br#"[{"email":"pat@example.com","first_name":"Pat","last_name":"Kim"}]"#.to_vec();
    assert!(file.len() <= bytes);
    file.resize(bytes, b' ');
    file
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

// ------------------------------------------------------------------------------------------------
// What the answers must be
// ------------------------------------------------------------------------------------------------

fn presigned(response: &Value) {
    let http = http(response, 201);
    assert_eq!(http.body["status"], "created", "{response}");
    assert_eq!(http.body["upload"]["method"], "PUT", "{response}");
}

fn intake_answered(response: &Value) {
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

fn job_3_resumed(response: &Value) {
    assert_eq!(
        response,
        &json!({"resumed": [{"job_id": 3, "requeued_chunks": [0]}], "given_up": []})
    );
}

fn no_content(response: &Value) {
    let http = HttpResponse::parse(response);
    assert_eq!(http.status, 204, "{response}");
}

fn accepted(response: &Value) {
    let http = http(response, 202);
    assert_eq!(http.body["status"], "in_progress", "{response}");
}

fn workspace_bad_request(response: &Value) {
    let http = http(response, 400);
    assert_eq!(http.body["error_code"], "WKS.0001", "{response}");
}

fn zendesk_bad_request(response: &Value) {
    let http = http(response, 400);
    assert_eq!(http.body["error"], "InvalidValue", "{response}");
}

fn ccai_bad_request(response: &Value) {
    let http = http(response, 400);
    assert!(http.body["field"].is_string(), "{response}");
}

fn workspace_unavailable(response: &Value) {
    let http = http(response, 503);
    assert_eq!(http.body["error_code"], "WKS.00000503", "{response}");
    assert!(http.header("retry-after").is_some(), "{response}");
}

fn one_error_entry(response: &Value) {
    let http = http(response, 200);
    assert_eq!(http.body.as_array().map(Vec::len), Some(1), "{response}");
    assert_eq!(http.header("total"), Some("1"), "{response}");
}

fn job_10_invalid(response: &Value) {
    let http = http(response, 201);
    assert_eq!(
        (http.body["id"].as_u64(), http.body["status"].as_str()),
        (Some(10), Some("invalid_scheme")),
        "{response}"
    );
}

fn job_10_valid(response: &Value) {
    let http = http(response, 200);
    assert_eq!(
        (http.body["id"].as_u64(), http.body["status"].as_str()),
        (Some(10), Some("valid_scheme")),
        "{response}"
    );
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

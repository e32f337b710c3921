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

use std::collections::HashMap;
use std::time::Instant;

use bulk_tests::cases::{self, Vars};
use bulk_tests::emulator::{
    deployed_environment, sample_event, Emulator, FunctionEmulators, HttpResponse,
};
use bulk_tests::expect;
use bulk_tests::moto::{fresh_stack, Stack};
use bulk_tests::runtime_api::LambdaHost;
use bulk_tests::template::{functions, strings};
use bulk_users::model::{TenantId, Timestamp};
use bulk_users::service::{BulkService, ServiceConfig};
use serde_json::{json, Value};

/// A day of use, in order: each step sees what the previous ones did to the shared table,
/// bucket and queue; its format is in the folder's README.
const DAY: &str = "lambda_day/day.jsonl";
/// The files the intake events name, put into the bucket before the day.
const DROPPED: &str = "lambda_day/dropped.jsonl";
/// The day's jobs at its end.
const JOBS_AT_THE_END: &str = "lambda_day/jobs_at_the_end.jsonl";

/// The answers so far, by function and event name.
#[derive(Default)]
struct Day {
    answers: HashMap<(String, String), Value>,
}

impl Day {
    fn answered(&self, bin: &str, name: &str) -> Option<HttpResponse> {
        let raw = self.answers.get(&(bin.to_owned(), name.to_owned()))?;
        Some(HttpResponse::parse(raw))
    }

    fn answer(&self, bin: &str, name: &str) -> HttpResponse {
        self.answered(bin, name)
            .unwrap_or_else(|| panic!("no answer of {bin} to {name} yet"))
    }

    /// The values that the day's earlier answers give a step's change: `bo_ng_id` once the
    /// Workspace user list answered, `presigned_key` once the presigned upload did.
    fn vars(&self) -> Vars {
        let mut vars = Vars::new();
        if let Some(list) = self.answered("reads", "workspace-list-users.json") {
            let id = list.body["users"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|user| user["user_name"] == "bo.ng")
                .and_then(|user| user["id"].as_str().map(str::to_owned))
                .expect("bo.ng's id");
            vars = vars.with("bo_ng_id", id);
        }
        if let Some(presigned) = self.answered("upload", "upload-presigned.json") {
            let url = presigned.body["upload"]["url"]
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
            vars = vars.with("presigned_key", percent_decode(key));
        }
        vars
    }
}

/// The sealed credential of the sample events, sealed under the stack's KMS key by the
/// administrator (as bulk-admin does), which the functions open with their own permission:
/// the service, as the administrator.
async fn install_events_credential(stack: &Stack) -> BulkService {
    let service = BulkService::new(stack.admin.ports.clone(), ServiceConfig::default());
    let acme = TenantId::parse("acme").unwrap();
    service
        .install_credential(&acme, "events", "acme-events", "change-me")
        .await
        .expect("credential");
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_use_runs_every_function_under_its_own_template_policy() {
    let stack = fresh_stack("lambda-runtime").await;
    let service = install_events_credential(&stack).await;
    for dropped in cases::load(DROPPED) {
        let (key, file) = (dropped["key"].as_str().unwrap(), dropped["file"].as_str());
        let file = file.unwrap().as_bytes().to_vec();
        stack
            .admin
            .ports
            .files
            .put(key, file.into())
            .await
            .expect("put");
    }
    let emulators = FunctionEmulators::new(&stack);
    let mut day = Day::default();
    let started = Instant::now();
    let steps = cases::load(DAY);
    for (index, step) in steps.iter().enumerate() {
        if step.get("outside").is_some() {
            happen(step, &stack, &service, &day).await;
            continue;
        }
        if step.get("deliver").is_some() {
            assert_eq!(step["deliver"], "work_queue", "step {index}");
            deliver_work_queue(&stack, &emulators, index).await;
            continue;
        }
        let bin = step["bin"].as_str().expect("a step's bin");
        let file = step["event"].as_str().expect("a step's event");
        let name = step["name"].as_str().unwrap_or(file);
        let payload = changed(sample_event(file), &day.vars().fill_json(&step["change"]));
        if step["out_of_time"] == true {
            let response = out_of_time(&stack, bin, &payload).await;
            eprintln!("step {index}: {bin} {name} (out of time) → {response}");
            check(&response, step, &format!("step {index}: {bin} {name}"));
        } else {
            let response = invoke(&emulators, bin, &payload, index, name).await;
            eprintln!("step {index}: {bin} {name} → {response}");
            check(&response, step, &format!("step {index}: {bin} {name}"));
            day.answers
                .insert((bin.to_owned(), name.to_owned()), response);
        }
    }
    eprintln!(
        "{} steps in {:.1?}; crates compiled by the emulators: {:?}",
        steps.len(),
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
    install_events_credential(&stack).await;
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
        assert_eq!(response, json!({"batchItemFailures": []}), "step {index}");
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

async fn happen(step: &Value, stack: &Stack, service: &BulkService, day: &Day) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = &stack.admin;
    let job = || step["job"].as_u64().expect("a step's job");
    match step["outside"].as_str().unwrap_or_default() {
        "put_presigned" => {
            let of = step["of"]
                .as_str()
                .expect("the event of the presigned upload");
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
        "job_idle" => {
            let hours = step["hours"].as_i64().expect("a step's hours");
            let idle = Timestamp::now().plus_seconds(-hours * 3600).to_string();
            aws.dynamodb
                .update_item()
                .table_name(&aws.settings.table)
                .key("pk", AttributeValue::S(format!("JOB#acme#{}", job())))
                .key("sk", AttributeValue::S("JOB".to_owned()))
                .update_expression("SET updated_at = :idle")
                .expression_attribute_values(":idle", AttributeValue::S(idle))
                .send()
                .await
                .expect("job made idle");
        }
        "file_deleted" => {
            let acme = TenantId::parse("acme").unwrap();
            let record = service
                .ports()
                .jobs
                .get_job(&acme, job())
                .await
                .expect("job")
                .expect("the job exists");
            // The version the job validated, for good: a delete marker alone would leave it to
            // be read (a job reads only that version).
            aws.s3
                .delete_object()
                .bucket(&aws.settings.bucket)
                .key(&record.file_key)
                .set_version_id(record.file_version)
                .send()
                .await
                .expect("file deleted");
        }
        other => panic!("no such thing happens outside: {other} ({step})"),
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
    let expected = cases::load(JOBS_AT_THE_END);
    let found: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.filename.clone(), j.status.as_str().to_owned()))
        .collect();
    let field = |job: &Value, name: &str| job[name].as_str().unwrap().to_owned();
    let wanted: Vec<(String, String)> = expected
        .iter()
        .map(|job| (field(job, "filename"), field(job, "status")))
        .collect();
    assert_eq!(found, wanted);
    assert_eq!(total, expected.len() as u64);
    for wanted in expected.iter().filter(|job| job.get("id").is_some()) {
        let id = wanted["id"].as_u64();
        let job = jobs.iter().find(|job| Some(job.id) == id).expect("job");
        let job = serde_json::to_value(job).unwrap();
        for field in ["affected_rows", "failed_rows", "failure_reason"] {
            if let Some(value) = wanted.get(field) {
                assert_eq!(&job[field], value, "{field} of job {id:?}: {job}");
            }
        }
        if let Some(part) = wanted["failure_reason_contains"].as_str() {
            let reason = job["failure_reason"].as_str();
            assert!(reason.is_some_and(|reason| reason.contains(part)), "{job}");
        }
    }
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

/// A sample event changed as a step's `change` says (see the corpus README).
fn changed(mut event: Value, change: &Value) -> Value {
    if let Some([method, path]) = change
        .get("route")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        let (method, path) = (method.as_str().unwrap(), path.as_str().unwrap());
        event = route(event, method, path, "");
    }
    if let Some(body) = change.get("json") {
        event = with_json_body(event, body, change["key"].as_str());
    }
    if let Some(file) = change["file"].as_str() {
        event = with_file(event, file, change["id"].as_u64());
    }
    if let Some(key) = change["notify"].as_str() {
        event = notification_of(event, key);
    }
    for (pointer, value) in change["set"].as_object().into_iter().flatten() {
        let mut at = &mut event;
        for key in pointer.split('/').skip(1) {
            at = match key.parse::<usize>() {
                Ok(index) if at.is_array() => &mut at[index],
                _ => &mut at[key],
            };
        }
        *at = value.clone();
    }
    event
}

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

/// Holds a function's response to a step's `expect` (see the corpus README).
fn check(response: &Value, step: &Value, what: &str) {
    let expect = &step["expect"];
    let why = step["why"]
        .as_str()
        .or(expect["why"].as_str())
        .unwrap_or_default();
    let what = format!("{what} ({why}): {response}");
    if let Some(whole) = expect.get("response") {
        assert_eq!(response, whole, "{what}");
    }
    let Some(status) = expect["status"].as_u64() else {
        return;
    };
    let http = if expect["json"] == false {
        HttpResponse::parse(response)
    } else {
        http(response, status as u16)
    };
    assert_eq!(u64::from(http.status), status, "{what}");
    expect::check_body(&http.body, expect, &what);
    for (name, value) in expect::table(expect, "headers") {
        match value.as_str() {
            Some(value) => assert_eq!(http.header(name), Some(value), "{name} of {what}"),
            None => assert!(http.header(name).is_some(), "no {name} in {what}"),
        }
    }
    match expect["check"].as_str() {
        None => {}
        Some("workspace_users_listed") => workspace_users_listed(&http, &what),
        Some(other) => panic!("no check {other}"),
    }
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

/// Every user listed is counted, and two of the batch's users are listed as the batch made them.
fn workspace_users_listed(http: &HttpResponse, what: &str) {
    let users = http.body["users"].as_array().expect("users");
    assert_eq!(
        http.body["total_count"].as_u64(),
        Some(users.len() as u64),
        "{what}"
    );
    for (name, field, value) in [
        ("ann.lee", "user_email", "ann.lee@example.com"),
        ("bo.ng", "user_phone", "15550100"),
    ] {
        let user = users
            .iter()
            .find(|user| user["user_name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {what}"));
        assert_eq!(user[field], value, "{what}");
    }
}

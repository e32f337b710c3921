//! Dependency faults: DynamoDB throttling, S3 and SQS 5xx answers, and connections dropped
//! before a request reached the emulator or after it did (the write happened, the answer was
//! lost), injected by a proxy between the AWS adapters and moto (`support/fault_proxy.py`).
//!
//! The SDK retries them with backoff; what still gets through is retried one level up: the
//! queue delivers a failed chunk again, a client retries an API answer `503` + `Retry-After`.
//! Jobs of the three dialects then complete with exactly the counts, results and users of a
//! run without faults; a chunk failing on every delivery ends its job `failed` with the reason
//! once the processor gives up, never `in_progress`.
//!
//! Targeted tests lose one answer each, exactly, where a retried write finds its own first
//! send applied (a job's start, an idempotency claim, a new job): the product must recognise
//! its own write. One more retries a Workspace batch that answered 503 after its first writes:
//! the retry under the same key resumes the batch's job.
//!
//! Every run uses a serialized emulator: a lost answer or an expired visibility timeout can
//! hand one chunk to two consumers at once, and their racing conditional writes must be
//! atomic, as on DynamoDB. Every request is served by the function of its route and chunks by
//! the processor, each under its template policy (see `support/moto.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use bulk_tests::moto::{moto, private_serialized, FaultProxy, Serving, Stack};
use bulk_tests::{basic, multipart, Answer, Deployment, Part, BOUNDARY, PREFIX};
use bulk_users::adapters::aws::{AwsAdapters, MAX_ATTEMPTS};
use bulk_users::api::ApiRequest;
use bulk_users::lambda::{process_sqs_batch, MAX_RECEIVES};
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, ServiceConfig};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

/// The proxy's seed: the same faults for the same sequence of requests.
const SEED: u64 = 20_240_611;
/// The share of requests answered with a fault, over every kind.
const FAULT_RATE: f64 = 0.2;
/// S3 sees far fewer requests than DynamoDB and SQS (one read per chunk, one write per job):
/// a higher rate there gives each of its fault kinds enough occurrences to count.
const S3_FAULT_RATE: f64 = 0.5;
/// Rows per queued chunk: small, so every job fans out into several chunks.
const ROWS_PER_CHUNK: u64 = 10;
/// Concurrent queue consumers (Lambda instances of the processor).
const CONSUMERS: usize = 3;
/// The visibility timeout the consumers receive with: a receive whose answer was lost hides
/// its messages this long.
const VISIBILITY_SECONDS: i32 = 8;
/// How often a client sends a request that keeps answering 503 before the test gives up.
const CLIENT_ATTEMPTS: u32 = 40;
/// How long a client waits before sending a request again after a 503. (A real client waits
/// `Retry-After`; the test checks the header and waits less, to stay fast.)
const CLIENT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// How long a job may take to end.
const JOB_DEADLINE: Duration = Duration::from_secs(150);

/// The application deployed on a stack whose clients talk to moto through a fault proxy.
struct Harness {
    label: &'static str,
    proxy: FaultProxy,
    deployment: Deployment,
    /// The administrator's adapters: set-up, assertions, and the queue as Lambda's poller
    /// reads it.
    aws: AwsAdapters,
    /// The processor function, as its own principal.
    processor: BulkService,
    secret: String,
    /// API answers 503 that the test sent again, as a client would.
    client_retries: AtomicU64,
}

/// The dialect of a request, for its credentials and its error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Ccai,
    Zendesk,
    Workspace,
}

/// Which serialized emulator a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emulator {
    /// One of its own, with moto's transactions made fast: for a run that writes hundreds of
    /// users and must not wait behind the others' requests.
    Own,
    /// The test process's serialized emulator, shared with the other small runs.
    Shared,
}

impl Harness {
    /// Fresh resources on a serialized emulator, behind a proxy of their own that injects
    /// nothing yet: the tenant and its credential are set up without faults.
    async fn start(label: &'static str, emulator: Emulator) -> Harness {
        let upstream = match emulator {
            Emulator::Own => private_serialized().await,
            Emulator::Shared => moto(Serving::Serialized).await,
        };
        let proxy = FaultProxy::start(
            &upstream.endpoint,
            &[
                "--rate".to_owned(),
                "0".to_owned(),
                "--seed".to_owned(),
                SEED.to_string(),
            ],
        )
        .await;
        let stack = Stack::behind(upstream, label, &proxy.endpoint).await;
        let config = ServiceConfig {
            rows_per_chunk: ROWS_PER_CHUNK,
            ..Default::default()
        };
        let aws = stack.admin.clone();
        let service = BulkService::new(aws.ports.clone(), config);
        let deployment = Deployment { stack, config };
        let processor = deployment.function("processor").await;
        let issued = service
            .create_credential(&TenantId::parse("acme").unwrap(), "acme-sync", None)
            .await
            .expect("credential");
        Harness {
            label,
            proxy,
            deployment,
            aws,
            processor,
            secret: issued.secret,
            client_retries: AtomicU64::new(0),
        }
    }

    fn request(
        &self,
        dialect: Dialect,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> ApiRequest {
        let mut headers = HeaderMap::new();
        match dialect {
            Dialect::Ccai | Dialect::Zendesk => headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&basic("acme", &self.secret)).unwrap(),
            ),
            Dialect::Workspace => {
                headers.insert("x-auth-token", HeaderValue::from_str(&self.secret).unwrap())
            }
        };
        headers.insert(http::header::HOST, HeaderValue::from_static("bulk.test"));
        if let Some(key) = idempotency_key {
            headers.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        }
        if let Some(content_type) = content_type {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        bulk_tests::api_request(method, path, headers, Bytes::from(body))
    }

    /// Sends a request through the route table as a client would: an answer 503 (a dependency
    /// still failing after the SDK's retries) is sent again after a pause. Any other server
    /// error fails the test, as does a 503 without `Retry-After` or a body naming the problem.
    async fn send(&self, dialect: Dialect, request: ApiRequest) -> Answer {
        for _ in 0..CLIENT_ATTEMPTS {
            let answer = Answer::from(self.deployment.handle(request.clone()).await);
            if !answer.status.is_server_error() {
                return answer;
            }
            assert_unavailable(dialect, &request, &answer);
            println!(
                "[{}] {} {} answered 503; sent again",
                self.label, request.method, request.path
            );
            self.client_retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(CLIENT_RETRY_DELAY).await;
        }
        panic!(
            "[{}] {} {} answered 503 {CLIENT_ATTEMPTS} times",
            self.label, request.method, request.path
        );
    }

    async fn get(&self, dialect: Dialect, path: &str) -> Answer {
        let request = self.request(dialect, Method::GET, path, None, None, Vec::new());
        let answer = self.send(dialect, request).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {path}: {}", answer.body);
        answer
    }

    async fn post_json(
        &self,
        dialect: Dialect,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Answer {
        let request = self.request(
            dialect,
            Method::POST,
            path,
            key,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        );
        self.send(dialect, request).await
    }

    /// `POST upload` under an idempotency key, then `POST proceed`: the job's id.
    async fn upload_and_proceed(&self, file: &str, key: &str) -> u64 {
        let request = self.request(
            Dialect::Ccai,
            Method::POST,
            &format!("{PREFIX}/upload"),
            Some(key),
            Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            multipart(&[Part::file(file.as_bytes().to_vec())]),
        );
        let upload = self.send(Dialect::Ccai, request).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
        assert_eq!(upload.body["status"], "valid_scheme", "{}", upload.body);
        let id = upload.id();
        let proceed = self
            .post_json(
                Dialect::Ccai,
                &format!("{PREFIX}/proceed"),
                None,
                &json!({ "id": id }),
            )
            .await;
        assert_eq!(proceed.status, StatusCode::ACCEPTED, "{}", proceed.body);
        assert_eq!(proceed.body["status"], "in_progress", "{}", proceed.body);
        id
    }

    /// A CCAI job.
    async fn job(&self, id: u64) -> Value {
        let path = format!("{PREFIX}/jobs/{id}");
        self.get(Dialect::Ccai, &path).await.body
    }

    /// Polls a CCAI job until it has ended; it must not stay in progress.
    async fn ended_job(&self, id: u64) -> Value {
        let path = format!("{PREFIX}/jobs/{id}");
        let ended = ["completed", "failed", "cancelled"];
        self.until_ended(Dialect::Ccai, &path, "", &ended).await
    }

    /// Polls a Zendesk job status until it has ended.
    async fn ended_job_status(&self, id: &str) -> Value {
        let path = format!("/api/v2/job_statuses/{id}");
        let ended = ["completed", "failed", "killed"];
        self.until_ended(Dialect::Zendesk, &path, "/job_status", &ended)
            .await
    }

    /// Polls `path` until the job at `pointer` of its answer has one of the `ended` statuses.
    async fn until_ended(
        &self,
        dialect: Dialect,
        path: &str,
        pointer: &str,
        ended: &[&str],
    ) -> Value {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let job = self.get(dialect, path).await.body.pointer(pointer).cloned();
            let job = job.unwrap_or_default();
            if job["status"]
                .as_str()
                .is_some_and(|status| ended.contains(&status))
            {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {path} has not ended within {JOB_DEADLINE:?}: {job}",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A Workspace `batch-create` of [`workspace_users`] `batch` under `key`.
    async fn workspace_batch(&self, key: &str, batch: usize) -> Answer {
        let body = workspace_users(batch);
        self.post_json(Dialect::Workspace, WORKSPACE_BATCH_CREATE, Some(key), &body)
            .await
    }

    /// The Workspace dialect's list of users.
    async fn workspace_listed(&self) -> Value {
        self.get(Dialect::Workspace, "/v2/acme/users?limit=1000")
            .await
            .body
    }
}

/// A 5xx answer must be a 503 saying a dependency is unavailable, with `Retry-After`.
fn assert_unavailable(dialect: Dialect, request: &ApiRequest, answer: &Answer) {
    let what = format!("{} {}", request.method, request.path);
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: a server error other than 503: {}",
        answer.body
    );
    let retry_after = answer
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|seconds| seconds > 0),
        "{what}: 503 without Retry-After: {:?}",
        answer.headers
    );
    let named = match dialect {
        Dialect::Ccai => answer.body["error"] == "unavailable",
        Dialect::Zendesk => answer.body["error"] == "ServiceUnavailable",
        Dialect::Workspace => answer.body["error_code"] == "WKS.00000503",
    };
    assert!(
        named,
        "{what}: the 503 body does not name the problem: {}",
        answer.body
    );
}

/// The SQS processor function's consumers: receive batches from the queue and hand them to
/// its handler, as Lambda's SQS poller does, until stopped. A failed receive or delete is tried
/// again later (the poller's business, not the function's); a message the handler reports as
/// failed is made visible again at once (Lambda waits for the visibility timeout; the test
/// does not), and its `ApproximateReceiveCount` tells the handler its delivery.
struct Consumers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Consumers {
    fn start(harness: &Harness, count: usize) -> Consumers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|_| {
                let service = harness.processor.clone();
                let sqs = harness.aws.sqs.clone();
                let queue_url = harness.aws.settings.queue_url.clone();
                let stop = stop.clone();
                tokio::spawn(async move { consume(service, sqs, queue_url, stop).await })
            })
            .collect();
        Consumers { stop, tasks }
    }

    /// Stops the consumers: the number of deliveries the handler reported as failed.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let mut failed = 0;
        for task in self.tasks {
            failed += task.await.expect("a consumer panicked");
        }
        failed
    }
}

async fn consume(
    service: BulkService,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut failed_deliveries = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(messages) = receive(&sqs, &queue_url, VISIBILITY_SECONDS).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let response = process_sqs_batch(&service, sqs_event(&messages), None).await;
        for message in messages {
            let id = message.message_id.clone().unwrap_or_default();
            let handle = message.receipt_handle.clone().unwrap_or_default();
            let failed = response
                .batch_item_failures
                .iter()
                .any(|failure| failure.item_identifier == id);
            if failed {
                failed_deliveries += 1;
                release(&sqs, &queue_url, handle).await;
            } else {
                // A delete that fails leaves the message to come back after its visibility
                // timeout: a delivery more, which changes nothing.
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
    failed_deliveries
}

/// Up to ten messages with their receive counts, hidden for `visibility` seconds; `None` when
/// the receive failed.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    visibility: i32,
) -> Option<Vec<Message>> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .ok()?;
    Some(received.messages.unwrap_or_default())
}

/// A message made visible again at once, for its next delivery (when that fails, its
/// visibility timeout does it).
async fn release(sqs: &aws_sdk_sqs::Client, queue_url: &str, handle: String) {
    let _ = sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(handle)
        .visibility_timeout(0)
        .send()
        .await;
}

/// The Lambda event of received messages, with each one's receive count.
fn sqs_event(messages: &[Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for message in messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        let receives = message
            .attributes
            .as_ref()
            .and_then(|attributes| {
                attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .cloned()
            .unwrap_or_else(|| "1".to_owned());
        record
            .attributes
            .insert("ApproximateReceiveCount".to_owned(), receives);
        event.records.push(record);
    }
    event
}

/// The first CCAI file: 150 new users; row 50 renames a user that does not exist and fails.
fn creation_file() -> String {
    let users: Vec<Value> = (0..150)
        .map(|i| {
            let mut user = json!({
                "email": format!("user{i}@example.com"),
                "first_name": format!("First{i}"),
                "last_name": format!("Last{i}"),
            });
            if i % 3 == 0 {
                user["agent_number"] = json!(format!("A{i}"));
            }
            if i % 10 == 7 {
                user["status"] = json!("Inactive");
            }
            if i == 49 {
                user["new_email"] = json!("moved49@example.com");
            }
            user
        })
        .collect();
    serde_json::to_string(&users).unwrap()
}

/// The second CCAI file: 60 rows updating the first users (user49, never created, is created
/// now), renaming every fourth and deactivating some.
fn update_file() -> String {
    let users: Vec<Value> = (0..60)
        .map(|i| {
            let mut user = json!({
                "email": format!("user{i}@example.com"),
                "first_name": format!("First{i}"),
                "last_name": format!("Changed{i}"),
            });
            if i % 4 == 0 {
                user["new_email"] = json!(format!("renamed{i}@example.com"));
            }
            if i % 5 == 1 {
                user["status"] = json!("Inactive");
            }
            user
        })
        .collect();
    serde_json::to_string(&users).unwrap()
}

/// A Zendesk `create_many` body of 50 users; the second one repeats a CCAI user's email.
fn zendesk_users(batch: usize) -> Value {
    let users: Vec<Value> = (batch * 50..batch * 50 + 50)
        .map(|i| {
            let email = if i == 75 {
                "user5@example.com".to_owned()
            } else {
                format!("z{i}@example.com")
            };
            json!({
                "name": format!("Zed Person{i}"),
                "email": email,
                "external_id": format!("Z-{i}"),
                "role": if i % 2 == 0 { "agent" } else { "end-user" },
            })
        })
        .collect();
    json!({ "users": users })
}

/// Workspace batches, of [`WORKSPACE_BATCH`] users each.
const WORKSPACE_BATCHES: usize = 8;
/// Users of a Workspace batch: one chunk (see `a_workspace_batch_failing_after_its_first_writes…`).
const WORKSPACE_BATCH: usize = 10;

/// The Workspace route of batches.
const WORKSPACE_BATCH_CREATE: &str = "/v2/acme/users/batch-create";

/// A Workspace `batch-create` body.
fn workspace_users(batch: usize) -> Value {
    let users: Vec<Value> = (batch * WORKSPACE_BATCH..(batch + 1) * WORKSPACE_BATCH)
        .map(|i| json!({ "user_name": format!("hw.{i}"), "user_email": format!("hw{i}@example.com") }))
        .collect();
    json!({ "users": users })
}

/// What a run leaves, without what differs between two equal runs (ids, timestamps).
fn strip_volatile(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for name in [
                "id",
                "created_at",
                "updated_at",
                "completed_at",
                "url",
                "message",
            ] {
                map.remove(name);
            }
            if let Some(at) = map.remove("deactivated_at") {
                map.insert("deactivated".to_owned(), json!(!at.is_null()));
            }
            for entry in map.values_mut() {
                *entry = strip_volatile(entry.take());
            }
            // "… is already used by user 46": another run gives the user another id.
            if let Some(Value::String(details)) = map.get_mut("details") {
                *details = without_user_ids(details);
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = strip_volatile(item.take());
            }
        }
        _ => {}
    }
    value
}

/// `text` with every `user {id}` written `user #`.
fn without_user_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("user ") {
        out.push_str(&rest[..at + "user ".len()]);
        rest = &rest[at + "user ".len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('#');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// The CCAI job, its counts and its update error log.
async fn ccai_outcome(harness: &Harness, job: &Value) -> Value {
    let id = job["id"].as_u64().expect("job id");
    let errors = harness
        .get(Dialect::Ccai, &format!("{PREFIX}/errors/update/{id}"))
        .await
        .body;
    json!({
        "status": job["status"],
        "failure_reason": job["failure_reason"],
        "total_rows": job["total_rows"],
        "affected_rows": job["affected_rows"],
        "failed_rows": job["failed_rows"],
        "update_errors": errors,
    })
}

/// Runs the three dialects' jobs: two CCAI jobs (creations, then updates and renames) and two
/// Zendesk `create_many` batches through the queue, eight Workspace batches in the request;
/// answers what they left.
async fn workload(harness: &Harness) -> Value {
    let started = Instant::now();
    let stage = |name: &str| {
        println!(
            "[{}] {name} after {:.1} s",
            harness.label,
            started.elapsed().as_secs_f64()
        )
    };
    let consumers = Consumers::start(harness, CONSUMERS);

    let created = harness
        .upload_and_proceed(&creation_file(), "ccai-create")
        .await;
    let created = harness.ended_job(created).await;
    stage("creations done");

    // The updates and the Zendesk batches are queued together.
    let updated = harness
        .upload_and_proceed(&update_file(), "ccai-update")
        .await;
    let mut zendesk_ids = Vec::new();
    for batch in 0..2 {
        let answer = harness
            .post_json(
                Dialect::Zendesk,
                "/api/v2/users/create_many.json",
                Some(&format!("zendesk-{batch}")),
                &zendesk_users(batch),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let id = answer.body["job_status"]["id"]
            .as_str()
            .expect("job status id");
        zendesk_ids.push(id.to_owned());
    }
    let updated = harness.ended_job(updated).await;
    let mut zendesk = Vec::new();
    for id in &zendesk_ids {
        zendesk.push(harness.ended_job_status(id).await);
    }
    let failed_deliveries = consumers.stop().await;
    stage("queued jobs done");

    // Workspace batches run in the request: a retry after a 503 sends the same key, and a
    // repeat of a batch that succeeded gets its first answer and creates nothing.
    for batch in 0..WORKSPACE_BATCHES {
        let answer = harness
            .workspace_batch(&format!("workspace-{batch}"), batch)
            .await;
        if answer.status != StatusCode::OK {
            print_failed_jobs(harness).await;
        }
        assert_eq!(
            (answer.status, &answer.body),
            (StatusCode::OK, &json!({})),
            "[{}] batch {batch}",
            harness.label
        );
    }
    let repeated = harness.workspace_batch("workspace-0", 0).await;
    assert_eq!(
        (repeated.status, &repeated.body),
        (StatusCode::OK, &json!({}))
    );
    assert_eq!(
        repeated.header("idempotent-replayed"),
        Some("true"),
        "[{}] a repeated batch is answered from its key",
        harness.label
    );

    stage("workspace batches done");
    let users = harness
        .get(
            Dialect::Ccai,
            &format!("{PREFIX}/config?page=1&per_page=1000"),
        )
        .await
        .body;
    let listed = harness
        .get(Dialect::Workspace, "/v2/acme/users?limit=1000&offset=0")
        .await
        .body;
    let mut users = users.as_array().expect("users").clone();
    users.sort_by_key(|user| user["email"].as_str().unwrap_or_default().to_owned());
    let mut names: Vec<String> = listed["users"]
        .as_array()
        .expect("workspace users")
        .iter()
        .filter_map(|user| user["user_name"].as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    let ids: std::collections::BTreeSet<u64> = users
        .iter()
        .filter_map(|user| user["id"].as_u64())
        .collect();
    assert_eq!(
        ids.len(),
        users.len(),
        "[{}] every user has an id of its own",
        harness.label
    );
    println!(
        "[{}] deliveries the processor reported as failed: {failed_deliveries}",
        harness.label
    );
    json!({
        "ccai": [ccai_outcome(harness, &created).await, ccai_outcome(harness, &updated).await],
        "zendesk": strip_volatile(Value::Array(zendesk)),
        "workspace": { "total_count": listed["total_count"], "names": names },
        "users": strip_volatile(Value::Array(users)),
    })
}

/// Prints the jobs that failed, with their reasons.
async fn print_failed_jobs(harness: &Harness) {
    let jobs = harness
        .get(Dialect::Ccai, &format!("{PREFIX}/jobs?per_page=100"))
        .await
        .body;
    for job in jobs.as_array().into_iter().flatten() {
        if job["status"] == "failed" {
            println!(
                "[{}] job {} failed: {}",
                harness.label, job["id"], job["failure_reason"]
            );
        }
    }
}

/// The counts and users every run must leave.
fn assert_expected(label: &str, outcome: &Value) {
    let ccai = &outcome["ccai"];
    let counts = |job: &Value| {
        (
            job["status"].as_str().unwrap_or_default().to_owned(),
            job["total_rows"].as_u64(),
            job["affected_rows"].as_u64(),
            job["failed_rows"].as_u64(),
        )
    };
    assert_eq!(
        counts(&ccai[0]),
        ("completed".to_owned(), Some(150), Some(149), Some(1)),
        "[{label}] creations: {}",
        ccai[0]
    );
    let errors = ccai[0]["update_errors"].as_array().expect("update errors");
    assert_eq!(
        errors.iter().map(|e| e["row"].as_u64()).collect::<Vec<_>>(),
        vec![Some(50)],
        "[{label}] {}",
        ccai[0]
    );
    assert_eq!(
        counts(&ccai[1]),
        ("completed".to_owned(), Some(60), Some(60), Some(0)),
        "[{label}] updates: {}",
        ccai[1]
    );

    let zendesk = outcome["zendesk"].as_array().expect("zendesk");
    for (batch, status) in zendesk.iter().enumerate() {
        assert_eq!(status["status"], "completed", "[{label}] {status}");
        let results = status["results"].as_array().expect("results");
        let described: Vec<(u64, String)> = results
            .iter()
            .map(|result| {
                (
                    result["index"].as_u64().unwrap_or(u64::MAX),
                    result["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(u64, String)> = (0..50)
            .map(|index| {
                let failed = batch == 1 && index == 25;
                (index, if failed { "Failed" } else { "Created" }.to_owned())
            })
            .collect();
        assert_eq!(described, expected, "[{label}] batch {batch}: {status}");
    }
    assert_eq!(zendesk[1]["results"][25]["error"], "DuplicateValue");

    let names: Vec<String> = (0..WORKSPACE_BATCHES * WORKSPACE_BATCH)
        .map(|i| format!("hw.{i}"))
        .collect();
    let mut names: Vec<Value> = names.into_iter().map(Value::from).collect();
    names.sort_by_key(|name| name.as_str().unwrap_or_default().to_owned());
    assert_eq!(
        outcome["workspace"],
        json!({ "total_count": 329, "names": names }),
        "[{label}] Workspace users (every user, 80 with a user name): each batch created once"
    );

    // 150 CCAI users (user49 by the updates), 99 Zendesk users, 80 Workspace users: each once.
    let users = outcome["users"].as_array().expect("users");
    let mut emails: Vec<&str> = users
        .iter()
        .map(|user| user["email"].as_str().unwrap_or_default())
        .collect();
    let listed = emails.len();
    emails.dedup();
    assert_eq!(
        (listed, emails.len()),
        (329, 329),
        "[{label}] every user stored, none twice"
    );
    let renamed = emails
        .iter()
        .filter(|email| email.starts_with("renamed"))
        .count();
    assert_eq!(renamed, 15, "[{label}] every fourth updated user renamed");
    let changed = users
        .iter()
        .filter(|user| {
            user["last_name"]
                .as_str()
                .is_some_and(|name| name.starts_with("Changed"))
        })
        .count();
    assert_eq!(changed, 60, "[{label}] every updated user changed");
}

/// Where two JSON values first differ, and how.
fn first_difference(left: &Value, right: &Value, path: &str) -> Option<String> {
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            names.into_iter().find_map(|name| {
                let path = format!("{path}/{name}");
                match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) => first_difference(x, y, &path),
                    (x, y) => Some(format!("{path}: {x:?} vs {y:?}")),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(at, (x, y))| first_difference(x, y, &format!("{path}/{at}"))),
        _ if left == right => None,
        _ => Some(format!("{path}: {left} vs {right}")),
    }
}

fn count(counts: &Value, pointer: &str) -> u64 {
    counts.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Jobs of the three dialects under 20% faults of every kind (S3: 50%) complete with exactly
/// what a run without faults leaves, and the SDK, not the client, retried the faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_with_exact_results_under_dependency_faults() {
    let started = Instant::now();
    let (clean, faulty) = tokio::join!(
        Harness::start("clean", Emulator::Own),
        Harness::start("faulty", Emulator::Own)
    );
    faulty
        .proxy
        .configure(json!({ "rate": FAULT_RATE, "rates": { "s3": S3_FAULT_RATE } }))
        .await;
    let (clean_outcome, faulty_outcome) = tokio::join!(workload(&clean), workload(&faulty));

    let clean_counts = clean.proxy.counts().await;
    let counts = faulty.proxy.counts().await;
    println!("without faults: {clean_counts}");
    println!("with faults: {counts}");
    println!(
        "client retries of 503 answers: {} (without faults: {}); {:.1} s",
        faulty.client_retries.load(Ordering::Relaxed),
        clean.client_retries.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    assert_expected("clean", &clean_outcome);
    assert_expected("faulty", &faulty_outcome);
    for part in ["ccai", "zendesk", "workspace", "users"] {
        let difference = first_difference(&faulty_outcome[part], &clean_outcome[part], part);
        assert!(
            difference.is_none(),
            "the run with faults left something else than the run without: {}",
            difference.unwrap_or_default()
        );
    }

    // The run without faults saw none, and no retry.
    assert_eq!(count(&clean_counts, "/total_faults"), 0, "{clean_counts}");
    assert_eq!(count(&clean_counts, "/retry_requests"), 0, "{clean_counts}");
    assert_eq!(clean.client_retries.load(Ordering::Relaxed), 0);

    // Every kind of fault happened, often enough to matter.
    for kind in [
        "dynamodb_throttle",
        "dynamodb_drop_before",
        "dynamodb_drop_after",
        "s3_server_error",
        "sqs_server_error",
    ] {
        let seen = count(&counts, &format!("/faults_by_service/{kind}"));
        assert!(seen >= 5, "only {seen} faults {kind}: {counts}");
    }
    for kind in ["drop_before", "drop_after", "server_error", "throttle"] {
        let seen = count(&counts, &format!("/faults/{kind}"));
        assert!(seen >= 10, "only {seen} faults {kind}: {counts}");
    }
    // The SDK sent every operation that met a fault again itself (the proxy sees one SDK
    // invocation id across its attempts).
    let faulted = count(&counts, "/faulted_invocations");
    let retried = count(&counts, "/faulted_invocations_retried");
    assert!(
        faulted > 0 && retried == faulted,
        "the SDK retried {retried} of {faulted} faulted invocations: {counts}"
    );
    // An operation the SDK gave up on had made every attempt: its retry quota never ran out.
    let unrecovered = counts["unrecovered_invocations"]
        .as_array()
        .expect("unrecovered invocations");
    let all_attempts = format!("at attempt {MAX_ATTEMPTS}");
    assert!(
        unrecovered.iter().all(|invocation| invocation
            .as_str()
            .is_some_and(|i| i.ends_with(&all_attempts))),
        "{unrecovered:?}"
    );
    // Some operations met faults on several attempts in a row, and the SDK kept going.
    assert!(count(&counts, "/max_attempt") >= 3, "{counts}");
    // The client's own retries did a small part of the work.
    let client_retries = faulty.client_retries.load(Ordering::Relaxed);
    let total_faults = count(&counts, "/total_faults");
    assert!(
        client_retries * 20 <= total_faults,
        "{client_retries} client retries for {total_faults} faults"
    );
}

/// A chunk whose writes fail on every delivery ends its job `failed` with the reason, on the
/// last delivery the queue makes, and the job stays `in_progress` until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_failing_on_every_delivery_ends_its_job_failed_with_the_reason() {
    let started = Instant::now();
    let harness = Harness::start("failing", Emulator::Shared).await;
    let users: Vec<Value> = (0..2 * ROWS_PER_CHUNK)
        .map(|i| json!({"email": format!("f{i}@example.com"), "first_name": "F", "last_name": "L"}))
        .collect();
    let id = harness
        .upload_and_proceed(&serde_json::to_string(&users).unwrap(), "failing")
        .await;

    // From now on every DynamoDB write a chunk makes (users saved in transactions, the chunk's
    // commit, its update errors) fails: throttled, a 500, or a connection dropped before the
    // request reached DynamoDB (never after: a write that happened would let the chunk
    // through). The other DynamoDB requests pass, which is what lets the processor's give-up
    // write — an UpdateItem of the job, its status change to `failed` — get through on the
    // last delivery.
    // Lifting the faults before the last delivery instead would let that delivery succeed,
    // and the job would complete rather than fail.
    harness
        .proxy
        .configure(json!({
            "rate": 1.0,
            "services": ["dynamodb"],
            "operations": ["TransactWriteItems", "BatchWriteItem"],
            "kinds": ["throttle", "server_error", "drop_before"],
        }))
        .await;

    deliver_until_given_up(&harness, id).await;

    let job = harness.job(id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (job["affected_rows"].as_u64(), job["failed_rows"].as_u64()),
        (Some(0), Some(0)),
        "no chunk was committed: {job}"
    );
    assert_the_reason_names_chunk_dependency_and_error(&job);

    // Every failing write was sent by the SDK as often as it is configured to.
    let counts = harness.proxy.counts().await;
    println!(
        "with every chunk write failing: {counts}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        count(&counts, "/faulted_invocations_retried") > 0,
        "{counts}"
    );
    assert_eq!(
        count(&counts, "/max_attempt"),
        u64::from(MAX_ATTEMPTS),
        "{counts}"
    );
    assert_eq!(
        count(&counts, "/faults/drop_after"),
        0,
        "no write got through: {counts}"
    );
}

/// Hands the job's chunks to the processor, each message its own batch, until both have had
/// their last delivery: every delivery is reported failed, and the job is `in_progress` until a
/// last delivery, `failed` after it.
async fn deliver_until_given_up(harness: &Harness, id: u64) {
    let sqs = &harness.aws.sqs;
    let queue_url = &harness.aws.settings.queue_url;
    let mut last_deliveries = 0;
    let deadline = Instant::now() + JOB_DEADLINE;
    while last_deliveries < 2 {
        assert!(Instant::now() < deadline, "the chunks were not delivered");
        let Some(messages) = receive(sqs, queue_url, 60).await else {
            continue;
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Each message is its own batch, as two Lambda instances would get them.
        let mut handled = Vec::new();
        for message in messages {
            let service = harness.processor.clone();
            handled.push(tokio::spawn(async move {
                let event = sqs_event(std::slice::from_ref(&message));
                let receives: u32 = event.records[0].attributes["ApproximateReceiveCount"]
                    .parse()
                    .unwrap();
                let response = process_sqs_batch(&service, event, None).await;
                (message, receives, response)
            }));
        }
        let mut receive_counts = Vec::new();
        for task in handled {
            let (message, receives, response) = task.await.expect("the handler panicked");
            assert_eq!(
                response.batch_item_failures.len(),
                1,
                "delivery {receives} of a chunk whose writes fail is reported as failed"
            );
            receive_counts.push(receives);
            if receives >= MAX_RECEIVES {
                // The queue moves it to the dead-letter queue.
                last_deliveries += 1;
            } else {
                release(sqs, queue_url, message.receipt_handle.unwrap_or_default()).await;
            }
        }
        let job = harness.job(id).await;
        let expected = if receive_counts.iter().any(|&r| r >= MAX_RECEIVES) {
            "failed"
        } else {
            "in_progress"
        };
        assert_eq!(
            job["status"], expected,
            "after deliveries {receive_counts:?}: {job}"
        );
    }
}

/// The failure reason names the chunk, its deliveries, the dependency and the error.
fn assert_the_reason_names_chunk_dependency_and_error(job: &Value) {
    let reason = job["failure_reason"].as_str().unwrap_or_default();
    let names_a_chunk = ["chunk 0 ", "chunk 1 "]
        .iter()
        .any(|chunk| reason.starts_with(&format!("{chunk}failed {MAX_RECEIVES} times, last: ")));
    assert!(names_a_chunk, "{reason}");
    assert!(
        reason.contains("dynamodb is unavailable"),
        "the reason names the dependency: {reason}"
    );
    let names_the_error = [
        "ThrottlingException",
        "ProvisionedThroughputExceeded",
        "InternalServerError",
        "Rate exceeded",
        "dispatch failure",
        "connection",
        "IncompleteMessage",
    ]
    .iter()
    .any(|error| reason.contains(error));
    assert!(names_the_error, "the reason names the error: {reason}");
}

/// One lost answer, injected exactly: the next DynamoDB `operation` whose request body contains
/// `matching` is applied by the emulator, and its answer dropped. The SDK sends it again.
async fn lose_next_answer(harness: &Harness, operation: &str, matching: &str) {
    harness
        .proxy
        .configure(json!({
            "rate": 1.0,
            "services": ["dynamodb"],
            "operations": [operation],
            "kinds": ["drop_after"],
            "match": matching,
            "limit": 1,
        }))
        .await;
}

/// Asserts the one lost answer was injected, and the SDK sent its request again.
async fn assert_lost_once(harness: &Harness) {
    let counts = harness.proxy.counts().await;
    assert_eq!(count(&counts, "/total_faults"), 1, "{counts}");
    assert_eq!(count(&counts, "/faults/drop_after"), 1, "{counts}");
    assert_eq!(
        count(&counts, "/faulted_invocations_retried"),
        1,
        "{counts}"
    );
}

/// Runs the queue until the job has ended.
async fn finish(harness: &Harness, id: u64) -> Value {
    let consumers = Consumers::start(harness, 1);
    let job = harness.ended_job(id).await;
    consumers.stop().await;
    job
}

/// Proceed's status change is applied but its answer lost: the SDK's retry finds the job
/// already `in_progress`, by this very proceed. The chunks must still be queued; the job
/// must not stay `in_progress` with nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_answer_to_the_start_of_a_job_still_queues_its_chunks() {
    let harness = Harness::start("lost-start", Emulator::Shared).await;
    let file = serde_json::to_string(
        &(0..25)
            .map(|i| json!({"email": format!("s{i}@example.com"), "first_name": "S", "last_name": "T"}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    lose_next_answer(&harness, "UpdateItem", "process_requested_at").await;
    let id = harness.upload_and_proceed(&file, "lost-start").await;
    assert_lost_once(&harness).await;
    let job = finish(&harness, id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["affected_rows"].as_u64(), job["failed_rows"].as_u64()),
        (Some(25), Some(0)),
        "{job}"
    );
}

/// The claim of an `Idempotency-Key` is stored but its answer lost: the SDK's retry finds the
/// key held, by this very request. The request must run, not be told that it is still
/// running (409) for the claim's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_answer_to_an_idempotency_claim_runs_the_request() {
    let harness = Harness::start("lost-claim", Emulator::Shared).await;
    lose_next_answer(&harness, "PutItem", "IDEM#").await;
    let first = harness.workspace_batch("claim", 0).await;
    assert_eq!(
        (first.status, &first.body),
        (StatusCode::OK, &json!({})),
        "the request ran"
    );
    assert_lost_once(&harness).await;
    let again = harness.workspace_batch("claim", 0).await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &json!({})));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let listed = harness.workspace_listed().await;
    assert_eq!(listed["total_count"], WORKSPACE_BATCH, "{listed}");
}

/// A new job's item is stored (with its tenant's job count) but the answer lost: the SDK's
/// retry finds the item there. That is this very job, not an id in use (a 500), nor a race for
/// the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_answer_to_the_creation_of_a_job_is_not_an_internal_error() {
    let harness = Harness::start("lost-create", Emulator::Shared).await;
    lose_next_answer(&harness, "TransactWriteItems", "JOBS#acme").await;
    let id = harness
        .upload_and_proceed(&bulk_tests::users_file(12, ""), "lost-create")
        .await;
    assert_lost_once(&harness).await;
    let job = finish(&harness, id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["affected_rows"], 12, "{job}");
    let jobs = harness
        .get(Dialect::Ccai, &format!("{PREFIX}/jobs"))
        .await
        .body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "one job: {jobs}");
}

/// A Workspace batch runs in the request. When a dependency keeps failing after the batch's
/// users were written (here: the commit of its chunk fails on every attempt the SDK makes), the
/// request answers 503, "retry later", and its job stays in progress, recorded under the
/// request's `Idempotency-Key`. The client's retry, with the same key, resumes that job instead
/// of running the batch anew (whose all-or-nothing check would find the first attempt's users
/// and refuse them as duplicates), and answers as a batch that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workspace_batch_failing_after_its_first_writes_can_be_retried() {
    let harness = Harness::start("partial-batch", Emulator::Shared).await;
    harness
        .proxy
        .configure(json!({
            "rate": 1.0,
            "services": ["dynamodb"],
            "operations": ["TransactWriteItems"],
            "kinds": ["server_error"],
            "match": "CHUNK#",
            "limit": MAX_ATTEMPTS,
        }))
        .await;
    let answer = harness.workspace_batch("partial", 0).await;
    let counts = harness.proxy.counts().await;
    assert_eq!(
        count(&counts, "/faults/server_error"),
        u64::from(MAX_ATTEMPTS),
        "the chunk's commit failed on every attempt: {counts}"
    );
    assert_eq!(
        harness.client_retries.load(Ordering::Relaxed),
        1,
        "the first request answered 503"
    );
    let listed = harness.workspace_listed().await;
    assert_eq!(listed["total_count"], WORKSPACE_BATCH, "{listed}");
    assert_eq!(
        (answer.status, &answer.body),
        (StatusCode::OK, &json!({})),
        "a retry of the batch completes it (its users exist once, created by the first attempt)"
    );
}

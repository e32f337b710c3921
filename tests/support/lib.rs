//! Test support: the same application on either store, driven through the route table, plus
//! helpers to build requests and read answers.

pub mod cases;
pub mod credential;
pub mod emulator;
pub mod expect;
pub mod iam;
pub mod local_server;
pub mod lost_commits;
pub mod moto;
pub mod runtime_api;
pub mod steps;
pub mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue as AttrValue;
use bulk_users::adapters::{aws::AwsAdapters, embedded};
use bulk_users::api::{resolve, Api, ApiRequest, ApiResponse, RouteGroup};
use bulk_users::local::LocalWorker;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, ServiceConfig, SettingsChange};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

pub const PREFIX: &str = "/apps/api/v1/bulk/users";

/// Which store implementation a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
    /// DynamoDB, S3 and SQS on the emulator that serves one request at a time, where racing
    /// conditional writes are atomic as on DynamoDB (see [`moto`]).
    AwsSerialized,
}

impl Backend {
    /// The backend for a test of racing workers: on AWS, the serialized emulator.
    pub fn for_racing_workers(self) -> Backend {
        match self {
            Backend::Aws => Backend::AwsSerialized,
            other => other,
        }
    }
}

/// The Lambda functions that serve HTTP routes (their binaries), and their route group.
pub const HTTP_FUNCTIONS: [(&str, RouteGroup); 7] = [
    ("upload", RouteGroup::Upload),
    ("proceed", RouteGroup::Proceed),
    ("status", RouteGroup::Status),
    ("jobs", RouteGroup::Jobs),
    ("reads", RouteGroup::Reads),
    ("batches", RouteGroup::Batches),
    ("directory", RouteGroup::Directory),
];

/// The function (binary) that serves a route group.
pub fn function_of_group(group: RouteGroup) -> &'static str {
    HTTP_FUNCTIONS
        .iter()
        .find(|(_, g)| *g == group)
        .map(|(name, _)| *name)
        .unwrap_or_else(|| panic!("no function serves {group:?}"))
}

enum Drain {
    Embedded {
        worker: Box<LocalWorker>,
        queue: bulk_users::adapters::embedded::SqliteWorkQueue,
        _dir: tempfile::TempDir,
    },
    Aws(Box<Deployment>),
}

/// A stack's functions, each running the service as its own principal, with the service
/// configuration of the deployment.
pub struct Deployment {
    pub stack: moto::Stack,
    pub config: ServiceConfig,
}

impl Deployment {
    /// The service as Lambda function `binary` runs it: with the clients of its principal.
    pub async fn function(&self, binary: &str) -> BulkService {
        BulkService::new(self.stack.function(binary).await.ports, self.config)
    }

    /// Serves a request as the deployment would: by the function of its route (API Gateway
    /// answers a path no route matches itself, as the route table does).
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        let group = match resolve(&request.method, &request.path) {
            Ok(route) => RouteGroup::of(route.operation),
            Err(_) => RouteGroup::All,
        };
        self.handle_group(group, request).await
    }

    /// Serves a request by the function of route group `group`, which answers 404 for the
    /// routes of other groups. `RouteGroup::All` is no function: it answers, as the
    /// administrator, only requests that no route matches.
    /// An answer 5xx prints what IAM denied the stack's functions, so that a test failing on
    /// a permission the template lacks names it.
    pub async fn handle_group(&self, group: RouteGroup, request: ApiRequest) -> ApiResponse {
        let service = match group {
            RouteGroup::All => BulkService::new(self.stack.admin.ports.clone(), self.config),
            group => self.function(function_of_group(group)).await,
        };
        let (method, path) = (request.method.clone(), request.path.clone());
        let response = Api::new(service).handle_group(group, request).await;
        if response.status().is_server_error() {
            for denial in self.stack.denials().await {
                eprintln!(
                    "{method} {path} answered {}; IAM denied {denial}",
                    response.status()
                );
            }
        }
        response
    }
}

/// The application on one backend, with two tenants (`acme`, `globex`) and their credentials.
///
/// On the embedded store one service does everything, as `bulk-local` does. On AWS the
/// application is deployed as the template deploys it: each request is served by the function
/// of its route group, and the processor, intake and sweeper run as themselves, each with the
/// clients of its own IAM principal (its template policy, enforced by the emulator), while
/// `service` (set-up and assertions) runs as the administrator.
pub struct TestApp {
    pub backend: Backend,
    /// Set-up and assertions; on AWS, as the administrator.
    pub service: BulkService,
    drain: Drain,
    pub acme: Credentials,
    pub globex: Credentials,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub tenant: String,
    pub secret: String,
}

impl Credentials {
    pub fn basic(&self) -> String {
        basic(&self.tenant, &self.secret)
    }
}

/// `X-Sdk-Date` for now, as the Huawei SDK signs it: `yyyyMMddTHHmmssZ`.
pub fn sdk_date() -> String {
    // 2022-01-07T06:40:34.000Z → 20220107T064034Z
    let now = bulk_users::model::Timestamp::now().to_string();
    format!(
        "{}{}{}T{}{}{}Z",
        &now[0..4],
        &now[5..7],
        &now[8..10],
        &now[11..13],
        &now[14..16],
        &now[17..19]
    )
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with_config(backend, ServiceConfig::default()).await
    }

    pub async fn with_config(backend: Backend, config: ServiceConfig) -> TestApp {
        let (ports, drain) = match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temp dir");
                let adapters = embedded::open(dir.path()).await.expect("embedded store");
                let service = BulkService::new(adapters.ports.clone(), config);
                let worker = LocalWorker::new(service, adapters.queue.clone(), 3);
                let drain = Drain::Embedded {
                    worker: Box::new(worker),
                    queue: adapters.queue,
                    _dir: dir,
                };
                (adapters.ports, drain)
            }
            Backend::Aws | Backend::AwsSerialized => {
                let serving = if backend == Backend::Aws {
                    moto::Serving::Threaded
                } else {
                    moto::Serving::Serialized
                };
                let n = COUNTER.fetch_add(1, Ordering::SeqCst);
                let stack = moto::fresh_stack_on(serving, &format!("t{n}")).await;
                let ports = stack.admin.ports.clone();
                (ports, Drain::Aws(Box::new(Deployment { stack, config })))
            }
        };
        let service = BulkService::new(ports, config);
        let acme = issue(&service, "acme").await;
        let globex = issue(&service, "globex").await;
        TestApp {
            backend,
            service,
            drain,
            acme,
            globex,
        }
    }

    /// The administrator's AWS adapters (table, bucket, queue and clients) of an AWS-backed
    /// app.
    pub fn aws(&self) -> Option<&AwsAdapters> {
        self.stack().map(|stack| &stack.admin)
    }

    /// Makes the tenant's next job id `first`, as if it had had `first - 1` jobs before (set
    /// beside the port, before the tenant's first job): job ids are numbered per tenant, and
    /// a test telling one tenant's ids from another's gives them ranges of their own.
    pub async fn start_job_ids_at(&self, tenant: &str, first: u64) {
        match &self.drain {
            Drain::Embedded { _dir, .. } => {
                let conn = rusqlite::Connection::open(_dir.path().join("bulk.sqlite3")).unwrap();
                conn.execute(
                    "INSERT INTO counters (name, next) VALUES ('jobs:' || ?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET next = excluded.next",
                    rusqlite::params![tenant, first as i64],
                )
                .expect("the tenant's job counter");
            }
            Drain::Aws(deployment) => {
                let aws = &deployment.stack.admin;
                aws.dynamodb
                    .update_item()
                    .table_name(&aws.settings.table)
                    .key("pk", AttrValue::S(format!("TENANT#{tenant}")))
                    .key("sk", AttrValue::S("JOBS".to_owned()))
                    .update_expression("SET job_count = :count")
                    .expression_attribute_values(":count", AttrValue::N((first - 1).to_string()))
                    .send()
                    .await
                    .expect("the tenant's job count");
            }
        }
    }

    /// What the store keeps about the tenant's user `id`, read beside the port: the row's
    /// columns and body on SQLite, the item on DynamoDB, as text.
    pub async fn raw_user(&self, tenant: &str, id: u64) -> String {
        match &self.drain {
            Drain::Embedded { _dir, .. } => {
                let conn = rusqlite::Connection::open(_dir.path().join("bulk.sqlite3")).unwrap();
                conn.query_row(
                    "SELECT json_array(email_key, external_key, name_key, agent_number, body) \
                     FROM users WHERE tenant = ?1 AND id = ?2",
                    rusqlite::params![tenant, id as i64],
                    |row| row.get(0),
                )
                .expect("the user's row")
            }
            Drain::Aws(deployment) => {
                let aws = &deployment.stack.admin;
                let item = aws
                    .dynamodb
                    .get_item()
                    .table_name(&aws.settings.table)
                    .key("pk", AttrValue::S(format!("USER#{tenant}#{id:020}")))
                    .key("sk", AttrValue::S("USER".to_owned()))
                    .consistent_read(true)
                    .send()
                    .await
                    .expect("the user's item");
                format!("{:?}", item.item.expect("the user's item"))
            }
        }
    }

    /// The stack of an AWS-backed app.
    pub fn stack(&self) -> Option<&moto::Stack> {
        match &self.drain {
            Drain::Aws(deployment) => Some(&deployment.stack),
            Drain::Embedded { .. } => None,
        }
    }

    /// The service as Lambda function `binary` runs it: on AWS with the clients of the
    /// function's own principal; on the embedded store, the one service.
    pub async fn function(&self, binary: &str) -> BulkService {
        match &self.drain {
            Drain::Aws(deployment) => deployment.function(binary).await,
            Drain::Embedded { .. } => self.service.clone(),
        }
    }

    /// Serves a request: on AWS by the function of its route, on the embedded store by the
    /// one service (as `bulk-local` does).
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        match &self.drain {
            Drain::Aws(deployment) => deployment.handle(request).await,
            Drain::Embedded { .. } => Api::new(self.service.clone()).handle(request).await,
        }
    }

    /// Serves a request by the function of route group `group`, which answers 404 for the
    /// routes of other groups.
    pub async fn handle_group(&self, group: RouteGroup, request: ApiRequest) -> ApiResponse {
        match &self.drain {
            Drain::Aws(deployment) => deployment.handle_group(group, request).await,
            Drain::Embedded { .. } => {
                Api::new(self.service.clone())
                    .handle_group(group, request)
                    .await
            }
        }
    }

    /// Runs the processor until no work is queued: the local worker on the embedded store, the
    /// SQS processor function's batch handler on messages received from the queue on AWS.
    pub async fn drain(&self) {
        match &self.drain {
            Drain::Embedded { worker, .. } => worker.run_until_idle().await.expect("worker"),
            // moto's threaded server applies racing writes to one item without a lock, so on
            // it chunks are processed one at a time; racing workers run on the serialized one.
            Drain::Aws(deployment) => {
                let consumers = if self.backend == Backend::Aws { 1 } else { 2 };
                let processor = deployment.function("processor").await;
                drain_sqs(&processor, &deployment.stack.admin, consumers).await
            }
        }
    }

    /// Loses every queued work item, as a purged queue would: taken and settled unprocessed.
    pub async fn lose_queued_work(&self) {
        match &self.drain {
            Drain::Embedded { queue, .. } => {
                let taken = queue
                    .lease(100_000, Duration::from_secs(3600))
                    .await
                    .expect("lease");
                for work in taken {
                    queue.ack(work.receipt).await.expect("ack");
                }
            }
            // Received and deleted rather than purged: SQS purges a queue once a minute.
            Drain::Aws(deployment) => {
                let admin = &deployment.stack.admin;
                loop {
                    let received = admin
                        .sqs
                        .receive_message()
                        .queue_url(&admin.settings.queue_url)
                        .max_number_of_messages(10)
                        .send()
                        .await
                        .expect("receive");
                    let messages = received.messages.unwrap_or_default();
                    if messages.is_empty() {
                        break;
                    }
                    for message in messages {
                        admin
                            .sqs
                            .delete_message()
                            .queue_url(&admin.settings.queue_url)
                            .receipt_handle(message.receipt_handle.unwrap_or_default())
                            .send()
                            .await
                            .expect("delete");
                    }
                }
            }
        }
    }

    pub async fn set_settings(&self, tenant: &str, change: SettingsChange) {
        self.service
            .update_settings(&TenantId::parse(tenant).unwrap(), change)
            .await
            .expect("settings");
    }

    /// Sends a request through the route table as `acme`.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Answer {
        self.call_as(&self.acme.basic(), method, path, body).await
    }

    pub async fn call_as(
        &self,
        authorization: &str,
        method: Method,
        path: &str,
        body: Body,
    ) -> Answer {
        let mut headers = HeaderMap::new();
        if !authorization.is_empty() {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(authorization).unwrap(),
            );
        }
        headers.insert(http::header::HOST, HeaderValue::from_static("bulk.test"));
        let (content_type, bytes) = body.encode();
        if let Some(content_type) = content_type {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type).unwrap(),
            );
        }
        Answer::from(self.handle(api_request(method, path, headers, bytes)).await)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, &format!("{PREFIX}/{path}"), Body::Empty)
            .await
    }

    /// The ids of acme's jobs, newest first (up to 100).
    pub async fn job_ids(&self) -> Vec<u64> {
        let jobs = self.get("jobs?per_page=100").await.body;
        jobs.as_array()
            .unwrap_or_else(|| panic!("a job list: {jobs}"))
            .iter()
            .map(|job| job["id"].as_u64().unwrap())
            .collect()
    }

    /// `POST upload` of a JSON file as acme.
    pub async fn upload(&self, file: &str) -> Answer {
        self.call(
            Method::POST,
            &format!("{PREFIX}/upload"),
            Body::upload(file),
        )
        .await
    }

    pub async fn proceed(&self, id: u64) -> Answer {
        self.call(
            Method::POST,
            &format!("{PREFIX}/proceed"),
            Body::Json(serde_json::json!({ "id": id })),
        )
        .await
    }

    /// Upload + proceed + drain; returns the finished job record.
    pub async fn run_job(&self, file: &str) -> Value {
        let upload = self.upload(file).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
        assert_eq!(upload.body["status"], "valid_scheme", "{}", upload.body);
        let id = upload.id();
        let proceed = self.proceed(id).await;
        assert_eq!(proceed.status, StatusCode::ACCEPTED, "{}", proceed.body);
        self.drain().await;
        self.get(&format!("jobs/{id}")).await.body
    }
}

async fn issue(service: &BulkService, tenant: &str) -> Credentials {
    let issued = service
        .create_credential(
            &TenantId::parse(tenant).unwrap(),
            &format!("{tenant}-sync"),
            None,
        )
        .await
        .expect("credential");
    Credentials {
        tenant: tenant.to_owned(),
        secret: issued.secret,
    }
}

/// The `ApproximateReceiveCount` attribute of a received message, as an SQS event carries it.
fn receive_count(message: &aws_sdk_sqs::types::Message) -> Option<(String, String)> {
    let count = message
        .attributes
        .as_ref()?
        .get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)?;
    Some(("ApproximateReceiveCount".to_owned(), count.clone()))
}

/// Receives from the queue and hands batches to the processor function's handler (`service`,
/// the processor), with `consumers` concurrent consumers (several Lambda instances), until the
/// queue is empty. The queue is read with `adapters`' client: on AWS the event source mapping
/// receives and deletes, not the function.
pub async fn drain_sqs(service: &BulkService, adapters: &AwsAdapters, consumers: usize) {
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let service = service.clone();
        let sqs = adapters.sqs.clone();
        let queue_url = adapters.settings.queue_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut idle_rounds = 0;
            while idle_rounds < 2 {
                let received = sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(30)
                    .message_system_attribute_names(
                        aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send()
                    .await
                    .expect("receive");
                let messages = received.messages.unwrap_or_default();
                if messages.is_empty() {
                    idle_rounds += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                idle_rounds = 0;
                let mut event = SqsEvent::default();
                for message in &messages {
                    let mut record = SqsMessage::default();
                    record.message_id = message.message_id.clone();
                    record.receipt_handle = message.receipt_handle.clone();
                    record.body = message.body.clone();
                    record.attributes = receive_count(message).into_iter().collect();
                    event.records.push(record);
                }
                let response = bulk_users::lambda::process_sqs_batch(&service, event, None).await;
                let failed: Vec<String> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                for message in messages {
                    let given_up = receive_count(&message).is_some_and(|(_, count)| {
                        count.parse::<u32>().unwrap_or(0) >= bulk_users::lambda::MAX_RECEIVES
                    });
                    // A failure on its last delivery goes on to the dead-letter queue: here,
                    // out of the work queue.
                    if failed.contains(&message.message_id.clone().unwrap_or_default()) && !given_up
                    {
                        // Retried at once rather than after the visibility timeout, so the
                        // drain does not end with the message still hidden.
                        sqs.change_message_visibility()
                            .queue_url(&queue_url)
                            .receipt_handle(message.receipt_handle.unwrap_or_default())
                            .visibility_timeout(0)
                            .send()
                            .await
                            .expect("make visible");
                        continue;
                    }
                    sqs.delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(message.receipt_handle.unwrap_or_default())
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("consumer");
    }
}

/// A request body.
pub enum Body {
    Empty,
    Json(Value),
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
    Multipart(Vec<Part>),
}

pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

pub const BOUNDARY: &str = "----bulk-test-boundary";

impl Body {
    /// A multipart upload form with `file` (named users.json).
    pub fn upload(file: &str) -> Body {
        Body::upload_bytes(file.as_bytes().to_vec())
    }

    pub fn upload_bytes(bytes: Vec<u8>) -> Body {
        Body::Multipart(vec![Part::file(bytes)])
    }

    fn encode(self) -> (Option<String>, Bytes) {
        match self {
            Body::Empty => (None, Bytes::new()),
            Body::Json(value) => (
                Some("application/json".to_owned()),
                Bytes::from(serde_json::to_vec(&value).unwrap()),
            ),
            Body::Raw {
                content_type,
                bytes,
            } => (content_type, Bytes::from(bytes)),
            Body::Multipart(parts) => (
                Some(format!("multipart/form-data; boundary={BOUNDARY}")),
                Bytes::from(multipart(&parts)),
            ),
        }
    }
}

impl Part {
    pub fn file(bytes: Vec<u8>) -> Part {
        Part {
            name: "file".to_owned(),
            filename: Some("users.json".to_owned()),
            bytes,
        }
    }

    /// A CSV file part (`users.csv`, `text/csv`).
    pub fn csv(text: &str) -> Part {
        Part {
            name: "file".to_owned(),
            filename: Some("users.csv".to_owned()),
            bytes: text.as_bytes().to_vec(),
        }
    }

    pub fn text(name: &str, value: &str) -> Part {
        Part {
            name: name.to_owned(),
            filename: None,
            bytes: value.as_bytes().to_vec(),
        }
    }
}

pub fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match &part.filename {
            Some(filename) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\nContent-Type: {}\r\n\r\n",
                    part.name,
                    if filename.ends_with(".csv") { "text/csv" } else { "application/json" }
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", part.name).as_bytes(),
            ),
        }
        out.extend_from_slice(&part.bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// A response, its body parsed as JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl From<ApiResponse> for Answer {
    fn from(response: ApiResponse) -> Answer {
        let (parts, bytes) = response.into_parts();
        if bytes.is_empty() && parts.status == StatusCode::NO_CONTENT {
            return Answer {
                status: parts.status,
                headers: parts.headers,
                body: Value::Null,
            };
        }
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            parts.headers.get(http::header::CONTENT_TYPE).is_some(),
            "every response has a content type"
        );
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

impl Answer {
    pub fn id(&self) -> u64 {
        self.body["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a client error whose body names `field`.
    pub fn assert_client_error(&self, status: StatusCode, field: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["field"], field, "{}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
    }
}

/// A job record's `(total_rows, affected_rows, failed_rows)`.
pub fn counts(job: &Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        job["total_rows"].as_u64(),
        job["affected_rows"].as_u64(),
        job["failed_rows"].as_u64(),
    )
}

/// A JSON user file of `count` users `user{i}@example.com`.
pub fn users_file(count: usize, extra: &str) -> String {
    let users: Vec<String> = (0..count)
        .map(|i| {
            format!(r#"{{"email":"user{i}@example.com","first_name":"First{i}","last_name":"Last{i}"{extra}}}"#)
        })
        .collect();
    format!("[{}]", users.join(",\n"))
}

/// Waits, when needed, so that the next few requests fall within one UTC minute.
pub async fn early_in_a_minute() {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into_minute > 50_000 {
        tokio::time::sleep(Duration::from_millis(60_100 - into_minute as u64)).await;
    }
}

/// A request for the route table; `target` is the path with its query string, if any.
pub fn api_request(method: Method, target: &str, headers: HeaderMap, body: Bytes) -> ApiRequest {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    ApiRequest {
        method,
        path,
        query,
        headers,
        body,
        deadline: None,
        source: None,
    }
}

/// Generates a `#[tokio::test]` per backend for a scenario `async fn(TestApp)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::TestApp::new($crate::Backend::Embedded).await).await;
                }
            )*
        }
        mod aws_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::TestApp::new($crate::Backend::Aws).await).await;
                }
            )*
        }
    };
}

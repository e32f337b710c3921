//! Hostile and broken inputs through every ingest route of a real `bulk-local` process, over
//! HTTP, so the HTTP server's own limits (oversized headers, malformed framing) are exercised
//! together with the handlers, the multipart parser and the file validator.
//!
//! The corpus is `tests/corpus/hostile/`: one file per small input, and `generated.json`
//! describing the large ones (10 MiB strings, 100,000-deep nesting, 250,000 empty objects),
//! which are built here instead of being committed. Every input goes to every ingest route:
//! as the `file` of a CCAI upload (POST and PUT), as the raw body of the JSON routes, and
//! wrapped as `{"users": …}` / `{"user": …}` / `{"user_ids": …}` so it also reaches the
//! per-user rules of the Zendesk and Workspace dialects. Request-level cases (multipart
//! framing, file names, content types, headers, transfer codings, paths and query strings)
//! follow.
//!
//! For every (input, route) the answer must be a 4xx whose body says why, or an upload
//! accepted as an `invalid_scheme` job with its scheme errors, or a Zendesk job whose every
//! user failed, or — only for the few inputs that are in fact valid (listed in
//! [`MAY_BE_VALID`]) — a documented success. Never a 5xx, a reset connection or a hang; the
//! server keeps answering and never prints a panic. What a client can see of the store is
//! compared before and after each request (every user with its `updated_at`, the job list and
//! the job PUT upload replaces the file of) and after each input (the seeded jobs, every user
//! as the Workspace dialect shows them): a rejected request changes nothing, and an
//! accepted-but-invalid one adds only its own job and changes no user.
//!
//! Failures are collected and asserted at the end, after a table of every answer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use bulk_tests::local_server::LocalServer;
use bulk_users::api::Dialect;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, ServiceConfig, SettingsChange};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const TENANT: &str = "acme";
const SECRET: &str = "hostile-inputs-secret";
const CCAI: &str = "/apps/api/v1/bulk/users";
const BOUNDARY: &str = "hostile-7MA4YWxkTrZu0gW";
/// A user id and a job id that do not exist.
const ABSENT_ID: u64 = 987_654_321;
/// How long one request may take before it counts as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Inputs that are valid after all for some routes, and what the service does with them.
const MAY_BE_VALID: &[(&str, &str)] = &[
    // A leading UTF-8 byte order mark is skipped by the job file reader (jobfile.rs).
    ("bom_utf8.json", "upload"),
    // U+FEFF, U+202E and U+200B are printable format characters, not white space: a name made
    // of them is a name.
    ("bom_utf8_inside_string.json", "upload"),
    ("bidi_and_zero_width_names.json", "upload"),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hostile")
}

// ---------------------------------------------------------------------------------------------
// The corpus

struct Input {
    name: String,
    bytes: Vec<u8>,
}

impl Input {
    fn may_be_valid(&self, route: &str) -> bool {
        MAY_BE_VALID
            .iter()
            .any(|(name, kind)| *name == self.name && route.starts_with(kind))
    }
}

/// Every committed file, then every generated input.
fn load_corpus() -> Vec<Input> {
    let dir = corpus_dir();
    let mut inputs: Vec<Input> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name != "generated.json" && name != "README.md"
        })
        .map(|path| Input {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&path).expect("corpus file"),
        })
        .collect();
    inputs.sort_by(|a, b| a.name.cmp(&b.name));
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("generated.json")).expect("generated.json"))
            .expect("generated.json is JSON");
    for entry in spec["inputs"].as_array().expect("inputs") {
        let name = entry["name"].as_str().expect("name").to_owned();
        assert!(
            !inputs.iter().any(|input| input.name == name),
            "{name} is both committed and generated"
        );
        inputs.push(Input {
            name,
            bytes: generate(&entry["parts"]),
        });
    }
    inputs
}

/// Builds a generated input: its parts concatenated (see generated.json's `about`).
fn generate(parts: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts.as_array().expect("parts") {
        let unit: Vec<u8> = match (part.get("text"), part.get("hex")) {
            (Some(text), None) => text.as_str().expect("text").as_bytes().to_vec(),
            (None, Some(hex)) => {
                let hex = hex.as_str().expect("hex");
                (0..hex.len())
                    .step_by(2)
                    .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex digits"))
                    .collect()
            }
            _ => panic!("a part is text or hex: {part}"),
        };
        let times = part.get("times").and_then(Value::as_u64).unwrap_or(1);
        let separator = part
            .get("separator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let numbered = part.get("numbered").and_then(Value::as_bool) == Some(true);
        out.reserve(unit.len() * times as usize);
        for n in 0..times {
            if n > 0 {
                out.extend_from_slice(separator.as_bytes());
            }
            if numbered {
                let text = String::from_utf8(unit.clone()).expect("numbered parts are text");
                out.extend_from_slice(text.replace("{n}", &n.to_string()).as_bytes());
            } else {
                out.extend_from_slice(&unit);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Requests

/// What a route does with an accepted request, which decides how its answer is judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Upload,
    Replace,
    Presign,
    Proceed,
    Zendesk,
    WorkspaceCreate,
    WorkspaceDelete,
}

/// How an input becomes a request body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The `file` part of a multipart form (with `id` for PUT).
    FilePart,
    /// The body as is.
    Raw,
    /// `{"<key>": <input>}`.
    Wrapped(&'static str),
}

struct BodyRoute {
    /// Short column title.
    column: &'static str,
    /// Judging key: starts with "upload" for the two upload routes.
    label: &'static str,
    method: Method,
    path: String,
    shape: Shape,
    kind: Kind,
}

/// The routes every input is sent to; `update_many?ids=` names `seeded_user`.
fn body_routes(seeded_user: u64) -> Vec<BodyRoute> {
    let route = |column, label, method: Method, path: String, shape, kind| BodyRoute {
        column,
        label,
        method,
        path,
        shape,
        kind,
    };
    let ws = format!("/v2/{TENANT}/users");
    vec![
        route(
            "up",
            "upload POST",
            Method::POST,
            format!("{CCAI}/upload"),
            Shape::FilePart,
            Kind::Upload,
        ),
        route(
            "put",
            "upload PUT",
            Method::PUT,
            format!("{CCAI}/upload"),
            Shape::FilePart,
            Kind::Replace,
        ),
        route(
            "pre",
            "presigned",
            Method::POST,
            format!("{CCAI}/upload/presigned"),
            Shape::Raw,
            Kind::Presign,
        ),
        route(
            "proc",
            "proceed",
            Method::POST,
            format!("{CCAI}/proceed"),
            Shape::Raw,
            Kind::Proceed,
        ),
        route(
            "zc",
            "create_many",
            Method::POST,
            "/api/v2/users/create_many".into(),
            Shape::Raw,
            Kind::Zendesk,
        ),
        route(
            "zc{}",
            "create_many {users}",
            Method::POST,
            "/api/v2/users/create_many.json".into(),
            Shape::Wrapped("users"),
            Kind::Zendesk,
        ),
        route(
            "zcu",
            "create_or_update_many",
            Method::POST,
            "/api/v2/users/create_or_update_many".into(),
            Shape::Raw,
            Kind::Zendesk,
        ),
        route(
            "zcu{}",
            "create_or_update_many {users}",
            Method::POST,
            "/api/v2/users/create_or_update_many".into(),
            Shape::Wrapped("users"),
            Kind::Zendesk,
        ),
        route(
            "zu",
            "update_many",
            Method::PUT,
            "/api/v2/users/update_many".into(),
            Shape::Raw,
            Kind::Zendesk,
        ),
        route(
            "zu{}",
            "update_many {users}",
            Method::PUT,
            "/api/v2/users/update_many".into(),
            Shape::Wrapped("users"),
            Kind::Zendesk,
        ),
        route(
            "zuid",
            "update_many?ids {user}",
            Method::PUT,
            format!("/api/v2/users/update_many?ids={seeded_user}"),
            Shape::Wrapped("user"),
            Kind::Zendesk,
        ),
        route(
            "zd",
            "destroy_many",
            Method::DELETE,
            "/api/v2/users/destroy_many".into(),
            Shape::Raw,
            Kind::Zendesk,
        ),
        route(
            "hc",
            "batch-create",
            Method::POST,
            format!("{ws}/batch-create"),
            Shape::Raw,
            Kind::WorkspaceCreate,
        ),
        route(
            "hc{}",
            "batch-create {users}",
            Method::POST,
            format!("{ws}/batch-create"),
            Shape::Wrapped("users"),
            Kind::WorkspaceCreate,
        ),
        route(
            "hd",
            "batch-delete",
            Method::POST,
            format!("{ws}/batch-delete"),
            Shape::Raw,
            Kind::WorkspaceDelete,
        ),
        route(
            "hd{}",
            "batch-delete {user_ids}",
            Method::POST,
            format!("{ws}/batch-delete"),
            Shape::Wrapped("user_ids"),
            Kind::WorkspaceDelete,
        ),
        route(
            "hdel",
            "DELETE users/{id}",
            Method::DELETE,
            format!("{ws}/{ABSENT_ID}"),
            Shape::Raw,
            Kind::WorkspaceDelete,
        ),
    ]
}

/// One multipart part: name, filename (raw bytes, quoted as given), content.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a [u8]>,
    bytes: &'a [u8],
}

fn file_part(bytes: &[u8]) -> Part<'_> {
    Part {
        name: "file",
        filename: Some(b"users.json"),
        bytes,
    }
}

fn id_part(id: &str) -> Part<'_> {
    Part {
        name: "id",
        filename: None,
        bytes: id.as_bytes(),
    }
}

fn multipart_with(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{}\"", part.name).as_bytes(),
        );
        if let Some(filename) = part.filename {
            out.extend_from_slice(b"; filename=\"");
            out.extend_from_slice(filename);
            out.extend_from_slice(b"\"\r\nContent-Type: application/json");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(part.bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    multipart_with(BOUNDARY, parts)
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A request as sent: over reqwest, or raw bytes over a socket.
enum Req {
    Http {
        method: Method,
        path: String,
        headers: Vec<(String, HeaderValue)>,
        body: Vec<u8>,
        /// Add the route's credential.
        auth: bool,
    },
    Raw {
        bytes: Vec<u8>,
        /// Close the sending side after the bytes (the request is cut short).
        half_close: bool,
        /// The server may hang up without an answer: what hyper does when an HTTP/2 client
        /// talks to an HTTP/1 port, where an HTTP/1 answer would be noise to the client.
        may_hang_up: bool,
    },
}

/// An answer: status, headers and body.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.chars().take(240).collect();
    text.replace('\n', " ")
}

struct Ctx {
    http: reqwest::Client,
    /// The port `bulk-local` listens on.
    port: u16,
    /// A `valid_scheme` job whose file the PUT upload route replaces.
    replace_job: u64,
    /// A user that exists (the target of `update_many?ids=`).
    seeded_user: u64,
    /// An upload job that was proceeded and completed.
    proceeded_job: u64,
    /// An upload job whose file has scheme errors.
    invalid_job: u64,
    /// The job of a refused Workspace batch (`invalid_scheme`, not an upload).
    workspace_job: u64,
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn auth_headers(&self, path: &str) -> Vec<(String, HeaderValue)> {
        let basic = |user: &str| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{SECRET}"));
            HeaderValue::from_str(&format!("Basic {token}")).unwrap()
        };
        match Dialect::of_path(path) {
            Dialect::Ccai => vec![("authorization".into(), basic(TENANT))],
            Dialect::Zendesk => vec![("authorization".into(), basic("admin@acme.test/token"))],
            Dialect::Workspace => vec![("x-auth-token".into(), HeaderValue::from_static(SECRET))],
        }
    }

    async fn send(&self, req: Req) -> Result<Reply, String> {
        match req {
            Req::Http {
                method,
                path,
                headers,
                body,
                auth,
            } => {
                let mut builder = self
                    .http
                    .request(method, self.url(&path))
                    .timeout(REQUEST_TIMEOUT);
                if auth {
                    for (name, value) in self.auth_headers(&path) {
                        builder = builder.header(name, value);
                    }
                }
                for (name, value) in headers {
                    let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
                    builder = builder.header(name, value);
                }
                builder = builder.body(body);
                let response = builder.send().await.map_err(|error| {
                    format!(
                        "no answer: {error} ({:?})",
                        std::error::Error::source(&error)
                    )
                })?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response
                    .bytes()
                    .await
                    .map_err(|error| format!("answer cut short: {error}"))?;
                Ok(Reply {
                    status,
                    headers,
                    body: body.to_vec(),
                })
            }
            Req::Raw {
                bytes, half_close, ..
            } => {
                let port = self.port;
                tokio::task::spawn_blocking(move || raw_exchange(port, &bytes, half_close))
                    .await
                    .map_err(|error| format!("raw request task: {error}"))?
            }
        }
    }

    /// A GET whose answer must be 200 with a JSON body.
    async fn read(&self, path: &str) -> (HeaderMap, Value) {
        let reply = self
            .send(Req::Http {
                method: Method::GET,
                path: path.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
                auth: true,
            })
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET {path}: {}",
            reply.excerpt()
        );
        (reply.headers.clone(), reply.json())
    }

    /// Looked at after each input: the seeded jobs no request may change (old, so off the
    /// first page of the job list), and every user as the Workspace dialect shows them.
    async fn watched(&self) -> Vec<Value> {
        let mut watched = Vec::new();
        for id in [self.proceeded_job, self.invalid_job, self.workspace_job] {
            watched.push(self.read(&format!("{CCAI}/jobs/{id}")).await.1);
        }
        watched.push(self.read(&format!("/v2/{TENANT}/users?limit=1000")).await.1);
        watched
    }

    /// What a client sees of the store. The job PUT upload replaces the file of is read again
    /// only when `replace_job` is `None` (after a request that names a job).
    async fn snapshot(&self, replace_job: Option<&Value>) -> Snapshot {
        let (_, users) = self
            .read(&format!("{CCAI}/config?page=1&per_page=1000"))
            .await;
        let (headers, jobs) = self.read(&format!("{CCAI}/jobs?page=1&per_page=10")).await;
        let jobs_total = headers
            .get("total")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .expect("Total header");
        let jobs = jobs
            .as_array()
            .expect("job list")
            .iter()
            .map(|job| (job["id"].as_u64().expect("job id"), job.clone()))
            .collect();
        let replace_job = match replace_job {
            Some(job) => job.clone(),
            None => {
                self.read(&format!("{CCAI}/jobs/{}", self.replace_job))
                    .await
                    .1
            }
        };
        Snapshot {
            users,
            jobs_total,
            jobs,
            replace_job,
        }
    }
}

const HUNG_UP: &str = "the server closed the connection without an answer";

/// Sends raw bytes and reads the answer until the server closes the connection.
fn raw_exchange(port: u16, bytes: &[u8], half_close: bool) -> Result<Reply, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|error| error.to_string())?;
    // The server may answer (and close) before it has read everything: a failed write is fine
    // as long as an answer can be read.
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        return Err(match read {
            Ok(_) => HUNG_UP.to_owned(),
            Err(error) => format!("no answer: {error}"),
        });
    }
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {}", excerpt(&answer)))?;
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("no status line: {}", excerpt(&answer)))?;
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
    }
    Ok(Reply {
        status,
        headers,
        body: answer[head_end + 4..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// The store as a client sees it

#[derive(Debug)]
struct Snapshot {
    /// `GET config`: every user with its `updated_at` (a write to a user in any dialect
    /// shows here).
    users: Value,
    /// The job list's `Total`.
    jobs_total: u64,
    /// The newest ten jobs by id (requests add jobs at the head of the list).
    jobs: BTreeMap<u64, Value>,
    /// The job the PUT upload route replaces the file of.
    replace_job: Value,
}

/// What an answer allows to have changed.
struct Allowed {
    new_jobs: std::ops::RangeInclusive<u64>,
    replace_job: bool,
}

impl Allowed {
    const NOTHING: Allowed = Allowed {
        new_jobs: 0..=0,
        replace_job: false,
    };
}

/// The differences that are not allowed; on success, the ids of the new jobs.
fn compare(
    before: &Snapshot,
    after: &Snapshot,
    allowed: &Allowed,
    replace_id: u64,
) -> Result<Vec<u64>, String> {
    let mut problems = Vec::new();
    if before.users != after.users {
        problems.push(format!(
            "users changed: {}",
            first_difference(&before.users, &after.users)
        ));
    }
    match after.jobs_total.checked_sub(before.jobs_total) {
        Some(added) if allowed.new_jobs.contains(&added) => {}
        Some(added) => problems.push(format!(
            "{added} jobs were added (allowed {:?})",
            allowed.new_jobs
        )),
        None => problems.push(format!(
            "jobs disappeared: {} → {}",
            before.jobs_total, after.jobs_total
        )),
    }
    for (id, job) in &after.jobs {
        if let Some(old) = before.jobs.get(id) {
            if old != job && !(allowed.replace_job && *id == replace_id) {
                problems.push(format!("job {id} changed: {}", first_difference(old, job)));
            }
        }
    }
    if !allowed.replace_job && before.replace_job != after.replace_job {
        problems.push(format!(
            "job {replace_id} changed: {}",
            first_difference(&before.replace_job, &after.replace_job)
        ));
    }
    if problems.is_empty() {
        let newest = before.jobs.keys().max().copied().unwrap_or(0);
        Ok(after
            .jobs
            .keys()
            .filter(|id| **id > newest)
            .copied()
            .collect())
    } else {
        Err(problems.join("; "))
    }
}

fn first_difference(before: &Value, after: &Value) -> String {
    match (before, after) {
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return format!("{} entries → {}", a.len(), b.len());
            }
            match a.iter().zip(b).find(|(x, y)| x != y) {
                Some((x, y)) => first_difference(x, y),
                None => "no difference".to_owned(),
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let changed: Vec<String> = keys
                .into_iter()
                .filter(|key| a.get(*key) != b.get(*key))
                .map(|key| {
                    format!(
                        "{key}: {} → {}",
                        short(a.get(key).unwrap_or(&Value::Null)),
                        short(b.get(key).unwrap_or(&Value::Null))
                    )
                })
                .collect();
            let id = a.get("id").or_else(|| a.get("email")).map(short);
            format!("{} {{{}}}", id.unwrap_or_default(), changed.join(", "))
        }
        _ => format!("{} → {}", short(before), short(after)),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------------
// Judging one exchange

/// One request to judge.
struct Case {
    name: String,
    route: &'static str,
    kind: Kind,
    /// The request is valid after all (documented success allowed).
    may_be_valid: bool,
    req: Req,
}

/// The answer as the table shows it, and what was wrong with it.
struct Verdict {
    code: String,
    failure: Option<String>,
}

async fn run_case(ctx: &Ctx, case: Case, before: &Snapshot) -> (Verdict, Snapshot) {
    let Case {
        name,
        route,
        kind,
        may_be_valid,
        req,
    } = case;
    let may_hang_up = matches!(
        req,
        Req::Raw {
            may_hang_up: true,
            ..
        }
    );
    let reply = ctx.send(req).await;
    let mut problems = Vec::new();
    let mut code;
    let mut allowed = Allowed::NOTHING;
    match &reply {
        Err(error) if may_hang_up && error == HUNG_UP => code = "EOF".to_owned(),
        Err(error) => {
            code = "ERR".to_owned();
            problems.push(error.clone());
        }
        Ok(reply) => {
            let status = reply.status;
            code = status.as_u16().to_string();
            if status.is_server_error() {
                let documented =
                    kind == Kind::Presign && may_be_valid && status == StatusCode::NOT_IMPLEMENTED;
                if !documented {
                    problems.push(format!("server error {status}: {}", reply.excerpt()));
                }
            } else if status.is_client_error() {
                if kind == Kind::WorkspaceCreate {
                    // A refused batch is recorded as an invalid_scheme job.
                    allowed.new_jobs = 0..=1;
                }
                if let Err(problem) = check_error_body(reply) {
                    problems.push(problem);
                }
            } else if status.is_success() {
                match accepted(ctx, kind, may_be_valid, reply).await {
                    Ok((suffix, accepted_allows)) => {
                        code.push_str(suffix);
                        allowed = accepted_allows;
                    }
                    Err(problem) => {
                        code.push('!');
                        problems.push(problem);
                        allowed.new_jobs = 0..=1;
                        allowed.replace_job = true;
                    }
                }
            } else {
                problems.push(format!("unexpected status {status}: {}", reply.excerpt()));
            }
        }
    }
    let names_a_job = matches!(kind, Kind::Replace | Kind::Proceed);
    let after = ctx
        .snapshot((!names_a_job).then_some(&before.replace_job))
        .await;
    match compare(before, &after, &allowed, ctx.replace_job) {
        Ok(new_jobs) => {
            for id in new_jobs {
                let job = &after.jobs[&id];
                let rejected_batch = matches!(&reply, Ok(r) if r.status.is_client_error());
                if rejected_batch && job["status"] != "invalid_scheme" {
                    problems.push(format!(
                        "a refused request left job {id} in status {}",
                        job["status"]
                    ));
                }
            }
        }
        Err(problem) => problems.push(format!("the store changed: {problem}")),
    }
    let failure = (!problems.is_empty())
        .then(|| format!("{name} → {route}: {code}: {}", problems.join("; ")));
    if failure.is_some() && !code.ends_with('!') {
        code.push('!');
    }
    (Verdict { code, failure }, after)
}

/// A refusal by the service says why in its dialect's error body (`message`, Zendesk
/// `description`, Workspace `error_msg`). The HTTP server's own refusals of malformed
/// requests (431, 414, bad framing) have no body.
fn check_error_body(reply: &Reply) -> Result<(), String> {
    if reply.body.is_empty() {
        return Ok(());
    }
    let body = reply.json();
    let says_why = ["message", "description", "error_msg"]
        .iter()
        .any(|key| body[key].as_str().is_some_and(|text| !text.is_empty()));
    if says_why {
        Ok(())
    } else {
        Err(format!(
            "the {} answer does not say why: {}",
            reply.status,
            reply.excerpt()
        ))
    }
}

/// Checks an accepted (2xx) answer; gives the table suffix and what it may have changed.
async fn accepted(
    ctx: &Ctx,
    kind: Kind,
    may_be_valid: bool,
    reply: &Reply,
) -> Result<(&'static str, Allowed), String> {
    let body = reply.json();
    match kind {
        Kind::Upload | Kind::Replace => {
            let id = body["id"]
                .as_u64()
                .ok_or_else(|| format!("no job id in {}", reply.excerpt()))?;
            if kind == Kind::Replace && id != ctx.replace_job {
                return Err(format!("PUT upload answered job {id}"));
            }
            let (_, job) = ctx.read(&format!("{CCAI}/jobs/{id}")).await;
            check_filename(&job)?;
            let suffix = match job["status"].as_str() {
                Some("invalid_scheme") => {
                    let (_, errors) = ctx.read(&format!("{CCAI}/errors/scheme/{id}")).await;
                    let listed = errors.as_array().map_or(0, Vec::len);
                    if listed == 0 || job["scheme_errors"].as_u64().unwrap_or(0) == 0 {
                        return Err(format!("job {id} is invalid_scheme without scheme errors"));
                    }
                    "i"
                }
                Some("valid_scheme") if may_be_valid => "v",
                other => {
                    return Err(format!(
                        "an upload of this input ended {} (job {id})",
                        other.unwrap_or("without a status")
                    ))
                }
            };
            let allowed = if kind == Kind::Upload {
                Allowed {
                    new_jobs: 1..=1,
                    replace_job: false,
                }
            } else {
                Allowed {
                    new_jobs: 0..=0,
                    replace_job: true,
                }
            };
            Ok((suffix, allowed))
        }
        Kind::Zendesk => {
            let id = body["job_status"]["id"]
                .as_str()
                .ok_or_else(|| format!("no job status id in {}", reply.excerpt()))?
                .to_owned();
            let job = wait_for_job_status(ctx, &id).await?;
            let results = job["results"].as_array().cloned().unwrap_or_default();
            if results.len() as u64 != job["total"].as_u64().unwrap_or(u64::MAX) {
                return Err(format!(
                    "job status {id} has {} results for {} users",
                    results.len(),
                    job["total"]
                ));
            }
            let applied: Vec<&Value> = results
                .iter()
                .filter(|result| result["status"] != "Failed")
                .collect();
            if let Some(first) = applied.first() {
                return Err(format!(
                    "{} hostile users were applied, the first: {}",
                    applied.len(),
                    short(first)
                ));
            }
            Ok((
                "f",
                Allowed {
                    new_jobs: 1..=1,
                    replace_job: false,
                },
            ))
        }
        Kind::Presign | Kind::Proceed | Kind::WorkspaceCreate | Kind::WorkspaceDelete => {
            Err(format!("accepted: {}", reply.excerpt()))
        }
    }
}

/// The file name a job shows has no directories, no control characters and at most 255
/// characters.
fn check_filename(job: &Value) -> Result<(), String> {
    let name = job["filename"].as_str().unwrap_or_default();
    let clean = !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
        && name.chars().count() <= 255
        && !name.is_empty();
    if clean {
        Ok(())
    } else {
        Err(format!(
            "job {} shows the file name {}",
            job["id"],
            short(&job["filename"])
        ))
    }
}

async fn wait_for_job_status(ctx: &Ctx, id: &str) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = ctx.read(&format!("/api/v2/job_statuses/{id}.json")).await;
        let job = body["job_status"].clone();
        if job["status"] == "completed" || job["status"] == "failed" {
            return Ok(job);
        }
        if Instant::now() > deadline {
            return Err(format!("job status {id} never finished: {}", short(&job)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Building requests

fn http(method: Method, path: &str, headers: Vec<(&str, HeaderValue)>, body: Vec<u8>) -> Req {
    Req::Http {
        method,
        path: path.to_owned(),
        headers: headers
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        body,
        auth: true,
    }
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value")
}

fn json_type() -> Vec<(&'static str, HeaderValue)> {
    vec![("content-type", value("application/json"))]
}

/// A request of one body route carrying one input.
fn body_request(ctx: &Ctx, route: &BodyRoute, input: &[u8]) -> Req {
    let (headers, body) = match route.shape {
        Shape::FilePart => {
            let replace = ctx.replace_job.to_string();
            let body = if route.kind == Kind::Replace {
                multipart(&[id_part(&replace), file_part(input)])
            } else {
                multipart(&[file_part(input)])
            };
            (vec![("content-type", value(&multipart_type()))], body)
        }
        Shape::Raw => (json_type(), input.to_vec()),
        Shape::Wrapped(key) => {
            let mut body = Vec::with_capacity(input.len() + key.len() + 8);
            body.extend_from_slice(format!("{{\"{key}\": ").as_bytes());
            body.extend_from_slice(input);
            body.extend_from_slice(b"}");
            (json_type(), body)
        }
    };
    http(route.method.clone(), &route.path, headers, body)
}

/// A raw HTTP/1.1 request: the request line, extra header lines, the route's credential,
/// `Host` and `Connection: close`, then the body bytes as given (framing included).
fn raw(ctx: &Ctx, request_line: &str, path_for_auth: &str, headers: &[&[u8]], body: &[u8]) -> Req {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(request_line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(format!("Host: 127.0.0.1:{}\r\n", ctx.port).as_bytes());
    for (name, value) in ctx.auth_headers(path_for_auth) {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    for header in headers {
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"Connection: close\r\n\r\n");
    bytes.extend_from_slice(body);
    Req::Raw {
        bytes,
        half_close: false,
        may_hang_up: false,
    }
}

fn cut_short(req: Req) -> Req {
    match req {
        Req::Raw { bytes, .. } => Req::Raw {
            bytes,
            half_close: true,
            may_hang_up: false,
        },
        other => other,
    }
}

/// A body in chunked transfer coding, in pieces of `piece` bytes.
fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

const VALID_FILE: &[u8] =
    br#"[{"email": "fresh@example.com", "first_name": "Fresh", "last_name": "User"}]"#;
const INVALID_FILE: &[u8] = br#"[{"email": "not-an-email", "first_name": "", "last_name": "X"}]"#;
const HOSTILE_JSON: &[u8] = br#"{"users": [{"name": "A", "email": "a@example.com"}"#;

/// Request-level cases: multipart framing, file names, form ids, content types, headers,
/// transfer codings, paths and query strings.
fn request_cases(ctx: &Ctx) -> Vec<Case> {
    let upload = format!("{CCAI}/upload");
    let mut cases = Vec::new();
    let mut add = |name: &str, route: &'static str, kind: Kind, may_be_valid: bool, req: Req| {
        cases.push(Case {
            name: name.to_owned(),
            route,
            kind,
            may_be_valid,
            req,
        })
    };
    let form = |body: Vec<u8>| {
        http(
            Method::POST,
            &upload,
            vec![("content-type", value(&multipart_type()))],
            body,
        )
    };
    let replace_form = |body: Vec<u8>| {
        http(
            Method::PUT,
            &upload,
            vec![("content-type", value(&multipart_type()))],
            body,
        )
    };
    let typed = |content_type: &[u8], body: Vec<u8>| {
        http(
            Method::POST,
            &upload,
            vec![(
                "content-type",
                HeaderValue::from_bytes(content_type).expect("header bytes"),
            )],
            body,
        )
    };
    let replace_id = ctx.replace_job.to_string();

    // --- multipart framing
    add(
        "mp_no_file_part",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart(&[id_part("1")])),
    );
    add(
        "mp_no_file_part",
        "upload PUT",
        Kind::Replace,
        false,
        replace_form(multipart(&[id_part(&replace_id)])),
    );
    add(
        "mp_only_an_unknown_field",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart(&[Part {
            name: "document",
            filename: Some(b"users.json"),
            bytes: VALID_FILE,
        }])),
    );
    add(
        "mp_no_parts_at_all",
        "upload POST",
        Kind::Upload,
        false,
        form(format!("--{BOUNDARY}--\r\n").into_bytes()),
    );
    add(
        "mp_boundary_differs_from_header",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart_with(
            "some-other-boundary",
            &[file_part(VALID_FILE)],
        )),
    );
    add(
        "mp_boundary_parameter_missing",
        "upload POST",
        Kind::Upload,
        false,
        typed(b"multipart/form-data", multipart(&[file_part(VALID_FILE)])),
    );
    add(
        "mp_boundary_parameter_empty",
        "upload POST",
        Kind::Upload,
        false,
        typed(
            b"multipart/form-data; boundary=",
            multipart(&[file_part(VALID_FILE)]),
        ),
    );
    let long_boundary = "b".repeat(200);
    add(
        "mp_boundary_200_chars",
        "upload POST",
        Kind::Upload,
        true,
        typed(
            format!("multipart/form-data; boundary={long_boundary}").as_bytes(),
            multipart_with(&long_boundary, &[file_part(VALID_FILE)]),
        ),
    );
    let mut unterminated = multipart(&[file_part(VALID_FILE)]);
    unterminated.truncate(unterminated.len() - BOUNDARY.len() - 6);
    add(
        "mp_closing_boundary_missing",
        "upload POST",
        Kind::Upload,
        false,
        form(unterminated),
    );
    add(
        "mp_empty_body",
        "upload POST",
        Kind::Upload,
        false,
        form(Vec::new()),
    );
    add(
        "mp_file_part_twice",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart(&[file_part(VALID_FILE), file_part(INVALID_FILE)])),
    );
    add(
        "mp_file_part_empty",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart(&[file_part(b"")])),
    );
    add(
        "mp_file_part_empty",
        "upload PUT",
        Kind::Replace,
        false,
        replace_form(multipart(&[id_part(&replace_id), file_part(b"")])),
    );
    add(
        "mp_file_part_without_filename",
        "upload POST",
        Kind::Upload,
        true,
        form(multipart(&[Part {
            name: "file",
            filename: None,
            bytes: VALID_FILE,
        }])),
    );
    let mut no_disposition =
        format!("--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n").into_bytes();
    no_disposition.extend_from_slice(VALID_FILE);
    no_disposition.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    add(
        "mp_part_without_content_disposition",
        "upload POST",
        Kind::Upload,
        false,
        form(no_disposition),
    );
    let mut big_part_header = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.json\"; x=\"{}\"\r\n\r\n",
        "x".repeat(100 * 1024)
    )
    .into_bytes();
    big_part_header.extend_from_slice(INVALID_FILE);
    big_part_header.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    add(
        "mp_part_header_100kb",
        "upload POST",
        Kind::Upload,
        false,
        form(big_part_header),
    );
    let mut preamble = b"this is a preamble\r\nwith lines\r\n".to_vec();
    preamble.extend_from_slice(&multipart(&[file_part(VALID_FILE)]));
    add(
        "mp_preamble_before_first_part",
        "upload POST",
        Kind::Upload,
        true,
        form(preamble),
    );
    let nested = format!(
        "--inner\r\nContent-Disposition: attachment; filename=\"a.json\"\r\n\r\n{}\r\n--inner--",
        String::from_utf8_lossy(VALID_FILE)
    );
    let mut mixed = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n"
    )
    .into_bytes();
    mixed.extend_from_slice(nested.as_bytes());
    mixed.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    add(
        "mp_nested_multipart_mixed",
        "upload POST",
        Kind::Upload,
        false,
        form(mixed),
    );
    let many: Vec<Part<'_>> = (0..10_000).map(|_| file_part(b"[]")).collect();
    add(
        "mp_10000_file_parts",
        "upload POST",
        Kind::Upload,
        false,
        form(multipart(&many)),
    );
    let lf_only: Vec<u8> = String::from_utf8_lossy(&multipart(&[file_part(VALID_FILE)]))
        .replace("\r\n", "\n")
        .into_bytes();
    add(
        "mp_bare_lf_line_endings",
        "upload POST",
        Kind::Upload,
        true,
        form(lf_only),
    );

    // --- file names: the job shows a clean name, never a path
    let names: [(&str, &[u8]); 12] = [
        ("fn_path_traversal", b"../../../../etc/passwd"),
        ("fn_windows_path_traversal", b"..\\..\\Windows\\win.ini"),
        ("fn_absolute_path", b"/etc/cron.d/users.json"),
        (
            "fn_percent_encoded_traversal",
            b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        ),
        ("fn_nul_byte", b"evil\0.json"),
        ("fn_crlf_header_injection", b"a.json\r\nX-Injected: 1"),
        ("fn_only_dots", b".."),
        ("fn_empty", b""),
        ("fn_invalid_utf8", b"\xff\xfe.json"),
        ("fn_right_to_left_override", "\u{202e}nosj.exe".as_bytes()),
        ("fn_control_characters", b"a\x07\x1b[2Jb.json"),
        ("fn_quote_inside", b"a\".json"),
    ];
    for (name, filename) in names {
        add(
            name,
            "upload POST",
            Kind::Upload,
            true,
            form(multipart(&[Part {
                name: "file",
                filename: Some(filename),
                bytes: VALID_FILE,
            }])),
        );
    }
    let long_name = "n".repeat(10_000);
    add(
        "fn_10000_chars",
        "upload POST",
        Kind::Upload,
        true,
        form(multipart(&[Part {
            name: "file",
            filename: Some(long_name.as_bytes()),
            bytes: VALID_FILE,
        }])),
    );
    add(
        "fn_path_traversal",
        "upload PUT",
        Kind::Replace,
        true,
        replace_form(multipart(&[
            id_part(&replace_id),
            Part {
                name: "file",
                filename: Some(b"../../../../etc/passwd"),
                bytes: VALID_FILE,
            },
        ])),
    );
    let mut star = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd\r\n\r\n"
    )
    .into_bytes();
    star.extend_from_slice(VALID_FILE);
    star.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    add(
        "fn_rfc5987_encoded_traversal",
        "upload POST",
        Kind::Upload,
        true,
        form(star),
    );

    // --- the id of PUT upload
    let proceeded = ctx.proceeded_job.to_string();
    let workspace = ctx.workspace_job.to_string();
    let too_long = "1".repeat(100);
    let ids: [(&str, &[u8]); 12] = [
        ("id_not_a_number", b"abc"),
        ("id_negative", b"-1"),
        ("id_zero", b"0"),
        ("id_u64_max", b"18446744073709551615"),
        ("id_over_i64_max", b"9223372036854775808"),
        ("id_over_u64_max", b"99999999999999999999999"),
        ("id_100_digits", too_long.as_bytes()),
        ("id_invalid_utf8", b"\xff\xfe"),
        ("id_with_nul", b"1\0"),
        ("id_unknown_job", b"987654321"),
        ("id_of_a_proceeded_job", proceeded.as_bytes()),
        ("id_of_another_dialects_job", workspace.as_bytes()),
    ];
    for (name, id) in ids {
        add(
            name,
            "upload PUT",
            Kind::Replace,
            false,
            replace_form(multipart(&[
                Part {
                    name: "id",
                    filename: None,
                    bytes: id,
                },
                file_part(VALID_FILE),
            ])),
        );
    }
    add(
        "id_twice",
        "upload PUT",
        Kind::Replace,
        false,
        replace_form(multipart(&[
            id_part(&replace_id),
            id_part(&replace_id),
            file_part(INVALID_FILE),
        ])),
    );
    add(
        "id_missing",
        "upload PUT",
        Kind::Replace,
        false,
        replace_form(multipart(&[file_part(INVALID_FILE)])),
    );

    // --- content types
    add(
        "ct_application_json",
        "upload POST",
        Kind::Upload,
        false,
        typed(b"application/json", VALID_FILE.to_vec()),
    );
    add(
        "ct_text_plain",
        "upload POST",
        Kind::Upload,
        false,
        typed(b"text/plain", multipart(&[file_part(VALID_FILE)])),
    );
    add(
        "ct_form_urlencoded",
        "upload POST",
        Kind::Upload,
        false,
        typed(
            b"application/x-www-form-urlencoded",
            b"file=%5B%5D".to_vec(),
        ),
    );
    add(
        "ct_missing",
        "upload POST",
        Kind::Upload,
        false,
        http(
            Method::POST,
            &upload,
            Vec::new(),
            multipart(&[file_part(VALID_FILE)]),
        ),
    );
    add(
        "ct_multipart_mixed",
        "upload POST",
        Kind::Upload,
        false,
        typed(
            format!("multipart/mixed; boundary={BOUNDARY}").as_bytes(),
            multipart(&[file_part(VALID_FILE)]),
        ),
    );
    add(
        "ct_non_ascii_bytes",
        "upload POST",
        Kind::Upload,
        false,
        typed(
            b"multipart/form-data; boundary=\xe9\xe9\xe9",
            multipart(&[file_part(VALID_FILE)]),
        ),
    );
    add(
        "ct_upper_case",
        "upload POST",
        Kind::Upload,
        true,
        typed(
            format!("MULTIPART/FORM-DATA; BOUNDARY={BOUNDARY}").as_bytes(),
            multipart(&[file_part(VALID_FILE)]),
        ),
    );
    add(
        "ct_form_urlencoded",
        "create_many",
        Kind::Zendesk,
        false,
        http(
            Method::POST,
            "/api/v2/users/create_many",
            vec![("content-type", value("application/x-www-form-urlencoded"))],
            b"users%5B%5D%5Bname%5D=Form+User&users%5B%5D%5Bemail%5D=form%40example.com".to_vec(),
        ),
    );
    add(
        "ct_multipart",
        "create_or_update_many",
        Kind::Zendesk,
        false,
        http(
            Method::POST,
            "/api/v2/users/create_or_update_many",
            vec![("content-type", value(&multipart_type()))],
            multipart(&[file_part(
                br#"{"users": [{"name": "Part User", "email": "part@example.com"}]}"#,
            )]),
        ),
    );
    add(
        "ct_multipart",
        "proceed",
        Kind::Proceed,
        false,
        http(
            Method::POST,
            &format!("{CCAI}/proceed"),
            vec![("content-type", value(&multipart_type()))],
            multipart(&[id_part(&replace_id)]),
        ),
    );
    add(
        "ct_form_urlencoded",
        "batch-create",
        Kind::WorkspaceCreate,
        false,
        http(
            Method::POST,
            &format!("/v2/{TENANT}/users/batch-create"),
            vec![("content-type", value("application/x-www-form-urlencoded"))],
            b"users=form.user".to_vec(),
        ),
    );

    // --- headers
    let padding = "p".repeat(100 * 1024);
    add(
        "hdr_100kb_extra_header",
        "upload POST",
        Kind::Upload,
        false,
        http(
            Method::POST,
            &upload,
            vec![
                ("content-type", value(&multipart_type())),
                ("x-padding", value(&padding)),
            ],
            multipart(&[file_part(INVALID_FILE)]),
        ),
    );
    let huge_auth = Req::Http {
        method: Method::POST,
        path: upload.clone(),
        headers: vec![
            ("content-type".into(), value(&multipart_type())),
            ("authorization".into(), value(&format!("Basic {padding}"))),
        ],
        body: multipart(&[file_part(VALID_FILE)]),
        auth: false,
    };
    add(
        "hdr_100kb_authorization",
        "upload POST",
        Kind::Upload,
        false,
        huge_auth,
    );
    let megabyte = "m".repeat(1024 * 1024);
    add(
        "hdr_1mb_header",
        "create_many",
        Kind::Zendesk,
        false,
        http(
            Method::POST,
            "/api/v2/users/create_many",
            vec![
                ("content-type", value("application/json")),
                ("x-padding", value(&megabyte)),
            ],
            br#"{"users": [{"name": "Big Header", "email": "bighdr@example.com"}]}"#.to_vec(),
        ),
    );
    let header_names: Vec<String> = (0..200).map(|n| format!("x-h{n}")).collect();
    let mut many_headers = vec![("content-type", value("application/json"))];
    many_headers.extend(header_names.iter().map(|name| (name.as_str(), value("1"))));
    add(
        "hdr_200_headers",
        "batch-create",
        Kind::WorkspaceCreate,
        false,
        http(
            Method::POST,
            &format!("/v2/{TENANT}/users/batch-create"),
            many_headers,
            br#"{"users": [{"user_name": "many.headers", "user_email": "mh@example.com"}]}"#
                .to_vec(),
        ),
    );
    let unauthenticated = |name: &str, header: &str, credential: &[u8], path: &str, kind: Kind| {
        let body = match kind {
            Kind::Upload => multipart(&[file_part(VALID_FILE)]),
            Kind::WorkspaceCreate => {
                br#"{"users": [{"user_name": "no.auth", "user_email": "na@example.com"}]}"#.to_vec()
            }
            _ => br#"{"users": [{"name": "No Auth", "email": "noauth@example.com"}]}"#.to_vec(),
        };
        let content_type = if kind == Kind::Upload {
            multipart_type()
        } else {
            "application/json".to_owned()
        };
        Case {
            name: name.to_owned(),
            route: match kind {
                Kind::Upload => "upload POST",
                Kind::WorkspaceCreate => "batch-create",
                _ => "create_many",
            },
            kind,
            may_be_valid: false,
            req: Req::Http {
                method: Method::POST,
                path: path.to_owned(),
                headers: vec![
                    ("content-type".into(), value(&content_type)),
                    (
                        header.to_owned(),
                        HeaderValue::from_bytes(credential).expect("header bytes"),
                    ),
                ],
                body,
                auth: false,
            },
        }
    };
    let b64 = |text: &[u8]| base64::engine::general_purpose::STANDARD.encode(text);
    let ws_create = format!("/v2/{TENANT}/users/batch-create");
    let zd_create = "/api/v2/users/create_many";
    for case in [
        unauthenticated(
            "auth_basic_not_base64",
            "authorization",
            b"Basic !!!not-base64!!!",
            &upload,
            Kind::Upload,
        ),
        unauthenticated(
            "auth_basic_without_colon",
            "authorization",
            format!("Basic {}", b64(b"acme")).as_bytes(),
            &upload,
            Kind::Upload,
        ),
        unauthenticated(
            "auth_basic_with_nul",
            "authorization",
            format!("Basic {}", b64(format!("acme\0:{SECRET}").as_bytes())).as_bytes(),
            &upload,
            Kind::Upload,
        ),
        unauthenticated(
            "auth_non_utf8_bytes",
            "authorization",
            b"Basic \xff\xfe\xfd",
            &upload,
            Kind::Upload,
        ),
        unauthenticated(
            "auth_other_tenant",
            "authorization",
            format!("Basic {}", b64(format!("other:{SECRET}").as_bytes())).as_bytes(),
            &upload,
            Kind::Upload,
        ),
        unauthenticated(
            "auth_bearer_empty",
            "authorization",
            b"Bearer ",
            zd_create,
            Kind::Zendesk,
        ),
        unauthenticated(
            "auth_bearer_100kb",
            "authorization",
            format!("Bearer {padding}").as_bytes(),
            zd_create,
            Kind::Zendesk,
        ),
        unauthenticated(
            "auth_x_auth_token_100kb",
            "x-auth-token",
            padding.as_bytes(),
            &ws_create,
            Kind::WorkspaceCreate,
        ),
        unauthenticated(
            "auth_x_auth_token_non_utf8",
            "x-auth-token",
            b"\xff\xfe",
            &ws_create,
            Kind::WorkspaceCreate,
        ),
        unauthenticated(
            "auth_signature_garbage",
            "authorization",
            b"SDK-HMAC-SHA256 Access=, SignedHeaders=;;;, Signature=zz",
            &ws_create,
            Kind::WorkspaceCreate,
        ),
    ] {
        cases.push(case);
    }
    let mut add = |name: &str, route: &'static str, kind: Kind, may_be_valid: bool, req: Req| {
        cases.push(Case {
            name: name.to_owned(),
            route,
            kind,
            may_be_valid,
            req,
        })
    };
    add(
        "hdr_forwarded_host_garbage",
        "upload POST",
        Kind::Upload,
        false,
        http(
            Method::POST,
            &upload,
            vec![
                ("content-type", value(&multipart_type())),
                ("x-forwarded-host", value("evil host\t<script>")),
                ("x-forwarded-proto", value("javascript")),
            ],
            multipart(&[file_part(INVALID_FILE)]),
        ),
    );
    add(
        "hdr_expect_100_continue",
        "upload POST",
        Kind::Upload,
        false,
        http(
            Method::POST,
            &upload,
            vec![
                ("content-type", value(&multipart_type())),
                ("expect", value("100-continue")),
            ],
            multipart(&[file_part(INVALID_FILE)]),
        ),
    );
    add(
        "hdr_content_encoding_gzip_not_gzip",
        "create_many",
        Kind::Zendesk,
        false,
        http(
            Method::POST,
            "/api/v2/users/create_many",
            vec![
                ("content-type", value("application/json")),
                ("content-encoding", value("gzip")),
            ],
            HOSTILE_JSON.to_vec(),
        ),
    );
    cases
}

/// Request-level cases sent as raw bytes: transfer codings, framing, request lines, paths.
fn raw_cases(ctx: &Ctx) -> Vec<Case> {
    let upload = format!("{CCAI}/upload");
    let zd = "/api/v2/users/create_many";
    let form = multipart(&[file_part(INVALID_FILE)]);
    let form_type = format!("Content-Type: {}", multipart_type());
    let form_type = form_type.as_bytes();
    let json_type: &[u8] = b"Content-Type: application/json";
    let length = |body: &[u8]| format!("Content-Length: {}", body.len()).into_bytes();
    let mut cases = Vec::new();
    let mut add = |name: &str, route: &'static str, kind: Kind, may_be_valid: bool, req: Req| {
        cases.push(Case {
            name: name.to_owned(),
            route,
            kind,
            may_be_valid,
            req,
        })
    };
    let post_upload = format!("POST {upload} HTTP/1.1");
    add(
        "raw_chunked_upload",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"Transfer-Encoding: chunked"],
            &chunked(&form, 7),
        ),
    );
    add(
        "raw_chunked_hostile_json",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"Transfer-Encoding: chunked"],
            &chunked(HOSTILE_JSON, 3),
        ),
    );
    add(
        "raw_chunk_size_not_hex",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"Transfer-Encoding: chunked"],
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
    );
    add(
        "raw_chunk_size_overflow",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"Transfer-Encoding: chunked"],
            b"ffffffffffffffffffff\r\nxx\r\n0\r\n\r\n",
        ),
    );
    add(
        "raw_chunked_without_last_chunk",
        "upload POST",
        Kind::Upload,
        false,
        cut_short(raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"Transfer-Encoding: chunked"],
            &chunked(&form, 5)[..form.len() / 2],
        )),
    );
    let mut short_body = form.clone();
    short_body.truncate(form.len() / 2);
    add(
        "raw_content_length_longer_than_body",
        "upload POST",
        Kind::Upload,
        false,
        cut_short(raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, &length(&form)],
            &short_body,
        )),
    );
    add(
        "raw_content_length_and_chunked",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[
                json_type,
                b"Content-Length: 4",
                b"Transfer-Encoding: chunked",
            ],
            &chunked(HOSTILE_JSON, 8),
        ),
    );
    add(
        "raw_two_different_content_lengths",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"Content-Length: 2", b"Content-Length: 10"],
            b"{}{}{}{}{}",
        ),
    );
    add(
        "raw_negative_content_length",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"Content-Length: -5"],
            b"{}",
        ),
    );
    add(
        "raw_content_length_beyond_u64",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"Content-Length: 999999999999999999999999"],
            &form,
        ),
    );
    add(
        "raw_content_length_over_the_request_limit",
        "upload POST",
        Kind::Upload,
        false,
        cut_short(raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"Content-Length: 4294967296"],
            &form,
        )),
    );
    add(
        "raw_transfer_encoding_unknown",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"Transfer-Encoding: gzip, chunked"],
            &chunked(HOSTILE_JSON, 8),
        ),
    );
    add(
        "raw_nul_in_path",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &format!("POST {CCAI}/up\0load HTTP/1.1"),
            &upload,
            &[form_type, &length(&form)],
            &form,
        ),
    );
    add(
        "raw_dot_segments_in_path",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &format!("POST {CCAI}/../users/upload HTTP/1.1"),
            &upload,
            &[form_type, &length(&form)],
            &form,
        ),
    );
    add(
        "raw_encoded_traversal_in_path",
        "DELETE users/{id}",
        Kind::WorkspaceDelete,
        false,
        raw(
            ctx,
            &format!("DELETE /v2/{TENANT}/users/..%2F..%2F..%2Fapps HTTP/1.1"),
            "/v2/",
            &[b"Content-Length: 0"],
            b"",
        ),
    );
    add(
        "raw_absolute_form_target",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &format!("POST http://evil.example{upload} HTTP/1.1"),
            &upload,
            &[form_type, &length(&form)],
            &form,
        ),
    );
    let long_path = format!("POST {upload}/{} HTTP/1.1", "a".repeat(100 * 1024));
    add(
        "raw_100kb_path",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &long_path,
            &upload,
            &[form_type, &length(&form)],
            &form,
        ),
    );
    add(
        "raw_tls_handshake_bytes",
        "upload POST",
        Kind::Upload,
        false,
        Req::Raw {
            bytes: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03hello".to_vec(),
            half_close: false,
            may_hang_up: false,
        },
    );
    add(
        "raw_header_without_colon",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"This is not a header", &length(&form)],
            &form,
        ),
    );
    add(
        "raw_obsolete_line_folding",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &post_upload,
            &upload,
            &[form_type, b"X-Folded: a", b" continued", &length(&form)],
            &form,
        ),
    );
    add(
        "raw_nul_in_header_value",
        "create_many",
        Kind::Zendesk,
        false,
        raw(
            ctx,
            &format!("POST {zd} HTTP/1.1"),
            zd,
            &[json_type, b"X-Nul: a\0b", b"Content-Length: 2"],
            b"{}",
        ),
    );
    add(
        "raw_lower_case_method",
        "upload POST",
        Kind::Upload,
        false,
        raw(
            ctx,
            &format!("post {upload} HTTP/1.1"),
            &upload,
            &[form_type, &length(&form)],
            &form,
        ),
    );
    add(
        "raw_http_1_0_without_host",
        "upload POST",
        Kind::Upload,
        false,
        Req::Raw {
            bytes: [
                format!(
                    "POST {upload} HTTP/1.0\r\nAuthorization: Basic {}\r\n{}\r\nContent-Length: {}\r\n\r\n",
                    base64::engine::general_purpose::STANDARD.encode(format!("{TENANT}:{SECRET}")),
                    String::from_utf8_lossy(form_type),
                    form.len()
                )
                .into_bytes(),
                form.clone(),
            ]
            .concat(),
            half_close: false,
            may_hang_up: false,
        },
    );
    add(
        "raw_http_2_preface",
        "upload POST",
        Kind::Upload,
        false,
        Req::Raw {
            bytes: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
            half_close: false,
            may_hang_up: true,
        },
    );
    cases
}

/// Query strings and path parameters of the routes that name users or jobs in them.
fn target_cases(ctx: &Ctx) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, route: &'static str, kind: Kind, may_be_valid: bool, req: Req| {
        cases.push(Case {
            name,
            route,
            kind,
            may_be_valid,
            req,
        })
    };
    let absent = ABSENT_ID.to_string();
    let many_ids: Vec<String> = (0..101).map(|n| (ABSENT_ID + n).to_string()).collect();
    let repeated: Vec<String> = (0..500).map(|_| format!("ids={absent}")).collect();
    let queries = [
        ("q_ids_negative", "ids=-1".to_owned()),
        ("q_ids_u64_max", "ids=18446744073709551615".to_owned()),
        ("q_ids_over_i64_max", "ids=9223372036854775808".to_owned()),
        (
            "q_ids_over_u64_max",
            "ids=99999999999999999999999".to_owned(),
        ),
        ("q_ids_101", format!("ids={}", many_ids.join(","))),
        ("q_ids_only_commas", "ids=,,,".to_owned()),
        ("q_ids_empty", "ids=".to_owned()),
        ("q_ids_invalid_utf8", "ids=%FF%FE".to_owned()),
        ("q_ids_with_nul", "ids=1%002".to_owned()),
        ("q_ids_float", "ids=1.5".to_owned()),
        (
            "q_ids_and_external_ids",
            format!("ids={absent}&external_ids=x"),
        ),
        (
            "q_external_ids_10kb",
            format!("external_ids={}", "e".repeat(10 * 1024)),
        ),
        (
            "q_external_ids_nul_and_traversal",
            "external_ids=%00,..%2F..%2F,%0D%0A".to_owned(),
        ),
        ("q_ids_repeated_500_times", repeated.join("&")),
        ("q_ids_array_brackets", format!("ids[]={absent}&ids[]=x")),
    ];
    for (name, query) in &queries {
        add(
            name.to_string(),
            "destroy_many",
            Kind::Zendesk,
            false,
            http(
                Method::DELETE,
                &format!("/api/v2/users/destroy_many?{query}"),
                Vec::new(),
                Vec::new(),
            ),
        );
    }
    let update = |query: &str, body: &[u8]| {
        http(
            Method::PUT,
            &format!("/api/v2/users/update_many?{query}"),
            json_type(),
            body.to_vec(),
        )
    };
    add(
        "q_update_ids_u64_max".into(),
        "update_many?ids {user}",
        Kind::Zendesk,
        false,
        update("ids=18446744073709551615", br#"{"user": {"notes": "x"}}"#),
    );
    add(
        "q_update_user_carries_id".into(),
        "update_many?ids {user}",
        Kind::Zendesk,
        false,
        update(
            &format!("ids={}", ctx.seeded_user),
            br#"{"user": {"id": 1, "notes": "x"}}"#,
        ),
    );
    add(
        "q_update_ids_with_users_body".into(),
        "update_many?ids {user}",
        Kind::Zendesk,
        false,
        update(
            &format!("ids={}", ctx.seeded_user),
            br#"{"users": [{"id": 1, "notes": "x"}]}"#,
        ),
    );
    add(
        "q_update_external_id_nul".into(),
        "update_many?ids {user}",
        Kind::Zendesk,
        false,
        update("external_ids=%00", br#"{"user": {"notes": "x"}}"#),
    );
    let user_ids = [
        "0",
        "-1",
        "abc",
        "1.5",
        "18446744073709551615",
        "9223372036854775808",
        "99999999999999999999",
        "%00",
        "1%00",
        "..%2F..%2Fjobs",
        "%F0%28%8C%BC",
        "%20",
    ];
    for id in user_ids {
        add(
            format!("path_user_id {id}"),
            "DELETE users/{id}",
            Kind::WorkspaceDelete,
            false,
            http(
                Method::DELETE,
                &format!("/v2/{TENANT}/users/{id}"),
                Vec::new(),
                Vec::new(),
            ),
        );
    }
    add(
        "path_user_id 10000 digits".into(),
        "DELETE users/{id}",
        Kind::WorkspaceDelete,
        false,
        http(
            Method::DELETE,
            &format!("/v2/{TENANT}/users/{}", "9".repeat(10_000)),
            Vec::new(),
            Vec::new(),
        ),
    );
    let valid_batch =
        br#"{"users": [{"user_name": "elsewhere", "user_email": "elsewhere@example.com"}]}"#;
    for project in ["other", "..%2Facme", "acme%00", "ACME"] {
        add(
            format!("path_project {project}"),
            "batch-create",
            Kind::WorkspaceCreate,
            false,
            http(
                Method::POST,
                &format!("/v2/{project}/users/batch-create"),
                json_type(),
                valid_batch.to_vec(),
            ),
        );
    }
    add(
        "presign_traversal_filename".into(),
        "presigned",
        Kind::Presign,
        // The local file store has no presigned URLs: 501, documented.
        true,
        http(
            Method::POST,
            &format!("{CCAI}/upload/presigned"),
            json_type(),
            br#"{"bytes": 10, "filename": "../../../etc/passwd\u0000.json", "proceed": true}"#
                .to_vec(),
        ),
    );
    let proceed = |id: u64| {
        http(
            Method::POST,
            &format!("{CCAI}/proceed"),
            json_type(),
            format!("{{\"id\": {id}}}").into_bytes(),
        )
    };
    add(
        "proceed_an_invalid_scheme_job".into(),
        "proceed",
        Kind::Proceed,
        false,
        proceed(ctx.invalid_job),
    );
    add(
        "proceed_another_dialects_refused_batch".into(),
        "proceed",
        Kind::Proceed,
        false,
        proceed(ctx.workspace_job),
    );
    cases
}

// ---------------------------------------------------------------------------------------------
// Seeding and the test

/// Sends a request that must succeed with `status`; its JSON body.
async fn must(ctx: &Ctx, req: Req, status: StatusCode) -> Value {
    let reply = ctx.send(req).await.expect("seeding request");
    assert_eq!(reply.status, status, "seeding: {}", reply.excerpt());
    reply.json()
}

async fn wait_for_job(ctx: &Ctx, id: u64, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = ctx.read(&format!("{CCAI}/jobs/{id}")).await;
        if job["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never became {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Users in every dialect and jobs in every state, so a request that changes what it should
/// not has something to change.
async fn seed(ctx: &mut Ctx) {
    let upload = |file: &[u8]| {
        http(
            Method::POST,
            &format!("{CCAI}/upload"),
            vec![("content-type", value(&multipart_type()))],
            multipart(&[file_part(file)]),
        )
    };
    let users = br#"[
        {"email": "seed1@example.com", "first_name": "Seed", "last_name": "One", "agent_number": "1"},
        {"email": "seed2@example.com", "first_name": "Seed", "last_name": "Two", "status": "Inactive"},
        {"email": "seed3@example.com", "first_name": "Seed", "last_name": "Three"}]"#;
    let job = must(ctx, upload(users), StatusCode::CREATED).await;
    assert_eq!(job["status"], "valid_scheme", "{job}");
    let id = job["id"].as_u64().unwrap();
    must(
        ctx,
        http(
            Method::POST,
            &format!("{CCAI}/proceed"),
            json_type(),
            format!("{{\"id\": {id}}}").into_bytes(),
        ),
        StatusCode::ACCEPTED,
    )
    .await;
    wait_for_job(ctx, id, "completed").await;
    ctx.proceeded_job = id;

    must(
        ctx,
        http(
            Method::POST,
            &format!("/v2/{TENANT}/users/batch-create"),
            json_type(),
            br#"{"users": [{"user_name": "hw.seed1", "user_email": "hw.seed1@example.com"},
                           {"user_name": "hw.seed2", "user_phone": "5550100"}]}"#
                .to_vec(),
        ),
        StatusCode::OK,
    )
    .await;
    let zendesk = must(
        ctx,
        http(
            Method::POST,
            "/api/v2/users/create_many",
            json_type(),
            br#"{"users": [{"name": "Zed Seed", "email": "zed.seed@example.com", "external_id": "seed-1"}]}"#
                .to_vec(),
        ),
        StatusCode::OK,
    )
    .await;
    let key = zendesk["job_status"]["id"].as_str().unwrap().to_owned();
    let status = wait_for_job_status(ctx, &key).await.unwrap();
    assert_eq!(status["results"][0]["status"], "Created", "{status}");

    let refused = ctx
        .send(http(
            Method::POST,
            &format!("/v2/{TENANT}/users/batch-create"),
            json_type(),
            br#"{"users": [{"user_name": "-bad-", "user_email": "nope"}]}"#.to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.excerpt()
    );
    let (_, jobs) = ctx.read(&format!("{CCAI}/jobs?per_page=1")).await;
    ctx.workspace_job = jobs[0]["id"].as_u64().unwrap();
    assert_eq!(jobs[0]["status"], "invalid_scheme", "{jobs}");

    let invalid = must(ctx, upload(INVALID_FILE), StatusCode::CREATED).await;
    assert_eq!(invalid["status"], "invalid_scheme", "{invalid}");
    ctx.invalid_job = invalid["id"].as_u64().unwrap();

    let target = must(ctx, upload(VALID_FILE), StatusCode::CREATED).await;
    assert_eq!(target["status"], "valid_scheme", "{target}");
    ctx.replace_job = target["id"].as_u64().unwrap();

    let (_, users) = ctx
        .read(&format!("{CCAI}/config?emails=seed1@example.com"))
        .await;
    ctx.seeded_user = users[0]["id"].as_u64().unwrap();
}

/// The test sends some 15,000 requests a minute: more than a tenant's default
/// `requests_per_minute`, which is set higher in the store before the server opens it.
async fn raise_request_limit(data_dir: &Path) {
    let adapters = bulk_users::adapters::embedded::open(data_dir)
        .await
        .expect("embedded store");
    let service = BulkService::new(adapters.ports.clone(), ServiceConfig::default());
    service
        .update_settings(
            &TenantId::parse(TENANT).expect("tenant"),
            SettingsChange {
                requests_per_minute: Some(100_000_000),
                ..SettingsChange::default()
            },
        )
        .await
        .expect("tenant settings");
}

/// The server still answers, and no seeded job and no user changed since the last look.
async fn check_health(ctx: &Ctx, watched: &mut Vec<Value>, after: &str) -> Result<(), String> {
    let reply = ctx
        .send(http(
            Method::GET,
            &format!("{CCAI}/template"),
            Vec::new(),
            Vec::new(),
        ))
        .await
        .map_err(|error| format!("after {after}: the server no longer answers: {error}"))?;
    if reply.status != StatusCode::OK {
        return Err(format!(
            "after {after}: GET template answered {}",
            reply.status
        ));
    }
    let now = ctx.watched().await;
    let changed: Vec<String> = watched
        .iter()
        .zip(&now)
        .filter(|(before, now)| before != now)
        .map(|(before, now)| first_difference(before, now))
        .collect();
    *watched = now;
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!("after {after}: changed: {}", changed.join("; ")))
    }
}

/// What one server's share of the work printed and found.
struct Half {
    table: Vec<String>,
    cases: Vec<String>,
    failures: Vec<String>,
    requests: usize,
}

/// A fresh `bulk-local`, seeded, takes `inputs` through every body route and then the
/// request-level cases when `with_cases` is set.
async fn run_half(inputs: Vec<Input>, width: usize, with_cases: bool) -> Half {
    let dir = tempfile::tempdir().expect("temp dir");
    raise_request_limit(dir.path()).await;
    let server = LocalServer::start_capturing(
        dir.path(),
        &[("BULK_LOCAL_TENANT", TENANT), ("BULK_LOCAL_SECRET", SECRET)],
    );
    let mut ctx = Ctx {
        http: reqwest::Client::new(),
        port: server.port,
        replace_job: 0,
        seeded_user: 0,
        proceeded_job: 0,
        invalid_job: 0,
        workspace_job: 0,
    };
    seed(&mut ctx).await;
    let mut half = Half {
        table: Vec::new(),
        cases: Vec::new(),
        failures: Vec::new(),
        requests: 0,
    };
    let mut snapshot = ctx.snapshot(None).await;
    let mut watched = ctx.watched().await;

    // Every input through every body route: one table row per input.
    let routes = body_routes(ctx.seeded_user);
    for input in &inputs {
        let row_started = Instant::now();
        let mut row = format!("{:width$}", input.name);
        for route in &routes {
            let case = Case {
                name: format!("{} ({} bytes)", input.name, input.bytes.len()),
                route: route.label,
                kind: route.kind,
                may_be_valid: input.may_be_valid(route.label),
                req: body_request(&ctx, route, &input.bytes),
            };
            let (verdict, after) = run_case(&ctx, case, &snapshot).await;
            snapshot = after;
            half.requests += 1;
            row.push_str(&format!(" {:>5}", verdict.code));
            half.failures.extend(verdict.failure);
        }
        if let Err(problem) = check_health(&ctx, &mut watched, &input.name).await {
            half.failures.push(problem);
        }
        row.push_str(&format!(" {:>7}", row_started.elapsed().as_millis()));
        half.table.push(row);
    }

    // Request-level cases.
    if with_cases {
        let mut cases = request_cases(&ctx);
        cases.extend(raw_cases(&ctx));
        cases.extend(target_cases(&ctx));
        for case in cases {
            let name = case.name.clone();
            let route = case.route;
            let (verdict, after) = run_case(&ctx, case, &snapshot).await;
            snapshot = after;
            half.requests += 1;
            half.cases
                .push(format!("{:>5}  {:<26} {}", verdict.code, route, name));
            half.failures.extend(verdict.failure);
            if let Err(problem) = check_health(&ctx, &mut watched, &name).await {
                half.failures.push(problem);
            }
        }
    }

    // Nothing the server printed shows a panic.
    let printed = server.stop_capturing();
    for line in printed.iter().filter(|line| line.contains("panicked")) {
        half.failures.push(format!("bulk-local printed: {line}"));
    }
    half
}

/// Every input of the corpus through every ingest route, and the request-level cases. The
/// work is shared by two servers running side by side, each on its own store: the inputs are
/// dealt out alternately (largest first, so both get their share of the heavy ones), the
/// request-level cases go to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_never_break_an_ingest_route() {
    let started = Instant::now();
    let mut inputs = load_corpus();
    assert!(
        inputs.len() >= 50,
        "the corpus holds {} inputs; at least 50 are wanted",
        inputs.len()
    );
    let count = inputs.len();
    let width = inputs
        .iter()
        .map(|input| input.name.len())
        .max()
        .unwrap_or(10);
    inputs.sort_by_key(|input| std::cmp::Reverse(input.bytes.len()));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (at, input) in inputs.into_iter().enumerate() {
        if at % 2 == 0 {
            second.push(input);
        } else {
            first.push(input);
        }
    }
    let (a, b) = tokio::join!(run_half(first, width, true), run_half(second, width, false));

    let mut header = format!("{:width$}", "input");
    let routes = body_routes(0);
    for route in &routes {
        header.push_str(&format!(" {:>5}", route.column));
    }
    println!("{header}      ms");
    let mut table: Vec<&String> = a.table.iter().chain(&b.table).collect();
    table.sort();
    for row in table {
        println!("{row}");
    }
    println!(
        "columns: up/put = CCAI POST/PUT upload (file part), pre = upload/presigned, \
         proc = proceed, zc/zcu/zu/zd = Zendesk create_many/create_or_update_many/update_many/\
         destroy_many, zuid = update_many?ids= with {{\"user\": input}}, hc/hd = Workspace \
         batch-create/batch-delete, hdel = DELETE users/{{id}}; {{}} = the input wrapped in \
         {{\"users\"|\"user_ids\": input}}; suffix i = invalid_scheme job with its scheme errors, \
         v = valid (documented), f = Zendesk job whose every user failed, ! = failure"
    );
    println!();
    println!("{:>5}  {:<26} case", "code", "route");
    for line in &a.cases {
        println!("{line}");
    }
    println!(
        "\n{count} inputs × {} routes and {} request-level cases ({} requests judged) in {:.1?}",
        routes.len(),
        a.cases.len(),
        a.requests + b.requests,
        started.elapsed()
    );
    let failures: Vec<&String> = a.failures.iter().chain(&b.failures).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|failure| failure.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

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
//! follow; they are data, in `tests/corpus/hostile_requests/`, as are the routes.
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
use bulk_tests::cases::{self, Vars};
use bulk_tests::expect;
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
            bytes: bytes(&entry["parts"], &Vars::new()),
        });
    }
    inputs
}

/// Bytes described in data (a generated input, a request's body, header or path): a string
/// (text whose `{names}` are filled from `vars`) or a list of parts concatenated. A part is a
/// string, or `text`, `hex` (raw bytes) or `base64` (the base64 of the text) repeated `times`
/// times (default 1) with `separator` between repetitions; with `numbered`, `{n}` in the text is
/// the repetition's number, counted from `start` (default 0). See generated.json's `about`.
fn bytes(spec: &Value, vars: &Vars) -> Vec<u8> {
    let mut out = Vec::new();
    match spec {
        Value::Array(parts) => parts
            .iter()
            .for_each(|part| push_part(part, vars, &mut out)),
        part => push_part(part, vars, &mut out),
    }
    out
}

fn push_part(part: &Value, vars: &Vars, out: &mut Vec<u8>) {
    let text = |value: &Value| vars.fill(value.as_str().expect("a text"));
    let unit: Vec<u8> = match (part, part.get("text"), part.get("hex"), part.get("base64")) {
        (Value::String(plain), ..) => vars.fill(plain).into_bytes(),
        (_, Some(value), None, None) => text(value).into_bytes(),
        (_, None, Some(hex), None) => {
            let hex = hex.as_str().expect("hex");
            (0..hex.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex digits"))
                .collect()
        }
        (_, None, None, Some(value)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text(value));
            encoded.into_bytes()
        }
        _ => panic!("a part is text, hex or base64: {part}"),
    };
    let times = part.get("times").and_then(Value::as_u64).unwrap_or(1);
    let separator = part
        .get("separator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let numbered = part.get("numbered").and_then(Value::as_bool) == Some(true);
    let start = part.get("start").and_then(Value::as_u64).unwrap_or(0);
    out.reserve(unit.len() * times as usize);
    for n in 0..times {
        if n > 0 {
            out.extend_from_slice(separator.as_bytes());
        }
        if numbered {
            let text = String::from_utf8(unit.clone()).expect("numbered parts are text");
            out.extend_from_slice(text.replace("{n}", &(start + n).to_string()).as_bytes());
        } else {
            out.extend_from_slice(&unit);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// What a route does with an accepted request, which decides how its answer is judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, PartialEq, Eq, Debug)]
enum Shape {
    /// The `file` part of a multipart form (with `id` for PUT).
    FilePart,
    /// The body as is.
    Raw,
    /// `{"<key>": <input>}`.
    Wrapped(String),
}

struct BodyRoute {
    /// Short column title.
    column: String,
    /// Judging key: starts with "upload" for the two upload routes.
    label: String,
    method: Method,
    path: String,
    shape: Shape,
    kind: Kind,
}

/// The routes every input is sent to (`hostile_requests/routes.jsonl`); their paths filled
/// from `vars` (`update_many?ids=` names the seeded user).
fn body_routes(vars: &Vars) -> Vec<BodyRoute> {
    let routes = cases::load("hostile_requests/routes.jsonl");
    let route = |spec: &Value| {
        let text = |key: &str| spec[key].as_str().expect(key).to_owned();
        BodyRoute {
            column: text("column"),
            label: text("label"),
            method: Method::from_bytes(text("method").as_bytes()).expect("method"),
            path: vars.fill(&text("path")),
            shape: match text("shape").as_str() {
                "file" => Shape::FilePart,
                "raw" => Shape::Raw,
                key => Shape::Wrapped(key.trim_matches(['{', '}']).to_owned()),
            },
            kind: serde_json::from_value(spec["kind"].clone()).expect("kind"),
        }
    };
    routes.iter().map(route).collect()
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

#[derive(Default)]
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
            .send(http(Method::GET, path, Vec::new(), Vec::new()))
            .await;
        let reply = reply.unwrap_or_else(|error| panic!("GET {path}: {error}"));
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
    route: String,
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
    let (headers, body) = match &route.shape {
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
fn raw(
    ctx: &Ctx,
    request_line: &[u8],
    path_for_auth: &str,
    headers: &[Vec<u8>],
    body: &[u8],
) -> Req {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(request_line);
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

/// What the request-level cases name as `{NAME}`: constants, and the seeded jobs and user.
fn vars(ctx: &Ctx) -> Vars {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("text");
    let invalid_form = multipart(&[file_part(INVALID_FILE)]);
    Vars::new()
        .with("CCAI", CCAI)
        .with("TENANT", TENANT)
        .with("SECRET", SECRET)
        .with("BOUNDARY", BOUNDARY)
        .with("MULTIPART", multipart_type())
        .with("ABSENT_ID", ABSENT_ID)
        .with("VALID_FILE", text(VALID_FILE))
        .with("INVALID_FILE", text(INVALID_FILE))
        .with("HOSTILE_JSON", text(HOSTILE_JSON))
        .with("VALID_FORM", text(&multipart(&[file_part(VALID_FILE)])))
        .with("INVALID_FORM", text(&invalid_form))
        .with("INVALID_FORM_LEN", invalid_form.len())
        .with("replace_job", ctx.replace_job)
        .with("seeded_user", ctx.seeded_user)
        .with("proceeded_job", ctx.proceeded_job)
        .with("invalid_job", ctx.invalid_job)
        .with("workspace_job", ctx.workspace_job)
}

/// The request-level cases (`tests/corpus/hostile_requests/`, see its README): multipart
/// framing, file names, form ids, content types and headers (`requests.jsonl`); transfer
/// codings, framing and request lines sent as raw bytes (`raw.jsonl`); query strings and path
/// parameters of the routes that name users or jobs in them (`targets.jsonl`).
fn load_cases(ctx: &Ctx) -> Vec<Case> {
    let vars = vars(ctx);
    let routes = body_routes(&vars);
    let mut all = Vec::new();
    for (file, is_raw) in [("requests", false), ("raw", true), ("targets", false)] {
        for spec in cases::load(&format!("hostile_requests/{file}.jsonl")) {
            let route = routes
                .iter()
                .find(|route| spec["route"] == route.label.as_str())
                .unwrap_or_else(|| panic!("{}: no route {}", cases::name(&spec), spec["route"]));
            let req = if is_raw {
                raw_request(ctx, &spec, route, &vars)
            } else {
                http_request(&spec, route, &vars)
            };
            all.push(Case {
                name: cases::name(&spec).to_owned(),
                route: route.label.clone(),
                kind: route.kind,
                may_be_valid: spec["valid"] == true,
                req,
            });
        }
    }
    all
}

/// A request of a route (its path unless the case gives one): its body a `form` (multipart
/// parts), a `body` (bytes, sent as multipart) or `json`; its headers the body's content type,
/// or the case's `headers`; the route's credential unless `auth` is false.
fn http_request(spec: &Value, route: &BodyRoute, vars: &Vars) -> Req {
    let text = |spec: &Value| String::from_utf8(bytes(spec, vars)).expect("text");
    let boundary = spec.get("boundary").map_or(BOUNDARY.to_owned(), text);
    let (body, content_type) = match (spec.get("form"), spec.get("body"), spec.get("json")) {
        (Some(parts), None, None) => (form(parts, &boundary, vars), Some(multipart_type())),
        (None, Some(body), None) => (bytes(body, vars), Some(multipart_type())),
        (None, None, Some(json)) => {
            let body = spaced(&vars.fill_json(json)).into_bytes();
            (body, Some("application/json".to_owned()))
        }
        (None, None, None) => (Vec::new(), None),
        _ => panic!("{}: one of form, body and json", cases::name(spec)),
    };
    let headers = match spec.get("headers").and_then(Value::as_array) {
        Some(headers) => headers.iter().flat_map(|h| header(h, vars)).collect(),
        None => content_type
            .map(|content_type| ("content-type".to_owned(), value(&content_type)))
            .into_iter()
            .collect(),
    };
    Req::Http {
        method: route.method.clone(),
        path: spec.get("path").map_or(route.path.clone(), text),
        headers,
        body,
        auth: spec["auth"] != false,
    }
}

/// A header `[name, value]`, or `[name, value, count]`: `count` headers, `{n}` in the name
/// numbering them.
fn header(spec: &Value, vars: &Vars) -> Vec<(String, HeaderValue)> {
    let name = spec[0].as_str().expect("header name");
    let value = HeaderValue::from_bytes(&bytes(&spec[1], vars)).expect("header value");
    match spec.get(2).and_then(Value::as_u64) {
        Some(count) => (0..count)
            .map(|n| (name.replace("{n}", &n.to_string()), value.clone()))
            .collect(),
        None => vec![(name.to_owned(), value)],
    }
}

/// A multipart body of parts `{"id": …}` or `{"file": …}` (named `name`, default "file", with
/// `filename`, default users.json, none when null), each repeated `times` times.
fn form(spec: &Value, boundary: &str, vars: &Vars) -> Vec<u8> {
    let mut owned = Vec::new();
    for part in spec.as_array().expect("form parts") {
        let (name, filename, content) = match (part.get("id"), part.get("file")) {
            (Some(id), None) => ("id", None, bytes(id, vars)),
            (None, Some(file)) => {
                let filename = match part.get("filename") {
                    None => Some(b"users.json".to_vec()),
                    Some(Value::Null) => None,
                    Some(filename) => Some(bytes(filename, vars)),
                };
                let name = part.get("name").and_then(Value::as_str).unwrap_or("file");
                (name, filename, bytes(file, vars))
            }
            _ => panic!("a form part is an id or a file: {part}"),
        };
        let times = part.get("times").and_then(Value::as_u64).unwrap_or(1);
        owned.extend((0..times).map(|_| (name, filename.clone(), content.clone())));
    }
    let parts: Vec<Part<'_>> = owned
        .iter()
        .map(|(name, filename, bytes)| Part {
            name,
            filename: filename.as_deref(),
            bytes,
        })
        .collect();
    multipart_with(boundary, &parts)
}

/// JSON written as the cases' bodies always were: `", "` and `": "` between items.
fn spaced(value: &Value) -> String {
    let joined = |items: Vec<String>| items.join(", ");
    match value {
        Value::Array(items) => format!("[{}]", joined(items.iter().map(spaced).collect())),
        Value::Object(fields) => {
            let fields = fields
                .iter()
                .map(|(key, value)| format!("{}: {}", Value::from(key.as_str()), spaced(value)));
            format!("{{{}}}", joined(fields.collect()))
        }
        other => other.to_string(),
    }
}

/// A raw request: `bare` bytes as they are, or the request `line`, the `headers` lines and the
/// `body` (in chunked coding of `chunked`-byte pieces; cut to half the body's length with
/// `half_body`), framed by [`raw`]; the sending side closed after it with `half_close`.
fn raw_request(ctx: &Ctx, spec: &Value, route: &BodyRoute, vars: &Vars) -> Req {
    let req = match spec.get("bare") {
        Some(bare) => Req::Raw {
            bytes: bytes(bare, vars),
            half_close: false,
            may_hang_up: spec["may_hang_up"] == true,
        },
        None => {
            let body = bytes(&spec["body"], vars);
            let mut sent = match spec.get("chunked").and_then(Value::as_u64) {
                Some(piece) => chunked(&body, piece as usize),
                None => body.clone(),
            };
            if spec["half_body"] == true {
                sent.truncate(body.len() / 2);
            }
            let headers: Vec<Vec<u8>> = (spec["headers"].as_array().into_iter().flatten())
                .map(|header| bytes(header, vars))
                .collect();
            let auth_path = spec.get("auth_path").and_then(Value::as_str);
            let line = bytes(&spec["line"], vars);
            raw(
                ctx,
                &line,
                auth_path.unwrap_or(&route.path),
                &headers,
                &sent,
            )
        }
    };
    if spec["half_close"] == true {
        cut_short(req)
    } else {
        req
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding and the test

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
/// not has something to change (`tests/corpus/hostile_requests/seed.jsonl`, see its README).
async fn seed(ctx: &mut Ctx) {
    let mut vars = vars(ctx);
    let routes = body_routes(&vars);
    for spec in cases::load("hostile_requests/seed.jsonl") {
        let what = format!("seeding {}", cases::name(&spec));
        let route = routes
            .iter()
            .find(|route| spec["route"] == route.label.as_str());
        let mut body = match route {
            Some(route) => {
                let reply = ctx.send(http_request(&spec, route, &vars)).await;
                let reply = reply.unwrap_or_else(|error| panic!("{what}: {error}"));
                let status = Some(u64::from(reply.status.as_u16()));
                assert_eq!(
                    status,
                    spec["status"].as_u64(),
                    "{what}: {}",
                    reply.excerpt()
                );
                reply.json()
            }
            None => {
                ctx.read(&vars.fill(spec["read"].as_str().expect("read")))
                    .await
                    .1
            }
        };
        if let Some(wait) = spec.get("wait_for_job") {
            let [id, status] = [0, 1].map(|at| vars.fill_json(&wait[at]));
            wait_for_job(ctx, id.as_u64().unwrap(), status.as_str().unwrap()).await;
        }
        if spec["wait_for_job_status"] == true {
            let key = body["job_status"]["id"].as_str().unwrap().to_owned();
            body = wait_for_job_status(ctx, &key).await.unwrap();
        }
        // Only its `fields`: a seeding request's `body` is what it sends.
        let fields = serde_json::json!({"fields": spec["fields"]});
        expect::check_body(&body, &fields, &what);
        for (name, pointer) in expect::table(&spec, "save") {
            let id = body.pointer(pointer.as_str().expect("a pointer"));
            let id = id.and_then(Value::as_u64);
            let id = id.unwrap_or_else(|| panic!("{what}: no {pointer} in {body}"));
            vars = vars.with(name, id);
            *match name.as_str() {
                "proceeded_job" => &mut ctx.proceeded_job,
                "workspace_job" => &mut ctx.workspace_job,
                "invalid_job" => &mut ctx.invalid_job,
                "replace_job" => &mut ctx.replace_job,
                "seeded_user" => &mut ctx.seeded_user,
                other => panic!("{what}: no seeded {other}"),
            } = id;
        }
    }
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
    let template = http(
        Method::GET,
        &format!("{CCAI}/template"),
        Vec::new(),
        Vec::new(),
    );
    let reply = ctx
        .send(template)
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
#[derive(Default)]
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
        port: server.port,
        ..Ctx::default()
    };
    seed(&mut ctx).await;
    let mut half = Half::default();
    let mut snapshot = ctx.snapshot(None).await;
    let mut watched = ctx.watched().await;

    // Every input through every body route: one table row per input.
    let routes = body_routes(&vars(&ctx));
    for input in &inputs {
        let row_started = Instant::now();
        let mut row = format!("{:width$}", input.name);
        for route in &routes {
            let case = Case {
                name: format!("{} ({} bytes)", input.name, input.bytes.len()),
                route: route.label.clone(),
                kind: route.kind,
                may_be_valid: input.may_be_valid(&route.label),
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
        for case in load_cases(&ctx) {
            let name = case.name.clone();
            let route = case.route.clone();
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
    let routes = body_routes(&Vars::new());
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
    let failures: Vec<String> = a.failures.into_iter().chain(b.failures).collect();
    let failed = failures.len();
    assert!(
        failures.is_empty(),
        "{failed} failures:\n{}",
        failures.join("\n")
    );
}

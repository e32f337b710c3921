//! Tenant isolation, for every route of the route table, on both stores.
//!
//! Tenant A (`acme`) is given real data through the API: a CCAI job proceeded and completed, a
//! job left `valid_scheme`, a job with scheme errors, a job with update errors, a Zendesk
//! `create_many` job and a Huawei Workspace batch (users with passwords). Then tenant B
//! (`globex`), with every credential form of each dialect, aims every route at A's jobs, users,
//! project and files:
//!
//! - a request naming one of A's objects is answered `404` in the dialect's error shape, and
//!   the answer is the very answer B gets for the same request naming objects that never
//!   existed (no `403`, no existence oracle, none of A's data);
//! - a selection among the caller's own data that names A's objects (`config?ids=`,
//!   `show_many?ids=`, a user name filter) answers `200` with nothing, as for unknown names;
//! - a Zendesk batch naming A's users is B's own queued job whose every result, once processed,
//!   is the result for users that never existed;
//! - routes that list the caller's own data answer `2xx` with none of A's in them;
//! - creates with A's emails, external ids and user names make B's own users;
//! - a credential presented as A's (Basic with A's tenant, A's key id with B's secret) is `401`;
//! - afterwards, every job, error log, job status, user, user list, stored file and setting of
//!   A is byte-for-byte what it was before.
//!
//! The cases are data (`tests/corpus/isolation/cases.jsonl`, see its README). The route table
//! itself is iterated: a route without a case there fails the test.

use std::cell::Cell;
use std::collections::BTreeSet;

use bulk_tests::cases::{self, Vars};
use bulk_tests::credential::Auth;
use bulk_tests::{api_request, expect, multipart, on_both_stores, Backend, Part, TestApp};
use bulk_tests::{BOUNDARY, PREFIX};
use bulk_users::api::{resolve, route_table, Dialect, Operation, PATH_ALIASES};
use bulk_users::model::TenantId;
use bulk_users::service::SettingsChange;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

on_both_stores!(tenant_b_reaches_nothing_of_tenant_a_through_any_route);

const ZENDESK: &str = "/api/v2";

// ---------------------------------------------------------------------------------------------
// Requests, credentials, answers
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Request {
    method: Method,
    /// The path and the query string.
    target: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Request {
    fn new(method: Method, target: impl Into<String>) -> Request {
        Request {
            method,
            target: target.into(),
            content_type: None,
            body: Vec::new(),
        }
    }

    fn json(method: Method, target: impl Into<String>, body: Value) -> Request {
        Request {
            content_type: Some("application/json".to_owned()),
            body: serde_json::to_vec(&body).unwrap(),
            ..Request::new(method, target)
        }
    }

    fn form(method: Method, target: impl Into<String>, parts: &[Part]) -> Request {
        Request {
            content_type: Some(format!("multipart/form-data; boundary={BOUNDARY}")),
            body: multipart(parts),
            ..Request::new(method, target)
        }
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The same request with the path spelled another way (`path` → `path'`).
    fn respelled(&self, respell: impl Fn(&str) -> String) -> Request {
        let target = match self.target.split_once('?') {
            Some((path, query)) => format!("{}?{query}", respell(path)),
            None => respell(&self.target),
        };
        Request {
            target,
            ..self.clone()
        }
    }

    /// What the request carries, for telling echoed input from leaked data.
    fn text(&self) -> String {
        format!(
            "{} {}\n{}",
            self.method,
            self.target,
            String::from_utf8_lossy(&self.body)
        )
        .to_lowercase()
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!("{} {} {body}", self.method, self.target)
    }
}

/// A credential as presented, with a label for messages (never the secret itself).
#[derive(Clone)]
struct Presented {
    label: String,
    auth: Auth,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    json: Value,
}

impl Reply {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The status and the beginning of the body, for messages.
    fn describe(&self) -> String {
        let body: String = self.body_text().chars().take(400).collect();
        format!("{} {body}", self.status)
    }

    /// Headers and body, lower-cased: what a leak check searches.
    fn text(&self) -> String {
        let mut text = String::new();
        for (name, value) in &self.headers {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push_str(&self.body_text());
        text.to_lowercase()
    }
}

async fn send(app: &TestApp, auth: &Auth, request: &Request) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("bulk.test"));
    if let Some(content_type) = &request.content_type {
        let content_type = HeaderValue::from_str(content_type).unwrap();
        headers.insert(http::header::CONTENT_TYPE, content_type);
    }
    let (method, target, body) = (&request.method, &request.target, &request.body);
    auth.add_to(&mut headers, method.as_str(), target, body);
    let api = api_request(method.clone(), target, headers, body.clone().into());
    let (parts, body) = app.handle(api).await.into_parts();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
        json,
    }
}

// ---------------------------------------------------------------------------------------------
// What tenant A has
// ---------------------------------------------------------------------------------------------

/// The objects a request may name: tenant A's (`Targets::of_a`), or objects that never existed
/// (`Targets::ghost`), to compare B's answers with.
#[derive(Clone, Debug)]
struct Targets {
    tenant: String,
    /// Every job, labelled by what it is.
    jobs: Vec<(String, u64)>,
    /// Every user.
    users: Vec<u64>,
    emails: Vec<String>,
    external_ids: Vec<String>,
    user_names: Vec<String>,
    agent_numbers: Vec<String>,
}

impl Targets {
    fn job_ids(&self) -> Vec<u64> {
        self.jobs.iter().map(|(_, id)| *id).collect()
    }

    /// The same shape, naming objects that do not exist anywhere.
    fn ghost(&self) -> Targets {
        let numbered = |prefix: &str, count: usize| -> Vec<String> {
            (0..count).map(|i| format!("{prefix}{i}")).collect()
        };
        Targets {
            tenant: "initech".to_owned(),
            jobs: self
                .jobs
                .iter()
                .enumerate()
                .map(|(i, (label, _))| (label.clone(), 900_000_100 + 10 * i as u64))
                .collect(),
            users: (0..self.users.len())
                .map(|i| 800_000_100 + 10 * i as u64)
                .collect(),
            emails: self
                .emails
                .iter()
                .enumerate()
                .map(|(i, _)| format!("ghost{i}@initech.test"))
                .collect(),
            external_ids: numbered("ghost-ext-", self.external_ids.len()),
            user_names: numbered("ghost.user", self.user_names.len()),
            agent_numbers: numbered("ghost-ag-", self.agent_numbers.len()),
        }
    }

    /// Text pairs (this → `real`) turning an answer about these objects into the answer about
    /// `real`'s.
    fn replacements(&self, real: &Targets) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for ((_, ghost), (_, id)) in self.jobs.iter().zip(&real.jobs) {
            pairs.push((job_key(*ghost), job_key(*id)));
        }
        pairs.push((self.tenant.clone(), real.tenant.clone()));
        pairs.push((self.tenant.to_uppercase(), real.tenant.to_uppercase()));
        for (from, to) in [
            (&self.emails, &real.emails),
            (&self.external_ids, &real.external_ids),
            (&self.user_names, &real.user_names),
            (&self.agent_numbers, &real.agent_numbers),
        ] {
            pairs.extend(from.iter().cloned().zip(to.iter().cloned()));
        }
        for ((_, ghost), (_, id)) in self.jobs.iter().zip(&real.jobs) {
            pairs.push((ghost.to_string(), id.to_string()));
        }
        for (ghost, id) in self.users.iter().zip(&real.users) {
            pairs.push((ghost.to_string(), id.to_string()));
        }
        pairs
    }
}

/// A job's id as the Zendesk dialect shows it.
fn job_key(id: u64) -> String {
    format!("{id:032x}")
}

/// `text` with every `from` of `pairs` replaced by its `to`; a number is replaced only where it
/// stands alone (not inside a longer number or word).
fn replace_all(text: &str, pairs: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in pairs {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(from.as_str()) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + from.len()..].chars().next();
            let alone = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
            out.push_str(&rest[..at]);
            if alone(before) && alone(after) {
                out.push_str(to);
            } else {
                out.push_str(from);
            }
            rest = &rest[at + from.len()..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// Everything of A an answer to B must never carry (lower-case): distinctive strings, and
/// numeric ids checked field by field (job ids and user ids are counted apart, so a number is
/// judged by what it is the id of).
struct Footprint {
    strings: Vec<String>,
    user_ids: BTreeSet<u64>,
    job_ids: BTreeSet<u64>,
}

impl Footprint {
    /// The problems of an answer to `request`: A's strings the request did not carry, A's ids
    /// in id fields the request did not name, links to A's jobs.
    fn leaks(&self, request: &Request, reply: &Reply) -> Vec<String> {
        let asked = request.text();
        let answered = reply.text();
        let mut leaks: Vec<String> = self
            .strings
            .iter()
            .filter(|needle| answered.contains(needle.as_str()) && !asked.contains(needle.as_str()))
            .map(|needle| format!("A's '{needle}'"))
            .collect();
        let named: BTreeSet<String> = asked
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::to_owned)
            .collect();
        let mut found = Vec::new();
        id_fields(&reply.json, &mut found);
        for (of, id) in found {
            let (user, job) = (self.user_ids.contains(&id), self.job_ids.contains(&id));
            let leaked = match of {
                IdOf::User => user,
                IdOf::Job => job,
                IdOf::Unknown => user || job,
            };
            if leaked && !named.contains(&id.to_string()) {
                leaks.push(format!("A's {of:?} id {id} in an id field"));
            }
        }
        for job in &self.job_ids {
            let link = format!("/jobs/{job}");
            for (at, _) in answered.match_indices(&link) {
                let next = answered[at + link.len()..].chars().next();
                if next.is_none_or(|c| !c.is_ascii_digit()) && !asked.contains(&link) {
                    leaks.push(format!("a link to A's job {job}"));
                }
            }
        }
        leaks
    }
}

/// What an id field names.
#[derive(Debug, Clone, Copy)]
enum IdOf {
    User,
    Job,
    Unknown,
}

/// The values of every `id`, `user_id`, `ids` and `user_ids` field at any depth (numbers and
/// numeric strings), with what they are the id of: the object an `id` is in tells.
fn id_fields(value: &Value, found: &mut Vec<(IdOf, u64)>) {
    match value {
        Value::Object(fields) => {
            let has = |names: &[&str]| names.iter().any(|name| fields.contains_key(*name));
            let of_object = if has(&["email", "first_name", "user_name", "user_email", "index"]) {
                IdOf::User
            } else if has(&["total_rows", "job_type", "link", "url", "status"]) {
                IdOf::Job
            } else {
                IdOf::Unknown
            };
            for (name, value) in fields {
                let of = match name.as_str() {
                    "id" => Some(of_object),
                    "user_id" | "user_ids" | "ids" => Some(IdOf::User),
                    _ => None,
                };
                if let Some(of) = of {
                    let values = match value {
                        Value::Array(items) => items.clone(),
                        other => vec![other.clone()],
                    };
                    for value in values {
                        let id = match &value {
                            Value::Number(number) => number.as_u64(),
                            // A decimal id; not a Zendesk job key (32 hex digits, zero-padded).
                            Value::String(text) if !text.starts_with('0') => {
                                text.parse::<u64>().ok()
                            }
                            _ => None,
                        };
                        found.extend(id.map(|id| (of, id)));
                    }
                }
                id_fields(value, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| id_fields(item, found)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The cases: what B sends through each route, and what it must get
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    /// `404` in the dialect's error shape; the same answer as for objects that never existed.
    NotFound,
    /// `200`: a selection among the caller's own data naming A's objects, which match nothing;
    /// the same answer as for objects that never existed.
    NoMatch,
    /// `2xx`: the caller's own data, none of A's.
    Own,
    /// `200` with a queued job of B's own naming A's users; once processed, its results are
    /// those of the same job naming users that never existed, every one `Failed`.
    Queued,
    /// `2xx`: B creates its own objects with A's emails, external ids and user names (run after
    /// every other case, then processed and checked).
    Create,
}

struct Case {
    request: Request,
    expect: Expect,
}

impl Targets {
    /// What the cases name as `{name}`: these objects, and the dialects' path prefixes.
    fn vars(&self) -> Vars {
        let labelled = self
            .jobs
            .iter()
            .map(|(label, id)| (label.clone(), json!(id)));
        Vars::new()
            .with("PREFIX", PREFIX)
            .with("ZENDESK", ZENDESK)
            .with("tenant", self.tenant.clone())
            .with("TENANT", self.tenant.to_uppercase())
            .with("jobs", self.job_ids())
            .with("job", Value::Object(labelled.collect()))
            .with("job_count", self.jobs.len())
            .with(
                "job_keys",
                self.job_ids().into_iter().map(job_key).collect::<Vec<_>>(),
            )
            .with("users", self.users.clone())
            .with("emails", self.emails.clone())
            .with("external_ids", self.external_ids.clone())
            .with("user_names", self.user_names.clone())
            .with("agent_numbers", self.agent_numbers.clone())
    }
}

/// The cases of one operation (`tests/corpus/isolation/cases.jsonl`, see its README), naming the
/// objects of `t` (A's, or ghosts to compare with). Every operation of the route table must
/// have at least one.
fn cases(table: &[Value], operation: Operation, t: &Targets) -> Vec<Case> {
    let vars = t.vars();
    let mut cases = Vec::new();
    for spec in table
        .iter()
        .filter(|spec| spec["operation"] == format!("{operation:?}"))
    {
        let expect: Expect = serde_json::from_value(spec["expect"].clone()).expect("expect");
        let items = match spec.get("each").and_then(Value::as_str) {
            Some(list) => vars
                .get(list)
                .and_then(Value::as_array)
                .expect(list)
                .clone(),
            None => vec![Value::Null],
        };
        for item in items {
            let vars = vars.clone().with("it", item);
            let requests = requests(spec, &vars).into_iter();
            cases.extend(requests.map(|request| Case { request, expect }));
        }
    }
    cases
}

/// The requests of a case: one per `targets` (or its `target`), with its `json` or `form`
/// (`id`, a `file` as text or JSON, and its `filename`).
fn requests(spec: &Value, vars: &Vars) -> Vec<Request> {
    let method = Method::from_bytes(spec["method"].as_str().expect("method").as_bytes()).unwrap();
    let targets = match spec.get("targets").and_then(Value::as_array) {
        Some(targets) => targets.iter().collect(),
        None => vec![&spec["target"]],
    };
    let text = |value: &Value| vars.fill(value.as_str().expect("a text"));
    let request = |target: &Value| match (spec.get("json"), spec.get("form")) {
        (Some(json), None) => Request::json(method.clone(), text(target), vars.fill_json(json)),
        (None, Some(form)) => {
            let mut parts: Vec<Part> = form
                .get("id")
                .map(|id| Part::text("id", &text(id)))
                .into_iter()
                .collect();
            let file = match &form["file"] {
                Value::String(file) => vars.fill(file),
                json => vars.fill_json(json).to_string(),
            };
            parts.push(Part {
                name: "file".to_owned(),
                filename: Some(text(&form["filename"])),
                bytes: file.into_bytes(),
            });
            Request::form(method.clone(), text(target), &parts)
        }
        _ => Request::new(method.clone(), text(target)),
    };
    targets.into_iter().map(request).collect()
}

/// The other spellings a route accepts: the CCAI path aliases, the Zendesk `.json` suffix.
fn respellings(dialect: Dialect, request: &Request) -> Vec<Request> {
    match dialect {
        Dialect::Ccai => PATH_ALIASES
            .iter()
            .filter(|(_, canonical)| request.path().starts_with(canonical))
            .map(|(alias, canonical)| {
                request.respelled(|path| format!("{alias}{}", &path[canonical.len()..]))
            })
            .collect(),
        Dialect::Zendesk if !request.path().ends_with(".json") => {
            vec![request.respelled(|path| format!("{path}.json"))]
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

/// Each dialect's credential forms, for a tenant's secret.
#[derive(Default)]
struct Credentials {
    ccai: Vec<Presented>,
    zendesk: Vec<Presented>,
    workspace: Vec<Presented>,
}

impl Credentials {
    fn of(&self, dialect: Dialect) -> &[Presented] {
        match dialect {
            Dialect::Ccai => &self.ccai,
            Dialect::Zendesk => &self.zendesk,
            Dialect::Workspace => &self.workspace,
        }
    }
}

async fn key_id(app: &TestApp, tenant: &str) -> String {
    app.service
        .credentials(&TenantId::parse(tenant).unwrap())
        .await
        .unwrap()
        .first()
        .map(|credential| credential.key_id.clone())
        .expect("a credential")
}

/// A's credentials; B's, in every form each dialect takes; and B's secret presented as A's
/// (`tests/corpus/isolation/credentials.jsonl`).
async fn credentials(app: &TestApp) -> [Credentials; 3] {
    let vars = Vars::new()
        .with("A_SECRET", &*app.acme.secret)
        .with("B_SECRET", &*app.globex.secret)
        .with("B_KEY_ID", key_id(app, "globex").await)
        .with("A_KEY_ID", key_id(app, "acme").await);
    let table = cases::load("isolation/credentials.jsonl");
    ["a", "b", "impostor"].map(|of| {
        let mut credentials = Credentials::default();
        for spec in table.iter().filter(|spec| spec["of"] == of) {
            let label = spec["label"].as_str().expect("label").to_owned();
            let presented = Presented {
                label,
                auth: Auth::of_case(spec, &vars),
            };
            match spec["dialect"].as_str() {
                Some("ccai") => credentials.ccai.push(presented),
                Some("zendesk") => credentials.zendesk.push(presented),
                Some("workspace") => credentials.workspace.push(presented),
                other => panic!("no dialect {other:?}"),
            }
        }
        credentials
    })
}

/// One case naming A's objects, with its operation and the same request naming ghosts.
type Step = (Operation, Case, Request);

/// The cases of every route of the table, each resolving to its route; a route without cases
/// and a case of no route fail the test.
fn plan(a: &Targets, ghost: &Targets) -> Vec<Step> {
    let table = cases::load("isolation/cases.jsonl");
    for spec in &table {
        assert!(
            route_table()
                .iter()
                .any(|route| spec["operation"] == format!("{:?}", route.operation)),
            "a case of no operation of the route table: {spec}"
        );
    }
    let mut unmapped = Vec::new();
    let mut plan = Vec::new();
    for spec in route_table() {
        let real = cases(&table, spec.operation, a);
        let ghosts = cases(&table, spec.operation, ghost);
        if real.is_empty() {
            unmapped.push(format!(
                "{} {} ({:?})",
                spec.method, spec.pattern, spec.operation
            ));
        }
        assert_eq!(real.len(), ghosts.len());
        for (real, ghost) in real.into_iter().zip(ghosts) {
            let route = resolve(&real.request.method, real.request.path())
                .unwrap_or_else(|miss| panic!("{}: {miss:?}", real.request.describe()));
            assert_eq!(
                route.operation,
                spec.operation,
                "the case {} is not a case of {} {}",
                real.request.describe(),
                spec.method,
                spec.pattern
            );
            plan.push((spec.operation, real, ghost.request));
        }
    }
    assert!(
        unmapped.is_empty(),
        "routes of the route table without an isolation case (add one to \
         tests/corpus/isolation/cases.jsonl): {unmapped:?}"
    );
    plan
}

/// Tenant B at work against A's objects.
struct Run<'a> {
    app: &'a TestApp,
    b: Credentials,
    impostor: Credentials,
    footprint: Footprint,
    /// Turning an answer about ghosts into the answer about A's objects.
    replacements: Vec<(String, String)>,
    requests: Cell<usize>,
}

/// What a problem with an answer names: the operation, the credential, the request and the
/// answer.
fn context(
    operation: Operation,
    credential: &Presented,
    request: &Request,
    reply: &Reply,
) -> String {
    let (request, reply) = (request.describe(), reply.describe());
    format!("{operation:?} [{}] {request} → {reply}", credential.label)
}

/// One of B's queued jobs naming A's users: context, job key, and its ghost twin's key.
type Queued = (String, String, String);

impl Run<'_> {
    async fn send(&self, auth: &Auth, request: &Request) -> Reply {
        self.requests.set(self.requests.get() + 1);
        send(self.app, auth, request).await
    }

    /// Phase 1, one case: sent in every spelling by each of B's credentials (its queued jobs
    /// answered with their ghost twins) and refused to each impostor; then no oracle.
    async fn probe(&self, step: &Step, problems: &mut Vec<String>) -> Vec<Queued> {
        let (operation, real, ghost_request) = step;
        let dialect = Dialect::of(*operation);
        let compared = matches!(real.expect, Expect::NotFound | Expect::NoMatch);
        let mut spellings = vec![real.request.clone()];
        if compared {
            spellings.extend(respellings(dialect, &real.request));
        }
        let mut queued = Vec::new();
        for request in &spellings {
            for credential in self.b.of(dialect) {
                let reply = self.send(&credential.auth, request).await;
                let context = context(*operation, credential, request, &reply);
                let found = check(
                    self.app,
                    *operation,
                    real.expect,
                    request,
                    &reply,
                    &self.footprint,
                );
                problems.extend(found.into_iter().map(|p| format!("{p}: {context}")));
                let key = reply.json["job_status"]["id"].as_str();
                if let (Expect::Queued, Some(key)) = (real.expect, key) {
                    // The ghost twin, sent by the same credential.
                    let twin = self.send(&credential.auth, ghost_request).await;
                    match twin.json["job_status"]["id"].as_str() {
                        Some(twin_key) => {
                            queued.push((context, key.to_owned(), twin_key.to_owned()))
                        }
                        None => problems.push(format!(
                            "the ghost twin was not queued ({} {}): {context}",
                            twin.status,
                            twin.body_text()
                        )),
                    }
                }
            }
            for credential in self.impostor.of(dialect) {
                let reply = self.send(&credential.auth, request).await;
                let context = context(*operation, credential, request, &reply);
                if reply.status != StatusCode::UNAUTHORIZED {
                    problems.push(format!("expected 401: {context}"));
                }
                let leaks = self.footprint.leaks(request, &reply).into_iter();
                problems.extend(leaks.map(|leak| format!("leak ({leak}): {context}")));
            }
        }
        // B's queued jobs are worked off case by case: a tenant may only have so many jobs in
        // progress (max_concurrent_jobs).
        if real.expect == Expect::Queued {
            self.app.drain().await;
        }
        if compared {
            problems.extend(self.no_oracle(step).await);
        }
        queued
    }

    /// No existence oracle: the answer about A's objects is the answer about objects that
    /// never existed.
    async fn no_oracle(&self, (operation, real, ghost_request): &Step) -> Option<String> {
        let credential = &self.b.of(Dialect::of(*operation))[0];
        let reply = self.send(&credential.auth, &real.request).await;
        let twin = self.send(&credential.auth, ghost_request).await;
        let twin_body = replace_all(&twin.body_text(), &self.replacements);
        (reply.status != twin.status || reply.body_text() != twin_body).then(|| format!(
            "an oracle: {operation:?} {} → {} {}, but for objects that never existed {} → {} {} (as A's: {twin_body})",
            real.request.describe(),
            reply.status,
            reply.body_text(),
            ghost_request.describe(),
            twin.status,
            twin.body_text()
        ))
    }

    /// A job status as `auth` reads it.
    async fn job_status(&self, auth: &Auth, key: &str) -> Reply {
        let target = format!("{ZENDESK}/job_statuses/{key}");
        send(self.app, auth, &Request::new(Method::GET, target)).await
    }

    /// B's processed job naming A's users: its results are those for users that never existed,
    /// and every user failed.
    async fn check_queued(&self, (context, key, twin_key): &Queued) -> Vec<String> {
        let b_zendesk = &self.b.zendesk[1].auth;
        let status = self.job_status(b_zendesk, key).await;
        let twin = self.job_status(b_zendesk, twin_key).await;
        let results = &status.json["job_status"]["results"];
        // Compared as text: the twin's, with its ghosts turned into A's objects.
        let real_results = results.to_string();
        let twin_results = twin.json["job_status"]["results"].to_string();
        let twin_results = replace_all(&twin_results, &self.replacements);
        let mut problems = Vec::new();
        if status.json["job_status"]["status"] != "completed" {
            problems.push(format!(
                "B's job {key} did not complete: {} ({context})",
                status.body_text()
            ));
        }
        if real_results != twin_results {
            problems.push(format!(
                "an oracle: B's job naming A's users has the results {results}, naming users that never existed {twin_results} (as A's) ({context})"
            ));
        }
        let all_failed = results.as_array().is_some_and(|results| {
            !results.is_empty() && results.iter().all(|result| result["status"] == "Failed")
        });
        if !all_failed {
            problems.push(format!("B's job touched a user: {results} ({context})"));
        }
        problems
    }

    /// Phase 2, one of B's own creates with A's emails, external ids and user names, processed:
    /// B gets new users of its own. Answers the ids of the users a Zendesk create made.
    async fn create(&self, (operation, real, _): &Step, problems: &mut Vec<String>) -> Vec<u64> {
        let dialect = Dialect::of(*operation);
        let credential = &self.b.of(dialect)[0];
        let reply = self.send(&credential.auth, &real.request).await;
        let context = context(*operation, credential, &real.request, &reply);
        let found = check(
            self.app,
            *operation,
            Expect::Create,
            &real.request,
            &reply,
            &self.footprint,
        );
        problems.extend(found.into_iter().map(|p| format!("{p}: {context}")));
        if *operation == Operation::Upload {
            let proceed = json!({"id": reply.json["id"]});
            let proceed = Request::json(Method::POST, format!("{PREFIX}/proceed"), proceed);
            let proceed = send(self.app, &credential.auth, &proceed).await;
            assert_eq!(
                proceed.status,
                StatusCode::ACCEPTED,
                "{}",
                proceed.body_text()
            );
        }
        self.app.drain().await;
        match dialect {
            Dialect::Zendesk => {
                let key = reply.json["job_status"]["id"].as_str().unwrap_or_default();
                let status = self.job_status(&credential.auth, key).await;
                let results = status.json["job_status"]["results"].as_array().cloned();
                let results = results.unwrap_or_default();
                if results.is_empty() || !results.iter().all(|result| result["status"] == "Created")
                {
                    problems.push(format!(
                        "B's create did not create B's own users: {} ({context})",
                        status.body_text()
                    ));
                }
                results
                    .iter()
                    .filter_map(|result| result["id"].as_u64())
                    .collect()
            }
            Dialect::Ccai => {
                let id = reply.json["id"].as_u64().unwrap_or_default();
                let job = Request::new(Method::GET, format!("{PREFIX}/jobs/{id}"));
                let job = send(self.app, &credential.auth, &job).await;
                if job.json["status"] != "completed"
                    || job.json["affected_rows"] != 2
                    || job.json["failed_rows"] != 0
                {
                    problems.push(format!(
                        "B's upload did not create B's own users: {} ({context})",
                        job.body_text()
                    ));
                }
                Vec::new()
            }
            Dialect::Workspace => Vec::new(),
        }
    }

    /// B's users: its own 8, none of A's ids.
    async fn b_has_only_its_own_users(&self, b_created: &[u64]) -> Vec<String> {
        let config = Request::new(Method::GET, format!("{PREFIX}/config?page=1&per_page=1000"));
        let b_users = send(self.app, &self.b.ccai[0].auth, &config).await;
        let b_ids: Vec<u64> = (b_users.json.as_array().into_iter().flatten())
            .filter_map(|user| user["id"].as_u64())
            .collect();
        let list = Request::new(Method::GET, "/v2/globex/users?limit=1000");
        let b_list = send(self.app, &self.b.workspace[0].auth, &list).await;
        let b_workspace_ids: Vec<u64> = (b_list.json["users"].as_array().into_iter().flatten())
            .filter_map(|user| user["id"].as_str()?.parse().ok())
            .collect();
        let mut problems = Vec::new();
        if b_ids.len() != 8 || b_workspace_ids.len() != 8 {
            problems.push(format!(
                "B has not exactly its 8 own users (2 uploaded, 2 + 2 by Zendesk, 2 by Workspace): {} / {}",
                b_users.body_text(),
                b_list.body_text()
            ));
        }
        for id in b_ids.iter().chain(&b_workspace_ids).chain(b_created) {
            if self.footprint.user_ids.contains(id) {
                problems.push(format!("B's user {id} is one of A's"));
            }
        }
        problems
    }
}

async fn tenant_b_reaches_nothing_of_tenant_a_through_any_route(app: TestApp) {
    let started = std::time::Instant::now();
    let [a, b, impostor] = credentials(&app).await;
    // Job ids are numbered per tenant: A's start far above any B makes, so that an answer to
    // B naming one of A's ids is a leak, not B's own job of the same number.
    app.start_job_ids_at(&app.acme.tenant, 700_001).await;
    let a_targets = set_up_tenant_a(&app, &a).await;
    let ghost = a_targets.ghost();
    let run = Run {
        app: &app,
        b,
        impostor,
        footprint: footprint_of(&app, &a, &a_targets).await,
        replacements: ghost.replacements(&a_targets),
        requests: Cell::new(0),
    };
    let before = snapshot(&app, &a, &a_targets).await;
    println!(
        "{:?}: tenant A set up in {:?}: jobs {:?}, users {:?}",
        app.backend,
        started.elapsed(),
        a_targets.jobs,
        a_targets.users
    );
    let plan = plan(&a_targets, &ghost);
    let mut problems: Vec<String> = Vec::new();

    // Phase 1: everything but B's own creates.
    let mut queued = Vec::new();
    for step in plan.iter().filter(|(_, c, _)| c.expect != Expect::Create) {
        queued.extend(run.probe(step, &mut problems).await);
    }
    app.drain().await;
    for job in &queued {
        problems.extend(run.check_queued(job).await);
    }

    // Phase 2: B's own creates, each processed before the next.
    let mut b_created: Vec<u64> = Vec::new();
    for step in plan.iter().filter(|(_, c, _)| c.expect == Expect::Create) {
        b_created.extend(run.create(step, &mut problems).await);
    }
    problems.extend(run.b_has_only_its_own_users(&b_created).await);

    // Nothing of A changed.
    let after = snapshot(&app, &a, &a_targets).await;
    assert_eq!(before.len(), after.len());
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        if was != is {
            problems.push(format!("A's {what} changed:\nbefore: {was}\nafter:  {is}"));
        }
    }

    println!(
        "{:?}: {} routes, {} requests by B, {} of B's jobs naming A's users checked, in {:?}",
        app.backend,
        route_table().len(),
        run.requests.get(),
        queued.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} isolation problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The problems of one answer to B.
fn check(
    app: &TestApp,
    operation: Operation,
    expect: Expect,
    request: &Request,
    reply: &Reply,
    footprint: &Footprint,
) -> Vec<String> {
    let mut problems = Vec::new();
    let status = reply.status;
    // The local file store has no presigned URLs: `upload/presigned` answers 501 there by design
    // (documented), whoever asks; it names nothing of A's.
    let presign_unsupported = operation == Operation::PresignUpload
        && app.backend == Backend::Embedded
        && status == StatusCode::NOT_IMPLEMENTED;
    if status == StatusCode::FORBIDDEN {
        problems.push("403 confirms that A's object exists".to_owned());
    }
    if status.is_server_error() && !presign_unsupported {
        problems.push("a server error".to_owned());
    }
    if status != StatusCode::NO_CONTENT && reply.headers.get(http::header::CONTENT_TYPE).is_none() {
        problems.push("no content type".to_owned());
    }
    problems.extend(
        footprint
            .leaks(request, reply)
            .into_iter()
            .map(|leak| format!("leak ({leak})")),
    );
    let dialect = Dialect::of(operation);
    match expect {
        Expect::NotFound => {
            if status != StatusCode::NOT_FOUND {
                problems.push("expected 404".to_owned());
            }
            let shape = match dialect {
                Dialect::Ccai => reply.json["error"] == "not_found",
                Dialect::Zendesk => reply.json["error"] == "RecordNotFound",
                Dialect::Workspace => reply.json["error_code"] == "WKS.0202",
            };
            if !shape {
                problems.push(format!("not the {dialect:?} dialect's not-found body"));
            }
        }
        Expect::NoMatch => {
            if status != StatusCode::OK {
                problems.push("expected 200".to_owned());
            }
        }
        Expect::Own | Expect::Create => {
            if !status.is_success() && !presign_unsupported {
                problems.push("expected 2xx".to_owned());
            }
        }
        Expect::Queued => {
            if status != StatusCode::OK || reply.json["job_status"]["status"] != "queued" {
                problems.push("expected 200 with a queued job status".to_owned());
            }
        }
    }
    problems
}

/// Proceeds A's job `id` and works it off.
async fn proceed_as_a(app: &TestApp, a: &Credentials, id: u64) {
    let proceed = Request::json(Method::POST, format!("{PREFIX}/proceed"), json!({"id": id}));
    let proceeded = send(app, &a.ccai[0].auth, &proceed).await;
    let text = proceeded.body_text();
    assert_eq!(proceeded.status, StatusCode::ACCEPTED, "{text}");
    app.drain().await;
}

/// Gives tenant A real data through the API (`tests/corpus/isolation/tenant_a.jsonl`, see its
/// README) and answers what it has.
async fn set_up_tenant_a(app: &TestApp, a: &Credentials) -> Targets {
    app.set_settings(
        "acme",
        SettingsChange {
            roles: Some(vec!["Agent".into(), "Acmeonlyrole".into()]),
            teams: Some(vec!["Sales".into(), "Acmeonlyteam".into()]),
            ..SettingsChange::default()
        },
    )
    .await;
    let vars = Vars::new().with("PREFIX", PREFIX).with("ZENDESK", ZENDESK);
    let mut jobs = Vec::new();
    for step in cases::load("isolation/tenant_a.jsonl") {
        let request = requests(&step, &vars).remove(0);
        let auth = &a.of(Dialect::of_path(request.path()))[0].auth;
        let reply = send(app, auth, &request).await;
        let what = format!("{}: {}", request.describe(), reply.body_text());
        if let Some(status) = step["status"].as_u64() {
            assert_eq!(u64::from(reply.status.as_u16()), status, "{what}");
        }
        expect::check_body(&reply.json, &step, &what);
        let key = reply.json["job_status"]["id"].as_str();
        let id = key.map_or(reply.json["id"].as_u64(), |key| {
            u64::from_str_radix(key, 16).ok()
        });
        if step["proceed"] == true {
            proceed_as_a(app, a, id.expect("a job")).await;
        }
        if let Some(log) = step["log"].as_str() {
            let log = Request::new(Method::GET, vars.clone().with("id", id).fill(log));
            let log = send(app, auth, &log).await;
            let listed = log.json.as_array().is_some_and(|errors| !errors.is_empty());
            assert!(listed, "{}", log.body_text());
        }
        if let Some(label) = step["label"].as_str() {
            jobs.push((label.to_owned(), id.expect("a job")));
        }
        if step["drain"] == true {
            app.drain().await;
        }
    }

    // Every job of A (the Workspace batch is one too) and every user.
    let ccai = &a.ccai[0].auth;
    let listed = send(
        app,
        ccai,
        &Request::new(Method::GET, format!("{PREFIX}/jobs?per_page=100")),
    )
    .await;
    for job in listed.json.as_array().unwrap() {
        let id = job["id"].as_u64().unwrap();
        if !jobs.iter().any(|(_, known)| *known == id) {
            jobs.push(("workspace".to_owned(), id));
        }
    }
    assert_eq!(jobs.len(), 6, "{}", listed.body_text());
    let users = send(
        app,
        ccai,
        &Request::new(Method::GET, format!("{PREFIX}/config?page=1&per_page=1000")),
    )
    .await;
    let users = users.json.as_array().unwrap().clone();
    assert_eq!(users.len(), 8, "{users:?}");
    let text = |field: &str| -> Vec<String> {
        let values = users.iter().filter_map(|user| user[field].as_str());
        values.map(str::to_owned).collect()
    };
    Targets {
        tenant: "acme".to_owned(),
        jobs,
        users: users
            .iter()
            .map(|user| user["id"].as_u64().unwrap())
            .collect(),
        emails: text("email"),
        external_ids: vec!["acme-ext-1".to_owned(), "acme-ext-2".to_owned()],
        user_names: vec!["acme.hw1".to_owned(), "acme.hw2".to_owned()],
        agent_numbers: text("agent_number"),
    }
}

/// Everything of A that must never reach B.
async fn footprint_of(app: &TestApp, a: &Credentials, t: &Targets) -> Footprint {
    let distinctive = "acme,acmeonlyrole,acmeonlyteam,acmealias,acmetag,acme notes,acmegroup,\
                       acme-roster,acme#passw0rd";
    let mut strings: Vec<String> = distinctive.split(',').map(str::to_owned).collect();
    strings.extend(t.emails.iter().cloned());
    strings.extend(t.external_ids.iter().cloned());
    strings.extend(t.user_names.iter().cloned());
    strings.extend(t.agent_numbers.iter().cloned());
    strings.extend(t.job_ids().into_iter().map(job_key));
    let users = send(
        app,
        &a.ccai[0].auth,
        &Request::new(Method::GET, format!("{PREFIX}/config?page=1&per_page=1000")),
    )
    .await;
    for user in users.json.as_array().unwrap() {
        for field in ["first_name", "last_name"] {
            // Long enough not to turn up by chance.
            if let Some(name) = user[field].as_str().filter(|name| name.len() >= 5) {
                strings.push(name.to_owned());
            }
        }
    }
    let stored = app
        .service
        .ports()
        .users
        .users_by_ids(&TenantId::parse("acme").unwrap(), &t.users)
        .await
        .unwrap();
    strings.extend(
        stored
            .iter()
            .filter_map(|user| user.workspace.password_hash.clone()),
    );
    let mut strings: Vec<String> = strings.into_iter().map(|s| s.to_lowercase()).collect();
    strings.sort();
    strings.dedup();
    Footprint {
        strings,
        user_ids: t.users.iter().copied().collect(),
        job_ids: t.job_ids().into_iter().collect(),
    }
}

/// Everything of A, as A sees it through each dialect and as stored: `(what, text)`.
async fn snapshot(app: &TestApp, a: &Credentials, t: &Targets) -> Vec<(String, String)> {
    let (ccai, zendesk) = (&a.ccai[0].auth, &a.zendesk[0].auth);
    let mut reads: Vec<(&Auth, String)> = Vec::new();
    for id in t.job_ids() {
        for path in ["jobs", "errors/scheme", "errors/update"] {
            reads.push((ccai, format!("{PREFIX}/{path}/{id}")));
        }
        reads.push((zendesk, format!("{ZENDESK}/job_statuses/{}", job_key(id))));
    }
    for path in [
        "jobs?per_page=100",
        "config?page=1&per_page=1000",
        "template",
    ] {
        reads.push((ccai, format!("{PREFIX}/{path}")));
    }
    reads.extend([
        (
            ccai,
            format!("{PREFIX}/config?emails={}", t.emails.join(",")),
        ),
        (zendesk, format!("{ZENDESK}/job_statuses?page[size]=100")),
        (&a.workspace[0].auth, "/v2/acme/users?limit=1000".to_owned()),
    ]);
    let mut snapshot = Vec::new();
    for (auth, target) in reads {
        let reply = send(app, auth, &Request::new(Method::GET, &target)).await;
        let text = reply.body_text();
        assert_eq!(reply.status, StatusCode::OK, "A's {target}: {text}");
        let total = reply
            .headers
            .get("total")
            .map(|v| v.to_str().unwrap_or_default());
        snapshot.push((target, format!("{} total={total:?} {text}", reply.status)));
    }

    // As stored: jobs, their files, users (password hashes included).
    let acme = TenantId::parse("acme").unwrap();
    let ports = app.service.ports();
    for id in t.job_ids() {
        let job = ports.jobs.get_job(&acme, id).await.unwrap();
        let job = job.expect("A's job");
        let mut file = Vec::new();
        let mut reader = ports
            .files
            .open(&job.file_key, job.file_version.as_deref(), 0)
            .await
            .unwrap();
        reader.read_to_end(&mut file).await.unwrap();
        let job = serde_json::to_string(&job).unwrap();
        snapshot.push((format!("stored job {id}"), job));
        let file = String::from_utf8_lossy(&file).into_owned();
        snapshot.push((format!("file of job {id}"), file));
    }
    let users = ports.users.users_by_ids(&acme, &t.users).await.unwrap();
    assert_eq!(users.len(), t.users.len());
    let users = serde_json::to_string(&users).unwrap();
    snapshot.push(("stored users".to_owned(), users));
    let settings = app.service.settings(&acme).await.unwrap();
    let settings = serde_json::to_string(&settings).unwrap();
    snapshot.push(("settings".to_owned(), settings));
    snapshot
}

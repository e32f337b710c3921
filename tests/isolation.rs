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
//! The route table itself is iterated: a route without a case here fails the test.

use std::collections::BTreeSet;

use bulk_tests::{multipart, on_both_stores, sdk_date, Backend, Part, TestApp, BOUNDARY, PREFIX};
use bulk_users::api::{resolve, route_table, ApiRequest, Dialect, Operation, PATH_ALIASES};
use bulk_users::auth::{sign_request, SignedRequest};
use bulk_users::model::TenantId;
use bulk_users::service::SettingsChange;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
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

#[derive(Clone)]
enum Auth {
    /// A header carrying the credential.
    Header(&'static str, String),
    /// The Huawei SDK's AK/SK signature (`SDK-HMAC-SHA256`) with this key id and secret.
    Signed { key_id: String, secret: String },
}

/// A credential as presented, with a label for messages (never the secret itself).
#[derive(Clone)]
struct Presented {
    label: &'static str,
    auth: Auth,
}

fn presented(label: &'static str, name: &'static str, value: String) -> Presented {
    Presented {
        label,
        auth: Auth::Header(name, value),
    }
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
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (request.target.clone(), None),
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("bulk.test"));
    if let Some(content_type) = &request.content_type {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
    }
    match auth {
        Auth::Header(name, value) => {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Auth::Signed { key_id, secret } => {
            headers.insert("x-sdk-date", HeaderValue::from_str(&sdk_date()).unwrap());
            let signature = sign_request(
                &SignedRequest {
                    method: request.method.as_str(),
                    path: &path,
                    query: query.as_deref(),
                    headers: &headers,
                    body: &request.body,
                },
                key_id,
                secret,
            )
            .expect("sign the request");
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&signature).unwrap(),
            );
        }
    }
    let response = app
        .handle(ApiRequest {
            method: request.method.clone(),
            path,
            query,
            headers,
            body: request.body.clone().into(),
            deadline: None,
        })
        .await;
    let (parts, body) = response.into_parts();
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
    jobs: Vec<(&'static str, u64)>,
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

    fn job(&self, label: &str) -> u64 {
        self.jobs
            .iter()
            .find(|(name, _)| *name == label)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("no {label} job"))
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
                .map(|(i, (label, _))| (*label, 900_000_100 + 10 * i as u64))
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

fn case(expect: Expect, request: Request) -> Case {
    Case { request, expect }
}

fn joined<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A multipart upload form: `id` when given, and `file` named `filename`.
fn upload_form(id: Option<u64>, file: &str, filename: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    if let Some(id) = id {
        parts.push(Part::text("id", &id.to_string()));
    }
    parts.push(Part {
        name: "file".to_owned(),
        filename: Some(filename.to_owned()),
        bytes: file.as_bytes().to_vec(),
    });
    parts
}

/// The cases of one operation, naming the objects of `t` (A's, or ghosts to compare with).
/// Every operation of the route table must have at least one.
fn cases(operation: Operation, t: &Targets) -> Option<Vec<Case>> {
    use Expect::*;
    let ccai = |rest: &str| format!("{PREFIX}/{rest}");
    let jobs = t.job_ids();
    let b_file =
        r#"[{"email": "mallory@globex.test", "first_name": "Mallory", "last_name": "Globex"}]"#;
    let per_job = |build: &dyn Fn(u64) -> Request| -> Vec<Case> {
        jobs.iter().map(|id| case(NotFound, build(*id))).collect()
    };
    let cases = match operation {
        Operation::Template => vec![case(Own, Request::new(Method::GET, ccai("template")))],
        Operation::UserConfiguration => vec![
            case(Own, Request::new(Method::GET, ccai("config"))),
            case(
                Own,
                Request::new(Method::GET, ccai("config?page=1&per_page=1000")),
            ),
            // Selections: the caller's users with these ids, emails or agent numbers. A's match
            // nothing, exactly like ids that never existed; 404 would be wrong for a
            // selection, which answers the matching subset of the caller's own users.
            case(
                NoMatch,
                Request::new(
                    Method::GET,
                    ccai(&format!("config?ids={}", joined(&t.users))),
                ),
            ),
            case(
                NoMatch,
                Request::new(
                    Method::GET,
                    ccai(&format!("config?emails={}", t.emails.join(","))),
                ),
            ),
            case(
                NoMatch,
                Request::new(
                    Method::GET,
                    ccai(&format!(
                        "config?agent_numbers={}",
                        t.agent_numbers.join(",")
                    )),
                ),
            ),
        ],
        // A new job of B's own: it can name nothing of A's but A's users' emails in its file.
        Operation::Upload => vec![case(
            Create,
            Request::form(
                Method::POST,
                ccai("upload"),
                &upload_form(
                    None,
                    &json!([
                        {"email": t.emails[0], "first_name": "Globex", "last_name": "Own"},
                        {"email": t.emails[1], "first_name": "Globex", "last_name": "Own"},
                    ])
                    .to_string(),
                    "globex-own.json",
                ),
            ),
        )],
        Operation::ReplaceUpload => per_job(&|id| {
            Request::form(
                Method::PUT,
                ccai("upload"),
                &upload_form(Some(id), b_file, "acme-roster-replacement.json"),
            )
        }),
        // Names nothing of A's (its fields are the size, a file name and a flag): B's own job.
        // The embedded store has no presigned URLs and answers 501 by design (see `check`).
        Operation::PresignUpload => vec![case(
            Own,
            Request::json(
                Method::POST,
                ccai("upload/presigned"),
                json!({"bytes": 120, "filename": "globex-presigned.json"}),
            ),
        )],
        Operation::Proceed => {
            let mut cases =
                per_job(&|id| Request::json(Method::POST, ccai("proceed"), json!({ "id": id })));
            cases.push(case(
                NotFound,
                Request::json(
                    Method::POST,
                    ccai("proceed"),
                    json!({ "id": t.job("valid_scheme").to_string() }),
                ),
            ));
            cases
        }
        // Cancelling A's job, whatever its state (A would get 200 or 409).
        Operation::Cancel => {
            let mut cases =
                per_job(&|id| Request::json(Method::POST, ccai("cancel"), json!({ "id": id })));
            cases.push(case(
                NotFound,
                Request::json(
                    Method::POST,
                    ccai("cancel"),
                    json!({ "id": t.job("valid_scheme").to_string() }),
                ),
            ));
            cases
        }
        Operation::Job => per_job(&|id| Request::new(Method::GET, ccai(&format!("jobs/{id}")))),
        Operation::Jobs => vec![
            case(Own, Request::new(Method::GET, ccai("jobs"))),
            case(
                Own,
                Request::new(Method::GET, ccai("jobs?page=1&per_page=100")),
            ),
        ],
        Operation::SchemeErrors => {
            per_job(&|id| Request::new(Method::GET, ccai(&format!("errors/scheme/{id}"))))
        }
        Operation::UpdateErrors => {
            per_job(&|id| Request::new(Method::GET, ccai(&format!("errors/update/{id}"))))
        }
        // Zendesk batches are jobs: the request is accepted as B's own job and each user is
        // judged when it is processed, so naming A's users cannot be 404 here: each of them is a
        // per-user `RecordNotFound` (or another per-user failure), exactly as for users that
        // never existed.
        Operation::CreateManyUsers => vec![
            // `id` is the server's to assign: naming A's user fails that user.
            case(
                Queued,
                Request::json(
                    Method::POST,
                    format!("{ZENDESK}/users/create_many"),
                    json!({"users": [{"id": t.users[0], "name": "Mallory Globex", "email": "mallory.id@globex.test"}]}),
                ),
            ),
            case(
                Create,
                Request::json(
                    Method::POST,
                    format!("{ZENDESK}/users/create_many.json"),
                    json!({"users": [
                        {"name": "Globex Own", "email": t.emails[2]},
                        {"name": "Globex Own", "email": t.emails[3]},
                    ]}),
                ),
            ),
        ],
        Operation::CreateOrUpdateManyUsers => vec![
            // An id is not how an upsert finds a user: with neither email nor external id nor
            // name, it fails.
            case(
                Queued,
                Request::json(
                    Method::POST,
                    format!("{ZENDESK}/users/create_or_update_many"),
                    json!({"users": [{"id": t.users[1], "notes": "globex was here"}]}),
                ),
            ),
            // Matched by email, else external id, among B's users only: B gets new users.
            case(
                Create,
                Request::json(
                    Method::POST,
                    format!("{ZENDESK}/users/create_or_update_many"),
                    json!({"users": [
                        {"name": "Globex Own", "email": t.emails[4]},
                        {"name": "Globex Own", "external_id": t.external_ids[0]},
                    ]}),
                ),
            ),
        ],
        Operation::UpdateManyUsers => vec![
            case(
                Queued,
                Request::json(
                    Method::PUT,
                    format!("{ZENDESK}/users/update_many?ids={}", joined(&t.users)),
                    json!({"user": {"notes": "globex was here", "suspended": true}}),
                ),
            ),
            case(
                Queued,
                Request::json(
                    Method::PUT,
                    format!(
                        "{ZENDESK}/users/update_many.json?external_ids={}",
                        t.external_ids.join(",")
                    ),
                    json!({"user": {"name": "Hijacked Name"}}),
                ),
            ),
            case(
                Queued,
                Request::json(
                    Method::PUT,
                    format!("{ZENDESK}/users/update_many"),
                    json!({"users": t.users.iter().map(|id| json!({"id": id, "email": format!("taken-{id}@globex.test")})).collect::<Vec<_>>()}),
                ),
            ),
            case(
                Queued,
                Request::json(
                    Method::PUT,
                    format!("{ZENDESK}/users/update_many"),
                    json!({"users": t.external_ids.iter().map(|id| json!({"external_id": id, "suspended": true})).collect::<Vec<_>>()}),
                ),
            ),
        ],
        Operation::DestroyManyUsers => vec![
            case(
                Queued,
                Request::new(
                    Method::DELETE,
                    format!("{ZENDESK}/users/destroy_many?ids={}", joined(&t.users)),
                ),
            ),
            case(
                Queued,
                Request::new(
                    Method::DELETE,
                    format!(
                        "{ZENDESK}/users/destroy_many.json?external_ids={}",
                        t.external_ids.join(",")
                    ),
                ),
            ),
        ],
        Operation::ShowJobStatus => jobs
            .iter()
            .map(|id| {
                case(
                    NotFound,
                    Request::new(
                        Method::GET,
                        format!("{ZENDESK}/job_statuses/{}", job_key(*id)),
                    ),
                )
            })
            .collect(),
        // A multi-get: unknown ids are left out (documented), so A's ids give an empty list.
        Operation::ShowManyJobStatuses => vec![case(
            NoMatch,
            Request::new(
                Method::GET,
                format!(
                    "{ZENDESK}/job_statuses/show_many?ids={}",
                    jobs.iter()
                        .map(|id| job_key(*id))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
        )],
        Operation::JobStatuses => vec![
            case(
                Own,
                Request::new(Method::GET, format!("{ZENDESK}/job_statuses")),
            ),
            case(
                Own,
                Request::new(
                    Method::GET,
                    format!("{ZENDESK}/job_statuses.json?page[size]=100"),
                ),
            ),
            // A cursor is a position in B's own list, not an object: a cursor as A gets them
            // (an ordinal of A's jobs) pages B's jobs (none of A's), so 200 is right.
            case(
                Own,
                Request::new(
                    Method::GET,
                    format!(
                        "{ZENDESK}/job_statuses?page[size]=10&page[after]=o{}",
                        t.job_ids().len()
                    ),
                ),
            ),
        ],
        Operation::WorkspaceBatchCreate => {
            let fresh = json!({"users": [
                {"user_name": "mallory.hw", "user_email": "mallory.hw@globex.test",
                 "active_type": "ADMIN_ACTIVATE", "password": "Mallory#Pass1"},
            ]});
            vec![
                case(
                    NotFound,
                    Request::json(
                        Method::POST,
                        format!("/v2/{}/users/batch-create", t.tenant),
                        fresh.clone(),
                    ),
                ),
                case(
                    NotFound,
                    Request::json(
                        Method::POST,
                        format!("/v2/{}/users/batch-create", t.tenant.to_uppercase()),
                        fresh,
                    ),
                ),
                // B's own project, with A's user names and emails: B's own new users (names and
                // emails are unique per tenant).
                case(
                    Create,
                    Request::json(
                        Method::POST,
                        "/v2/globex/users/batch-create",
                        json!({"users": [
                            {"user_name": t.user_names[0], "user_email": t.emails[5]},
                            {"user_name": t.user_names[1], "user_phone": "5550123"},
                        ]}),
                    ),
                ),
            ]
        }
        Operation::WorkspaceListUsers => vec![
            case(
                NotFound,
                Request::new(Method::GET, format!("/v2/{}/users", t.tenant)),
            ),
            case(
                NotFound,
                Request::new(
                    Method::GET,
                    format!(
                        "/v2/{}/users?limit=1000&offset=0&user_name={}",
                        t.tenant, t.user_names[0]
                    ),
                ),
            ),
            case(
                Own,
                Request::new(Method::GET, "/v2/globex/users?limit=1000"),
            ),
            case(
                NoMatch,
                Request::new(
                    Method::GET,
                    format!("/v2/globex/users?user_name={}", t.user_names[0]),
                ),
            ),
        ],
        Operation::WorkspaceDeleteUser => t
            .users
            .iter()
            .flat_map(|id| {
                [
                    case(
                        NotFound,
                        Request::new(Method::DELETE, format!("/v2/{}/users/{id}", t.tenant)),
                    ),
                    // B's own project, A's user: not one of B's users.
                    case(
                        NotFound,
                        Request::new(Method::DELETE, format!("/v2/globex/users/{id}")),
                    ),
                ]
            })
            .collect(),
        Operation::WorkspaceBatchDelete => {
            let ids: Vec<String> = t.users.iter().map(u64::to_string).collect();
            vec![
                case(
                    NotFound,
                    Request::json(
                        Method::POST,
                        format!("/v2/{}/users/batch-delete", t.tenant),
                        json!({ "user_ids": ids }),
                    ),
                ),
                case(
                    NotFound,
                    Request::json(
                        Method::POST,
                        "/v2/globex/users/batch-delete",
                        json!({ "user_ids": ids }),
                    ),
                ),
                case(
                    NotFound,
                    Request::json(
                        Method::POST,
                        "/v2/globex/users/batch-delete",
                        json!({ "user_ids": [t.users[0]] }),
                    ),
                ),
            ]
        }
        // An operation added to the route table without a case here.
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(cases)
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

async fn tenant_b_reaches_nothing_of_tenant_a_through_any_route(app: TestApp) {
    let started = std::time::Instant::now();
    let a_secret = app.acme.secret.clone();
    let b_secret = app.globex.secret.clone();
    let a_key_id = key_id(&app, "acme").await;
    let b_key_id = key_id(&app, "globex").await;
    let basic = bulk_tests::basic;

    let a = Credentials {
        ccai: vec![presented("A Basic", "authorization", app.acme.basic())],
        zendesk: vec![presented(
            "A Bearer",
            "authorization",
            format!("Bearer {a_secret}"),
        )],
        workspace: vec![presented(
            "A X-Auth-Token",
            "x-auth-token",
            a_secret.clone(),
        )],
    };
    let b = Credentials {
        ccai: vec![presented(
            "B Basic tenant",
            "authorization",
            app.globex.basic(),
        )],
        zendesk: vec![
            presented(
                "B Basic {email}/token",
                "authorization",
                basic("admin@globex.test/token", &b_secret),
            ),
            presented("B Bearer", "authorization", format!("Bearer {b_secret}")),
            presented("B Basic tenant", "authorization", app.globex.basic()),
            // The email of the token form names nobody: the token alone is the caller, B.
            presented(
                "B Basic {A's email}/token",
                "authorization",
                basic("ada.acme@acme-corp.test/token", &b_secret),
            ),
        ],
        workspace: vec![
            presented("B X-Auth-Token", "x-auth-token", b_secret.clone()),
            Presented {
                label: "B AK/SK signature",
                auth: Auth::Signed {
                    key_id: b_key_id,
                    secret: b_secret.clone(),
                },
            },
        ],
    };
    // B's secret presented as A's: authentication fails before any object is looked at, so
    // 401 (not 404) is the right answer; it is the same for every route and object.
    let impostor = Credentials {
        ccai: vec![presented(
            "B's secret as tenant A",
            "authorization",
            basic("acme", &b_secret),
        )],
        zendesk: vec![presented(
            "B's secret as tenant A",
            "authorization",
            basic("acme", &b_secret),
        )],
        workspace: vec![Presented {
            label: "A's key id signed with B's secret",
            auth: Auth::Signed {
                key_id: a_key_id,
                secret: b_secret.clone(),
            },
        }],
    };

    let a_targets = set_up_tenant_a(&app, &a).await;
    let ghost = a_targets.ghost();
    let replacements = ghost.replacements(&a_targets);
    let footprint = footprint_of(&app, &a, &a_targets).await;
    let before = snapshot(&app, &a, &a_targets).await;
    println!(
        "{:?}: tenant A set up in {:?}: jobs {:?}, users {:?}",
        app.backend,
        started.elapsed(),
        a_targets.jobs,
        a_targets.users
    );

    // Every route of the table has cases; every case resolves to its route.
    let mut unmapped = Vec::new();
    let mut plan = Vec::new();
    for spec in route_table() {
        match (
            cases(spec.operation, &a_targets),
            cases(spec.operation, &ghost),
        ) {
            (Some(real), Some(ghosts)) if !real.is_empty() => {
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
            _ => unmapped.push(format!(
                "{} {} ({:?})",
                spec.method, spec.pattern, spec.operation
            )),
        }
    }
    assert!(
        unmapped.is_empty(),
        "routes of the route table without an isolation case in tests/isolation.rs (add one to \
         `cases`): {unmapped:?}"
    );

    let mut problems: Vec<String> = Vec::new();
    let mut queued: Vec<(String, String, String)> = Vec::new();
    let mut requests = 0usize;

    // Phase 1: everything but B's own creates.
    for (operation, real, ghost_request) in
        plan.iter().filter(|(_, c, _)| c.expect != Expect::Create)
    {
        let dialect = Dialect::of(*operation);
        let mut spellings = vec![real.request.clone()];
        if matches!(real.expect, Expect::NotFound | Expect::NoMatch) {
            spellings.extend(respellings(dialect, &real.request));
        }
        for request in &spellings {
            for credential in b.of(dialect) {
                let reply = send(&app, &credential.auth, request).await;
                requests += 1;
                let context = format!(
                    "{operation:?} [{}] {} → {}",
                    credential.label,
                    request.describe(),
                    reply.describe()
                );
                problems.extend(
                    check(&app, *operation, real.expect, request, &reply, &footprint)
                        .into_iter()
                        .map(|p| format!("{p}: {context}")),
                );
                if real.expect == Expect::Queued {
                    if let Some(key) = reply.json["job_status"]["id"].as_str() {
                        // The ghost twin, sent by the same credential.
                        let twin = send(&app, &credential.auth, ghost_request).await;
                        requests += 1;
                        match twin.json["job_status"]["id"].as_str() {
                            Some(twin_key) => {
                                queued.push((context.clone(), key.to_owned(), twin_key.to_owned()))
                            }
                            None => problems.push(format!(
                                "the ghost twin was not queued ({} {}): {context}",
                                twin.status,
                                twin.body_text()
                            )),
                        }
                    }
                }
            }
            for credential in impostor.of(dialect) {
                let reply = send(&app, &credential.auth, request).await;
                requests += 1;
                if reply.status != StatusCode::UNAUTHORIZED {
                    problems.push(format!(
                        "expected 401: {operation:?} [{}] {} → {}",
                        credential.label,
                        request.describe(),
                        reply.describe()
                    ));
                }
                problems.extend(footprint.leaks(request, &reply).into_iter().map(|leak| {
                    format!(
                        "leak ({leak}): {operation:?} [{}] {} → {}",
                        credential.label,
                        request.describe(),
                        reply.describe()
                    )
                }));
            }
        }
        // B's queued jobs are worked off case by case: a tenant may only have so many jobs in
        // progress (max_concurrent_jobs).
        if real.expect == Expect::Queued {
            app.drain().await;
        }
        // No existence oracle: the answer about A's objects is the answer about objects that
        // never existed.
        if matches!(real.expect, Expect::NotFound | Expect::NoMatch) {
            let credential = &b.of(dialect)[0];
            let reply = send(&app, &credential.auth, &real.request).await;
            let twin = send(&app, &credential.auth, ghost_request).await;
            requests += 2;
            let twin_body = replace_all(&twin.body_text(), &replacements);
            if reply.status != twin.status || reply.body_text() != twin_body {
                problems.push(format!(
                    "an oracle: {operation:?} {} → {} {}, but for objects that never existed {} → {} {} (as A's: {twin_body})",
                    real.request.describe(),
                    reply.status,
                    reply.body_text(),
                    ghost_request.describe(),
                    twin.status,
                    twin.body_text()
                ));
            }
        }
    }

    // B's queued jobs naming A's users: processed, each result is the one for users that never
    // existed, and every user failed.
    app.drain().await;
    let b_zendesk = &b.zendesk[1];
    for (context, key, twin_key) in &queued {
        let status = send(
            &app,
            &b_zendesk.auth,
            &Request::new(Method::GET, format!("{ZENDESK}/job_statuses/{key}")),
        )
        .await;
        let twin = send(
            &app,
            &b_zendesk.auth,
            &Request::new(Method::GET, format!("{ZENDESK}/job_statuses/{twin_key}")),
        )
        .await;
        let results = &status.json["job_status"]["results"];
        // Compared as text: the twin's, with its ghosts turned into A's objects.
        let real_results = results.to_string();
        let twin_results = replace_all(
            &twin.json["job_status"]["results"].to_string(),
            &replacements,
        );
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
    }

    // Phase 2: B's own creates with A's emails, external ids and user names, each processed
    // before the next: B gets new users of its own.
    let mut b_created: Vec<u64> = Vec::new();
    for (operation, real, _) in plan.iter().filter(|(_, c, _)| c.expect == Expect::Create) {
        let dialect = Dialect::of(*operation);
        let credential = &b.of(dialect)[0];
        let reply = send(&app, &credential.auth, &real.request).await;
        requests += 1;
        let context = format!(
            "{operation:?} [{}] {} → {}",
            credential.label,
            real.request.describe(),
            reply.describe()
        );
        problems.extend(
            check(
                &app,
                *operation,
                Expect::Create,
                &real.request,
                &reply,
                &footprint,
            )
            .into_iter()
            .map(|p| format!("{p}: {context}")),
        );
        if *operation == Operation::Upload {
            let proceed = send(
                &app,
                &credential.auth,
                &Request::json(
                    Method::POST,
                    format!("{PREFIX}/proceed"),
                    json!({"id": reply.json["id"]}),
                ),
            )
            .await;
            assert_eq!(
                proceed.status,
                StatusCode::ACCEPTED,
                "{}",
                proceed.body_text()
            );
        }
        app.drain().await;
        match dialect {
            Dialect::Zendesk => {
                let key = reply.json["job_status"]["id"].as_str().unwrap_or_default();
                let status = send(
                    &app,
                    &credential.auth,
                    &Request::new(Method::GET, format!("{ZENDESK}/job_statuses/{key}")),
                )
                .await;
                let results = status.json["job_status"]["results"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if results.is_empty() || !results.iter().all(|result| result["status"] == "Created")
                {
                    problems.push(format!(
                        "B's create did not create B's own users: {} ({context})",
                        status.body_text()
                    ));
                }
                b_created.extend(results.iter().filter_map(|result| result["id"].as_u64()));
            }
            Dialect::Ccai => {
                let id = reply.json["id"].as_u64().unwrap_or_default();
                let job = send(
                    &app,
                    &credential.auth,
                    &Request::new(Method::GET, format!("{PREFIX}/jobs/{id}")),
                )
                .await;
                if job.json["status"] != "completed"
                    || job.json["affected_rows"] != 2
                    || job.json["failed_rows"] != 0
                {
                    problems.push(format!(
                        "B's upload did not create B's own users: {} ({context})",
                        job.body_text()
                    ));
                }
            }
            Dialect::Workspace => {}
        }
    }
    // B's users: its own, none of A's ids.
    let b_users = send(
        &app,
        &b.ccai[0].auth,
        &Request::new(Method::GET, format!("{PREFIX}/config?page=1&per_page=1000")),
    )
    .await;
    let b_ids: Vec<u64> = b_users
        .json
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|user| user["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    let b_list = send(
        &app,
        &b.workspace[0].auth,
        &Request::new(Method::GET, "/v2/globex/users?limit=1000"),
    )
    .await;
    let b_workspace_ids: Vec<u64> = b_list.json["users"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|user| user["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if b_ids.len() != 8 || b_workspace_ids.len() != 8 {
        problems.push(format!(
            "B has not exactly its 8 own users (2 uploaded, 2 + 2 by Zendesk, 2 by Workspace): {} / {}",
            b_users.body_text(),
            b_list.body_text()
        ));
    }
    for id in b_ids.iter().chain(&b_workspace_ids).chain(&b_created) {
        if footprint.user_ids.contains(id) {
            problems.push(format!("B's user {id} is one of A's"));
        }
    }

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
        requests,
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

/// Gives tenant A real data through the API and answers what it has.
async fn set_up_tenant_a(app: &TestApp, a: &Credentials) -> Targets {
    let ccai = &a.ccai[0].auth;
    let zendesk = &a.zendesk[0].auth;
    let workspace = &a.workspace[0].auth;
    app.set_settings(
        "acme",
        SettingsChange {
            roles: Some(vec!["Agent".into(), "Acmeonlyrole".into()]),
            teams: Some(vec!["Sales".into(), "Acmeonlyteam".into()]),
            ..SettingsChange::default()
        },
    )
    .await;
    let upload = |file: String, name: &'static str| {
        Request::form(
            Method::POST,
            format!("{PREFIX}/upload"),
            &[Part {
                name: "file".to_owned(),
                filename: Some(name.to_owned()),
                bytes: file.into_bytes(),
            }],
        )
    };
    let mut jobs = Vec::new();

    // A CCAI job proceeded and completed: three users.
    let file = json!([
        {"email": "ada.acme@acme-corp.test", "first_name": "Adaacme", "last_name": "Lovelacme",
         "agent_number": "acme-ag-1", "roles": [{"name": "Acmeonlyrole", "value": 1}],
         "teams": [{"name": "Acmeonlyteam", "value": 1}]},
        {"email": "bob.acme@acme-corp.test", "first_name": "Bobacme", "last_name": "Buildacme",
         "agent_number": "acme-ag-2"},
        {"email": "cyd.acme@acme-corp.test", "first_name": "Cydacme", "last_name": "Charisacme",
         "status": "Inactive"},
    ]);
    let created = send(
        app,
        ccai,
        &upload(file.to_string(), "acme-roster-completed.json"),
    )
    .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}",
        created.body_text()
    );
    let id = created.json["id"].as_u64().unwrap();
    let proceeded = send(
        app,
        ccai,
        &Request::json(Method::POST, format!("{PREFIX}/proceed"), json!({"id": id})),
    )
    .await;
    assert_eq!(
        proceeded.status,
        StatusCode::ACCEPTED,
        "{}",
        proceeded.body_text()
    );
    app.drain().await;
    jobs.push(("completed", id));

    // A job left valid_scheme.
    let file = json!([{"email": "dee.acme@acme-corp.test", "first_name": "Deeacme", "last_name": "Pendingacme"}]);
    let pending = send(
        app,
        ccai,
        &upload(file.to_string(), "acme-roster-pending.json"),
    )
    .await;
    assert_eq!(
        pending.json["status"],
        "valid_scheme",
        "{}",
        pending.body_text()
    );
    jobs.push(("valid_scheme", pending.json["id"].as_u64().unwrap()));

    // A job with scheme errors.
    let file = json!([{"email": "not-an-email", "first_name": "", "last_name": "Badacme"}]);
    let invalid = send(
        app,
        ccai,
        &upload(file.to_string(), "acme-roster-invalid.json"),
    )
    .await;
    assert_eq!(
        invalid.json["status"],
        "invalid_scheme",
        "{}",
        invalid.body_text()
    );
    jobs.push(("invalid_scheme", invalid.json["id"].as_u64().unwrap()));

    // A job with update errors: a rename onto an email that is taken fails its row.
    let file = json!([
        {"email": "bob.acme@acme-corp.test", "new_email": "ada.acme@acme-corp.test",
         "first_name": "Bobacme", "last_name": "Buildacme"},
        {"email": "eve.acme@acme-corp.test", "first_name": "Eveacme", "last_name": "Okacme",
         "agent_number": "acme-ag-3"},
    ]);
    let errors = send(
        app,
        ccai,
        &upload(file.to_string(), "acme-roster-errors.json"),
    )
    .await;
    let id = errors.json["id"].as_u64().unwrap();
    let proceeded = send(
        app,
        ccai,
        &Request::json(Method::POST, format!("{PREFIX}/proceed"), json!({"id": id})),
    )
    .await;
    assert_eq!(
        proceeded.status,
        StatusCode::ACCEPTED,
        "{}",
        proceeded.body_text()
    );
    app.drain().await;
    let log = send(
        app,
        ccai,
        &Request::new(Method::GET, format!("{PREFIX}/errors/update/{id}")),
    )
    .await;
    assert!(
        log.json.as_array().is_some_and(|errors| !errors.is_empty()),
        "{}",
        log.body_text()
    );
    jobs.push(("update_errors", id));

    // A Zendesk create_many job.
    let batch = send(
        app,
        zendesk,
        &Request::json(
            Method::POST,
            format!("{ZENDESK}/users/create_many.json"),
            json!({"users": [
                {"name": "Zed Acmezendesk", "email": "zed.acme@acme-corp.test", "external_id": "acme-ext-1",
                 "tags": ["acmetag"], "notes": "acme notes"},
                {"name": "Yan Acmezendesk", "email": "yan.acme@acme-corp.test", "external_id": "acme-ext-2"},
            ]}),
        ),
    )
    .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body_text());
    let key = batch.json["job_status"]["id"].as_str().unwrap();
    jobs.push(("zendesk", u64::from_str_radix(key, 16).unwrap()));
    app.drain().await;

    // A Huawei Workspace batch: users with ids, one with a password.
    let created = send(
        app,
        workspace,
        &Request::json(
            Method::POST,
            "/v2/acme/users/batch-create",
            json!({"users": [
                {"user_name": "acme.hw1", "user_email": "hw1.acme@acme-corp.test",
                 "active_type": "ADMIN_ACTIVATE", "password": "Acme#Passw0rd", "alias_name": "Acmealias",
                 "description": "acme description", "group_ids": ["acmegroup"]},
                {"user_name": "acme.hw2", "user_phone": "5550100"},
            ]}),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body_text());

    // Every job of A (the Workspace batch is one too) and every user.
    let listed = send(
        app,
        ccai,
        &Request::new(Method::GET, format!("{PREFIX}/jobs?per_page=100")),
    )
    .await;
    let all: Vec<u64> = listed
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_u64().unwrap())
        .collect();
    for id in all {
        if !jobs.iter().any(|(_, known)| *known == id) {
            jobs.push(("workspace", id));
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
    let text = |user: &Value, field: &str| user[field].as_str().map(str::to_owned);
    Targets {
        tenant: "acme".to_owned(),
        jobs,
        users: users
            .iter()
            .map(|user| user["id"].as_u64().unwrap())
            .collect(),
        emails: users
            .iter()
            .filter_map(|user| text(user, "email"))
            .collect(),
        external_ids: vec!["acme-ext-1".to_owned(), "acme-ext-2".to_owned()],
        user_names: vec!["acme.hw1".to_owned(), "acme.hw2".to_owned()],
        agent_numbers: users
            .iter()
            .filter_map(|user| text(user, "agent_number"))
            .collect(),
    }
}

/// Everything of A that must never reach B.
async fn footprint_of(app: &TestApp, a: &Credentials, t: &Targets) -> Footprint {
    let mut strings: Vec<String> = vec![
        "acme".to_owned(),
        "acmeonlyrole".to_owned(),
        "acmeonlyteam".to_owned(),
        "acmealias".to_owned(),
        "acmetag".to_owned(),
        "acme notes".to_owned(),
        "acmegroup".to_owned(),
        "acme-roster".to_owned(),
        "acme#passw0rd".to_owned(),
    ];
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
    let mut reads: Vec<(Auth, String)> = Vec::new();
    let ccai = &a.ccai[0].auth;
    let zendesk = &a.zendesk[0].auth;
    for id in t.job_ids() {
        for path in [
            format!("jobs/{id}"),
            format!("errors/scheme/{id}"),
            format!("errors/update/{id}"),
        ] {
            reads.push((ccai.clone(), format!("{PREFIX}/{path}")));
        }
        reads.push((
            zendesk.clone(),
            format!("{ZENDESK}/job_statuses/{}", job_key(id)),
        ));
    }
    for path in [
        "jobs?per_page=100",
        "config?page=1&per_page=1000",
        "template",
    ] {
        reads.push((ccai.clone(), format!("{PREFIX}/{path}")));
    }
    reads.push((
        ccai.clone(),
        format!("{PREFIX}/config?emails={}", t.emails.join(",")),
    ));
    reads.push((
        zendesk.clone(),
        format!("{ZENDESK}/job_statuses?page[size]=100"),
    ));
    reads.push((
        a.workspace[0].auth.clone(),
        "/v2/acme/users?limit=1000".to_owned(),
    ));

    let mut snapshot = Vec::new();
    for (auth, target) in reads {
        let reply = send(app, &auth, &Request::new(Method::GET, &target)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "A's {target}: {}",
            reply.body_text()
        );
        let total = reply
            .headers
            .get("total")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        snapshot.push((
            target,
            format!("{} total={total:?} {}", reply.status, reply.body_text()),
        ));
    }

    // As stored: jobs, their files, users (password hashes included).
    let acme = TenantId::parse("acme").unwrap();
    let ports = app.service.ports();
    for id in t.job_ids() {
        let job = ports
            .jobs
            .get_job(&acme, id)
            .await
            .unwrap()
            .expect("A's job");
        let mut file = Vec::new();
        ports
            .files
            .open(&job.file_key, 0)
            .await
            .unwrap()
            .read_to_end(&mut file)
            .await
            .unwrap();
        snapshot.push((
            format!("stored job {id}"),
            serde_json::to_string(&job).unwrap(),
        ));
        snapshot.push((
            format!("file of job {id}"),
            String::from_utf8_lossy(&file).into_owned(),
        ));
    }
    let users = ports.users.users_by_ids(&acme, &t.users).await.unwrap();
    assert_eq!(users.len(), t.users.len());
    snapshot.push((
        "stored users".to_owned(),
        serde_json::to_string(&users).unwrap(),
    ));
    snapshot.push((
        "settings".to_owned(),
        serde_json::to_string(&app.service.settings(&acme).await.unwrap()).unwrap(),
    ));
    snapshot
}

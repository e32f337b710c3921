//! No secret and no password in any answer, log line or stored byte.
//!
//! A real `bulk-local` runs at the most verbose log level (`BULK_LOG=trace`) with its stdout and
//! stderr captured, seeded with a known secret. A full run goes through every dialect — the
//! CCAI flow with its error logs, the Zendesk batches and job statuses, Huawei Workspace batches
//! with passwords (accepted, refused for a rule, refused for a duplicate, AK/SK-signed), refused
//! credentials that share a prefix with the real secret, and a second credential made with
//! `bulk-admin`, used, and revoked (refused at once). Then every answer (status line, headers,
//! body), every scheme and update error log and job status, and every line the server printed
//! are searched for the secrets (in clear, in 16-character pieces, and as the base64 of the
//! Basic credentials sent), the master key, and every password; and every file of the data
//! directory is searched for the secrets and the Workspace passwords, which are stored only as
//! argon2id hashes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use bulk_tests::cases::{self, Vars};
use bulk_tests::local_server::{admin, LocalServer};
use bulk_tests::{multipart, sdk_date, Part, BOUNDARY, PREFIX};
use bulk_users::auth::{sign_request, SignedRequest};
use bulk_users::model::{TenantId, UserKey};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

const TENANT: &str = "acme";
const KEY_ID: &str = "acme-seeded-key";
/// The seeded credential's secret.
const SECRET: &str = "Qz7vT4pL8wR1nB6cY3hJ5dF0gAx9kM2s";

/// Passwords of Workspace users the server accepts: stored only as argon2id hashes.
const ACCEPTED_PASSWORDS: [&str; 3] = [
    "Ok#Passw0rd-Alpha1",
    "Ok#Passw0rd-Bravo2",
    "Signed#Passw0rd-Delta5",
];
/// Passwords of Workspace batches the server refuses (a rule broken, a duplicate name): never
/// stored at all.
const REFUSED_PASSWORDS: [&str; 4] = [
    "Sh0rt#x",
    "TooLong#Passw0rd-0123456789abcdefXYZ",
    "Refused#Passw0rd3",
    "Dup#Passw0rd-Charlie4",
];
/// A password sent as a number (a broken type rule).
const NUMERIC_PASSWORD: &str = "987654321012345";
/// `password` fields the Zendesk and CCAI dialects do not have: the client's own data, kept in
/// its job file like the rest of its file, but never echoed in an answer or a log.
const UNKNOWN_FIELD_PASSWORDS: [&str; 2] = ["Zd#NotAField-Echo6", "Ccai#NotAField-Fox7"];

/// A client that keeps a transcript of every answer.
struct Client {
    http: reqwest::Client,
    port: u16,
    transcript: Vec<String>,
}

/// How a request presents its credential.
#[derive(Clone)]
enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
    Token(String),
    /// AK/SK (`SDK-HMAC-SHA256`) with this key id and secret.
    Signed(String, String),
}

enum Payload {
    Empty,
    Json(Value),
    Form(Vec<Part>),
}

struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Client {
    async fn call(
        &mut self,
        auth: &Auth,
        method: Method,
        target: &str,
        payload: Payload,
    ) -> Answer {
        let (content_type, body) = match payload {
            Payload::Empty => (None, Vec::new()),
            Payload::Json(value) => (
                Some("application/json".to_owned()),
                serde_json::to_vec(&value).unwrap(),
            ),
            Payload::Form(parts) => (
                Some(format!("multipart/form-data; boundary={BOUNDARY}")),
                multipart(&parts),
            ),
        };
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type).unwrap(),
            );
        }
        let encode = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
        let authorization = match auth {
            Auth::None => None,
            Auth::Basic(user, secret) => {
                Some(format!("Basic {}", encode(format!("{user}:{secret}"))))
            }
            Auth::Bearer(secret) => Some(format!("Bearer {secret}")),
            Auth::Token(secret) => {
                headers.insert("x-auth-token", HeaderValue::from_str(secret).unwrap());
                None
            }
            Auth::Signed(key_id, secret) => {
                headers.insert(
                    http::header::HOST,
                    HeaderValue::from_str(&format!("127.0.0.1:{}", self.port)).unwrap(),
                );
                headers.insert("x-sdk-date", HeaderValue::from_str(&sdk_date()).unwrap());
                let (path, query) = match target.split_once('?') {
                    Some((path, query)) => (path, Some(query)),
                    None => (target, None),
                };
                Some(
                    sign_request(
                        &SignedRequest {
                            method: method.as_str(),
                            path,
                            query,
                            headers: &headers,
                            body: &body,
                        },
                        key_id,
                        secret,
                    )
                    .expect("sign"),
                )
            }
        };
        if let Some(value) = authorization {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&value).unwrap(),
            );
        }
        let response = self
            .http
            .request(
                method.clone(),
                format!("http://127.0.0.1:{}{target}", self.port),
            )
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {target}: {error}"));
        let mut text = format!("{:?} {}\n", response.version(), response.status());
        for (name, value) in response.headers() {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let body_text = String::from_utf8_lossy(&bytes).into_owned();
        text.push_str(&body_text);
        self.transcript.push(format!("{method} {target}\n{text}"));
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: body_text,
        }
    }

    async fn ok(&mut self, auth: &Auth, method: Method, target: &str, payload: Payload) -> Value {
        let answer = self.call(auth, method.clone(), target, payload).await;
        assert!(
            answer.status.is_success(),
            "{method} {target}: {} {}",
            answer.status,
            answer.text
        );
        answer.body
    }

    /// A GET that must succeed.
    async fn get(&mut self, auth: &Auth, target: &str) -> Value {
        self.ok(auth, Method::GET, target, Payload::Empty).await
    }

    /// `POST upload` of `file` named `filename`: the job.
    async fn upload(&mut self, auth: &Auth, file: &Value, filename: &str) -> Value {
        let target = format!("{PREFIX}/upload");
        self.ok(auth, Method::POST, &target, upload(file, filename))
            .await
    }

    /// Uploads `file`, proceeds and waits until the job is completed: its id.
    async fn upload_and_proceed(&mut self, file: &Value, filename: &str) -> Value {
        let job = self.upload(&basic(), file, filename).await;
        let proceed = Payload::Json(json!({"id": job["id"]}));
        let target = format!("{PREFIX}/proceed");
        self.ok(&basic(), Method::POST, &target, proceed).await;
        self.completed(&basic(), &job["id"]).await;
        job["id"].clone()
    }

    /// A Zendesk batch, until its job status is completed.
    async fn zendesk(&mut self, auth: &Auth, method: Method, target: &str, body: Value) -> Value {
        let answer = self.ok(auth, method, target, Payload::Json(body)).await;
        self.zendesk_completed(auth, &answer).await
    }

    /// Waits until the CCAI job `id` is completed.
    async fn completed(&mut self, auth: &Auth, id: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self
                .ok(
                    auth,
                    Method::GET,
                    &format!("{PREFIX}/jobs/{id}"),
                    Payload::Empty,
                )
                .await;
            if job["status"] == "completed" {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never completed: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the Zendesk job status `key` is completed.
    async fn zendesk_completed(&mut self, auth: &Auth, answer: &Value) -> Value {
        let key = answer["job_status"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job status in {answer}"))
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self
                .ok(
                    auth,
                    Method::GET,
                    &format!("/api/v2/job_statuses/{key}.json"),
                    Payload::Empty,
                )
                .await;
            if status["job_status"]["status"] == "completed" {
                return status["job_status"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "job status {key} never completed: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn upload(file: &Value, filename: &str) -> Payload {
    Payload::Form(vec![Part {
        name: "file".to_owned(),
        filename: Some(filename.to_owned()),
        bytes: file.to_string().into_bytes(),
    }])
}

/// A line without its ANSI colour codes.
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The forbidden strings found in `haystack`, by name.
fn found(haystack: &[u8], needles: &[(String, String)]) -> Vec<String> {
    needles
        .iter()
        .filter(|(_, needle)| {
            !needle.is_empty()
                && haystack
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every file under `dir`, recursively (the server may be moving files meanwhile).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The bytes of every file of the data directory but the master key, by path relative to it.
fn data_files(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths = Vec::new();
    files_under(data, &mut paths);
    paths
        .into_iter()
        .filter(|path| !path.ends_with("master.key"))
        // A file may vanish between listing and reading (the database's journal).
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            Some((path.strip_prefix(data).unwrap().to_path_buf(), bytes))
        })
        .collect()
}

fn basic() -> Auth {
    Auth::Basic(TENANT.to_owned(), SECRET.to_owned())
}

fn zendesk_token() -> Auth {
    Auth::Basic("admin@acme.test/token".to_owned(), SECRET.to_owned())
}

fn bearer() -> Auth {
    Auth::Bearer(SECRET.to_owned())
}

fn token() -> Auth {
    Auth::Token(SECRET.to_owned())
}

fn signed() -> Auth {
    Auth::Signed(KEY_ID.to_owned(), SECRET.to_owned())
}

/// The seeded secret with its tail changed, and with one more character.
fn near_misses() -> [String; 2] {
    [
        format!("{}{}", &SECRET[..24], "WrongTail0000000"),
        format!("{}x", SECRET),
    ]
}

const BATCH: &str = "/v2/acme/users/batch-create";

/// CCAI: template, config, upload, proceed, status, jobs, both error logs. Answers the file
/// uploaded.
async fn ccai_flow(c: &mut Client) -> Value {
    c.get(&basic(), &format!("{PREFIX}/template")).await;
    let file = json!([
        {"email": "jane@acme.test", "first_name": "Jane", "last_name": "Doe", "agent_number": "1001",
         "roles": [{"name": "Agent", "value": 1}], "teams": [{"name": "Sales", "value": 1}]},
        {"email": "john@acme.test", "first_name": "John", "last_name": "Roe", "status": "Inactive"},
    ]);
    c.upload_and_proceed(&file, "users.json").await;
    // Scheme errors, one for a `password` field the dialect does not have.
    let bad = json!([
        {"email": "not-an-email", "first_name": "", "last_name": "Roe",
         "password": UNKNOWN_FIELD_PASSWORDS[1]},
    ]);
    let invalid = c.upload(&basic(), &bad, "bad.json").await;
    assert_eq!(invalid["status"], "invalid_scheme", "{invalid}");
    let target = format!("{PREFIX}/errors/scheme/{}", invalid["id"]);
    let errors = c.get(&basic(), &target).await;
    assert!(errors.to_string().contains("password"), "{errors}");
    // Update errors: a rename onto a taken email.
    let renames = json!([
        {"email": "john@acme.test", "new_email": "jane@acme.test", "first_name": "John", "last_name": "Roe"},
    ]);
    let id = c.upload_and_proceed(&renames, "renames.json").await;
    let errors = c
        .get(&basic(), &format!("{PREFIX}/errors/update/{id}"))
        .await;
    assert!(errors.as_array().is_some_and(|e| !e.is_empty()), "{errors}");
    // A file replaced before proceeding; a presigned upload (501 locally).
    let pending = c.upload(&basic(), &file, "pending.json").await;
    let replaced = Payload::Form(vec![
        Part::text("id", &pending["id"].to_string()),
        Part::file(file.to_string().into_bytes()),
    ]);
    let upload = format!("{PREFIX}/upload");
    c.ok(&basic(), Method::PUT, &upload, replaced).await;
    let presign = Payload::Json(json!({"bytes": 100}));
    let presigned = c
        .call(
            &basic(),
            Method::POST,
            &format!("{upload}/presigned"),
            presign,
        )
        .await;
    let text = &presigned.text;
    assert_eq!(presigned.status, StatusCode::NOT_IMPLEMENTED, "{text}");
    for query in [
        "jobs?per_page=5",
        "config?emails=jane@acme.test,john@acme.test",
        "config?page=1",
    ] {
        c.get(&basic(), &format!("{PREFIX}/{query}")).await;
    }
    file
}

/// Zendesk, with each of its credential forms.
async fn zendesk_flow(c: &mut Client) {
    let users = json!({"users": [
        {"name": "Ada Lovelace", "email": "ada@acme.test", "external_id": "A-1", "role": "agent"},
        {"name": "Alan Turing", "email": "alan@acme.test", "external_id": "A-2"},
        // Zendesk users have no password: this user fails, the value is never echoed.
        {"name": "Eve Hacker", "email": "eve@acme.test", "password": UNKNOWN_FIELD_PASSWORDS[0]},
    ]});
    let create = "/api/v2/users/create_many.json";
    let created = c
        .zendesk(&zendesk_token(), Method::POST, create, users)
        .await;
    assert_eq!(created["results"][2]["status"], "Failed", "{created}");
    let ada = created["results"][0]["id"].clone();
    let upsert = json!({"users": [
        {"name": "Ada King", "email": "ada@acme.test"},
        {"name": "Edsger Dijkstra", "email": "edsger@acme.test", "external_id": "E-1"},
    ]});
    let batches = [
        (
            bearer(),
            Method::POST,
            "/api/v2/users/create_or_update_many".to_owned(),
            upsert,
        ),
        (
            basic(),
            Method::PUT,
            format!("/api/v2/users/update_many.json?ids={ada}"),
            json!({"user": {"notes": "moved", "suspended": true}}),
        ),
        (
            zendesk_token(),
            Method::PUT,
            "/api/v2/users/update_many".to_owned(),
            json!({"users": [{"external_id": "A-2", "suspended": false}]}),
        ),
    ];
    for (auth, method, target, body) in batches {
        c.zendesk(&auth, method, &target, body).await;
    }
    let destroy = "/api/v2/users/destroy_many.json?external_ids=E-1,nobody";
    let destroyed = c
        .ok(&bearer(), Method::DELETE, destroy, Payload::Empty)
        .await;
    let destroyed = c.zendesk_completed(&bearer(), &destroyed).await;
    c.get(&bearer(), "/api/v2/job_statuses.json?page[size]=2")
        .await;
    let key = destroyed["id"].as_str().unwrap();
    let show_many = format!("/api/v2/job_statuses/show_many.json?ids={key}");
    c.get(&bearer(), &show_many).await;
}

/// Huawei Workspace: batches with passwords, accepted and refused
/// (`tests/corpus/secrets/refused_batches.jsonl`), list and delete.
async fn workspace_flow(c: &mut Client) {
    let accepted = json!({"users": [
        {"user_name": "alpha", "user_email": "alpha@acme.test", "active_type": "ADMIN_ACTIVATE",
         "password": ACCEPTED_PASSWORDS[0]},
        {"user_name": "bravo", "user_phone": "5550100", "active_type": "ADMIN_ACTIVATE",
         "password": ACCEPTED_PASSWORDS[1], "enable_change_password": true},
    ]});
    c.ok(&token(), Method::POST, BATCH, Payload::Json(accepted))
        .await;
    let vars = Vars::new()
        .with("REFUSED_PASSWORDS", REFUSED_PASSWORDS.to_vec())
        .with("NUMERIC_PASSWORD", NUMERIC_PASSWORD.parse::<u64>().unwrap());
    for case in cases::load("secrets/refused_batches.jsonl") {
        let users = vars.fill_json(&case["users"]);
        let batch = Payload::Json(json!({ "users": users }));
        let refused = c.call(&token(), Method::POST, BATCH, batch).await;
        let name = cases::name(&case);
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            refused.text
        );
        let code = &refused.body["error_code"];
        assert_eq!(*code, case["error_code"], "{name}: {}", refused.text);
    }
    // The official SDK's way: AK/SK-signed.
    let delta = json!({"users": [
        {"user_name": "delta", "user_email": "delta@acme.test", "active_type": "ADMIN_ACTIVATE",
         "password": ACCEPTED_PASSWORDS[2]},
    ]});
    c.ok(&signed(), Method::POST, BATCH, Payload::Json(delta))
        .await;
    let list = c.get(&signed(), "/v2/acme/users?limit=100&offset=0").await;
    let id_of = |name: &str| {
        let users = list["users"].as_array().unwrap().iter();
        let user = users.clone().find(|user| user["user_name"] == name);
        let id = user.and_then(|user| user["id"].as_str());
        id.unwrap_or_else(|| panic!("no {name} in {list}"))
            .to_owned()
    };
    let (bravo, delta) = (id_of("bravo"), id_of("delta"));
    let target = format!("/v2/acme/users/{bravo}");
    let deleted = c
        .call(&token(), Method::DELETE, &target, Payload::Empty)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let batch_delete = Payload::Json(json!({ "user_ids": [delta] }));
    let target = "/v2/acme/users/batch-delete";
    let deleted = c.call(&signed(), Method::POST, target, batch_delete).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    c.get(&token(), "/v2/acme/users?user_name=alp").await;
}

/// Refused credentials (`tests/corpus/secrets/refused_credentials.jsonl`): near misses of the
/// real secret, and the real one misused; then a signed request whose body was changed after
/// signing.
async fn refused_credentials(c: &mut Client) {
    let [near, near_twin] = near_misses();
    let vars = Vars::new()
        .with("TENANT", TENANT)
        .with("KEY_ID", KEY_ID)
        .with("SECRET", SECRET)
        .with("PREFIX", PREFIX)
        .with("NEAR", near)
        .with("NEAR_TWIN", near_twin);
    for case in cases::load("secrets/refused_credentials.jsonl") {
        let text = |key: &str, at: usize| vars.fill(case[key][at].as_str().expect(key));
        let auth = match ["basic", "bearer", "token", "signed"].map(|key| case.get(key).is_some()) {
            [true, false, false, false] => Auth::Basic(text("basic", 0), text("basic", 1)),
            [false, true, false, false] => {
                Auth::Bearer(vars.fill(case["bearer"].as_str().unwrap()))
            }
            [false, false, true, false] => Auth::Token(vars.fill(case["token"].as_str().unwrap())),
            [false, false, false, true] => Auth::Signed(text("signed", 0), text("signed", 1)),
            [false, false, false, false] => Auth::None,
            _ => panic!("{}: one credential at most", cases::name(&case)),
        };
        let target = vars.fill(case["target"].as_str().expect("target"));
        let answer = c.call(&auth, Method::GET, &target, Payload::Empty).await;
        let name = cases::name(&case);
        let text = &answer.text;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {target}: {text}"
        );
    }
    // A signed request whose body was changed after signing.
    let body = json!({"users": [{"user_name": "tampered", "user_phone": "1"}]});
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-sdk-date", HeaderValue::from_str(&sdk_date()).unwrap());
    let signature = sign_request(
        &SignedRequest {
            method: "POST",
            path: BATCH,
            query: None,
            headers: &headers,
            body: body.to_string().as_bytes(),
        },
        KEY_ID,
        SECRET,
    )
    .unwrap();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&signature).unwrap(),
    );
    let response = c
        .http
        .post(format!("http://127.0.0.1:{}{BATCH}", c.port))
        .headers(headers)
        .body(json!({"users": [{"user_name": "swapped", "user_phone": "1"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = response.text().await.unwrap();
    c.transcript
        .push(format!("POST {BATCH} (tampered)\n{text}"));
}

/// A second credential made with bulk-admin: used in every form, then revoked and refused at
/// once. Answers its secret.
async fn second_credential(c: &mut Client, data: &Path, file: &Value) -> String {
    let create = [
        "credential",
        "create",
        "--tenant",
        TENANT,
        "--name",
        "rotation bot",
    ];
    let created = admin(data, &create);
    let field = |name: &str| {
        let value = created.lines().find_map(|line| line.strip_prefix(name));
        let value = value.unwrap_or_else(|| panic!("no {name} in bulk-admin's output"));
        value.trim().to_owned()
    };
    let (second_key_id, second) = (field("key id:"), field("secret:"));
    let second_basic = Auth::Basic(TENANT.to_owned(), second.clone());
    let second_bearer = Auth::Bearer(second.clone());
    let second_token = Auth::Token(second.clone());
    let second_signed = Auth::Signed(second_key_id.clone(), second.clone());
    let jobs = c.get(&second_basic, &format!("{PREFIX}/jobs")).await;
    assert!(jobs.as_array().is_some_and(|jobs| !jobs.is_empty()));
    let job = c.upload(&second_basic, file, "second.json").await;
    let job = c
        .get(&second_basic, &format!("{PREFIX}/jobs/{}", job["id"]))
        .await;
    assert_eq!(job["uploaded_api_user_name"], "rotation bot");
    c.get(&second_bearer, "/api/v2/job_statuses").await;
    c.get(&second_token, "/v2/acme/users").await;
    c.get(&second_signed, "/v2/acme/users?limit=5").await;
    let listed = admin(data, &["credential", "list", "--tenant", TENANT]);
    assert!(
        listed.contains(&second_key_id) && listed.contains(KEY_ID),
        "{listed}"
    );
    assert!(
        !listed.contains(&second) && !listed.contains(SECRET),
        "bulk-admin lists no secret"
    );
    let revoke = [
        "credential",
        "revoke",
        "--tenant",
        TENANT,
        "--key-id",
        &second_key_id,
    ];
    admin(data, &revoke);
    for (auth, target) in [
        (&second_basic, format!("{PREFIX}/jobs")),
        (&second_bearer, "/api/v2/job_statuses".to_owned()),
        (&second_token, "/v2/acme/users".to_owned()),
        (&second_signed, "/v2/acme/users".to_owned()),
    ] {
        let answer = c.call(auth, Method::GET, &target, Payload::Empty).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "a revoked credential is refused at once: {target}: {}",
            answer.text
        );
    }
    // The seeded credential still works.
    c.get(&basic(), &format!("{PREFIX}/jobs")).await;
    second
}

/// Every job's error logs and job status (with results), as the API returns them.
async fn read_every_job_log(c: &mut Client) {
    let jobs = c
        .get(&basic(), &format!("{PREFIX}/jobs?per_page=100"))
        .await;
    let ids: Vec<u64> = (jobs.as_array().unwrap().iter())
        .map(|job| job["id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() >= 16, "{jobs}");
    for id in &ids {
        c.get(&basic(), &format!("{PREFIX}/errors/scheme/{id}"))
            .await;
        c.get(&basic(), &format!("{PREFIX}/errors/update/{id}"))
            .await;
        c.get(&bearer(), &format!("/api/v2/job_statuses/{id:032x}"))
            .await;
    }
}

/// What must never appear, by name: in stored job files (`stored`), and anywhere else
/// (`everything`: also the unknown-field passwords, which a client's own file holds, and the
/// master key).
struct Forbidden {
    stored: Vec<(String, String)>,
    everything: Vec<(String, String)>,
}

fn forbidden(second: &str, master_key: String) -> Forbidden {
    let encode = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (name, secret) in [
        ("the seeded secret", SECRET),
        ("the admin-made secret", second),
    ] {
        secrets.push((name.to_owned(), secret.to_owned()));
        for (at, piece) in secret.as_bytes().windows(16).enumerate() {
            secrets.push((
                format!("{name}'s characters {at}..{}", at + 16),
                String::from_utf8(piece.to_vec()).unwrap(),
            ));
        }
        for user in [TENANT, "globex", "admin@acme.test/token"] {
            secrets.push((
                format!("Basic {user}:{name} as sent (base64)"),
                encode(format!("{user}:{secret}")),
            ));
        }
    }
    for wrong in near_misses() {
        let name = "a refused near-miss secret";
        secrets.push((name.to_owned(), wrong.clone()));
        secrets.push((
            format!("Basic {TENANT}:{name} (base64)"),
            encode(format!("{TENANT}:{wrong}")),
        ));
    }
    let passwords = ACCEPTED_PASSWORDS.iter().chain(&REFUSED_PASSWORDS);
    let mut workspace_passwords: Vec<(String, String)> = (passwords.chain(&[NUMERIC_PASSWORD]))
        .map(|password| {
            (
                format!("the Workspace password '{password}'"),
                password.to_string(),
            )
        })
        .collect();
    workspace_passwords.push((
        "a Workspace password's base64".to_owned(),
        encode(ACCEPTED_PASSWORDS[0].to_owned()),
    ));
    let unknown_field_passwords = UNKNOWN_FIELD_PASSWORDS.iter().map(|password| {
        (
            format!("the unknown-field password '{password}'"),
            password.to_string(),
        )
    });
    let stored: Vec<(String, String)> = secrets.into_iter().chain(workspace_passwords).collect();
    let master = ("the master key".to_owned(), master_key);
    let everything = (stored.iter().cloned())
        .chain(unknown_field_passwords)
        .chain([master])
        .collect();
    Forbidden { stored, everything }
}

impl Forbidden {
    /// Every answer (status line, headers and body) and every line the server printed (as
    /// printed, and without colour codes).
    fn in_answers_and_lines(&self, transcript: &[String], lines: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        for entry in transcript {
            for leak in found(entry.as_bytes(), &self.everything) {
                problems.push(format!("an answer carries {leak}: {entry}"));
            }
        }
        // The most verbose level the subscriber accepts is on: the run's refused signatures
        // are logged at DEBUG, its completed jobs at INFO (no dependency of bulk-local logs
        // at TRACE).
        for (level, event) in [
            ("DEBUG", "signed request refused"),
            ("INFO", "job completed"),
        ] {
            assert!(
                lines
                    .iter()
                    .map(|line| without_ansi(line))
                    .any(|line| line.contains(level) && line.contains(event)),
                "the server logged no {level} '{event}' line at BULK_LOG=trace: {lines:?}"
            );
        }
        for line in lines {
            for text in [line.clone(), without_ansi(line)] {
                for leak in found(text.as_bytes(), &self.everything) {
                    problems.push(format!("the server printed {leak}: {line}"));
                }
            }
        }
        problems
    }

    /// Every stored byte: the database, its journal, the queue, the job files. A Workspace
    /// job's file holds password hashes; a file the client uploaded holds what it sent (the
    /// unknown `password` fields included), which is its own data.
    fn in_files(&self, when: &str, files: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (path, bytes) in files {
            let needles = if path.starts_with("files") {
                &self.stored
            } else {
                &self.everything
            };
            for leak in found(bytes, needles) {
                problems.push(format!("{} stores {leak} ({when})", path.display()));
            }
        }
        problems
    }
}

/// How often `$argon2id$` occurs in `bytes`.
fn argon2_hashes(bytes: &[u8]) -> usize {
    let marker = b"$argon2id$";
    (bytes.windows(marker.len()))
        .filter(|window| window == marker)
        .count()
}

/// The accepted passwords are stored as argon2id hashes: in the database, and in the accepted
/// batches' job files in place of the passwords.
async fn passwords_are_argon2_hashes(data: &Path, stopped: &[(PathBuf, Vec<u8>)]) {
    let store = bulk_users::adapters::embedded::open(data)
        .await
        .expect("open the data directory");
    let acme = TenantId::parse(TENANT).unwrap();
    let alpha = store
        .ports
        .users
        .users_by_keys(&acme, &[UserKey::user_name("alpha")])
        .await
        .unwrap();
    let hash = alpha
        .first()
        .and_then(|user| user.workspace.password_hash.clone())
        .expect("alpha has a password hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let database = std::fs::read(data.join("bulk.sqlite3")).unwrap();
    assert!(
        argon2_hashes(&database) >= 1,
        "the database holds the password hashes"
    );
    let in_files: usize = (stopped.iter())
        .filter(|(path, _)| path.starts_with("files"))
        .map(|(_, bytes)| argon2_hashes(bytes))
        .sum();
    assert_eq!(
        in_files,
        ACCEPTED_PASSWORDS.len(),
        "password hashes in job files"
    );
}

/// The names and sizes of the files but job files, for messages.
fn names(files: &[(PathBuf, Vec<u8>)]) -> String {
    (files.iter())
        .filter(|(path, _)| !path.starts_with("files"))
        .map(|(path, bytes)| format!("{} ({} bytes)", path.display(), bytes.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_password_in_any_answer_log_or_stored_byte() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = LocalServer::start_capturing(
        &data,
        &[
            ("BULK_LOG", "trace"),
            ("BULK_LOCAL_TENANT", TENANT),
            ("BULK_LOCAL_SECRET", SECRET),
            ("BULK_LOCAL_KEY_ID", KEY_ID),
            ("BULK_LOCAL_WORKERS", "2"),
        ],
    );
    let mut client = Client {
        http: reqwest::Client::new(),
        port: server.port,
        transcript: Vec::new(),
    };
    let c = &mut client;
    let file = ccai_flow(c).await;
    zendesk_flow(c).await;
    workspace_flow(c).await;
    refused_credentials(c).await;
    let second = second_credential(c, &data, &file).await;
    read_every_job_log(c).await;
    let transcript = std::mem::take(&mut c.transcript);

    let master_key = std::fs::read_to_string(data.join("master.key"))
        .expect("master.key")
        .trim()
        .to_owned();
    // The data directory while the server runs (the database's write-ahead log included), and
    // once it has stopped.
    let running = data_files(&data);
    let lines = server.stop_capturing();
    let stopped = data_files(&data);

    let forbidden = forbidden(&second, master_key);
    let mut problems = forbidden.in_answers_and_lines(&transcript, &lines);
    problems.extend(forbidden.in_files("while running", &running));
    problems.extend(forbidden.in_files("once stopped", &stopped));
    assert!(
        stopped
            .iter()
            .any(|(path, _)| path == Path::new("bulk.sqlite3")),
        "{}",
        names(&stopped)
    );
    passwords_are_argon2_hashes(&data, &stopped).await;

    println!(
        "{} answers and {} log lines searched for {} forbidden strings; data directory scanned \
         while running ({} files: {} and job files) and once stopped ({} files: {} and job \
         files); in {:?}",
        transcript.len(),
        lines.len(),
        forbidden.everything.len(),
        running.len(),
        names(&running),
        stopped.len(),
        names(&stopped),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} leaks:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

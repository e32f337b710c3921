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
//! Basic credentials sent), the keyring's keys (roots and derived), and every password; and
//! every file of the data directory is searched for the secrets and the Workspace passwords,
//! which are stored only as argon2id hashes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use bulk_tests::cases::{self, Vars};
use bulk_tests::credential::Auth;
use bulk_tests::expect;
use bulk_tests::local_server::{admin, LocalServer};
use bulk_tests::{multipart, Part, BOUNDARY, PREFIX};
use bulk_users::auth::KeyBytes;
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
        if let Auth::Signed(..) = auth {
            let host = format!("127.0.0.1:{}", self.port);
            headers.insert(http::header::HOST, HeaderValue::from_str(&host).unwrap());
        }
        auth.add_to(&mut headers, method.as_str(), target, &body);
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

    /// A GET that must succeed: its body.
    async fn get(&mut self, auth: &Auth, target: &str) -> Value {
        let answer = self.call(auth, Method::GET, target, Payload::Empty).await;
        let (status, text) = (answer.status, &answer.text);
        assert!(status.is_success(), "GET {target}: {status} {text}");
        answer.body
    }

    /// Runs the steps of `file` under `tests/corpus/secrets/` (see its README) in order; what
    /// they `let` and `save` joins `vars`.
    async fn run(&mut self, file: &str, vars: &mut Vars) {
        for (at, step) in cases::load(&format!("secrets/{file}")).iter().enumerate() {
            for (name, value) in expect::table(step, "let") {
                *vars = vars.clone().with(name, vars.fill_json(value));
            }
            if step.get("let").is_some() {
                continue;
            }
            let each: Vec<Vars> = match step["cases"].as_str() {
                Some(table) => (cases::load(table).iter())
                    .map(|case| vars.clone().with("case", vars.fill_json(case)))
                    .collect(),
                None => vec![vars.clone()],
            };
            for step_vars in each {
                let step = step_vars.fill_json(step);
                let case = step_vars.get("case").map_or("", cases::name);
                let body = self.step(&step, &format!("{file}:{} {case}", at + 1)).await;
                for (name, pointer) in expect::table(&step, "save") {
                    let value = select(&body, pointer.as_str().expect("a pointer"));
                    *vars = vars.clone().with(name, value.clone());
                }
            }
        }
    }

    /// One step, filled: its request, sent again every 50 ms while the answer does not hold
    /// `until` (for a minute at most), and the checks of the last answer. Its body.
    async fn step(&mut self, step: &Value, what: &str) -> Value {
        let method = step["method"].as_str().unwrap_or("GET");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let target = step["target"].as_str().expect("target");
        let auth = Auth::of_case(&step["as"], &Vars::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .call(&auth, method.clone(), target, payload(step))
                .await;
            let (status, text) = (answer.status, &answer.text);
            let what = format!("{what}: {method} {target}: {status} {text}");
            match step["status"].as_u64() {
                Some(expected) => assert_eq!(u64::from(status.as_u16()), expected, "{what}"),
                None => assert!(status.is_success(), "{what}"),
            }
            let body = answer.body;
            let until = expect::table(step, "until");
            if until
                .into_iter()
                .all(|(at, value)| body.pointer(at) == Some(value))
            {
                expect::check_body(&body, step, &what);
                if let Some(needle) = step["contains"].as_str() {
                    assert!(body.to_string().contains(needle), "{what}");
                }
                if step["non_empty"] == true {
                    assert!(
                        body.as_array().is_some_and(|items| !items.is_empty()),
                        "{what}"
                    );
                }
                return body;
            }
            assert!(Instant::now() < deadline, "never {}: {what}", step["until"]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A step's body: its `json`, its `form` (a `file` part named `filename`, after an `id` part
/// when given), or none.
fn payload(step: &Value) -> Payload {
    match (step.get("json"), step.get("form")) {
        (Some(json), None) => Payload::Json(json.clone()),
        (None, Some(form)) => {
            let id = form.get("id").map(|id| Part::text("id", &id.to_string()));
            let file = Part {
                name: "file".to_owned(),
                filename: form["filename"].as_str().map(str::to_owned),
                bytes: form["file"].to_string().into_bytes(),
            };
            Payload::Form(id.into_iter().chain([file]).collect())
        }
        _ => Payload::Empty,
    }
}

/// The value at `pointer` in `body`, where a part `[field=value]` is the item of an array
/// with that field.
fn select<'a>(body: &'a Value, pointer: &str) -> &'a Value {
    let found = pointer.split('/').skip(1).try_fold(body, |value, part| {
        let inner = part
            .strip_prefix('[')
            .and_then(|part| part.strip_suffix(']'));
        match inner.and_then(|inner| inner.split_once('=')) {
            Some((field, wanted)) => value.as_array()?.iter().find(|item| item[field] == wanted),
            None => value
                .get(part)
                .or_else(|| value.get(part.parse::<usize>().ok()?)),
        }
    });
    found.unwrap_or_else(|| panic!("no {pointer} in {body}"))
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

/// Every root key of the keyring file (`v{N} {hex}` lines) and the keys derived from it, in hex
/// and in base64, by name.
fn keyring_keys(data: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data.join("master.key")).expect("master.key");
    let mut keys = Vec::new();
    for line in text.lines().filter(|line| line.starts_with('v')) {
        let mut words = line.split_whitespace();
        let (version, hex_root) = (words.next().unwrap(), words.next().unwrap());
        let bytes: Vec<u8> = (0..hex_root.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex_root[at..at + 2], 16).unwrap())
            .collect();
        let root = KeyBytes::from_slice(&bytes).expect("a 32-byte root");
        for (what, key) in [
            ("root", root.clone()),
            ("look-up key", root.lookup_key()),
            ("sealing key", root.seal_key()),
        ] {
            let bytes = key.expose();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            keys.push((format!("the {what} of key version {version} (hex)"), hex));
            keys.push((
                format!("the {what} of key version {version} (base64)"),
                base64,
            ));
        }
    }
    assert!(!keys.is_empty(), "no key in master.key");
    keys
}

/// The seeded secret with its tail changed, and with one more character.
fn near_misses() -> [String; 2] {
    [
        format!("{}{}", &SECRET[..24], "WrongTail0000000"),
        format!("{}x", SECRET),
    ]
}

const BATCH: &str = "/v2/acme/users/batch-create";

/// A signed request whose body was changed after signing is refused.
async fn tampered_signature(c: &mut Client) {
    let signed = json!({"users": [{"user_name": "tampered", "user_phone": "1"}]}).to_string();
    let mut headers = HeaderMap::new();
    let json_type = HeaderValue::from_static("application/json");
    headers.insert(http::header::CONTENT_TYPE, json_type);
    let auth = Auth::Signed(KEY_ID.to_owned(), SECRET.to_owned());
    auth.add_to(&mut headers, "POST", BATCH, signed.as_bytes());
    let sent = json!({"users": [{"user_name": "swapped", "user_phone": "1"}]}).to_string();
    let response = c
        .http
        .post(format!("http://127.0.0.1:{}{BATCH}", c.port))
        .headers(headers)
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = response.text().await.unwrap();
    c.transcript
        .push(format!("POST {BATCH} (tampered)\n{text}"));
}

/// A second credential made with bulk-admin: used in every form (`second_credential.jsonl`),
/// then revoked and refused at once (`revoked.jsonl`). Answers its secret.
async fn second_credential(c: &mut Client, data: &Path, vars: &mut Vars) -> String {
    let create = ["credential", "create", "--tenant", TENANT, "--name"];
    let created = admin(data, &[&create[..], &["rotation bot"]].concat());
    let field = |name: &str| {
        let value = created.lines().find_map(|line| line.strip_prefix(name));
        let value = value.unwrap_or_else(|| panic!("no {name} in bulk-admin's output"));
        value.trim().to_owned()
    };
    let (second_key_id, second) = (field("key id:"), field("secret:"));
    *vars = (vars.clone().with("SECOND", second.clone())).with("SECOND_KEY_ID", &*second_key_id);
    c.run("second_credential.jsonl", vars).await;
    let listed = admin(data, &["credential", "list", "--tenant", TENANT]);
    assert!(
        listed.contains(&second_key_id) && listed.contains(KEY_ID),
        "{listed}"
    );
    assert!(
        !listed.contains(&second) && !listed.contains(SECRET),
        "bulk-admin lists no secret"
    );
    let revoke = ["credential", "revoke", "--tenant", TENANT, "--key-id"];
    admin(data, &[&revoke[..], &[&second_key_id]].concat());
    c.run("revoked.jsonl", vars).await;
    second
}

/// Every job's error logs and job status (with results), as the API returns them.
async fn read_every_job_log(c: &mut Client) {
    let basic = Auth::Basic(TENANT.to_owned(), SECRET.to_owned());
    let jobs = c.get(&basic, &format!("{PREFIX}/jobs?per_page=100")).await;
    let ids: Vec<u64> = (jobs.as_array().unwrap().iter())
        .map(|job| job["id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() >= 16, "{jobs}");
    for id in &ids {
        for path in ["scheme", "update"] {
            c.get(&basic, &format!("{PREFIX}/errors/{path}/{id}")).await;
        }
        let bearer = Auth::Bearer(SECRET.to_owned());
        c.get(&bearer, &format!("/api/v2/job_statuses/{id:032x}"))
            .await;
    }
}

/// What must never appear, by name: in stored job files (`stored`), and anywhere else
/// (`everything`: also the unknown-field passwords, which a client's own file holds, and the
/// keyring's keys).
struct Forbidden {
    stored: Vec<(String, String)>,
    everything: Vec<(String, String)>,
}

fn forbidden(second: &str, keys: Vec<(String, String)>) -> Forbidden {
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
    let everything = (stored.iter().cloned())
        .chain(unknown_field_passwords)
        .chain(keys)
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
    let [near, near_twin] = near_misses();
    let mut vars = Vars::new()
        .with("TENANT", TENANT)
        .with("KEY_ID", KEY_ID)
        .with("SECRET", SECRET)
        .with("PREFIX", PREFIX)
        .with("BATCH", BATCH)
        .with("NEAR", near)
        .with("NEAR_TWIN", near_twin)
        .with("ACCEPTED_PASSWORDS", ACCEPTED_PASSWORDS.to_vec())
        .with("REFUSED_PASSWORDS", REFUSED_PASSWORDS.to_vec())
        .with("NUMERIC_PASSWORD", NUMERIC_PASSWORD.parse::<u64>().unwrap())
        .with("UNKNOWN_FIELD_PASSWORDS", UNKNOWN_FIELD_PASSWORDS.to_vec());
    // Every dialect's flow, then refused credentials (`tests/corpus/secrets/flow.jsonl`).
    c.run("flow.jsonl", &mut vars).await;
    tampered_signature(c).await;
    let second = second_credential(c, &data, &mut vars).await;
    read_every_job_log(c).await;
    let transcript = std::mem::take(&mut c.transcript);

    let keys = keyring_keys(&data);
    // The data directory while the server runs (the database's write-ahead log included), and
    // once it has stopped.
    let running = data_files(&data);
    let lines = server.stop_capturing();
    let stopped = data_files(&data);

    let forbidden = forbidden(&second, keys);
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

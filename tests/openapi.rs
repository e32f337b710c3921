//! The OpenAPI document (`shared/openapi.yaml`) against the code: it is a valid OpenAPI 3
//! document, and schemathesis, sending requests generated from it (valid and invalid ones, and
//! chains of them through the document's links) for every operation of every dialect to a
//! fresh `bulk-local` holding a little data, finds no server error, no answer the document
//! does not describe (status code, content type, headers and body), no valid request refused
//! and no invalid one accepted; and the document describes exactly the operations the route
//! table routes.
//!
//! The tools (`openapi-spec-validator`, `schemathesis`, tests/requirements.txt) are taken from
//! `.venv/bin` when it has them, else from `PATH`; the tests fail when they are missing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bulk_tests::local_server::{admin, LocalServer};
use bulk_tests::{basic, multipart, Part, BOUNDARY, PREFIX};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TENANT: &str = "acme";
const SECRET: &str = "openapi-contract-secret";

/// Every check schemathesis has: the answers against the document (status, content type,
/// headers, body), and the requests against the answers (a request the document calls valid
/// is accepted, one it calls invalid is refused; methods not documented are refused; a
/// resource a request made is found by the next). Where a check would judge a deliberate
/// choice, the configuration ([`schemathesis_config`]) says so, with why.
const CHECKS: &str = "all";
/// Every phase: the documented examples, the coverage of each constraint, fuzzing, and the
/// stateful phase chaining operations through the ids their answers carry.
const PHASES: &str = "examples,coverage,fuzzing,stateful";
/// Generated cases per operation and phase: enough to reach every documented answer of every
/// operation, few enough for a run well under a minute.
const MAX_EXAMPLES: &str = "20";
/// A fixed seed, so a run is repeatable.
const SEED: &str = "20261123";

/// schemathesis's configuration (a file of its own beside this test, read at run time).
fn schemathesis_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/schemathesis.toml"))
        .expect("tests/openapi/schemathesis.toml")
        .replace("{TENANT}", TENANT)
}

#[test]
fn the_document_is_valid_openapi() {
    let document = document();
    let output = run(
        std::process::Command::new(tool("openapi-spec-validator")).arg(&document),
        "openapi-spec-validator",
    );
    assert!(
        output.status.success(),
        "openapi-spec-validator {} exited with {}:\n{}",
        document.display(),
        output.status,
        text(&output)
    );
}

/// Every route of the route table is documented, and nothing is documented that is not routed:
/// the document's (method, path) pairs are the table's (aliases and the `.json` suffix are
/// the router's, not separate operations), each with exactly the query parameters its row says
/// it reads (the CCAI routes refuse any other).
#[test]
fn the_document_describes_exactly_the_routed_operations() {
    const OPERATIONS: &str = "import json, sys, yaml\n\
        document = yaml.safe_load(open(sys.argv[1]))\n\
        shared = document.get('components', {}).get('parameters', {})\n\
        def query(item, op):\n\
        \x20   found = [shared[p['$ref'].split('/')[-1]] if '$ref' in p else p\n\
        \x20            for p in item.get('parameters', []) + op.get('parameters', [])]\n\
        \x20   return sorted(p['name'] for p in found if p['in'] == 'query')\n\
        print(json.dumps(sorted([m.upper(), p, query(item, op)] \
        for p, item in document['paths'].items() for m, op in item.items() \
        if m in ('get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'))))";
    let output = run(
        std::process::Command::new(tool("python"))
            .args(["-c", OPERATIONS])
            .arg(document()),
        "python",
    );
    assert!(output.status.success(), "{}", text(&output));
    type Operation = (String, String, Vec<String>);
    let documented: std::collections::BTreeSet<Operation> =
        serde_json::from_slice(&output.stdout).expect("a JSON list of [method, path, query]");
    let routed: std::collections::BTreeSet<Operation> = bulk_users::api::route_table()
        .iter()
        .map(|spec| {
            let mut query: Vec<String> = spec.query.iter().map(|name| name.to_string()).collect();
            query.sort();
            (spec.method.to_string(), spec.pattern.to_owned(), query)
        })
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not documented: {undocumented:?}\ndocumented but not routed: {unrouted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Roles, teams and locations for the template and the users; limits high enough that the
    // run meets the API rather than the tenant's rate and concurrency limits.
    admin(
        &data,
        &[
            "tenant",
            "set",
            "--tenant",
            TENANT,
            "--roles",
            "Agent,Supervisor",
            "--teams",
            "Sales,Support",
            "--locations",
            "Berlin,Lisbon",
            "--requests-per-minute",
            "1000000",
            "--max-concurrent-jobs",
            "1000",
        ],
    );
    // schemathesis sends requests without and with broken credentials by design (every
    // operation's 401 is checked): its address may fail as often as it likes.
    let server = LocalServer::start(
        &data,
        &[
            ("BULK_LOCAL_TENANT", TENANT),
            ("BULK_LOCAL_SECRET", SECRET),
            ("BULK_FAILED_AUTHENTICATIONS_PER_MINUTE", "1000000"),
        ],
    );
    let client = Client::new(&server);
    client.seed().await;

    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config()).unwrap();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(tool("schemathesis"));
    command
        // Its caches go to the temporary directory.
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(document())
        .args(["--url", &server.url("")])
        .args(["--checks", CHECKS])
        .args(["--phases", PHASES])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .args([
            "--header",
            &format!("Authorization: {}", basic(TENANT, SECRET)),
        ])
        .args(["--header", &format!("X-Auth-Token: {SECRET}")])
        .arg("--no-color")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("schemathesis did not finish within 5 minutes")
        .unwrap_or_else(|error| panic!("cannot run schemathesis: {error}. {INSTALL}"));
    let report = text(&output);
    assert!(
        output.status.success(),
        "schemathesis exited with {} after {:.0?}:\n{report}",
        output.status,
        started.elapsed()
    );
    println!(
        "schemathesis passed in {:.0?}:\n{report}",
        started.elapsed()
    );
}

// ------------------------------------------------------------------------------------------------
// Seed data: the GET routes have jobs, errors, results and users to answer with
// ------------------------------------------------------------------------------------------------

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &LocalServer) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.url(""),
        }
    }

    /// Job 1: a completed upload. Job 2: an upload with scheme errors. Job 3: a Zendesk batch
    /// with a created user and a failed one. Job 4: a Workspace batch. Users of every dialect.
    async fn seed(&self) {
        let valid = json!([
            {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe",
             "agent_number": "1001", "location": "Berlin", "max_chat_limit": 2,
             "max_chat_limit_enabled": 1, "roles": [{"name": "Agent", "value": 1}],
             "teams": [{"name": "Sales", "value": 1}]},
            {"email": "john@example.com", "first_name": "John", "last_name": "Roe",
             "status": "Inactive"}
        ]);
        let job = self.upload(&valid.to_string()).await;
        assert_eq!(job["status"], "valid_scheme", "{job}");
        let (status, body) = self.ccai_post("proceed", &json!({ "id": job["id"] })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.wait_completed(&job["id"]).await;

        let invalid = json!([{"email": "not-an-email", "first_name": "", "last_name": "Roe"}]);
        let job = self.upload(&invalid.to_string()).await;
        assert_eq!(job["status"], "invalid_scheme", "{job}");

        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/api/v2/users/create_many.json", self.base))
                    .header("authorization", basic(TENANT, SECRET))
                    .json(&json!({"users": [
                        {"name": "Ada Lovelace", "email": "ada@example.com", "external_id": "ada",
                         "role": "agent"},
                        {"name": "Jane Again", "email": "jane@example.com"}
                    ]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let key = body["job_status"]["id"].as_str().unwrap().to_owned();
        let job = u64::from_str_radix(&key, 16).unwrap();
        self.wait_completed(&json!(job)).await;

        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/v2/{TENANT}/users/batch-create", self.base))
                    .header("x-auth-token", SECRET)
                    .json(&json!({"users": [
                        {"user_name": "grace", "user_email": "grace@example.com"}
                    ]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn upload(&self, file: &str) -> Value {
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}{PREFIX}/upload", self.base))
                    .header("authorization", basic(TENANT, SECRET))
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={BOUNDARY}"),
                    )
                    .body(multipart(&[Part::file(file.as_bytes().to_vec())])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn ccai_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}{PREFIX}/{path}", self.base))
                .header("authorization", basic(TENANT, SECRET))
                .json(body),
        )
        .await
    }

    async fn wait_completed(&self, id: &Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, job) = self
                .send(
                    self.http
                        .get(format!("{}{PREFIX}/jobs/{id}", self.base))
                        .header("authorization", basic(TENANT, SECRET)),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if job["status"] == "completed" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not complete: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }
}

// ------------------------------------------------------------------------------------------------
// Tools
// ------------------------------------------------------------------------------------------------

const INSTALL: &str = "Install the test tools with tests/run.sh, or \
                       `.venv/bin/python -m pip install -r tests/requirements.txt`";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn document() -> PathBuf {
    repository_root().join("shared/openapi.yaml")
}

/// A tool of the test venv, else the one on `PATH`.
fn tool(name: &str) -> PathBuf {
    let venv = repository_root().join(".venv/bin").join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

fn run(command: &mut std::process::Command, name: &str) -> Output {
    command
        .current_dir(repository_root())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {name}: {error}. {INSTALL}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

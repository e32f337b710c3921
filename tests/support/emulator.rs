//! The Lambda runtime emulator for tests: `cargo lambda watch` (PyPI package `cargo-lambda`)
//! serving this workspace's Lambda binaries through the real Lambda runtime API, against moto.
//!
//! The executable is `CARGO_LAMBDA`, else `../.venv/bin/cargo-lambda` next to the tests crate
//! (installed by `tests/run.sh` from `tests/requirements.txt`), else `cargo-lambda` on `PATH`.
//! It is the cargo subcommand binary, so it runs as `cargo-lambda lambda watch …`. A test never
//! skips the emulator: when it cannot be started, the test panics.
//!
//! What `cargo lambda watch` does (1.9.2), and what this module relies on:
//! - It listens on `-A ADDRESS -P PORT`; `POST /2015-03-31/functions/{bin}/invocations` with
//!   an event as the body invokes the workspace binary `{bin}` (any `[[bin]]` of any member).
//! - The first invocation of a function builds and starts it with `cargo run [--features …]
//!   --color … --manifest-path Cargo.toml --bin {bin}` in the workspace root (`cargo` from the
//!   `CARGO` variable that `cargo test` sets): the dev profile, the workspace's target dir,
//!   features unified over the default members. Being no test build, it leaves out what
//!   dev-dependencies add; [`build_features`] names those, so it builds the very units of
//!   `cargo build --workspace --all-targets` and `cargo test --workspace`, and only links the
//!   functions (or compiles nothing when they are up to date).
//! - The function process inherits the emulator's environment (the `BULK_*` and AWS variables
//!   set here) plus `AWS_LAMBDA_RUNTIME_API=http://ADDRESS:PORT/.rt/{bin}`,
//!   `AWS_LAMBDA_FUNCTION_NAME={bin}`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096`,
//!   `AWS_LAMBDA_FUNCTION_VERSION=1`, `AWS_LAMBDA_MAX_CONCURRENCY=1`.
//! - Answers: `200` with the function's response as the body; `500`
//!   `{"errorType", "errorMessage"}` when the runtime reported an error (the event did not
//!   deserialize, the handler failed or panicked); `404` `{"title": "Missing function",
//!   "detail"}` for a name that is no binary of the workspace; `408` with an empty body after
//!   `--timeout` seconds. Without `--timeout` an invocation of a function that died at start
//!   (missing variable, build error) never answers: the emulator only logs
//!   `ERROR command exited code=N`, so [`Emulator::try_invoke`] watches the log for that.
//! - Each function instance runs in a session of its own (`setsid`), so a process-group kill
//!   of the emulator does not reach it; on `SIGTERM` the emulator stops its instances itself.
//!   [`Emulator`]'s drop sends `SIGTERM`, then `SIGKILL`s the group and any instance left; a
//!   watchdog does the same when the test process dies without dropping it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulk_users::adapters::aws::{AwsSettings, Credentials, KMS_KEY_ENV};
use serde_json::{Map, Value};

/// How long the first invocation of a function may take: it compiles the function (and, when
/// the workspace was not built before, the whole dependency tree).
pub const FIRST_INVOCATION_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long any later invocation may take.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the emulator may take to listen after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Ports tried when the emulator dies at start (another process took the port).
const START_ATTEMPTS: usize = 3;
/// How long the emulator gets to stop its function instances after `SIGTERM`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running `cargo lambda watch`, stopped (with its function instances) on drop.
pub struct Emulator {
    child: Child,
    watchdog: Option<Child>,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// Where the emulator's output (and the functions' logs and build output) goes; removed on
    /// drop unless the test is failing.
    pub log: PathBuf,
    client: reqwest::Client,
    /// Functions invoked so far (their first invocation builds them).
    started: Mutex<HashSet<String>>,
    /// Functions whose process exited: the emulator does not restart them.
    exited: Mutex<HashSet<String>>,
}

/// An invocation the emulator did not answer with `200`.
#[derive(Debug)]
pub struct InvokeError {
    /// The emulator's HTTP status (`500` function error, `404` unknown function, `408`
    /// timeout), or `None` when there was no answer (the function process exited, the request
    /// failed or timed out).
    pub status: Option<u16>,
    /// The answer's body (JSON when it is), or a description of the failure.
    pub body: Value,
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.body),
            None => write!(f, "no answer: {}", self.body),
        }
    }
}

/// The executable of cargo-lambda.
pub fn cargo_lambda_executable() -> String {
    if let Ok(path) = std::env::var("CARGO_LAMBDA") {
        if !path.trim().is_empty() {
            return path;
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/cargo-lambda");
    if venv.exists() {
        return venv.display().to_string();
    }
    "cargo-lambda".to_owned()
}

/// The workspace root (where `cargo lambda watch` runs and finds the binaries).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// A sample event of `events/`, parsed.
pub fn sample_event(name: &str) -> Value {
    let path = workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Variables the test process got from `cargo test` for its own crate: not for the nested
/// build, which must see the same configuration as a plain `cargo build` in the workspace.
pub fn is_test_crate_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// What the functions' environment is made of (beside what the emulator sets itself).
enum FunctionEnvironment {
    /// A deployment's settings (its KMS key's ARN among them), a principal's access key, and
    /// more variables of the function's own.
    Deployed {
        settings: AwsSettings,
        credentials: Credentials,
        more: BTreeMap<String, String>,
    },
    /// These variables, and no `AWS_*`, `BULK_*` or `RUST_LOG` inherited from the test.
    Exactly(BTreeMap<String, String>),
}

/// The variables a deployed function gets: the deployment's settings (as the template's
/// environment gives them, the KMS key's ARN among them), and the access key of its execution
/// role.
pub fn deployed_environment(
    settings: &AwsSettings,
    credentials: &Credentials,
) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::from([
        ("BULK_TABLE_NAME".to_owned(), settings.table.clone()),
        ("BULK_BUCKET_NAME".to_owned(), settings.bucket.clone()),
        ("BULK_QUEUE_URL".to_owned(), settings.queue_url.clone()),
        ("AWS_REGION".to_owned(), settings.region.clone()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            credentials.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            credentials.secret_access_key().to_owned(),
        ),
    ]);
    if let Some(endpoint) = &settings.endpoint_url {
        variables.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.clone());
    }
    if let Some(key) = &settings.kms_key_arn {
        variables.insert(KMS_KEY_ENV.to_owned(), key.clone());
    }
    variables
}

impl FunctionEnvironment {
    fn apply(&self, command: &mut Command) {
        match self {
            FunctionEnvironment::Deployed {
                settings,
                credentials,
                more,
            } => {
                command
                    .env_remove("AWS_SESSION_TOKEN")
                    .env_remove("AWS_PROFILE")
                    .env_remove("AWS_DEFAULT_REGION")
                    .env_remove("AWS_ENDPOINT_URL")
                    .envs(deployed_environment(settings, credentials))
                    .envs(more);
            }
            FunctionEnvironment::Exactly(variables) => {
                for (name, _) in std::env::vars_os() {
                    let ours = name.to_str().is_some_and(|name| {
                        name.starts_with("AWS_") || name.starts_with("BULK_") || name == "RUST_LOG"
                    });
                    if ours {
                        command.env_remove(&name);
                    }
                }
                command.envs(variables);
            }
        }
    }
}

impl Emulator {
    /// Starts `cargo lambda watch` in the workspace root on a free loopback port, with the
    /// environment of `settings` (table, bucket, queue, endpoint, region) and `credentials`
    /// (as a function's execution role gives them), and waits until it listens. Panics when it
    /// cannot be started.
    pub async fn start(settings: &AwsSettings, credentials: &Credentials) -> Emulator {
        Emulator::start_with(settings, credentials, BTreeMap::new()).await
    }

    /// [`Emulator::start`] with `more` variables for the functions.
    pub async fn start_with(
        settings: &AwsSettings,
        credentials: &Credentials,
        more: BTreeMap<String, String>,
    ) -> Emulator {
        let environment = FunctionEnvironment::Deployed {
            settings: settings.clone(),
            credentials: credentials.clone(),
            more,
        };
        tokio::task::spawn_blocking(move || Emulator::start_blocking(&environment))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// Like [`Emulator::start`], the functions' environment being `variables` exactly: the
    /// test's own `AWS_*`, `BULK_*` and `RUST_LOG` variables are not passed on (what the
    /// emulator sets for each function process, `AWS_LAMBDA_*`, it still sets).
    pub async fn start_with_environment(variables: BTreeMap<String, String>) -> Emulator {
        let environment = FunctionEnvironment::Exactly(variables);
        tokio::task::spawn_blocking(move || Emulator::start_blocking(&environment))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    fn start_blocking(environment: &FunctionEnvironment) -> Emulator {
        let executable = cargo_lambda_executable();
        let features = match build_features() {
            Some(features) => vec!["--features".to_owned(), features],
            None => Vec::new(),
        };
        eprintln!("cargo lambda watch: builds with {features:?}");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Emulator::start_on(&executable, free_port(), environment, &features) {
                Ok(emulator) => return emulator,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the Lambda runtime emulator could not be started ({executable} lambda watch); \
             install it (python -m venv .venv && .venv/bin/pip install -r tests/requirements.txt, \
             as tests/run.sh does), or set CARGO_LAMBDA to the cargo-lambda executable.\n{}",
            failures.join("\n")
        );
    }

    fn start_on(
        executable: &str,
        port: u16,
        environment: &FunctionEnvironment,
        features: &[String],
    ) -> Result<Emulator, String> {
        // Loopback only: never through a proxy from the environment.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let log = std::env::temp_dir().join(format!(
            "bulk-tests-cargo-lambda-{}-{port}.log",
            std::process::id()
        ));
        let output = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let mut command = Command::new(executable);
        command
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            // Others may edit the sources while the suite runs: build once, never reload.
            .arg("--ignore-changes")
            .args(["--timeout", &FIRST_INVOCATION_TIMEOUT.as_secs().to_string()])
            .args(["--color", "never"])
            .args(features)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            // Its own process group, so the drop can signal it and the builds it runs.
            .process_group(0);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_test_crate_variable) {
                command.env_remove(&name);
            }
        }
        environment.apply(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {executable}: {e}"))?;
        let watchdog = spawn_watchdog(child.id());
        let mut emulator = Emulator {
            child,
            watchdog,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            client,
            started: Mutex::new(HashSet::new()),
            exited: Mutex::new(HashSet::new()),
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                return Err(format!(
                    "{executable} lambda watch on port {port} exited ({status}); its output ({}):\n{}",
                    emulator.log.display(),
                    emulator.log_text()
                ));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
                return Ok(emulator);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{executable} lambda watch did not listen on port {port} within \
                     {START_TIMEOUT:?}; its output ({}):\n{}",
                    emulator.log.display(),
                    emulator.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the emulator, its builds and its functions printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The crates the emulator's builds compiled (`Compiling …` lines of cargo): empty when the
    /// workspace build had already compiled every function.
    pub fn compiled_crates(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("Compiling "))
            .map(str::to_owned)
            .collect()
    }

    /// Invokes function `bin` with `event` through the runtime API and returns its response.
    /// Panics, with the emulator's log, unless the emulator answered `200`.
    pub async fn invoke(&self, bin: &str, event: &Value) -> Value {
        match self.try_invoke(bin, event).await {
            Ok(response) => response,
            Err(error) => panic!(
                "invoking {bin} through cargo lambda watch failed: {error}\n\
                 last lines of its output ({}):\n{}",
                self.log.display(),
                self.log_tail(60)
            ),
        }
    }

    /// Invokes function `bin` with `event`: `Ok` with the function's response when the
    /// emulator answered `200`, otherwise the status and body it answered, or why there was
    /// no answer. The first invocation of each function may take minutes (it builds it).
    pub async fn try_invoke(&self, bin: &str, event: &Value) -> Result<Value, InvokeError> {
        if self.exited.lock().unwrap().contains(bin) {
            return Err(InvokeError {
                status: None,
                body: Value::String(format!(
                    "the process of {bin} exited at an earlier invocation; \
                     cargo lambda watch does not restart it"
                )),
            });
        }
        let first = self.started.lock().unwrap().insert(bin.to_owned());
        let timeout = if first {
            FIRST_INVOCATION_TIMEOUT
        } else {
            INVOCATION_TIMEOUT
        };
        let exits_before = self.exits();
        let started = Instant::now();
        let request = self
            .client
            .post(format!(
                "{}/2015-03-31/functions/{bin}/invocations",
                self.endpoint
            ))
            .header("content-type", "application/json")
            .body(event.to_string())
            .timeout(timeout)
            .send();
        let result = tokio::select! {
            response = request => match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.map_err(|e| InvokeError {
                        status: Some(status),
                        body: Value::String(format!("cannot read the answer: {e}")),
                    })?;
                    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    });
                    if status == 200 {
                        Ok(body)
                    } else {
                        Err(InvokeError { status: Some(status), body })
                    }
                }
                Err(error) => Err(InvokeError {
                    status: None,
                    body: Value::String(format!("request failed: {error}")),
                }),
            },
            exited = self.wait_for_exit(exits_before) => {
                self.exited.lock().unwrap().insert(bin.to_owned());
                Err(InvokeError {
                    status: None,
                    body: Value::String(format!(
                        "the function process (or its build) exited: {exited}"
                    )),
                })
            }
        };
        eprintln!(
            "cargo lambda watch: {bin} answered in {:.1?}{}",
            started.elapsed(),
            if first { " (first invocation)" } else { "" }
        );
        result
    }

    /// How many times the emulator logged that a function process (or its build) exited.
    fn exits(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains("command exited"))
            .count()
    }

    /// Resolves, with the log line, once the emulator logs a new exit of a function process
    /// (an invocation then never gets an answer), or once the emulator itself is gone.
    async fn wait_for_exit(&self, exits_before: usize) -> String {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let text = self.log_text();
            let mut exits = text.lines().filter(|line| line.contains("command exited"));
            if let Some(line) = exits.nth(exits_before) {
                return line.trim().to_owned();
            }
            if !process_alive(self.child.id()) {
                return "cargo lambda watch itself is gone".to_owned();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let pid = self.child.id();
        // Function instances run in sessions of their own: find them before stopping.
        let instances = descendants(pid);
        signal("-TERM", &pid.to_string());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left: the group (emulator, cargo) and the instances.
        signal("-KILL", &format!("-{pid}"));
        for instance in instances {
            if process_alive(instance) {
                signal("-KILL", &instance.to_string());
            }
        }
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // The output is kept for a failing test only.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The functions of a stack under the runtime emulator, each as its own principal: one
/// `cargo lambda watch` per function (the emulator gives every function it runs the same
/// environment), started on the function's first invocation with the stack's settings and the
/// access key of the function's template policy.
pub struct FunctionEmulators<'a> {
    stack: &'a crate::moto::Stack,
    running: tokio::sync::Mutex<HashMap<String, Arc<Emulator>>>,
}

impl<'a> FunctionEmulators<'a> {
    pub fn new(stack: &'a crate::moto::Stack) -> FunctionEmulators<'a> {
        FunctionEmulators {
            stack,
            running: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The emulator running function `bin`, started on first use.
    pub async fn of(&self, bin: &str) -> Arc<Emulator> {
        let mut running = self.running.lock().await;
        if let Some(emulator) = running.get(bin) {
            return emulator.clone();
        }
        let credentials = self.stack.credentials_of(bin).await;
        let emulator = Arc::new(Emulator::start(&self.stack.settings(), &credentials).await);
        running.insert(bin.to_owned(), emulator.clone());
        emulator
    }

    /// Invokes function `bin` with `event` (see [`Emulator::try_invoke`]).
    pub async fn try_invoke(&self, bin: &str, event: &Value) -> Result<Value, InvokeError> {
        self.of(bin).await.try_invoke(bin, event).await
    }

    /// The crates the emulators' builds compiled.
    pub async fn compiled_crates(&self) -> Vec<String> {
        let running = self.running.lock().await;
        running
            .values()
            .flat_map(|emulator| emulator.compiled_crates())
            .collect()
    }
}

/// Stops the emulator when the test process ends without dropping it (killed, aborted).
/// Arguments: test process pid, emulator pid.
const WATCHDOG: &str = r#"
while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
if ! kill -0 "$1" 2>/dev/null; then
  kill -TERM "$2" 2>/dev/null
  sleep 10
  kill -KILL -"$2" 2>/dev/null
fi
"#;

fn spawn_watchdog(emulator: u32) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(emulator.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pids of every descendant of `root` (from `/proc`).
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// The `--features` for the emulator's builds, so that they build the very units the
/// workspace's test build (`cargo build --workspace --all-targets`, `cargo test --workspace`)
/// built, and nothing twice.
///
/// `cargo lambda watch` builds with `cargo run --bin NAME`, which builds no test target, so
/// resolver 2 leaves out the features that workspace members' dev-dependencies add (here
/// `tokio/test-util` from `bulk-users`); the test build includes them. The two feature sets
/// differ, and the emulator would compile tokio and everything above it (the AWS SDK, the
/// Lambda runtime: ~40 crates) a second time. Naming those features on the command line makes
/// the sets equal. They are read from `cargo metadata`, so they follow the manifests.
///
/// `BULK_TEST_LAMBDA_FEATURES` overrides them (comma-separated; empty: none). Whatever the
/// command that built the test, the workspace build is the one to match: `cargo run` at the
/// root resolves features over every default member, as `cargo build --workspace` does, never
/// as `cargo test -p bulk-tests` does.
pub fn build_features() -> Option<String> {
    if let Ok(features) = std::env::var("BULK_TEST_LAMBDA_FEATURES") {
        let features = features.trim();
        return (!features.is_empty()).then(|| features.to_owned());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} metadata: {e}"));
    assert!(output.status.success(), "{cargo} metadata failed");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let features = dev_dependency_features(&metadata);
    (!features.is_empty()).then(|| features.join(","))
}

/// `dependency/feature` for every feature a member's dev-dependency adds to a dependency that
/// some member also has as a (non-optional) normal dependency.
fn dev_dependency_features(metadata: &Value) -> Vec<String> {
    let dependencies: Vec<&Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|package| package["dependencies"].as_array().into_iter().flatten())
        .collect();
    let key = |dependency: &Value| -> Option<String> {
        dependency["rename"]
            .as_str()
            .or_else(|| dependency["name"].as_str())
            .map(str::to_owned)
    };
    let normal: Vec<&Value> = dependencies
        .iter()
        .copied()
        .filter(|d| d["kind"].is_null() && d["optional"] != true)
        .collect();
    let mut features = Vec::new();
    for dev in dependencies.iter().filter(|d| d["kind"] == "dev") {
        let Some(name) = key(dev) else { continue };
        let same: Vec<&&Value> = normal.iter().filter(|d| d["name"] == dev["name"]).collect();
        if same.is_empty() {
            continue;
        }
        let mut wanted: Vec<String> = dev["features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if dev["uses_default_features"] == true
            && same.iter().all(|d| d["uses_default_features"] == false)
        {
            wanted.push("default".to_owned());
        }
        for feature in wanted {
            let enabled_anyway = same.iter().any(|d| {
                d["features"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|f| f == feature.as_str()))
            });
            let flag = format!("{name}/{feature}");
            if !enabled_anyway && !features.contains(&flag) {
                features.push(flag);
            }
        }
    }
    features.sort();
    features
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port for cargo lambda watch: {e}"))
}

/// An API Gateway (HTTP API, payload 2.0) response as a function returned it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Map<String, Value>,
    /// The body parsed as JSON (`Null` when empty).
    pub body: Value,
    pub raw: Value,
}

impl HttpResponse {
    /// Reads a function's response: `statusCode` (integer), `headers` (object of strings),
    /// `isBase64Encoded` (boolean) and `body` (a string, JSON once base64-decoded when so
    /// flagged). Panics when the response does not have that shape.
    pub fn parse(response: &Value) -> HttpResponse {
        use base64::Engine;
        let status = response["statusCode"]
            .as_u64()
            .and_then(|status| u16::try_from(status).ok())
            .unwrap_or_else(|| panic!("no integer statusCode in {response}"));
        let headers = match &response["headers"] {
            Value::Object(headers) => headers
                .iter()
                .map(|(name, value)| {
                    assert!(
                        value.is_string(),
                        "header {name} is not a string: {response}"
                    );
                    (name.to_ascii_lowercase(), value.clone())
                })
                .collect(),
            Value::Null => Map::new(),
            other => panic!("headers is not an object: {other}"),
        };
        let base64 = response["isBase64Encoded"]
            .as_bool()
            .unwrap_or_else(|| panic!("no boolean isBase64Encoded in {response}"));
        let bytes = match &response["body"] {
            Value::Null => Vec::new(),
            Value::String(text) if base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|e| panic!("body is not base64 ({e}): {response}")),
            Value::String(text) => text.as_bytes().to_vec(),
            other => panic!("body is not a string: {other}"),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        HttpResponse {
            status,
            headers,
            body,
            raw: response.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(Value::as_str)
    }
}

//! The AWS emulator (moto) for tests: one server per test process, fresh resources per test.
//!
//! `BULK_TEST_AWS_ENDPOINT` points the tests at a running emulator. Otherwise the first caller
//! starts `moto_server` (from `MOTO_SERVER`, else `../.venv/bin/moto_server` next to the tests
//! crate, else `PATH`) on a free loopback port, under a watchdog that stops it when the test
//! process ends. A test never skips AWS silently: when moto cannot be started it panics.
//!
//! moto_server handles requests on concurrent threads without locks, so its conditional writes
//! are not atomic when they race (DynamoDB's are). Tests of racing workers use the serialized
//! emulator instead: moto's same server application, handling one request at a time
//! (`moto_serialized.py`, run by the Python next to `moto_server`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bulk_users::adapters::aws::provision::{create_bucket, create_queue, create_table};
use bulk_users::adapters::aws::{connect_with_credentials, AwsAdapters, AwsSettings, Credentials};

static ENDPOINT: OnceLock<String> = OnceLock::new();
static SERIALIZED_ENDPOINT: OnceLock<String> = OnceLock::new();
static RESOURCES: AtomicU64 = AtomicU64::new(0);

/// How long moto may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Ports tried when moto dies at start (another process took the port).
const START_ATTEMPTS: usize = 3;

/// How the emulator serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// `moto_server`: concurrently, conditional writes not atomic under races.
    Threaded,
    /// One request at a time: every write atomic, as on DynamoDB.
    Serialized,
}

/// The endpoint of the emulator, started once per test process.
pub async fn moto_endpoint() -> String {
    endpoint(Serving::Threaded).await
}

/// The endpoint of the emulator serving `serving`, started once per test process.
pub async fn endpoint(serving: Serving) -> String {
    if let Ok(endpoint) = std::env::var("BULK_TEST_AWS_ENDPOINT") {
        if !endpoint.trim().is_empty() {
            return endpoint.trim().trim_end_matches('/').to_owned();
        }
    }
    tokio::task::spawn_blocking(move || {
        let cell = match serving {
            Serving::Threaded => &ENDPOINT,
            Serving::Serialized => &SERIALIZED_ENDPOINT,
        };
        cell.get_or_init(|| start_moto(serving)).clone()
    })
    .await
    .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Adapters over a table, bucket and queue of their own (names unique per process and call),
/// with dummy credentials.
pub async fn fresh_aws(prefix: &str) -> AwsAdapters {
    fresh_aws_on(Serving::Threaded, prefix).await
}

/// [`fresh_aws`] on the emulator serving `serving`.
pub async fn fresh_aws_on(serving: Serving, prefix: &str) -> AwsAdapters {
    let endpoint = endpoint(serving).await;
    let cleaned: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(30)
        .collect();
    let name = format!(
        "bulk-{cleaned}-{}-{}",
        std::process::id(),
        RESOURCES.fetch_add(1, Ordering::SeqCst)
    );
    let settings = AwsSettings {
        table: name.clone(),
        bucket: name.clone(),
        queue_url: String::new(),
        endpoint_url: Some(endpoint.clone()),
        region: "us-east-1".to_owned(),
    };
    let credentials = Credentials::new("testing", "testing", None, None, "bulk-tests");
    let adapters = connect_with_credentials(&settings, credentials).await;
    create_table(&adapters.dynamodb, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create table {name} on {endpoint}: {e}"));
    create_bucket(&adapters.s3, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create bucket {name} on {endpoint}: {e}"));
    let queue_url = create_queue(&adapters.sqs, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create queue {name} on {endpoint}: {e}"));
    let settings = AwsSettings {
        queue_url,
        ..settings
    };
    AwsAdapters::from_clients(adapters.dynamodb, adapters.s3, adapters.sqs, settings)
}

fn moto_executable() -> String {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        if !path.trim().is_empty() {
            return path;
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.exists() {
        return venv.display().to_string();
    }
    "moto_server".to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port for moto: {e}"))
}

/// The serialized emulator's launcher.
const SERIALIZED: &str = include_str!("moto_serialized.py");

/// The command that serves moto on `port`.
fn moto_command(serving: Serving, executable: &str, port: u16) -> Vec<String> {
    let port = port.to_string();
    match serving {
        Serving::Threaded => vec![
            executable.to_owned(),
            "-H".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port,
        ],
        Serving::Serialized => {
            // The Python that runs `moto_server` (its virtualenv's), else `python3`.
            let python = Path::new(executable).with_file_name("python");
            let python = if python.exists() {
                python.display().to_string()
            } else {
                "python3".to_owned()
            };
            vec![
                python,
                "-c".to_owned(),
                SERIALIZED.to_owned(),
                "127.0.0.1".to_owned(),
                port,
            ]
        }
    }
}

/// The watchdog: runs moto in the background and stops it when the test process (or moto)
/// is gone. Arguments: parent pid, log file, then moto's command.
const WATCHDOG: &str = r#"
parent=$1 log=$2
shift 2
"$@" >"$log" 2>&1 &
moto=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done
kill "$moto" 2>/dev/null
"#;

fn start_moto(serving: Serving) -> String {
    let executable = moto_executable();
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        match start_moto_on(&moto_command(serving, &executable, port), port) {
            Ok(endpoint) => return endpoint,
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "the AWS emulator could not be started ({executable}); install it \
         (python -m venv .venv && .venv/bin/pip install 'moto[server]'), or set MOTO_SERVER to \
         its executable, or BULK_TEST_AWS_ENDPOINT to a running one.\n{}",
        failures.join("\n")
    );
}

fn start_moto_on(command: &[String], port: u16) -> Result<String, String> {
    let log =
        std::env::temp_dir().join(format!("bulk-tests-moto-{}-{port}.log", std::process::id()));
    let mut watchdog: Child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("moto-watchdog")
        .arg(std::process::id().to_string())
        .arg(&log)
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if answers_http(address) {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if let Ok(Some(status)) = watchdog.try_wait() {
            return Err(format!(
                "moto on port {port} exited ({status}); its output ({}):\n{}",
                log.display(),
                log_text()
            ));
        }
        if Instant::now() >= deadline {
            // The watchdog stays: it stops this moto when the test process ends.
            return Err(format!(
                "moto on port {port} did not answer within {START_TIMEOUT:?}; its output ({}):\n{}",
                log.display(),
                log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an HTTP server answers at `address`.
fn answers_http(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut start = [0u8; 8];
    stream.read_exact(&mut start).is_ok() && start.starts_with(b"HTTP/1.")
}

/// The fault-injecting proxy (`fault_proxy.py`) in front of an emulator endpoint: forwards every
/// request unchanged, or answers a fault instead (DynamoDB throttling, S3/SQS 5xx, a connection
/// dropped before or after the request was forwarded), drawn by a seeded PRNG. The proxy stops
/// with this handle, and by itself when the test process is gone (its stdin closes).
pub struct FaultProxy {
    /// Where the SDK clients send their requests.
    pub endpoint: String,
    child: Child,
    http: reqwest::Client,
}

/// The proxy's script.
pub const FAULT_PROXY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/support/fault_proxy.py");

impl FaultProxy {
    /// Starts the proxy in front of `upstream` with its command-line `args` (`--rate`,
    /// `--seed`, `--kinds`, `--services`, `--operations`), on a free loopback port.
    pub async fn start(upstream: &str, args: &[String]) -> FaultProxy {
        let mut command = Command::new(python_next_to_moto());
        command
            .arg(FAULT_PROXY)
            .arg("--upstream")
            .arg(upstream)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the fault proxy {FAULT_PROXY}: {e}"));
        let stdout = child.stdout.take().expect("the proxy's stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        })
        .await
        .expect("reading the proxy's port")
        .unwrap_or_else(|e| panic!("the fault proxy printed no port: {e}"));
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the fault proxy printed {line:?} instead of its port"));
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            http: reqwest::Client::new(),
        }
    }

    /// The proxy's counts: requests per service, `faults` per kind, `faults_by_service`
    /// (`{service}_{kind}`), the SDK's retries it saw (`retry_requests`, `max_attempt`,
    /// `faulted_invocations`, `faulted_invocations_retried`).
    pub async fn counts(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/__faults", self.endpoint))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the fault proxy's counts")
            .json()
            .await
            .expect("the fault proxy's counts as JSON")
    }

    /// Changes the proxy's configuration at once: any of `rate`, `kinds`, `services`,
    /// `operations` (null: all), `seed`.
    pub async fn configure(&self, change: serde_json::Value) -> serde_json::Value {
        self.http
            .post(format!("{}/__faults", self.endpoint))
            .json(&change)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("configuring the fault proxy")
            .json()
            .await
            .expect("the fault proxy's configuration as JSON")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the emulator's virtualenv, else `python3`.
fn python_next_to_moto() -> String {
    let python = Path::new(&moto_executable()).with_file_name("python");
    if python.exists() {
        python.display().to_string()
    } else {
        "python3".to_owned()
    }
}

/// moto's TransactWriteItems takes a rollback copy of the whole table once per item of the
/// transaction; every copy is taken before any item is written, so they are all equal. This
/// patch makes the first copy of each transaction and hands it out for the others, which
/// changes none of moto's answers and makes a transaction on a table of a few thousand items
/// take milliseconds instead of a second.
const COPY_ONCE_PER_TRANSACTION: &str = r#"
import copy as _copy
import threading as _threading

import moto.dynamodb.models as _models

_transaction = _threading.local()


class _CopyOncePerTransaction:
    def __getattr__(self, name):
        return getattr(_copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        copies = getattr(_transaction, "copies", None)
        if copies is None:
            return _copy.deepcopy(value, memo)
        if id(value) not in copies:
            copies[id(value)] = _copy.deepcopy(value, memo)
        return copies[id(value)]


_transact_write_items = _models.DynamoDBBackend.transact_write_items


def _transact_once(self, transact_items):
    _transaction.copies = {}
    try:
        return _transact_write_items(self, transact_items)
    finally:
        _transaction.copies = None


_models.copy = _CopyOncePerTransaction()
_models.DynamoDBBackend.transact_write_items = _transact_once
"#;

/// A serialized emulator of the caller's own (one request at a time, every write atomic, as
/// [`Serving::Serialized`]), with moto's per-item table copies of a transaction taken once
/// (see [`COPY_ONCE_PER_TRANSACTION`]): for a test that writes many users on a table of its
/// own without waiting behind the other tests' requests. Stops with the test process.
pub async fn private_serialized_endpoint() -> String {
    tokio::task::spawn_blocking(|| {
        let executable = moto_executable();
        let script = format!("{COPY_ONCE_PER_TRANSACTION}\n{SERIALIZED}");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let command = [
                python_next_to_moto(),
                "-c".to_owned(),
                script.clone(),
                "127.0.0.1".to_owned(),
                port.to_string(),
            ];
            match start_moto_on(&command, port) {
                Ok(endpoint) => return endpoint,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the AWS emulator could not be started ({executable}):\n{}",
            failures.join("\n")
        );
    })
    .await
    .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Adapters over a table, bucket and queue of their own (as [`fresh_aws`]), created on the
/// emulator at `upstream` directly, whose clients (the SDK configuration of
/// [`connect_with_credentials`]: timeouts and retries as deployed) then send every request to
/// `endpoint`, a proxy in front of it.
pub async fn fresh_aws_behind(upstream: &str, prefix: &str, endpoint: &str) -> AwsAdapters {
    let name = format!(
        "bulk-{}-{}-{}",
        prefix
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .take(30)
            .collect::<String>(),
        std::process::id(),
        RESOURCES.fetch_add(1, Ordering::SeqCst)
    );
    let credentials = Credentials::new("testing", "testing", None, None, "bulk-tests");
    let direct = AwsSettings {
        table: name.clone(),
        bucket: name.clone(),
        queue_url: String::new(),
        endpoint_url: Some(upstream.to_owned()),
        region: "us-east-1".to_owned(),
    };
    let adapters = connect_with_credentials(&direct, credentials.clone()).await;
    create_table(&adapters.dynamodb, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create table {name} on {upstream}: {e}"));
    create_bucket(&adapters.s3, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create bucket {name} on {upstream}: {e}"));
    let queue_url = create_queue(&adapters.sqs, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create queue {name} on {upstream}: {e}"));
    let settings = AwsSettings {
        queue_url,
        endpoint_url: Some(endpoint.to_owned()),
        ..direct
    };
    connect_with_credentials(&settings, credentials).await
}

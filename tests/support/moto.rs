//! The AWS emulator (moto) for tests: one server per test process, fresh resources per test,
//! IAM enforced as AWS enforces it.
//!
//! The first caller starts moto through `moto_launcher.py` (run by the Python of the virtualenv
//! that has `moto_server`: `MOTO_SERVER`, else `../.venv/bin/moto_server` next to the tests
//! crate, else `python3`) on a free loopback port, under a watchdog that stops it when the test
//! process ends. A test never skips AWS silently: when moto cannot be started it panics.
//!
//! **IAM, as AWS enforces it.** moto_server as shipped authorizes nothing; the launcher makes it
//! check every request against the IAM policies of its signer, with AWS's rules where moto's
//! differ (see the launcher). Set-up and assertions run as an administrator the launcher
//! creates; a function runs as an IAM user whose only policy is the function's `Policies` in
//! template.yaml with the intrinsics resolved to the test's resources ([`Stack::function`]), so
//! a function that needs an action its policy lacks fails as it would on AWS.
//!
//! moto_server handles requests on concurrent threads without locks, so its conditional writes
//! are not atomic when they race (DynamoDB's are). Tests of racing workers use the serialized
//! emulator instead: the same application, handling one request at a time.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bulk_users::adapters::aws::provision::{create_bucket, create_key, create_queue, create_table};
use bulk_users::adapters::aws::{
    connect_with_credentials, AwsAdapters, AwsSettings, Credentials, RequestCounter,
};

use crate::iam::{create_principal, StackNames, REGION};

static THREADED: OnceLock<Moto> = OnceLock::new();
static SERIALIZED: OnceLock<Moto> = OnceLock::new();
static RESOURCES: AtomicU64 = AtomicU64::new(0);

/// How long moto may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Ports tried when moto dies at start (another process took the port).
const START_ATTEMPTS: usize = 3;

/// How the emulator serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Concurrently: conditional writes not atomic under races.
    Threaded,
    /// One request at a time: every write atomic, as on DynamoDB.
    Serialized,
}

/// A running emulator: where it answers, and its administrator's access key.
#[derive(Debug, Clone)]
pub struct Moto {
    pub endpoint: String,
    pub admin: Credentials,
}

impl Moto {
    /// Every IAM decision the emulator took so far: `{principal, action, resource, allowed}`.
    pub async fn decisions(&self) -> Vec<serde_json::Value> {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .get(format!("{}/__iam/decisions", self.endpoint))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the emulator's IAM decisions")
            .json()
            .await
            .expect("the IAM decisions as JSON")
    }
}

/// The emulator serving `serving`, started once per test process.
pub async fn moto(serving: Serving) -> Moto {
    tokio::task::spawn_blocking(move || {
        let cell = match serving {
            Serving::Threaded => &THREADED,
            Serving::Serialized => &SERIALIZED,
        };
        cell.get_or_init(|| start_moto(serving, false)).clone()
    })
    .await
    .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// The endpoint of the emulator serving `serving`, started once per test process.
pub async fn endpoint(serving: Serving) -> String {
    moto(serving).await.endpoint
}

/// A serialized emulator of the caller's own, with moto's per-item table copies of a
/// transaction taken once (which changes none of moto's answers and makes a transaction on a
/// table of a few thousand items take milliseconds instead of a second): for a test that
/// writes many users on a table of its own without waiting behind the other tests' requests.
/// Stops with the test process.
pub async fn private_serialized() -> Moto {
    tokio::task::spawn_blocking(|| start_moto(Serving::Serialized, true))
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// A deployment of the template on the emulator: a table, the uploads bucket (named as the
/// template names it) and the work queue of its own, the administrator's adapters over them,
/// and, made on first use, each function's adapters under its own principal.
pub struct Stack {
    pub moto: Moto,
    pub names: StackNames,
    /// Set-up and assertions: every action allowed.
    pub admin: AwsAdapters,
    /// Where the clients send their requests: moto, or a proxy in front of it.
    client_endpoint: String,
    /// A retry partition of the stack's own for its clients (see [`Stack::behind`]).
    retry_label: Option<String>,
    functions: tokio::sync::Mutex<HashMap<String, (Credentials, AwsAdapters)>>,
}

/// A fresh stack on the threaded emulator.
pub async fn fresh_stack(prefix: &str) -> Stack {
    fresh_stack_on(Serving::Threaded, prefix).await
}

/// A fresh stack on the emulator serving `serving`.
pub async fn fresh_stack_on(serving: Serving, prefix: &str) -> Stack {
    let moto = moto(serving).await;
    let endpoint = moto.endpoint.clone();
    Stack::create(moto, prefix, &endpoint, None).await
}

/// The administrator's adapters over a fresh stack of their own on the threaded emulator (for
/// tests of the adapters themselves, which run as no function).
pub async fn fresh_aws(prefix: &str) -> AwsAdapters {
    fresh_stack(prefix).await.admin
}

/// [`fresh_aws`] on the emulator serving `serving`.
pub async fn fresh_aws_on(serving: Serving, prefix: &str) -> AwsAdapters {
    fresh_stack_on(serving, prefix).await.admin
}

impl Stack {
    /// A fresh stack on `moto` whose clients (the SDK configuration of
    /// [`connect_with_credentials`]: timeouts and retries as deployed) send every request to
    /// `client_endpoint`, a proxy in front of it. Each such stack is a deployment of its own:
    /// its clients get a retry partition of their own, since the SDK shares one retry quota (a
    /// token bucket that retries spend and successes refill) among the clients of a service in
    /// a process. The resources and principals are made on moto directly.
    pub async fn behind(moto: Moto, prefix: &str, client_endpoint: &str) -> Stack {
        Stack::create(moto, prefix, client_endpoint, Some(prefix.to_owned())).await
    }

    async fn create(
        moto: Moto,
        prefix: &str,
        client_endpoint: &str,
        retry_label: Option<String>,
    ) -> Stack {
        let cleaned: String = prefix
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .take(30)
            .collect();
        let n = RESOURCES.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("bulk-{cleaned}-{pid}-{n}");
        let names = StackNames {
            stack_name: name.clone(),
            stage: format!("s{}-{}", base36(u64::from(pid)), base36(n)),
            table: name.clone(),
            queue_name: name.clone(),
            queue_url: String::new(),
            kms_key_arn: String::new(),
        };
        let bucket = names.bucket();
        let direct =
            connect_with_credentials(&settings(&names, &moto.endpoint), moto.admin.clone()).await;
        let endpoint = &moto.endpoint;
        create_table(&direct.dynamodb, &names.table)
            .await
            .unwrap_or_else(|e| panic!("cannot create table {} on {endpoint}: {e}", names.table));
        create_bucket(&direct.s3, &bucket)
            .await
            .unwrap_or_else(|e| panic!("cannot create bucket {bucket} on {endpoint}: {e}"));
        let queue_url = create_queue(&direct.sqs, &names.queue_name)
            .await
            .unwrap_or_else(|e| panic!("cannot create queue {name} on {endpoint}: {e}"));
        let alias = format!("alias/{name}-secrets");
        let kms_key_arn = create_key(&direct.kms, &alias)
            .await
            .unwrap_or_else(|e| panic!("cannot create KMS key {alias} on {endpoint}: {e}"));
        let names = StackNames {
            queue_url,
            kms_key_arn,
            ..names
        };
        let admin =
            connect_with_credentials(&settings(&names, client_endpoint), moto.admin.clone()).await;
        let admin = with_retry_partition(admin, retry_label.as_deref());
        Stack {
            moto,
            names,
            admin,
            client_endpoint: client_endpoint.to_owned(),
            retry_label,
            functions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The emulator's IAM decisions on this stack's functions, in order (see
    /// [`Moto::decisions`]).
    pub async fn decisions(&self) -> Vec<serde_json::Value> {
        let prefix = format!("{}-", self.names.stage);
        self.moto
            .decisions()
            .await
            .into_iter()
            .filter(|decision| {
                decision["principal"]
                    .as_str()
                    .is_some_and(|principal| principal.starts_with(&prefix))
            })
            .collect()
    }

    /// What the emulator denied this stack's functions: `function: action on resource`.
    pub async fn denials(&self) -> Vec<String> {
        let prefix = format!("{}-", self.names.stage);
        self.decisions()
            .await
            .into_iter()
            .filter(|decision| decision["allowed"] == false)
            .map(|decision| {
                format!(
                    "{}: {} on {}",
                    decision["principal"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches(&prefix),
                    decision["action"].as_str().unwrap_or_default(),
                    decision["resource"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The settings a deployed function gets from the template's environment.
    pub fn settings(&self) -> AwsSettings {
        settings(&self.names, &self.client_endpoint)
    }

    /// The access key of the principal of function `binary` (its template policy, resolved).
    pub async fn credentials_of(&self, binary: &str) -> Credentials {
        self.principal(binary).await.0
    }

    /// The adapters of function `binary`: clients signing as its principal (KMS among them: the
    /// function opens credentials' secrets with its own permissions).
    pub async fn function(&self, binary: &str) -> AwsAdapters {
        self.principal(binary).await.1
    }

    /// The adapters of function `binary` (as [`Stack::function`]) with a counter of the
    /// DynamoDB requests they send.
    pub async fn function_counted(&self, binary: &str) -> (AwsAdapters, RequestCounter) {
        let adapters = self.function(binary).await;
        let counter = RequestCounter::default();
        let dynamodb = counter.counting(&adapters.dynamodb);
        let counted = AwsAdapters::from_clients(
            dynamodb,
            adapters.s3,
            adapters.sqs,
            adapters.kms,
            adapters.settings,
        );
        (counted, counter)
    }

    /// A principal of this stack (named `{stage}-{name}`) whose only policy is `policy`.
    pub async fn create_principal(&self, name: &str, policy: &serde_json::Value) -> Credentials {
        let user = format!("{}-{name}", self.names.stage);
        create_principal(&self.moto.endpoint, &self.moto.admin, &user, policy).await
    }

    async fn principal(&self, binary: &str) -> (Credentials, AwsAdapters) {
        let mut functions = self.functions.lock().await;
        if let Some(found) = functions.get(binary) {
            return found.clone();
        }
        let credentials = self
            .create_principal(binary, &self.names.policy_of(binary))
            .await;
        let adapters = connect_with_credentials(&self.settings(), credentials.clone()).await;
        let adapters = with_retry_partition(adapters, self.retry_label.as_deref());
        functions.insert(binary.to_owned(), (credentials.clone(), adapters.clone()));
        (credentials, adapters)
    }
}

fn settings(names: &StackNames, endpoint: &str) -> AwsSettings {
    AwsSettings {
        table: names.table.clone(),
        bucket: names.bucket(),
        queue_url: names.queue_url.clone(),
        kms_key_arn: Some(names.kms_key_arn.clone()).filter(|arn| !arn.is_empty()),
        endpoint_url: Some(endpoint.to_owned()),
        region: REGION.to_owned(),
    }
}

/// The adapters with clients in a retry partition named after `label`, when given.
fn with_retry_partition(aws: AwsAdapters, label: Option<&str>) -> AwsAdapters {
    use aws_sdk_dynamodb::config::retry::RetryPartition;
    let Some(label) = label else { return aws };
    let partition = |service: &str| RetryPartition::new(format!("{label}-{service}"));
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws.dynamodb
            .config()
            .to_builder()
            .retry_partition(partition("dynamodb"))
            .build(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws.s3
            .config()
            .to_builder()
            .retry_partition(partition("s3"))
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws.sqs
            .config()
            .to_builder()
            .retry_partition(partition("sqs"))
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws.kms
            .config()
            .to_builder()
            .retry_partition(partition("kms"))
            .build(),
    );
    AwsAdapters::from_clients(dynamodb, s3, sqs, kms, aws.settings)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
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

/// The launcher, next to this file.
const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/support/moto_launcher.py");

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

fn start_moto(serving: Serving, copy_once_per_transaction: bool) -> Moto {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let admin_file = std::env::temp_dir().join(format!(
            "bulk-tests-moto-admin-{}-{port}.json",
            std::process::id()
        ));
        let mut command = vec![
            python_next_to_moto(),
            LAUNCHER.to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--admin-file".to_owned(),
            admin_file.display().to_string(),
        ];
        if serving == Serving::Serialized {
            command.push("--serialized".to_owned());
        }
        if copy_once_per_transaction {
            command.push("--copy-once-per-transaction".to_owned());
        }
        match start_moto_on(&command, port) {
            Ok(endpoint) => {
                let admin = read_admin(&admin_file);
                let _ = std::fs::remove_file(&admin_file);
                return Moto { endpoint, admin };
            }
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "the AWS emulator could not be started ({LAUNCHER} with the Python next to {}); \
         install it (python -m venv .venv && .venv/bin/pip install -r tests/requirements.txt, \
         as tests/run.sh does), or set MOTO_SERVER to the moto_server of a virtualenv that has \
         it.\n{}",
        moto_executable(),
        failures.join("\n")
    );
}

/// The administrator's access key, as the launcher wrote it before serving.
fn read_admin(path: &PathBuf) -> Credentials {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "the emulator wrote no administrator ({}): {e}",
            path.display()
        )
    });
    let admin: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()));
    let field = |name: &str| {
        admin[name]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no {name}", path.display()))
            .to_owned()
    };
    Credentials::new(
        field("access_key_id"),
        field("secret_access_key"),
        None,
        None,
        "moto-admin",
    )
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

//! Figure 5: the release zip of each Lambda function (target: at most 8 MB each), and the time
//! from the start of a function's process to its first handled invocation under the Lambda
//! runtime emulator (target: at most 30 ms).
//!
//! The zips are what `cargo lambda build --release --output-format zip` makes of the
//! `bulk-lambda` binaries (for this machine's architecture; the template deploys arm64 builds
//! of the same code). For the start-up time, `cargo lambda watch --only-lambda-apis` serves the
//! Lambda runtime API without starting functions itself: an invocation is queued first, then
//! the function's release binary is started with the environment a deployed function has
//! (table, bucket, queue, master key, region, credentials, and moto as the AWS endpoint, with
//! the table created), and the clock runs from spawning the process until the emulator hands
//! back the function's answer. Each function's `main` builds its SDK clients before it asks
//! for its first event. Most events need no AWS call to answer (an API request without
//! credentials, an empty SQS batch), so their figure is the process's own start-up and first
//! invocation; the sweeper's scheduled event (`events/sweeper-schedule.json`) always looks for
//! stale jobs, so its figure includes that one DynamoDB query, answered by moto.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulk_users::adapters::aws::provision::create_table;
use serde_json::{json, Value};

use crate::moto;
use crate::report::Figure;

/// At most this many bytes per zip.
const TARGET_ZIP_BYTES: u64 = 8 * 1000 * 1000;
/// At most this long from process start to the first answer.
const TARGET_START: Duration = Duration::from_millis(30);
/// How long the emulator may take to listen.
const EMULATOR_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one measured invocation.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(20);
/// The package whose binaries are the functions.
const PACKAGE: &str = "bulk-lambda";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo_lambda() -> String {
    if let Ok(path) = std::env::var("CARGO_LAMBDA") {
        if !path.trim().is_empty() {
            return path;
        }
    }
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv.display().to_string();
    }
    "cargo-lambda".to_owned()
}

/// With `build` false, the zips and binaries of an earlier build are measured.
pub async fn run(rounds: usize, build: bool) -> Result<Vec<Figure>, String> {
    let root = workspace_root();
    let executable = cargo_lambda();
    if build {
        build_zips(&root, &executable)?;
    }

    let functions = function_names(&root)?;
    let mut figures = Vec::new();
    let mut largest = 0u64;
    let mut sizes = Vec::new();
    for name in &functions {
        let zip = root.join("target/lambda").join(name).join("bootstrap.zip");
        let bytes = std::fs::metadata(&zip)
            .map_err(|e| format!("no zip at {}: {e}", zip.display()))?
            .len();
        largest = largest.max(bytes);
        sizes.push(format!("{name} {:.2}", bytes as f64 / 1e6));
    }
    figures.push(Figure::against(
        "release zip size per function, MB",
        sizes.join(", "),
        format!("<= {:.0} MB each", TARGET_ZIP_BYTES as f64 / 1e6),
        largest <= TARGET_ZIP_BYTES,
    ));

    let endpoint = aws_endpoint().await?;
    let emulator = Emulator::start(&executable, &root)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut slowest = Duration::ZERO;
    let mut starts = Vec::new();
    for name in &functions {
        let binary = release_binary(&root, name)?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds.max(1) {
            times.push(
                emulator
                    .first_invocation(&client, name, &binary, &endpoint)
                    .await?,
            );
        }
        times.sort();
        let median = times[times.len() / 2];
        slowest = slowest.max(median);
        starts.push(format!("{name} {:.1}", median.as_secs_f64() * 1000.0));
    }
    let figure = Figure::against(
        format!("process start to first handled invocation, median of {rounds}, ms"),
        starts.join(", "),
        format!("<= {} ms", TARGET_START.as_millis()),
        slowest <= TARGET_START,
    );
    figures.push(figure);
    Ok(figures)
}

/// `cargo lambda build --release --output-format zip` of the functions' package.
fn build_zips(root: &Path, executable: &str) -> Result<(), String> {
    println!("  building the release zips: {executable} lambda build --release --output-format zip -p {PACKAGE} (slow the first time: LTO, one codegen unit)");
    let status = Command::new(executable)
        .args(["lambda", "build", "--release", "--compiler", "cargo"])
        .args(["--output-format", "zip", "-p", PACKAGE])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| {
            format!("cannot run {executable} (install it: pip install cargo-lambda, or set CARGO_LAMBDA): {e}")
        })?;
    if !status.success() {
        return Err(format!("cargo lambda build failed ({status})"));
    }
    Ok(())
}

/// The functions: the binaries of the functions' package.
fn function_names(root: &Path) -> Result<Vec<String>, String> {
    let metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let metadata: Value = serde_json::from_slice(&metadata.stdout)
        .map_err(|e| format!("cargo metadata answered no JSON: {e}"))?;
    let names: Vec<String> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| package["name"] == PACKAGE)
        .flat_map(|package| package["targets"].as_array().cloned().unwrap_or_default())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.contains(&json!("bin")))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        return Err(format!("cargo metadata lists no binary of {PACKAGE}"));
    }
    Ok(names)
}

/// The release binary `cargo lambda build` linked for `name`.
fn release_binary(root: &Path, name: &str) -> Result<PathBuf, String> {
    let candidates = [
        root.join("target/lambda").join(name).join("bootstrap"),
        root.join("target")
            .join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
            .join("release")
            .join(name),
        root.join("target/release").join(name),
    ];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| format!("no release binary of {name} in {candidates:?}"))
}

/// The table the functions are started with.
const TABLE: &str = "bulk-bench";

/// Starts moto and creates the functions' table on it; returns the endpoint.
async fn aws_endpoint() -> Result<String, String> {
    let (settings, config) = moto::start_with_config(TABLE).await?;
    let endpoint = settings.endpoint_url.unwrap_or_default();
    create_table(&aws_sdk_dynamodb::Client::new(&config), TABLE)
        .await
        .map_err(|e| format!("cannot create the table on {endpoint}: {e}"))?;
    Ok(endpoint)
}

/// The event a function gets for its first invocation: answered without any AWS call, but the
/// sweeper's (one query for stale jobs).
fn first_event(name: &str) -> Result<Value, String> {
    Ok(match name {
        // Scheduled: the sample event of the template's schedule.
        "sweeper" => serde_json::from_str(include_str!("../../../events/sweeper-schedule.json"))
            .map_err(|e| format!("events/sweeper-schedule.json is not JSON: {e}"))?,
        // SQS-triggered: an empty batch.
        "processor" | "intake" | "deadletters" => json!({ "Records": [] }),
        // API Gateway: a request without credentials, answered 401 by the route table.
        _ => json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/apps/api/v1/bulk/users/jobs",
            "rawQueryString": "",
            "headers": { "host": "bench.example.com" },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "bench",
                "domainName": "bench.example.com",
                "http": {
                    "method": "GET",
                    "path": "/apps/api/v1/bulk/users/jobs",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "bulk-bench"
                },
                "requestId": "bench",
                "routeKey": "$default",
                "stage": "$default",
                "time": "23/Nov/2026:00:00:00 +0000",
                "timeEpoch": 1795392000000u64
            },
            "isBase64Encoded": false
        }),
    })
}

/// `cargo lambda watch --only-lambda-apis`, stopped on drop.
struct Emulator {
    child: Child,
    port: u16,
}

impl Emulator {
    fn start(executable: &str, root: &Path) -> Result<Emulator, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let child = Command::new(executable)
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["--color", "never"])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {executable} lambda watch: {e}"))?;
        let mut emulator = Emulator { child, port };
        let deadline = Instant::now() + EMULATOR_START_TIMEOUT;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                return Err(format!("cargo lambda watch exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("cargo lambda watch did not listen on {address}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(emulator)
    }

    /// Queues an invocation of `name`, starts its binary, and times the answer.
    async fn first_invocation(
        &self,
        client: &reqwest::Client,
        name: &str,
        binary: &Path,
        endpoint: &str,
    ) -> Result<Duration, String> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{name}/invocations",
            self.port
        );
        let invocation = client
            .post(url)
            .timeout(INVOCATION_TIMEOUT)
            .json(&first_event(name)?)
            .send();
        let invocation = tokio::spawn(invocation);
        // Let the emulator queue the event before the function asks for it.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        let mut function = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{name}", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("BULK_TABLE_NAME", TABLE)
            .env("BULK_BUCKET_NAME", "bulk-bench")
            .env(
                "BULK_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/bulk-bench",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let answer = invocation.await;
        let elapsed = started.elapsed();
        let _ = function.kill();
        let output = function.wait_with_output().ok();
        let stderr = output
            .map(|output| String::from_utf8_lossy(&output.stderr).into_owned())
            .unwrap_or_default();
        let response = answer
            .map_err(|e| format!("{name}: the invocation task failed: {e}"))?
            .map_err(|e| {
                format!("{name}: the invocation failed: {e}; the function printed: {stderr}")
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "{name}: the emulator answered {status}: {body}; the function printed: {stderr}"
            ));
        }
        Ok(elapsed)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

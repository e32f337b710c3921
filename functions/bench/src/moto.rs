//! Starts the AWS emulator (moto) for the benchmark: moto's server run by the Python that has
//! moto installed (`MOTO_PYTHON`, else `.venv/bin/python` at the workspace root, else `python3`)
//! through `moto_server.py`, which takes TransactWriteItems' rollback copy of a table once per
//! transaction instead of once per item (see that file), on a free loopback port, under a
//! watchdog that stops it when this process ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulk_users::adapters::aws::{load_sdk_config, AwsSettings, Credentials, SdkConfig};

/// How long moto may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The watchdog: runs moto in the background and stops it when the benchmark (or moto) is gone;
/// moto traps SIGTERM and may not act on it while busy, hence the SIGKILL after it.
/// Arguments: python, port, parent pid, log file, launcher.
const WATCHDOG: &str = r#"
"$0" -c "$4" -H 127.0.0.1 -p "$1" >"$3" 2>&1 &
moto=$!
while kill -0 "$2" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done
kill "$moto" 2>/dev/null
sleep 2
kill -9 "$moto" 2>/dev/null
"#;

/// The launcher: moto's server with one rollback copy per transaction.
const LAUNCHER: &str = include_str!("moto_server.py");

fn executable() -> String {
    if let Ok(path) = std::env::var("MOTO_PYTHON") {
        if !path.trim().is_empty() {
            return path;
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_owned()
}

/// Starts moto and returns its endpoint.
pub fn start() -> Result<String, String> {
    let executable = executable();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("cannot find a free loopback port for moto: {e}"))?;
    let log =
        std::env::temp_dir().join(format!("bulk-bench-moto-{}-{port}.log", std::process::id()));
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(&executable)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(&log)
        .arg(LAUNCHER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    let failure = |what: String| {
        format!(
            "the AWS emulator ({executable}) {what}; install it (python -m venv .venv && \
             .venv/bin/pip install 'moto[server]') or set MOTO_PYTHON. Its output ({}):\n{}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    loop {
        if answers_http(address) {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if let Ok(Some(status)) = watchdog.try_wait() {
            return Err(failure(format!("exited ({status})")));
        }
        if Instant::now() >= deadline {
            return Err(failure(format!("did not answer within {START_TIMEOUT:?}")));
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

/// Starts moto; the settings of a table and bucket named `name` on it (no queue yet) and the
/// SDK configuration that reaches it.
pub async fn start_with_config(name: &str) -> Result<(AwsSettings, SdkConfig), String> {
    let endpoint = start()?;
    let settings = AwsSettings {
        table: name.to_owned(),
        bucket: name.to_owned(),
        queue_url: String::new(),
        kms_key_arn: None,
        endpoint_url: Some(endpoint),
        region: "us-east-1".to_owned(),
    };
    let credentials = Credentials::new("testing", "testing", None, None, "bulk-bench");
    let config = load_sdk_config(&settings, Some(credentials)).await;
    Ok((settings, config))
}

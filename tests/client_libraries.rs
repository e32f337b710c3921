//! The real client libraries against `bulk-local`: zenpy drives the Zendesk dialect, the official
//! Huawei Cloud SDK (`huaweicloudsdkworkspace`, AK/SK-signed) drives the Huawei Workspace dialect,
//! and both together show that the dialects share one set of users. The clients are the Python
//! scripts in `tests/clients/`; they print every check and exit non-zero on the first failed one.
//!
//! Python comes from `PATH` (the test command puts its virtualenv first) or from the repository's
//! `.venv`, whichever has the client packages of `tests/requirements.txt`.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulk_tests::local_server::LocalServer;

const TENANT: &str = "acme";
const SECRET: &str = "client-library-secret-0123456789";
/// How long one client script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// A Python interpreter that can import both client libraries.
fn python() -> PathBuf {
    let mut candidates = vec![PathBuf::from("python"), PathBuf::from("python3")];
    candidates.push(repository().join(".venv").join("bin").join("python"));
    let mut tried = Vec::new();
    for candidate in candidates {
        let probe = Command::new(&candidate)
            .args(["-c", "import zenpy, huaweicloudsdkworkspace"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match probe {
            Ok(status) if status.success() => return candidate,
            Ok(status) => tried.push(format!("{} ({status})", candidate.display())),
            Err(error) => tried.push(format!("{} ({error})", candidate.display())),
        }
    }
    panic!(
        "no Python with zenpy and huaweicloudsdkworkspace (tried {}): run tests/run.sh, or \
         install tests/requirements.txt into .venv",
        tried.join(", ")
    );
}

/// Runs `tests/clients/{script}` with `args`; panics with its output unless it exits 0.
fn run_client(script: &str, args: &[&str], home: &Path) {
    let path = repository().join("tests").join("clients").join(script);
    let mut output_file = tempfile::tempfile().expect("output file");
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        // The Huawei SDK keeps an application id under $HOME; keep it in the test's directory.
        .env("HOME", home)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("ZENPY_FORCE_NETLOC")
        .env_remove("ZENPY_FORCE_SCHEME")
        .stdin(Stdio::null())
        .stdout(output_file.try_clone().expect("output file"))
        .stderr(output_file.try_clone().expect("output file"))
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", path.display()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = String::new();
    output_file.rewind().expect("rewind output");
    output_file
        .read_to_string(&mut output)
        .expect("read output");
    match status {
        Some(status) if status.success() => println!("{script}:\n{output}"),
        Some(status) => panic!("{script} failed ({status}); it printed:\n{output}"),
        None => panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}; it printed:\n{output}"),
    }
}

/// Runs `tests/clients/{script}` against a `bulk-local` of tenant [`TENANT`] and [`SECRET`] with
/// `environment` added; the script's arguments are the server's URL and `args`.
fn run_client_on_local_server(script: &str, environment: &[(&str, &str)], args: &[&str]) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut variables = vec![
        ("BULK_LOCAL_TENANT", TENANT),
        ("BULK_LOCAL_SECRET", SECRET),
        ("BULK_LOCAL_WORKERS", "2"),
    ];
    variables.extend_from_slice(environment);
    let server = LocalServer::start(&dir.path().join("data"), &variables);
    let url = server.url("");
    run_client(script, &[&[url.as_str()], args].concat(), dir.path());
}

#[test]
fn zenpy_creates_upserts_updates_and_deletes_users_through_job_statuses() {
    run_client_on_local_server("zendesk_client.py", &[], &[TENANT, SECRET]);
}

#[test]
fn huawei_sdk_signs_creates_lists_and_deletes_users() {
    // A key id other than the tenant: the SDK's AK is the key id, its project_id the tenant.
    let key_id = "acme-workspace-sdk";
    let environment = [("BULK_LOCAL_KEY_ID", key_id)];
    run_client_on_local_server("huawei_client.py", &environment, &[TENANT, key_id, SECRET]);
}

#[test]
fn users_created_with_the_huawei_sdk_are_the_users_zenpy_updates_and_deletes() {
    // Without BULK_LOCAL_KEY_ID the key id (the AK) is the tenant's name.
    run_client_on_local_server("cross_dialect.py", &[], &[TENANT, TENANT, SECRET]);
}

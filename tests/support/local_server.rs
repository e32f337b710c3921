//! A `bulk-local` process for end-to-end tests over HTTP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A binary of this workspace's build (built by `cargo build --workspace`, which the test
/// command runs first, or by `cargo test --workspace`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        binary.display()
    );
    binary
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

pub struct LocalServer {
    child: Child,
    pub port: u16,
    /// Lines the server printed on stdout.
    pub output: Vec<String>,
}

impl LocalServer {
    /// Starts `bulk-local` on a free port over `data_dir` with extra environment variables, and
    /// waits until it listens.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> LocalServer {
        let port = free_port();
        let mut command = Command::new(binary("bulk-local"));
        command
            .env("PORT", port.to_string())
            .env("BULK_DATA_DIR", data_dir)
            .env("BULK_LOG", "warn")
            .env_remove("BULK_LOCAL_TENANT")
            .env_remove("BULK_LOCAL_SECRET")
            .env_remove("BULK_LOCAL_KEY_ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start bulk-local");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut output = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match received.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let listening = line.contains("listening on");
                    output.push(line);
                    if listening {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("bulk-local did not start; it printed: {output:?}");
                }
            }
        }
        LocalServer {
            child,
            port,
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills the process at once (SIGKILL): no clean shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

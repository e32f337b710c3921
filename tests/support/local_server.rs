//! A `bulk-local` process for end-to-end tests over HTTP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
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

/// Runs `bulk-admin` on the embedded store in `data_dir`; answers its stdout.
pub fn admin(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(binary("bulk-admin"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run bulk-admin");
    assert!(
        output.status.success(),
        "bulk-admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
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
    /// Every line printed on stdout and stderr, when started with
    /// [`LocalServer::start_capturing`].
    captured: Option<Capture>,
}

/// The lines of a capturing server and the threads reading them.
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl LocalServer {
    /// Starts `bulk-local` on a free port over `data_dir` with extra environment variables, and
    /// waits until it listens.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> LocalServer {
        LocalServer::spawn(data_dir, env, false)
    }

    /// [`LocalServer::start`], keeping every line the server prints on stdout and on stderr for
    /// as long as it runs (its logs included); [`LocalServer::stop_capturing`] ends it and
    /// answers them.
    pub fn start_capturing(data_dir: &Path, env: &[(&str, &str)]) -> LocalServer {
        LocalServer::spawn(data_dir, env, true)
    }

    fn spawn(data_dir: &Path, env: &[(&str, &str)], capture: bool) -> LocalServer {
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
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start bulk-local");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keep = capture.then(|| kept.clone());
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(keep) = &keep {
                    keep.lock().unwrap().push(line.clone());
                }
                // Once started, a capturing server's output is only kept; another one's is no
                // longer read.
                if lines.send(line).is_err() && keep.is_none() {
                    break;
                }
            }
        });
        let captured = if capture {
            let stderr = child.stderr.take().expect("stderr");
            let keep = kept.clone();
            let stderr_reader = std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    keep.lock().unwrap().push(line);
                }
            });
            Some(Capture {
                lines: kept,
                readers: vec![stdout_reader, stderr_reader],
            })
        } else {
            None
        };
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
            captured,
        }
    }

    /// Ends a server started with [`LocalServer::start_capturing`] as a service manager would
    /// (SIGTERM, then SIGKILL if it has not exited within 10 s) and answers every line it
    /// printed on stdout and stderr.
    pub fn stop_capturing(mut self) -> Vec<String> {
        let capture = self
            .captured
            .take()
            .expect("the server was started with start_capturing");
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in capture.readers {
            let _ = reader.join();
        }
        let lines = capture.lines.lock().unwrap().clone();
        lines
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

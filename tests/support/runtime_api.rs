//! A Lambda runtime API of the tests' own, for what the runtime emulator does not model: the
//! deadline of each invocation. `cargo lambda watch` sends every invocation the same
//! `Lambda-Runtime-Deadline-Ms` (600,000 ms after 1970); Lambda sends the instant the function's
//! timeout ends. This host runs one function binary of the workspace (as built by
//! `cargo build --workspace`) against the runtime API as Lambda serves it — `GET
//! /2018-06-01/runtime/invocation/next`, `POST …/{id}/response`, `POST …/{id}/error`,
//! `POST /2018-06-01/runtime/init/error` — and gives each invocation the deadline the test asks
//! for. Like Lambda it does not stop the function at its deadline; the test measures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::emulator::workspace_root;

/// How long an invocation may take before the host gives up on it.
const INVOCATION_LIMIT: Duration = Duration::from_secs(300);

struct Pending {
    id: String,
    deadline_ms: u64,
    event: Bytes,
    answer: oneshot::Sender<Result<Value, Value>>,
}

#[derive(Default)]
struct State {
    queued: Mutex<VecDeque<Pending>>,
    arrived: Notify,
    running: Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>,
    init_error: Mutex<Option<String>>,
}

/// A function binary served by the host; the process stops with it.
pub struct LambdaHost {
    state: Arc<State>,
    child: tokio::process::Child,
    bin: String,
    next_id: Mutex<u64>,
    /// What the function wrote to its standard output (its log), line by line.
    lines: Arc<Mutex<Vec<String>>>,
}

impl LambdaHost {
    /// Starts the host on a free loopback port and function `bin` against it, with the
    /// variables Lambda gives a function and `environment` (the deployment's).
    pub async fn start(bin: &str, environment: &BTreeMap<String, String>) -> LambdaHost {
        let state = Arc::new(State::default());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a loopback port for the runtime API");
        let address = listener.local_addr().expect("the runtime API's address");
        tokio::spawn(serve(listener, state.clone()));
        let path = workspace_root().join("target/debug").join(bin);
        assert!(
            path.exists(),
            "{} is not built: run `cargo build --workspace` (tests/run.sh does)",
            path.display()
        );
        let mut command = tokio::process::Command::new(&path);
        for (name, _) in std::env::vars_os() {
            let ours = name.to_str().is_some_and(|name| {
                name.starts_with("AWS_") || name.starts_with("BULK_") || name == "RUST_LOG"
            });
            if ours {
                command.env_remove(&name);
            }
        }
        let child = command
            .envs(environment)
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", bin)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let mut child = child;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(keep_lines(stdout, lines.clone()));
        }
        LambdaHost {
            state,
            child,
            bin: bin.to_owned(),
            next_id: Mutex::new(0),
            lines,
        }
    }

    /// The lines the function wrote to its standard output so far, as Lambda sends them to
    /// CloudWatch Logs. The id of the `n`th invocation is `{bin}-{n}`.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Invokes the function with `event`, its deadline `timeout` from now: the function's
    /// answer, or its error.
    pub async fn invoke(&mut self, event: &Value, timeout: Duration) -> Result<Value, Value> {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            format!("{}-{next}", self.bin)
        };
        let deadline = SystemTime::now() + timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let (answer, answered) = oneshot::channel();
        self.state.queued.lock().unwrap().push_back(Pending {
            id,
            deadline_ms,
            event: Bytes::from(event.to_string()),
            answer,
        });
        self.state.arrived.notify_one();
        tokio::select! {
            answer = answered => answer.expect("the host dropped the invocation"),
            status = self.child.wait() => {
                panic!("{} exited ({status:?}) before answering; init error: {:?}",
                    self.bin, self.state.init_error.lock().unwrap())
            }
            _ = tokio::time::sleep(INVOCATION_LIMIT) => {
                panic!("{} did not answer within {INVOCATION_LIMIT:?}", self.bin)
            }
        }
    }
}

/// Keeps the function's output lines, and passes them on to the test's output.
async fn keep_lines(stdout: tokio::process::ChildStdout, lines: Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        println!("{line}");
        lines.lock().unwrap().push(line);
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => next(state).await,
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, outcome]) => {
            let sender = state.running.lock().unwrap().remove(*id);
            let value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            if let Some(sender) = sender {
                let _ = sender.send(if *outcome == "response" {
                    Ok(value)
                } else {
                    Err(value)
                });
            }
            empty(StatusCode::ACCEPTED)
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            *state.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
            empty(StatusCode::ACCEPTED)
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// The next invocation, once there is one (the function polls here between invocations).
async fn next(state: &State) -> Response<Full<Bytes>> {
    loop {
        let arrived = state.arrived.notified();
        let pending = state.queued.lock().unwrap().pop_front();
        if let Some(pending) = pending {
            state
                .running
                .lock()
                .unwrap()
                .insert(pending.id.clone(), pending.answer);
            let mut response = Response::new(Full::new(pending.event));
            let headers = response.headers_mut();
            headers.insert(
                "lambda-runtime-aws-request-id",
                pending.id.parse().expect("a header"),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                pending.deadline_ms.to_string().parse().expect("a header"),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:test"
                    .parse()
                    .expect("a header"),
            );
            headers.insert(
                "content-type",
                "application/json".parse().expect("a header"),
            );
            return response;
        }
        arrived.await;
    }
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// `count` work items the stack's queue holds (received, hidden for 5 minutes), as the SQS
/// records of one processor invocation, each delivered once.
pub async fn queued_work(stack: &crate::moto::Stack, count: usize) -> Vec<Value> {
    let admin = &stack.admin;
    let mut records = Vec::new();
    while records.len() < count {
        let received = admin
            .sqs
            .receive_message()
            .queue_url(&admin.settings.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .send()
            .await
            .expect("receive");
        for message in received.messages.unwrap_or_default() {
            records.push(serde_json::json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
            }));
        }
    }
    records
}

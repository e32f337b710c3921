//! Steps the scenarios repeat: reading a job, sending as the other tenant or as the Workspace,
//! an application with small chunks, request cases kept as data, waiting for a condition, and
//! a client of a running `bulk-local`.

use std::time::{Duration, Instant};

use bulk_users::model::{JobKind, NewJob, TenantId, Timestamp};
use bulk_users::service::{ServiceConfig, DROP_USER_NAME};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::cases::{self, Vars};
use crate::local_server::LocalServer;
use crate::{api_request, multipart, Answer, Backend, Body, Part, TestApp, BOUNDARY, PREFIX};

impl TestApp {
    /// An application whose jobs are cut into chunks of `rows_per_chunk` rows.
    pub async fn with_chunks(backend: Backend, rows_per_chunk: u64) -> TestApp {
        let config = ServiceConfig {
            rows_per_chunk,
            ..Default::default()
        };
        TestApp::with_config(backend, config).await
    }

    /// acme's job `id`, as `GET jobs/{id}` answers it.
    pub async fn job(&self, id: u64) -> Value {
        self.get(&format!("jobs/{id}")).await.body
    }

    /// `POST {PREFIX}/{route}` of a JSON body as acme.
    pub async fn post_json(&self, route: &str, body: Value) -> Answer {
        self.ccai(Method::POST, route, Body::Json(body)).await
    }

    /// A request to `{PREFIX}/{route}` as acme.
    pub async fn ccai(&self, method: Method, route: &str, body: Body) -> Answer {
        self.call(method, &format!("{PREFIX}/{route}"), body).await
    }

    /// A request to `{PREFIX}/{route}` as the other tenant, globex.
    pub async fn as_globex(&self, method: Method, route: &str, body: Body) -> Answer {
        let path = format!("{PREFIX}/{route}");
        self.call_as(&self.globex.basic(), method, &path, body)
            .await
    }

    /// `GET {PREFIX}/{target}` refused with 400 naming `field`.
    pub async fn get_refused(&self, target: &str, field: &str) {
        let answer = self.get(target).await;
        answer.assert_client_error(StatusCode::BAD_REQUEST, field);
    }

    /// `POST` of a JSON body to a Huawei Workspace route with acme's `X-Auth-Token`.
    pub async fn workspace_post(&self, path: &str, body: &Value) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-auth-token",
            HeaderValue::from_str(&self.acme.secret).unwrap(),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::to_vec(body).unwrap().into();
        Answer::from(
            self.handle(api_request(Method::POST, path, headers, body))
                .await,
        )
    }

    /// Sends a request case as acme (see [`body_of`]): its `method` (GET when not given) to
    /// its `target`, under the CCAI prefix unless it begins with `/`.
    pub async fn send_case(&self, case: &Value, vars: &Vars) -> Answer {
        let method = case["method"].as_str().unwrap_or("GET").parse().unwrap();
        let target = vars.fill(case["target"].as_str().expect("a target"));
        let path = match target.starts_with('/') {
            true => target,
            false => format!("{PREFIX}/{target}"),
        };
        self.call(method, &path, body_of(case, vars)).await
    }
}

/// The body of a request case: `form` (multipart parts: `{"file": text}` is the upload's
/// file, `{name: text}` a field), `json`, `raw` text sent with its `content_type`, or none.
pub fn body_of(case: &Value, vars: &Vars) -> Body {
    if let Some(parts) = case["form"].as_array() {
        let parts = parts.iter().map(|part| {
            let (name, value) = part.as_object().unwrap().iter().next().unwrap();
            let value = vars.fill(value.as_str().unwrap());
            match name.as_str() {
                "file" => Part::file(value.into_bytes()),
                name => Part::text(name, &value),
            }
        });
        return Body::Multipart(parts.collect());
    }
    if let Some(json) = case.get("json") {
        return Body::Json(vars.fill_json(json));
    }
    match case["raw"].as_str() {
        Some(raw) => Body::Raw {
            content_type: case["content_type"].as_str().map(|text| vars.fill(text)),
            bytes: vars.fill(raw).into_bytes(),
        },
        None => Body::Empty,
    }
}

/// Asserts the answer to a request case: its `status`; with `field`, a client error naming
/// that field (see [`Answer::assert_client_error`]); and each of its `headers`.
pub fn assert_answer(case: &Value, answer: &Answer) {
    let name = cases::name(case);
    let status = case["status"].as_u64().expect("a status") as u16;
    assert_eq!(answer.status.as_u16(), status, "{name}: {}", answer.body);
    if let Some(field) = case["field"].as_str() {
        answer.assert_client_error(answer.status, field);
    }
    for (header, value) in case["headers"].as_object().into_iter().flatten() {
        assert_eq!(answer.header(header), value.as_str(), "{name}: {header}");
    }
}

/// The job the intake creates for a dropped file before it moves the file into the job's slot.
pub fn dropped_job(tenant: &TenantId, file_key: &str, filename: &str, bytes: u64) -> NewJob {
    NewJob {
        kind: JobKind::Upload,
        tenant: tenant.clone(),
        filename: filename.to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: bytes,
        uploaded_api_user_name: DROP_USER_NAME.to_owned(),
        created_at: Timestamp::now(),
        keep_until: bulk_users::model::Limits::default().keep_until(Timestamp::now()),
    }
}

/// The `field` of every entry of a list, each a number.
pub fn u64s(list: &Value, field: &str) -> Vec<u64> {
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    let number = |entry: &Value| entry[field].as_u64();
    let each = entries
        .iter()
        .map(|entry| number(entry).unwrap_or_else(|| panic!("{entry}")));
    each.collect()
}

/// A value that must be a text.
pub fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a text: {value}"))
}

/// A JSON file of `count` rows made by `row` from the row's index.
pub fn rows_file(count: usize, row: impl Fn(usize) -> String) -> String {
    let rows: Vec<String> = (0..count).map(row).collect();
    format!("[{}]", rows.join(","))
}

/// Asks `check` every `every` until it answers a value; once `timeout` has passed, fails with
/// what it answered last.
pub async fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) => assert!(Instant::now() < deadline, "{state}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// A client of a running `bulk-local`, as a user of the CCAI routes with Basic credentials.
pub struct LocalClient {
    http: reqwest::Client,
    pub base: String,
    user: String,
    secret: String,
}

impl LocalClient {
    pub fn new(server: &LocalServer, user: &str, secret: &str) -> LocalClient {
        LocalClient {
            http: reqwest::Client::new(),
            base: server.url(PREFIX),
            user: user.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// Sends a request; answers its status, its body and the next page its `Link` names.
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value, Option<String>) {
        let request = request.basic_auth(&self.user, Some(&self.secret));
        let response = request.send().await.expect("request");
        let status = response.status();
        let next = response
            .headers()
            .get("link")
            .and_then(|link| link.to_str().ok())
            .and_then(|link| link.strip_prefix('<')?.split_once('>'))
            .map(|(next, _)| next.to_owned());
        (status, response.json().await.expect("json"), next)
    }

    /// `GET` of a whole URL: status, body and the next page.
    pub async fn get_url(&self, url: &str) -> (StatusCode, Value, Option<String>) {
        self.send(self.http.get(url)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, body, _) = self.get_url(&format!("{}/{path}", self.base)).await;
        (status, body)
    }

    pub async fn upload(&self, file: &str) -> (StatusCode, Value) {
        let form = multipart(&[Part::file(file.as_bytes().to_vec())]);
        let request = self.http.post(format!("{}/upload", self.base));
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let (status, body, _) = self
            .send(request.header("content-type", content_type).body(form))
            .await;
        (status, body)
    }

    pub async fn proceed(&self, id: u64) -> (StatusCode, Value) {
        let request = self.http.post(format!("{}/proceed", self.base));
        let (status, body, _) = self.send(request.json(&json!({ "id": id }))).await;
        (status, body)
    }

    /// Job `id` once it has `status` (within a minute).
    pub async fn wait_for_status(&self, id: u64, status: &str) -> Value {
        wait_for(
            Duration::from_secs(60),
            Duration::from_millis(50),
            async || {
                let (_, job) = self.get(&format!("jobs/{id}")).await;
                match job["status"] == status {
                    true => Ok(job),
                    false => Err(format!("job {id} never reached {status}: {job}")),
                }
            },
        )
        .await
    }
}

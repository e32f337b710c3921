//! `Idempotency-Key` on the operations that create a job, on both stores: a repeated request
//! gets the first one's answer and does nothing again; a key reused for another request is
//! refused; a request still running holds its key; a refused request does not use it up.

use bulk_tests::{basic, on_both_stores, users_file, Answer, Part, TestApp, PREFIX};
use bulk_users::api::{idempotency_fingerprint, ApiRequest, Operation};
use bulk_users::model::TenantId;
use bulk_users::service::{KeyedRequest, Principal};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

on_both_stores!(
    a_repeated_upload_answers_the_first_job,
    a_key_reused_for_another_request_is_refused,
    a_running_request_holds_its_key_and_a_refused_one_frees_it,
    zendesk_and_workspace_creates_run_once_per_key,
);

/// A request through the route table with an `Idempotency-Key`.
struct Keyed<'a> {
    app: &'a TestApp,
    authorization: (&'static str, String),
    key: &'a str,
}

impl Keyed<'_> {
    async fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let request = self.request(method, path, content_type, body);
        Answer::from(self.app.handle(request).await)
    }

    fn request(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> ApiRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            self.authorization.0,
            HeaderValue::from_str(&self.authorization.1).unwrap(),
        );
        headers.insert(http::header::HOST, HeaderValue::from_static("bulk.test"));
        headers.insert("idempotency-key", HeaderValue::from_str(self.key).unwrap());
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        bulk_tests::api_request(method, path, headers, Bytes::from(body))
    }

    /// `POST upload` of `file`, as a form with its own boundary (clients draw a new one for
    /// every send).
    async fn upload(&self, file: &str, boundary: &str) -> Answer {
        let request = self.upload_request(file, boundary);
        Answer::from(self.app.handle(request).await)
    }

    fn upload_request(&self, file: &str, boundary: &str) -> ApiRequest {
        let form = bulk_tests::multipart(&[Part::file(file.as_bytes().to_vec())])
            .replace_boundary(boundary);
        self.request(
            Method::POST,
            &format!("{PREFIX}/upload"),
            &format!("multipart/form-data; boundary={boundary}"),
            form,
        )
    }

    async fn json(&self, method: Method, path: &str, body: Value) -> Answer {
        self.send(
            method,
            path,
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }
}

trait ReplaceBoundary {
    fn replace_boundary(self, boundary: &str) -> Vec<u8>;
}

impl ReplaceBoundary for Vec<u8> {
    fn replace_boundary(self, boundary: &str) -> Vec<u8> {
        let form = String::from_utf8(self).unwrap();
        form.replace(bulk_tests::BOUNDARY, boundary).into_bytes()
    }
}

fn as_acme<'a>(app: &'a TestApp, key: &'a str) -> Keyed<'a> {
    Keyed {
        app,
        authorization: ("authorization", app.acme.basic()),
        key,
    }
}

async fn job_count(app: &TestApp) -> usize {
    app.job_ids().await.len()
}

fn replayed(answer: &Answer) -> bool {
    answer.header("idempotent-replayed") == Some("true")
}

async fn a_repeated_upload_answers_the_first_job(app: TestApp) {
    let file = users_file(3, "");
    let acme = as_acme(&app, "upload-7f3a");
    let first = acme.upload(&file, "first-boundary").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(!replayed(&first));

    // The same request again (a retry after a lost answer), with another boundary.
    let again = acme.upload(&file, "another-boundary").await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert!(replayed(&again), "a replayed answer says so");
    assert_eq!(again.header("link"), first.header("link"));
    assert_eq!(job_count(&app).await, 1, "one job for both requests");

    // Another key is another request; the same key of another tenant is that tenant's own.
    let other = as_acme(&app, "upload-8b21").upload(&file, "b").await;
    assert_ne!(other.id(), first.id());
    let globex = Keyed {
        app: &app,
        authorization: ("authorization", app.globex.basic()),
        key: "upload-7f3a",
    };
    let theirs = globex.upload(&file, "b").await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    assert!(!replayed(&theirs));
    assert_eq!(
        theirs.id(),
        1,
        "globex's own first job: ids are numbered per tenant"
    );
    assert_eq!(job_count(&app).await, 2);

    // Proceeding the job once processes it once, whatever the retries before.
    assert_eq!(app.proceed(first.id()).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    let job = app.job(first.id()).await;
    let counts = bulk_tests::counts(&job);
    assert_eq!(counts, (Some(3), Some(3), Some(0)), "{job}");
}

async fn a_key_reused_for_another_request_is_refused(app: TestApp) {
    let acme = as_acme(&app, "reused");
    let first = acme.upload(&users_file(2, ""), "x").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = acme.upload(&users_file(5, ""), "x").await;
    other.assert_client_error(StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key");
    let stored = job_count(&app).await;
    assert_eq!(stored, 1, "nothing stored for the refused request");

    // The same key on another operation is another request too.
    let ann = json!({"users": [{"name": "Ann", "email": "ann@example.com"}]});
    let zendesk = acme.json(Method::POST, "/api/v2/users/create_many", ann);
    let zendesk = zendesk.await;
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    assert_eq!(zendesk.status, status, "{}", zendesk.body);
    assert_eq!(zendesk.body["error"], "UnprocessableEntity");
    assert_eq!(job_count(&app).await, 1);

    for bad in ["", "   ", &"k".repeat(256), "tab\there"] {
        let answer = as_acme(&app, bad).upload(&users_file(1, ""), "x").await;
        answer.assert_client_error(StatusCode::BAD_REQUEST, "Idempotency-Key");
    }
    assert_eq!(job_count(&app).await, 1);
}

async fn a_running_request_holds_its_key_and_a_refused_one_frees_it(app: TestApp) {
    // A request holding the key and still running (claimed, no answer yet).
    let who = Principal {
        tenant: TenantId::parse("acme").unwrap(),
        key_id: "acme-sync".to_owned(),
        name: "acme-sync".to_owned(),
    };
    let file = users_file(2, "");
    let acme = as_acme(&app, "busy");
    let fingerprint = idempotency_fingerprint(&acme.upload_request(&file, "x"), Operation::Upload);
    let claimed = app.service.claim_idempotency_key(&who, "busy", fingerprint);
    let claimed = claimed.await.unwrap();
    let KeyedRequest::Run(ticket) = claimed else {
        panic!("a new key is claimed")
    };
    let busy = acme.upload(&file, "x").await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.body);
    assert_eq!(job_count(&app).await, 0);
    // The running request fails: its key is free again.
    app.service.finish_keyed_request(ticket, None).await;
    let ran = acme.upload(&file, "x").await;
    assert_eq!(ran.status, StatusCode::CREATED, "{}", ran.body);

    // A refused request does not use its key up: the corrected request runs.
    let fixed = as_acme(&app, "fix-me");
    let upload = format!("{PREFIX}/upload");
    let not_a_form = b"not a form".to_vec();
    let refused = fixed.send(Method::POST, &upload, "text/plain", not_a_form);
    let refused = refused.await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let accepted = fixed.upload(&file, "y").await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.body);
    assert!(!replayed(&accepted));
    assert_eq!(job_count(&app).await, 2);
}

async fn zendesk_and_workspace_creates_run_once_per_key(app: TestApp) {
    let zendesk = Keyed {
        app: &app,
        authorization: (
            "authorization",
            basic("admin@acme.example/token", &app.acme.secret),
        ),
        key: "zd-1",
    };
    let body = json!({"users": [
        {"name": "Ann", "email": "ann@example.com"},
        {"name": "Bob", "email": "bob@example.com"},
    ]});
    let create_many = "/api/v2/users/create_many.json";
    let first = zendesk.json(Method::POST, create_many, body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = zendesk.json(Method::POST, create_many, body).await;
    assert_eq!(again.body, first.body);
    assert!(replayed(&again));
    app.drain().await;
    let id = first.body["job_status"]["id"].as_str().unwrap().to_owned();
    let status = format!("/api/v2/job_statuses/{id}");
    let status = app
        .call(Method::GET, &status, bulk_tests::Body::Empty)
        .await
        .body;
    assert_eq!(status["job_status"]["status"], "completed", "{status}");
    let users = app.get("config?page=1&per_page=100").await.body;
    assert_eq!(users.as_array().unwrap().len(), 2, "created once: {users}");

    // Huawei's batch-create runs in the request: a retry without a key would be refused as
    // duplicate names; with the key it gets the first answer.
    let workspace = Keyed {
        app: &app,
        authorization: ("x-auth-token", app.acme.secret.clone()),
        key: "hw-1",
    };
    let body = json!({"users": [{"user_name": "carol", "user_email": "carol@example.com"}]});
    let path = "/v2/acme/users/batch-create";
    let created = workspace.json(Method::POST, path, body.clone()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let retried = workspace.json(Method::POST, path, body.clone()).await;
    let answered = (created.status, &created.body);
    assert_eq!((retried.status, &retried.body), answered);
    assert!(replayed(&retried));
    let without_key = app.workspace_post(path, &body).await;
    assert_eq!(without_key.status, StatusCode::BAD_REQUEST);
    let users = app.get("config?page=1&per_page=100").await.body;
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");
}

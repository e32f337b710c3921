//! The published limits, on both stores: over `max_file_bytes` or `max_rows` a file is refused
//! with 413 and nothing is stored; over `requests_per_minute`, `max_concurrent_jobs`,
//! `max_concurrent_batch_creates` or an address's `failed_authentications_per_minute` a request
//! is refused with 429 and `Retry-After`; each names its limit.

use bulk_tests::{on_both_stores, users_file, Answer, Backend, Body, Part, TestApp, PREFIX};
use bulk_users::service::ServiceConfig;
use bulk_users::service::SettingsChange;
use http::{Method, StatusCode};
use serde_json::json;

const TOO_MANY: StatusCode = StatusCode::TOO_MANY_REQUESTS;

on_both_stores!(
    a_file_over_max_rows_or_max_file_bytes_is_refused_and_nothing_stored,
    requests_over_the_rate_limit_wait_for_the_next_minute,
    a_job_over_max_concurrent_jobs_waits_until_one_ends,
    a_batch_create_over_max_concurrent_batch_creates_waits_until_one_ends,
);

async fn limit(app: &TestApp, change: SettingsChange) {
    app.set_settings("acme", change).await;
}

fn retry_after(answer: &Answer) -> u64 {
    answer
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", answer.headers))
}

fn assert_limit(answer: &Answer, status: StatusCode, name: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], "limit_exceeded", "{}", answer.body);
    assert_eq!(answer.body["limit"], name, "{}", answer.body);
    assert!(
        answer.body["message"].as_str().unwrap().contains(name),
        "the message names the limit: {}",
        answer.body
    );
}

async fn a_file_over_max_rows_or_max_file_bytes_is_refused_and_nothing_stored(app: TestApp) {
    let max_rows = Some(2);
    limit(
        &app,
        SettingsChange {
            max_rows,
            ..SettingsChange::default()
        },
    )
    .await;
    let over = app.upload(&users_file(3, "")).await;
    assert_limit(&over, StatusCode::PAYLOAD_TOO_LARGE, "max_rows");
    assert_eq!(app.job_ids().await, Vec::<u64>::new(), "no job was created");

    let accepted = app.upload(&users_file(2, "")).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.body);
    let id = accepted.id();
    let before = app.job(id).await;
    let file = Part::file(users_file(3, "").into_bytes());
    let form = Body::Multipart(vec![Part::text("id", &id.to_string()), file]);
    let replaced = app.ccai(Method::PUT, "upload", form).await;
    assert_limit(&replaced, StatusCode::PAYLOAD_TOO_LARGE, "max_rows");
    assert_eq!(app.job(id).await, before, "unchanged");

    let max_file_bytes = Some(100);
    limit(
        &app,
        SettingsChange {
            max_file_bytes,
            ..SettingsChange::default()
        },
    )
    .await;
    let over = app.upload(&users_file(2, "")).await;
    assert_limit(&over, StatusCode::PAYLOAD_TOO_LARGE, "max_file_bytes");
    let presigned = app
        .post_json("upload/presigned", json!({"bytes": 101}))
        .await;
    if app.aws().is_some() {
        assert_limit(&presigned, StatusCode::PAYLOAD_TOO_LARGE, "max_file_bytes");
    }
    assert_eq!(app.job_ids().await, vec![id]);
}

async fn requests_over_the_rate_limit_wait_for_the_next_minute(app: TestApp) {
    let requests_per_minute = Some(3);
    limit(
        &app,
        SettingsChange {
            requests_per_minute,
            ..SettingsChange::default()
        },
    )
    .await;
    bulk_tests::early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(app.get("jobs").await.status, StatusCode::OK);
    }
    let refused = app.get("jobs").await;
    assert_limit(&refused, TOO_MANY, "requests_per_minute");
    assert!((1..=60).contains(&retry_after(&refused)));
    // Every route and dialect counts against the same limit, and says so in its own shape.
    let upload = app.upload(&users_file(1, "")).await;
    assert_limit(&upload, TOO_MANY, "requests_per_minute");
    let zendesk = app.call(Method::GET, "/api/v2/job_statuses", Body::Empty);
    let zendesk = zendesk.await;
    assert_eq!(zendesk.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(zendesk.body["error"], "TooManyRequests");
    assert_eq!(zendesk.body["details"]["limit"], "requests_per_minute");
    retry_after(&zendesk);
    let globex = app.as_globex(Method::GET, "jobs", Body::Empty).await;
    assert_eq!(
        globex.status,
        StatusCode::OK,
        "other tenants are not limited"
    );

    // A bad credential is refused before it counts: it cannot exhaust the tenant's limit.
    let wrong = bulk_tests::basic("acme", "wrong");
    let jobs = format!("{PREFIX}/jobs");
    let stranger = app.call_as(&wrong, Method::GET, &jobs, Body::Empty).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    let stored = stored_job_count(&app).await;
    assert_eq!(stored, 0, "the refused upload stored nothing");
}

/// The tenant's jobs, read from the store (the API is over its limit).
async fn stored_job_count(app: &TestApp) -> u64 {
    let tenant = bulk_users::model::TenantId::parse("acme").unwrap();
    let first = bulk_users::ports::PageRequest {
        page: 1,
        per_page: 10,
    };
    let listed = app.service.ports().jobs.list_jobs(&tenant, first).await;
    listed.unwrap().1
}

async fn a_job_over_max_concurrent_jobs_waits_until_one_ends(app: TestApp) {
    let max_concurrent_jobs = Some(1);
    limit(
        &app,
        SettingsChange {
            max_concurrent_jobs,
            ..SettingsChange::default()
        },
    )
    .await;
    let first = app.upload(&users_file(2, "")).await.id();
    let second = app.upload(&users_file(3, "")).await.id();
    assert_eq!(app.proceed(first).await.status, StatusCode::ACCEPTED);

    let refused = app.proceed(second).await;
    assert_limit(&refused, TOO_MANY, "max_concurrent_jobs");
    assert!(retry_after(&refused) > 0);
    let status = app.job(second).await["status"].clone();
    assert_eq!(status, "valid_scheme", "the refused job waits, unchanged");
    // A repeated proceed of the running job is not a new job: it is answered as before.
    assert_eq!(app.proceed(first).await.status, StatusCode::ACCEPTED);

    // The dialects' batches are jobs too: refused whole, nothing recorded.
    let jobs_before = app.job_ids().await;
    let ann = json!({"users": [{"name": "Ann", "email": "ann@example.com"}]});
    let zendesk = app.call(Method::POST, "/api/v2/users/create_many", Body::Json(ann));
    let zendesk = zendesk.await;
    assert_eq!(zendesk.status, TOO_MANY, "{}", zendesk.body);
    assert_eq!(zendesk.body["details"]["limit"], "max_concurrent_jobs");
    let carol = json!({"users": [{"user_name": "carol", "user_email": "carol@example.com"}]});
    let workspace = app
        .workspace_post("/v2/acme/users/batch-create", &carol)
        .await;
    assert_eq!(workspace.status, TOO_MANY, "{}", workspace.body);
    assert_eq!(workspace.body["error_code"], "WKS.00000429");
    let jobs = app.job_ids().await;
    assert_eq!(jobs, jobs_before, "no job recorded for refused batches");

    // When the running job ends, the next one starts.
    app.drain().await;
    assert_eq!(app.job(first).await["status"], "completed");
    assert_eq!(app.proceed(second).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    assert_eq!(app.job(second).await["status"], "completed");
}

/// Huawei `batch-create`s run inline and hash every password: at most
/// `max_concurrent_batch_creates` of a tenant's run at once, across every process (a slot
/// leased in the store). One running elsewhere holds the only slot here; another is refused
/// with 429 in Huawei's shape before its users are read, and runs once the slot is free. A
/// finished batch-create frees its slot.
async fn a_batch_create_over_max_concurrent_batch_creates_waits_until_one_ends(app: TestApp) {
    let max_concurrent_batch_creates = Some(1);
    limit(
        &app,
        SettingsChange {
            max_concurrent_batch_creates,
            ..SettingsChange::default()
        },
    )
    .await;
    let tenants = &app.service.ports().tenants;
    let acme = bulk_users::model::TenantId::parse("acme").unwrap();
    let now = bulk_users::model::Timestamp::now();
    let running = bulk_users::model::SlotLease {
        name: "batch-create",
        slots: 1,
        holder: "a batch-create elsewhere".to_owned(),
        until: now.plus_seconds(60),
    };
    assert_eq!(
        tenants.take_slot(&acme, &running, now).await.unwrap(),
        Some(0)
    );

    let batch = |name: &str| json!({"users": [{"user_name": name, "user_email": format!("{name}@example.com")}]});
    let refused = app
        .workspace_post("/v2/acme/users/batch-create", &batch("carol"))
        .await;
    assert_eq!(refused.status, TOO_MANY, "{}", refused.body);
    assert_eq!(refused.body["error_code"], "WKS.00000429");
    let message = refused.body["error_msg"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_concurrent_batch_creates"),
        "{}",
        refused.body
    );
    assert!(retry_after(&refused) > 0);
    assert!(app.job_ids().await.is_empty(), "nothing recorded");

    tenants
        .free_slot(&acme, "batch-create", 0, &running.holder)
        .await
        .unwrap();
    for name in ["carol", "dave"] {
        let created = app
            .workspace_post("/v2/acme/users/batch-create", &batch(name))
            .await;
        assert_eq!(created.status, StatusCode::OK, "{name}: {}", created.body);
    }
}

/// An address that keeps failing to authenticate is refused (429,
/// `failed_authentications_per_minute`) before any credential is read, the right one too,
/// until the minute ends; other addresses are not. On AWS the read-only function that answers
/// counts the failures under its own role (an UpdateItem confined to `AUTHFAIL#…` items).
async fn failures_from_an_address_refuse_it_until_the_minute_ends(backend: Backend) {
    let config = ServiceConfig {
        failed_authentications_per_minute: 3,
        ..ServiceConfig::default()
    };
    let app = TestApp::with_config(backend, config).await;
    let from = |source: &str, authorization: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
        let mut request = bulk_tests::api_request(
            Method::GET,
            &format!("{PREFIX}/jobs"),
            headers,
            bytes::Bytes::new(),
        );
        request.source = Some(source.to_owned());
        let app = &app;
        async move { Answer::from(app.handle(request).await) }
    };
    let (attacker, neighbour) = ("198.51.100.7", "203.0.113.9");
    let wrong = bulk_tests::basic("acme", "not-the-secret");
    bulk_tests::early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(
            from(attacker, &wrong).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let refused = from(attacker, &app.acme.basic()).await;
    assert_limit(&refused, TOO_MANY, "failed_authentications_per_minute");
    assert!((1..=60).contains(&retry_after(&refused)));
    let neighbour = from(neighbour, &app.acme.basic()).await;
    assert_eq!(neighbour.status, StatusCode::OK, "{}", neighbour.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_an_address_refuse_it_until_the_minute_ends_embedded() {
    failures_from_an_address_refuse_it_until_the_minute_ends(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_an_address_refuse_it_until_the_minute_ends_aws() {
    failures_from_an_address_refuse_it_until_the_minute_ends(Backend::Aws).await;
}

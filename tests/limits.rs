//! The published per-tenant limits, on both stores: over `max_file_bytes` or `max_rows` a file
//! is refused with 413 and nothing is stored; over `requests_per_minute` or
//! `max_concurrent_jobs` a request is refused with 429 and `Retry-After`; each names its limit.

use std::time::Duration;

use bulk_tests::{on_both_stores, users_file, Answer, Body, Part, TestApp, PREFIX};
use bulk_users::service::SettingsChange;
use http::{Method, StatusCode};
use serde_json::json;

const TOO_MANY: StatusCode = StatusCode::TOO_MANY_REQUESTS;

on_both_stores!(
    a_file_over_max_rows_or_max_file_bytes_is_refused_and_nothing_stored,
    requests_over_the_rate_limit_wait_for_the_next_minute,
    a_job_over_max_concurrent_jobs_waits_until_one_ends,
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

/// Waits, when needed, so that the next few requests fall within one UTC minute.
async fn early_in_a_minute() {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into_minute > 50_000 {
        tokio::time::sleep(Duration::from_millis(60_100 - into_minute as u64)).await;
    }
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
    early_in_a_minute().await;
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

//! The published per-tenant limits, on both stores: over `max_file_bytes` or `max_rows` a file
//! is refused with 413 and nothing is stored; over `requests_per_minute` or
//! `max_concurrent_jobs` a request is refused with 429 and `Retry-After`; each names its limit.

use std::time::Duration;

use bulk_tests::{on_both_stores, users_file, Answer, Body, Part, TestApp, PREFIX};
use bulk_users::service::SettingsChange;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

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
    limit(
        &app,
        SettingsChange {
            max_rows: Some(2),
            ..SettingsChange::default()
        },
    )
    .await;
    assert_limit(
        &app.upload(&users_file(3, "")).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "max_rows",
    );
    assert_eq!(app.job_ids().await, Vec::<u64>::new(), "no job was created");

    let accepted = app.upload(&users_file(2, "")).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.body);
    let id = accepted.id();
    let before = app.get(&format!("jobs/{id}")).await.body;
    let replaced = app
        .call(
            Method::PUT,
            &format!("{PREFIX}/upload"),
            Body::Multipart(vec![
                Part::text("id", &id.to_string()),
                Part::file(users_file(3, "").into_bytes()),
            ]),
        )
        .await;
    assert_limit(&replaced, StatusCode::PAYLOAD_TOO_LARGE, "max_rows");
    assert_eq!(
        app.get(&format!("jobs/{id}")).await.body,
        before,
        "unchanged"
    );

    limit(
        &app,
        SettingsChange {
            max_file_bytes: Some(100),
            ..SettingsChange::default()
        },
    )
    .await;
    assert_limit(
        &app.upload(&users_file(2, "")).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "max_file_bytes",
    );
    let presigned = app
        .call(
            Method::POST,
            &format!("{PREFIX}/upload/presigned"),
            Body::Json(json!({"bytes": 101})),
        )
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
    limit(
        &app,
        SettingsChange {
            requests_per_minute: Some(3),
            ..SettingsChange::default()
        },
    )
    .await;
    early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(app.get("jobs").await.status, StatusCode::OK);
    }
    let refused = app.get("jobs").await;
    assert_limit(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "requests_per_minute",
    );
    assert!((1..=60).contains(&retry_after(&refused)));
    // Every route and dialect counts against the same limit, and says so in its own shape.
    let upload = app.upload(&users_file(1, "")).await;
    assert_limit(
        &upload,
        StatusCode::TOO_MANY_REQUESTS,
        "requests_per_minute",
    );
    let zendesk = app
        .call(Method::GET, "/api/v2/job_statuses", Body::Empty)
        .await;
    assert_eq!(zendesk.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(zendesk.body["error"], "TooManyRequests");
    assert_eq!(zendesk.body["details"]["limit"], "requests_per_minute");
    retry_after(&zendesk);
    assert_eq!(
        jobs_status_as_globex(&app).await,
        StatusCode::OK,
        "other tenants are not limited"
    );

    // A bad credential is refused before it counts: it cannot exhaust the tenant's limit.
    let stranger = app
        .call_as(
            &bulk_tests::basic("acme", "wrong"),
            Method::GET,
            &format!("{PREFIX}/jobs"),
            Body::Empty,
        )
        .await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        stored_job_count(&app).await,
        0,
        "the refused upload stored nothing"
    );
}

async fn jobs_status_as_globex(app: &TestApp) -> StatusCode {
    app.call_as(
        &app.globex.basic(),
        Method::GET,
        &format!("{PREFIX}/jobs"),
        Body::Empty,
    )
    .await
    .status
}

/// The tenant's jobs, read from the store (the API is over its limit).
async fn stored_job_count(app: &TestApp) -> u64 {
    let tenant = bulk_users::model::TenantId::parse("acme").unwrap();
    let (_, total) = app
        .service
        .ports()
        .jobs
        .list_jobs(
            &tenant,
            bulk_users::ports::PageRequest {
                page: 1,
                per_page: 10,
            },
        )
        .await
        .unwrap();
    total
}

async fn a_job_over_max_concurrent_jobs_waits_until_one_ends(app: TestApp) {
    limit(
        &app,
        SettingsChange {
            max_concurrent_jobs: Some(1),
            ..SettingsChange::default()
        },
    )
    .await;
    let first = app.upload(&users_file(2, "")).await.id();
    let second = app.upload(&users_file(3, "")).await.id();
    assert_eq!(app.proceed(first).await.status, StatusCode::ACCEPTED);

    let refused = app.proceed(second).await;
    assert_limit(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "max_concurrent_jobs",
    );
    assert!(retry_after(&refused) > 0);
    assert_eq!(
        app.get(&format!("jobs/{second}")).await.body["status"],
        "valid_scheme",
        "the refused job waits, unchanged"
    );
    // A repeated proceed of the running job is not a new job: it is answered as before.
    assert_eq!(app.proceed(first).await.status, StatusCode::ACCEPTED);

    // The dialects' batches are jobs too: refused whole, nothing recorded.
    let jobs_before = app.job_ids().await;
    let zendesk = app
        .call(
            Method::POST,
            "/api/v2/users/create_many",
            Body::Json(json!({"users": [{"name": "Ann", "email": "ann@example.com"}]})),
        )
        .await;
    assert_eq!(
        zendesk.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        zendesk.body
    );
    assert_eq!(zendesk.body["details"]["limit"], "max_concurrent_jobs");
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-auth-token",
        HeaderValue::from_str(&app.acme.secret).unwrap(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let workspace = Answer::from(
        app.handle(bulk_users::api::ApiRequest {
            method: Method::POST,
            path: "/v2/acme/users/batch-create".to_owned(),
            query: None,
            headers,
            body: bytes::Bytes::from(
                json!({"users": [{"user_name": "carol", "user_email": "carol@example.com"}]})
                    .to_string(),
            ),
            deadline: None,
        })
        .await,
    );
    assert_eq!(
        workspace.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        workspace.body
    );
    assert_eq!(workspace.body["error_code"], "WKS.00000429");
    assert_eq!(
        app.job_ids().await,
        jobs_before,
        "no job recorded for refused batches"
    );

    // When the running job ends, the next one starts.
    app.drain().await;
    assert_eq!(
        app.get(&format!("jobs/{first}")).await.body["status"],
        "completed"
    );
    assert_eq!(app.proceed(second).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    assert_eq!(
        app.get(&format!("jobs/{second}")).await.body["status"],
        "completed"
    );
}

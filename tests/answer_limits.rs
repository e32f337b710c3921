//! Lambda's limit on answers, which AWS enforces and neither the runtime emulator nor the
//! local server does: a synchronously invoked function answers at most 6 MB — the API
//! Gateway response it returns, whose JSON body is itself a JSON string there. An answer over
//! it never reaches the client (API Gateway answers 502). This test models the limit: every
//! answer is turned into that response exactly as the functions return it (`lambda_response`,
//! then the API Gateway v2 response `lambda_http` serializes) and measured.
//!
//! The answers are the route table's, the same on either store; the job is made on the
//! embedded store, where 100,000 rows process in seconds.

use bulk_tests::{Backend, TestApp, PREFIX};
use bulk_users::api::ApiResponse;
use bulk_users::lambda::lambda_response;
use http::{Method, StatusCode};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::Body;

/// The largest answer of a synchronously invoked Lambda function.
const LAMBDA_ANSWER_BYTES: usize = 6 * 1024 * 1024;
const ROWS: usize = 100_000;

/// The size of the response a function returns for `response`.
fn lambda_answer_bytes(response: ApiResponse) -> usize {
    let (parts, body) = lambda_response(response).into_parts();
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    answer.body = match body {
        Body::Empty => None,
        body => Some(body),
    };
    answer.headers = parts.headers;
    serde_json::to_vec(&answer)
        .expect("a serializable response")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_about_a_job_of_100000_update_errors_fits_in_a_lambda_answer() {
    let app = TestApp::new(Backend::Embedded).await;
    // Every row renames a user who does not exist: it fails when processed. Long emails make
    // long messages.
    let pad = "x".repeat(40);
    let rows: Vec<String> = (0..ROWS)
        .map(|i| {
            format!(
                r#"{{"email":"ghost{i}.{pad}@example.com","new_email":"moved{i}.{pad}@example.com","first_name":"G","last_name":"H"}}"#
            )
        })
        .collect();
    let job = app.run_job(&format!("[{}]", rows.join(","))).await;
    let id = job["id"].as_u64().expect("job id");
    assert_eq!(job["update_errors"], ROWS as u64, "{job}");
    let zendesk_id = format!("{id:032}");

    let mut paths = vec![
        format!("{PREFIX}/jobs/{id}"),
        format!("{PREFIX}/jobs"),
        format!("{PREFIX}/jobs?per_page=100"),
        format!("{PREFIX}/errors/scheme/{id}"),
        format!("{PREFIX}/config?per_page=1000"),
        format!("/api/v2/job_statuses/{zendesk_id}"),
        format!("/api/v2/job_statuses/show_many?ids={zendesk_id}"),
        "/api/v2/job_statuses?page[size]=100".to_owned(),
    ];
    let pages = ROWS.div_ceil(1000);
    paths.extend((1..=pages + 1).map(|page| format!("{PREFIX}/errors/update/{id}?page={page}")));

    let mut largest = (0, String::new());
    let mut listed = 0;
    for path in &paths {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            app.acme.basic().parse().expect("a header"),
        );
        headers.insert(http::header::HOST, "bulk.test".parse().expect("a header"));
        let response = app
            .handle(bulk_tests::api_request(
                Method::GET,
                path,
                headers,
                bytes::Bytes::new(),
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        if path.contains("/errors/update/") {
            let entries: Vec<serde_json::Value> =
                serde_json::from_slice(response.body()).expect("a JSON array");
            listed += entries.len();
        }
        let bytes = lambda_answer_bytes(response);
        assert!(
            bytes < LAMBDA_ANSWER_BYTES,
            "GET {path} answers {bytes} bytes, over Lambda's {LAMBDA_ANSWER_BYTES}"
        );
        if bytes > largest.0 {
            largest = (bytes, path.clone());
        }
    }
    assert_eq!(listed, ROWS, "every update error on exactly one page");
    eprintln!(
        "largest answer: {} bytes ({:.2} MB), GET {}",
        largest.0,
        largest.0 as f64 / 1e6,
        largest.1
    );
}

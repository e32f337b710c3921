//! What the list routes cost in DynamoDB requests, as a function of the page: counted by an
//! interceptor on the serving function's own DynamoDB client (retries included), on moto,
//! under the function's template policy. A route that read every entry before its page, or
//! counted its whole partition, would cost more on a deeper page; these cost the same on every
//! page. The README's table of request costs is this test's expectations.

use std::collections::BTreeMap;

use bulk_tests::{api_request, Backend, TestApp, PREFIX};
use bulk_users::api::{Api, RouteGroup};
use bulk_users::service::{BulkService, ServiceConfig};
use http::{HeaderMap, Method, StatusCode};

/// Every request of an authenticated route: the secret's pointer and the credential
/// (`GetItem` ×2), the tenant's settings (`GetItem`), its request count (`UpdateItem`).
const AUTHENTICATED: [(&str, u64); 2] = [("GetItem", 3), ("UpdateItem", 1)];

/// (route, the requests it makes besides [`AUTHENTICATED`], the same on every page).
const COSTS: [(&str, &[(&str, u64)]); 2] = [
    // The job (GetItem), one key range of its scheme errors (Query).
    ("errors/scheme/{id}", &[("GetItem", 1), ("Query", 1)]),
    // The job (GetItem), its chunks' error counts (Query), one key range of errors (Query).
    ("errors/update/{id}", &[("GetItem", 1), ("Query", 2)]),
];

fn expected(extra: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for (operation, count) in AUTHENTICATED.iter().chain(extra) {
        *all.entry((*operation).to_owned()).or_insert(0) += count;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_cost_the_same_requests_at_any_depth() {
    let config = ServiceConfig {
        rows_per_chunk: 10,
        ..Default::default()
    };
    let app = TestApp::with_config(Backend::Aws, config).await;
    // 30 rows, all failing when processed (renames of users that do not exist), in 3 chunks;
    // then a file of 12 invalid rows.
    let rows: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"email":"ghost{i}@example.com","new_email":"g{i}@example.com","first_name":"G","last_name":"H"}}"#
            )
        })
        .collect();
    let failed = app.run_job(&format!("[{}]", rows.join(","))).await;
    assert_eq!(failed["update_errors"], 30, "{failed}");
    let bad: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"email":"bad{i}","first_name":"B","last_name":"C"}}"#))
        .collect();
    let invalid = app.upload(&format!("[{}]", bad.join(","))).await.id();
    let ids = [
        ("errors/scheme/{id}", invalid),
        ("errors/update/{id}", failed["id"].as_u64().unwrap()),
    ];

    let stack = app.stack().expect("an AWS stack");
    let (reads, counter) = stack.function_counted("reads").await;
    let api = Api::new(BulkService::new(reads.ports, config));
    let mut wrong = Vec::new();
    for (route, extra) in COSTS {
        let id = ids
            .iter()
            .find(|(r, _)| *r == route)
            .map(|(_, id)| *id)
            .unwrap();
        let path = route.replace("{id}", &id.to_string());
        for page in [1, 3, 6] {
            let target = format!("{PREFIX}/{path}?page={page}&per_page=2");
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                app.acme.basic().parse().unwrap(),
            );
            let before = counter.snapshot();
            let answer = api
                .handle_group(
                    RouteGroup::Reads,
                    api_request(Method::GET, &target, headers, bytes::Bytes::new()),
                )
                .await;
            assert_eq!(answer.status(), StatusCode::OK, "GET {target}");
            let entries: Vec<serde_json::Value> = serde_json::from_slice(answer.body()).unwrap();
            assert_eq!(entries.len(), 2, "GET {target}");
            let cost = counter.since(&before);
            eprintln!("GET {target}: {cost:?}");
            if cost != expected(extra) {
                wrong.push(format!(
                    "GET {target} cost {cost:?}, not {:?}",
                    expected(extra)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

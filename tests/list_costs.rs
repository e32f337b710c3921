//! What the list routes cost in DynamoDB requests, as a function of the page: counted by an
//! interceptor on the serving function's own DynamoDB client (retries included), on moto,
//! under the function's template policy. A route that read every entry before its page, or
//! counted its whole partition, would cost more on a deeper page; these cost the same on every
//! page. The README's table of request costs is this test's expectations
//! (`tests/corpus/list_costs/routes.jsonl`).

use std::collections::BTreeMap;

use bulk_tests::cases::{self, Vars};
use bulk_tests::steps::{rows_file, text};
use bulk_tests::{api_request, Backend, TestApp, PREFIX};
use bulk_users::api::Api;
use bulk_users::service::{BulkService, ServiceConfig};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

/// Every request of an authenticated route: the secret's pointer and the credential
/// (`GetItem` ×2), the tenant's settings (`GetItem`), its request count (`UpdateItem`).
const AUTHENTICATED: [(&str, u64); 2] = [("GetItem", 3), ("UpdateItem", 1)];

/// Users with user names, created through the Workspace: [`MATCHING`] of them start with
/// "ann", the others do not (nor does the rest of the tenant's users have a name).
const NAMED_USERS: u64 = 17;
const MATCHING: u64 = 12;
/// The fixture's users: 14 created by a CCAI job, and the named ones.
const ALL_USERS: u64 = 14 + NAMED_USERS;

/// The requests of a page: [`AUTHENTICATED`] and those of the route (`{operation: count}`).
fn expected(route: &Value) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    let of_route = route.as_object().expect("requests by operation").iter();
    let of_route = of_route.map(|(operation, count)| (operation.as_str(), count.as_u64().unwrap()));
    for (operation, count) in AUTHENTICATED.into_iter().chain(of_route) {
        *all.entry(operation.to_owned()).or_insert(0) += count;
    }
    all
}

/// What the routes list: a job whose 30 rows all failed in processing (3 chunks), a job of 12
/// invalid rows, a job of 14 new users, more jobs, and a Workspace batch of 17 users with user
/// names: 16 jobs in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_cost_the_same_requests_at_any_depth() {
    let app = TestApp::with_chunks(Backend::Aws, 10).await;
    let failed = rows_file(30, |i| {
        format!(
            r#"{{"email":"ghost{i}@example.com","new_email":"g{i}@example.com","first_name":"G","last_name":"H"}}"#
        )
    });
    let failed = app.run_job(&failed).await;
    assert_eq!(failed["update_errors"], 30, "{failed}");
    let bad = rows_file(12, |i| {
        format!(r#"{{"email":"bad{i}","first_name":"B","last_name":"C"}}"#)
    });
    let invalid = app.upload(&bad).await.id();
    for n in 0..12 {
        let upload = app.upload(&bulk_tests::users_file(1 + n % 2, "")).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    }
    let created = app.run_job(&bulk_tests::users_file(14, "")).await;
    assert_eq!(created["affected_rows"], 14, "{created}");
    create_named_users(&app).await;
    let jobs: u64 = 16;
    let fixture = Vars::new()
        .with("PREFIX", PREFIX)
        .with("failed", failed["id"].as_u64().unwrap())
        .with("invalid", invalid)
        .with("ALL_USERS", ALL_USERS)
        .with("MATCHING", MATCHING);

    let stack = app.stack().expect("an AWS stack");
    let mut wrong = Vec::new();
    for route in cases::load("list_costs/routes.jsonl") {
        let (name, function) = (cases::name(&route), text(&route["function"]));
        let served = bulk_tests::HTTP_FUNCTIONS
            .iter()
            .find(|(f, _)| *f == function);
        let group = served
            .unwrap_or_else(|| panic!("{name}: no function {function}"))
            .1;
        let (adapters, counter) = stack.function_counted(function).await;
        let config = ServiceConfig {
            rows_per_chunk: 10,
            ..Default::default()
        };
        let api = Api::new(BulkService::new(adapters.ports, config));
        let workspace = route["workspace"] == true;
        // A warm instance: its first authentication reads the keyring (once per process),
        // which is no cost of a page.
        let first = fixture
            .clone()
            .with("page", 1)
            .with("offset", 0)
            .with("after", jobs + 1);
        let warm_up = first.fill(text(&route["target"]));
        let request = api_request(
            Method::GET,
            &warm_up,
            auth(workspace, &app),
            Default::default(),
        );
        api.handle_group(group, request).await;
        for page in [1, 3, 6] {
            let offset = 2 * (page - 1);
            let page_vars = fixture.clone().with("page", page);
            let page_vars = page_vars
                .with("offset", offset)
                .with("after", jobs + 1 - offset);
            let target = page_vars.fill(text(&route["target"]));
            let headers = auth(workspace, &app);
            let before = counter.snapshot();
            let request = api_request(Method::GET, &target, headers, bytes::Bytes::new());
            let answer = api.handle_group(group, request).await;
            assert_eq!(answer.status(), StatusCode::OK, "{name}: GET {target}");
            let body: Value = serde_json::from_slice(answer.body()).unwrap();
            let entries = body
                .as_array()
                .or_else(|| body["job_statuses"].as_array())
                .or_else(|| body["users"].as_array())
                .map(Vec::len);
            assert_eq!(entries, Some(2), "{name}: GET {target}: {body}");
            let cost = counter.since(&before);
            eprintln!("GET {target}: {cost:?}");
            let wanted = expected(&route[if page == 1 { "first" } else { "deeper" }]);
            if cost != wanted {
                wrong.push(format!(
                    "{name}: GET {target} cost {cost:?}, not {wanted:?}"
                ));
            }
            if workspace {
                let total = fixture.fill_json(&route["total_count"]);
                assert_eq!(body["total_count"], total, "{name}: GET {target}: {body}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Acme's credential, as a Workspace token or as HTTP Basic.
fn auth(workspace: bool, app: &TestApp) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if workspace {
        headers.insert("x-auth-token", app.acme.secret.parse().unwrap());
    } else {
        let basic = app.acme.basic().parse().unwrap();
        headers.insert(http::header::AUTHORIZATION, basic);
    }
    headers
}

/// [`NAMED_USERS`] users through the Workspace's `batch-create`, [`MATCHING`] of them named
/// "ann…" (and "joann…", which contains "ann" but does not start with it).
async fn create_named_users(app: &TestApp) {
    let users: Vec<Value> = (0..NAMED_USERS)
        .map(|i| {
            let name = if i < MATCHING {
                format!("Ann{i:02}")
            } else {
                format!("joann{i:02}")
            };
            json!({ "user_name": name, "user_phone": "5550100" })
        })
        .collect();
    let path = "/v2/acme/users/batch-create";
    let answer = app.workspace_post(path, &json!({ "users": users })).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

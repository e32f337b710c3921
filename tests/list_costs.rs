//! What the list routes cost in DynamoDB requests, as a function of the page: counted by an
//! interceptor on the serving function's own DynamoDB client (retries included), on moto,
//! under the function's template policy. A route that read every entry before its page, or
//! counted its whole partition, would cost more on a deeper page; these cost the same on every
//! page. The README's table of request costs is this test's expectations.

use std::collections::BTreeMap;

use bulk_tests::{api_request, function_of_group, Backend, TestApp, PREFIX};
use bulk_users::api::{Api, RouteGroup};
use bulk_users::service::{BulkService, ServiceConfig};
use http::{HeaderMap, Method, StatusCode};

/// Every request of an authenticated route: the secret's pointer and the credential
/// (`GetItem` ×2), the tenant's settings (`GetItem`), its request count (`UpdateItem`).
const AUTHENTICATED: [(&str, u64); 2] = [("GetItem", 3), ("UpdateItem", 1)];

/// A list route, pages of 2 entries at three depths, and the requests a page makes besides
/// [`AUTHENTICATED`]: on the first page, and on the deeper ones (the same at every depth).
struct Route {
    group: RouteGroup,
    /// The request of the page at a depth (1, 3, 6), given the fixture.
    target: fn(&Fixture, u64) -> String,
    /// Whether the route is the Workspace's (its credential is a header of its own).
    workspace: bool,
    extra: &'static [(&'static str, u64)],
    deeper: &'static [(&'static str, u64)],
    /// The Workspace's `total_count`.
    total_count: u64,
}

/// The users' list: the tenant's counts of live users by bucket of ids (Query), and the page
/// (Query); a page that begins inside a bucket reads the keys of that bucket's users before it
/// first (Query: at most one bucket's).
const USERS: &[(&str, u64)] = &[("Query", 2)];
const USERS_DEEPER: &[(&str, u64)] = &[("Query", 3)];

/// The users whose user name starts with a text: the matching entries of the index of user
/// name keys counted (Query) and one page of them (Query), their users (BatchGetItem); a
/// deeper page skips the matches before it first (Query: keys only, 10,000 at a time).
const NAMED: &[(&str, u64)] = &[("Query", 2), ("BatchGetItem", 1)];
const NAMED_DEEPER: &[(&str, u64)] = &[("Query", 3), ("BatchGetItem", 1)];

/// Users with user names, created through the Workspace: [`MATCHING`] of them start with
/// "ann", the others do not (nor does the rest of the tenant's users have a name).
const NAMED_USERS: u64 = 17;
const MATCHING: u64 = 12;
/// The fixture's users: 14 created by a CCAI job, and the named ones.
const ALL_USERS: u64 = 14 + NAMED_USERS;

const ROUTES: [Route; 7] = [
    // The job (GetItem), one key range of its scheme errors (Query).
    Route {
        group: RouteGroup::Reads,
        target: |f, page| {
            format!(
                "{PREFIX}/errors/scheme/{}?page={page}&per_page=2",
                f.invalid
            )
        },
        workspace: false,
        extra: &[("GetItem", 1), ("Query", 1)],
        deeper: &[("GetItem", 1), ("Query", 1)],
        total_count: 0,
    },
    // The job (GetItem), its chunks' error counts (Query), one key range of errors (Query).
    Route {
        group: RouteGroup::Reads,
        target: |f, page| format!("{PREFIX}/errors/update/{}?page={page}&per_page=2", f.failed),
        workspace: false,
        extra: &[("GetItem", 1), ("Query", 2)],
        deeper: &[("GetItem", 1), ("Query", 2)],
        total_count: 0,
    },
    // The tenant's job count (GetItem), one range of ordinals (Query).
    Route {
        group: RouteGroup::Jobs,
        target: |_, page| format!("{PREFIX}/jobs?page={page}&per_page=2"),
        workspace: false,
        extra: &[("GetItem", 1), ("Query", 1)],
        deeper: &[("GetItem", 1), ("Query", 1)],
        total_count: 0,
    },
    // The jobs below the cursor's ordinal (Query, with a limit).
    Route {
        group: RouteGroup::Jobs,
        target: |f, page| {
            let after = f.jobs + 1 - 2 * (page - 1);
            format!("/api/v2/job_statuses.json?page[size]=2&page[after]=o{after}")
        },
        workspace: false,
        extra: &[("Query", 1)],
        deeper: &[("Query", 1)],
        total_count: 0,
    },
    Route {
        group: RouteGroup::Reads,
        target: |_, page| format!("{PREFIX}/config?page={page}&per_page=2"),
        workspace: false,
        extra: USERS,
        deeper: USERS_DEEPER,
        total_count: 0,
    },
    // `total_count` is the sum of the counts.
    Route {
        group: RouteGroup::Reads,
        target: |_, page| format!("/v2/acme/users?offset={}&limit=2", 2 * (page - 1)),
        workspace: true,
        extra: USERS,
        deeper: USERS_DEEPER,
        total_count: ALL_USERS,
    },
    // `total_count` counts the matches only.
    Route {
        group: RouteGroup::Reads,
        target: |_, page| {
            format!(
                "/v2/acme/users?user_name=ANN&offset={}&limit=2",
                2 * (page - 1)
            )
        },
        workspace: true,
        extra: NAMED,
        deeper: NAMED_DEEPER,
        total_count: MATCHING,
    },
];

/// What the routes list: a job whose 30 rows all failed in processing (3 chunks), a job of 12
/// invalid rows, a job of 14 new users, more jobs, and a Workspace batch of 17 users with user
/// names: 16 jobs in all.
struct Fixture {
    failed: u64,
    invalid: u64,
    jobs: u64,
}

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
    for n in 0..12 {
        let upload = app.upload(&bulk_tests::users_file(1 + n % 2, "")).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    }
    let created = app.run_job(&bulk_tests::users_file(14, "")).await;
    assert_eq!(created["affected_rows"], 14, "{created}");
    create_named_users(&app).await;
    let fixture = Fixture {
        failed: failed["id"].as_u64().unwrap(),
        invalid,
        jobs: 16,
    };

    let stack = app.stack().expect("an AWS stack");
    let mut wrong = Vec::new();
    for route in &ROUTES {
        let (adapters, counter) = stack.function_counted(function_of_group(route.group)).await;
        let api = Api::new(BulkService::new(adapters.ports, config));
        for page in [1, 3, 6] {
            let target = (route.target)(&fixture, page);
            let mut headers = HeaderMap::new();
            if route.workspace {
                headers.insert("x-auth-token", app.acme.secret.parse().unwrap());
            } else {
                headers.insert(
                    http::header::AUTHORIZATION,
                    app.acme.basic().parse().unwrap(),
                );
            }
            let before = counter.snapshot();
            let answer = api
                .handle_group(
                    route.group,
                    api_request(Method::GET, &target, headers, bytes::Bytes::new()),
                )
                .await;
            assert_eq!(answer.status(), StatusCode::OK, "GET {target}");
            let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
            let entries = body
                .as_array()
                .or_else(|| body["job_statuses"].as_array())
                .or_else(|| body["users"].as_array())
                .map(Vec::len);
            assert_eq!(entries, Some(2), "GET {target}: {body}");
            let cost = counter.since(&before);
            eprintln!("GET {target}: {cost:?}");
            let wanted = expected(if page == 1 { route.extra } else { route.deeper });
            if cost != wanted {
                wrong.push(format!("GET {target} cost {cost:?}, not {wanted:?}"));
            }
            if route.workspace {
                assert_eq!(
                    body["total_count"], route.total_count,
                    "GET {target}: {body}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// [`NAMED_USERS`] users through the Workspace's `batch-create`, [`MATCHING`] of them named
/// "ann…" (and "joann…", which contains "ann" but does not start with it).
async fn create_named_users(app: &TestApp) {
    let users: Vec<serde_json::Value> = (0..NAMED_USERS)
        .map(|i| {
            let name = if i < MATCHING {
                format!("Ann{i:02}")
            } else {
                format!("joann{i:02}")
            };
            serde_json::json!({ "user_name": name, "user_phone": "5550100" })
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-auth-token", app.acme.secret.parse().unwrap());
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&serde_json::json!({ "users": users })).unwrap();
    let answer = app
        .handle(api_request(
            Method::POST,
            "/v2/acme/users/batch-create",
            headers,
            body.into(),
        ))
        .await;
    assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.body());
}

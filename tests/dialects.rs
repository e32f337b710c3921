//! The Zendesk and Huawei Workspace dialects through the route table, on both stores: the same
//! users, jobs and pipeline as the CCAI dialect.

use bulk_tests::cases;
use bulk_tests::{basic, on_both_stores, Answer, Body, TestApp, PREFIX};
use bulk_users::model::TenantId;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

on_both_stores!(
    create_many_is_a_queued_job_with_results_in_request_order,
    create_or_update_update_and_destroy_many,
    zendesk_refuses_bad_requests_in_its_own_error_shape,
    job_statuses_list_pages_by_cursor_and_show_many,
    workspace_batch_create_lists_and_deletes,
    workspace_batches_are_all_or_nothing,
    one_user_whichever_dialect,
    a_deleted_user_keeps_no_personal_data,
    a_deletion_run_again_after_its_lost_commit_deletes_once,
);

fn token_auth(app: &TestApp) -> String {
    basic("admin@acme.test/token", &app.acme.secret)
}

async fn zendesk(app: &TestApp, method: Method, path: &str, body: Value) -> Answer {
    app.call_as(&token_auth(app), method, path, Body::Json(body))
        .await
}

/// Sends a Zendesk bulk request, runs its queued work and answers the finished job status.
async fn zendesk_job(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    finished(app, &zendesk(app, method, path, body).await).await
}

/// Runs the queued work and answers the job status.
async fn finished(app: &TestApp, answer: &Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let id = answer.body["job_status"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job status id in {}", answer.body))
        .to_owned();
    app.drain().await;
    let status = zendesk(
        app,
        Method::GET,
        &format!("/api/v2/job_statuses/{id}.json"),
        Value::Null,
    )
    .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(
        status.body["job_status"]["status"], "completed",
        "{}",
        status.body
    );
    status.body["job_status"].clone()
}

fn statuses(job: &Value) -> Vec<String> {
    job["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {job}"))
        .iter()
        .map(|result| result["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn create_many_is_a_queued_job_with_results_in_request_order(app: TestApp) {
    let answer = zendesk(
        &app,
        Method::POST,
        "/api/v2/users/create_many.json",
        json!({"users": [
            {"name": "Ada Lovelace", "email": "ada@acme.test", "role": "agent", "external_id": "A-1",
             "tags": ["vip"], "organization": {"name": "Analytical"}, "user_fields": {"tier": "gold"}},
            {"name": "Bad Role", "email": "bad@acme.test", "role": "wizard"},
            {"name": "Grace Hopper", "email": "grace@acme.test", "phone": "+1 555 0100", "suspended": true},
        ]}),
    )
    .await;
    let queued = &answer.body["job_status"];
    assert_eq!(queued["status"], "queued", "{}", answer.body);
    assert_eq!(queued["total"], 3);
    assert_eq!(queued["job_type"], "bulk_create_users");
    assert_eq!(queued["id"].as_str().map(str::len), Some(32));
    assert!(queued["url"]
        .as_str()
        .is_some_and(|url| url.ends_with(&format!(
            "/api/v2/job_statuses/{}.json",
            queued["id"].as_str().unwrap()
        ))));

    let job = finished(&app, &answer).await;
    assert_eq!(job["progress"], 3);
    assert!(job["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Completed at ")));
    assert_eq!(statuses(&job), ["Created", "Failed", "Created"]);
    let results = job["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(results[0]["email"], "ada@acme.test");
    assert_eq!(results[0]["external_id"], "A-1");
    assert!(results[0]["id"].as_u64().is_some());
    assert_eq!(results[1]["error"], "InvalidValue");
    assert!(
        results[1]["details"]
            .as_str()
            .unwrap()
            .contains("role 'wizard'"),
        "{}",
        results[1]
    );
    assert!(results[1].get("id").is_none());

    // The same job in the CCAI job list and update error log.
    let jobs = app.get("jobs").await;
    assert_eq!(
        jobs.body[0]["filename"], "create_many.json",
        "{}",
        jobs.body
    );
    assert_eq!(jobs.body[0]["affected_rows"], 2);
    assert_eq!(jobs.body[0]["failed_rows"], 1);
    let id = jobs.body[0]["id"].as_u64().unwrap();
    let errors = app.get(&format!("errors/update/{id}")).await;
    assert_eq!(errors.body[0]["row"], 2, "{}", errors.body);
    assert_eq!(errors.body[0]["field"], "role");

    // Grace is deactivated (suspended), Ada is not.
    let config = app.get("config?emails=ada@acme.test,grace@acme.test").await;
    assert_eq!(
        config.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        config.body
    );
    assert_eq!(config.body[0]["first_name"], "Ada");
    assert_eq!(config.body[0]["last_name"], "Lovelace");
    assert!(config.body[0]["deactivated_at"].is_null());
    assert!(!config.body[1]["deactivated_at"].is_null());
}

async fn create_or_update_update_and_destroy_many(app: TestApp) {
    let created = zendesk_job(&app, Method::POST, "/api/v2/users/create_many", json!({"users": [ {"name": "Ada Lovelace", "email": "ada@acme.test", "external_id": "A-1"}, {"name": "Alan Turing", "email": "alan@acme.test", "external_id": "A-2"}, ]})).await;
    let ada = created["results"][0]["id"].as_u64().unwrap();
    let alan = created["results"][1]["id"].as_u64().unwrap();

    // Matched by email (case-insensitively) or by external id; a new one is created.
    let upserted = zendesk_job(&app, Method::POST, "/api/v2/users/create_or_update_many.json", json!({"users": [ {"name": "Ada King", "email": "ADA@acme.test"}, {"name": "Alan M. Turing", "external_id": "a-2", "email": "turing@acme.test"}, {"name": "Edsger Dijkstra", "email": "edsger@acme.test"}, {"email": "nameless@acme.test"}, ]})).await;
    assert_eq!(
        statuses(&upserted),
        ["Updated", "Updated", "Created", "Failed"]
    );
    assert_eq!(upserted["results"][0]["id"], ada);
    assert_eq!(upserted["results"][1]["id"], alan);
    assert_eq!(upserted["results"][1]["email"], "turing@acme.test");
    assert!(upserted["results"][3]["details"]
        .as_str()
        .unwrap()
        .contains("name is required"));

    // One change applied to several users by id.
    let updated = zendesk_job(
        &app,
        Method::PUT,
        &format!("/api/v2/users/update_many.json?ids={ada},{alan},999999"),
        json!({"user": {"notes": "moved", "suspended": true}}),
    )
    .await;
    assert_eq!(statuses(&updated), ["Updated", "Updated", "Failed"]);
    assert_eq!(updated["results"][2]["error"], "RecordNotFound");

    // Per-user changes, by external id; taking another user's email fails that user only.
    let renamed = zendesk_job(&app, Method::PUT, "/api/v2/users/update_many", json!({"users": [ {"external_id": "A-1", "email": "edsger@acme.test"}, {"external_id": "A-2", "suspended": false}, ]})).await;
    assert_eq!(statuses(&renamed), ["Failed", "Updated"]);
    assert_eq!(renamed["results"][0]["error"], "DuplicateValue");

    // create_many refuses an email that exists.
    let again = zendesk_job(
        &app,
        Method::POST,
        "/api/v2/users/create_many",
        json!({"users": [{"name": "Ada Again", "email": "ada@acme.test"}]}),
    )
    .await;
    assert_eq!(statuses(&again), ["Failed"]);
    assert_eq!(again["results"][0]["error"], "DuplicateValue");

    let destroyed = zendesk_job(
        &app,
        Method::DELETE,
        "/api/v2/users/destroy_many.json?external_ids=A-1,nobody",
        Value::Null,
    )
    .await;
    assert_eq!(statuses(&destroyed), ["Deleted", "Failed"]);
    let config = app.get("config?emails=ada@acme.test").await;
    assert_eq!(config.body, json!([]), "a deleted user is gone");

    // Its email is free again.
    let recreated = zendesk_job(
        &app,
        Method::POST,
        "/api/v2/users/create_many",
        json!({"users": [{"name": "Ada Again", "email": "ada@acme.test", "external_id": "A-1"}]}),
    )
    .await;
    assert_eq!(statuses(&recreated), ["Created"]);
    assert_ne!(recreated["results"][0]["id"], ada);
}

async fn zendesk_refuses_bad_requests_in_its_own_error_shape(app: TestApp) {
    let users: Vec<Value> = (0..101)
        .map(|n| json!({"name": format!("User {n}"), "email": format!("u{n}@acme.test")}))
        .collect();
    let too_many = zendesk(
        &app,
        Method::POST,
        "/api/v2/users/create_many.json",
        json!({ "users": users }),
    )
    .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.body["error"], "InvalidValue");
    assert!(too_many.body["description"]
        .as_str()
        .unwrap()
        .contains("at most 100"));
    assert!(too_many.body["details"]["users"][0]["description"].is_string());

    // Malformed batches and queries (tests/corpus/dialects/zendesk_bad_requests.jsonl): 400
    // with the offending field in `details`.
    for case in cases::load("dialects/zendesk_bad_requests.jsonl") {
        let method = Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = case["path"].as_str().unwrap();
        let body = match (case.get("json"), case.get("text")) {
            (Some(json), None) => Body::Json(json.clone()),
            (None, Some(text)) => Body::Raw {
                content_type: Some("application/json".into()),
                bytes: text.as_str().unwrap().as_bytes().to_vec(),
            },
            _ => Body::Empty,
        };
        let answer = app
            .call_as(&token_auth(&app), method.clone(), path, body)
            .await;
        let (status, body) = (answer.status, &answer.body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        let field = case["field"].as_str().unwrap();
        assert!(body["details"][field].is_array(), "{method} {path}: {body}");
    }
    let jobs = app.get("jobs").await;
    assert_eq!(jobs.body, json!([]), "no refused request left a job");
    // Unlike the CCAI routes, Zendesk's ignore query parameters they do not read, as Zendesk
    // does (clients send `include=` and the like).
    let tolerated = app
        .call_as(
            &token_auth(&app),
            Method::GET,
            "/api/v2/job_statuses.json?include=users&sort=-id",
            Body::Empty,
        )
        .await;
    assert_eq!(tolerated.status, StatusCode::OK, "{}", tolerated.body);

    // Credentials: none, wrong, bearer, tenant Basic.
    let anonymous = app
        .call_as("", Method::GET, "/api/v2/job_statuses.json", Body::Empty)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["error"], "Unauthorized");
    let wrong = app
        .call_as(
            &basic("admin@acme.test/token", "nope"),
            Method::GET,
            "/api/v2/job_statuses",
            Body::Empty,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let bearer = app
        .call_as(
            &format!("Bearer {}", app.acme.secret),
            Method::GET,
            "/api/v2/job_statuses",
            Body::Empty,
        )
        .await;
    assert_eq!(bearer.status, StatusCode::OK, "{}", bearer.body);
    let tenant = app
        .call_as(
            &app.acme.basic(),
            Method::GET,
            "/api/v2/job_statuses",
            Body::Empty,
        )
        .await;
    assert_eq!(tenant.status, StatusCode::OK, "{}", tenant.body);

    // Another tenant's job is not found; so is nonsense.
    let job = zendesk(
        &app,
        Method::POST,
        "/api/v2/users/create_many",
        json!({"users": [{"name": "Ada Lovelace"}]}),
    )
    .await;
    let id = job.body["job_status"]["id"].as_str().unwrap().to_owned();
    let foreign = app
        .call_as(
            &format!("Bearer {}", app.globex.secret),
            Method::GET,
            &format!("/api/v2/job_statuses/{id}"),
            Body::Empty,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    assert_eq!(foreign.body["error"], "RecordNotFound");
    let nonsense = zendesk(
        &app,
        Method::GET,
        "/api/v2/job_statuses/xyz.json",
        Value::Null,
    )
    .await;
    assert_eq!(nonsense.status, StatusCode::NOT_FOUND);
    let wrong_method = zendesk(
        &app,
        Method::GET,
        "/api/v2/users/create_many.json",
        Value::Null,
    )
    .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.body["error"], "MethodNotAllowed");
}

async fn job_statuses_list_pages_by_cursor_and_show_many(app: TestApp) {
    let mut ids = Vec::new();
    for n in 0..3 {
        let answer = zendesk(
            &app,
            Method::POST,
            "/api/v2/users/create_many",
            json!({"users": [{"name": format!("User {n}"), "email": format!("u{n}@acme.test")}]}),
        )
        .await;
        ids.push(answer.body["job_status"]["id"].as_str().unwrap().to_owned());
    }
    app.drain().await;
    let first = zendesk(
        &app,
        Method::GET,
        "/api/v2/job_statuses.json?page[size]=2",
        Value::Null,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let listed: Vec<&str> = first.body["job_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "newest first");
    assert_eq!(first.body["meta"]["has_more"], true);
    let next = first.body["links"]["next"].as_str().unwrap();
    let next_path = &next[next.find("/api/v2").unwrap()..];
    let second = zendesk(&app, Method::GET, next_path, Value::Null).await;
    assert_eq!(
        second.body["job_statuses"][0]["id"],
        ids[0].as_str(),
        "{}",
        second.body
    );
    assert_eq!(second.body["meta"]["has_more"], false);
    assert!(second.body["links"]["next"].is_null());

    let many = zendesk(
        &app,
        Method::GET,
        &format!(
            "/api/v2/job_statuses/show_many.json?ids={},{},ffff",
            ids[0], ids[2]
        ),
        Value::Null,
    )
    .await;
    let shown = many.body["job_statuses"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{}", many.body);
    assert_eq!(shown[0]["status"], "completed");
    assert_eq!(statuses(&shown[1]), ["Created"]);
}

fn workspace_headers(app: &TestApp) -> String {
    app.acme.secret.clone()
}

/// A Workspace request with `X-Auth-Token`.
async fn workspace(app: &TestApp, token: &str, method: Method, path: &str, body: Value) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert("x-auth-token", HeaderValue::from_str(token).unwrap());
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let answer = Answer::from(
        app.handle(bulk_tests::api_request(method, path, headers, bytes.into()))
            .await,
    );
    assert!(
        answer.header("x-request-id").is_some(),
        "every answer has a request id"
    );
    answer
}

fn names(list: &Answer) -> Vec<String> {
    list.body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {}", list.body))
        .iter()
        .map(|user| user["user_name"].as_str().unwrap().to_owned())
        .collect()
}

/// A Workspace GET with `token`.
async fn workspace_get(app: &TestApp, token: &str, target: &str) -> Answer {
    workspace(app, token, Method::GET, target, Value::Null).await
}

async fn workspace_batch_create_lists_and_deletes(app: TestApp) {
    let token = workspace_headers(&app);
    let created = workspace(
        &app,
        &token,
        Method::POST,
        "/v2/acme/users/batch-create",
        json!({"users": [
            {"user_name": "abc", "user_email": "xxx@mail.com"},
            {"user_name": "j.doe-1", "active_type": "ADMIN_ACTIVATE", "password": "Secret#2024x",
             "user_phone": "+86-1000", "group_ids": ["g1"], "description": "ops", "alias_name": "JD",
             "account_expires": "2030-01-01T00:00:00Z"},
        ]}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let ids = workspace_lists_and_filters(&app, &token).await;
    workspace_password_is_an_argon2id_hash_only(&app).await;
    workspace_deletes(&app, &token, &ids).await;

    // Sealed tenants: another project is not found; a bad token is refused.
    let foreign = workspace_get(&app, &token, "/v2/globex/users").await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.body["error_code"], "WKS.0202");
    let refused = workspace_get(&app, "wrong", "/v2/acme/users").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body["error_code"]
        .as_str()
        .unwrap()
        .starts_with("WKS."));
}

/// The two users created, listed, filtered and paged; the ids of the listed users.
async fn workspace_lists_and_filters(app: &TestApp, token: &str) -> Vec<String> {
    let list = workspace_get(app, token, "/v2/acme/users?limit=10&offset=0").await;
    assert_eq!(list.body["total_count"], 2, "{}", list.body);
    assert_eq!(names(&list), ["abc", "j.doe-1"]);
    let jd = &list.body["users"][1];
    assert_eq!(jd["active_type"], "ADMIN_ACTIVATE");
    assert_eq!(jd["alias_name"], "JD");
    assert_eq!(jd["account_expires"], "2030-01-01T00:00:00Z");
    assert!(!list.body.to_string().contains("Secret#2024x"));
    let filtered = workspace_get(app, token, "/v2/acme/users?user_name=J.DO").await;
    assert_eq!(names(&filtered), ["j.doe-1"]);
    // The name matches from its start: a part inside it finds no one.
    let inside = workspace_get(app, token, "/v2/acme/users?user_name=DOE").await;
    assert_eq!(inside.body["total_count"], 0, "{}", inside.body);
    // A query no list can answer is refused, naming the parameter and its rule.
    let refusals = [
        (
            format!("user_name={}", "a".repeat(33)),
            "user_name must be at most 32 characters",
        ),
        (
            "limit=1001".to_owned(),
            "limit must be a whole number from 0 to 1000",
        ),
        (
            "offset=-1".to_owned(),
            "offset must be a whole number from 0 to 1000000",
        ),
    ];
    for (query, rule) in refusals {
        let refused = workspace_get(app, token, &format!("/v2/acme/users?{query}")).await;
        let body = &refused.body;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error_code"], "WKS.0001", "{query}: {body}");
        let message = body["error_msg"].as_str().unwrap_or_default();
        assert!(message.contains(rule), "{query}: {message}");
    }
    assert_eq!(filtered.body["total_count"], 1);
    let second_page = workspace_get(app, token, "/v2/acme/users?limit=1&offset=1").await;
    assert_eq!(names(&second_page), ["j.doe-1"]);
    assert_eq!(second_page.body["total_count"], 2);
    let users = list.body["users"].as_array().unwrap().iter();
    users
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The password is stored as an argon2id hash only.
async fn workspace_password_is_an_argon2id_hash_only(app: &TestApp) {
    let stored = app
        .service
        .ports()
        .users
        .users_by_keys(
            &TenantId::parse("acme").unwrap(),
            &[bulk_users::model::UserKey::user_name("J.DOE-1")],
        )
        .await
        .unwrap();
    let hash = stored[0].workspace.password_hash.as_deref().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!serde_json::to_string(&stored[0])
        .unwrap()
        .contains("Secret#2024x"));
}

/// One user deleted (then not found), a batch with an unknown id refused whole, the other
/// deleted by batch: none left.
async fn workspace_deletes(app: &TestApp, token: &str, ids: &[String]) {
    let first = format!("/v2/acme/users/{}", ids[0]);
    let deleted = workspace(app, token, Method::DELETE, &first, Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = workspace(app, token, Method::DELETE, &first, Value::Null).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body["error_code"], "WKS.0202");
    let batch_delete = "/v2/acme/users/batch-delete";
    let missing = json!({"user_ids": [ids[1], "424242"]});
    let missing = workspace(app, token, Method::POST, batch_delete, missing).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let batch = json!({"user_ids": [ids[1]]});
    let batch = workspace(app, token, Method::POST, batch_delete, batch).await;
    assert_eq!(batch.status, StatusCode::NO_CONTENT, "{}", batch.body);
    let empty = workspace_get(app, token, "/v2/acme/users").await;
    assert_eq!(empty.body, json!({"total_count": 0, "users": []}));
}

async fn workspace_batches_are_all_or_nothing(app: TestApp) {
    let token = workspace_headers(&app);
    let path = "/v2/acme/users/batch-create";
    for (body, code, names) in [
        (
            json!({"users": [{"user_name": "ok1", "user_phone": "1"}, {"user_name": "bad one", "user_phone": "1"}]}),
            "WKS.0001",
            "users[1].user_name",
        ),
        (
            json!({"users": [{"user_name": "ok1", "user_phone": "1"}, {"user_name": "x", "user_email": "not-an-email"}]}),
            "WKS.0001",
            "users[1].user_email",
        ),
        (
            json!({"users": [{"user_name": "ok1", "active_type": "ADMIN_ACTIVATE", "password": "short7!"}]}),
            "WKS.0001",
            "users[0].password",
        ),
        (
            json!({"users": [{"user_name": "ok1", "user_phone": "1"}, {"user_name": "OK1", "user_phone": "2"}]}),
            "WKS.0001",
            "users[1].user_name",
        ),
        (json!({"users": []}), "WKS.0001", "users"),
        (
            json!({"users": (0..201).map(|n| json!({"user_name": format!("u{n}"), "user_phone": "1"})).collect::<Vec<_>>()}),
            "WKS.0001",
            "users",
        ),
        (json!({"people": []}), "WKS.0001", "users"),
    ] {
        let answer = workspace(&app, &token, Method::POST, path, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.body["error_code"], code, "{}", answer.body);
        assert!(
            answer.body["error_msg"].as_str().unwrap().contains(names),
            "{}",
            answer.body
        );
        assert!(
            !answer.body.to_string().contains("short7!"),
            "a password is never echoed"
        );
    }
    let list = workspace(&app, &token, Method::GET, "/v2/acme/users", Value::Null).await;
    assert_eq!(
        list.body["total_count"], 0,
        "nothing of a refused batch is written"
    );

    let first = workspace(
        &app,
        &token,
        Method::POST,
        path,
        json!({"users": [{"user_name": "taken", "user_email": "t@acme.test"}]}),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let duplicate = workspace(
        &app,
        &token,
        Method::POST,
        path,
        json!({"users": [{"user_name": "fresh", "user_phone": "1"}, {"user_name": "TAKEN", "user_phone": "2"}]}),
    )
    .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert_eq!(duplicate.body["error_code"], "WKS.00170202");
    assert!(duplicate.body["error_msg"]
        .as_str()
        .unwrap()
        .contains("users[1].user_name"));
    let list = workspace(&app, &token, Method::GET, "/v2/acme/users", Value::Null).await;
    assert_eq!(
        names(&list),
        ["taken"],
        "the batch with a duplicate wrote nothing"
    );

    // Refused batches are recorded as invalid jobs, without their passwords.
    let jobs = app.get("jobs?per_page=100").await;
    let refused = jobs
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["status"] == "invalid_scheme")
        .count();
    assert!(refused >= 4, "{}", jobs.body);
}

async fn one_user_whichever_dialect(app: TestApp) {
    let token = workspace_headers(&app);
    let created = workspace(
        &app,
        &token,
        Method::POST,
        "/v2/acme/users/batch-create",
        json!({"users": [{"user_name": "grace", "user_email": "Grace@acme.test", "alias_name": "Amazing Grace"}]}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);

    // Zendesk finds her by email and updates her.
    let upserted = zendesk_job(
        &app,
        Method::POST,
        "/api/v2/users/create_or_update_many",
        json!({"users": [{"name": "Grace Hopper", "email": "grace@acme.test", "role": "admin"}]}),
    )
    .await;
    assert_eq!(statuses(&upserted), ["Updated"]);

    // CCAI sees the same user and updates her too.
    let job = app
        .run_job(r#"[{"email": "GRACE@acme.test", "first_name": "Grace", "last_name": "Brewster Hopper", "agent_number": "A7"}]"#)
        .await;
    assert_eq!(job["affected_rows"], 1, "{job}");
    let config = app.get("config?agent_numbers=A7").await;
    assert_eq!(
        config.body[0]["email"], "grace@acme.test",
        "{}",
        config.body
    );
    assert_eq!(config.body[0]["last_name"], "Brewster Hopper");

    let list = workspace(
        &app,
        &token,
        Method::GET,
        "/v2/acme/users?user_name=grace",
        Value::Null,
    )
    .await;
    assert_eq!(list.body["total_count"], 1);
    assert_eq!(list.body["users"][0]["alias_name"], "Amazing Grace");
    assert_eq!(
        list.body["users"][0]["id"],
        config.body[0]["id"].as_u64().unwrap().to_string()
    );

    // Zendesk deletes her; she is gone everywhere.
    let id = config.body[0]["id"].as_u64().unwrap();
    let destroyed = zendesk(
        &app,
        Method::DELETE,
        &format!("/api/v2/users/destroy_many?ids={id}"),
        Value::Null,
    )
    .await;
    assert_eq!(statuses(&finished(&app, &destroyed).await), ["Deleted"]);
    let list = workspace(&app, &token, Method::GET, "/v2/acme/users", Value::Null).await;
    assert_eq!(list.body["total_count"], 0);
    let _ = PREFIX;
}

/// A deleted user is a tombstone: its id, version, times and the job row that deleted it, and
/// nothing personal, in the store itself. The deletion's chunk delivered again changes nothing
/// and reports the same.
async fn a_deleted_user_keeps_no_personal_data(app: TestApp) {
    let personal = json!({"users": [{"name": "Ada Lovelace", "email": "ada@acme.test",
        "external_id": "A-1", "phone": "5550100", "alias": "Countess", "notes": "analyst",
        "tags": ["engines"], "user_fields": {"desk": "D4"}}]});
    let created = zendesk_job(&app, Method::POST, "/api/v2/users/create_many", personal).await;
    let id = created["results"][0]["id"].as_u64().expect("the user's id");
    let path = format!("/api/v2/users/destroy_many.json?ids={id}");
    let destroyed = zendesk_job(&app, Method::DELETE, &path, Value::Null).await;
    assert_eq!(statuses(&destroyed), ["Deleted"]);

    let acme = bulk_users::model::TenantId::parse("acme").unwrap();
    let users = &app.service.ports().users;
    let stored = users.users_by_ids(&acme, &[id]).await.unwrap();
    assert!(stored[0].is_tombstone(), "{:?}", stored[0]);
    let stamp = stored[0].last_change.expect("the row that deleted it");
    let raw = app.raw_user("acme", id).await;
    for text in [
        "Ada", "Lovelace", "ada@acme", "A-1", "a-1", "5550100", "Countess", "analyst", "engines",
        "D4",
    ] {
        assert!(!raw.contains(text), "{text} kept in {raw}");
    }

    // The deletion's chunk delivered again: already committed, nothing changes.
    let jobs = &app.service.ports().jobs;
    let job = jobs.get_job(&acme, stamp.job).await.unwrap().unwrap();
    for item in job.chunk_plan.work_items(&acme, job.id, job.total_rows) {
        app.service.process(&item).await.unwrap();
    }
    assert_eq!(users.users_by_ids(&acme, &[id]).await.unwrap(), stored);
    let again = zendesk(
        &app,
        Method::GET,
        &format!("/api/v2/job_statuses/{:032x}", job.id),
        Value::Null,
    )
    .await;
    assert_eq!(again.body["job_status"]["results"], destroyed["results"]);
}

/// A deletion whose process saved the tombstone and died before committing its chunk: the
/// chunk's delivery again finds the tombstone it wrote (the row's stamp), reports the same
/// deletion and saves nothing more.
async fn a_deletion_run_again_after_its_lost_commit_deletes_once(app: TestApp) {
    let ada = json!({"users": [{"name": "Ada Lovelace", "email": "ada@acme.test"}]});
    let created = zendesk_job(&app, Method::POST, "/api/v2/users/create_many", ada).await;
    let id = created["results"][0]["id"].as_u64().expect("the user's id");
    let path = format!("/api/v2/users/destroy_many?ids={id}");
    let queued = zendesk(&app, Method::DELETE, &path, Value::Null).await;
    let hex = queued.body["job_status"]["id"].as_str().expect("a job id");
    let job_id = u64::from_str_radix(hex, 16).expect("32 hex digits");

    let acme = bulk_users::model::TenantId::parse("acme").unwrap();
    let ports = app.service.ports();
    let job = ports.jobs.get_job(&acme, job_id).await.unwrap().unwrap();
    let dying = bulk_users::service::BulkService::new(
        bulk_tests::lost_commits::losing_commits(ports),
        bulk_users::service::ServiceConfig::default(),
    );
    for item in job.chunk_plan.work_items(&acme, job.id, job.total_rows) {
        assert!(dying.process(&item).await.is_err(), "the commit is lost");
    }
    let deleted = ports.users.users_by_ids(&acme, &[id]).await.unwrap();
    assert!(deleted[0].is_tombstone(), "{:?}", deleted[0]);
    let committed = ports.jobs.committed_chunks(&acme, job_id).await.unwrap();
    assert!(committed.is_empty(), "{committed:?}");

    // The queued chunk, delivered again.
    let destroyed = finished(&app, &queued).await;
    assert_eq!(statuses(&destroyed), ["Deleted"]);
    assert_eq!(destroyed["results"][0]["id"], json!(id));
    assert_eq!(destroyed["progress"], 1);
    let again = ports.users.users_by_ids(&acme, &[id]).await.unwrap();
    assert_eq!(again, deleted, "saved once: same version, same stamp");
}

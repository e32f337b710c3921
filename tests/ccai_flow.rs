//! The CCAI bulk user flow, through the route table, on both store implementations: the same
//! scenarios and assertions run on the embedded store and on DynamoDB/S3/SQS (moto).

use bulk_tests::cases::{self, Vars};
use bulk_tests::steps::{assert_answer, rows_file, text, u64s};
use bulk_tests::{counts, on_both_stores, users_file, Answer, Body, Part, TestApp, PREFIX};
use bulk_users::model::{TenantId, WorkItem};
use bulk_users::processing::ChunkOutcome;
use bulk_users::service::{ResumedJob, SettingsChange, Sweep, MAX_RESUMPTIONS};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_stores!(
    template_lists_every_field_and_the_tenants_roles_and_teams,
    upload_validate_proceed_and_complete,
    upserts_by_email_renames_deactivates_and_sets_memberships,
    processing_time_problems_go_to_the_update_error_log,
    every_scheme_error_is_recorded_and_the_job_cannot_proceed,
    put_upload_replaces_the_file_until_the_job_is_proceeded,
    proceeding_twice_processes_once,
    job_list_is_newest_first_with_paging_headers,
    user_configuration_pages_and_selects,
    credentials_and_tenants_are_checked,
    bad_requests_are_4xx_naming_the_field_and_store_nothing,
    bad_files_become_scheme_errors,
    a_multi_chunk_job_is_counted_exactly,
    racing_workers_and_redeliveries_count_a_job_exactly_once,
    a_cancelled_job_stops_at_the_next_chunk_boundary,
    a_job_whose_queued_work_was_lost_is_resumed,
    error_logs_are_read_a_page_at_a_time,
    a_job_resumed_again_and_again_is_given_up,
);

async fn template_lists_every_field_and_the_tenants_roles_and_teams(app: TestApp) {
    let template = app.get("template").await;
    assert_eq!(template.status, StatusCode::OK);
    let user = &template.body[0];
    let fields: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        bulk_users::validation::FIELDS.to_vec(),
        "every field, in the template's column order"
    );
    assert_eq!(
        user["roles"],
        json!([{"name": "Admin", "value": 0}, {"name": "Manager", "value": 0}, {"name": "Agent", "value": 0}])
    );

    app.set_settings(
        "acme",
        SettingsChange {
            roles: Some(vec!["Agent".into(), "Supervisor".into()]),
            teams: Some(vec!["Billing".into()]),
            ..SettingsChange::default()
        },
    )
    .await;
    let template = app.get("template").await;
    assert_eq!(
        template.body[0]["roles"],
        json!([{"name": "Agent", "value": 0}, {"name": "Supervisor", "value": 0}])
    );
    assert_eq!(
        template.body[0]["teams"],
        json!([{"name": "Billing", "value": 0}])
    );

    // The template is itself a valid file.
    let upload = app.upload(&template.body.to_string()).await;
    assert_eq!(upload.body["status"], "valid_scheme", "{}", upload.body);
}

async fn upload_validate_proceed_and_complete(app: TestApp) {
    let file = r#"[
        {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe", "agent_number": "1001",
         "roles": [{"name": "Agent", "value": 1}], "teams": [{"name": "Sales", "value": 1}]},
        {"email": "john@example.com", "first_name": "John", "last_name": "Roe", "status": "Inactive"}
    ]"#;
    let upload = app.upload(file).await;
    assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    let id = upload.id();
    let link = format!("http://bulk.test{PREFIX}/jobs/{id}");
    assert_eq!(
        upload.body,
        json!({"id": id, "status": "valid_scheme", "link": link})
    );
    assert_eq!(upload.header("link"), Some(format!("<{link}>").as_str()));

    let job = app.job(id).await;
    assert_eq!(job["status"], "valid_scheme");
    assert_eq!(job["total_rows"], 2);
    assert_eq!(job["filename"], "users.json");
    assert_eq!(job["uploaded_api_user_name"], "acme-sync");
    assert_eq!(job["process_requested_at"], Value::Null);

    let proceed = app.proceed(id).await;
    assert_eq!(proceed.status, StatusCode::ACCEPTED);
    assert_eq!(proceed.body["status"], "in_progress");
    assert_eq!(app.job(id).await["status"], "in_progress");

    app.drain().await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), (Some(2), Some(2), Some(0)));
    assert_eq!(job["proceed_api_user_name"], "acme-sync");
    assert!(job["completed_at"].is_string());
    assert!(job["process_requested_at"].is_string());

    let users = app.get("config").await.body;
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["email"], "jane@example.com");
    assert_eq!(users[0]["agent_number"], "1001");
    assert_eq!(users[0]["roles"], json!([{"name": "Agent", "value": 1}]));
    assert_eq!(users[0]["teams"], json!([{"name": "Sales", "value": 1}]));
    assert_eq!(users[0]["deactivated_at"], Value::Null);
    assert!(
        users[0].get("status").is_none(),
        "config has deactivated_at instead of status"
    );
    assert!(users[1]["deactivated_at"].is_string());
    for log in ["update", "scheme"] {
        assert_eq!(app.get(&format!("errors/{log}/{id}")).await.body, json!([]));
    }
}

async fn upserts_by_email_renames_deactivates_and_sets_memberships(app: TestApp) {
    let first = app
        .run_job(r#"[
            {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe", "location": "Remote",
             "max_chat_limit": 4, "max_chat_limit_enabled": 1,
             "roles": [{"name": "Agent", "value": 1}, {"name": "Manager", "value": 1}]},
            {"email": "old@example.com", "first_name": "Ole", "last_name": "Old"}
        ]"#)
        .await;
    assert_eq!(first["affected_rows"], 2);
    let before = app.get("config?emails=jane@example.com").await.body[0].clone();

    let second = app
        .run_job(r#"[
            {"email": "JANE@Example.com", "first_name": "Janet", "last_name": "Doe", "status": "Inactive",
             "location": "", "roles": [{"name": "manager", "value": 0}, {"name": "Admin", "value": ""}]},
            {"email": "old@example.com", "new_email": "new@example.com", "first_name": "Ole", "last_name": "New"},
            {"email": "fresh@example.com", "first_name": "Fresh", "last_name": "User"}
        ]"#)
        .await;
    assert_eq!(counts(&second), (Some(3), Some(3), Some(0)));

    let jane = app.get("config?emails=jane@example.com").await.body[0].clone();
    assert_eq!(
        jane["id"], before["id"],
        "matched case-insensitively, not created again"
    );
    assert_eq!(jane["email"], "jane@example.com");
    assert_eq!(jane["first_name"], "Janet");
    assert_eq!(
        jane["location"],
        Value::Null,
        "\"\" clears an optional field"
    );
    assert_eq!(jane["max_chat_limit"], 4, "absent fields are kept");
    assert_eq!(jane["roles"], json!([{"name": "Agent", "value": 1}]));
    assert!(jane["deactivated_at"].is_string());

    let renamed = app.get("config?emails=new@example.com").await.body;
    assert_eq!(renamed[0]["last_name"], "New");
    assert_eq!(
        app.get("config?emails=old@example.com").await.body,
        json!([])
    );
    let all = app.get("config").await.body;
    assert_eq!(all.as_array().unwrap().len(), 3);

    let third = app
        .run_job(r#"[{"email": "jane@example.com", "first_name": "Janet", "last_name": "Doe", "status": "Active"}]"#)
        .await;
    assert_eq!(third["affected_rows"], 1);
    let jane = app.get("config?emails=jane@example.com").await.body[0].clone();
    assert_eq!(jane["deactivated_at"], Value::Null, "Active reactivates");
}

async fn processing_time_problems_go_to_the_update_error_log(app: TestApp) {
    app.run_job(
        r#"[{"email": "taken@example.com", "first_name": "T", "last_name": "Aken"},
                    {"email": "a@example.com", "first_name": "A", "last_name": "A"}]"#,
    )
    .await;
    // Upload while "Agent" is a role, then remove it before processing: the same validation
    // runs again in the processor and the row fails there.
    let upload = app
        .upload(r#"[
            {"email": "a@example.com", "new_email": "taken@example.com", "first_name": "A", "last_name": "A"},
            {"email": "ghost@example.com", "new_email": "ghost2@example.com", "first_name": "G", "last_name": "H"},
            {"email": "b@example.com", "first_name": "B", "last_name": "B", "roles": [{"name": "Agent", "value": 1}]},
            {"email": "c@example.com", "first_name": "C", "last_name": "C"}
        ]"#)
        .await;
    assert_eq!(upload.body["status"], "valid_scheme");
    let id = upload.id();
    let roles = Some(vec!["Admin".into()]);
    app.set_settings(
        "acme",
        SettingsChange {
            roles,
            ..SettingsChange::default()
        },
    )
    .await;
    app.proceed(id).await;
    app.drain().await;

    let job = app.job(id).await;
    assert_eq!(job["status"], "completed", "row failures never fail a job");
    assert_eq!(counts(&job), (Some(4), Some(1), Some(3)));
    let errors = app.get(&format!("errors/update/{id}")).await.body;
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let at = |e: &Value| (e["row"].as_u64(), e["column"].as_u64());
    assert_eq!(at(&errors[0]), (Some(1), Some(2)));
    assert!(text(&errors[0]["message"]).contains("already used"));
    assert_eq!(errors[1]["row"], 2);
    assert!(text(&errors[1]["message"]).contains("no user with email"));
    assert_eq!(at(&errors[2]), (Some(3), Some(10)));
    assert!(text(&errors[2]["message"]).contains("'Agent' is not a role"));
    assert!(errors.iter().all(|e| e["error_type"] == "error"));
    assert_eq!(job["update_errors"], 3);
}

async fn every_scheme_error_is_recorded_and_the_job_cannot_proceed(app: TestApp) {
    let upload = app
        .upload(r#"[
            {"email": "not-an-email", "first_name": "A", "last_name": "B"},
            {"email": "ok@example.com", "first_name": "", "last_name": 7, "status": "Maybe"},
            {"email": "ok2@example.com", "first_name": "A", "last_name": "B", "roles": [{"name": "Pilot", "value": 1}], "teams": [{"name": "Nope", "value": 1}]},
            {"first_name": "A", "last_name": "B"},
            {"email": "OK@example.com", "first_name": "A", "last_name": "B", "max_chat_limit": 0, "favourite": "tea"},
            "just a string"
        ]"#)
        .await;
    assert_eq!(upload.status, StatusCode::CREATED);
    assert_eq!(upload.body["status"], "invalid_scheme");
    let id = upload.id();
    let errors = app.get(&format!("errors/scheme/{id}")).await.body;
    // Each error's row:column (null: the error is the row's, not a cell's).
    let found = errors.as_array().unwrap().iter();
    let found: Vec<String> = found
        .map(|e| format!("{}:{}", e["row"], e["column"]))
        .collect();
    let expected = [
        "1:1", "2:4", "2:5", "2:6", "3:10", "3:11", "4:1", "5:null", "5:8", "5:1", "6:null",
    ];
    assert_eq!(found, expected, "{errors}");
    assert!(text(&errors[9]["message"]).contains("more than once"));
    assert_eq!(app.job(id).await["scheme_errors"], 11);

    let proceed = app.proceed(id).await;
    assert_eq!(proceed.status, StatusCode::CONFLICT);
    assert!(text(&proceed.body["message"]).contains("invalid_scheme"));
    assert_eq!(app.job(id).await["status"], "invalid_scheme");
}

async fn put_upload_replaces_the_file_until_the_job_is_proceeded(app: TestApp) {
    let upload = app
        .upload(r#"[{"email": "bad", "first_name": "A", "last_name": "B"}]"#)
        .await;
    let id = upload.id();
    assert_eq!(upload.body["status"], "invalid_scheme");

    let put = async |file: &str, id: String| replace(&app, &id, file).await;
    let good = r#"[{"email": "good@example.com", "first_name": "A", "last_name": "B"}]"#;
    let replaced = put(good, id.to_string()).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["id"], id);
    assert_eq!(replaced.body["status"], "valid_scheme");
    assert_eq!(
        app.get(&format!("errors/scheme/{id}")).await.body,
        json!([]),
        "old errors are gone"
    );

    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);
    let other = r#"[{"email": "other@example.com", "first_name": "A", "last_name": "B"}]"#;
    let late = put(other, id.to_string()).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    app.drain().await;
    let users = app.get("config").await.body;
    assert_eq!(users[0]["email"], "good@example.com");
    assert_eq!(users.as_array().unwrap().len(), 1);

    put("[]", "abc".into())
        .await
        .assert_client_error(StatusCode::BAD_REQUEST, "id");
    let missing_id = app.ccai(Method::PUT, "upload", Body::upload("[]"));
    missing_id
        .await
        .assert_client_error(StatusCode::BAD_REQUEST, "id");
    assert_eq!(
        put("[]", "999999".into()).await.status,
        StatusCode::NOT_FOUND
    );
}

/// `PUT upload`: job `id`'s file replaced by `file`, as acme.
async fn replace(app: &TestApp, id: &str, file: &str) -> Answer {
    let file = Part::file(file.as_bytes().to_vec());
    let body = Body::Multipart(vec![Part::text("id", id), file]);
    app.ccai(Method::PUT, "upload", body).await
}

async fn proceeding_twice_processes_once(app: TestApp) {
    let upload = app.upload(&users_file(5, "")).await;
    let id = upload.id();
    let first = app.proceed(id).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    // A repeated proceed answers the same job and queues nothing more.
    let again = app.proceed(id).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    app.drain().await;
    let after = app.proceed(id).await;
    assert_eq!(after.status, StatusCode::ACCEPTED);
    let (job, status) = (after.body["id"].as_u64(), after.body["status"].as_str());
    assert_eq!((job, status), (Some(id), Some("completed")));
    app.drain().await;
    let job = app.job(id).await;
    let (affected, status) = (job["affected_rows"].as_u64(), job["status"].as_str());
    assert_eq!((affected, status), (Some(5), Some("completed")));
    assert_eq!(app.proceed(424242).await.status, StatusCode::NOT_FOUND);
}

async fn job_list_is_newest_first_with_paging_headers(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.upload(&users_file(i + 1, "")).await.id());
    }
    // Another tenant's jobs are never listed.
    let theirs = Body::upload(&users_file(1, ""));
    app.as_globex(Method::POST, "upload", theirs).await;

    let page = app.get("jobs?per_page=2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(u64s(&page.body, "id"), vec![ids[4], ids[3]]);
    assert_eq!(page.header("total"), Some("5"));
    assert_eq!(page.header("per-page"), Some("2"));
    assert_eq!(
        page.header("link"),
        Some(format!("<http://bulk.test{PREFIX}/jobs?page=2&per_page=2>; rel=\"next\"").as_str())
    );

    let last = app.get("jobs?page=3&per_page=2").await;
    assert_eq!(u64s(&last.body, "id"), vec![ids[0]]);
    assert_eq!(last.header("link"), None);
    assert_eq!(app.get("jobs").await.body.as_array().unwrap().len(), 5);
    app.get_refused("jobs?per_page=0", "per_page").await;
    app.get_refused("jobs?page=x", "page").await;
}

async fn user_configuration_pages_and_selects(app: TestApp) {
    let extra = r#","agent_number":"A1""#;
    app.run_job(&users_file(1, extra)).await;
    app.run_job(&users_file(7, "").replace("user0@", "zero@"))
        .await;
    let all = app.get("config").await.body;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 8);
    let ids: Vec<u64> = all.iter().map(|u| u["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order");

    let page = app.get("config?page=2&per_page=3").await.body;
    assert_eq!(u64s(&page, "id"), ids[3..6].to_vec());

    let by_email = app
        .get("config?emails=USER3@example.com,user5@example.com,user3@example.com")
        .await
        .body;
    assert_eq!(
        by_email.as_array().unwrap().len(),
        2,
        "duplicates collapse, case-insensitive"
    );
    let by_id = app
        .get(&format!("config?ids={},{}", ids[0], ids[7]))
        .await
        .body;
    assert_eq!(by_id.as_array().unwrap().len(), 2);
    let by_agent = app.get("config?agent_numbers=A1").await.body;
    assert_eq!(by_agent[0]["email"], "user0@example.com");

    app.get_refused("config?per_page=1001", "per_page").await;
    app.get_refused("config?per_page=ten", "per_page").await;
    app.get_refused("config?ids=1&page=2", "page").await;
    app.get_refused("config?ids=1&emails=a@b.co", "ids").await;
    let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    app.get_refused(&format!("config?ids={}", many.join(",")), "ids")
        .await;
    // Another tenant sees none of these users.
    for query in [String::new(), format!("?ids={}", ids[0])] {
        let path = format!("config{query}");
        let theirs = app.as_globex(Method::GET, &path, Body::Empty).await;
        assert_eq!(theirs.body, json!([]), "{path}");
    }
}

async fn credentials_and_tenants_are_checked(app: TestApp) {
    let id = app.upload(&users_file(2, "")).await.id();
    let jobs = format!("{PREFIX}/jobs");
    for authorization in [
        String::new(),
        bulk_tests::basic("acme", "wrong"),
        bulk_tests::basic("globex", &app.acme.secret),
        bulk_tests::basic("nobody", &app.acme.secret),
        "Bearer abc".to_owned(),
        "Basic %%%".to_owned(),
    ] {
        let answer = app
            .call_as(&authorization, Method::GET, &jobs, Body::Empty)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert!(answer.header("www-authenticate").is_some());
    }
    // The seed's short spelling is an alias.
    let alias = format!("/v1/bulk/users/jobs/{id}");
    let alias = app.call(Method::GET, &alias, Body::Empty).await;
    assert_eq!(alias.status, StatusCode::OK);

    for path in ["jobs", "errors/scheme", "errors/update"] {
        let path = format!("{path}/{id}");
        let answer = app.as_globex(Method::GET, &path, Body::Empty).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!answer.body.to_string().contains("users.json"));
    }
    let proceed = Body::Json(json!({"id": id}));
    let proceed = app.as_globex(Method::POST, "proceed", proceed).await;
    assert_eq!(proceed.status, StatusCode::NOT_FOUND);
    let form = vec![
        Part::text("id", &id.to_string()),
        Part::file(b"[]".to_vec()),
    ];
    let put = app
        .as_globex(Method::PUT, "upload", Body::Multipart(form))
        .await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    let status = app.job(id).await["status"].clone();
    assert_eq!(status, "valid_scheme", "nothing of acme changed");

    // Revoking a credential stops it at once.
    let tenant = TenantId::parse("acme").unwrap();
    let service = &app.service;
    let key_id = &service.credentials(&tenant).await.unwrap()[0].key_id;
    service.revoke_credential(&tenant, key_id).await.unwrap();
    assert_eq!(app.get("jobs").await.status, StatusCode::UNAUTHORIZED);
}

async fn bad_requests_are_4xx_naming_the_field_and_store_nothing(app: TestApp) {
    let max_file_bytes = Some(10_000);
    app.set_settings(
        "acme",
        SettingsChange {
            max_file_bytes,
            ..SettingsChange::default()
        },
    )
    .await;
    let huge = app.upload(&users_file(2000, "")).await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.body["limit"], "max_file_bytes");
    assert!(text(&huge.body["message"]).contains("10000"));
    let vars = Vars::new().with("BOUNDARY", bulk_tests::BOUNDARY);
    for case in cases::load("ccai/bad_requests.jsonl") {
        assert_answer(&case, &app.send_case(&case, &vars).await);
    }

    let jobs = app.get("jobs").await;
    assert_eq!(
        jobs.header("total"),
        Some("0"),
        "no rejected request created a job"
    );
}

async fn bad_files_become_scheme_errors(app: TestApp) {
    for case in cases::load("ccai/bad_files.jsonl") {
        let (name, file) = (cases::name(&case), text(&case["file"]));
        let upload = app.upload(file).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{name}");
        assert_eq!(upload.body["status"], "invalid_scheme", "{name}");
        let errors = app
            .get(&format!("errors/scheme/{}", upload.id()))
            .await
            .body;
        let first = &errors[0];
        assert_eq!(first["row"], Value::Null, "{name}: {errors}");
        let expected = text(&case["message"]);
        assert!(
            text(&first["message"]).contains(expected),
            "{name}: {errors}"
        );
    }
    let types = app
        .upload(r#"[{"email": 5, "first_name": ["A"], "last_name": {"x": 1}, "roles": "Agent", "max_chat_limit_enabled": 7}, [], null]"#)
        .await;
    let errors = app.get(&format!("errors/scheme/{}", types.id())).await.body;
    let messages = errors.as_array().unwrap().iter();
    let messages: Vec<&str> = messages.map(|e| text(&e["message"])).collect();
    assert_eq!(messages.len(), 7, "{messages:?}");
    assert!(messages[0].contains("email must be a string"));
    assert!(
        messages[5].contains("must be a JSON object")
            && messages[6].contains("must be a JSON object")
    );
}

async fn a_multi_chunk_job_is_counted_exactly(app: TestApp) {
    // Small chunks so one job fans out into many queue messages, worked by concurrent consumers.
    let app = TestApp::with_chunks(app.backend, 7).await;
    let mut file = users_file(95, "");
    // Row 50 fails at processing time (rename of a user that does not exist).
    file = file.replace(
        r#"{"email":"user49@example.com","#,
        r#"{"email":"user49@example.com","new_email":"moved49@example.com","#,
    );
    let job = app.run_job(&file).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), (Some(95), Some(94), Some(1)));
    let errors = app.get(&format!("errors/update/{}", job["id"])).await.body;
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["row"], 50);
    let users = app.get("config?per_page=1000").await.body;
    assert_eq!(users.as_array().unwrap().len(), 94);
}

/// A job of many chunks worked by six concurrent workers, every chunk delivered twice (the
/// copy right behind the original, so the two often run at the same time), then a third time
/// from the real queue: each chunk is counted once, the job is completed by exactly one
/// worker, and the stored users and error log are those of a single clean run. On AWS this
/// runs on the serialized emulator, where racing conditional writes are atomic as on DynamoDB.
async fn racing_workers_and_redeliveries_count_a_job_exactly_once(app: TestApp) {
    const USERS: usize = 300;
    const WORKERS: usize = 6;
    let app = TestApp::with_chunks(app.backend.for_racing_workers(), 20).await;
    let mut file = users_file(USERS, "");
    // Three rows fail at processing time: renames of users that do not exist.
    let failing = [0usize, 150, 299];
    for i in failing {
        file = file.replace(
            &format!(r#"{{"email":"user{i}@example.com","#),
            &format!(r#"{{"email":"user{i}@example.com","new_email":"moved{i}@example.com","#),
        );
    }
    let upload = app.upload(&file).await;
    assert_eq!(upload.body["status"], "valid_scheme", "{}", upload.body);
    let id = upload.id();
    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);

    let items = work_items(&app, id).await;
    assert_eq!(items.len(), USERS.div_ceil(20));
    let mut deliveries = VecDeque::new();
    for (at, item) in items.iter().enumerate() {
        deliveries.push_back(item.clone());
        if at > 0 {
            deliveries.push_back(items[at - 1].clone());
        }
    }
    deliveries.push_back(items[items.len() - 1].clone());
    let deliveries = Arc::new(Mutex::new(deliveries));

    let mut workers = Vec::new();
    let processor = app.function("processor").await;
    for _ in 0..WORKERS {
        let service = processor.clone();
        let deliveries = deliveries.clone();
        workers.push(tokio::spawn(async move {
            let mut outcomes: Vec<(WorkItem, ChunkOutcome)> = Vec::new();
            let mut retries = 0;
            loop {
                let next = deliveries.lock().unwrap().pop_front();
                let Some(item) = next else { break };
                match service.process(&item).await {
                    Ok(outcome) => outcomes.push((item, outcome)),
                    // A dependency failed: the queue would deliver the item again.
                    Err(error) => {
                        retries += 1;
                        assert!(retries < 20, "chunk {} keeps failing: {error}", item.chunk);
                        deliveries.lock().unwrap().push_back(item);
                    }
                }
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.unwrap());
    }

    assert_eq!(outcomes.len(), 2 * items.len());
    let mut committed_chunks = Vec::new();
    let (mut affected, mut failed, mut completions, mut repeats) = (0, 0, 0, 0);
    for (item, outcome) in &outcomes {
        match outcome {
            ChunkOutcome::Committed {
                affected_rows,
                failed_rows,
                completed_job,
            } => {
                committed_chunks.push(item.chunk);
                affected += affected_rows;
                failed += failed_rows;
                completions += u32::from(*completed_job);
            }
            ChunkOutcome::AlreadyCommitted { completed_job } => {
                repeats += 1;
                completions += u32::from(*completed_job);
            }
            other => panic!("chunk {}: {other:?}", item.chunk),
        }
    }
    committed_chunks.sort_unstable();
    let every_chunk: Vec<u32> = items.iter().map(|item| item.chunk).collect();
    assert_eq!(committed_chunks, every_chunk, "each chunk committed once");
    assert_eq!(
        repeats,
        items.len(),
        "every second delivery changed nothing"
    );
    let counted = (USERS as u64 - 3, 3);
    assert_eq!((affected, failed), counted, "the committed chunks' counts");
    assert_eq!(completions, 1, "exactly one worker completed the job");

    // A third delivery of every chunk, from the real queue.
    app.drain().await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let users = USERS as u64;
    assert_eq!(counts(&job), (Some(users), Some(users - 3), Some(3)));
    let errors = app.get(&format!("errors/update/{id}")).await.body;
    let rows = failing.map(|i| i as u64 + 1).to_vec();
    assert_eq!(u64s(&errors, "row"), rows, "{errors}");
    let users = app.get("config?per_page=1000").await.body;
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), USERS - 3);
    let mut emails: Vec<&str> = users.iter().map(|user| text(&user["email"])).collect();
    emails.sort_unstable();
    emails.dedup();
    assert_eq!(emails.len(), USERS - 3, "no user stored twice");
}

async fn a_cancelled_job_stops_at_the_next_chunk_boundary(app: TestApp) {
    let app = TestApp::with_chunks(app.backend, 20).await;
    let id = app.upload(&users_file(60, "")).await.id();
    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);

    // The first chunk is processed; then the job is cancelled while the other two wait.
    let items = work_items(&app, id).await;
    assert_eq!(items.len(), 3);
    process_first_chunk(&app, &items).await;
    let cancelled = cancel(&app, id).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let link = format!("http://bulk.test{PREFIX}/jobs/{id}");
    assert_eq!(
        cancelled.body,
        json!({"id": id, "status": "cancelled", "link": link})
    );
    // The queued chunks are dropped when delivered: nothing more is written or counted.
    app.drain().await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(counts(&job), (Some(60), Some(20), Some(0)), "{job}");
    let first = app
        .get("config?emails=user0@example.com,user19@example.com")
        .await;
    assert_eq!(
        first.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        first.body
    );
    let rest = app
        .get("config?emails=user20@example.com,user59@example.com")
        .await;
    assert_eq!(rest.body, json!([]), "later chunks wrote nothing");
    // Zendesk calls a cancelled job killed.
    let status = format!("/api/v2/job_statuses/{id}");
    let status = app.call(Method::GET, &status, Body::Empty).await.body;
    assert_eq!(status["job_status"]["status"], "killed", "{status}");

    // Cancelling again answers the job as it is; proceeding it again starts nothing.
    let again = cancel(&app, id).await;
    assert_eq!(
        (again.status, again.body),
        (cancelled.status, cancelled.body)
    );
    let proceed = app.proceed(id).await;
    assert_eq!(proceed.body["status"], "cancelled", "{}", proceed.body);

    // A job cancelled before it is proceeded can never be proceeded.
    let waiting = app.upload(&users_file(2, "")).await.id();
    assert_eq!(cancel(&app, waiting).await.status, StatusCode::OK);
    let refused = app.proceed(waiting).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(app.job(waiting).await["status"], "cancelled");

    // A job that has ended cannot be cancelled.
    let done_id = app.run_job(&users_file(1, "")).await["id"]
        .as_u64()
        .unwrap();
    let late = cancel(&app, done_id).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(app.job(done_id).await["status"], "completed");

    // Another tenant's job is not found; a bad id names the field.
    let foreign = Body::Json(json!({ "id": waiting }));
    let foreign = app
        .as_globex(Method::POST, &format!("{PREFIX}/cancel"), foreign)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    let bad_id = app.post_json("cancel", json!({ "id": "x" })).await;
    bad_id.assert_client_error(StatusCode::BAD_REQUEST, "id");
}

async fn cancel(app: &TestApp, id: u64) -> Answer {
    app.post_json("cancel", json!({ "id": id })).await
}

/// Processes the first of a job's work items, which commits it.
async fn process_first_chunk(app: &TestApp, items: &[WorkItem]) {
    let outcome = app.function("processor").await.process(&items[0]).await;
    assert!(matches!(outcome.unwrap(), ChunkOutcome::Committed { .. }));
}

/// One pass of the sweeper over jobs idle for at least `idle`.
async fn sweep(app: &TestApp, idle: Duration) -> Sweep {
    app.function("sweeper")
        .await
        .resume_stale_jobs(idle)
        .await
        .unwrap()
}

/// Loses the queued work, then sweeps for jobs idle at all (a little time having passed).
async fn lose_work_and_sweep(app: &TestApp) -> Sweep {
    app.lose_queued_work().await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    sweep(app, Duration::ZERO).await
}

async fn a_job_whose_queued_work_was_lost_is_resumed(app: TestApp) {
    let app = TestApp::with_chunks(app.backend, 20).await;
    let id = app.upload(&users_file(60, "")).await.id();
    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);
    let items = work_items(&app, id).await;
    // Chunk 0 is done; then the queued messages are lost (a purge, a consumer that died).
    process_first_chunk(&app, &items).await;
    app.lose_queued_work().await;
    app.drain().await;
    let stuck = app.job(id).await;
    assert_eq!(stuck["status"], "in_progress", "{stuck}");

    // A job that changed recently is left alone; one idle long enough is resumed: only its
    // chunks not yet committed are queued again.
    assert_eq!(
        sweep(&app, Duration::from_secs(3600)).await,
        Sweep::default()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let resumed = sweep(&app, Duration::ZERO).await.resumed;
    let requeued_chunks = vec![1, 2];
    assert_eq!(
        resumed,
        vec![ResumedJob {
            job_id: id,
            requeued_chunks
        }]
    );
    app.drain().await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), (Some(60), Some(60), Some(0)), "{job}");
    let users = app.get("config?page=1&per_page=100").await.body;
    assert_eq!(users.as_array().map(Vec::len), Some(60));
    // Nothing is left to resume.
    assert_eq!(sweep(&app, Duration::ZERO).await, Sweep::default());
}

/// A job whose work keeps being lost (each attempt timing out or crashing) is resumed
/// `MAX_RESUMPTIONS` times, then ended `failed` with the reason instead of staying in progress.
async fn a_job_resumed_again_and_again_is_given_up(app: TestApp) {
    let id = app.upload(&users_file(3, "")).await.id();
    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);
    for resumption in 0..MAX_RESUMPTIONS {
        let sweep = lose_work_and_sweep(&app).await;
        assert_eq!(sweep.resumed.len(), 1, "resumption {resumption}: {sweep:?}");
    }
    let sweep = lose_work_and_sweep(&app).await;
    assert_eq!(sweep.resumed, vec![]);
    assert_eq!(sweep.given_up.len(), 1, "{sweep:?}");
    let job = app.job(id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let reason = job["failure_reason"].as_str().unwrap_or_default();
    let expected = format!("resumed {MAX_RESUMPTIONS} times");
    assert!(reason.starts_with(&expected), "{reason}");
    // A failed job is not stale: the next sweep leaves it.
    assert_eq!(self::sweep(&app, Duration::ZERO).await, Sweep::default());
}

/// The work items of acme's job `id`, as proceeding it queued them.
async fn work_items(app: &TestApp, id: u64) -> Vec<WorkItem> {
    let tenant = TenantId::parse("acme").unwrap();
    let job = app.service.ports().jobs.get_job(&tenant, id).await;
    let job = job.unwrap().unwrap();
    job.chunk_plan
        .work_items(&job.tenant, job.id, job.total_rows)
}

/// Both error logs are paged like the job list (`page`, `per_page` up to 1000, `Total`,
/// `Per-Page`, `Link` to the next page): every entry on exactly one page, in row order, and
/// by default the whole log of up to 1000 entries on one page. The update errors come from
/// three chunks, so pages cross chunk boundaries.
async fn error_logs_are_read_a_page_at_a_time(app: TestApp) {
    let app = TestApp::with_chunks(app.backend, 10).await;
    // 25 rows that fail when processed (renames of users that do not exist), among 30.
    let file = rows_file(30, |i| {
        let rename = match i % 6 {
            5 => String::new(),
            _ => format!(r#","new_email":"moved{i}@example.com""#),
        };
        format!(r#"{{"email":"ghost{i}@example.com","first_name":"G","last_name":"H"{rename}}}"#)
    });
    let job = app.run_job(&file).await;
    let id = job["id"].as_u64().unwrap();
    assert_eq!(job["update_errors"], 25, "{job}");
    let whole = app.get(&format!("errors/update/{id}")).await;
    assert_eq!(whole.header("total"), Some("25"));
    assert_eq!(whole.header("per-page"), Some("1000"));
    assert_eq!(whole.header("link"), None);
    let whole = whole.body.as_array().unwrap().clone();
    assert_eq!(whole.len(), 25);
    assert!(whole
        .windows(2)
        .all(|w| w[0]["row"].as_u64() < w[1]["row"].as_u64()));
    let mut paged = Vec::new();
    for number in 1..=3 {
        let page = format!("errors/update/{id}?page={number}&per_page=10");
        let page = app.get(&page).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.header("total"), Some("25"));
        let next = (number < 3).then(|| {
            let next = format!("errors/update/{id}?page={}&per_page=10", number + 1);
            format!("<http://bulk.test{PREFIX}/{next}>; rel=\"next\"")
        });
        assert_eq!(page.header("link"), next.as_deref());
        paged.extend(page.body.as_array().unwrap().iter().cloned());
    }
    assert_eq!(paged, whole);
    let past = app
        .get(&format!("errors/update/{id}?page=4&per_page=10"))
        .await;
    assert_eq!(
        (past.status, past.body.clone()),
        (StatusCode::OK, json!([]))
    );

    // 12 rows with an invalid email: 12 scheme errors, in file order.
    let bad = rows_file(12, |i| {
        format!(r#"{{"email":"bad{i}","first_name":"B","last_name":"C"}}"#)
    });
    let invalid = app.upload(&bad).await.id();
    let first = app
        .get(&format!("errors/scheme/{invalid}?per_page=5"))
        .await;
    assert_eq!(first.header("total"), Some("12"));
    assert_eq!(u64s(&first.body, "row"), vec![1, 2, 3, 4, 5]);
    let last = app
        .get(&format!("errors/scheme/{invalid}?page=3&per_page=5"))
        .await;
    assert_eq!(u64s(&last.body, "row"), vec![11, 12]);
    assert_eq!(last.header("link"), None);
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("page=x", "page"),
    ] {
        for log in ["scheme", "update"] {
            app.get_refused(&format!("errors/{log}/{id}?{query}"), field)
                .await;
        }
    }
}

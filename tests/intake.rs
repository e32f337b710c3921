//! Files that arrive without an API call: bucket drops (and the local drop folder) and presigned
//! uploads. The intake scenarios run on both stores; the S3 → SQS notification wiring and the
//! presigned PUT run on moto.

use std::time::{Duration, Instant};

use bulk_tests::{on_both_stores, users_file, Backend, Body, TestApp, PREFIX};
use bulk_users::model::{JobKind, NewJob, TenantId, Timestamp};
use bulk_users::service::{IncomingKey, IntakeOutcome, SettingsChange, DROP_USER_NAME};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

on_both_stores!(
    a_dropped_file_becomes_a_validated_job,
    a_dropped_file_in_proceed_is_processed,
    files_that_cannot_become_jobs_are_moved_aside,
    a_redelivered_notification_takes_a_file_in_once,
    a_drop_stopped_after_its_move_is_finished_by_the_slot_notification,
    a_drop_stopped_before_its_move_goes_on_with_the_job_it_created,
);

async fn put(app: &TestApp, key: &str, body: &str) {
    app.service
        .ports()
        .files
        .put(key, Bytes::from(body.to_owned()))
        .await
        .expect("put");
}

async fn exists(app: &TestApp, key: &str) -> bool {
    app.service
        .ports()
        .files
        .size(key)
        .await
        .expect("size")
        .is_some()
}

async fn a_dropped_file_becomes_a_validated_job(app: TestApp) {
    put(&app, "incoming/acme/users.json", &users_file(3, "")).await;
    let IntakeOutcome::Job(job) = app
        .function("intake")
        .await
        .intake("incoming/acme/users.json")
        .await
        .unwrap()
    else {
        panic!("not a job")
    };
    assert_eq!(
        job.file_key,
        format!("incoming/acme/jobs/{}/users.json", job.id)
    );
    assert!(
        !exists(&app, "incoming/acme/users.json").await,
        "moved into its job's slot"
    );
    assert!(exists(&app, &job.file_key).await);

    let record = app.get(&format!("jobs/{}", job.id)).await.body;
    assert_eq!(record["status"], "valid_scheme", "validated, not proceeded");
    assert_eq!(record["total_rows"], 3);
    assert_eq!(record["filename"], "users.json");
    assert_eq!(record["uploaded_api_user_name"], DROP_USER_NAME);

    // A drop with scheme errors is a job too: its errors are in the log.
    put(
        &app,
        "incoming/acme/bad.json",
        r#"[{"email": "nope", "first_name": "A", "last_name": "B"}]"#,
    )
    .await;
    let IntakeOutcome::Job(bad) = app
        .function("intake")
        .await
        .intake("incoming/acme/bad.json")
        .await
        .unwrap()
    else {
        panic!("not a job")
    };
    let errors = app.get(&format!("errors/scheme/{}", bad.id)).await.body;
    assert_eq!(
        (errors[0]["row"].as_u64(), errors[0]["column"].as_u64()),
        (Some(1), Some(1))
    );
}

async fn a_dropped_file_in_proceed_is_processed(app: TestApp) {
    put(
        &app,
        "incoming/acme/proceed/nightly/users.json",
        &users_file(4, ""),
    )
    .await;
    let IntakeOutcome::Job(job) = app
        .function("intake")
        .await
        .intake("incoming/acme/proceed/nightly/users.json")
        .await
        .unwrap()
    else {
        panic!("not a job")
    };
    assert_eq!(job.status.as_str(), "in_progress");
    app.drain().await;
    let record = app.get(&format!("jobs/{}", job.id)).await.body;
    assert_eq!(record["status"], "completed");
    assert_eq!(record["affected_rows"], 4);
    assert_eq!(record["proceed_api_user_name"], DROP_USER_NAME);
}

async fn files_that_cannot_become_jobs_are_moved_aside(app: TestApp) {
    app.set_settings(
        "acme",
        SettingsChange {
            max_file_bytes: Some(500),
            ..SettingsChange::default()
        },
    )
    .await;
    for (key, body, reason) in [
        (
            "incoming/nobody/users.json",
            "[]".to_owned(),
            "tenant 'nobody' does not exist",
        ),
        (
            "incoming/acme/notes.txt",
            "hello".to_owned(),
            "must be a JSON array",
        ),
        (
            "incoming/acme/object.json",
            "{\"users\": []}".to_owned(),
            "must be a JSON array",
        ),
        (
            "incoming/acme/big.json",
            users_file(20, ""),
            "max_file_bytes",
        ),
        (
            "incoming/acme/empty.json",
            String::new(),
            "must not be empty",
        ),
        (
            "incoming/Not A Tenant/users.json",
            "[]".to_owned(),
            "must look like",
        ),
        (
            "incoming/acme/jobs/999/users.json",
            users_file(1, ""),
            "no job 999",
        ),
    ] {
        put(&app, key, &body).await;
        match app.function("intake").await.intake(key).await.unwrap() {
            IntakeOutcome::Rejected {
                moved_to,
                reason: why,
            } => {
                assert_eq!(
                    moved_to,
                    format!("rejected/{}", key.trim_start_matches("incoming/"))
                );
                assert!(why.contains(reason), "{key}: {why}");
                assert!(exists(&app, &moved_to).await, "{key}: not lost");
                assert!(!exists(&app, key).await, "{key}: not taken again");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(app.get("jobs").await.header("total"), Some("0"));
}

async fn a_redelivered_notification_takes_a_file_in_once(app: TestApp) {
    put(&app, "incoming/acme/proceed/users.json", &users_file(2, "")).await;
    let IntakeOutcome::Job(job) = app
        .function("intake")
        .await
        .intake("incoming/acme/proceed/users.json")
        .await
        .unwrap()
    else {
        panic!("not a job")
    };
    assert!(matches!(
        app.function("intake")
            .await
            .intake("incoming/acme/proceed/users.json")
            .await
            .unwrap(),
        IntakeOutcome::Ignored { .. }
    ));
    // The notification of the move into the slot: the job is already validated and proceeded.
    let IntakeOutcome::Job(again) = app
        .function("intake")
        .await
        .intake(&job.file_key)
        .await
        .unwrap()
    else {
        panic!("not a job")
    };
    assert_eq!(again.id, job.id);
    app.drain().await;
    assert_eq!(app.get("jobs").await.header("total"), Some("1"));
    assert_eq!(
        app.get(&format!("jobs/{}", job.id)).await.body["affected_rows"],
        2
    );
}

/// The intake adopts a dropped file in three steps: the job is created (its file the dropped
/// key), the file is moved into the job's slot, the job is pointed at the slot. Stopped between
/// the last two (a crash, a failed write), the drop's redelivered notification finds its key
/// gone; the slot's own notification finishes the adoption, so the file is still processed,
/// once. A slot of another job, or of a job whose dropped file is still there, is ignored.
async fn a_drop_stopped_after_its_move_is_finished_by_the_slot_notification(app: TestApp) {
    let dropped = "incoming/acme/proceed/users.json";
    put(&app, dropped, &users_file(3, "")).await;
    let size = users_file(3, "").len() as u64;
    let ports = app.service.ports();
    let tenant = TenantId::parse("acme").unwrap();
    // What the intake did before it stopped: the job created, the file moved.
    let job = ports
        .jobs
        .create_job(NewJob {
            kind: JobKind::Upload,
            tenant: tenant.clone(),
            filename: "users.json".to_owned(),
            file_key: dropped.to_owned(),
            file_bytes: size,
            uploaded_api_user_name: DROP_USER_NAME.to_owned(),
            created_at: Timestamp::now(),
        })
        .await
        .expect("create the job");
    let slot = IncomingKey::slot(&tenant, job.id, true, "users.json");
    // Before the move, the slot's notification (of a file put there by hand) changes nothing.
    put(&app, &slot, &users_file(3, "")).await;
    assert!(matches!(
        app.function("intake").await.intake(&slot).await.unwrap(),
        IntakeOutcome::Ignored { .. }
    ));
    ports.files.rename(dropped, &slot).await.expect("move");

    // The drop's notification again: its key is gone.
    assert!(matches!(
        app.function("intake").await.intake(dropped).await.unwrap(),
        IntakeOutcome::Ignored { .. }
    ));
    // A slot naming another job id is not this job's file.
    let elsewhere = IncomingKey::slot(&tenant, job.id + 1, true, "users.json");
    put(&app, &elsewhere, &users_file(1, "")).await;
    let outcome = app
        .function("intake")
        .await
        .intake(&elsewhere)
        .await
        .unwrap();
    assert!(
        !matches!(&outcome, IntakeOutcome::Job(other) if other.id == job.id),
        "{outcome:?}"
    );
    // The slot's notification finishes the adoption: validated and proceeded.
    let IntakeOutcome::Job(taken) = app.function("intake").await.intake(&slot).await.unwrap()
    else {
        panic!("the slot's notification did not take the file in")
    };
    assert_eq!((taken.id, taken.file_key.as_str()), (job.id, slot.as_str()));
    // Delivered again, it changes nothing.
    let IntakeOutcome::Job(again) = app.function("intake").await.intake(&slot).await.unwrap()
    else {
        panic!("not a job")
    };
    assert_eq!(again.id, job.id);
    app.drain().await;
    let record = app.get(&format!("jobs/{}", job.id)).await.body;
    assert_eq!(
        (
            &record["status"],
            &record["affected_rows"],
            &record["failed_rows"]
        ),
        (&json!("completed"), &json!(3), &json!(0)),
        "{record}"
    );
    let users = app.get("config?per_page=100").await.body;
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{users}");
}

/// Stopped after creating the job and before moving the file, the intake leaves a `created`
/// job whose file is the dropped key; the notification delivered again goes on with that job
/// rather than making a second one. A job of another file, or one already past `created`, is
/// not taken for it.
async fn a_drop_stopped_before_its_move_goes_on_with_the_job_it_created(app: TestApp) {
    let dropped = "incoming/acme/proceed/users.json";
    let ports = app.service.ports();
    let tenant = TenantId::parse("acme").unwrap();
    let new_job = |file_key: &str| NewJob {
        kind: JobKind::Upload,
        tenant: tenant.clone(),
        filename: "users.json".to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: 1,
        uploaded_api_user_name: DROP_USER_NAME.to_owned(),
        created_at: Timestamp::now(),
    };
    // A drop of another file stopped the same way: not this file's job.
    let other = ports
        .jobs
        .create_job(new_job("incoming/acme/proceed/other.json"))
        .await
        .unwrap();
    let stopped = ports.jobs.create_job(new_job(dropped)).await.unwrap();
    // An upload made since.
    let upload = app.upload(&users_file(1, "")).await.id();
    put(&app, dropped, &users_file(3, "")).await;

    let IntakeOutcome::Job(taken) = app.function("intake").await.intake(dropped).await.unwrap()
    else {
        panic!("not a job")
    };
    assert_eq!(taken.id, stopped.id, "the job the stopped intake created");
    assert_eq!(
        taken.file_key,
        IncomingKey::slot(&tenant, stopped.id, true, "users.json")
    );
    app.drain().await;
    let record = app.get(&format!("jobs/{}", stopped.id)).await.body;
    assert_eq!(
        (&record["status"], &record["affected_rows"]),
        (&json!("completed"), &json!(3)),
        "{record}"
    );
    assert_eq!(
        app.job_ids().await,
        vec![upload, stopped.id, other.id],
        "no second job"
    );

    // The same key dropped again later is a new file: a new job.
    put(&app, dropped, &users_file(2, "")).await;
    let IntakeOutcome::Job(again) = app.function("intake").await.intake(dropped).await.unwrap()
    else {
        panic!("not a job")
    };
    assert!(again.id > upload, "{again:?}");
}

/// Receives the intake queue's messages and hands them to the intake function's handler until
/// `done` holds (or a minute passes), draining the work queue in between.
async fn pump_intake(app: &TestApp, intake_queue: &str, done: impl AsyncFn() -> bool) {
    let aws = app.aws().expect("aws");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "the intake never finished");
        let received = aws
            .sqs
            .receive_message()
            .queue_url(intake_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let messages = received.messages.unwrap_or_default();
        if !messages.is_empty() {
            let records: Vec<Value> = messages
                .iter()
                .map(|m| json!({"messageId": m.message_id, "body": m.body, "eventSource": "aws:sqs"}))
                .collect();
            let response = bulk_users::lambda::handle_intake_event(
                &app.function("intake").await,
                json!({ "Records": records }),
            )
            .await
            .expect("intake handler");
            assert_eq!(response["batchItemFailures"], json!([]));
            for message in messages {
                aws.sqs
                    .delete_message()
                    .queue_url(intake_queue)
                    .receipt_handle(message.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        app.drain().await;
    }
}

/// The bucket notifies an intake queue of objects created under `incoming/`, as in the template.
async fn wire_bucket_notifications(app: &TestApp) -> String {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let aws = app.aws().expect("aws");
    let name = format!("{}-intake", aws.settings.table);
    let url = bulk_users::adapters::aws::provision::create_queue(&aws.sqs, &name)
        .await
        .expect("queue");
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn");
    let arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("arn");
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value("incoming/")
                        .build(),
                )
                .build(),
        )
        .build();
    let queue = QueueConfiguration::builder()
        .queue_arn(arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(filter)
        .build()
        .expect("queue configuration");
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(&aws.settings.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .expect("notification configuration");
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_into_the_bucket_is_processed_through_the_notification() {
    let app = TestApp::new(Backend::Aws).await;
    let intake_queue = wire_bucket_notifications(&app).await;
    let aws = app.aws().unwrap();
    for (key, body) in [
        ("incoming/acme/proceed/users.json", users_file(5, "")),
        ("incoming/nobody/users.json", users_file(1, "")),
    ] {
        aws.s3
            .put_object()
            .bucket(&aws.settings.bucket)
            .key(key)
            .body(body.into_bytes().into())
            .send()
            .await
            .expect("put");
    }
    let done = async || {
        let jobs = app.get("jobs").await.body;
        jobs.as_array()
            .and_then(|jobs| jobs.first())
            .is_some_and(|job| job["status"] == "completed")
            && app
                .service
                .ports()
                .files
                .size("rejected/nobody/users.json")
                .await
                .unwrap()
                .is_some()
    };
    pump_intake(&app, &intake_queue, done).await;
    let jobs = app.get("jobs").await;
    assert_eq!(
        jobs.header("total"),
        Some("1"),
        "one job, whatever the notifications"
    );
    assert_eq!(jobs.body[0]["affected_rows"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_becomes_a_job() {
    let app = TestApp::new(Backend::Aws).await;
    let intake_queue = wire_bucket_notifications(&app).await;
    let file = users_file(6, "");
    let presigned = app
        .call(
            Method::POST,
            &format!("{PREFIX}/upload/presigned"),
            Body::Json(json!({"filename": "big.json", "bytes": file.len(), "proceed": true})),
        )
        .await;
    assert_eq!(presigned.status, StatusCode::CREATED, "{}", presigned.body);
    assert_eq!(presigned.body["status"], "created");
    let id = presigned.id();
    let upload = &presigned.body["upload"];
    assert_eq!(upload["method"], "PUT");

    let client = reqwest::Client::new();
    let mut request = client
        .put(upload["url"].as_str().unwrap())
        .body(file.clone());
    for (name, value) in upload["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    let response = request.send().await.expect("PUT to the presigned URL");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );

    let done = async || app.get(&format!("jobs/{id}")).await.body["status"] == "completed";
    pump_intake(&app, &intake_queue, done).await;
    let job = app.get(&format!("jobs/{id}")).await.body;
    assert_eq!(
        (job["total_rows"].as_u64(), job["affected_rows"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(job["filename"], "big.json");

    for (body, field, status) in [
        (json!({"bytes": 0}), "bytes", StatusCode::BAD_REQUEST),
        (
            json!({"filename": "x.json"}),
            "bytes",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"bytes": 10, "proceed": "yes"}),
            "proceed",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"bytes": 10, "colour": 1}),
            "colour",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        app.call(
            Method::POST,
            &format!("{PREFIX}/upload/presigned"),
            Body::Json(body),
        )
        .await
        .assert_client_error(status, field);
    }
    let too_big = app
        .call(
            Method::POST,
            &format!("{PREFIX}/upload/presigned"),
            Body::Json(json!({"bytes": 1u64 << 40})),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.body["limit"], "max_file_bytes");
}

#[tokio::test]
async fn presigned_uploads_are_not_offered_by_the_local_file_store() {
    let app = TestApp::new(Backend::Embedded).await;
    let answer = app
        .call(
            Method::POST,
            &format!("{PREFIX}/upload/presigned"),
            Body::Json(json!({"bytes": 10})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .contains("drop folder"));
    assert_eq!(
        app.get("jobs").await.header("total"),
        Some("0"),
        "no job was created"
    );
}

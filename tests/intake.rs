//! Files that arrive without an API call: bucket drops (and the local drop folder) and presigned
//! uploads. The intake scenarios run on both stores; the S3 → SQS notification wiring and the
//! presigned PUT run on moto.

use std::time::{Duration, Instant};

use bulk_tests::cases;
use bulk_tests::steps::{dropped_job, text};
use bulk_tests::{on_both_stores, users_file, Backend, TestApp};
use bulk_users::model::{Job, TenantId};
use bulk_users::ports::StoreError;
use bulk_users::service::{Arrival, IncomingKey, IntakeOutcome, SettingsChange, DROP_USER_NAME};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

on_both_stores!(
    a_dropped_file_becomes_a_validated_job,
    a_dropped_file_in_proceed_is_processed,
    files_that_cannot_become_jobs_are_moved_aside,
    a_redelivered_notification_takes_a_file_in_once,
    a_drop_stopped_after_its_move_is_finished_by_the_slot_notification,
    a_drop_stopped_before_its_move_goes_on_with_the_job_it_created,
    a_file_written_to_a_jobs_key_after_validation_is_never_processed,
    drops_of_a_tenant_whose_drops_are_switched_off_are_moved_aside,
    each_notification_takes_in_exactly_the_version_it_names,
    of_two_versions_of_a_jobs_file_the_one_validated_stays_its_file,
);

async fn put(app: &TestApp, key: &str, body: &str) {
    let files = &app.service.ports().files;
    files
        .put(key, Bytes::from(body.to_owned()))
        .await
        .expect("put");
}

/// The current file of `key`, as text.
async fn read(app: &TestApp, key: &str) -> String {
    use tokio::io::AsyncReadExt;
    let files = &app.service.ports().files;
    let mut text = String::new();
    let mut file = files.open(key, None, 0).await.expect("open");
    file.read_to_string(&mut text).await.expect("read");
    text
}

/// The emails of the tenant's users, sorted.
async fn emails(app: &TestApp) -> Vec<String> {
    let users = app.get("config?per_page=100").await.body;
    let users = users.as_array().cloned().unwrap_or_default();
    let mut emails: Vec<String> = users.iter().map(|u| text(&u["email"]).to_owned()).collect();
    emails.sort();
    emails
}

/// A users file of `count` users whose emails start with `name` (`{name}{i}@example.com`).
fn named_users(name: &str, count: usize) -> String {
    users_file(count, "").replace("user", name)
}

async fn exists(app: &TestApp, key: &str) -> bool {
    let size = app.service.ports().files.size(key).await;
    size.expect("size").is_some()
}

/// The intake function's answer to the notification of `key`.
async fn intake(app: &TestApp, key: &str) -> IntakeOutcome {
    app.function("intake").await.intake(key).await.unwrap()
}

/// The job the intake of `key` answers.
async fn intake_job(app: &TestApp, key: &str) -> Job {
    match intake(app, key).await {
        IntakeOutcome::Job(job) => *job,
        other => panic!("{key}: not a job: {other:?}"),
    }
}

async fn assert_ignored(app: &TestApp, key: &str) {
    let outcome = intake(app, key).await;
    assert!(
        matches!(outcome, IntakeOutcome::Ignored { .. }),
        "{key}: {outcome:?}"
    );
}

async fn a_dropped_file_becomes_a_validated_job(app: TestApp) {
    put(&app, "incoming/acme/users.json", &users_file(3, "")).await;
    let job = intake_job(&app, "incoming/acme/users.json").await;
    let slot = format!("incoming/acme/jobs/{}/users.json", job.id);
    assert_eq!(job.file_key, slot);
    let moved = !exists(&app, "incoming/acme/users.json").await;
    assert!(moved, "moved into its job's slot");
    assert!(exists(&app, &job.file_key).await);

    let record = app.job(job.id).await;
    assert_eq!(record["status"], "valid_scheme", "validated, not proceeded");
    assert_eq!(record["total_rows"], 3);
    assert_eq!(record["filename"], "users.json");
    assert_eq!(record["uploaded_api_user_name"], DROP_USER_NAME);

    // A drop with scheme errors is a job too: its errors are in the log.
    let bad = r#"[{"email": "nope", "first_name": "A", "last_name": "B"}]"#;
    put(&app, "incoming/acme/bad.json", bad).await;
    let bad = intake_job(&app, "incoming/acme/bad.json").await;
    let errors = app.get(&format!("errors/scheme/{}", bad.id)).await.body;
    let at = (errors[0]["row"].as_u64(), errors[0]["column"].as_u64());
    assert_eq!(at, (Some(1), Some(1)));
}

async fn a_dropped_file_in_proceed_is_processed(app: TestApp) {
    let key = "incoming/acme/proceed/nightly/users.json";
    put(&app, key, &users_file(4, "")).await;
    let job = intake_job(&app, key).await;
    assert_eq!(job.status.as_str(), "in_progress");
    app.drain().await;
    let record = app.job(job.id).await;
    assert_eq!(record["status"], "completed");
    assert_eq!(record["affected_rows"], 4);
    assert_eq!(record["proceed_api_user_name"], DROP_USER_NAME);
}

async fn files_that_cannot_become_jobs_are_moved_aside(app: TestApp) {
    let max_file_bytes = Some(500);
    let limit = SettingsChange {
        max_file_bytes,
        ..SettingsChange::default()
    };
    app.set_settings("acme", limit).await;
    for case in cases::load("intake/rejected_drops.jsonl") {
        let (name, key) = (cases::name(&case), text(&case["key"]));
        let body = match case["users"].as_u64() {
            Some(users) => users_file(users as usize, ""),
            None => text(&case["body"]).to_owned(),
        };
        put(&app, key, &body).await;
        let outcome = intake(&app, key).await;
        let IntakeOutcome::Rejected { moved_to, reason } = &outcome else {
            panic!("{name}: {key}: {outcome:?}")
        };
        let aside = format!("rejected/{}", key.trim_start_matches("incoming/"));
        assert_eq!(moved_to, &aside, "{name}");
        assert!(
            reason.contains(text(&case["reason"])),
            "{name}: {key}: {reason}"
        );
        assert!(exists(&app, moved_to).await, "{name}: {key}: not lost");
        assert!(!exists(&app, key).await, "{name}: {key}: not taken again");
    }
    assert_eq!(app.get("jobs").await.header("total"), Some("0"));
}

async fn a_redelivered_notification_takes_a_file_in_once(app: TestApp) {
    let key = "incoming/acme/proceed/users.json";
    put(&app, key, &users_file(2, "")).await;
    let job = intake_job(&app, key).await;
    assert_ignored(&app, key).await;
    // The notification of the move into the slot: the job is already validated and proceeded.
    let again = intake_job(&app, &job.file_key).await;
    assert_eq!(again.id, job.id);
    app.drain().await;
    assert_eq!(app.get("jobs").await.header("total"), Some("1"));
    assert_eq!(app.job(job.id).await["affected_rows"], 2);
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
    let job = dropped_job(&tenant, dropped, "users.json", size);
    let job = ports.jobs.create_job(job).await.expect("create the job");
    let slot = IncomingKey::slot(&tenant, job.id, true, "users.json");
    // Before the move, the slot's notification (of a file put there by hand) changes nothing.
    put(&app, &slot, &users_file(3, "")).await;
    assert_ignored(&app, &slot).await;
    ports
        .files
        .rename(dropped, None, &slot)
        .await
        .expect("move");

    // The drop's notification again: its key is gone.
    assert_ignored(&app, dropped).await;
    // A slot naming another job id is not this job's file.
    let elsewhere = IncomingKey::slot(&tenant, job.id + 1, true, "users.json");
    put(&app, &elsewhere, &users_file(1, "")).await;
    let outcome = intake(&app, &elsewhere).await;
    let this_job = matches!(&outcome, IntakeOutcome::Job(other) if other.id == job.id);
    assert!(!this_job, "{outcome:?}");
    // The slot's notification finishes the adoption: validated and proceeded.
    let taken = intake_job(&app, &slot).await;
    assert_eq!((taken.id, taken.file_key.as_str()), (job.id, slot.as_str()));
    // Delivered again, it changes nothing.
    assert_eq!(intake_job(&app, &slot).await.id, job.id);
    app.drain().await;
    let record = app.job(job.id).await;
    let status = (
        &record["status"],
        &record["affected_rows"],
        &record["failed_rows"],
    );
    assert_eq!(
        status,
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
    let new_job = |file_key: &str| dropped_job(&tenant, file_key, "users.json", 1);
    // A drop of another file stopped the same way: not this file's job.
    let other = new_job("incoming/acme/proceed/other.json");
    let other = ports.jobs.create_job(other).await.unwrap();
    let stopped = ports.jobs.create_job(new_job(dropped)).await.unwrap();
    // An upload made since.
    let upload = app.upload(&users_file(1, "")).await.id();
    put(&app, dropped, &users_file(3, "")).await;

    let taken = intake_job(&app, dropped).await;
    assert_eq!(taken.id, stopped.id, "the job the stopped intake created");
    let slot = IncomingKey::slot(&tenant, stopped.id, true, "users.json");
    assert_eq!(taken.file_key, slot);
    app.drain().await;
    let record = app.job(stopped.id).await;
    let status = (&record["status"], &record["affected_rows"]);
    assert_eq!(status, (&json!("completed"), &json!(3)), "{record}");
    let jobs = vec![upload, stopped.id, other.id];
    assert_eq!(app.job_ids().await, jobs, "no second job");

    // The same key dropped again later is a new file: a new job.
    put(&app, dropped, &users_file(2, "")).await;
    let again = intake_job(&app, dropped).await;
    assert!(again.id > upload, "{again:?}");
}

/// A job reads only the bytes it validated. A file written to the job's key after that (by
/// whoever may write there) is never processed: its notification moves it aside under
/// `rejected/`, leaving the validated file the key's current one; and were that notification
/// lost, the job would still read the version it validated.
async fn a_file_written_to_a_jobs_key_after_validation_is_never_processed(app: TestApp) {
    let validated = named_users("first", 3);
    put(&app, "incoming/acme/users.json", &validated).await;
    let job = intake_job(&app, "incoming/acme/users.json").await;
    assert_eq!(job.status.as_str(), "valid_scheme");
    assert!(
        job.file_version.is_some(),
        "the version validated is recorded"
    );

    put(&app, &job.file_key, &named_users("second", 5)).await;
    let outcome = intake(&app, &job.file_key).await;
    let aside = format!("rejected/acme/jobs/{}/users.json", job.id);
    let IntakeOutcome::Rejected { moved_to, reason } = &outcome else {
        panic!("a later write is refused: {outcome:?}")
    };
    assert_eq!(moved_to, &aside);
    assert!(reason.contains("never processed"), "{reason}");
    assert_eq!(read(&app, &job.file_key).await, validated, "current again");
    assert_eq!(
        app.job(job.id).await["total_rows"],
        3,
        "the job is unchanged"
    );

    // Written again, its notification not (yet) taken in: the job still reads what it validated.
    put(&app, &job.file_key, &named_users("third", 4)).await;
    let proceeded = app.proceed(job.id).await;
    assert_eq!(
        proceeded.body["status"], "in_progress",
        "{}",
        proceeded.body
    );
    app.drain().await;
    let record = app.job(job.id).await;
    let status = (&record["status"], &record["affected_rows"]);
    assert_eq!(status, (&json!("completed"), &json!(3)), "{record}");
    let first: Vec<String> = (0..3).map(|i| format!("first{i}@example.com")).collect();
    assert_eq!(
        emails(&app).await,
        first,
        "the validated bytes, and only they"
    );
}

/// A notification names the version it is about (S3's `versionId`): the intake takes in
/// exactly that one. A file dropped twice under one key before the first was taken in is two
/// jobs, each of its own bytes, whichever notification comes first.
async fn each_notification_takes_in_exactly_the_version_it_names(app: TestApp) {
    let files = &app.service.ports().files;
    let key = "incoming/acme/users.json";
    let first = files.put(key, Bytes::from(named_users("first", 2))).await;
    let second = files.put(key, Bytes::from(named_users("second", 3))).await;
    let (first, second) = (first.expect("put"), second.expect("put"));
    let intake = app.function("intake").await;
    let arrival = |version: &str| Arrival {
        version: Some(version.to_owned()),
        principal: Some("AWS:AROAEXAMPLE:acme-uploader".to_owned()),
        source_ip: Some("203.0.113.10".to_owned()),
        ..Arrival::of(key)
    };
    let mut rows = Vec::new();
    for version in [&first, &second] {
        match intake.take_in(&arrival(version)).await.expect("taken in") {
            IntakeOutcome::Job(job) => rows.push(job.total_rows),
            other => panic!("{version}: {other:?}"),
        }
    }
    assert_eq!(rows, [2, 3], "each job of its own version");
    assert!(!exists(&app, key).await, "both taken");
    let again = intake.take_in(&arrival(&first)).await.expect("ignored");
    assert!(matches!(again, IntakeOutcome::Ignored { .. }), "{again:?}");
}

/// Two versions written to a job's slot before either was taken in (a presigned job's file
/// put twice by a writer without the URL's condition), their notifications delivered newest
/// first: the job validates the version its first notification names, and the other one's
/// notification moves that one aside; the job's file stays the validated version.
async fn of_two_versions_of_a_jobs_file_the_one_validated_stays_its_file(app: TestApp) {
    let ports = app.service.ports();
    let tenant = TenantId::parse("acme").unwrap();
    let job = ports
        .jobs
        .create_job(dropped_job(&tenant, "", "big.json", 1));
    let job = job.await.expect("a job");
    let slot = IncomingKey::slot(&tenant, job.id, false, "big.json");
    let older = ports.files.put(&slot, Bytes::from(named_users("older", 2)));
    let older = older.await.expect("put");
    let newer = named_users("newer", 3);
    let newer_version = ports.files.put(&slot, Bytes::from(newer.clone()));
    let newer_version = newer_version.await.expect("put");
    let file = bulk_users::model::NewFile {
        filename: "big.json".to_owned(),
        file_key: slot.clone(),
        file_bytes: newer.len() as u64,
        at: bulk_users::model::Timestamp::now(),
    };
    let pointed = ports.jobs.replace_file(&tenant, job.id, file).await;
    pointed
        .expect("stored")
        .expect("the job")
        .expect("not proceeded");

    let intake = app.function("intake").await;
    let arrival = |version: &str| Arrival {
        version: Some(version.to_owned()),
        ..Arrival::of(&slot)
    };
    let taken = intake
        .take_in(&arrival(&newer_version))
        .await
        .expect("taken");
    let IntakeOutcome::Job(taken) = taken else {
        panic!("{taken:?}")
    };
    assert_eq!(taken.file_version.as_deref(), Some(newer_version.as_str()));
    let late = intake.take_in(&arrival(&older)).await.expect("refused");
    let aside = format!("rejected/acme/jobs/{}/big.json", job.id);
    let moved = matches!(&late, IntakeOutcome::Rejected { moved_to, .. } if *moved_to == aside);
    assert!(moved, "{late:?}");
    assert_eq!(
        read(&app, &slot).await,
        newer,
        "the validated version stays"
    );
    assert_eq!(app.job(job.id).await["total_rows"], 3);
}

/// A tenant's bucket drops can be switched off: each file then dropped for it is moved aside
/// unprocessed, as one for a tenant that does not exist is (`rejected_drops.jsonl`). A job's
/// slot (where presigned uploads land) is no drop. Switched on again, drops become jobs.
async fn drops_of_a_tenant_whose_drops_are_switched_off_are_moved_aside(app: TestApp) {
    let switch = |on: bool| SettingsChange {
        bucket_drops: Some(on),
        ..SettingsChange::default()
    };
    app.set_settings("acme", switch(false)).await;
    let dropped = "incoming/acme/proceed/users.json";
    put(&app, dropped, &users_file(2, "")).await;
    let outcome = intake(&app, dropped).await;
    let IntakeOutcome::Rejected { moved_to, reason } = &outcome else {
        panic!("refused: {outcome:?}")
    };
    assert_eq!(moved_to, "rejected/acme/proceed/users.json");
    assert!(reason.contains("bucket drops are switched off"), "{reason}");
    assert!(exists(&app, moved_to).await && !exists(&app, dropped).await);
    assert_eq!(app.get("jobs").await.header("total"), Some("0"), "no job");

    app.set_settings("acme", switch(true)).await;
    put(&app, dropped, &users_file(2, "")).await;
    let job = intake_job(&app, dropped).await;
    assert_eq!(job.status.as_str(), "in_progress");
}

/// The policy README.md gives an operator's uploader of one tenant (the JSON block after
/// "Who may drop files"), for the test's bucket.
fn uploader_policy(bucket: &str) -> Value {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let readme = readme.expect("README.md");
    let section = readme
        .split("### Who may drop files")
        .nth(1)
        .expect("the section");
    let block = section.split("```json").nth(1).expect("a JSON block");
    let block = block.split("```").next().expect("its end");
    let block = block.replace("$BUCKET", bucket);
    serde_json::from_str(&block).unwrap_or_else(|e| panic!("README's policy: {e}: {block}"))
}

/// An operator's uploader given the README's policy for tenant acme may drop files for acme
/// only: under IAM as the emulator enforces it, its writes elsewhere are denied. (The bucket
/// policy, which lets only the named principals write under incoming/, is held by
/// `template::only_the_named_principals_may_write_under_incoming`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaders_policy_confines_it_to_its_tenant() {
    let app = TestApp::new(Backend::Aws).await;
    let stack = app.stack().expect("a stack");
    let policy = uploader_policy(&stack.names.bucket());
    let credentials = stack.create_principal("acme-uploader", &policy).await;
    let settings = stack.settings();
    let uploader = bulk_users::adapters::aws::connect_with_credentials(&settings, credentials);
    let files = uploader.await.ports.files;
    let body = || Bytes::from(users_file(1, ""));
    let own = files.put("incoming/acme/proceed/users.json", body()).await;
    assert!(own.is_ok(), "its own tenant: {own:?}");
    for elsewhere in [
        "incoming/globex/users.json",
        "uploads/acme/x.json",
        "rejected/acme/x",
    ] {
        let refused = files.put(elsewhere, body()).await;
        let denied = matches!(refused, Err(StoreError::Denied { .. }));
        assert!(denied, "{elsewhere}: {refused:?}");
    }
}

/// Receives the intake queue's messages and hands them to the intake function's handler until
/// `done` holds (or a minute passes), draining the work queue in between.
async fn pump_intake(app: &TestApp, intake_queue: &str, done: impl AsyncFn() -> bool) {
    let aws = app.aws().expect("aws");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "the intake never finished");
        let receive = aws.sqs.receive_message().queue_url(intake_queue);
        let received = receive
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send();
        let messages = received
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if !messages.is_empty() {
            let record = |m: &aws_sdk_sqs::types::Message| json!({"messageId": m.message_id, "body": m.body, "eventSource": "aws:sqs"});
            let records: Vec<Value> = messages.iter().map(record).collect();
            let intake = app.function("intake").await;
            let event = json!({ "Records": records });
            let response = bulk_users::lambda::handle_intake_event(&intake, event).await;
            let response = response.expect("intake handler");
            assert_eq!(response["batchItemFailures"], json!([]));
            for message in messages {
                let handle = message.receipt_handle.unwrap_or_default();
                let delete = aws.sqs.delete_message().queue_url(intake_queue);
                delete.receipt_handle(handle).send().await.expect("delete");
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
        let put = aws.s3.put_object().bucket(&aws.settings.bucket).key(key);
        put.body(body.into_bytes().into())
            .send()
            .await
            .expect("put");
    }
    let done = async || {
        let jobs = app.get("jobs").await.body;
        let first = jobs.as_array().and_then(|jobs| jobs.first());
        first.is_some_and(|job| job["status"] == "completed")
            && exists(&app, "rejected/nobody/users.json").await
    };
    pump_intake(&app, &intake_queue, done).await;
    let jobs = app.get("jobs").await;
    let one = "one job, whatever the notifications";
    assert_eq!(jobs.header("total"), Some("1"), "{one}");
    assert_eq!(jobs.body[0]["affected_rows"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_becomes_a_job() {
    let app = TestApp::new(Backend::Aws).await;
    let intake_queue = wire_bucket_notifications(&app).await;
    let file = users_file(6, "");
    let asked = json!({"filename": "big.json", "bytes": file.len(), "proceed": true});
    let presigned = app.post_json("upload/presigned", asked).await;
    assert_eq!(presigned.status, StatusCode::CREATED, "{}", presigned.body);
    assert_eq!(presigned.body["status"], "created");
    let id = presigned.id();
    let upload = &presigned.body["upload"];
    assert_eq!(upload["method"], "PUT");

    let client = reqwest::Client::new();
    let mut request = client.put(text(&upload["url"])).body(file.clone());
    for (name, value) in upload["headers"].as_object().unwrap() {
        request = request.header(name, text(value));
    }
    let response = request.send().await.expect("PUT to the presigned URL");
    let status = response.status();
    let said = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{said}");

    let done = async || app.job(id).await["status"] == "completed";
    pump_intake(&app, &intake_queue, done).await;
    let job = app.job(id).await;
    let rows = (job["total_rows"].as_u64(), job["affected_rows"].as_u64());
    assert_eq!(rows, (Some(6), Some(6)));
    assert_eq!(job["filename"], "big.json");

    for (body, field) in [
        (json!({"bytes": 0}), "bytes"),
        (json!({"filename": "x.json"}), "bytes"),
        (json!({"bytes": 10, "proceed": "yes"}), "proceed"),
        (json!({"bytes": 10, "colour": 1}), "colour"),
    ] {
        let refused = app.post_json("upload/presigned", body).await;
        refused.assert_client_error(StatusCode::BAD_REQUEST, field);
    }
    let too_big = json!({"bytes": 1u64 << 40});
    let too_big = app.post_json("upload/presigned", too_big).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.body["limit"], "max_file_bytes");
}

/// PUTs `file` to a presigned upload as the client does (with its signed headers).
async fn put_presigned(upload: &Value, file: &str) -> StatusCode {
    let client = reqwest::Client::new();
    let mut request = client.put(text(&upload["url"])).body(file.to_owned());
    for (name, value) in upload["headers"].as_object().expect("headers") {
        request = request.header(name, text(value));
    }
    let response = request.send().await.expect("PUT to the presigned URL");
    StatusCode::from_u16(response.status().as_u16()).expect("a status")
}

/// A presigned URL takes one file. PUT again through it after the first file was validated,
/// the second is refused (the URL is signed with `If-None-Match: *`); put at the job's key by
/// another writer of `incoming/`, it becomes nothing (its notification moves it aside). Either
/// way the job processes the bytes it validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_put_through_a_presigned_url_never_changes_what_the_job_processes() {
    let app = TestApp::new(Backend::Aws).await;
    let intake_queue = wire_bucket_notifications(&app).await;
    let first = named_users("first", 6);
    let asked = json!({"filename": "big.json", "bytes": first.len(), "proceed": false});
    let presigned = app.post_json("upload/presigned", asked).await;
    let (id, upload) = (presigned.id(), presigned.body["upload"].clone());
    assert!(put_presigned(&upload, &first).await.is_success());
    let validated = async || app.job(id).await["status"] == "valid_scheme";
    pump_intake(&app, &intake_queue, validated).await;

    // The same size (signed into the URL), other users.
    let second = named_users("secnd", 6);
    let again = put_presigned(&upload, &second).await;
    assert_eq!(
        again,
        StatusCode::PRECONDITION_FAILED,
        "a second PUT is refused"
    );
    let acme = TenantId::parse("acme").unwrap();
    let slot = IncomingKey::slot(&acme, id, false, "big.json");
    let aws = app.aws().expect("aws");
    let put = aws.s3.put_object().bucket(&aws.settings.bucket).key(&slot);
    put.body(second.into_bytes().into())
        .send()
        .await
        .expect("put");
    let aside = format!("rejected/acme/jobs/{id}/big.json");
    pump_intake(&app, &intake_queue, async || exists(&app, &aside).await).await;
    assert_eq!(
        read(&app, &slot).await,
        first,
        "the validated file is current again"
    );

    let proceeded = app.proceed(id).await;
    assert_eq!(
        proceeded.body["status"], "in_progress",
        "{}",
        proceeded.body
    );
    app.drain().await;
    let job = app.job(id).await;
    let rows = (&job["status"], &job["total_rows"], &job["affected_rows"]);
    assert_eq!(rows, (&json!("completed"), &json!(6), &json!(6)), "{job}");
    let first: Vec<String> = (0..6).map(|i| format!("first{i}@example.com")).collect();
    assert_eq!(
        emails(&app).await,
        first,
        "the validated bytes, and only they"
    );
}

#[tokio::test]
async fn presigned_uploads_are_not_offered_by_the_local_file_store() {
    let app = TestApp::new(Backend::Embedded).await;
    let answer = app
        .post_json("upload/presigned", json!({"bytes": 10}))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
    assert!(text(&answer.body["message"]).contains("drop folder"));
    let jobs = app.get("jobs").await;
    assert_eq!(jobs.header("total"), Some("0"), "no job was created");
}

//! The AWS adapters against the emulator (moto): every port, the DynamoDB layout's
//! exactly-once commits and the batching limits (more than 25 and 100 items per call).

use std::collections::BTreeSet;
use std::sync::Arc;

use bulk_tests::moto::fresh_aws;
use bulk_users::adapters::aws::AwsAdapters;
use bulk_users::model::{
    ChunkPlan, ChunkResult, Credential, ErrorType, JobStatus, NewFile, NewJob, ProceedOutcome,
    SchemeError, SchemeReport, TenantId, TenantSettings, Timestamp, UpdateError, User,
    UserSelector, UserWrite, WorkItem,
};
use bulk_users::ports::{JobStore, PageRequest, StoreError};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + seconds * 1_000).unwrap()
}

fn new_job(tenant: &TenantId, file_key: &str) -> NewJob {
    NewJob {
        tenant: tenant.clone(),
        filename: "users.json".to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: 123,
        uploaded_api_user_name: "uploader".to_owned(),
        created_at: at(0),
    }
}

fn page(page: u64, per_page: u64) -> PageRequest {
    PageRequest { page, per_page }
}

fn scheme_error(row: u64, message: &str) -> SchemeError {
    SchemeError {
        message: message.to_owned(),
        column: Some(2),
        row: Some(row),
        field: Some("email".to_owned()),
    }
}

fn plan(chunks: u64, rows_per_chunk: u64) -> ChunkPlan {
    ChunkPlan {
        rows_per_chunk,
        offsets: (0..chunks).map(|i| 1 + i * 100).collect(),
    }
}

fn valid_report(chunks: u64) -> SchemeReport {
    SchemeReport {
        total_rows: chunks * 10,
        errors: Vec::new(),
        error_count: 0,
        chunk_plan: plan(chunks, 10),
    }
}

fn update_error(row: u64, message: &str, error_type: ErrorType) -> UpdateError {
    UpdateError {
        message: message.to_owned(),
        column: None,
        row,
        field: None,
        error_type,
    }
}

fn chunk(job_id: u64, chunk: u32, errors: Vec<UpdateError>) -> ChunkResult {
    ChunkResult {
        job_id,
        chunk,
        affected_rows: 10,
        failed_rows: 1,
        errors,
        at: at(100 + i64::from(chunk)),
    }
}

fn user(id: u64, email: &str, agent_number: Option<&str>) -> User {
    User {
        id,
        email: email.to_owned(),
        agent_number: agent_number.map(str::to_owned),
        first_name: format!("First{id}"),
        last_name: "Last".to_owned(),
        location: None,
        max_chat_limit: Some(3),
        max_chat_limit_enabled: true,
        roles: vec!["Agent".to_owned()],
        teams: Vec::new(),
        deactivated_at: None,
        created_at: at(1),
        updated_at: at(1),
    }
}

/// A job of `tenant` validated with `chunks` chunks and started.
async fn started_job(aws: &AwsAdapters, tenant: &TenantId, chunks: u64) -> u64 {
    let jobs = &aws.ports.jobs;
    let job = jobs
        .create_job(new_job(tenant, "files/started"))
        .await
        .unwrap();
    let job = jobs
        .record_scheme_report(
            tenant,
            job.id,
            "files/started",
            &valid_report(chunks),
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::ValidScheme);
    let outcome = jobs
        .start_processing(tenant, job.id, "proceeder", at(3))
        .await
        .unwrap();
    assert!(matches!(outcome, Some(ProceedOutcome::Started(_))));
    job.id
}

#[tokio::test]
async fn jobs_are_created_scoped_by_tenant_and_listed_newest_first() {
    let aws = fresh_aws("jobs").await;
    let jobs = &aws.ports.jobs;
    let a = tenant("acme");
    let b = tenant("globex");

    let mut ids = Vec::new();
    for n in 0..3 {
        let job = jobs
            .create_job(new_job(&a, &format!("files/{n}")))
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Created);
        assert_eq!(job.tenant, a);
        ids.push(job.id);
    }
    assert_eq!(ids, vec![1, 2, 3], "ids start at 1 and increase");
    let other = jobs.create_job(new_job(&b, "files/b")).await.unwrap();
    assert_eq!(other.id, 4);

    let stored = jobs.get_job(&a, 2).await.unwrap().unwrap();
    assert_eq!(stored.file_key, "files/1");
    assert_eq!(stored.filename, "users.json");
    assert_eq!(stored.uploaded_api_user_name, "uploader");
    assert_eq!(stored.created_at, at(0));
    assert_eq!(stored.chunk_plan, ChunkPlan::default());
    assert_eq!(
        jobs.get_job(&b, 2).await.unwrap(),
        None,
        "another tenant's job"
    );
    assert_eq!(jobs.get_job(&a, 99).await.unwrap(), None);

    let (first, total) = jobs.list_jobs(&a, page(1, 2)).await.unwrap();
    assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(total, 3);
    let (second, total) = jobs.list_jobs(&a, page(2, 2)).await.unwrap();
    assert_eq!(second.iter().map(|j| j.id).collect::<Vec<_>>(), vec![1]);
    assert_eq!(total, 3);
    let (beyond, total) = jobs.list_jobs(&a, page(3, 2)).await.unwrap();
    assert!(beyond.is_empty());
    assert_eq!(total, 3);
    let (theirs, total) = jobs.list_jobs(&b, page(1, 10)).await.unwrap();
    assert_eq!(theirs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![4]);
    assert_eq!(total, 1);
    let (none, total) = jobs
        .list_jobs(&tenant("nobody"), page(1, 10))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_get_distinct_ids() {
    let aws = fresh_aws("ids").await;
    let a = tenant("acme");
    let tasks: Vec<_> = (0..12)
        .map(|n| {
            let jobs = aws.ports.jobs.clone();
            let job = new_job(&a, &format!("files/{n}"));
            tokio::spawn(async move { jobs.create_job(job).await.unwrap().id })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids, (1..=12).collect::<BTreeSet<u64>>());
    let (listed, total) = aws.ports.jobs.list_jobs(&a, page(1, 100)).await.unwrap();
    assert_eq!(total, 12);
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        (1..=12).rev().collect::<Vec<u64>>()
    );
}

#[tokio::test]
async fn scheme_reports_apply_to_the_current_file_only() {
    let aws = fresh_aws("scheme").await;
    let jobs = &aws.ports.jobs;
    let a = tenant("acme");
    let job = jobs.create_job(new_job(&a, "files/one")).await.unwrap();

    let errors: Vec<SchemeError> = (1..=30)
        .map(|row| scheme_error(row, &format!("bad email in row {row}")))
        .collect();
    let report = SchemeReport {
        total_rows: 40,
        errors: errors.clone(),
        error_count: 31,
        chunk_plan: plan(2, 20),
    };

    // A report of another file is ignored.
    let unchanged = jobs
        .record_scheme_report(&a, job.id, "files/other", &report, at(5))
        .await
        .unwrap();
    assert_eq!(unchanged.status, JobStatus::Created);
    assert!(jobs.scheme_errors(&a, job.id).await.unwrap().is_empty());

    let recorded = jobs
        .record_scheme_report(&a, job.id, "files/one", &report, at(5))
        .await
        .unwrap();
    assert_eq!(recorded.status, JobStatus::InvalidScheme);
    assert_eq!(recorded.total_rows, 40);
    assert_eq!(recorded.scheme_error_count, 31);
    assert_eq!(recorded.chunk_plan, plan(2, 20));
    assert_eq!(recorded.updated_at, at(5));
    assert_eq!(jobs.scheme_errors(&a, job.id).await.unwrap(), errors);
    assert!(jobs
        .scheme_errors(&tenant("globex"), job.id)
        .await
        .unwrap()
        .is_empty());

    // Recorded once: a second report for the same file changes nothing.
    let again = jobs
        .record_scheme_report(&a, job.id, "files/one", &valid_report(1), at(6))
        .await
        .unwrap();
    assert_eq!(again, recorded);

    // A new file drops the old errors and starts over.
    let new_file = NewFile {
        filename: "fixed.json".to_owned(),
        file_key: "files/two".to_owned(),
        file_bytes: 77,
        at: at(7),
    };
    let replaced = jobs
        .replace_file(&a, job.id, new_file.clone())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(replaced.status, JobStatus::Created);
    assert_eq!(replaced.file_key, "files/two");
    assert_eq!(replaced.filename, "fixed.json");
    assert_eq!(replaced.file_bytes, 77);
    assert_eq!(replaced.scheme_error_count, 0);
    assert!(jobs.scheme_errors(&a, job.id).await.unwrap().is_empty());
    assert_eq!(
        jobs.replace_file(&tenant("globex"), job.id, new_file.clone())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        jobs.replace_file(&a, 999, new_file.clone()).await.unwrap(),
        None
    );

    let fewer = SchemeReport {
        total_rows: 40,
        errors: errors[..2].to_vec(),
        error_count: 2,
        chunk_plan: plan(2, 20),
    };
    let recorded = jobs
        .record_scheme_report(&a, job.id, "files/two", &fewer, at(8))
        .await
        .unwrap();
    assert_eq!(recorded.status, JobStatus::InvalidScheme);
    assert_eq!(
        jobs.scheme_errors(&a, job.id).await.unwrap(),
        errors[..2].to_vec()
    );

    let missing = jobs
        .record_scheme_report(&a, 999, "files/two", &fewer, at(8))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_starts_processing_once() {
    let aws = fresh_aws("start").await;
    let jobs = aws.ports.jobs.clone();
    let a = tenant("acme");
    let job = jobs.create_job(new_job(&a, "files/x")).await.unwrap();

    // Not validated yet: not proceedable.
    let early = jobs
        .start_processing(&a, job.id, "proceeder", at(1))
        .await
        .unwrap();
    assert!(
        matches!(early, Some(ProceedOutcome::NotProceedable(ref j)) if j.status == JobStatus::Created)
    );

    jobs.record_scheme_report(&a, job.id, "files/x", &valid_report(2), at(2))
        .await
        .unwrap();
    assert_eq!(
        jobs.start_processing(&tenant("globex"), job.id, "intruder", at(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        jobs.start_processing(&a, 999, "proceeder", at(3))
            .await
            .unwrap(),
        None
    );

    let calls: Vec<_> = (0..6)
        .map(|n| {
            let jobs = jobs.clone();
            let a = a.clone();
            tokio::spawn(async move {
                jobs.start_processing(&a, job.id, &format!("proceeder-{n}"), at(3))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut started = Vec::new();
    for call in calls {
        if let ProceedOutcome::Started(job) = call.await.unwrap() {
            started.push(job);
        }
    }
    assert_eq!(started.len(), 1, "exactly one caller starts the job");
    let job_now = jobs.get_job(&a, job.id).await.unwrap().unwrap();
    assert_eq!(job_now.status, JobStatus::InProgress);
    assert_eq!(job_now.process_requested_at, Some(at(3)));
    assert_eq!(
        job_now.proceed_api_user_name,
        started[0].proceed_api_user_name
    );

    // Proceeded: the file can no longer be replaced.
    let refused = jobs
        .replace_file(
            &a,
            job.id,
            NewFile {
                filename: "late.json".to_owned(),
                file_key: "files/late".to_owned(),
                file_bytes: 1,
                at: at(4),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.unwrap_err().file_key, "files/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_commit_exactly_once_and_complete_the_job_once() {
    let aws = fresh_aws("commit").await;
    let jobs: Arc<dyn JobStore> = aws.ports.jobs.clone();
    let a = tenant("acme");
    let id = started_job(&aws, &a, 3).await;

    // Chunk 0 with errors, twice for row 1.
    let errors = vec![
        update_error(1, "first problem", ErrorType::Error),
        update_error(1, "second problem", ErrorType::Warning),
        update_error(2, "other row", ErrorType::Error),
    ];
    assert!(!jobs.chunk_committed(id, 0).await.unwrap());
    let first = jobs
        .commit_chunk(chunk(id, 0, errors.clone()))
        .await
        .unwrap();
    assert!(first.newly_committed);
    assert!(!first.completed_job);
    assert!(jobs.chunk_committed(id, 0).await.unwrap());
    assert!(!jobs.chunk_committed(id, 1).await.unwrap());

    // Re-delivered: nothing counted again.
    let again = jobs
        .commit_chunk(chunk(id, 0, errors.clone()))
        .await
        .unwrap();
    assert!(!again.newly_committed);
    assert!(!again.completed_job);
    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    assert_eq!(
        (
            job.affected_rows,
            job.failed_rows,
            job.update_error_count,
            job.chunks_done
        ),
        (10, 1, 3, 1)
    );
    assert_eq!(job.status, JobStatus::InProgress);
    assert_eq!(jobs.update_errors(&a, id).await.unwrap(), errors);

    // The last two chunks concurrently, each delivered several times.
    let calls: Vec<_> = [1u32, 2, 1, 2, 2, 1]
        .into_iter()
        .map(|n| {
            let jobs = jobs.clone();
            let errors = vec![update_error(
                u64::from(n) * 10 + 1,
                "late",
                ErrorType::Error,
            )];
            tokio::spawn(async move { (n, jobs.commit_chunk(chunk(id, n, errors)).await.unwrap()) })
        })
        .collect();
    let mut newly = Vec::new();
    let mut completions = 0;
    for call in calls {
        let (n, commit) = call.await.unwrap();
        if commit.newly_committed {
            newly.push(n);
        }
        if commit.completed_job {
            completions += 1;
        }
    }
    newly.sort_unstable();
    assert_eq!(newly, vec![1, 2], "each chunk is newly committed once");
    assert_eq!(completions, 1, "exactly one commit completes the job");

    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(
        (
            job.affected_rows,
            job.failed_rows,
            job.update_error_count,
            job.chunks_done
        ),
        (30, 3, 5, 3)
    );
    assert!(job.completed_at.is_some());
    let rows: Vec<u64> = jobs
        .update_errors(&a, id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.row)
        .collect();
    assert_eq!(rows, vec![1, 1, 2, 11, 21], "update errors in row order");
    assert!(jobs
        .update_errors(&tenant("globex"), id)
        .await
        .unwrap()
        .is_empty());

    // After completion a re-delivery neither counts nor completes.
    let late = jobs.commit_chunk(chunk(id, 2, Vec::new())).await.unwrap();
    assert!(!late.newly_committed);
    assert!(!late.completed_job);

    // A chunk of a job that does not exist is an error, and leaves nothing behind.
    let missing = jobs.commit_chunk(chunk(999, 0, Vec::new())).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(!jobs.chunk_committed(999, 0).await.unwrap());
}

#[tokio::test]
async fn failing_a_job() {
    let aws = fresh_aws("fail").await;
    let jobs = &aws.ports.jobs;
    let a = tenant("acme");
    let id = started_job(&aws, &a, 2).await;

    jobs.fail_job(id, "the file vanished", at(50))
        .await
        .unwrap();
    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.failure_reason.as_deref(), Some("the file vanished"));
    assert_eq!(job.updated_at, at(50));

    // Only in-progress jobs fail; the reason stays the first one.
    jobs.fail_job(id, "again", at(51)).await.unwrap();
    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    assert_eq!(job.failure_reason.as_deref(), Some("the file vanished"));

    let created = jobs.create_job(new_job(&a, "files/c")).await.unwrap();
    jobs.fail_job(created.id, "nope", at(52)).await.unwrap();
    assert_eq!(
        jobs.get_job(&a, created.id).await.unwrap().unwrap().status,
        JobStatus::Created
    );
    assert!(matches!(
        jobs.fail_job(999, "missing", at(53)).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn users_are_written_read_selected_and_listed() {
    let aws = fresh_aws("users").await;
    let users = &aws.ports.users;
    let a = tenant("acme");
    let b = tenant("globex");

    let first = users.allocate_user_ids(130).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(users.allocate_user_ids(5).await.unwrap(), 131);

    // 130 users in one call: more than 25 writes and more than 100 reads per request.
    let all: Vec<User> = (1..=130)
        .map(|id| {
            let agent = (id % 10 == 0).then(|| format!("A{}", id / 10));
            user(id, &format!("User{id}@Example.com"), agent.as_deref())
        })
        .collect();
    users
        .write_users(&a, all.iter().cloned().map(UserWrite::Put).collect())
        .await
        .unwrap();
    users
        .write_users(
            &b,
            vec![UserWrite::Put(user(500, "user1@example.com", Some("A1")))],
        )
        .await
        .unwrap();

    let mut keys: Vec<String> = all.iter().map(User::email_key).collect();
    keys.push("missing@example.com".to_owned());
    let found = users.users_by_email_keys(&a, &keys).await.unwrap();
    assert_eq!(
        found, all,
        "all found, in the order asked, missing ones left out"
    );
    let theirs = users
        .users_by_email_keys(&b, &["user1@example.com".to_owned()])
        .await
        .unwrap();
    assert_eq!(theirs.iter().map(|u| u.id).collect::<Vec<_>>(), vec![500]);

    // Listing in id order, one page at a time.
    let mut listed = Vec::new();
    for n in 1..=3 {
        let page = users.list_users(&a, page(n, 50)).await.unwrap();
        assert_eq!(page.len(), if n < 3 { 50 } else { 30 });
        listed.extend(page);
    }
    assert_eq!(listed, all);
    assert!(users.list_users(&a, page(4, 50)).await.unwrap().is_empty());

    // Selections: id order, duplicates collapsed, other tenants invisible.
    let by_ids = users
        .select_users(&a, &UserSelector::Ids(vec![42, 7, 42, 999, 500]))
        .await
        .unwrap();
    assert_eq!(by_ids.iter().map(|u| u.id).collect::<Vec<_>>(), vec![7, 42]);
    let by_agents = users
        .select_users(
            &a,
            &UserSelector::AgentNumbers(vec![
                "A3".to_owned(),
                "A1".to_owned(),
                "A1".to_owned(),
                "none".to_owned(),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        by_agents.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![10, 30]
    );
    let by_emails = users
        .select_users(
            &a,
            &UserSelector::Emails(vec![
                "USER9@example.com".to_owned(),
                " user2@example.com ".to_owned(),
                "user9@EXAMPLE.com".to_owned(),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        by_emails.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![2, 9]
    );
    let many: Vec<u64> = (1..=130).rev().collect();
    let by_many = users
        .select_users(&a, &UserSelector::Ids(many))
        .await
        .unwrap();
    assert_eq!(by_many, all);

    // A rename: the user under its new address, the old entry removed. Repeated writes to
    // one key inside a call keep the last.
    let mut renamed = all[4].clone();
    renamed.email = "renamed@example.com".to_owned();
    renamed.agent_number = Some("A77".to_owned());
    let mut interim = renamed.clone();
    interim.first_name = "Interim".to_owned();
    users
        .write_users(
            &a,
            vec![
                UserWrite::Put(interim),
                UserWrite::Put(renamed.clone()),
                UserWrite::DeleteEmail(all[4].email_key()),
            ],
        )
        .await
        .unwrap();
    assert!(users
        .users_by_email_keys(&a, &[all[4].email_key()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        users
            .users_by_email_keys(&a, &["renamed@example.com".to_owned()])
            .await
            .unwrap(),
        vec![renamed.clone()]
    );
    assert_eq!(
        users
            .select_users(&a, &UserSelector::AgentNumbers(vec!["A77".to_owned()]))
            .await
            .unwrap(),
        vec![renamed.clone()]
    );
    assert_eq!(
        users
            .select_users(&a, &UserSelector::Ids(vec![5]))
            .await
            .unwrap(),
        vec![renamed]
    );

    // Writes are idempotent; deleting what is gone is fine.
    users
        .write_users(&a, vec![UserWrite::DeleteEmail(all[4].email_key())])
        .await
        .unwrap();
    users.write_users(&a, Vec::new()).await.unwrap();
    assert_eq!(
        users.list_users(&a, page(1, 1000)).await.unwrap().len(),
        130
    );
}

#[tokio::test]
async fn tenant_settings_and_credentials() {
    let aws = fresh_aws("tenants").await;
    let tenants = &aws.ports.tenants;
    let a = tenant("acme");
    assert_eq!(tenants.settings(&a).await.unwrap(), None);
    let mut settings = TenantSettings::with_defaults(a.clone());
    tenants.put_settings(&settings).await.unwrap();
    assert_eq!(tenants.settings(&a).await.unwrap(), Some(settings.clone()));
    settings.teams.push("Night".to_owned());
    tenants.put_settings(&settings).await.unwrap();
    assert_eq!(tenants.settings(&a).await.unwrap(), Some(settings));
    assert_eq!(tenants.settings(&tenant("globex")).await.unwrap(), None);

    let credential = |key_id: &str| Credential {
        tenant: a.clone(),
        key_id: key_id.to_owned(),
        name: format!("name of {key_id}"),
        secret_sha256: "ab".repeat(32),
        revoked: false,
        created_at: at(9),
    };
    tenants.put_credential(&credential("k1")).await.unwrap();
    tenants.put_credential(&credential("k2")).await.unwrap();
    assert!(tenants.revoke_credential(&a, "k2").await.unwrap());
    assert!(!tenants.revoke_credential(&a, "k3").await.unwrap());
    assert!(!tenants
        .revoke_credential(&tenant("globex"), "k1")
        .await
        .unwrap());
    let stored = tenants.credentials(&a).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|c| (c.key_id.as_str(), c.revoked))
            .collect::<Vec<_>>(),
        vec![("k1", false), ("k2", true)]
    );
    assert_eq!(stored[0], credential("k1"));
    assert!(tenants
        .credentials(&tenant("globex"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn files_are_stored_and_opened_at_an_offset() {
    let aws = fresh_aws("files").await;
    let files = &aws.ports.files;
    let body = Bytes::from_static(b"[{\"email\":\"a@example.com\"},{\"email\":\"b@example.com\"}]");
    files
        .put("acme/jobs/1/file.json", body.clone())
        .await
        .unwrap();

    let mut whole = Vec::new();
    files
        .open("acme/jobs/1/file.json", 0)
        .await
        .unwrap()
        .read_to_end(&mut whole)
        .await
        .unwrap();
    assert_eq!(whole, body);

    let mut rest = Vec::new();
    files
        .open("acme/jobs/1/file.json", 27)
        .await
        .unwrap()
        .read_to_end(&mut rest)
        .await
        .unwrap();
    assert_eq!(rest, &body[27..]);

    let missing = files.open("acme/jobs/2/file.json", 0).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn work_items_are_queued_in_batches() {
    let aws = fresh_aws("queue").await;
    let a = tenant("acme");
    let items = plan(25, 100).work_items(&a, 7, 2_450);
    assert_eq!(items.len(), 25);
    aws.ports.queue.enqueue(&items).await.unwrap();
    aws.ports.queue.enqueue(&[]).await.unwrap();

    let mut received: Vec<WorkItem> = Vec::new();
    for _ in 0..20 {
        if received.len() >= items.len() {
            break;
        }
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&aws.settings.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            let body = message.body().unwrap();
            received.push(serde_json::from_str(body).unwrap());
        }
    }
    received.sort_by_key(|item| item.chunk);
    assert_eq!(received, items);
}

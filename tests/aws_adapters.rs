//! The AWS adapters against the emulator (moto): every port, the DynamoDB layout's
//! exactly-once commits and the batching limits (more than 25 and 100 items per call).

use std::collections::BTreeSet;
use std::sync::Arc;

use bulk_tests::moto::{fresh_aws, fresh_aws_on, Serving};
use bulk_users::adapters::aws::AwsAdapters;
use bulk_users::model::{
    ChunkPlan, ChunkResult, Credential, CredentialPut, ErrorType, JobKind, JobStatus, NewFile,
    NewJob, ProceedOutcome, RowAction, RowResult, SaveOutcome, SchemeError, SchemeReport, TenantId,
    TenantSettings, Timestamp, UpdateError, User, UserChange, UserFilter, UserKey, UserSelector,
    WorkItem,
};
use bulk_users::ports::{JobStore, PageRequest, StoreError, UserStore};
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
        kind: JobKind::Upload,
        filename: "users.json".to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: 123,
        uploaded_api_user_name: "uploader".to_owned(),
        created_at: at(0),
    }
}

/// The whole scheme error log of the tenant's job `id` (none for another tenant's job).
async fn scheme_errors_of(
    jobs: &Arc<dyn JobStore>,
    tenant: &TenantId,
    id: u64,
) -> Vec<SchemeError> {
    match jobs.get_job(tenant, id).await.unwrap() {
        Some(job) => jobs.scheme_errors(&job, page(1, u64::MAX)).await.unwrap(),
        None => Vec::new(),
    }
}

/// The update error log of the tenant's job `id`, read `per_page` entries at a time.
async fn update_errors_of(
    jobs: &Arc<dyn JobStore>,
    tenant: &TenantId,
    id: u64,
    per_page: u64,
) -> Vec<UpdateError> {
    let Some(job) = jobs.get_job(tenant, id).await.unwrap() else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for number in 1.. {
        let got = jobs
            .update_errors(&job, page(number, per_page))
            .await
            .unwrap();
        assert!(got.len() as u64 <= per_page);
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    all
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
        results: Vec::new(),
        at: at(100 + i64::from(chunk)),
    }
}

/// A new user (version 1) with an email and maybe an agent number.
fn user(id: u64, email: &str, agent_number: Option<&str>) -> User {
    let mut user = User::new(id, at(1));
    user.version = 1;
    user.email = Some(email.to_owned());
    user.agent_number = agent_number.map(str::to_owned);
    user.first_name = format!("First{id}");
    user.last_name = "Last".to_owned();
    user.max_chat_limit = Some(3);
    user.max_chat_limit_enabled = true;
    user.roles = vec!["Agent".to_owned()];
    user
}

/// The creation of a user.
fn create(user: &User) -> UserChange {
    UserChange {
        before: None,
        after: user.clone(),
    }
}

/// An edit of a stored user, one version up.
fn edit(before: &User, change: impl FnOnce(&mut User)) -> UserChange {
    let mut after = before.clone();
    change(&mut after);
    after.version = before.version + 1;
    after.updated_at = at(2);
    UserChange {
        before: Some(before.clone()),
        after,
    }
}

fn ids(users: &[User]) -> Vec<u64> {
    users.iter().map(|user| user.id).collect()
}

async fn save(
    users: &dyn UserStore,
    tenant: &TenantId,
    changes: &[UserChange],
) -> Vec<SaveOutcome> {
    users.save_users(tenant, changes).await.unwrap()
}

/// The tenant's live users, all of them, and their total.
async fn listed(users: &dyn UserStore, tenant: &TenantId) -> (Vec<u64>, u64) {
    let (found, total) = users
        .list_users(tenant, &UserFilter::default(), page(1, 1000).into())
        .await
        .unwrap();
    (ids(&found), total)
}

fn row_result(index: u64, action: RowAction, details: &str) -> RowResult {
    RowResult {
        index,
        action,
        user_id: (action != RowAction::Failed).then_some(index + 1000),
        email: Some(format!("user{index}@example.com")),
        external_id: None,
        error: (action == RowAction::Failed).then(|| "InvalidValue".to_owned()),
        details: (!details.is_empty()).then(|| details.to_owned()),
        field: None,
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
    // Racing conditional writes (the tenant's job count): on the emulator that applies them
    // one at a time, as DynamoDB applies each atomically.
    let aws = fresh_aws_on(Serving::Serialized, "ids").await;
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
    // Racing creations each get an ordinal of their own, without gaps: the list is every job,
    // newest first, and its pages are ranges of ordinals.
    let (listed, total) = aws.ports.jobs.list_jobs(&a, page(1, 100)).await.unwrap();
    assert_eq!(total, 12);
    assert_eq!(
        listed.iter().map(|j| j.ordinal).collect::<Vec<_>>(),
        (1..=12).rev().collect::<Vec<u64>>()
    );
    assert_eq!(listed.iter().map(|j| j.id).collect::<BTreeSet<u64>>(), ids);
    let (second, _) = aws.ports.jobs.list_jobs(&a, page(2, 5)).await.unwrap();
    assert_eq!(
        second.iter().map(|j| j.ordinal).collect::<Vec<_>>(),
        vec![7, 6, 5, 4, 3]
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
    assert!(scheme_errors_of(jobs, &a, job.id).await.is_empty());

    let recorded = jobs
        .record_scheme_report(&a, job.id, "files/one", &report, at(5))
        .await
        .unwrap();
    assert_eq!(recorded.status, JobStatus::InvalidScheme);
    assert_eq!(recorded.total_rows, 40);
    assert_eq!(recorded.scheme_error_count, 31);
    assert_eq!(recorded.chunk_plan, plan(2, 20));
    assert_eq!(recorded.updated_at, at(5));
    assert_eq!(scheme_errors_of(jobs, &a, job.id).await, errors);
    assert!(scheme_errors_of(jobs, &tenant("globex"), job.id)
        .await
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
    assert!(scheme_errors_of(jobs, &a, job.id).await.is_empty());
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
        scheme_errors_of(jobs, &a, job.id).await,
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
    // Racing conditional writes: on the emulator that applies them one at a time, as DynamoDB
    // applies each atomically.
    let aws = fresh_aws_on(Serving::Serialized, "start").await;
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
    // Racing commits: on the emulator that serves one request at a time, whose conditional
    // writes are atomic as DynamoDB's are (the threaded moto_server's are not).
    let aws = fresh_aws_on(Serving::Serialized, "commit").await;
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
    assert_eq!(update_errors_of(&jobs, &a, id, 2).await, errors);

    // The last two chunks, each delivered several times, all at once.
    let mut racing = Vec::new();
    for n in [1u32, 2, 1, 2, 2, 1] {
        let jobs = jobs.clone();
        racing.push(tokio::spawn(async move {
            let errors = vec![update_error(
                u64::from(n) * 10 + 1,
                "late",
                ErrorType::Error,
            )];
            (n, jobs.commit_chunk(chunk(id, n, errors)).await.unwrap())
        }));
    }
    let mut newly = Vec::new();
    let mut completions = 0;
    for commit in racing {
        let (n, commit) = commit.await.unwrap();
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
    let rows: Vec<u64> = update_errors_of(&jobs, &a, id, 2)
        .await
        .iter()
        .map(|e| e.row)
        .collect();
    assert_eq!(rows, vec![1, 1, 2, 11, 21], "update errors in row order");
    assert!(update_errors_of(&jobs, &tenant("globex"), id, 2)
        .await
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
async fn jobs_keep_their_kind_and_page_by_cursor() {
    let aws = fresh_aws("kinds").await;
    let jobs = &aws.ports.jobs;
    let a = tenant("acme");
    let b = tenant("globex");

    let kinds = JobKind::ALL;
    let mut ids = Vec::new();
    for (n, kind) in kinds.into_iter().enumerate() {
        let new = NewJob {
            kind,
            ..new_job(&a, &format!("files/{n}"))
        };
        let job = jobs.create_job(new).await.unwrap();
        assert_eq!(job.kind, kind);
        assert_eq!(jobs.get_job(&a, job.id).await.unwrap().unwrap().kind, kind);
        ids.push(job.id);
        if n == 2 {
            // Another tenant's job in between.
            jobs.create_job(new_job(&b, "files/b")).await.unwrap();
        }
    }
    let (listed, _) = jobs.list_jobs(&a, page(1, 10)).await.unwrap();
    assert_eq!(
        listed.iter().map(|job| job.kind).collect::<Vec<_>>(),
        kinds.iter().rev().copied().collect::<Vec<_>>()
    );

    // Cursor paging, newest first, the tenant's jobs only.
    let newest: Vec<u64> = ids.iter().rev().copied().collect();
    let job_ids = |jobs: Vec<bulk_users::model::Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    // The cursor is the ordinal of the last job of the page before: 1, 2, … in the order the
    // tenant's jobs were created.
    let ordinal_after = |page: &[bulk_users::model::Job]| page.last().map(|job| job.ordinal);
    let first = jobs.jobs_before(&a, None, 3).await.unwrap();
    let second = jobs
        .jobs_before(&a, ordinal_after(&first), 3)
        .await
        .unwrap();
    let last = jobs
        .jobs_before(&a, ordinal_after(&second), 3)
        .await
        .unwrap();
    assert_eq!(job_ids(first), newest[..3]);
    assert_eq!(job_ids(second), newest[3..6]);
    assert_eq!(job_ids(last.clone()), newest[6..]);
    assert_eq!(last.last().map(|job| job.ordinal), Some(1));
    assert!(jobs.jobs_before(&a, Some(1), 3).await.unwrap().is_empty());
    assert_eq!(
        job_ids(jobs.jobs_before(&a, None, 100).await.unwrap()),
        newest
    );
    assert!(jobs.jobs_before(&a, None, 0).await.unwrap().is_empty());
    assert_eq!(jobs.jobs_before(&b, None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn row_results_are_committed_once_with_their_chunk() {
    let aws = fresh_aws("results").await;
    let jobs = &aws.ports.jobs;
    let a = tenant("acme");
    let id = started_job(&aws, &a, 3).await;
    assert!(jobs.results(&a, id).await.unwrap().is_empty());

    // Chunk 1 first, its rows out of order.
    let chunk1: Vec<RowResult> = [1_012, 1_010, 1_011]
        .into_iter()
        .map(|index| row_result(index, RowAction::Updated, ""))
        .collect();
    let mut result = chunk(id, 1, Vec::new());
    result.results = chunk1.clone();
    assert!(
        jobs.commit_chunk(result.clone())
            .await
            .unwrap()
            .newly_committed
    );
    // A re-delivery with other results changes nothing.
    result.results = vec![row_result(1_010, RowAction::Failed, "again")];
    assert!(!jobs.commit_chunk(result).await.unwrap().newly_committed);

    // Chunk 0: 1,000 rows of about 1 KB each, more than one item holds.
    let big: Vec<RowResult> = (0..1_000)
        .map(|index| row_result(index, RowAction::Failed, &"x".repeat(1_000)))
        .collect();
    let mut result = chunk(id, 0, Vec::new());
    result.results = big.clone();
    assert!(
        jobs.commit_chunk(result.clone())
            .await
            .unwrap()
            .newly_committed
    );
    assert!(!jobs.commit_chunk(result).await.unwrap().newly_committed);

    // Chunk 2 records none.
    assert!(
        jobs.commit_chunk(chunk(id, 2, Vec::new()))
            .await
            .unwrap()
            .completed_job
    );

    let mut expected = big;
    let mut sorted = chunk1;
    sorted.sort_by_key(|row| row.index);
    expected.extend(sorted);
    let stored = jobs.results(&a, id).await.unwrap();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(stored, expected, "every committed result, in row order");
    assert!(jobs
        .results(&tenant("globex"), id)
        .await
        .unwrap()
        .is_empty());
    assert!(jobs.results(&a, 999).await.unwrap().is_empty());
}

#[tokio::test]
async fn users_are_created_with_their_keys_and_found_by_any() {
    let aws = fresh_aws("users").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");

    let first = users.allocate_user_ids(130).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(users.allocate_user_ids(5).await.unwrap(), 131);

    // 130 users with 3 keys each in one call: several transactions, more than 100 reads.
    let all: Vec<User> = (1..=130)
        .map(|id| {
            let agent = (id % 10 == 0).then(|| format!("A{}", id / 10));
            let mut user = user(id, &format!("User{id}@Example.com"), agent.as_deref());
            user.external_id = Some(format!("ext-{id}"));
            user.user_name = Some(format!("Login{id}"));
            user
        })
        .collect();
    let changes: Vec<UserChange> = all.iter().map(create).collect();
    let outcomes = save(users, &a, &changes).await;
    assert!(
        outcomes.iter().all(|o| *o == SaveOutcome::Saved),
        "{outcomes:?}"
    );

    let mut keys: Vec<UserKey> = all
        .iter()
        .map(|u| UserKey::email(u.email.as_deref().unwrap()))
        .collect();
    keys.push(UserKey::email("missing@example.com"));
    assert_eq!(users.users_by_keys(&a, &keys).await.unwrap(), all);
    let by_others = users
        .users_by_keys(
            &a,
            &[
                UserKey::external_id("EXT-7"),
                UserKey::user_name("login7"),
                UserKey::email("user7@example.com"),
                UserKey::user_name("login9"),
                UserKey::external_id("login9"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&by_others),
        vec![7, 9],
        "each user once, whatever the key"
    );
    assert_eq!(
        users.users_by_ids(&a, &[9, 7, 9, 999]).await.unwrap(),
        vec![all[6].clone(), all[8].clone()]
    );

    // Listing in id order, one page at a time, with the total.
    let mut pages = Vec::new();
    for n in 1..=3 {
        let (found, total) = users
            .list_users(&a, &UserFilter::default(), page(n, 50).into())
            .await
            .unwrap();
        assert_eq!(found.len(), if n < 3 { 50 } else { 30 });
        assert_eq!(total, 130);
        pages.extend(found);
    }
    assert_eq!(pages, all);
    let (beyond, total) = users
        .list_users(&a, &UserFilter::default(), page(4, 50).into())
        .await
        .unwrap();
    assert!(beyond.is_empty());
    assert_eq!(total, 130);

    // Selections: id order, duplicates collapsed.
    let by_ids = users
        .select_users(&a, &UserSelector::Ids(vec![42, 7, 42, 999]))
        .await
        .unwrap();
    assert_eq!(ids(&by_ids), vec![7, 42]);
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
    assert_eq!(ids(&by_agents), vec![10, 30]);
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
    assert_eq!(ids(&by_emails), vec![2, 9]);
    let many: Vec<u64> = (1..=130).rev().collect();
    assert_eq!(
        users
            .select_users(&a, &UserSelector::Ids(many))
            .await
            .unwrap(),
        all
    );
    assert!(users.users_by_keys(&a, &[]).await.unwrap().is_empty());
    assert!(users.users_by_ids(&a, &[]).await.unwrap().is_empty());
    assert!(save(users, &a, &[]).await.is_empty());
}

#[tokio::test]
async fn keys_are_unique_and_versions_guard_changes() {
    let aws = fresh_aws("unique").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");
    let mut ann = user(1, "ann@example.com", Some("A1"));
    ann.user_name = Some("ann".to_owned());
    assert_eq!(
        save(users, &a, &[create(&ann)]).await,
        vec![SaveOutcome::Saved]
    );

    // A second user claiming a taken email (in other case) is refused, and nothing of it is
    // written: neither the user nor its other keys.
    let mut intruder = user(2, "ANN@example.com", None);
    intruder.user_name = Some("intruder".to_owned());
    assert_eq!(
        save(users, &a, &[create(&intruder)]).await,
        vec![SaveOutcome::KeyTaken(UserKey::email("ann@example.com"))]
    );
    assert!(users.users_by_ids(&a, &[2]).await.unwrap().is_empty());
    assert!(users
        .users_by_keys(&a, &[UserKey::user_name("intruder")])
        .await
        .unwrap()
        .is_empty());
    let mut other = user(3, "other@example.com", None);
    other.user_name = Some("Intruder".to_owned());
    assert_eq!(
        save(users, &a, &[create(&other)]).await,
        vec![SaveOutcome::Saved]
    );

    // Re-saving the same new user is saved (an earlier run did it); another user under a
    // taken id is stale.
    assert_eq!(
        save(users, &a, &[create(&ann)]).await,
        vec![SaveOutcome::Saved]
    );
    let mut impostor = user(1, "impostor@example.com", None);
    impostor.first_name = "Impostor".to_owned();
    assert_eq!(
        save(users, &a, &[create(&impostor)]).await,
        vec![SaveOutcome::Stale]
    );
    assert!(users
        .users_by_keys(&a, &[UserKey::email("impostor@example.com")])
        .await
        .unwrap()
        .is_empty());

    // An edit of a version that is no longer stored is stale.
    let renamed = edit(&ann, |u| u.first_name = "Annie".to_owned());
    assert_eq!(
        save(users, &a, std::slice::from_ref(&renamed)).await,
        vec![SaveOutcome::Saved]
    );
    let late = edit(&ann, |u| u.first_name = "Late".to_owned());
    assert_eq!(save(users, &a, &[late]).await, vec![SaveOutcome::Stale]);
    let ann = renamed.after;
    assert_eq!(
        users.users_by_ids(&a, &[1]).await.unwrap(),
        vec![ann.clone()]
    );

    // A new email releases the old one, which another user can then take; the agent number
    // index follows the user.
    let moved = edit(&ann, |u| {
        u.email = Some("ann.lee@example.com".to_owned());
        u.agent_number = Some("A77".to_owned());
    });
    let mut bob = user(4, "Ann@Example.com", None);
    bob.first_name = "Bob".to_owned();
    // In one call: the release comes first, so the claim succeeds.
    assert_eq!(
        save(users, &a, &[moved.clone(), create(&bob)]).await,
        vec![SaveOutcome::Saved, SaveOutcome::Saved]
    );
    let ann = moved.after;
    let found = users
        .users_by_keys(
            &a,
            &[
                UserKey::email("ann@example.com"),
                UserKey::email("ann.lee@example.com"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![ann.clone(), bob.clone()]);
    assert_eq!(
        users
            .select_users(&a, &UserSelector::AgentNumbers(vec!["A77".to_owned()]))
            .await
            .unwrap(),
        vec![ann.clone()]
    );
    assert!(users
        .select_users(&a, &UserSelector::AgentNumbers(vec!["A1".to_owned()]))
        .await
        .unwrap()
        .is_empty());
    // Bob cannot take Ann's user name.
    let grab = edit(&bob, |u| u.user_name = Some("ANN".to_owned()));
    assert_eq!(
        save(users, &a, &[grab]).await,
        vec![SaveOutcome::KeyTaken(UserKey::user_name("ann"))]
    );
}

#[tokio::test]
async fn deleted_users_release_their_keys_and_are_hidden() {
    let aws = fresh_aws("deleted").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");
    let mut ann = user(1, "ann@example.com", Some("A1"));
    ann.external_id = Some("ext-1".to_owned());
    ann.user_name = Some("ann".to_owned());
    let bob = user(2, "bob@example.com", Some("A1"));
    assert_eq!(
        save(users, &a, &[create(&ann), create(&bob)]).await,
        vec![SaveOutcome::Saved; 2]
    );

    let deletion = edit(&ann, |u| u.deleted_at = Some(at(3)));
    assert_eq!(
        save(users, &a, std::slice::from_ref(&deletion)).await,
        vec![SaveOutcome::Saved]
    );
    let deleted = deletion.after;

    let keys = [
        UserKey::email("ann@example.com"),
        UserKey::external_id("ext-1"),
        UserKey::user_name("ann"),
    ];
    assert!(users.users_by_keys(&a, &keys).await.unwrap().is_empty());
    assert_eq!(listed(users, &a).await, (vec![2], 1));
    for selector in [
        UserSelector::Ids(vec![1, 2]),
        UserSelector::Emails(vec![
            "ann@example.com".to_owned(),
            "bob@example.com".to_owned(),
        ]),
        UserSelector::AgentNumbers(vec!["A1".to_owned()]),
    ] {
        let selected = users.select_users(&a, &selector).await.unwrap();
        assert_eq!(ids(&selected), vec![2], "{selector:?}");
    }
    // Still there for a re-run to see.
    assert_eq!(
        users.users_by_ids(&a, &[1, 2]).await.unwrap(),
        vec![deleted, bob]
    );

    // Every key is free again.
    let mut heir = user(3, "ANN@example.com", None);
    heir.external_id = Some("EXT-1".to_owned());
    heir.user_name = Some("Ann".to_owned());
    assert_eq!(
        save(users, &a, &[create(&heir)]).await,
        vec![SaveOutcome::Saved]
    );
    assert_eq!(users.users_by_keys(&a, &keys).await.unwrap(), vec![heir]);
}

#[tokio::test]
async fn a_refused_change_among_many_leaves_the_others_saved() {
    let aws = fresh_aws("many").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");
    let holder = user(1_000, "taken@example.com", None);
    assert_eq!(
        save(users, &a, &[create(&holder)]).await,
        vec![SaveOutcome::Saved]
    );

    // 150 new users (300 items: three transactions at least); number 75 wants a taken email.
    let batch: Vec<User> = (1..=150)
        .map(|id| {
            let email = if id == 75 {
                "Taken@example.com".to_owned()
            } else {
                format!("user{id}@example.com")
            };
            user(id, &email, None)
        })
        .collect();
    let changes: Vec<UserChange> = batch.iter().map(create).collect();
    let outcomes = save(users, &a, &changes).await;
    for (at, outcome) in outcomes.iter().enumerate() {
        let expected = if at == 74 {
            SaveOutcome::KeyTaken(UserKey::email("taken@example.com"))
        } else {
            SaveOutcome::Saved
        };
        assert_eq!(*outcome, expected, "change {at}");
    }
    let (listed_ids, total) = listed(users, &a).await;
    assert_eq!(total, 150);
    assert!(!listed_ids.contains(&75));
    assert!(listed_ids.contains(&1_000));

    // Again: all saved before (none changed since), the refused one still refused.
    let again = save(users, &a, &changes).await;
    assert_eq!(again, outcomes);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let aws = fresh_aws("isolated").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");
    let b = tenant("globex");
    let ours = user(1, "same@example.com", Some("A1"));
    let theirs = user(2, "same@example.com", Some("A1"));
    assert_eq!(
        save(users, &a, &[create(&ours)]).await,
        vec![SaveOutcome::Saved]
    );
    assert_eq!(
        save(users, &b, &[create(&theirs)]).await,
        vec![SaveOutcome::Saved]
    );

    let key = [UserKey::email("same@example.com")];
    assert_eq!(
        users.users_by_keys(&a, &key).await.unwrap(),
        vec![ours.clone()]
    );
    assert_eq!(
        users.users_by_keys(&b, &key).await.unwrap(),
        vec![theirs.clone()]
    );
    assert!(users.users_by_ids(&a, &[2]).await.unwrap().is_empty());
    assert!(users.users_by_ids(&b, &[1]).await.unwrap().is_empty());
    assert!(users
        .select_users(&a, &UserSelector::Ids(vec![2]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&users
            .select_users(&b, &UserSelector::AgentNumbers(vec!["A1".to_owned()]))
            .await
            .unwrap()),
        vec![2]
    );
    assert_eq!(listed(users, &a).await, (vec![1], 1));
    assert_eq!(listed(users, &b).await, (vec![2], 1));
    assert_eq!(listed(users, &tenant("nobody")).await, (vec![], 0));

    // An edit under the wrong tenant finds no such user.
    let stray = edit(&theirs, |u| u.first_name = "Stray".to_owned());
    assert_eq!(save(users, &a, &[stray]).await, vec![SaveOutcome::Stale]);
    assert_eq!(users.users_by_ids(&b, &[2]).await.unwrap(), vec![theirs]);
}

#[tokio::test]
async fn listings_filter_on_the_user_name() {
    let aws = fresh_aws("filter").await;
    let users = aws.ports.users.as_ref();
    let a = tenant("acme");
    let names = [
        Some("ann.lee"),
        None,
        Some("Joanna"),
        Some("bob"),
        Some("ANNIKA"),
        Some("annex"),
    ];
    let all: Vec<User> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let id = n as u64 + 1;
            let mut user = user(id, &format!("u{id}@example.com"), None);
            user.user_name = name.map(str::to_owned);
            user
        })
        .collect();
    let changes: Vec<UserChange> = all.iter().map(create).collect();
    assert!(save(users, &a, &changes)
        .await
        .iter()
        .all(|o| *o == SaveOutcome::Saved));
    // The last one is deleted: never listed.
    let deletion = edit(&all[5], |u| u.deleted_at = Some(at(3)));
    assert_eq!(save(users, &a, &[deletion]).await, vec![SaveOutcome::Saved]);

    // Another tenant's "annie" is not theirs.
    let mut other = user(7, "u7@example.com", None);
    other.user_name = Some("annie".to_owned());
    assert_eq!(
        save(users, &tenant("globex"), &[create(&other)]).await,
        vec![SaveOutcome::Saved]
    );

    let acme = &a;
    let list = |text: &'static str, n: u64, per_page: u64| async move {
        let (found, total) = users
            .list_users(
                acme,
                &UserFilter::user_name_starting_with(text),
                page(n, per_page).into(),
            )
            .await
            .unwrap();
        (ids(&found), total)
    };
    // From the start of the name, case-insensitively, in user name order ("ann.lee",
    // "annika"): "Joanna" contains "ann" but does not start with it.
    assert_eq!(list("ANN", 1, 10).await, (vec![1, 5], 2));
    assert_eq!(list("ann", 2, 1).await, (vec![5], 2));
    assert_eq!(list("ann", 3, 1).await, (vec![], 2));
    assert_eq!(list("zed", 1, 10).await, (vec![], 0));
    assert_eq!(list("", 2, 2).await, (vec![3, 4], 5));
    // A renamed user is found by the new name only.
    let renamed = edit(&all[0], |u| u.user_name = Some("zed".to_owned()));
    assert_eq!(save(users, &a, &[renamed]).await, vec![SaveOutcome::Saved]);
    assert_eq!(list("ann", 1, 10).await, (vec![5], 1));
    assert_eq!(list("ZE", 1, 10).await, (vec![1], 1));
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

    let credential = |tenant: &TenantId, key_id: &str, secret: &str| {
        let key = &aws.ports.master_key;
        Credential {
            tenant: tenant.clone(),
            key_id: key_id.to_owned(),
            name: format!("name of {key_id}"),
            sealed_secret: key.seal(tenant, key_id, secret),
            secret_lookup: key.secret_lookup(secret),
            revoked: false,
            created_at: at(9),
        }
    };
    let k1 = credential(&a, "k1", "secret-1");
    assert_eq!(
        tenants.put_credential(&k1).await.unwrap(),
        CredentialPut::Stored
    );
    assert_eq!(
        tenants
            .put_credential(&credential(&a, "k2", "secret-2"))
            .await
            .unwrap(),
        CredentialPut::Stored
    );
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
    assert_eq!(stored[0], k1);
    assert_eq!(
        aws.ports.master_key.open_credential(&stored[0]).as_deref(),
        Some("secret-1")
    );
    assert!(tenants
        .credentials(&tenant("globex"))
        .await
        .unwrap()
        .is_empty());

    // Found by key id and by secret, whatever the tenant; revoked ones too.
    assert_eq!(
        tenants.credential_by_key_id("k1").await.unwrap(),
        Some(k1.clone())
    );
    assert!(
        tenants
            .credential_by_key_id("k2")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(tenants.credential_by_key_id("k3").await.unwrap(), None);
    let lookup = aws.ports.master_key.secret_lookup("secret-1");
    assert_eq!(
        tenants.credential_by_secret_lookup(&lookup).await.unwrap(),
        Some(k1.clone())
    );
    assert_eq!(
        tenants
            .credential_by_secret_lookup(&aws.ports.master_key.secret_lookup("nope"))
            .await
            .unwrap(),
        None
    );

    // Key ids are global, and so are secrets.
    let globex = tenant("globex");
    assert_eq!(
        tenants
            .put_credential(&credential(&globex, "k1", "secret-g"))
            .await
            .unwrap(),
        CredentialPut::KeyIdTaken
    );
    assert_eq!(
        tenants
            .put_credential(&credential(&globex, "g1", "secret-1"))
            .await
            .unwrap(),
        CredentialPut::SecretTaken
    );
    assert!(tenants.credentials(&globex).await.unwrap().is_empty());
    assert_eq!(tenants.credential_by_key_id("g1").await.unwrap(), None);

    // The same tenant and key id replace the credential; its old secret finds nothing.
    let replaced = credential(&a, "k1", "secret-1b");
    assert_eq!(
        tenants.put_credential(&replaced).await.unwrap(),
        CredentialPut::Stored
    );
    assert_eq!(
        tenants.credential_by_secret_lookup(&lookup).await.unwrap(),
        None
    );
    assert_eq!(
        tenants
            .credential_by_secret_lookup(&aws.ports.master_key.secret_lookup("secret-1b"))
            .await
            .unwrap(),
        Some(replaced)
    );
    // The freed secret can be another credential's now.
    assert_eq!(
        tenants
            .put_credential(&credential(&globex, "g1", "secret-1"))
            .await
            .unwrap(),
        CredentialPut::Stored
    );
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

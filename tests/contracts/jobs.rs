//! The `JobStore` contract: jobs scoped by tenant, the status changes of the job state
//! machine applied once each, chunks committed exactly once, the error logs and row results.

use std::collections::BTreeSet;

use bulk_users::model::{
    ChunkPlan, ErrorType, Job, JobKind, JobStatus, NewFile, NewJob, RowAction, RowResult,
    SchemeError, SchemeReport, StatusChange, StatusChanged, TenantId,
};
use bulk_users::ports::StoreError;

use crate::fixtures::{
    at, chunk, new_job, page, plan, proceed, row_result, scheme_error, scheme_errors_of,
    started_job, tenant, update_error, update_errors_of, valid_report, Adapters,
};

contracts!(Threaded:
    jobs_are_created_scoped_by_tenant_and_listed_newest_first,
    scheme_reports_apply_to_the_current_file_only,
    the_file_is_replaced_until_the_job_is_proceeded,
    failing_a_job,
    cancelling_resuming_and_completing_follow_the_state_machine,
    jobs_keep_their_kind_and_page_by_cursor,
    row_results_are_committed_once_with_their_chunk,
);
contracts!(Serialized:
    concurrent_creations_get_distinct_ids,
    a_job_starts_processing_once,
    chunks_commit_exactly_once_and_complete_the_job_once,
);

fn job_ids(jobs: &[Job]) -> Vec<u64> {
    jobs.iter().map(|job| job.id).collect()
}

fn new_file(file_key: &str, at_second: i64) -> NewFile {
    NewFile {
        filename: "fixed.json".to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: 77,
        at: at(at_second),
    }
}

async fn jobs_are_created_scoped_by_tenant_and_listed_newest_first(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
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
        assert_eq!((job.created_at, job.updated_at), (at(0), at(0)));
        ids.push(job.id);
    }
    assert_eq!(ids, vec![1, 2, 3], "ids start at 1 and increase");
    // Ids are numbered per tenant: another tenant's first job is its job 1, and neither
    // tenant's job 1 is the other's.
    let other = jobs.create_job(new_job(&b, "files/b")).await.unwrap();
    assert_eq!((other.id, other.ordinal), (1, 1));
    let theirs = jobs.get_job(&b, 1).await.unwrap().unwrap();
    assert_eq!(
        (theirs.tenant, theirs.file_key),
        (b.clone(), "files/b".to_owned())
    );
    let ours = jobs.get_job(&a, 1).await.unwrap().unwrap();
    assert_eq!(
        (ours.tenant, ours.file_key),
        (a.clone(), "files/0".to_owned())
    );

    let stored = jobs.get_job(&a, 2).await.unwrap().unwrap();
    assert_eq!(stored.file_key, "files/1");
    assert_eq!(stored.filename, "users.json");
    assert_eq!(stored.uploaded_api_user_name, "uploader");
    assert_eq!(stored.created_at, at(0));
    assert_eq!(stored.chunk_plan, ChunkPlan::default());
    assert_eq!(jobs.get_job(&b, 2).await.unwrap(), None, "another tenant's");
    assert_eq!(jobs.get_job(&a, 99).await.unwrap(), None);
    assert_eq!(jobs.get_job(&a, u64::MAX).await.unwrap(), None);

    let listed = |tenant, number, per_page| async move {
        let (found, total) = jobs
            .list_jobs(&tenant, page(number, per_page))
            .await
            .unwrap();
        (job_ids(&found), total)
    };
    assert_eq!(listed(a.clone(), 1, 2).await, (vec![3, 2], 3));
    assert_eq!(listed(a.clone(), 2, 2).await, (vec![1], 3));
    assert_eq!(listed(a.clone(), 3, 2).await, (vec![], 3));
    assert_eq!(listed(b.clone(), 1, 10).await, (vec![1], 1));
    assert_eq!(listed(tenant("nobody"), 1, 10).await, (vec![], 0));
}

async fn concurrent_creations_get_distinct_ids(adapters: Adapters) {
    let a = tenant("acme");
    let tasks: Vec<_> = (0..12)
        .map(|n| {
            let jobs = adapters.ports.jobs.clone();
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
    let jobs = &adapters.ports.jobs;
    let (listed, total) = jobs.list_jobs(&a, page(1, 100)).await.unwrap();
    assert_eq!(total, 12);
    assert_eq!(
        listed.iter().map(|j| j.ordinal).collect::<Vec<_>>(),
        (1..=12).rev().collect::<Vec<u64>>()
    );
    assert_eq!(listed.iter().map(|j| j.id).collect::<BTreeSet<u64>>(), ids);
    let (second, _) = jobs.list_jobs(&a, page(2, 5)).await.unwrap();
    assert_eq!(
        second.iter().map(|j| j.ordinal).collect::<Vec<_>>(),
        vec![7, 6, 5, 4, 3]
    );
}

async fn scheme_reports_apply_to_the_current_file_only(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let job = jobs.create_job(new_job(&a, "files/one")).await.unwrap();

    // Kept in the order given, a row-less error among them.
    let mut errors: Vec<SchemeError> = (1..=30)
        .rev()
        .map(|row| scheme_error(Some(row), &format!("bad email in row {row}")))
        .collect();
    errors.push(scheme_error(None, "the file ends early"));
    let report = SchemeReport {
        total_rows: 40,
        errors: errors.clone(),
        error_count: 32,
        chunk_plan: plan(2, 20),
        file_version: Some("version-1".to_owned()),
    };

    // A report of another file is ignored.
    let unchanged = jobs
        .record_scheme_report(&a, job.id, "files/other", &report, at(5))
        .await
        .unwrap();
    assert_eq!(unchanged, job);
    assert!(scheme_errors_of(jobs, &a, job.id).await.is_empty());

    let recorded = jobs
        .record_scheme_report(&a, job.id, "files/one", &report, at(5))
        .await
        .unwrap();
    assert_eq!(recorded.status, JobStatus::InvalidScheme);
    assert_eq!(recorded.total_rows, 40);
    assert_eq!(recorded.scheme_error_count, 32);
    assert_eq!(recorded.chunk_plan, plan(2, 20));
    assert_eq!(recorded.updated_at, at(5));
    let pinned = recorded.file_version.as_deref();
    assert_eq!(
        pinned,
        Some("version-1"),
        "the version validated is recorded"
    );
    assert_eq!(scheme_errors_of(jobs, &a, job.id).await, errors);
    assert!(scheme_errors_of(jobs, &tenant("globex"), job.id)
        .await
        .is_empty());
    // Another tenant's report does not reach the job.
    let theirs = jobs
        .record_scheme_report(
            &tenant("globex"),
            job.id,
            "files/one",
            &valid_report(1),
            at(6),
        )
        .await;
    assert!(matches!(theirs, Err(StoreError::NotFound(_))), "{theirs:?}");

    // Recorded once: a second report for the same file changes nothing.
    let again = jobs
        .record_scheme_report(&a, job.id, "files/one", &valid_report(1), at(6))
        .await
        .unwrap();
    assert_eq!(again, recorded);
    assert_eq!(scheme_errors_of(jobs, &a, job.id).await, errors);

    let missing = jobs
        .record_scheme_report(&a, 999, "files/one", &report, at(8))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

async fn the_file_is_replaced_until_the_job_is_proceeded(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let job = jobs.create_job(new_job(&a, "files/one")).await.unwrap();
    let errors: Vec<SchemeError> = (1..=3)
        .map(|row| scheme_error(Some(row), "bad email"))
        .collect();
    let invalid = SchemeReport {
        total_rows: 40,
        errors: errors.clone(),
        error_count: 3,
        chunk_plan: plan(2, 20),
        file_version: Some("version-1".to_owned()),
    };
    jobs.record_scheme_report(&a, job.id, "files/one", &invalid, at(5))
        .await
        .unwrap();

    // A new file drops the old errors and starts over.
    let replaced = jobs
        .replace_file(&a, job.id, new_file("files/two", 7))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(replaced.status, JobStatus::Created);
    assert_eq!(
        replaced.file_version, None,
        "the new file is not validated yet"
    );
    assert_eq!(
        (replaced.file_key.as_str(), replaced.filename.as_str()),
        ("files/two", "fixed.json")
    );
    assert_eq!(
        (
            replaced.file_bytes,
            replaced.total_rows,
            replaced.scheme_error_count
        ),
        (77, 0, 0)
    );
    assert_eq!(replaced.chunk_plan, ChunkPlan::default());
    assert_eq!((replaced.created_at, replaced.updated_at), (at(0), at(7)));
    assert!(scheme_errors_of(jobs, &a, job.id).await.is_empty());
    let globex = tenant("globex");
    let elsewhere = jobs.replace_file(&globex, job.id, new_file("files/x", 7));
    assert_eq!(elsewhere.await.unwrap(), None);
    assert_eq!(
        jobs.replace_file(&a, 999, new_file("files/x", 7))
            .await
            .unwrap(),
        None
    );

    // The new file's report is the one recorded.
    let fewer = SchemeReport {
        errors: errors[..2].to_vec(),
        error_count: 2,
        ..invalid
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

    // Proceeded: the file can no longer be replaced.
    let started = started_job(jobs, &a, 2).await;
    let refused = jobs
        .replace_file(&a, started.id, new_file("files/late", 9))
        .await
        .unwrap()
        .unwrap();
    let unchanged = refused.unwrap_err();
    assert_eq!(unchanged.status, JobStatus::InProgress);
    assert_eq!(unchanged.file_key, "files/started");
}

async fn a_job_starts_processing_once(adapters: Adapters) {
    let jobs = adapters.ports.jobs.clone();
    let a = tenant("acme");
    let job = jobs.create_job(new_job(&a, "files/x")).await.unwrap();

    // Not validated yet: not proceedable.
    let by_proceeder = proceed("proceeder");
    let early = jobs.change_status(&a, job.id, &by_proceeder, at(1));
    assert_eq!(early.await.unwrap(), StatusChanged::Refused(job.clone()));

    jobs.record_scheme_report(&a, job.id, "files/x", &valid_report(2), at(2))
        .await
        .unwrap();
    let globex = tenant("globex");
    let by_intruder = proceed("intruder");
    let intruder = jobs.change_status(&globex, job.id, &by_intruder, at(3));
    assert_eq!(intruder.await.unwrap(), StatusChanged::Missing);
    let missing = jobs.change_status(&a, 999, &by_proceeder, at(3));
    assert_eq!(missing.await.unwrap(), StatusChanged::Missing);

    let calls: Vec<_> = (0..6)
        .map(|n| {
            let jobs = jobs.clone();
            let a = a.clone();
            let by = proceed(&format!("proceeder-{n}"));
            tokio::spawn(async move { jobs.change_status(&a, job.id, &by, at(3)).await.unwrap() })
        })
        .collect();
    let mut started = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            StatusChanged::Changed(job) => started.push(job),
            StatusChanged::Refused(job) => assert_eq!(job.status, JobStatus::InProgress),
            StatusChanged::Missing => panic!("the job vanished"),
        }
    }
    assert_eq!(started.len(), 1, "exactly one caller starts the job");
    let job_now = jobs.get_job(&a, job.id).await.unwrap().unwrap();
    assert_eq!(job_now, started[0]);
    assert_eq!(job_now.status, JobStatus::InProgress);
    assert_eq!(job_now.process_requested_at, Some(at(3)));
    assert!(job_now.proceed_api_user_name.is_some());
}

async fn chunks_commit_exactly_once_and_complete_the_job_once(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let id = started_job(jobs, &a, 3).await.id;

    // Chunk 0 with errors, in row order as the processor commits them, twice for row 1.
    let errors = vec![
        update_error(1, "first problem", ErrorType::Error),
        update_error(1, "second problem", ErrorType::Warning),
        update_error(2, "other row", ErrorType::Error),
    ];
    assert!(!jobs.chunk_committed(&a, id, 0).await.unwrap());
    let first = jobs
        .commit_chunk(chunk(id, 0, errors.clone()))
        .await
        .unwrap();
    assert!(first.newly_committed);
    assert!(!first.completed_job);
    assert!(jobs.chunk_committed(&a, id, 0).await.unwrap());
    assert!(!jobs.chunk_committed(&a, id, 1).await.unwrap());

    // Re-delivered, even with other errors: nothing counted again.
    let redelivered = vec![update_error(9, "again", ErrorType::Error)];
    let again = jobs.commit_chunk(chunk(id, 0, redelivered)).await.unwrap();
    assert!(!again.newly_committed);
    assert!(!again.completed_job);
    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    let counts = |job: &Job| {
        (
            job.affected_rows,
            job.failed_rows,
            job.update_error_count,
            job.chunks_done,
        )
    };
    assert_eq!(counts(&job), (7, 3, 3, 1));
    assert_eq!(
        (job.status, job.completed_at),
        (JobStatus::InProgress, None)
    );
    assert_eq!(update_errors_of(jobs, &a, id, 2).await, errors);

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
    let mut completions = Vec::new();
    for commit in racing {
        let (n, commit) = commit.await.unwrap();
        if commit.newly_committed {
            newly.push(n);
        }
        if commit.completed_job {
            assert!(commit.newly_committed, "only a new commit completes");
            completions.push(n);
        }
    }
    newly.sort_unstable();
    assert_eq!(newly, vec![1, 2], "each chunk is newly committed once");
    assert_eq!(completions.len(), 1, "exactly one commit completes the job");

    let job = jobs.get_job(&a, id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(counts(&job), (25, 5, 5, 3));
    assert_eq!(job.completed_at, Some(at(100 + i64::from(completions[0]))));
    let rows: Vec<u64> = update_errors_of(jobs, &a, id, 2)
        .await
        .iter()
        .map(|e| e.row)
        .collect();
    assert_eq!(rows, vec![1, 1, 2, 11, 21], "update errors in row order");
    assert!(update_errors_of(jobs, &tenant("globex"), id, 2)
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
    assert!(!jobs.chunk_committed(&a, 999, 0).await.unwrap());
}

async fn failing_a_job(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let id = started_job(jobs, &a, 2).await.id;
    let fail = |tenant: &TenantId, id, reason: &str, second| {
        let (tenant, reason) = (tenant.clone(), reason.to_owned());
        async move {
            let change = StatusChange::Fail { reason };
            jobs.change_status(&tenant, id, &change, at(second))
                .await
                .unwrap()
        }
    };

    let elsewhere = fail(&tenant("globex"), id, "theirs", 49).await;
    assert_eq!(elsewhere, StatusChanged::Missing);
    let StatusChanged::Changed(failed) = fail(&a, id, "the file vanished", 50).await else {
        panic!("not failed");
    };
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.failure_reason.as_deref(), Some("the file vanished"));
    assert_eq!(failed.updated_at, at(50));
    assert_eq!(jobs.get_job(&a, id).await.unwrap(), Some(failed.clone()));

    // Only in-progress jobs fail; a failed job stays as it failed.
    assert_eq!(
        fail(&a, id, "again", 51).await,
        StatusChanged::Refused(failed)
    );
    let created = jobs.create_job(new_job(&a, "files/c")).await.unwrap();
    let early = fail(&a, created.id, "nope", 52).await;
    assert_eq!(early, StatusChanged::Refused(created));
    assert_eq!(fail(&a, 999, "missing", 53).await, StatusChanged::Missing);
}

async fn cancelling_resuming_and_completing_follow_the_state_machine(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let change = |id, change: StatusChange, second| {
        let a = a.clone();
        async move {
            jobs.change_status(&a, id, &change, at(second))
                .await
                .unwrap()
        }
    };

    // A job not yet proceeded is cancelled once; it neither resumes nor completes.
    let created = jobs.create_job(new_job(&a, "files/c")).await.unwrap();
    assert_eq!(
        change(created.id, StatusChange::Resume, 10).await,
        StatusChanged::Refused(created.clone())
    );
    let StatusChanged::Changed(cancelled) = change(created.id, StatusChange::Cancel, 11).await
    else {
        panic!("not cancelled");
    };
    assert_eq!(
        (cancelled.status, cancelled.updated_at),
        (JobStatus::Cancelled, at(11))
    );
    assert_eq!(
        change(created.id, StatusChange::Cancel, 12).await,
        StatusChanged::Refused(cancelled)
    );

    // A job in progress resumes (counted), completes only once every chunk is committed.
    let running = started_job(jobs, &a, 1).await;
    let StatusChanged::Changed(resumed) = change(running.id, StatusChange::Resume, 20).await else {
        panic!("not resumed");
    };
    assert_eq!(
        (resumed.status, resumed.resumptions, resumed.updated_at),
        (JobStatus::InProgress, running.resumptions + 1, at(20))
    );
    assert_eq!(
        change(running.id, StatusChange::Complete, 21).await,
        StatusChanged::Refused(resumed)
    );
    let empty = started_job(jobs, &a, 0).await;
    let StatusChanged::Changed(completed) = change(empty.id, StatusChange::Complete, 22).await
    else {
        panic!("not completed");
    };
    assert_eq!(
        (completed.status, completed.completed_at),
        (JobStatus::Completed, Some(at(22)))
    );
    assert_eq!(
        change(empty.id, StatusChange::Cancel, 23).await,
        StatusChanged::Refused(completed)
    );
    assert_eq!(
        change(999, StatusChange::Cancel, 24).await,
        StatusChanged::Missing
    );
}

async fn jobs_keep_their_kind_and_page_by_cursor(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
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

    // Cursor paging, newest first, the tenant's jobs only. The cursor is the ordinal of the
    // last job of the page before: 1, 2, … in the order the tenant's jobs were created.
    let newest: Vec<u64> = ids.iter().rev().copied().collect();
    let before = |cursor: Option<u64>, limit: u64| {
        let a = a.clone();
        async move { jobs.jobs_before(&a, cursor, limit).await.unwrap() }
    };
    let first = before(None, 3).await;
    let second = before(first.last().map(|job| job.ordinal), 3).await;
    let last = before(second.last().map(|job| job.ordinal), 3).await;
    assert_eq!(job_ids(&first), newest[..3]);
    assert_eq!(job_ids(&second), newest[3..6]);
    assert_eq!(job_ids(&last), newest[6..]);
    assert_eq!(last.last().map(|job| job.ordinal), Some(1));
    assert!(before(Some(1), 3).await.is_empty());
    assert_eq!(job_ids(&before(None, 100).await), newest);
    assert_eq!(job_ids(&before(Some(u64::MAX), 1).await), newest[..1]);
    assert_eq!(
        job_ids(&before(Some(3), 100).await),
        newest[newest.len() - 2..]
    );
    assert!(before(None, 0).await.is_empty());
    assert_eq!(jobs.jobs_before(&b, None, 10).await.unwrap().len(), 1);
    let nobody = jobs.jobs_before(&tenant("nobody"), None, 10).await.unwrap();
    assert!(nobody.is_empty());
}

async fn row_results_are_committed_once_with_their_chunk(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let id = started_job(jobs, &a, 3).await.id;
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

    // Chunk 0: 1,000 rows of about 1 KB each, more than one DynamoDB item holds.
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

    // Chunk 2 records none (a CCAI upload's chunks record none).
    let last = jobs.commit_chunk(chunk(id, 2, Vec::new())).await.unwrap();
    assert!(last.completed_job);

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

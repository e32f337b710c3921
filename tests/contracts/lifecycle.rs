//! Data lifecycle: job ids numbered per tenant and never given twice, expired jobs read as
//! missing at once and purged by the embedded store in bounded batches (deleted by the table's
//! time to live on DynamoDB, which every item of a job carries), expired idempotency records
//! likewise.

use bulk_users::model::{
    IdempotentRequest, NewJob, RowAction, SchemeReport, StatusChange, StatusChanged, Timestamp,
    IDEMPOTENCY_TTL_SECONDS,
};

use crate::fixtures::{
    at, chunk, new_job, page, row_result, scheme_error, started_job, tenant, update_error,
    valid_report, Adapters, Raw,
};
use bulk_users::model::ErrorType;

contracts!(Threaded:
    expired_jobs_read_as_missing_and_are_purged,
    every_record_of_a_job_carries_its_expiry,
    expired_idempotency_records_are_purged,
);

/// Acme's job 2 (scheme errors) and job 3 (committed chunks with update errors and row
/// results), both created now and kept until `keep_until` (job 3, proceeded, a day longer);
/// job 1 is kept a year.
async fn short_lived_jobs(adapters: &Adapters, keep_until: Timestamp) -> [u64; 3] {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let kept = started_job(jobs, &a, 2).await.id;
    let invalid = jobs
        .create_job(NewJob {
            keep_until,
            created_at: Timestamp::now(),
            ..new_job(&a, "files/invalid")
        })
        .await
        .unwrap();
    let report = SchemeReport {
        errors: vec![scheme_error(Some(1), "bad"), scheme_error(Some(2), "worse")],
        error_count: 2,
        ..valid_report(1)
    };
    jobs.record_scheme_report(&a, invalid.id, "files/invalid", &report, at(2))
        .await
        .unwrap();
    let started = jobs
        .create_job(NewJob {
            keep_until,
            created_at: Timestamp::now(),
            ..new_job(&a, "files/started")
        })
        .await
        .unwrap();
    let report = valid_report(2);
    jobs.record_scheme_report(&a, started.id, "files/started", &report, at(2))
        .await
        .unwrap();
    let proceed = StatusChange::Proceed { by: "me".into() };
    let changed = jobs.change_status(&a, started.id, &proceed, Timestamp::now());
    let StatusChanged::Changed(started) = changed.await.unwrap() else {
        panic!("job {} not proceeded", started.id)
    };
    assert!(
        started.keep_until > keep_until,
        "kept longer once proceeded"
    );
    let mut result = chunk(started.id, 0, vec![update_error(1, "no", ErrorType::Error)]);
    result.keep_until = started.keep_until;
    result.results = vec![row_result(0, RowAction::Created, "")];
    jobs.commit_chunk(result).await.unwrap();
    [kept, invalid.id, started.id]
}

async fn expired_jobs_read_as_missing_and_are_purged(adapters: Adapters) {
    let jobs = &adapters.ports.jobs;
    let a = tenant("acme");
    let now = Timestamp::now();
    let [kept, invalid, started] = short_lived_jobs(&adapters, now.plus_seconds(3600)).await;
    // Job 4 expired a second ago: missing to every read and change.
    let expired = jobs
        .create_job(NewJob {
            keep_until: now.plus_seconds(-1),
            ..new_job(&a, "files/expired")
        })
        .await
        .unwrap();
    assert_eq!(jobs.get_job(&a, expired.id).await.unwrap(), None);
    let (listed, _) = jobs.list_jobs(&a, page(1, 10)).await.unwrap();
    let listed: Vec<u64> = listed.iter().map(|job| job.id).collect();
    assert_eq!(listed, vec![started, invalid, kept]);
    let before: Vec<u64> = jobs
        .jobs_before(&a, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(before, listed);
    let cancel = jobs.change_status(&a, expired.id, &StatusChange::Cancel, now);
    assert_eq!(cancel.await.unwrap(), StatusChanged::Missing);

    // Three days on, jobs 2 and 3 have expired too: the embedded store purges the three, a
    // batch at a time, with everything recorded about them; DynamoDB's TTL does it there.
    let later = now.plus_seconds(3 * 24 * 3600);
    let purged = [
        jobs.purge_expired(later, 2).await.unwrap(),
        jobs.purge_expired(later, 2).await.unwrap(),
        jobs.purge_expired(later, 2).await.unwrap(),
    ];
    let raw = adapters.raw();
    match &raw {
        Raw::Sqlite(_) => {
            assert_eq!(
                purged,
                [2, 1, 0],
                "bounded batches, then nothing: idempotent"
            );
            let of_purged = format!("tenant = 'acme' AND job_id IN ({invalid}, {started})");
            for table in ["scheme_errors", "job_chunks", "update_errors"] {
                assert_eq!(raw.count(table, &of_purged), 0, "{table} of purged jobs");
            }
            assert_eq!(raw.count("jobs", "tenant = 'acme'"), 1);
        }
        Raw::Dynamo(_) => assert_eq!(purged, [0, 0, 0], "the table's TTL deletes"),
    }
    assert_eq!(jobs.get_job(&a, kept).await.unwrap().unwrap().id, kept);
    // An id is never given again, though its job is gone.
    let next = jobs.create_job(new_job(&a, "files/next")).await.unwrap();
    assert_eq!(next.id, expired.id + 1);
}

/// The numeric `expires_at` of a DynamoDB item.
fn expires_at(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> Option<i64> {
    item.get("expires_at")?.as_n().ok()?.parse().ok()
}

async fn every_record_of_a_job_carries_its_expiry(adapters: Adapters) {
    let keep_until = Timestamp::now().plus_seconds(3600);
    let [_, invalid, started] = short_lived_jobs(&adapters, keep_until).await;
    // Results too large for the chunk marker go to parts of their own.
    let a = tenant("acme");
    let jobs = &adapters.ports.jobs;
    let proceeded = jobs.get_job(&a, started).await.unwrap().unwrap();
    let mut large = chunk(started, 1, Vec::new());
    large.keep_until = proceeded.keep_until;
    large.results = (10..400)
        .map(|index| row_result(index, RowAction::Failed, &"x".repeat(1000)))
        .collect();
    adapters.ports.jobs.commit_chunk(large).await.unwrap();
    let raw = adapters.raw();
    match &raw {
        Raw::Sqlite(_) => {
            for (id, kept) in [(invalid, keep_until), (started, proceeded.keep_until)] {
                let millis = kept.unix_millis();
                let row = format!("tenant = 'acme' AND id = {id} AND keep_until = {millis}");
                assert_eq!(raw.count("jobs", &row), 1);
            }
        }
        Raw::Dynamo(_) => {
            let mut kinds = std::collections::BTreeSet::new();
            for (id, kept) in [(invalid, keep_until), (started, proceeded.keep_until)] {
                for item in raw.items(&format!("JOB#{a}#{id}")).await {
                    let sk = item["sk"].as_s().unwrap().clone();
                    assert_eq!(expires_at(&item), Some(kept.unix_seconds_ceil()), "{sk}");
                    kinds.insert(sk.split('#').next().unwrap_or_default().to_owned());
                }
            }
            let every = ["CHUNK", "JOB", "RESULT", "SERR", "UCOUNT", "UERR"];
            assert_eq!(kinds.into_iter().collect::<Vec<_>>(), every);
        }
    }
}

async fn expired_idempotency_records_are_purged(adapters: Adapters) {
    let store = &adapters.ports.idempotency;
    let claimed_at = Timestamp::now();
    let request = IdempotentRequest {
        tenant: tenant("acme"),
        key: "k-1".to_owned(),
        fingerprint: "POST /upload".to_owned(),
        claim_id: "claim-1".to_owned(),
        claimed_at,
        answer: None,
        job_id: None,
    };
    store.claim_key(&request).await.unwrap();
    assert!(!request.is_expired_at(claimed_at.plus_seconds(IDEMPOTENCY_TTL_SECONDS - 1)));
    assert!(request.is_expired_at(claimed_at.plus_seconds(IDEMPOTENCY_TTL_SECONDS)));
    let before = claimed_at.plus_seconds(IDEMPOTENCY_TTL_SECONDS - 1);
    assert_eq!(store.purge_expired(before, 10).await.unwrap(), 0);
    let after = claimed_at.plus_seconds(IDEMPOTENCY_TTL_SECONDS);
    let purged = store.purge_expired(after, 10).await.unwrap();
    let raw = adapters.raw();
    match &raw {
        Raw::Sqlite(_) => {
            assert_eq!(purged, 1);
            assert_eq!(raw.count("idempotency_keys", "tenant = 'acme'"), 0);
        }
        Raw::Dynamo(_) => {
            assert_eq!(purged, 0, "the table's TTL deletes");
            let items = raw.items("IDEM#acme#k-1").await;
            let expiry = claimed_at.plus_seconds(IDEMPOTENCY_TTL_SECONDS);
            assert_eq!(expires_at(&items[0]), Some(expiry.unix_seconds_ceil()));
        }
    }
}

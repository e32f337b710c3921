//! The `IdempotencyStore` contract: one claim of a key wins, its holder alone records the
//! answer or gives the key up, and a record holds its key for as long as the domain says
//! ([`IdempotentRequest::holds_key_at`]).

use bulk_users::model::{
    IdempotentRequest, KeyClaim, CLAIM_TIMEOUT_SECONDS, IDEMPOTENCY_TTL_SECONDS,
};

use crate::fixtures::{at, tenant, Adapters};

contracts!(Threaded:
    the_holder_of_a_claim_records_its_answer,
    a_key_is_free_again_when_its_record_no_longer_holds_it,
    a_released_claim_frees_the_key_and_keeps_its_job_for_the_retry,
);
contracts!(Serialized: one_of_concurrent_claims_wins);

fn request(tenant_name: &str, key: &str, claim_id: &str, second: i64) -> IdempotentRequest {
    IdempotentRequest {
        tenant: tenant(tenant_name),
        key: key.to_owned(),
        fingerprint: format!("POST /upload {key}"),
        claim_id: claim_id.to_owned(),
        claimed_at: at(second),
        answer: None,
        job_id: None,
    }
}

fn claimed(resume: Option<u64>) -> KeyClaim {
    KeyClaim::Claimed { resume }
}

async fn the_holder_of_a_claim_records_its_answer(adapters: Adapters) {
    let store = &adapters.ports.idempotency;
    let first = request("acme", "k", "claim-1", 0);
    assert_eq!(store.claim_key(&first).await.unwrap(), claimed(None));
    // Held while its request runs; the same key is another tenant's own.
    let second = request("acme", "k", "claim-2", 1);
    assert_eq!(
        store.claim_key(&second).await.unwrap(),
        KeyClaim::Held(first.clone())
    );
    let theirs = request("globex", "k", "claim-3", 1);
    assert_eq!(store.claim_key(&theirs).await.unwrap(), claimed(None));

    // Only the holder records the answer.
    let acme = tenant("acme");
    store
        .record_answer(&acme, "k", "claim-2", "not mine")
        .await
        .unwrap();
    assert_eq!(
        store.claim_key(&second).await.unwrap(),
        KeyClaim::Held(first.clone())
    );
    store
        .record_answer(&acme, "k", "claim-1", "{\"id\":7}")
        .await
        .unwrap();
    let answered = IdempotentRequest {
        answer: Some("{\"id\":7}".to_owned()),
        ..first
    };
    assert_eq!(
        store.claim_key(&second).await.unwrap(),
        KeyClaim::Held(answered)
    );
    // Nor does anyone but the holder give the key up.
    store.release_key(&acme, "k", "claim-2").await.unwrap();
    assert!(matches!(
        store.claim_key(&second).await.unwrap(),
        KeyClaim::Held(_)
    ));
}

async fn a_key_is_free_again_when_its_record_no_longer_holds_it(adapters: Adapters) {
    let store = &adapters.ports.idempotency;
    let acme = tenant("acme");
    // An answer holds its key for a day.
    let answered = request("acme", "answered", "claim-1", 0);
    store.claim_key(&answered).await.unwrap();
    store
        .record_answer(&acme, "answered", "claim-1", "{}")
        .await
        .unwrap();
    let within = request("acme", "answered", "claim-2", IDEMPOTENCY_TTL_SECONDS - 1);
    assert!(matches!(
        store.claim_key(&within).await.unwrap(),
        KeyClaim::Held(_)
    ));
    let after = request("acme", "answered", "claim-3", IDEMPOTENCY_TTL_SECONDS);
    assert_eq!(store.claim_key(&after).await.unwrap(), claimed(None));

    // A claim without an answer holds it while its request may still be running.
    let abandoned = request("acme", "abandoned", "claim-1", 0);
    store.claim_key(&abandoned).await.unwrap();
    let within = request("acme", "abandoned", "claim-2", CLAIM_TIMEOUT_SECONDS - 1);
    assert_eq!(
        store.claim_key(&within).await.unwrap(),
        KeyClaim::Held(abandoned)
    );
    let after = request("acme", "abandoned", "claim-3", CLAIM_TIMEOUT_SECONDS);
    assert_eq!(store.claim_key(&after).await.unwrap(), claimed(None));
    // The new claim is the holder now: the old one records nothing.
    store
        .record_answer(&acme, "abandoned", "claim-1", "late")
        .await
        .unwrap();
    let next = request("acme", "abandoned", "claim-4", CLAIM_TIMEOUT_SECONDS + 1);
    assert_eq!(store.claim_key(&next).await.unwrap(), KeyClaim::Held(after));
}

async fn a_released_claim_frees_the_key_and_keeps_its_job_for_the_retry(adapters: Adapters) {
    let store = &adapters.ports.idempotency;
    let acme = tenant("acme");
    // Without a job: the record is dropped.
    let failed = request("acme", "plain", "claim-1", 0);
    store.claim_key(&failed).await.unwrap();
    store.release_key(&acme, "plain", "claim-1").await.unwrap();
    let retry = request("acme", "plain", "claim-2", 1);
    assert_eq!(store.claim_key(&retry).await.unwrap(), claimed(None));

    // With the job its request recorded: the retry of the same request resumes that job.
    let batch = request("acme", "batch", "claim-1", 0);
    store.claim_key(&batch).await.unwrap();
    store
        .record_job(&acme, "batch", "claim-1", 7)
        .await
        .unwrap();
    store.release_key(&acme, "batch", "claim-1").await.unwrap();
    let retry = request("acme", "batch", "claim-2", 1);
    assert_eq!(store.claim_key(&retry).await.unwrap(), claimed(Some(7)));
    // The retry holds the key, with the job.
    let other = request("acme", "batch", "claim-3", 2);
    let KeyClaim::Held(held) = store.claim_key(&other).await.unwrap() else {
        panic!("the retry does not hold the key");
    };
    assert_eq!((held.claim_id.as_str(), held.job_id), ("claim-2", Some(7)));

    // A record older than an answer is kept starts afresh: no job to resume.
    let old = request("acme", "old", "claim-1", 0);
    store.claim_key(&old).await.unwrap();
    store.record_job(&acme, "old", "claim-1", 8).await.unwrap();
    store.release_key(&acme, "old", "claim-1").await.unwrap();
    let day_later = request("acme", "old", "claim-2", IDEMPOTENCY_TTL_SECONDS);
    assert_eq!(store.claim_key(&day_later).await.unwrap(), claimed(None));
}

async fn one_of_concurrent_claims_wins(adapters: Adapters) {
    let claims: Vec<_> = (0..6)
        .map(|n| {
            let store = adapters.ports.idempotency.clone();
            let request = request("acme", "k", &format!("claim-{n}"), 0);
            tokio::spawn(async move { store.claim_key(&request).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        if let KeyClaim::Claimed { .. } = claim.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one claim wins the key");
}

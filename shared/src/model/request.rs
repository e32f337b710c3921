//! Requests remembered under a client's `Idempotency-Key`, so that a retried request gets the
//! first one's answer instead of doing the work twice.

use serde::{Deserialize, Serialize};

use super::{JobId, TenantId, Timestamp};

/// How long an answer is kept for its key, in seconds: a retry within a day gets it again.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// How long a claim without an answer holds its key, in seconds: the longest a request may run
/// (a Lambda's 15-minute limit). A claim older than this belongs to a request that died, and
/// the next request with the key runs again.
pub const CLAIM_TIMEOUT_SECONDS: i64 = 15 * 60;

/// One request under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRequest {
    pub tenant: TenantId,
    /// The client's `Idempotency-Key`, unique per tenant.
    pub key: String,
    /// Digest of what the request asked (operation, path, query and content): a key reused for
    /// another request is refused.
    pub fingerprint: String,
    /// Random id of this claim: only its holder records the answer or gives the key up.
    pub claim_id: String,
    pub claimed_at: Timestamp,
    /// The answer given, once the request has finished; `None` while it runs.
    pub answer: Option<String>,
    /// The job the request recorded, when it records one and runs it before answering (a
    /// Huawei batch): a retry after the request failed resumes that job.
    #[serde(default)]
    pub job_id: Option<JobId>,
}

impl IdempotentRequest {
    /// Whether the record still holds its key at `now`: an answer for a day, a claim without
    /// one while its request may still be running.
    pub fn holds_key_at(&self, now: Timestamp) -> bool {
        if self.answer.is_none() && self.claim_id.is_empty() {
            // Given up by a request that failed after recording its job: free to resume.
            return false;
        }
        let cutoffs = KeyCutoffs::at(now);
        let held_after = if self.answer.is_some() {
            cutoffs.answered
        } else {
            cutoffs.unanswered
        };
        self.claimed_at > held_after
    }

    /// The one rule of a record's expiry: from a day after its claim it neither holds its key
    /// nor resumes a job ([`KeyCutoffs::answered`]), and a store may delete it.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.claimed_at <= KeyCutoffs::at(now).answered
    }

    /// The job a new claim `by` resumes when it takes this record over: the job this record's
    /// request recorded, when `by` is the same request and the record is younger than an
    /// answer is kept (an older one starts afresh).
    pub fn job_resumed_by(&self, by: &IdempotentRequest) -> Option<JobId> {
        let recent = self.claimed_at > KeyCutoffs::at(by.claimed_at).answered;
        if self.fingerprint == by.fingerprint && recent {
            self.job_id
        } else {
            None
        }
    }
}

/// The claim times at or before which a record no longer holds its key at a moment: the rule
/// of [`IdempotentRequest::holds_key_at`] as two bounds, for a store that checks it in a
/// conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCutoffs {
    /// A record with an answer claimed at or before this is free.
    pub answered: Timestamp,
    /// A record without an answer claimed at or before this is free.
    pub unanswered: Timestamp,
}

impl KeyCutoffs {
    pub fn at(now: Timestamp) -> KeyCutoffs {
        KeyCutoffs {
            answered: now.plus_seconds(-IDEMPOTENCY_TTL_SECONDS),
            unanswered: now.plus_seconds(-CLAIM_TIMEOUT_SECONDS),
        }
    }
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key was free (never used, or its record no longer holds it): the caller runs the
    /// request and records its answer. `resume` is the job an earlier, failed run of the same
    /// request recorded.
    Claimed { resume: Option<JobId> },
    /// Another request holds the key: its record.
    Held(IdempotentRequest),
}

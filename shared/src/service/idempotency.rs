//! Requests under a client's `Idempotency-Key`: the first one runs and its answer is kept for a
//! day; a repeat gets that answer, a repeat while the first still runs is told to retry later,
//! and a key reused for another request is refused.

use rand::RngCore;

use super::{BulkService, Principal, ServiceError, ServiceResult};
use crate::model::{IdempotentRequest, JobId, KeyClaim, TenantId, Timestamp};

/// The longest idempotency key accepted, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// What a request under an idempotency key must do.
#[derive(Debug)]
pub enum KeyedRequest {
    /// Run it, then report its answer with [`BulkService::finish_keyed_request`].
    Run(KeyTicket),
    /// It ran before: its recorded answer.
    Replay(String),
}

/// The claim of a key, held while its request runs.
#[derive(Debug)]
pub struct KeyTicket {
    tenant: TenantId,
    key: String,
    claim_id: String,
    resume: Option<JobId>,
}

impl KeyTicket {
    /// The job an earlier run of this very request recorded and did not finish: the request
    /// resumes it instead of starting anew.
    pub fn resumes(&self) -> Option<JobId> {
        self.resume
    }
}

/// The field idempotency errors name: the request header.
const FIELD: &str = "Idempotency-Key";

fn check_key(key: &str) -> ServiceResult<()> {
    let length = key.chars().count();
    if key.trim().is_empty() || length > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(ServiceError::invalid(
            FIELD,
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    if !key.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
        return Err(ServiceError::invalid(
            FIELD,
            "Idempotency-Key must be printable ASCII (a UUID, for example)",
        ));
    }
    Ok(())
}

impl BulkService {
    /// Claims `key` for a request whose content digests to `fingerprint`, or answers what an
    /// earlier request with the key left.
    pub async fn claim_idempotency_key(
        &self,
        who: &Principal,
        key: &str,
        fingerprint: String,
    ) -> ServiceResult<KeyedRequest> {
        check_key(key)?;
        let mut claim_id = [0u8; 16];
        rand::rng().fill_bytes(&mut claim_id);
        let request = IdempotentRequest {
            tenant: who.tenant.clone(),
            key: key.to_owned(),
            fingerprint,
            claim_id: hex::encode(claim_id),
            claimed_at: Timestamp::now(),
            answer: None,
            job_id: None,
        };
        match self.ports.idempotency.claim_key(&request).await? {
            KeyClaim::Claimed { resume } => {
                let ticket = KeyTicket {
                    tenant: request.tenant,
                    key: request.key,
                    claim_id: request.claim_id,
                    resume,
                };
                if let Some(job_id) = resume {
                    self.record_keyed_job(&ticket, job_id).await?;
                }
                Ok(KeyedRequest::Run(ticket))
            }
            KeyClaim::Held(held) if held.fingerprint != request.fingerprint => {
                Err(ServiceError::Unprocessable {
                    field: FIELD.to_owned(),
                    message: format!(
                        "Idempotency-Key '{key}' was used for a different request; a new request needs a new key"
                    ),
                })
            }
            KeyClaim::Held(held) => match held.answer {
                Some(answer) => Ok(KeyedRequest::Replay(answer)),
                None => Err(ServiceError::Conflict(format!(
                    "a request with Idempotency-Key '{key}' is still being processed; retry it later"
                ))),
            },
        }
    }

    /// Records the job a keyed request recorded, so that a retry after a failure resumes it.
    pub(super) async fn record_keyed_job(
        &self,
        ticket: &KeyTicket,
        job_id: JobId,
    ) -> ServiceResult<()> {
        Ok(self
            .ports
            .idempotency
            .record_job(&ticket.tenant, &ticket.key, &ticket.claim_id, job_id)
            .await?)
    }

    /// Records the answer of a keyed request, or gives the key up (`None`: the request failed
    /// and a retry must run again). A failure here is logged, not answered: the request itself
    /// succeeded, and an unanswered claim frees its key after its timeout.
    pub async fn finish_keyed_request(&self, ticket: KeyTicket, answer: Option<&str>) {
        let idempotency = &self.ports.idempotency;
        let outcome = match answer {
            Some(answer) => {
                idempotency
                    .record_answer(&ticket.tenant, &ticket.key, &ticket.claim_id, answer)
                    .await
            }
            None => {
                idempotency
                    .release_key(&ticket.tenant, &ticket.key, &ticket.claim_id)
                    .await
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(tenant = %ticket.tenant, %error, "idempotency record not updated");
        }
    }
}

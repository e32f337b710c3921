//! Admission control: what a request must pass before it costs anything. A client address
//! that keeps failing to authenticate is refused before any credential is read; a tenant is
//! held to its request rate, its jobs in progress and its concurrent Huawei batch-creates.
//! Every refusal is [`ServiceError::TooMany`] (429 with `Retry-After`), naming its limit.

use rand::RngCore;

use super::{BulkService, Principal, ServiceError, ServiceResult};
use crate::model::{SlotLease, TenantId, Timestamp};

/// Seconds a client is told to wait when its tenant has `max_concurrent_jobs` in progress.
const CONCURRENT_JOBS_RETRY_AFTER: u64 = 30;

/// Seconds a client is told to wait when its tenant runs `max_concurrent_batch_creates`.
const BATCH_CREATES_RETRY_AFTER: u64 = 5;

/// How long a slot's lease lasts: longer than any request runs (a Lambda function's answer is
/// due within 29 s), so only a holder that died without freeing its slot loses it this way.
const SLOT_LEASE_SECONDS: i64 = 120;

/// The slots of Huawei `batch-create` requests.
const BATCH_CREATE_SLOTS: &str = "batch-create";

/// A slot of capped work, held until [`BulkService::free_slot`].
#[derive(Debug)]
pub(super) struct HeldSlot {
    tenant: TenantId,
    name: &'static str,
    slot: u64,
    holder: String,
}

/// The UTC minute of `at` (the rate windows), and the seconds left in it.
fn minute_of(at: Timestamp) -> (i64, u64) {
    let millis = at.unix_millis();
    (
        millis.div_euclid(60_000),
        60 - millis.rem_euclid(60_000) as u64 / 1000,
    )
}

impl BulkService {
    /// Refuses a client address with `failed_authentications_per_minute` failed
    /// authentications this minute, before its credentials are read or any secret opened.
    /// Requests whose address the host does not know are not counted.
    pub async fn admit_caller(&self, source: Option<&str>) -> ServiceResult<()> {
        let Some(source) = source else {
            return Ok(());
        };
        let limit = self.config.failed_authentications_per_minute;
        let (window, retry_after) = minute_of(Timestamp::now());
        let failures = self
            .ports
            .tenants
            .failed_authentications(source, window)
            .await?;
        if failures < limit {
            return Ok(());
        }
        Err(ServiceError::TooMany {
            limit: "failed_authentications_per_minute",
            message: format!(
                "too many failed authentications from {source} this minute; the limit \
                 failed_authentications_per_minute is {limit}; retry after {retry_after} s"
            ),
            retry_after,
        })
    }

    /// Records a refused authentication: logged with the address and the tenant or key id the
    /// request named (never its secret), and counted against the address.
    pub async fn authentication_failed(
        &self,
        source: Option<&str>,
        tenant: Option<&str>,
        key_id: Option<&str>,
    ) {
        tracing::warn!(
            source,
            claimed_tenant = tenant,
            key_id,
            "authentication failed"
        );
        let Some(source) = source else {
            return;
        };
        let (window, _) = minute_of(Timestamp::now());
        let counted = self
            .ports
            .tenants
            .count_failed_authentication(source, window);
        if let Err(error) = counted.await {
            tracing::error!(%error, source, "a failed authentication could not be counted");
        }
    }

    /// Counts a request against the tenant's `requests_per_minute` (a fixed window per UTC
    /// minute); over it, the request is refused until the minute ends.
    pub async fn admit_request(&self, who: &Principal) -> ServiceResult<()> {
        let limit = self.settings(&who.tenant).await?.limits.requests_per_minute;
        let (window, retry_after) = minute_of(Timestamp::now());
        let count = self
            .ports
            .tenants
            .count_request(&who.tenant, window)
            .await?;
        if count <= limit {
            return Ok(());
        }
        Err(ServiceError::TooMany {
            limit: "requests_per_minute",
            message: format!(
                "too many requests this minute; the limit requests_per_minute is {limit}; retry after {retry_after} s"
            ),
            retry_after,
        })
    }

    /// Refuses to start another job while the tenant has `max_concurrent_jobs` in progress.
    pub(super) async fn check_concurrent_jobs(&self, tenant: &TenantId) -> ServiceResult<()> {
        let limit = self.settings(tenant).await?.limits.max_concurrent_jobs;
        let running = self.ports.jobs.count_in_progress(tenant).await?;
        if running < limit {
            return Ok(());
        }
        Err(ServiceError::TooMany {
            limit: "max_concurrent_jobs",
            message: format!(
                "{running} jobs are in progress; the limit max_concurrent_jobs is {limit}; retry when one has ended"
            ),
            retry_after: CONCURRENT_JOBS_RETRY_AFTER,
        })
    }

    /// Takes one of the tenant's `max_concurrent_batch_creates` slots, or refuses the request
    /// while every one is held.
    pub(super) async fn take_batch_create_slot(
        &self,
        tenant: &TenantId,
    ) -> ServiceResult<HeldSlot> {
        let limit = self
            .settings(tenant)
            .await?
            .limits
            .max_concurrent_batch_creates;
        let mut holder = [0u8; 16];
        rand::rng().fill_bytes(&mut holder);
        let now = Timestamp::now();
        let lease = SlotLease {
            name: BATCH_CREATE_SLOTS,
            slots: limit,
            holder: hex::encode(holder),
            until: now.plus_seconds(SLOT_LEASE_SECONDS),
        };
        match self.ports.tenants.take_slot(tenant, &lease, now).await? {
            Some(slot) => Ok(HeldSlot {
                tenant: tenant.clone(),
                name: lease.name,
                slot,
                holder: lease.holder,
            }),
            None => Err(ServiceError::TooMany {
                limit: "max_concurrent_batch_creates",
                message: format!(
                    "{limit} batch-create requests are running; the limit \
                     max_concurrent_batch_creates is {limit}; retry when one has ended"
                ),
                retry_after: BATCH_CREATES_RETRY_AFTER,
            }),
        }
    }

    /// Frees a held slot. A failure is logged, not answered: the request's work is done, and
    /// the slot's lease ends by itself.
    pub(super) async fn free_slot(&self, held: HeldSlot) {
        let freed = self
            .ports
            .tenants
            .free_slot(&held.tenant, held.name, held.slot, &held.holder)
            .await;
        if let Err(error) = freed {
            tracing::error!(%error, slot = held.slot, "a slot could not be freed; its lease ends by itself");
        }
    }
}

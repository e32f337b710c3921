//! What DynamoDB keeps for admission control: failed authentications per client address and
//! minute (`AUTHFAIL#{source}#{minute}`, deleted by the table's TTL an hour later), and the
//! leases on a tenant's slots of capped work (`TENANT#{tenant}` / `SLOT#{name}#{slot:03}`,
//! deleted by the TTL an hour after they end).

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{is_conditional_failure, key, n, s, unavailable, DynamoStore, Item};
use crate::model::{SlotLease, TenantId, Timestamp};
use crate::ports::{StoreError, StoreResult};

fn failures_key(source: &str, window: i64) -> Item {
    key(format!("AUTHFAIL#{source}#{window}"), "AUTHFAIL")
}

fn slot_key(tenant: &TenantId, name: &str, slot: u64) -> Item {
    key(format!("TENANT#{tenant}"), format!("SLOT#{name}#{slot:03}"))
}

fn count_of(item: Option<&Item>, source: &str) -> StoreResult<u64> {
    match item.and_then(|item| item.get("failure_count")) {
        None => Ok(0),
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "failed authentications of {source} is not a number"
                ))
            }),
    }
}

impl DynamoStore {
    pub(super) async fn count_failed_authentication(
        &self,
        source: &str,
        window: i64,
    ) -> StoreResult<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(failures_key(source, window)))
            .update_expression("ADD failure_count :one SET expires_at = :expires")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n((window + 61) * 60))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        count_of(out.attributes.as_ref(), source)
    }

    pub(super) async fn failed_authentications(
        &self,
        source: &str,
        window: i64,
    ) -> StoreResult<u64> {
        // Eventually consistent: a failure an instant ago may be missed, never invented.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(failures_key(source, window)))
            .send()
            .await
            .map_err(unavailable)?;
        count_of(out.item.as_ref(), source)
    }

    pub(super) async fn take_slot(
        &self,
        tenant: &TenantId,
        lease: &SlotLease,
        at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        for slot in 0..lease.slots {
            let mut item = slot_key(tenant, lease.name, slot);
            item.insert("holder".to_owned(), s(lease.holder.clone()));
            item.insert("until".to_owned(), n(lease.until.unix_millis()));
            let expires = lease.until.unix_millis() / 1000 + 3600;
            item.insert("expires_at".to_owned(), n(expires));
            // `SlotLease::ended`: a lease ending at `until` is over at `at` when `until <= at`.
            let taken = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR #until <= :at")
                .expression_attribute_names("#until", "until")
                .expression_attribute_values(":at", n(at.unix_millis()))
                .send()
                .await;
            match taken {
                Ok(_) => return Ok(Some(slot)),
                Err(error) if is_conditional_failure(&error) => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(None)
    }

    pub(super) async fn free_slot(
        &self,
        tenant: &TenantId,
        name: &str,
        slot: u64,
        holder: &str,
    ) -> StoreResult<()> {
        let freed = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(slot_key(tenant, name, slot)))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match freed {
            // Taken over by another holder after this lease ended: theirs now.
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(unavailable(error)),
            Ok(_) => Ok(()),
        }
    }
}

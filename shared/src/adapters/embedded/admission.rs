//! What the embedded store keeps for admission control: failed authentications per client
//! address and window, and the leases on a tenant's slots of capped work.

use rusqlite::{params, OptionalExtension};

use super::store::millis;
use super::SqliteStore;
use crate::model::{SlotLease, TenantId, Timestamp};
use crate::ports::StoreResult;

impl SqliteStore {
    pub(super) async fn count_failed_authentication(
        &self,
        source: &str,
        window: i64,
    ) -> StoreResult<u64> {
        let source = source.to_owned();
        self.db
            .call(move |conn| {
                // One row per address seen in the last two windows: older ones go here.
                conn.execute(
                    "DELETE FROM failed_authentications WHERE window < ?1",
                    [window - 1],
                )?;
                let count: u64 = conn.query_row(
                    "INSERT INTO failed_authentications (source, window, count) VALUES (?1, ?2, 1) \
                     ON CONFLICT (source) DO UPDATE SET \
                     count = CASE WHEN window = excluded.window THEN count + 1 ELSE 1 END, \
                     window = excluded.window \
                     RETURNING count",
                    params![source, window],
                    |row| row.get(0),
                )?;
                Ok(count)
            })
            .await
    }

    pub(super) async fn failed_authentications(
        &self,
        source: &str,
        window: i64,
    ) -> StoreResult<u64> {
        let source = source.to_owned();
        self.db
            .call(move |conn| {
                let count: Option<u64> = conn
                    .query_row(
                        "SELECT count FROM failed_authentications WHERE source = ?1 AND window = ?2",
                        params![source, window],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(count.unwrap_or(0))
            })
            .await
    }

    pub(super) async fn take_slot(
        &self,
        tenant: &TenantId,
        lease: &SlotLease,
        at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        let tenant = tenant.clone();
        let lease = lease.clone();
        self.db
            .call(move |conn| {
                // A slot is taken when it is new, or its lease has ended (`SlotLease::ended`:
                // `until <= at`); the upsert's condition makes the taking atomic.
                let mut take = conn.prepare_cached(
                    "INSERT INTO slot_leases (tenant, name, slot, holder, until) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (tenant, name, slot) DO UPDATE SET \
                     holder = excluded.holder, until = excluded.until \
                     WHERE slot_leases.until <= ?6",
                )?;
                for slot in 0..lease.slots {
                    let taken = take.execute(params![
                        tenant.as_str(),
                        lease.name,
                        slot as i64,
                        lease.holder,
                        millis(lease.until),
                        millis(at)
                    ])?;
                    if taken == 1 {
                        return Ok(Some(slot));
                    }
                }
                Ok(None)
            })
            .await
    }

    pub(super) async fn free_slot(
        &self,
        tenant: &TenantId,
        name: &str,
        slot: u64,
        holder: &str,
    ) -> StoreResult<()> {
        let (tenant, name, holder) = (tenant.clone(), name.to_owned(), holder.to_owned());
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM slot_leases \
                     WHERE tenant = ?1 AND name = ?2 AND slot = ?3 AND holder = ?4",
                    params![tenant.as_str(), name, slot as i64, holder],
                )?;
                Ok(())
            })
            .await
    }
}

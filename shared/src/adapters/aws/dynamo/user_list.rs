//! A tenant's live users, a page at a time, without reading the users before the page.
//!
//! Users are listed by id on `gsi1` (`USERS#{tenant}` / id₂₀). Ids are counted in buckets of
//! [`BUCKET_IDS`]: for each bucket that ever held a live user of the tenant, an item
//! (`TENANT#{tenant}` / `LIVE#{bucket}`) counts the live users in it, changed in the very
//! transaction that creates or deletes a user. A page's first user is found from the counts
//! (one query of tiny items) and at most one bucket's keys; the total is their sum.
//!
//! A listing filtered by the start of the user name reads the index of user name keys: the
//! key items a user holds for its user name are on `gsi1` by the key itself.

use std::collections::HashMap;

use super::{from_item, key, padded, s, text_of, DynamoStore, GSI1};
use crate::model::{TenantId, User, UserId};
use crate::ports::{StoreResult, UserStore, Window};

/// User ids per counted bucket.
pub(super) const BUCKET_IDS: u64 = 1000;
const LIVE_PREFIX: &str = "LIVE#";

/// The `gsi1` partition of a tenant's user name key items.
pub(super) fn user_names_partition(tenant: &TenantId) -> String {
    format!("UNAMES#{tenant}")
}

/// The bucket of a user id.
pub(super) fn bucket_of(id: UserId) -> u64 {
    id / BUCKET_IDS
}

/// The key of the count of the tenant's live users in `bucket`.
pub(super) fn live_count_key(tenant: &TenantId, bucket: u64) -> super::Item {
    key(
        format!("TENANT#{tenant}"),
        format!("{LIVE_PREFIX}{bucket:016}"),
    )
}

/// Where a page begins: the bucket holding its first user, and how many live users of that
/// bucket come before it. `None` past the end.
pub(super) fn page_start(counts: &[(u64, u64)], offset: u64) -> Option<(u64, u64)> {
    let mut before = 0u64;
    for &(bucket, count) in counts {
        if offset < before + count {
            return Some((bucket, offset - before));
        }
        before += count;
    }
    None
}

impl DynamoStore {
    /// The tenant's live users from `window.offset`, at most `window.limit`, in id order, and
    /// how many live users the tenant has.
    pub(super) async fn live_user_page(
        &self,
        tenant: &TenantId,
        window: Window,
    ) -> StoreResult<(Vec<User>, u64)> {
        let counts = self.live_counts(tenant).await?;
        let total = counts.iter().map(|(_, count)| count).sum();
        if window.limit == 0 {
            return Ok((Vec::new(), total));
        }
        let Some((bucket, skip)) = page_start(&counts, window.offset) else {
            return Ok((Vec::new(), total));
        };
        let partition = format!("USERS#{tenant}");
        let first_id = bucket * BUCKET_IDS;
        let from = || {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :partition AND gsi1sk >= :first")
                .expression_attribute_values(":partition", s(partition.clone()))
                .expression_attribute_values(":first", s(padded(first_id)))
        };
        // The live users of the bucket before the page are skipped: keys only, fewer than a
        // bucket's.
        let items = self
            .query_page(from, "pk, sk, gsi1pk, gsi1sk", skip, window.limit)
            .await?;
        let users = items
            .into_iter()
            .map(from_item::<User>)
            .collect::<StoreResult<Vec<User>>>()?;
        Ok((users, total))
    }

    /// The tenant's live users whose user name key starts with `prefix`, in user name order,
    /// from `window.offset`, and how many there are: read from the index of user name keys
    /// (each user name key item is on `gsi1` as `UNAMES#{tenant}` / the key), where only the
    /// matching names are read.
    pub(super) async fn named_user_page(
        &self,
        tenant: &TenantId,
        prefix: &str,
        window: Window,
    ) -> StoreResult<(Vec<User>, u64)> {
        let partition = user_names_partition(tenant);
        let matching = || {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :partition AND begins_with(gsi1sk, :prefix)")
                .expression_attribute_values(":partition", s(partition.clone()))
                .expression_attribute_values(":prefix", s(prefix))
        };
        let total = self.query_count(matching).await?;
        let entries = self
            .query_page(
                matching,
                "pk, sk, gsi1pk, gsi1sk",
                window.offset,
                window.limit,
            )
            .await?;
        let ids: Vec<UserId> = entries
            .iter()
            .filter_map(|entry| entry.get("user_id")?.as_n().ok()?.parse().ok())
            .collect();
        let mut users: HashMap<UserId, User> = self
            .users_by_ids(tenant, &ids)
            .await?
            .into_iter()
            .map(|user| (user.id, user))
            .collect();
        // In the index's order; the user item has the last word (the index lags a write).
        let users = ids
            .iter()
            .filter_map(|id| users.remove(id))
            .filter(|user| !user.is_deleted())
            .collect();
        Ok((users, total))
    }

    /// The tenant's buckets of live users, in id order: (bucket, live users in it).
    async fn live_counts(&self, tenant: &TenantId) -> StoreResult<Vec<(u64, u64)>> {
        let items = self
            .query_prefix(format!("TENANT#{tenant}"), LIVE_PREFIX)
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let bucket = text_of(item, "sk")?
                    .strip_prefix(LIVE_PREFIX)?
                    .parse()
                    .ok()?;
                let count: i64 = item.get("live")?.as_n().ok()?.parse().ok()?;
                Some((bucket, u64::try_from(count).unwrap_or(0)))
            })
            .filter(|(_, count)| *count > 0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::page_start;

    #[test]
    fn a_page_begins_in_the_bucket_its_offset_falls_in() {
        let counts = [(0, 3), (4, 5), (9, 2)];
        let cases = [
            (0, Some((0, 0))),
            (2, Some((0, 2))),
            (3, Some((4, 0))),
            (7, Some((4, 4))),
            (8, Some((9, 0))),
            (9, Some((9, 1))),
            (10, None),
        ];
        for (offset, wanted) in cases {
            assert_eq!(page_start(&counts, offset), wanted, "offset {offset}");
        }
        assert_eq!(page_start(&[], 0), None);
    }
}

//! A tenant's live users, a page at a time, without reading the users before the page.
//!
//! Users are listed by id on `gsi1` (`USERS#{tenant}` / id₂₀). Ids are counted in buckets of
//! [`BUCKET_IDS`]: for each bucket that ever held a live user of the tenant, an item
//! (`TENANT#{tenant}` / `LIVE#{bucket}`) counts the live users in it, changed in the very
//! transaction that creates or deletes a user. A page's first user is found from the counts
//! (one query of tiny items) and at most one bucket's keys; the total is their sum.

use super::{from_item, key, padded, s, text_of, DynamoStore, GSI1};
use crate::model::{TenantId, User, UserId};
use crate::ports::{StoreResult, Window};

/// User ids per counted bucket.
pub(super) const BUCKET_IDS: u64 = 1000;
const LIVE_PREFIX: &str = "LIVE#";

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
        let from = |exclusive_start: Option<super::Item>| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :partition AND gsi1sk >= :first")
                .expression_attribute_values(":partition", s(partition.clone()))
                .expression_attribute_values(":first", s(padded(first_id)))
                .set_exclusive_start_key(exclusive_start)
        };
        // The live users of the bucket before the page: their keys only, at most a bucket's.
        let mut start = None;
        let mut to_skip = skip;
        while to_skip > 0 {
            let out = from(start.take())
                .projection_expression("pk, sk, gsi1pk, gsi1sk")
                .limit(i32::try_from(to_skip).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(super::unavailable)?;
            to_skip = to_skip.saturating_sub(u64::try_from(out.count).unwrap_or(0));
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok((Vec::new(), total)),
            }
        }
        let mut users = Vec::new();
        loop {
            let wanted = window.limit - users.len() as u64;
            let out = from(start.take())
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(super::unavailable)?;
            for item in out.items.unwrap_or_default() {
                users.push(from_item::<User>(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && (users.len() as u64) < window.limit => {
                    start = Some(key)
                }
                _ => return Ok((users, total)),
            }
        }
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

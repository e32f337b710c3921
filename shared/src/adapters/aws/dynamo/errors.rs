//! A job's error logs, read a page at a time, never by reading the entries before the page.
//!
//! Scheme errors are numbered in file order (`SERR#{seq}`): a page is one key range. Update
//! errors are numbered within their chunk (`UERR#{chunk}#{n}`: row order within a chunk, and
//! chunks are consecutive row ranges), and each committed chunk that has errors has a count
//! item (`UCOUNT#{chunk}`), written in the transaction of its marker: a page's key range is
//! found from the counts (tiny items, one query), then read with one more.

use std::collections::HashMap;

use super::jobs::{job_pk, SCHEME_ERROR_PREFIX, UPDATE_ERROR_PREFIX};
use super::{from_item, s, text_of, DynamoStore, Item};
use crate::model::{Job, SchemeError, UpdateError};
use crate::ports::{PageRequest, StoreResult};

/// The sort-key prefix of the count items of chunks with update errors.
pub(super) const UPDATE_COUNT_PREFIX: &str = "UCOUNT#";

pub(super) fn scheme_error_sk(seq: u64) -> String {
    format!("{SCHEME_ERROR_PREFIX}{seq:010}")
}

/// The `n`th update error of a chunk.
pub(super) fn update_error_sk(chunk: u32, n: u64) -> String {
    format!("{UPDATE_ERROR_PREFIX}{chunk:08}#{n:07}")
}

pub(super) fn update_count_sk(chunk: u32) -> String {
    format!("{UPDATE_COUNT_PREFIX}{chunk:08}")
}

/// Where an update error lies: its chunk, and its number within the chunk.
pub(super) type Position = (u32, u64);
/// The first and last entry of a page.
pub(super) type Span = (Position, Position);

/// The (chunk, n) of an update error item.
fn update_error_position(item: &Item) -> Option<Position> {
    let (chunk, n) = text_of(item, "sk")?
        .strip_prefix(UPDATE_ERROR_PREFIX)?
        .split_once('#')?;
    Some((chunk.parse().ok()?, n.parse().ok()?))
}

/// Where entries `offset..offset + limit` of an update error log lie: the first and last
/// (chunk, n), given the committed chunks' error counts in chunk order. `None` past the end.
pub(super) fn locate(counts: &[(u32, u64)], offset: u64, limit: u64) -> Option<Span> {
    let last_wanted = offset.checked_add(limit.checked_sub(1)?)?;
    let mut before = 0u64;
    let mut first = None;
    let mut last = None;
    for &(chunk, count) in counts {
        let end = before + count;
        if first.is_none() && offset < end {
            first = Some((chunk, offset - before));
        }
        if first.is_some() && count > 0 {
            last = Some((chunk, last_wanted.min(end - 1) - before));
        }
        if last_wanted < end {
            break;
        }
        before = end;
    }
    Some((first?, last?))
}

impl DynamoStore {
    pub(super) async fn scheme_error_page(
        &self,
        job: &Job,
        page: PageRequest,
    ) -> StoreResult<Vec<SchemeError>> {
        let first = page.offset();
        let last = first.saturating_add(page.per_page.saturating_sub(1));
        let items = self
            .query_range(
                job_pk(&job.tenant, job.id),
                &scheme_error_sk(first),
                &scheme_error_sk(last),
            )
            .await?;
        // Entries of an earlier file of the job may remain until its new report replaced them.
        items
            .into_iter()
            .filter(|item| text_of(item, "file_key") == Some(job.file_key.as_str()))
            .map(from_item::<SchemeError>)
            .collect()
    }

    pub(super) async fn update_error_page(
        &self,
        job: &Job,
        page: PageRequest,
    ) -> StoreResult<Vec<UpdateError>> {
        let pk = job_pk(&job.tenant, job.id);
        let counts: Vec<(u32, u64)> = self
            .query_prefix(pk.clone(), UPDATE_COUNT_PREFIX)
            .await?
            .iter()
            .filter_map(|item| {
                let chunk = text_of(item, "sk")?
                    .strip_prefix(UPDATE_COUNT_PREFIX)?
                    .parse()
                    .ok()?;
                Some((chunk, item.get("count")?.as_n().ok()?.parse().ok()?))
            })
            .collect();
        let Some((from, to)) = locate(&counts, page.offset(), page.per_page) else {
            return Ok(Vec::new());
        };
        let committed: HashMap<u32, u64> = counts.into_iter().collect();
        let items = self
            .query_range(
                pk,
                &update_error_sk(from.0, from.1),
                &update_error_sk(to.0, to.1),
            )
            .await?;
        // A chunk not committed yet may have written its errors already: not part of the log.
        items
            .into_iter()
            .filter(|item| {
                update_error_position(item)
                    .is_some_and(|(chunk, n)| committed.get(&chunk).is_some_and(|&count| n < count))
            })
            .map(from_item::<UpdateError>)
            .collect()
    }

    /// The items of partition `pk` with sort keys from `from` to `to` (both included), read
    /// consistently, in key order.
    async fn query_range(&self, pk: String, from: &str, to: &str) -> StoreResult<Vec<Item>> {
        self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .consistent_read(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{locate, Span};

    /// Chunks 0, 2 and 5 committed with errors (3, 0, 4 and 2 of them; chunk 2's count is
    /// zero as a chunk without errors would never write it, to be safe).
    const COUNTS: [(u32, u64); 4] = [(0, 3), (2, 0), (3, 4), (5, 2)];

    #[test]
    fn a_page_is_located_from_the_chunks_counts() {
        let cases: [(u64, u64, Option<Span>); 8] = [
            (0, 2, Some(((0, 0), (0, 1)))),
            (0, 3, Some(((0, 0), (0, 2)))),
            (2, 3, Some(((0, 2), (3, 1)))),
            (3, 4, Some(((3, 0), (3, 3)))),
            (3, 100, Some(((3, 0), (5, 1)))),
            (8, 1, Some(((5, 1), (5, 1)))),
            (9, 10, None),
            (0, 0, None),
        ];
        for (offset, limit, wanted) in cases {
            assert_eq!(
                locate(&COUNTS, offset, limit),
                wanted,
                "offset {offset}, limit {limit}"
            );
        }
        assert_eq!(locate(&[], 0, 10), None);
    }
}

//! The DynamoDB store: jobs, users and tenants in one table.
//!
//! Keys are strings `pk` / `sk`; two global secondary indexes `gsi1` (`gsi1pk`, `gsi1sk`) and
//! `gsi2` (`gsi2pk`, `gsi2sk`) project all attributes. Layout:
//!
//! | item               | pk                           | sk                      | gsi1pk / gsi1sk         | gsi2pk / gsi2sk                    |
//! |--------------------|------------------------------|-------------------------|-------------------------|------------------------------------|
//! | user id counter    | `COUNTER#users`              | `COUNTER`               |                         |                                    |
//! | job                | `JOB#{tenant}#{id}`          | `JOB`                   | `JOBS#{tenant}` / ordinal₂₀ | `JOBS_IN_PROGRESS` / `{tenant}#{id₂₀}` while in progress |
//! | tenant's job count | `TENANT#{tenant}`            | `JOBS`                  |                         |                                    |
//! | live users of a bucket of 1000 ids | `TENANT#{tenant}` | `LIVE#{bucket:016}`  |                         |                                    |
//! | scheme error       | `JOB#{tenant}#{id}`          | `SERR#{seq:010}`        |                         |                                    |
//! | update error       | `JOB#{tenant}#{id}`          | `UERR#{chunk:08}#{n:07}` |                        |                                    |
//! | update error count | `JOB#{tenant}#{id}`          | `UCOUNT#{chunk:08}`     |                         |                                    |
//! | chunk marker       | `JOB#{tenant}#{id}`          | `CHUNK#{chunk:06}`      |                         |                                    |
//! | chunk results part | `JOB#{tenant}#{id}`          | `RESULT#{chunk:06}#{part:03}` |                   |                                    |
//! | user               | `USER#{tenant}#{id₂₀}`       | `USER`                  | `USERS#{tenant}` / id₂₀ | `AGENT#{tenant}#{agent}` / id₂₀    |
//! | user key           | `UKEY#{tenant}#{field}#{value}` | `UKEY`               | `UNAMES#{tenant}` / value (user names only) |                 |
//! | tenant settings    | `TENANT#{tenant}`            | `SETTINGS`              |                         |                                    |
//! | credential         | `CREDENTIAL#{key_id}`        | `CREDENTIAL`            | `CREDENTIALS#{tenant}` / key id |                            |
//! | secret pointer     | `SECRET#{secret_lookup}`     | `SECRET`                |                         |                                    |
//! | keyring            | `KEYRING`                    | `KEYRING`               |                         |                                    |
//! | idempotency key    | `IDEM#{tenant}#{key}`        | `IDEM`                  |                         |                                    |
//! | request count      | `RATE#{tenant}#{minute}`     | `RATE`                  |                         |                                    |
//! | failed authentications | `AUTHFAIL#{source}#{minute}` | `AUTHFAIL`          |                         |                                    |
//! | slot lease         | `TENANT#{tenant}`            | `SLOT#{name}#{slot:03}` |                         |                                    |
//!
//! (id₂₀: the id zero-padded to 20 digits, so the string order is the numeric order.)
//!
//! The keyring item (`current` version, `roots`: version → KMS-wrapped root) is the AWS
//! keyring's (`adapters/aws/keyring.rs`), read once per process and again when a secret finds
//! nothing; only the operator writes it.
//!
//! Job ids are numbered per tenant: a job's id and its ordinal are both the next value of its
//! tenant's job count, which only grows, so an id is never given twice within a tenant. Jobs
//! recorded under the earlier layout (`JOB#{id}`, ids from a global `COUNTER#jobs`) are not
//! read by this one.
//!
//! Expiry: every item of a job (the job, its scheme and update errors and counts, chunk
//! markers, result parts), every idempotency key and every request count carries
//! `expires_at`, epoch seconds, the table's time-to-live attribute: for a job its
//! `keep_until` (rounded up to the second), for an idempotency key a day after its claim, for a
//! request count an hour after its minute. DynamoDB deletes expired items within days, so
//! reads apply [`Job::is_expired_at`](crate::model::Job::is_expired_at) themselves: a job read
//! or listed is left out once expired, and a change of status is conditioned on
//! `keep_until > now` (timestamps have one fixed-width format, so text order is time order).
//!
//! A deleted user's item is a tombstone ([`User::delete`](crate::model::User::delete)): id,
//! version, times and the job row that deleted it, nothing personal. Users deleted before
//! tombstones were scrubbed keep their old items until they are written again.
//!
//! A chunk marker records the chunk's counts and, in its `results` attribute (a JSON array),
//! the chunk's row results; results too large for one item go to result parts written before
//! the marker, which then counts them in `result_parts`.
//!
//! A user item holds the serialized user (its `version` top-level, for conditions). Only a
//! live user has the index attributes: a deleted user keeps its item but is never listed nor selected. A user
//! key item (`field` is `email`, `external_id` or `user_name`, `value` normalised as in
//! `UserKey`) names the user holding that key in `user_id`; a user name's is also on `gsi1`,
//! the index listings filtered by a user name's start read. Each change of a user is one
//! transaction of its item and the key items it claims or releases. Write cost:
//! TransactWriteItems consumes 2 WCU per item and KB, so a created user costs one transaction
//! item plus one per key it holds (2 WCU each when at most 1 KB), an update that changes no
//! key one item, and each key changed one item more.

mod admission;
mod errors;
mod idempotency;
mod job_list;
mod jobs;
#[cfg(test)]
mod retry_tests;
mod tenants;
mod user_list;
mod users;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValue,
    WriteRequest,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{backoff, build_error};
use crate::ports::{StoreError, StoreResult};

pub(crate) type Item = HashMap<String, AttributeValue>;

const STORE: &str = "dynamodb";
/// Most keys one BatchGetItem may carry.
const BATCH_GET_MAX: usize = 100;
/// Most requests one BatchWriteItem may carry.
const BATCH_WRITE_MAX: usize = 25;
/// Batch requests of one call in flight at once.
const BATCH_CONCURRENCY: usize = 4;
/// Retries of unprocessed keys / items (and of conflicting transactions) before giving up.
const MAX_RETRIES: u32 = 8;
/// Items read per request while skipping to an offset (a query page stops at 1 MB before
/// that with larger items).
const SKIP_PAGE: i32 = 10_000;

pub(crate) const GSI1: &str = "gsi1";
pub(crate) const GSI2: &str = "gsi2";

/// Jobs, users and tenants in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Adds `by` to a counter and answers its new value (counters start at 0).
    async fn add_to_counter(&self, name: &str, by: u64) -> StoreResult<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("COUNTER#{name}")))
            .key("sk", s("COUNTER"))
            .update_expression("ADD #value :n")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":n", n(by))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        out.attributes()
            .and_then(|attributes| attributes.get("value"))
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("counter {name} has no numeric value")))
    }

    /// One item, read consistently.
    async fn get_item(&self, key: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, read consistently.
    async fn query_prefix(&self, pk: impl Into<String>, prefix: &str) -> StoreResult<Vec<Item>> {
        let pk = pk.into();
        self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
        })
        .await
    }

    /// A query of one `gsi1` partition, in ascending or descending `gsi1sk` order.
    fn gsi1_partition(&self, partition: &str, ascending: bool) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :partition")
            .expression_attribute_values(":partition", s(partition))
            .scan_index_forward(ascending)
    }

    /// Every item a query matches, following `LastEvaluatedKey`.
    async fn query_all(&self, query: impl Fn() -> QueryFluentBuilder) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// How many items a query matches (`Select=COUNT`, paginated).
    async fn query_count(&self, query: impl Fn() -> QueryFluentBuilder) -> StoreResult<u64> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = query()
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }

    /// Items `offset..offset + limit` of a query's results. The skipped items are read with
    /// `keys_only` as projection, so only their keys travel.
    async fn query_page(
        &self,
        query: impl Fn() -> QueryFluentBuilder,
        keys_only: &str,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<Item>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut start: Option<Item> = None;
        let mut to_skip = offset;
        while to_skip > 0 {
            let page = i32::try_from(to_skip).unwrap_or(SKIP_PAGE).min(SKIP_PAGE);
            let out = query()
                .projection_expression(keys_only)
                .limit(page)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            to_skip = to_skip.saturating_sub(u64::try_from(out.count).unwrap_or(0));
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(Vec::new()),
            }
        }
        let mut items = Vec::new();
        loop {
            let wanted = limit - items.len() as u64;
            let page = i32::try_from(wanted).unwrap_or(SKIP_PAGE).min(SKIP_PAGE);
            let out = query()
                .limit(page)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            if items.len() as u64 >= limit {
                items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                return Ok(items);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// The items stored under these keys, read consistently with BatchGetItem (≤ 100 keys per
    /// request, unprocessed keys retried with backoff). Duplicate keys are read once; the
    /// answer is in no particular order.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut unique: Vec<Item> = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            if seen.insert(key_text(&key)) {
                unique.push(key);
            }
        }
        let batches: Vec<Vec<Item>> = unique.chunks(BATCH_GET_MAX).map(<[Item]>::to_vec).collect();
        let results: Vec<Vec<Item>> = stream::iter(batches)
            .map(|batch| self.batch_get_one(batch))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn batch_get_one(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| build_error(STORE, e))?;
        let mut attempt = 0;
        loop {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(found) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                items.extend(found);
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys().is_empty() => {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(StoreError::unavailable(
                            STORE,
                            format!(
                                "{} keys still unprocessed after {MAX_RETRIES} retries",
                                rest.keys().len()
                            ),
                        ));
                    }
                    backoff(attempt).await;
                    pending = rest;
                }
                _ => return Ok(items),
            }
        }
    }

    /// Applies puts and deletes with BatchWriteItem (≤ 25 per request, unprocessed items retried
    /// with backoff). Several writes to one key collapse into the last one, which is the state
    /// applying them in order would leave.
    async fn batch_write(&self, writes: Vec<Write>) -> StoreResult<()> {
        let requests = last_write_per_key(writes)
            .into_iter()
            .map(Write::into_request)
            .collect::<StoreResult<Vec<WriteRequest>>>()?;
        let batches: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        stream::iter(batches)
            .map(|batch| self.batch_write_one(batch))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn batch_write_one(&self, mut pending: Vec<WriteRequest>) -> StoreResult<()> {
        let mut attempt = 0;
        loop {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(unavailable)?;
            match out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
            {
                Some(rest) if !rest.is_empty() => {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(StoreError::unavailable(
                            STORE,
                            format!(
                                "{} writes still unprocessed after {MAX_RETRIES} retries",
                                rest.len()
                            ),
                        ));
                    }
                    backoff(attempt).await;
                    pending = rest;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Deletes every item of a partition whose sort key starts with `prefix` and which `doomed`
    /// selects.
    async fn delete_where(
        &self,
        pk: &str,
        prefix: &str,
        doomed: impl Fn(&Item) -> bool,
    ) -> StoreResult<()> {
        let items = self.query_prefix(pk, prefix).await?;
        let deletes: Vec<Write> = items
            .iter()
            .filter(|item| doomed(item))
            .filter_map(|item| {
                let pk = item.get("pk")?.clone();
                let sk = item.get("sk")?.clone();
                Some(Write::Delete(Item::from([
                    ("pk".to_owned(), pk),
                    ("sk".to_owned(), sk),
                ])))
            })
            .collect();
        if deletes.is_empty() {
            return Ok(());
        }
        self.batch_write(deletes).await
    }
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Put(Item),
    /// The key (`pk`, `sk`) of the item to delete.
    Delete(Item),
}

impl Write {
    fn key_source(&self) -> &Item {
        match self {
            Write::Put(item) | Write::Delete(item) => item,
        }
    }

    fn into_request(self) -> StoreResult<WriteRequest> {
        Ok(match self {
            Write::Put(item) => WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| build_error(STORE, e))?,
                )
                .build(),
            Write::Delete(key) => WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map_err(|e| build_error(STORE, e))?,
                )
                .build(),
        })
    }
}

/// The last write of each key, in the order of those last writes: the state that applying all
/// the writes in order would leave. (DynamoDB rejects a batch naming one key twice.)
fn last_write_per_key(writes: Vec<Write>) -> Vec<Write> {
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<Option<Write>> = Vec::with_capacity(writes.len());
    for write in writes {
        let key = key_text(write.key_source());
        if let Some(&earlier) = position.get(&key) {
            unique[earlier] = None;
        }
        position.insert(key, unique.len());
        unique.push(Some(write));
    }
    unique.into_iter().flatten().collect()
}

/// The primary key of an item as text, for deduplication.
fn key_text(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => text.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    format!("{}\u{0}{}", part("pk"), part("sk"))
}

/// The cancellation reason of an item whose condition failed.
pub(crate) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Why a transaction was cancelled: one reason per item, in the transaction's order.
pub(crate) struct Cancellation<'a>(&'a [CancellationReason]);

impl<'a> Cancellation<'a> {
    /// The reasons of a cancelled transaction; `None` for any other failure.
    pub(crate) fn of<R>(
        error: &'a aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
    ) -> Option<Cancellation<'a>> {
        match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                Some(Cancellation(cancelled.cancellation_reasons()))
            }
            _ => None,
        }
    }

    /// Whether the condition of item `index` failed.
    pub(crate) fn condition_failed(&self, index: usize) -> bool {
        self.0.get(index).and_then(|reason| reason.code()) == Some(CONDITION_FAILED)
    }

    /// Whether sending the transaction again may succeed (see [`is_transient_cancellation`]).
    pub(crate) fn transient(&self) -> bool {
        self.0.iter().any(is_transient_cancellation)
    }
}

/// Whether a transaction cancellation reason is worth sending the transaction again for: a
/// conflict with another transaction, or throttling.
pub(crate) fn is_transient_cancellation(reason: &CancellationReason) -> bool {
    matches!(
        reason.code(),
        Some(
            "TransactionConflict"
                | "ThrottlingError"
                | "ProvisionedThroughputExceeded"
                | "RequestLimitExceeded"
        )
    )
}

pub(crate) fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub(crate) fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// A key `{pk, sk}`.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// An id zero-padded to 20 digits: string order is numeric order.
pub(crate) fn padded(id: u64) -> String {
    format!("{id:020}")
}

/// A failed DynamoDB call as a store error (a denial, or unavailability).
pub(crate) fn unavailable<E>(
    error: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    super::sdk_failure(STORE, error)
}

/// Whether a conditional write failed its condition (the answer the condition exists for, not
/// a failure of the store).
pub(crate) fn is_conditional_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// A value's attributes, to which the key attributes are then added.
pub(crate) fn to_item<T: Serialize>(value: &T) -> StoreResult<Item> {
    serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode an item: {e}")))
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> StoreResult<T> {
    let description = key_text(&item).replace('\u{0}', " / ");
    serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("item {description} does not decode: {e}")))
}

pub(crate) fn to_attribute<T: Serialize>(value: &T) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode an attribute: {e}")))
}

/// A string attribute of an item.
pub(crate) fn text_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_ids_sort_like_numbers() {
        assert_eq!(padded(42), "00000000000000000042");
        assert!(padded(9) < padded(10));
        assert!(padded(u64::MAX).len() == 20);
    }

    #[test]
    fn only_the_last_write_of_a_key_is_kept() {
        let put = |pk: &str, version: u32| {
            let mut item = key(pk, "USER");
            item.insert("version".to_owned(), n(version));
            Write::Put(item)
        };
        let kept = last_write_per_key(vec![
            put("a", 1),
            put("b", 1),
            Write::Delete(key("a", "USER")),
            put("c", 1),
            put("b", 2),
        ]);
        let described: Vec<String> = kept
            .iter()
            .map(|write| match write {
                Write::Put(item) => format!(
                    "put {} v{}",
                    text_of(item, "pk").unwrap_or_default(),
                    item.get("version").and_then(|v| v.as_n().ok()).unwrap()
                ),
                Write::Delete(key) => format!("delete {}", text_of(key, "pk").unwrap_or_default()),
            })
            .collect();
        assert_eq!(described, vec!["delete a", "put c v1", "put b v2"]);
    }

    #[test]
    fn key_text_separates_pk_and_sk() {
        assert_ne!(key_text(&key("a", "bc")), key_text(&key("ab", "c")));
    }
}

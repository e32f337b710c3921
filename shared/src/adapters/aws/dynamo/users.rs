//! [`UserStore`] on DynamoDB.
//!
//! A user is one item under its id; each unique key it holds (email, external id, user name)
//! is one more item naming the user, so uniqueness is a conditional put of that key item.
//! A change is one transaction: the user item (conditioned on the version read), a put of
//! every key it claims (conditioned on the key being free or already its own) and a delete of
//! every key it releases (conditioned on the key still being its own). The write cost is
//! stated with the table layout, in the parent module.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::user_list::{bucket_of, live_count_key, user_names_partition};
use super::{
    backoff, build_error, from_item, is_transient_cancellation, key, key_text, n, padded, s,
    to_item, unavailable, DynamoStore, Item, CONDITION_FAILED, GSI2, MAX_RETRIES, STORE,
};
use crate::model::{
    SaveOutcome, TenantId, User, UserChange, UserFilter, UserId, UserKey, UserSelector,
};
use crate::ports::{StoreError, StoreResult, UserStore, Window};

/// Index queries of one selection in flight at once.
const QUERY_CONCURRENCY: usize = 8;
/// Most items one TransactWriteItems may carry.
const TRANSACTION_MAX: usize = 100;

fn user_key(tenant: &TenantId, id: UserId) -> Item {
    key(format!("USER#{tenant}#{}", padded(id)), "USER")
}

fn unique_key(tenant: &TenantId, user_key: &UserKey) -> Item {
    key(
        format!("UKEY#{tenant}#{}#{}", user_key.field(), user_key.value()),
        "UKEY",
    )
}

/// The item of a key `holder` claims: it names the holder; a user name's is also listed by
/// the name on `gsi1`, for listings filtered by a user name's start.
fn claim_item(tenant: &TenantId, claimed: &UserKey, holder: UserId) -> Item {
    let mut item = unique_key(tenant, claimed);
    item.insert("user_id".to_owned(), n(holder));
    if let UserKey::UserName(name_key) = claimed {
        item.insert("gsi1pk".to_owned(), s(user_names_partition(tenant)));
        item.insert("gsi1sk".to_owned(), s(name_key));
    }
    item
}

fn users_partition(tenant: &TenantId) -> String {
    format!("USERS#{tenant}")
}

fn agent_partition(tenant: &TenantId, agent_number: &str) -> String {
    format!("AGENT#{tenant}#{agent_number}")
}

/// The stored form of a user: its attributes (`version` among them, top-level), its key and,
/// for a live user only, its index keys (the indexes are sparse: a deleted user is never
/// listed).
fn user_item(tenant: &TenantId, user: &User) -> StoreResult<Item> {
    let mut item = to_item(user)?;
    item.extend(user_key(tenant, user.id));
    if user.is_deleted() {
        return Ok(item);
    }
    item.insert("gsi1pk".to_owned(), s(users_partition(tenant)));
    item.insert("gsi1sk".to_owned(), s(padded(user.id)));
    if let Some(agent_number) = &user.agent_number {
        item.insert(
            "gsi2pk".to_owned(),
            s(agent_partition(tenant, agent_number)),
        );
        item.insert("gsi2sk".to_owned(), s(padded(user.id)));
    }
    Ok(item)
}

/// Users in id order, each id once.
fn in_id_order(mut users: Vec<User>) -> Vec<User> {
    users.sort_by_key(|user| user.id);
    users.dedup_by_key(|user| user.id);
    users
}

/// What one item of a change's transaction does, to read its cancellation reason.
#[derive(Debug, Clone)]
enum Step {
    User,
    Claim(UserKey),
    Release,
}

/// The transaction items of one change.
#[derive(Debug, Clone)]
struct Planned {
    /// Position of the change in the call.
    change: usize,
    items: Vec<TransactWriteItem>,
    steps: Vec<Step>,
    /// The keys of the items written, to keep two writes of one item out of one transaction.
    touched: Vec<String>,
    /// The change to its tenant's count of live users: the bucket of the user's id, and +1
    /// (created) or -1 (deleted). Each transaction adds its changes' counts up per bucket.
    live: Option<(u64, i64)>,
}

fn plan(table: &str, tenant: &TenantId, at: usize, change: &UserChange) -> StoreResult<Planned> {
    let after = &change.after;
    let build = |e| build_error(STORE, e);
    let mut user_put = Put::builder()
        .table_name(table)
        .set_item(Some(user_item(tenant, after)?));
    user_put = match &change.before {
        None => user_put
            .condition_expression("attribute_not_exists(pk)")
            // The stored user comes back with the cancellation: is it this very user?
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld),
        Some(before) => user_put
            .condition_expression("version = :before_version")
            .expression_attribute_values(":before_version", n(before.version)),
    };
    let was_live = change
        .before
        .as_ref()
        .is_some_and(|before| !before.is_deleted());
    let delta = i64::from(!after.is_deleted()) - i64::from(was_live);
    let mut planned = Planned {
        change: at,
        items: Vec::new(),
        steps: Vec::new(),
        touched: vec![key_text(&user_key(tenant, after.id))],
        live: (delta != 0).then(|| (bucket_of(after.id), delta)),
    };
    planned.items.push(
        TransactWriteItem::builder()
            .put(user_put.build().map_err(build)?)
            .build(),
    );
    planned.steps.push(Step::User);
    for claimed in change.claimed_keys() {
        let item = claim_item(tenant, &claimed, after.id);
        planned
            .touched
            .push(key_text(&unique_key(tenant, &claimed)));
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR user_id = :id")
            .expression_attribute_values(":id", n(after.id))
            .build()
            .map_err(build)?;
        planned
            .items
            .push(TransactWriteItem::builder().put(put).build());
        planned.steps.push(Step::Claim(claimed));
    }
    for released in change.released_keys() {
        let item = unique_key(tenant, &released);
        planned.touched.push(key_text(&item));
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(item))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", n(after.id))
            .build()
            .map_err(build)?;
        planned
            .items
            .push(TransactWriteItem::builder().delete(delete).build());
        planned.steps.push(Step::Release);
    }
    Ok(planned)
}

/// A fresh idempotency token for TransactWriteItems (at most 36 characters).
fn request_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whole changes, in order, cut into transactions of at most 100 items (with one count item
/// per bucket of live users they change) in which no item is written twice (DynamoDB rejects
/// that). Sending the transactions one after the other applies the changes in order.
fn transactions(planned: Vec<Planned>) -> Vec<Vec<Planned>> {
    let mut groups: Vec<Vec<Planned>> = Vec::new();
    let mut items = 0;
    let mut touched: HashSet<String> = HashSet::new();
    let mut buckets: HashSet<u64> = HashSet::new();
    for change in planned {
        let new_bucket = change
            .live
            .is_some_and(|(bucket, _)| !buckets.contains(&bucket));
        let fits = !groups.is_empty()
            && items + change.items.len() + usize::from(new_bucket) <= TRANSACTION_MAX
            && change.touched.iter().all(|key| !touched.contains(key));
        if !fits {
            groups.push(Vec::new());
            items = 0;
            touched.clear();
            buckets.clear();
        }
        if let Some((bucket, _)) = change.live {
            if buckets.insert(bucket) {
                items += 1;
            }
        }
        items += change.items.len();
        touched.extend(change.touched.iter().cloned());
        if let Some(group) = groups.last_mut() {
            group.push(change);
        }
    }
    groups
}

/// The count items of a transaction of `group`: one per bucket of live users its changes
/// change, by their sum; after the changes' own items (their reasons come first).
fn live_count_items(
    table: &str,
    tenant: &TenantId,
    group: &[Planned],
) -> StoreResult<Vec<TransactWriteItem>> {
    let mut deltas: std::collections::BTreeMap<u64, i64> = std::collections::BTreeMap::new();
    for (bucket, delta) in group.iter().filter_map(|planned| planned.live) {
        *deltas.entry(bucket).or_insert(0) += delta;
    }
    deltas
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|(bucket, delta)| {
            let update = Update::builder()
                .table_name(table)
                .set_key(Some(live_count_key(tenant, bucket)))
                .update_expression("ADD live :delta")
                .expression_attribute_values(":delta", n(delta))
                .build()
                .map_err(|e| build_error(STORE, e))?;
            Ok(TransactWriteItem::builder().update(update).build())
        })
        .collect()
}

/// The items of the transaction of `group`: its changes' items, then the count items.
fn transaction_items(
    table: &str,
    tenant: &TenantId,
    group: &[Planned],
) -> StoreResult<Vec<TransactWriteItem>> {
    let mut items: Vec<TransactWriteItem> = group
        .iter()
        .flat_map(|planned| planned.items.iter().cloned())
        .collect();
    items.extend(live_count_items(table, tenant, group)?);
    Ok(items)
}

/// A TransactWriteItems that failed.
type TransactionError = SdkError<TransactWriteItemsError, HttpResponse>;

/// Why a transaction of changes was not written, when it may be sent again.
enum Unwritten {
    /// The same transaction is still being applied.
    InProgress(TransactionError),
    /// Cancelled, with one reason per item, in the transaction's order.
    Cancelled(Vec<CancellationReason>, TransactionError),
}

impl Unwritten {
    /// Reads a failure of a transaction of `expected` items; `Err` for a failure that sending
    /// again would not mend.
    fn of(error: TransactionError, expected: usize) -> StoreResult<Unwritten> {
        let reasons: Vec<CancellationReason> = match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                cancelled.cancellation_reasons().to_vec()
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                return Ok(Unwritten::InProgress(error));
            }
            _ => return Err(unavailable(error)),
        };
        // DynamoDB (and the emulator) give one reason per item, in order. Without them a
        // change could not be told apart from the others: give up rather than guess. (The
        // count items have no condition; their reasons come last.)
        if reasons.len() != expected {
            return Err(StoreError::unavailable(
                STORE,
                format!(
                    "a cancelled transaction of {expected} items gave {} reasons: {}",
                    reasons.len(),
                    super::DisplayErrorContext(&error)
                ),
            ));
        }
        Ok(Unwritten::Cancelled(reasons, error))
    }
}

impl DynamoStore {
    /// Sends one transaction of whole changes until each is saved or refused; a refused change
    /// is left out and the others sent again.
    async fn save_transaction(
        &self,
        tenant: &TenantId,
        changes: &[UserChange],
        mut group: Vec<Planned>,
        outcomes: &mut [Option<SaveOutcome>],
    ) -> StoreResult<()> {
        let mut attempt = 0;
        // A token per transaction sent: when the SDK sends it again because an answer was
        // lost, DynamoDB answers the first outcome instead of failing the conditions that the
        // first send made false.
        let mut token = request_token();
        while !group.is_empty() {
            let items = transaction_items(&self.table, tenant, &group)?;
            let expected = items.len();
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(token.clone())
                .send()
                .await;
            let error = match sent {
                Ok(_) => {
                    for planned in &group {
                        outcomes[planned.change] = Some(SaveOutcome::Saved);
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            let (reasons, error) = match Unwritten::of(error, expected)? {
                Unwritten::Cancelled(reasons, error) => (reasons, error),
                Unwritten::InProgress(error) => {
                    // The same transaction is still being applied: ask again, same token.
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(unavailable(error));
                    }
                    backoff(attempt).await;
                    continue;
                }
            };
            token = request_token();
            let refused;
            (group, refused) = self
                .without_refused(tenant, changes, group, &reasons, outcomes)
                .await?;
            if refused {
                // Nothing was written: the others go again at once.
                continue;
            }
            attempt += 1;
            if !reasons.iter().any(is_transient_cancellation) || attempt > MAX_RETRIES {
                return Err(unavailable(error));
            }
            backoff(attempt).await;
        }
        Ok(())
    }

    /// The changes of a cancelled transaction that were not refused, to send again, and
    /// whether any was; a refused change gets its outcome.
    async fn without_refused(
        &self,
        tenant: &TenantId,
        changes: &[UserChange],
        group: Vec<Planned>,
        reasons: &[CancellationReason],
        outcomes: &mut [Option<SaveOutcome>],
    ) -> StoreResult<(Vec<Planned>, bool)> {
        let mut kept = Vec::with_capacity(group.len());
        let mut refused = false;
        let mut offset = 0;
        for planned in group {
            let mine = &reasons[offset..offset + planned.items.len()];
            offset += planned.items.len();
            match self
                .refusal(tenant, &changes[planned.change], &planned, mine)
                .await?
            {
                Some(outcome) => {
                    outcomes[planned.change] = Some(outcome);
                    refused = true;
                }
                None => kept.push(planned),
            }
        }
        Ok((kept, refused))
    }

    /// What the cancellation reasons of one change's items say about it: `None` when none of
    /// its conditions failed.
    async fn refusal(
        &self,
        tenant: &TenantId,
        change: &UserChange,
        planned: &Planned,
        reasons: &[CancellationReason],
    ) -> StoreResult<Option<SaveOutcome>> {
        let failed = |reason: &CancellationReason| reason.code() == Some(CONDITION_FAILED);
        let mut taken = None;
        let mut stale = false;
        for (step, reason) in planned.steps.iter().zip(reasons) {
            if !failed(reason) {
                continue;
            }
            match step {
                Step::User if change.before.is_none() => {
                    // The id exists: saved by an earlier run of this very change, or stale.
                    let stored = match reason.item() {
                        Some(item) if !item.is_empty() => Some(item.clone()),
                        _ => self.get_item(user_key(tenant, change.after.id)).await?,
                    };
                    let same = match stored {
                        Some(item) => from_item::<User>(item)? == change.after,
                        None => false,
                    };
                    return Ok(Some(if same {
                        SaveOutcome::Saved
                    } else {
                        SaveOutcome::Stale
                    }));
                }
                Step::User | Step::Release => stale = true,
                Step::Claim(key) => {
                    taken.get_or_insert_with(|| key.clone());
                }
            }
        }
        Ok(if stale {
            Some(SaveOutcome::Stale)
        } else {
            taken.map(SaveOutcome::KeyTaken)
        })
    }

    /// Every user of an index partition (`gsi2`: one agent number).
    async fn query_agent_partition(&self, partition: String) -> StoreResult<Vec<User>> {
        let items = self
            .query_all(|| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(GSI2)
                    .key_condition_expression("gsi2pk = :partition")
                    .expression_attribute_values(":partition", s(partition.clone()))
            })
            .await?;
        items.into_iter().map(from_item::<User>).collect()
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn users_by_keys(&self, tenant: &TenantId, keys: &[UserKey]) -> StoreResult<Vec<User>> {
        let asked: BTreeSet<&UserKey> = keys.iter().collect();
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let key_items = self
            .batch_get(asked.iter().map(|k| unique_key(tenant, k)).collect())
            .await?;
        let ids: Vec<UserId> = key_items
            .iter()
            .filter_map(|item| item.get("user_id")?.as_n().ok()?.parse().ok())
            .collect();
        let users = self.users_by_ids(tenant, &ids).await?;
        // A key item names its holder; the user item has the last word.
        Ok(users
            .into_iter()
            .filter(|user| !user.is_deleted() && user.keys().iter().any(|k| asked.contains(k)))
            .collect())
    }

    async fn users_by_ids(&self, tenant: &TenantId, ids: &[UserId]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let items = self
            .batch_get(ids.iter().map(|&id| user_key(tenant, id)).collect())
            .await?;
        let users = items
            .into_iter()
            .map(from_item::<User>)
            .collect::<StoreResult<Vec<User>>>()?;
        Ok(in_id_order(users))
    }

    async fn save_users(
        &self,
        tenant: &TenantId,
        changes: &[UserChange],
    ) -> StoreResult<Vec<SaveOutcome>> {
        let mut outcomes: Vec<Option<SaveOutcome>> = vec![None; changes.len()];
        let mut planned = Vec::with_capacity(changes.len());
        for (at, change) in changes.iter().enumerate() {
            match &change.before {
                Some(before) if before.id != change.after.id => {
                    outcomes[at] = Some(SaveOutcome::Stale);
                }
                _ => planned.push(plan(&self.table, tenant, at, change)?),
            }
        }
        for group in transactions(planned) {
            self.save_transaction(tenant, changes, group, &mut outcomes)
                .await?;
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(at, outcome)| {
                outcome.ok_or_else(|| {
                    StoreError::unavailable(STORE, format!("change {at} was never answered"))
                })
            })
            .collect()
    }

    async fn allocate_user_ids(&self, count: u64) -> StoreResult<UserId> {
        let last = self.add_to_counter("users", count).await?;
        Ok(last + 1 - count)
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: &UserFilter,
        window: Window,
    ) -> StoreResult<(Vec<User>, u64)> {
        match filter.user_name_prefix() {
            None => self.live_user_page(tenant, window).await,
            Some(prefix) => self.named_user_page(tenant, prefix, window).await,
        }
    }

    async fn select_users(
        &self,
        tenant: &TenantId,
        selector: &UserSelector,
    ) -> StoreResult<Vec<User>> {
        let users = match selector {
            UserSelector::Emails(emails) => {
                let keys: Vec<UserKey> = emails.iter().map(|email| UserKey::email(email)).collect();
                self.users_by_keys(tenant, &keys).await?
            }
            UserSelector::Ids(ids) => {
                let ids: Vec<UserId> = ids
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut users = self.users_by_ids(tenant, &ids).await?;
                users.retain(|user| !user.is_deleted());
                users
            }
            UserSelector::AgentNumbers(numbers) => {
                let partitions: HashSet<String> = numbers
                    .iter()
                    .map(|number| agent_partition(tenant, number))
                    .collect();
                let found: Vec<Vec<User>> = stream::iter(partitions)
                    .map(|partition| self.query_agent_partition(partition))
                    .buffer_unordered(QUERY_CONCURRENCY)
                    .try_collect()
                    .await?;
                found.into_iter().flatten().collect()
            }
        };
        Ok(in_id_order(users))
    }
}

#[cfg(test)]
mod tests {
    use super::super::text_of;
    use super::*;
    use crate::model::Timestamp;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn created(id: UserId, email: &str) -> UserChange {
        let mut after = User::new(id, Timestamp::from_unix_millis(0).unwrap());
        after.version = 1;
        after.email = Some(email.to_owned());
        UserChange {
            before: None,
            after,
        }
    }

    #[test]
    fn items_are_keyed_by_tenant_and_id_and_deleted_users_leave_the_indexes() {
        let mut user = created(42, "Ann@X.io").after;
        user.user_name = Some(" Ann.Lee ".to_owned());
        user.agent_number = Some("A1".to_owned());
        let item = user_item(&tenant(), &user).unwrap();
        assert_eq!(text_of(&item, "pk"), Some("USER#acme#00000000000000000042"));
        assert_eq!(text_of(&item, "gsi2pk"), Some("AGENT#acme#A1"));
        assert_eq!(item.get("version"), Some(&n(1)));
        let email = claim_item(&tenant(), &UserKey::email("Ann@X.io"), 42);
        assert_eq!(text_of(&email, "pk"), Some("UKEY#acme#email#ann@x.io"));
        assert_eq!(email.get("user_id"), Some(&n(42)));
        assert!(!email.contains_key("gsi1pk"));
        // A user name's key item is listed by the name.
        let name = claim_item(&tenant(), &UserKey::user_name(" Ann.Lee "), 42);
        assert_eq!(text_of(&name, "pk"), Some("UKEY#acme#user_name#ann.lee"));
        assert_eq!(text_of(&name, "gsi1pk"), Some("UNAMES#acme"));
        assert_eq!(text_of(&name, "gsi1sk"), Some("ann.lee"));
        user.deleted_at = Some(user.created_at);
        let item = user_item(&tenant(), &user).unwrap();
        for index_key in ["gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
            assert!(!item.contains_key(index_key), "{index_key}");
        }
    }

    #[test]
    fn transactions_hold_whole_changes_and_never_one_item_twice() {
        // 60 new users with one key each: 2 items per change, and one item for the count of
        // live users in their bucket of ids: 49 changes fill a transaction of 99 items.
        let planned: Vec<Planned> = (0..60)
            .map(|i| {
                plan(
                    "t",
                    &tenant(),
                    i,
                    &created(i as u64 + 1, &format!("u{i}@x.io")),
                )
                .unwrap()
            })
            .collect();
        let sizes: Vec<usize> = transactions(planned).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![49, 11]);

        // The second claim of one email starts a new transaction.
        let planned = vec![
            plan("t", &tenant(), 0, &created(1, "a@x.io")).unwrap(),
            plan("t", &tenant(), 1, &created(2, "b@x.io")).unwrap(),
            plan("t", &tenant(), 2, &created(3, "A@x.io")).unwrap(),
        ];
        let groups: Vec<Vec<usize>> = transactions(planned)
            .iter()
            .map(|group| group.iter().map(|planned| planned.change).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 1], vec![2]]);
    }
}

//! [`UserStore`] on DynamoDB.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::{from_item, key, padded, s, to_item, DynamoStore, Item, Write, GSI1, GSI2};
use crate::model::{email_key, TenantId, User, UserId, UserSelector, UserWrite};
use crate::ports::{PageRequest, StoreResult, UserStore};

/// Index queries of one selection in flight at once.
const QUERY_CONCURRENCY: usize = 8;

fn user_key(tenant: &TenantId, email_key: &str) -> Item {
    key(format!("USER#{tenant}#{email_key}"), "USER")
}

fn users_partition(tenant: &TenantId) -> String {
    format!("USERS#{tenant}")
}

fn agent_partition(tenant: &TenantId, agent_number: &str) -> String {
    format!("AGENT#{tenant}#{agent_number}")
}

/// The stored form of a user: its attributes, its key and its index keys.
fn user_item(tenant: &TenantId, user: &User) -> StoreResult<Item> {
    let mut item = to_item(user)?;
    item.extend(user_key(tenant, &user.email_key()));
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

impl DynamoStore {
    async fn users_by_keys(&self, tenant: &TenantId, keys: &[String]) -> StoreResult<Vec<User>> {
        let items = self
            .batch_get(keys.iter().map(|k| user_key(tenant, k)).collect())
            .await?;
        items.into_iter().map(from_item::<User>).collect()
    }

    /// Every item of a user index partition, optionally narrowed to one padded id.
    async fn query_user_index(
        &self,
        index: &'static str,
        partition: String,
        id: Option<UserId>,
    ) -> StoreResult<Vec<User>> {
        let (pk_name, sk_name) = if index == GSI1 {
            ("gsi1pk", "gsi1sk")
        } else {
            ("gsi2pk", "gsi2sk")
        };
        let condition = match id {
            Some(_) => format!("{pk_name} = :partition AND {sk_name} = :id"),
            None => format!("{pk_name} = :partition"),
        };
        let mut values = HashMap::from([(":partition".to_owned(), s(partition))]);
        if let Some(id) = id {
            values.insert(":id".to_owned(), s(padded(id)));
        }
        let items = self
            .query_all(|| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression(condition.clone())
                    .set_expression_attribute_values(Some(values.clone()))
            })
            .await?;
        items.into_iter().map(from_item::<User>).collect()
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn users_by_email_keys(
        &self,
        tenant: &TenantId,
        keys: &[String],
    ) -> StoreResult<Vec<User>> {
        let mut found: HashMap<String, User> = self
            .users_by_keys(tenant, keys)
            .await?
            .into_iter()
            .map(|user| (user.email_key(), user))
            .collect();
        // In the order asked, each once.
        Ok(keys.iter().filter_map(|k| found.remove(k)).collect())
    }

    async fn write_users(&self, tenant: &TenantId, writes: Vec<UserWrite>) -> StoreResult<()> {
        let writes = writes
            .iter()
            .map(|write| match write {
                UserWrite::Put(user) => user_item(tenant, user).map(Write::Put),
                UserWrite::DeleteEmail(email_key) => Ok(Write::Delete(user_key(tenant, email_key))),
            })
            .collect::<StoreResult<Vec<Write>>>()?;
        if writes.is_empty() {
            return Ok(());
        }
        self.batch_write(writes).await
    }

    async fn allocate_user_ids(&self, count: u64) -> StoreResult<UserId> {
        let last = self.add_to_counter("users", count).await?;
        Ok(last + 1 - count)
    }

    async fn list_users(&self, tenant: &TenantId, page: PageRequest) -> StoreResult<Vec<User>> {
        let partition = users_partition(tenant);
        let items = self
            .query_page(
                || self.gsi1_partition(&partition, true),
                "pk, sk, gsi1pk, gsi1sk",
                page.offset(),
                page.per_page,
            )
            .await?;
        items.into_iter().map(from_item::<User>).collect()
    }

    async fn select_users(
        &self,
        tenant: &TenantId,
        selector: &UserSelector,
    ) -> StoreResult<Vec<User>> {
        let users = match selector {
            UserSelector::Emails(emails) => {
                let keys: Vec<String> = emails.iter().map(|email| email_key(email)).collect();
                self.users_by_keys(tenant, &keys).await?
            }
            UserSelector::Ids(ids) => {
                let ids: HashSet<UserId> = ids.iter().copied().collect();
                let partition = users_partition(tenant);
                let found: Vec<Vec<User>> = stream::iter(ids)
                    .map(|id| self.query_user_index(GSI1, partition.clone(), Some(id)))
                    .buffer_unordered(QUERY_CONCURRENCY)
                    .try_collect()
                    .await?;
                found.into_iter().flatten().collect()
            }
            UserSelector::AgentNumbers(numbers) => {
                let partitions: HashSet<String> = numbers
                    .iter()
                    .map(|number| agent_partition(tenant, number))
                    .collect();
                let found: Vec<Vec<User>> = stream::iter(partitions)
                    .map(|partition| self.query_user_index(GSI2, partition, None))
                    .buffer_unordered(QUERY_CONCURRENCY)
                    .try_collect()
                    .await?;
                found.into_iter().flatten().collect()
            }
        };
        Ok(in_id_order(users))
    }
}

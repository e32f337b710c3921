//! `UserStore` on SQLite: one row per (tenant, email key), the user kept as JSON.

use async_trait::async_trait;
use rusqlite::{params, Connection, Params, TransactionBehavior};

use super::store::{from_json, limit_offset, to_json};
use super::SqliteStore;
use crate::model::{email_key, TenantId, User, UserId, UserSelector, UserWrite};
use crate::ports::{PageRequest, StoreError, StoreResult, UserStore};

fn read_users(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<Vec<User>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut users = Vec::new();
    while let Some(row) = rows.next()? {
        let body: String = row.get(0)?;
        users.push(from_json("user", &body)?);
    }
    Ok(users)
}

/// The tenant's users whose `column` is one of `values`, a JSON array (so any number of values
/// binds as one parameter), in id order.
fn users_where_in(
    conn: &Connection,
    tenant: &TenantId,
    column: &str,
    values: &str,
) -> StoreResult<Vec<User>> {
    read_users(
        conn,
        &format!(
            "SELECT body FROM users WHERE tenant = ?1 \
             AND {column} IN (SELECT value FROM json_each(?2)) ORDER BY id"
        ),
        params![tenant.as_str(), values],
    )
}

fn user_id(id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| StoreError::Corrupt(format!("user id {id} is out of range")))
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn users_by_email_keys(
        &self,
        tenant: &TenantId,
        keys: &[String],
    ) -> StoreResult<Vec<User>> {
        let tenant = tenant.clone();
        let keys = to_json(keys)?;
        self.db
            .call(move |conn| users_where_in(conn, &tenant, "email_key", &keys))
            .await
    }

    async fn write_users(&self, tenant: &TenantId, writes: Vec<UserWrite>) -> StoreResult<()> {
        let tenant = tenant.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    // REPLACE also drops a row holding the same id under another email key (the
                    // old address of a renamed user): a user id has one row.
                    let mut put = tx.prepare_cached(
                        "INSERT OR REPLACE INTO users (tenant, email_key, id, agent_number, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    let mut delete = tx
                        .prepare_cached("DELETE FROM users WHERE tenant = ?1 AND email_key = ?2")?;
                    for write in &writes {
                        match write {
                            UserWrite::Put(user) => {
                                put.execute(params![
                                    tenant.as_str(),
                                    user.email_key(),
                                    user_id(user.id)?,
                                    user.agent_number,
                                    to_json(user)?,
                                ])?;
                            }
                            UserWrite::DeleteEmail(key) => {
                                delete.execute(params![tenant.as_str(), key])?;
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn allocate_user_ids(&self, count: u64) -> StoreResult<UserId> {
        let count = user_id(count)?;
        self.db
            .call(move |conn| {
                Ok(conn.query_row(
                    "INSERT INTO counters (name, next) VALUES ('user_id', 1 + ?1) \
                     ON CONFLICT (name) DO UPDATE SET next = next + ?1 \
                     RETURNING next - ?1",
                    [count],
                    |row| row.get(0),
                )?)
            })
            .await
    }

    async fn list_users(&self, tenant: &TenantId, page: PageRequest) -> StoreResult<Vec<User>> {
        let tenant = tenant.clone();
        let (limit, offset) = limit_offset(page);
        self.db
            .call(move |conn| {
                read_users(
                    conn,
                    "SELECT body FROM users WHERE tenant = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                    params![tenant.as_str(), limit, offset],
                )
            })
            .await
    }

    async fn select_users(
        &self,
        tenant: &TenantId,
        selector: &UserSelector,
    ) -> StoreResult<Vec<User>> {
        let tenant = tenant.clone();
        let (column, values) = match selector {
            UserSelector::Emails(emails) => {
                let keys: Vec<String> = emails.iter().map(|email| email_key(email)).collect();
                ("email_key", to_json(&keys)?)
            }
            UserSelector::Ids(ids) => ("id", to_json(ids)?),
            UserSelector::AgentNumbers(numbers) => ("agent_number", to_json(numbers)?),
        };
        self.db
            .call(move |conn| users_where_in(conn, &tenant, column, &values))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::testing::{at, store, tenant};
    use super::*;

    fn user(id: UserId, email: &str, agent_number: Option<&str>) -> User {
        User {
            id,
            email: email.to_owned(),
            agent_number: agent_number.map(str::to_owned),
            first_name: "First".to_owned(),
            last_name: "Last".to_owned(),
            location: None,
            max_chat_limit: None,
            max_chat_limit_enabled: false,
            roles: vec!["Agent".to_owned()],
            teams: vec![],
            deactivated_at: None,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn ids(users: &[User]) -> Vec<UserId> {
        users.iter().map(|user| user.id).collect()
    }

    #[tokio::test]
    async fn allocates_contiguous_blocks_of_ids_from_one() {
        let (_dir, store) = store();
        assert_eq!(store.allocate_user_ids(3).await.unwrap(), 1);
        assert_eq!(store.allocate_user_ids(1).await.unwrap(), 4);
        assert_eq!(store.allocate_user_ids(10).await.unwrap(), 5);
        assert_eq!(store.allocate_user_ids(1).await.unwrap(), 15);
    }

    #[tokio::test]
    async fn writes_lists_and_selects_users_per_tenant() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let writes = vec![
            UserWrite::Put(user(3, "Carol@Example.com", Some("A3"))),
            UserWrite::Put(user(1, "alice@example.com", Some("A1"))),
            UserWrite::Put(user(2, "bob@example.com", None)),
        ];
        store.write_users(&acme, writes).await.unwrap();
        store
            .write_users(
                &tenant("other"),
                vec![UserWrite::Put(user(9, "alice@example.com", Some("A1")))],
            )
            .await
            .unwrap();

        let page = |page| PageRequest { page, per_page: 2 };
        assert_eq!(
            ids(&store.list_users(&acme, page(1)).await.unwrap()),
            vec![1, 2]
        );
        assert_eq!(
            ids(&store.list_users(&acme, page(2)).await.unwrap()),
            vec![3]
        );
        assert!(store.list_users(&acme, page(3)).await.unwrap().is_empty());

        let by_keys = store
            .users_by_email_keys(&acme, &["carol@example.com".into(), "nobody@x.y".into()])
            .await
            .unwrap();
        assert_eq!(by_keys, vec![user(3, "Carol@Example.com", Some("A3"))]);

        let select = |selector| {
            let store = store.clone();
            let acme = acme.clone();
            async move { ids(&store.select_users(&acme, &selector).await.unwrap()) }
        };
        let emails = vec![
            " CAROL@example.com".into(),
            "alice@EXAMPLE.com".into(),
            "carol@example.com".into(),
        ];
        assert_eq!(select(UserSelector::Emails(emails)).await, vec![1, 3]);
        assert_eq!(
            select(UserSelector::Ids(vec![3, 9, 2, 3])).await,
            vec![2, 3]
        );
        let numbers = vec!["A3".into(), "A1".into(), "A1".into(), "B".into()];
        assert_eq!(
            select(UserSelector::AgentNumbers(numbers)).await,
            vec![1, 3]
        );
        assert!(select(UserSelector::Ids(vec![])).await.is_empty());
    }

    #[tokio::test]
    async fn renames_and_deletes_by_email_key() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        store
            .write_users(
                &acme,
                vec![UserWrite::Put(user(1, "old@example.com", None))],
            )
            .await
            .unwrap();
        let renamed = user(1, "New@example.com", Some("7"));
        let writes = vec![
            UserWrite::Put(renamed.clone()),
            UserWrite::DeleteEmail("old@example.com".into()),
        ];
        store.write_users(&acme, writes.clone()).await.unwrap();
        store.write_users(&acme, writes).await.unwrap();
        let all = store
            .list_users(
                &acme,
                PageRequest {
                    page: 1,
                    per_page: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(all, vec![renamed]);

        store
            .write_users(
                &acme,
                vec![UserWrite::DeleteEmail("new@example.com".into())],
            )
            .await
            .unwrap();
        assert!(store
            .select_users(&acme, &UserSelector::Ids(vec![1]))
            .await
            .unwrap()
            .is_empty());
    }
}

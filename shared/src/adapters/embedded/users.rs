//! `UserStore` on SQLite: one row per (tenant, user id), the user kept as JSON, its unique keys
//! (email, external id, user name) in columns with unique indexes. A key column is NULL when
//! the user lacks the key or is deleted, so a deleted user's keys are free for others.

use async_trait::async_trait;
use rusqlite::{ffi, params, Connection, Params, TransactionBehavior};

use super::store::{from_json, limit_offset, to_json};
use super::SqliteStore;
use crate::model::{
    email_key, SaveOutcome, TenantId, User, UserChange, UserFilter, UserId, UserKey, UserSelector,
};
use crate::ports::{StoreError, StoreResult, UserStore, Window};

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

/// The tenant's live users whose `column` is one of `values`, a JSON array (so any number of
/// values binds as one parameter), in id order. The ids are looked up first so the look-up
/// goes through the column's index, not a scan of the tenant's users in id order.
fn live_users_where_in(
    conn: &Connection,
    tenant: &TenantId,
    column: &str,
    values: &str,
) -> StoreResult<Vec<User>> {
    read_users(
        conn,
        &format!(
            "SELECT body FROM users WHERE tenant = ?1 AND deleted = 0 AND id IN (\
             SELECT id FROM users WHERE tenant = ?1 \
             AND {column} IN (SELECT value FROM json_each(?2))) ORDER BY id"
        ),
        params![tenant.as_str(), values],
    )
}

fn sql_int(what: &str, n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} is out of range")))
}

/// The column holding keys of this kind.
fn key_column(key: &UserKey) -> &'static str {
    match key {
        UserKey::Email(_) => "email_key",
        UserKey::ExternalId(_) => "external_key",
        UserKey::UserName(_) => "name_key",
    }
}

/// The values of the key columns (email, external id, user name) of a user as stored: all
/// NULL once the user is deleted.
fn key_columns(user: &User) -> [Option<String>; 3] {
    let mut columns = [None, None, None];
    for key in user.keys() {
        let slot = match key {
            UserKey::Email(_) => 0,
            UserKey::ExternalId(_) => 1,
            UserKey::UserName(_) => 2,
        };
        columns[slot] = Some(key.value().to_owned());
    }
    columns
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    error
        .sqlite_error()
        .is_some_and(|error| error.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The first key of `user` that another user of the tenant holds.
fn taken_key(conn: &Connection, tenant: &TenantId, user: &User) -> StoreResult<Option<UserKey>> {
    let id = sql_int("user id", user.id)?;
    for key in user.keys() {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM users WHERE tenant = ?1 AND {} = ?2 AND id <> ?3)",
            key_column(&key)
        ))?;
        let taken: bool =
            stmt.query_row(params![tenant.as_str(), key.value(), id], |row| row.get(0))?;
        if taken {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Writes one change with one statement (which SQLite applies whole or not at all).
fn write_change(
    conn: &Connection,
    tenant: &TenantId,
    change: &UserChange,
) -> StoreResult<SaveOutcome> {
    let after = &change.after;
    let id = sql_int("user id", after.id)?;
    let [email, external, name] = key_columns(after);
    let body = to_json(after)?;
    let written = match &change.before {
        None => {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO users (tenant, id, email_key, external_key, name_key, \
                     agent_number, version, deleted, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (tenant, id) DO NOTHING",
                )?
                .execute(params![
                    tenant.as_str(),
                    id,
                    email,
                    external,
                    name,
                    after.agent_number,
                    sql_int("user version", after.version)?,
                    after.is_deleted(),
                    body,
                ]);
            if let Ok(0) = inserted {
                // The id exists: the very same user saved by an earlier run of the change is
                // saved, anything else is stale.
                let stored: String = conn
                    .prepare_cached("SELECT body FROM users WHERE tenant = ?1 AND id = ?2")?
                    .query_row(params![tenant.as_str(), id], |row| row.get(0))?;
                let stored: User = from_json("user", &stored)?;
                return Ok(if stored == *after {
                    SaveOutcome::Saved
                } else {
                    SaveOutcome::Stale
                });
            }
            inserted
        }
        Some(before) => {
            if before.id != after.id {
                return Ok(SaveOutcome::Stale);
            }
            conn.prepare_cached(
                "UPDATE users SET email_key = ?3, external_key = ?4, name_key = ?5, \
                 agent_number = ?6, version = ?7, deleted = ?8, body = ?9 \
                 WHERE tenant = ?1 AND id = ?2 AND version = ?10",
            )?
            .execute(params![
                tenant.as_str(),
                id,
                email,
                external,
                name,
                after.agent_number,
                sql_int("user version", after.version)?,
                after.is_deleted(),
                body,
                sql_int("user version", before.version)?,
            ])
        }
    };
    match written {
        Ok(0) => Ok(SaveOutcome::Stale),
        Ok(_) => Ok(SaveOutcome::Saved),
        Err(error) if is_unique_violation(&error) => match taken_key(conn, tenant, after)? {
            Some(key) => Ok(SaveOutcome::KeyTaken(key)),
            None => Err(error.into()),
        },
        Err(error) => Err(error.into()),
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn users_by_keys(&self, tenant: &TenantId, keys: &[UserKey]) -> StoreResult<Vec<User>> {
        let tenant = tenant.clone();
        let values = |wanted: fn(&UserKey) -> bool| {
            let values: Vec<&str> = keys
                .iter()
                .filter(|key| wanted(key))
                .map(UserKey::value)
                .collect();
            to_json(&values)
        };
        let emails = values(|key| matches!(key, UserKey::Email(_)))?;
        let externals = values(|key| matches!(key, UserKey::ExternalId(_)))?;
        let names = values(|key| matches!(key, UserKey::UserName(_)))?;
        self.db
            .call(move |conn| {
                read_users(
                    conn,
                    // One index look-up per key kind; `id IN` makes each user appear once.
                    "SELECT body FROM users WHERE tenant = ?1 AND deleted = 0 AND id IN (\
                     SELECT id FROM users WHERE tenant = ?1 \
                     AND email_key IN (SELECT value FROM json_each(?2)) \
                     UNION ALL SELECT id FROM users WHERE tenant = ?1 \
                     AND external_key IN (SELECT value FROM json_each(?3)) \
                     UNION ALL SELECT id FROM users WHERE tenant = ?1 \
                     AND name_key IN (SELECT value FROM json_each(?4))) ORDER BY id",
                    params![tenant.as_str(), emails, externals, names],
                )
            })
            .await
    }

    async fn users_by_ids(&self, tenant: &TenantId, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let tenant = tenant.clone();
        let ids = to_json(ids)?;
        self.db
            .call(move |conn| {
                read_users(
                    conn,
                    "SELECT body FROM users WHERE tenant = ?1 \
                     AND id IN (SELECT value FROM json_each(?2)) ORDER BY id",
                    params![tenant.as_str(), ids],
                )
            })
            .await
    }

    async fn save_users(
        &self,
        tenant: &TenantId,
        changes: &[UserChange],
    ) -> StoreResult<Vec<SaveOutcome>> {
        let tenant = tenant.clone();
        let changes = changes.to_vec();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut outcomes = Vec::with_capacity(changes.len());
                for change in &changes {
                    outcomes.push(write_change(&tx, &tenant, change)?);
                }
                tx.commit()?;
                Ok(outcomes)
            })
            .await
    }

    async fn allocate_user_ids(&self, count: u64) -> StoreResult<UserId> {
        let count = sql_int("user id count", count)?;
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

    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: &UserFilter,
        window: Window,
    ) -> StoreResult<(Vec<User>, u64)> {
        let tenant = tenant.clone();
        let (limit, offset) = limit_offset(window);
        // A range of the user name index (`users_by_user_name`); deleted users hold no key.
        let range = filter.user_name_range();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (users, total) = match &range {
                    None => {
                        let users = read_users(
                            &tx,
                            "SELECT body FROM users WHERE tenant = ?1 AND deleted = 0 \
                             ORDER BY id LIMIT ?2 OFFSET ?3",
                            params![tenant.as_str(), limit, offset],
                        )?;
                        let total: u64 = tx
                            .prepare_cached(
                                "SELECT COUNT(*) FROM users WHERE tenant = ?1 AND deleted = 0",
                            )?
                            .query_row(params![tenant.as_str()], |row| row.get(0))?;
                        (users, total)
                    }
                    Some((from, to)) => {
                        let users = read_users(
                            &tx,
                            "SELECT body FROM users WHERE tenant = ?1 AND name_key >= ?2 \
                             AND name_key < ?3 AND deleted = 0 \
                             ORDER BY name_key LIMIT ?4 OFFSET ?5",
                            params![tenant.as_str(), from, to, limit, offset],
                        )?;
                        let total: u64 = tx
                            .prepare_cached(
                                "SELECT COUNT(*) FROM users WHERE tenant = ?1 \
                                 AND name_key >= ?2 AND name_key < ?3 AND deleted = 0",
                            )?
                            .query_row(params![tenant.as_str(), from, to], |row| row.get(0))?;
                        (users, total)
                    }
                };
                tx.commit()?;
                Ok((users, total))
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
            .call(move |conn| live_users_where_in(conn, &tenant, column, &values))
            .await
    }
}

#[cfg(test)]
mod tests {
    //! What only SQLite has: databases of the first schema. The port's contract is tested on
    //! both stores by the test crate's `contracts`.
    use super::super::store::testing::{at, tenant, version_1_database};
    use super::*;

    fn ids(users: &[User]) -> Vec<UserId> {
        users.iter().map(|user| user.id).collect()
    }

    async fn listed(store: &SqliteStore, tenant_name: &str) -> Vec<UserId> {
        let all = Window {
            offset: 0,
            limit: 100,
        };
        let filter = UserFilter::default();
        let (users, _) = store
            .list_users(&tenant(tenant_name), &filter, all)
            .await
            .unwrap();
        ids(&users)
    }

    /// A user as the first schema stored it: the body, and the email and agent number keys.
    fn insert_version_1_user(
        conn: &Connection,
        tenant_name: &str,
        id: u64,
        email: &str,
        agent: &str,
    ) {
        let body = serde_json::json!({
            "id": id, "email": email, "agent_number": agent,
            "first_name": "Old", "last_name": "User", "location": null,
            "max_chat_limit": 3, "max_chat_limit_enabled": true,
            "roles": ["Agent"], "teams": ["Blue"], "deactivated_at": null,
            "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z",
        });
        conn.execute(
            "INSERT INTO users (tenant, email_key, id, agent_number, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant_name, email_key(email), id, agent, body.to_string()],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_version_1_database_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let conn = version_1_database(&path);
        insert_version_1_user(&conn, "acme", 1, "Ann@Example.com", "A1");
        insert_version_1_user(&conn, "acme", 2, "bob@example.com", "A2");
        insert_version_1_user(&conn, "other", 3, "ann@example.com", "A1");
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let acme = tenant("acme");
        let by_email = [UserKey::email("ann@example.com")];
        let ann = store.users_by_keys(&acme, &by_email).await.unwrap();
        assert_eq!(ids(&ann), vec![1]);
        let ann = &ann[0];
        assert_eq!(
            (
                ann.version,
                ann.email.as_deref(),
                ann.agent_number.as_deref()
            ),
            (0, Some("Ann@Example.com"), Some("A1"))
        );
        assert_eq!(
            (ann.first_name.as_str(), ann.max_chat_limit, &ann.teams),
            ("Old", Some(3), &vec!["Blue".to_owned()])
        );
        assert_eq!(ann.created_at, at(0));
        assert_eq!(listed(&store, "acme").await, vec![1, 2]);
        assert_eq!(listed(&store, "other").await, vec![3]);
        let by_agent = UserSelector::AgentNumbers(vec!["A2".into()]);
        let selected = store.select_users(&acme, &by_agent).await.unwrap();
        assert_eq!(ids(&selected), vec![2]);

        // The migrated users change like any other, their email still their own.
        let mut renamed = ann.clone();
        renamed.user_name = Some("ann".into());
        renamed.version = 1;
        let mut clash = User::new(4, at(0));
        clash.email = Some("bob@example.com".into());
        let changes = [
            UserChange {
                before: Some(ann.clone()),
                after: renamed.clone(),
            },
            UserChange {
                before: None,
                after: clash,
            },
        ];
        assert_eq!(
            store.save_users(&acme, &changes).await.unwrap(),
            vec![
                SaveOutcome::Saved,
                SaveOutcome::KeyTaken(UserKey::email("bob@example.com"))
            ]
        );
        assert_eq!(
            store.users_by_ids(&acme, &[1]).await.unwrap(),
            vec![renamed]
        );
    }

    #[tokio::test]
    async fn existing_tombstones_lose_their_personal_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let conn = super::super::schema::database_at_version(&path, 7);
        let mut user = User::new(5, at(0));
        user.version = 2;
        user.email = Some("ann@x.io".to_owned());
        user.first_name = "Ann".to_owned();
        user.agent_number = Some("A1".to_owned());
        user.support.notes = Some("likes tea".to_owned());
        user.deleted_at = Some(at(60));
        user.updated_at = at(60);
        user.last_change = Some(crate::model::ChangeStamp {
            job: 3,
            row: 1,
            action: crate::model::UserAction::Deleted,
            warned: false,
        });
        conn.execute(
            "INSERT INTO users (tenant, id, agent_number, version, deleted, body) \
             VALUES ('acme', 5, 'A1', 2, 1, ?1)",
            [to_json(&user).unwrap()],
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let found = store.users_by_ids(&tenant("acme"), &[5]).await.unwrap();
        let mut tombstone = user.clone();
        tombstone.delete(at(60));
        assert_eq!(found, vec![tombstone]);
        assert!(found[0].is_tombstone());
        let raw: (Option<String>, String) = store
            .db
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT agent_number, body FROM users WHERE id = 5",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(raw.0, None);
        for personal in ["ann@x.io", "Ann", "A1", "likes tea"] {
            assert!(!raw.1.contains(personal), "{personal} in {}", raw.1);
        }
    }
}

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
    use super::super::store::testing::{at, store, tenant, version_1_database};
    use super::*;

    fn user(id: UserId, email: &str, agent_number: Option<&str>) -> User {
        let mut user = User::new(id, at(0));
        user.version = 1;
        user.email = Some(email.to_owned());
        user.agent_number = agent_number.map(str::to_owned);
        user.first_name = "First".to_owned();
        user.last_name = "Last".to_owned();
        user.roles = vec!["Agent".to_owned()];
        user
    }

    fn create(user: &User) -> UserChange {
        UserChange {
            before: None,
            after: user.clone(),
        }
    }

    /// `before` changed by `edit`, one version up.
    fn change(before: &User, edit: impl FnOnce(&mut User)) -> UserChange {
        let mut after = before.clone();
        edit(&mut after);
        after.version = before.version + 1;
        UserChange {
            before: Some(before.clone()),
            after,
        }
    }

    fn ids(users: &[User]) -> Vec<UserId> {
        users.iter().map(|user| user.id).collect()
    }

    fn all() -> Window {
        Window {
            offset: 0,
            limit: 100,
        }
    }

    async fn save(
        store: &SqliteStore,
        tenant_name: &str,
        changes: &[UserChange],
    ) -> Vec<SaveOutcome> {
        store
            .save_users(&tenant(tenant_name), changes)
            .await
            .unwrap()
    }

    async fn listed(store: &SqliteStore, tenant_name: &str) -> Vec<User> {
        let filter = UserFilter::default();
        let (users, total) = store
            .list_users(&tenant(tenant_name), &filter, all())
            .await
            .unwrap();
        assert_eq!(total, users.len() as u64);
        users
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
    async fn creates_users_and_finds_them_by_any_key() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let mut ann = user(1, "Ann@Example.com", Some("A1"));
        ann.external_id = Some("Ext-1".into());
        ann.user_name = Some("Ann.K".into());
        let bob = user(2, "bob@example.com", None);
        assert_eq!(
            save(&store, "acme", &[create(&ann), create(&bob)]).await,
            vec![SaveOutcome::Saved, SaveOutcome::Saved]
        );

        let keys = [
            UserKey::email("ann@example.COM"),
            UserKey::external_id("EXT-1"),
            UserKey::user_name("ann.k"),
            UserKey::email("nobody@example.com"),
        ];
        assert_eq!(
            store.users_by_keys(&acme, &keys).await.unwrap(),
            vec![ann.clone()]
        );
        let keys = [UserKey::user_name("bob"), UserKey::email("bob@example.com")];
        assert_eq!(
            ids(&store.users_by_keys(&acme, &keys).await.unwrap()),
            vec![2]
        );
        assert!(store.users_by_keys(&acme, &[]).await.unwrap().is_empty());
        assert_eq!(
            ids(&store.users_by_ids(&acme, &[2, 1, 2, 7]).await.unwrap()),
            vec![1, 2]
        );
        assert_eq!(listed(&store, "acme").await, vec![ann, bob]);
    }

    #[tokio::test]
    async fn a_taken_key_saves_nothing() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let mut ann = user(1, "ann@example.com", None);
        ann.external_id = Some("e1".into());
        ann.user_name = Some("ann".into());
        save(&store, "acme", &[create(&ann)]).await;

        let mut other = user(2, " ANN@example.com", Some("X"));
        other.user_name = Some("other".into());
        assert_eq!(
            save(&store, "acme", &[create(&other)]).await,
            vec![SaveOutcome::KeyTaken(UserKey::email("ann@example.com"))]
        );
        let mut other = user(2, "other@example.com", None);
        other.user_name = Some(" Ann ".into());
        assert_eq!(
            save(&store, "acme", &[create(&other)]).await,
            vec![SaveOutcome::KeyTaken(UserKey::user_name("ann"))]
        );
        // An existing user claiming a taken external id keeps its stored version.
        let bob = user(3, "bob@example.com", None);
        save(&store, "acme", &[create(&bob)]).await;
        let claim = change(&bob, |bob| bob.external_id = Some("E1".into()));
        assert_eq!(
            save(&store, "acme", &[claim]).await,
            vec![SaveOutcome::KeyTaken(UserKey::external_id("e1"))]
        );
        assert_eq!(
            store.users_by_ids(&acme, &[1, 2, 3]).await.unwrap(),
            vec![ann, bob]
        );
    }

    #[tokio::test]
    async fn a_stale_version_saves_nothing() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let ann = user(1, "ann@example.com", None);
        save(&store, "acme", &[create(&ann)]).await;
        let first = change(&ann, |ann| ann.first_name = "Anna".into());
        let concurrent = change(&ann, |ann| ann.last_name = "Other".into());
        assert_eq!(
            save(&store, "acme", &[first.clone(), concurrent]).await,
            vec![SaveOutcome::Saved, SaveOutcome::Stale]
        );
        assert_eq!(
            store.users_by_ids(&acme, &[1]).await.unwrap(),
            vec![first.after.clone()]
        );

        // A new user whose id exists with other contents.
        let mut clash = user(1, "new@example.com", None);
        clash.version = 1;
        assert_eq!(
            save(&store, "acme", &[create(&clash)]).await,
            vec![SaveOutcome::Stale]
        );
        // A change of a user that does not exist.
        let ghost = user(5, "ghost@example.com", None);
        assert_eq!(
            save(&store, "acme", &[change(&ghost, |_| ())]).await,
            vec![SaveOutcome::Stale]
        );
        assert_eq!(listed(&store, "acme").await, vec![first.after]);
    }

    #[tokio::test]
    async fn re_saving_the_same_new_user_is_saved() {
        let (_dir, store) = store();
        let ann = user(1, "ann@example.com", None);
        assert_eq!(
            save(&store, "acme", &[create(&ann)]).await,
            vec![SaveOutcome::Saved]
        );
        assert_eq!(
            save(&store, "acme", &[create(&ann), create(&ann)]).await,
            vec![SaveOutcome::Saved, SaveOutcome::Saved]
        );
        assert_eq!(listed(&store, "acme").await, vec![ann]);
    }

    #[tokio::test]
    async fn a_renamed_user_releases_its_old_email() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let ann = user(1, "ann@example.com", None);
        save(&store, "acme", &[create(&ann)]).await;
        let renamed = change(&ann, |ann| ann.email = Some("anna@example.com".into()));
        let newcomer = user(2, "Ann@example.com", None);
        assert_eq!(
            save(&store, "acme", &[renamed.clone(), create(&newcomer)]).await,
            vec![SaveOutcome::Saved, SaveOutcome::Saved]
        );
        let found = |email: &str| {
            let store = store.clone();
            let acme = acme.clone();
            let key = UserKey::email(email);
            async move { ids(&store.users_by_keys(&acme, &[key]).await.unwrap()) }
        };
        assert_eq!(found("ann@example.com").await, vec![2]);
        assert_eq!(found("anna@example.com").await, vec![1]);
        // Dropping a key entirely releases it too.
        let dropped = change(&renamed.after, |ann| ann.email = None);
        save(&store, "acme", &[dropped]).await;
        assert!(found("anna@example.com").await.is_empty());
        let taker = user(3, "anna@example.com", None);
        assert_eq!(
            save(&store, "acme", &[create(&taker)]).await,
            vec![SaveOutcome::Saved]
        );
    }

    #[tokio::test]
    async fn a_deleted_user_releases_its_keys_and_is_hidden_but_kept() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let mut ann = user(1, "ann@example.com", Some("A1"));
        ann.external_id = Some("e1".into());
        ann.user_name = Some("ann".into());
        let bob = user(2, "bob@example.com", None);
        save(&store, "acme", &[create(&ann), create(&bob)]).await;
        let deleted = change(&ann, |ann| ann.deleted_at = Some(at(5)));
        assert_eq!(
            save(&store, "acme", std::slice::from_ref(&deleted)).await,
            vec![SaveOutcome::Saved]
        );

        let keys = [
            UserKey::email("ann@example.com"),
            UserKey::external_id("e1"),
            UserKey::user_name("ann"),
        ];
        assert!(store.users_by_keys(&acme, &keys).await.unwrap().is_empty());
        assert_eq!(listed(&store, "acme").await, vec![bob]);
        for selector in [
            UserSelector::Ids(vec![1]),
            UserSelector::Emails(vec!["ann@example.com".into()]),
            UserSelector::AgentNumbers(vec!["A1".into()]),
        ] {
            assert!(store
                .select_users(&acme, &selector)
                .await
                .unwrap()
                .is_empty());
        }
        assert_eq!(
            store.users_by_ids(&acme, &[1]).await.unwrap(),
            vec![deleted.after]
        );

        let mut heir = user(3, "ann@example.com", None);
        heir.external_id = Some("E1".into());
        heir.user_name = Some("Ann".into());
        assert_eq!(
            save(&store, "acme", &[create(&heir)]).await,
            vec![SaveOutcome::Saved]
        );
        assert_eq!(
            ids(&store.users_by_keys(&acme, &keys).await.unwrap()),
            vec![3]
        );
    }

    #[tokio::test]
    async fn one_conflict_among_many_changes_fails_only_that_change() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let taken = user(100, "taken@example.com", None);
        save(&store, "acme", &[create(&taken)]).await;
        let mut changes: Vec<UserChange> = (1..=9)
            .map(|id| create(&user(id, &format!("u{id}@example.com"), None)))
            .collect();
        changes[4] = create(&user(5, "Taken@example.com", None));
        let mut expected = vec![SaveOutcome::Saved; 9];
        expected[4] = SaveOutcome::KeyTaken(UserKey::email("taken@example.com"));
        assert_eq!(save(&store, "acme", &changes).await, expected);
        assert_eq!(
            ids(&listed(&store, "acme").await),
            vec![1, 2, 3, 4, 6, 7, 8, 9, 100]
        );
        assert!(store.users_by_ids(&acme, &[5]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tenants_are_isolated() {
        let (_dir, store) = store();
        let ann = user(1, "ann@example.com", Some("A1"));
        let same_email = user(2, "ann@example.com", Some("A1"));
        assert_eq!(
            save(&store, "acme", &[create(&ann)]).await,
            vec![SaveOutcome::Saved]
        );
        assert_eq!(
            save(&store, "other", &[create(&same_email)]).await,
            vec![SaveOutcome::Saved]
        );
        let acme = tenant("acme");
        let other = tenant("other");
        let key = [UserKey::email("ann@example.com")];
        assert_eq!(
            ids(&store.users_by_keys(&acme, &key).await.unwrap()),
            vec![1]
        );
        assert_eq!(
            ids(&store.users_by_keys(&other, &key).await.unwrap()),
            vec![2]
        );
        assert!(store.users_by_ids(&acme, &[2]).await.unwrap().is_empty());
        assert_eq!(listed(&store, "other").await, vec![same_email.clone()]);
        assert!(store
            .select_users(&acme, &UserSelector::Ids(vec![2]))
            .await
            .unwrap()
            .is_empty());
        // A change of another tenant's user does not reach it.
        assert_eq!(
            save(
                &store,
                "acme",
                &[change(&same_email, |u| u.first_name = "X".into())]
            )
            .await,
            vec![SaveOutcome::Stale]
        );
        assert_eq!(listed(&store, "other").await, vec![same_email]);
        assert!(listed(&store, "nobody").await.is_empty());
    }

    #[tokio::test]
    async fn lists_pages_with_a_user_name_filter_and_the_total() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let names = [
            (1, Some("Smith.Ann")),
            (2, Some("bob")),
            (3, Some("SMITHY")),
            (4, None),
            (5, Some("smith_jo")),
            (6, Some("smith-deleted")),
        ];
        let changes: Vec<UserChange> = names
            .iter()
            .map(|&(id, name)| {
                let mut user = user(id, &format!("u{id}@example.com"), None);
                user.user_name = name.map(str::to_owned);
                if id == 6 {
                    user.deleted_at = Some(at(1));
                }
                create(&user)
            })
            .collect();
        save(&store, "acme", &changes).await;
        let mut other = user(7, "x@example.com", None);
        other.user_name = Some("smith".into());
        save(&store, "other", &[create(&other)]).await;

        let list = |prefix: Option<&str>, page: u64| {
            let store = store.clone();
            let acme = acme.clone();
            let filter = prefix
                .map(UserFilter::user_name_starting_with)
                .unwrap_or_default();
            async move {
                let window = Window {
                    offset: (page - 1) * 2,
                    limit: 2,
                };
                let (users, total) = store.list_users(&acme, &filter, window).await.unwrap();
                (ids(&users), total)
            }
        };
        assert_eq!(list(None, 1).await, (vec![1, 2], 5));
        assert_eq!(list(None, 3).await, (vec![5], 5));
        assert_eq!(list(None, 4).await, (vec![], 5));
        // In user name order: "smith.ann", "smith_jo", "smithy".
        assert_eq!(list(Some(" Smith "), 1).await, (vec![1, 5], 3));
        assert_eq!(list(Some("Smith"), 2).await, (vec![3], 3));
        assert_eq!(list(Some("smith_"), 1).await, (vec![5], 1));
        // From the start of the name only, and no wildcards.
        assert_eq!(list(Some("ann"), 1).await, (vec![], 0));
        assert_eq!(list(Some("%"), 1).await, (vec![], 0));
        assert_eq!(list(Some("_"), 1).await, (vec![], 0));
        assert_eq!(list(Some("nobody"), 1).await, (vec![], 0));
        assert_eq!(list(Some("  "), 1).await, (vec![1, 2], 5));
    }

    #[tokio::test]
    async fn selects_live_users_in_id_order_each_once() {
        let (_dir, store) = store();
        let acme = tenant("acme");
        let changes = [
            create(&user(3, "Carol@Example.com", Some("A3"))),
            create(&user(1, "alice@example.com", Some("A1"))),
            create(&user(2, "bob@example.com", None)),
        ];
        save(&store, "acme", &changes).await;
        save(
            &store,
            "other",
            &[create(&user(9, "alice@example.com", Some("A1")))],
        )
        .await;

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
    async fn a_version_1_database_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let conn = version_1_database(&path);
        let old_body = |id: u64, email: &str, agent: &str| {
            serde_json::json!({
                "id": id,
                "email": email,
                "agent_number": agent,
                "first_name": "Old",
                "last_name": "User",
                "location": null,
                "max_chat_limit": 3,
                "max_chat_limit_enabled": true,
                "roles": ["Agent"],
                "teams": ["Blue"],
                "deactivated_at": null,
                "created_at": "2024-01-01T00:00:00.000Z",
                "updated_at": "2024-01-01T00:00:00.000Z",
            })
            .to_string()
        };
        for (tenant_name, id, email, agent) in [
            ("acme", 1, "Ann@Example.com", "A1"),
            ("acme", 2, "bob@example.com", "A2"),
            ("other", 3, "ann@example.com", "A1"),
        ] {
            conn.execute(
                "INSERT INTO users (tenant, email_key, id, agent_number, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    tenant_name,
                    email_key(email),
                    id,
                    agent,
                    old_body(id, email, agent)
                ],
            )
            .unwrap();
        }
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let acme = tenant("acme");
        let ann = store
            .users_by_keys(&acme, &[UserKey::email("ann@example.com")])
            .await
            .unwrap();
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
        assert_eq!(ids(&listed(&store, "acme").await), vec![1, 2]);
        assert_eq!(ids(&listed(&store, "other").await), vec![3]);
        let by_agent = UserSelector::AgentNumbers(vec!["A2".into()]);
        assert_eq!(
            ids(&store.select_users(&acme, &by_agent).await.unwrap()),
            vec![2]
        );

        // The migrated users change like any other, their email still their own.
        let renamed = change(ann, |ann| ann.user_name = Some("ann".into()));
        let clash = user(4, "bob@example.com", None);
        assert_eq!(
            save(&store, "acme", &[renamed.clone(), create(&clash)]).await,
            vec![
                SaveOutcome::Saved,
                SaveOutcome::KeyTaken(UserKey::email("bob@example.com"))
            ]
        );
        assert_eq!(
            store.users_by_ids(&acme, &[1]).await.unwrap(),
            vec![renamed.after]
        );
    }
}

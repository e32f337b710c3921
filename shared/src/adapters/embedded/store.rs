//! The SQLite store: one connection shared by the job, user and tenant stores and the work queue,
//! and the conversions every table uses.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::queue::SqliteWorkQueue;
use super::schema;
use crate::model::Timestamp;
use crate::ports::{StoreError, StoreResult, Window};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::unavailable("sqlite", error)
    }
}

/// The shared connection. Every use runs on tokio's blocking pool, one at a time.
#[derive(Clone)]
pub(super) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Runs `work` with the connection on the blocking pool.
    pub(super) async fn call<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| {
                StoreError::Corrupt("the sqlite connection lock is poisoned".into())
            })?;
            work(&mut conn)
        })
        .await
        .map_err(|error| StoreError::unavailable("sqlite", error))?
    }
}

/// The page cache of the database connection, in KiB.
const CACHE_KIB: u32 = 16 * 1024;

/// Jobs, users and tenants in one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) db: Db,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let journal: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable(
                "sqlite",
                format!("could not enable WAL journal (journal_mode is {journal})"),
            ));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // A bounded page cache big enough for the upper levels of the user indexes of a
        // million-user tenant, and checkpoints every ~16 MB of WAL rather than every 4 MB:
        // large jobs write the same index pages again and again, and each checkpoint copies
        // them once.
        conn.pragma_update(None, "cache_size", -(CACHE_KIB as i64))?;
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            db: Db {
                conn: Arc::new(Mutex::new(conn)),
            },
        })
    }

    /// The durable work queue kept in the same database.
    pub fn work_queue(&self) -> SqliteWorkQueue {
        SqliteWorkQueue::new(self.db.clone())
    }
}

pub(super) fn millis(at: Timestamp) -> i64 {
    at.unix_millis()
}

pub(super) fn timestamp(millis: i64) -> StoreResult<Timestamp> {
    Timestamp::from_unix_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("stored timestamp {millis} is out of range")))
}

pub(super) fn optional_timestamp(millis: Option<i64>) -> StoreResult<Option<Timestamp>> {
    millis.map(timestamp).transpose()
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Corrupt(format!("cannot encode a record: {error}")))
}

pub(super) fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("stored {what} is not readable: {error}")))
}

/// SQL `LIMIT` and `OFFSET` of a page.
/// A window (or a page) as SQLite's `LIMIT` and `OFFSET`.
pub(super) fn limit_offset(window: impl Into<Window>) -> (i64, i64) {
    let window = window.into();
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (clamp(window.limit), clamp(window.offset))
}

#[cfg(test)]
pub(super) mod testing {
    use super::SqliteStore;
    use crate::model::{TenantId, Timestamp};

    /// A store in a fresh temporary directory (kept alive by the returned guard).
    pub(in super::super) fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("test.sqlite3")).unwrap();
        (dir, store)
    }

    pub(in super::super) fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    /// A database at `path` at schema version 1 (before users were keyed by id), built by the
    /// real migrations: a table in the way of migration 1 stops them after version 1, and is
    /// then removed so that the next open migrates the database the rest of the way.
    pub(in super::super) fn version_1_database(path: &std::path::Path) -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE users_v1 (blocker INTEGER)")
            .unwrap();
        assert!(super::schema::migrate(&mut conn).is_err());
        conn.execute_batch("DROP TABLE users_v1").unwrap();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 1);
        conn
    }

    /// `seconds` after 2024-01-01T00:00:00Z.
    pub(in super::super) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_704_067_200_000 + seconds * 1000).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::store;
    use super::*;

    #[test]
    fn opens_with_wal_and_schema_version_and_reopens() {
        let (dir, store) = store();
        drop(store);
        let store = SqliteStore::open(&dir.path().join("test.sqlite3")).unwrap();
        let conn = store.db.conn.lock().unwrap();
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let foreign_keys: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(version, 8);
        assert!(foreign_keys);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let (dir, store) = store();
        store
            .db
            .conn
            .lock()
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(store);
        let opened = SqliteStore::open(&dir.path().join("test.sqlite3"));
        assert!(matches!(opened, Err(StoreError::Corrupt(_))));
    }
}

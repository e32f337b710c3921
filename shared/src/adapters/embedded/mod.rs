//! Embedded adapters: SQLite for jobs, users, tenants and the work queue, the local filesystem
//! for job files. One process, no external services.

mod admission;
mod files;
mod idempotency;
mod jobs;
mod keyring;
mod queue;
mod schema;
mod store;
mod tenants;
mod users;

use std::path::Path;
use std::sync::Arc;

pub use files::{visible_files, LocalFileStore, VisibleFile};
pub use keyring::{FileKeyring, KeyFileError};
pub use queue::{LeasedWork, SqliteWorkQueue};
pub use store::SqliteStore;

use crate::ports::{Ports, StoreError, StoreResult};

/// The keyring file inside the data directory.
pub const KEY_FILE: &str = "master.key";
/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "bulk.sqlite3";
/// The directory of job files inside the data directory.
pub const FILES_DIR: &str = "files";

/// The ports wired to the embedded adapters, and the concrete store and queue for the local
/// worker (leases) and administration.
#[derive(Clone)]
pub struct EmbeddedAdapters {
    pub ports: Ports,
    pub store: SqliteStore,
    pub queue: SqliteWorkQueue,
    pub files: LocalFileStore,
}

/// Opens (creating if needed) the data directory: `bulk.sqlite3` and the `files/` directory.
pub async fn open(data_dir: &Path) -> StoreResult<EmbeddedAdapters> {
    let files_dir = data_dir.join(FILES_DIR);
    tokio::fs::create_dir_all(&files_dir)
        .await
        .map_err(|error| StoreError::unavailable("files", error))?;
    let database = data_dir.join(DATABASE_FILE);
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&database))
        .await
        .map_err(|error| StoreError::unavailable("sqlite", error))??;
    let queue = store.work_queue();
    let files = LocalFileStore::new(files_dir);
    let ports = Ports {
        jobs: Arc::new(store.clone()),
        users: Arc::new(store.clone()),
        tenants: Arc::new(store.clone()),
        idempotency: Arc::new(store.clone()),
        files: Arc::new(files.clone()),
        queue: Arc::new(queue.clone()),
        // `master.key` in the data directory, created on first start (mode 0600).
        keyring: Arc::new(FileKeyring::load_or_create(&data_dir.join(KEY_FILE))?),
    };
    Ok(EmbeddedAdapters {
        ports,
        store,
        queue,
        files,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::model::{TenantId, TenantSettings};
    use crate::ports::TenantStore;

    #[tokio::test]
    async fn opens_a_data_directory_and_wires_the_ports() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let adapters = open(&data_dir).await.unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let settings = TenantSettings::with_defaults(tenant.clone());
        adapters
            .ports
            .tenants
            .put_settings(&settings)
            .await
            .unwrap();
        assert_eq!(
            adapters.store.settings(&tenant).await.unwrap(),
            Some(settings)
        );
        adapters
            .ports
            .files
            .put("uploads/acme/f.json", Bytes::from_static(b"[]"))
            .await
            .unwrap();
        assert!(data_dir.join("files/uploads/acme/f.json").is_file());
        assert!(data_dir.join(DATABASE_FILE).is_file());
        adapters.ports.queue.enqueue(&[]).await.unwrap();
        assert_eq!(adapters.queue.pending().await.unwrap(), 0);
        drop(adapters);
        open(&data_dir).await.unwrap();
    }
}

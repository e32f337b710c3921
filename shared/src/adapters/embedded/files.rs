//! `FileStore` on the local filesystem: a key is a relative path under one directory.

use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::ports::{FileReader, FileStore, StoreError, StoreResult};

const READ_BUFFER: usize = 64 * 1024;

/// Job files as plain files under `dir`.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    dir: PathBuf,
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::unavailable("files", error)
}

impl LocalFileStore {
    pub fn new(dir: PathBuf) -> LocalFileStore {
        LocalFileStore { dir }
    }

    /// Moves a file from elsewhere on the same filesystem into the store under `key`
    /// (the local drop folder hands files over this way, without copying them).
    pub async fn import(&self, source: &Path, key: &str) -> StoreResult<()> {
        let target = self.path(key)?;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        tokio::fs::rename(source, &target).await.map_err(io_error)
    }

    /// The keys of the files under `prefix` (a `/`-separated key prefix ending in `/`), sorted;
    /// temporary files of unfinished writes (hidden names) are left out.
    pub fn keys_under(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let root = self.path(prefix)?;
        let prefix = prefix.trim_end_matches('/');
        Ok(visible_files(&root)
            .into_iter()
            .map(|file| format!("{prefix}/{}", file.relative))
            .collect())
    }

    /// The file of `key`, refusing keys that could leave the directory.
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let valid = !key.is_empty()
            && !key.contains("..")
            && !key.contains('\\')
            && !key.contains('\0')
            && !key.starts_with('/')
            && !Path::new(key).is_absolute();
        if valid {
            Ok(self.dir.join(key))
        } else {
            Err(StoreError::Corrupt(format!("invalid file key '{key}'")))
        }
    }
}

/// A regular file found by [`visible_files`].
#[derive(Debug)]
pub struct VisibleFile {
    pub path: PathBuf,
    /// Its path below the folder searched, `/`-separated.
    pub relative: String,
    pub metadata: std::fs::Metadata,
}

/// The regular files below `dir`, recursively, sorted by path, leaving out hidden names (files
/// being written under a dot-name) and what cannot be read.
pub fn visible_files(dir: &Path) -> Vec<VisibleFile> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let (path, Ok(metadata)) = (entry.path(), entry.metadata()) else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(path);
            } else if metadata.is_file() {
                let Ok(relative) = path.strip_prefix(dir) else {
                    continue;
                };
                let relative = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push(VisibleFile {
                    path,
                    relative,
                    metadata,
                });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Writes `body` to a temporary file next to `path`, then renames it into place.
async fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(body).await?;
        file.sync_all().await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if written.is_err() {
        // Best effort: the write already failed, a leftover temp file is only clutter.
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
}

#[async_trait]
impl FileStore for LocalFileStore {
    async fn put(&self, key: &str, body: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        write_atomically(&path, &body).await.map_err(io_error)
    }

    async fn open(&self, key: &str, offset: u64) -> StoreResult<FileReader> {
        let path = self.path(key)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|error| {
            if error.kind() == ErrorKind::NotFound {
                StoreError::NotFound(format!("file {key}"))
            } else {
                io_error(error)
            }
        })?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        }
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, file)))
    }

    async fn size(&self, key: &str) -> StoreResult<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(metadata) if metadata.is_file() => Ok(Some(metadata.len())),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> StoreResult<()> {
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        if let Some(dir) = to_path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        tokio::fs::rename(&from_path, &to_path)
            .await
            .map_err(|error| {
                if error.kind() == ErrorKind::NotFound {
                    StoreError::NotFound(format!("file {from}"))
                } else {
                    io_error(error)
                }
            })
    }

    fn presigns(&self) -> bool {
        false
    }

    /// Local files have no presigned URLs: clients upload through the API or the drop folder.
    async fn presign_put(
        &self,
        _key: &str,
        _bytes: u64,
        _expires_in: std::time::Duration,
    ) -> StoreResult<Option<crate::ports::PresignedUpload>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_all(mut reader: FileReader) -> String {
        let mut text = String::new();
        reader.read_to_string(&mut text).await.unwrap();
        text
    }

    /// A file is written beside its key and moved into place: storing it again leaves no
    /// other file behind. (The port's contract is tested on both stores by the test crate's
    /// `contracts`.)
    #[tokio::test]
    async fn a_stored_file_leaves_nothing_else_behind() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFileStore::new(dir.path().join("files"));
        let key = "uploads/acme/123e4567.json";
        files
            .put(key, Bytes::from_static(b"[1, 2, 3]"))
            .await
            .unwrap();
        files.put(key, Bytes::from_static(b"[]")).await.unwrap();
        assert_eq!(read_all(files.open(key, 0).await.unwrap()).await, "[]");
        let leftovers = std::fs::read_dir(dir.path().join("files/uploads/acme"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1);
    }

    #[tokio::test]
    async fn missing_files_are_not_found_and_bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFileStore::new(dir.path().to_path_buf());
        assert!(matches!(
            files.open("uploads/none.json", 0).await,
            Err(StoreError::NotFound(_))
        ));
        for key in ["", "../x", "a/../../x", "/etc/passwd", "a\\b", "a/.."] {
            let put = files.put(key, Bytes::new()).await;
            assert!(matches!(put, Err(StoreError::Corrupt(_))), "{key}");
            assert!(
                matches!(files.open(key, 0).await, Err(StoreError::Corrupt(_))),
                "{key}"
            );
        }
    }
}

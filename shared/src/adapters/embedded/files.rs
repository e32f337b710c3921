//! `FileStore` on the local filesystem: a key is a relative path under one directory.
//!
//! Versions: a file's version is derived from its identity on disk (inode, modification time in
//! nanoseconds, length), which every write through the store changes (files are written beside
//! their key and renamed into place, never written in place). A version a write or a move
//! replaces is kept, unchanged, under `.versions/{key}/{version}`, where a read of that version
//! finds it: a file a job validated stays readable whatever is written to its key after.

use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::ports::{FileHead, FileReader, FileStore, StoreError, StoreResult};

const READ_BUFFER: usize = 64 * 1024;
/// Where replaced versions are kept (a hidden name: never a key, never listed).
const VERSIONS: &str = ".versions";

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
        self.keep_current(key).await?;
        tokio::fs::rename(source, &target).await.map_err(io_error)
    }

    /// The user id owning the current file of `key` (who put it in the drop folder).
    pub fn owner(&self, key: &str) -> Option<u32> {
        let metadata = std::fs::metadata(self.path(key).ok()?).ok()?;
        #[cfg(unix)]
        return Some(std::os::unix::fs::MetadataExt::uid(&metadata));
        #[cfg(not(unix))]
        return None;
    }

    /// The directory the replaced versions of `key` are kept in.
    fn versions_dir(&self, key: &str) -> StoreResult<PathBuf> {
        self.path(key)?;
        Ok(self.dir.join(VERSIONS).join(key))
    }

    /// Before `key` is written: its current file, if any, is kept as a replaced version.
    /// Also makes the key's directory.
    async fn keep_current(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        let Some(version) = current_version(&path).await? else {
            return Ok(());
        };
        let kept = self.versions_dir(key)?;
        tokio::fs::create_dir_all(&kept).await.map_err(io_error)?;
        match tokio::fs::rename(&path, kept.join(&version)).await {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(error)),
            _ => Ok(()),
        }
    }

    /// The file holding `version` of `key` (the current file when `None`), opened, with its
    /// version and path; `None` when there is no such file or version.
    async fn find(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> StoreResult<Option<(tokio::fs::File, FileHead, PathBuf)>> {
        let current = self.path(key)?;
        if let Some((file, head)) = open_file(&current).await? {
            if version.is_none_or(|wanted| wanted == head.version) {
                return Ok(Some((file, head, current)));
            }
        }
        let Some(version) = version.filter(|v| valid_version(v)) else {
            return Ok(None);
        };
        let kept = self.versions_dir(key)?.join(version);
        Ok(open_file(&kept)
            .await?
            .filter(|(_, head)| head.version == version)
            .map(|(file, head)| (file, head, kept)))
    }

    /// After a version of `key` that was its current file moved away: the version replaced
    /// last (if any) is current again, as S3 makes it.
    async fn restore_previous(&self, key: &str) -> StoreResult<()> {
        let kept = self.versions_dir(key)?;
        let newest = visible_files_in(&kept)
            .into_iter()
            .max_by_key(|file| file.metadata.modified().ok());
        if let Some(previous) = newest {
            tokio::fs::rename(&previous.path, self.path(key)?)
                .await
                .map_err(io_error)?;
        }
        Ok(())
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

/// The version of a file on disk: its inode, modification time (ns) and length, which any
/// write through the store changes.
fn version_of(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |at| at.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    format!("{inode:x}-{modified:x}-{:x}", metadata.len())
}

/// Whether `version` could be one of [`version_of`]'s (so never a path).
fn valid_version(version: &str) -> bool {
    !version.is_empty() && version.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The version of the regular file at `path`; `None` when there is none.
async fn current_version(path: &Path) -> StoreResult<Option<String>> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => Ok(Some(version_of(&metadata))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(error)),
    }
}

/// The regular file at `path`, opened, with its size and version read from the open file (so
/// that they are the bytes read, whatever replaces the path meanwhile).
async fn open_file(path: &Path) -> StoreResult<Option<(tokio::fs::File, FileHead)>> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    let metadata = file.metadata().await.map_err(io_error)?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let head = FileHead {
        bytes: metadata.len(),
        version: version_of(&metadata),
    };
    Ok(Some((file, head)))
}

/// The regular files directly in `dir` (none when it does not exist).
fn visible_files_in(dir: &Path) -> Vec<VisibleFile> {
    visible_files(dir)
        .into_iter()
        .filter(|file| !file.relative.contains('/'))
        .collect()
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
    async fn put(&self, key: &str, body: Bytes) -> StoreResult<String> {
        let path = self.path(key)?;
        self.keep_current(key).await?;
        write_atomically(&path, &body).await.map_err(io_error)?;
        current_version(&path)
            .await?
            .ok_or_else(|| StoreError::unavailable("files", format!("{key} vanished as written")))
    }

    async fn open(&self, key: &str, version: Option<&str>, offset: u64) -> StoreResult<FileReader> {
        let Some((mut file, _, _)) = self.find(key, version).await? else {
            let version = version.map(|v| format!(" version {v}")).unwrap_or_default();
            return Err(StoreError::NotFound(format!("file {key}{version}")));
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        }
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, file)))
    }

    async fn head(&self, key: &str, version: Option<&str>) -> StoreResult<Option<FileHead>> {
        Ok(self.find(key, version).await?.map(|(_, head, _)| head))
    }

    async fn rename(&self, from: &str, version: Option<&str>, to: &str) -> StoreResult<String> {
        let to_path = self.path(to)?;
        let Some((_, head, from_path)) = self.find(from, version).await? else {
            return Err(StoreError::NotFound(format!("file {from}")));
        };
        let was_current = from_path == self.path(from)?;
        self.keep_current(to).await?;
        tokio::fs::rename(&from_path, &to_path)
            .await
            .map_err(|error| {
                if error.kind() == ErrorKind::NotFound {
                    StoreError::NotFound(format!("file {from}"))
                } else {
                    io_error(error)
                }
            })?;
        if was_current && version.is_some() {
            self.restore_previous(from).await?;
        }
        // A rename keeps the file's identity on disk: its version is unchanged.
        Ok(head.version)
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
        assert_eq!(
            read_all(files.open(key, None, 0).await.unwrap()).await,
            "[]"
        );
        let leftovers = std::fs::read_dir(dir.path().join("files/uploads/acme"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1);
    }

    /// A version names a file under `.versions/{key}/` only when it is one of the store's own
    /// (hex digits and dashes): never a path out of it.
    #[tokio::test]
    async fn a_version_that_is_no_version_of_the_store_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFileStore::new(dir.path().join("files"));
        let key = "incoming/acme/jobs/1/users.json";
        let first = files.put(key, Bytes::from_static(b"[1]")).await.unwrap();
        files.put(key, Bytes::from_static(b"[2]")).await.unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        for version in ["../../../../secret", "", "x/y", &format!("{first}/..")] {
            let read = files.open(key, Some(version), 0).await;
            assert!(matches!(read, Err(StoreError::NotFound(_))), "{version}");
        }
        let kept = files.open(key, Some(&first), 0).await.unwrap();
        assert_eq!(read_all(kept).await, "[1]");
    }

    #[tokio::test]
    async fn missing_files_are_not_found_and_bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFileStore::new(dir.path().to_path_buf());
        assert!(matches!(
            files.open("uploads/none.json", None, 0).await,
            Err(StoreError::NotFound(_))
        ));
        for key in ["", "../x", "a/../../x", "/etc/passwd", "a\\b", "a/.."] {
            let put = files.put(key, Bytes::new()).await;
            assert!(matches!(put, Err(StoreError::Corrupt(_))), "{key}");
            assert!(
                matches!(files.open(key, None, 0).await, Err(StoreError::Corrupt(_))),
                "{key}"
            );
        }
    }
}

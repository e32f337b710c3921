//! The embedded store's [`Keyring`]: the file `master.key` beside the database, one key version
//! a line, created on first start (mode 0600).
//!
//! ```text
//! # bulk-users keyring: one version a line, `v{N} {root key as 64 hex digits}`, the current one marked.
//! v1 6b1f…e0 legacy
//! v2 09ac…4d current
//! ```
//!
//! A file of a single key (64 hex digits or base64 of 32 bytes), as the local server wrote
//! before versions, is version 1, current, and `legacy`: the secrets it sealed carry no version
//! and were sealed with the root itself (see `auth::Sealed`), and they open until a rotation
//! re-seals them and retires version 1. A secret's sealing key is derived from its version's
//! root; nothing is stored beside the sealed secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::auth::{KeyBytes, KeyVersions, SealContext, SealKey, KEY_BYTES};
use crate::ports::{Keyring, StoreError, StoreResult};

const STORE: &str = "master key";
const HEADER: &str =
    "# bulk-users keyring: one version a line, `v{N} {root key as 64 hex digits}`, \
                      the current one marked. Keep this file, and keep it private.";

/// Why a key file could not be had. The messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "{path} does not hold a keyring: it must be one version a line, `v{{N}} {{64 hex \
         digits}}` with one marked `current`, or a single key of {KEY_BYTES} bytes written as \
         64 hex characters or as base64 ({problem})"
    )]
    Invalid { path: String, problem: String },
    #[error("key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl From<KeyFileError> for StoreError {
    fn from(error: KeyFileError) -> StoreError {
        StoreError::unavailable(STORE, error)
    }
}

/// The versions of the file, with their roots.
#[derive(Clone)]
struct Ring {
    roots: BTreeMap<u32, KeyBytes>,
    current: u32,
    legacy: bool,
}

impl Ring {
    fn fresh() -> Ring {
        Ring {
            roots: BTreeMap::from([(1, KeyBytes::generate())]),
            current: 1,
            legacy: false,
        }
    }

    fn versions(&self) -> KeyVersions {
        KeyVersions {
            current: Some(self.current),
            retiring: self
                .roots
                .keys()
                .rev()
                .copied()
                .filter(|version| *version != self.current)
                .collect(),
            legacy: self.legacy && self.roots.contains_key(&1),
        }
    }

    /// Reads the file's text; `problem` says what is wrong with it.
    fn parse(text: &str) -> Result<Ring, String> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        if let [single] = lines.as_slice() {
            if !single.starts_with('v') || !single.contains(' ') {
                let root = KeyBytes::parse_text(single).ok_or("not a key")?;
                return Ok(Ring {
                    roots: BTreeMap::from([(1, root)]),
                    current: 1,
                    legacy: true,
                });
            }
        }
        let mut ring = Ring {
            roots: BTreeMap::new(),
            current: 0,
            legacy: false,
        };
        for (index, line) in lines.iter().enumerate() {
            let line_problem = |what: &str| format!("line {} of the keys: {what}", index + 1);
            let mut words = line.split_whitespace();
            let version = words
                .next()
                .and_then(|word| word.strip_prefix('v'))
                .and_then(|digits| digits.parse::<u32>().ok())
                .filter(|version| *version > 0)
                .ok_or_else(|| line_problem("no version `v{N}`"))?;
            let root = words
                .next()
                .filter(|hex| hex.len() == 2 * KEY_BYTES)
                .and_then(|hex| hex::decode(hex).ok())
                .and_then(|bytes| KeyBytes::from_slice(&bytes))
                .ok_or_else(|| line_problem("no key of 64 hex digits"))?;
            for mark in words {
                match mark {
                    "current" if ring.current == 0 => ring.current = version,
                    "legacy" if version == 1 => ring.legacy = true,
                    other => return Err(line_problem(&format!("unexpected `{other}`"))),
                }
            }
            if ring.roots.insert(version, root).is_some() {
                return Err(line_problem("a version given twice"));
            }
        }
        if ring.current == 0 {
            return Err("no version is marked current".to_owned());
        }
        Ok(ring)
    }

    fn to_text(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for (version, root) in &self.roots {
            text.push_str(&format!("v{version} {}", hex::encode(root.expose())));
            if *version == self.current {
                text.push_str(" current");
            }
            if *version == 1 && self.legacy {
                text.push_str(" legacy");
            }
            text.push('\n');
        }
        text
    }
}

/// The keyring in a file. Its `Debug` output shows no key.
pub struct FileKeyring {
    path: PathBuf,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for FileKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyring")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileKeyring {
    /// The keyring in the file at `path`, creating the file (mode 0600, one fresh version)
    /// when there is none.
    pub fn load_or_create(path: &Path) -> Result<FileKeyring, KeyFileError> {
        let ring = load_or_create(path)?;
        Ok(FileKeyring {
            path: path.to_owned(),
            ring: Mutex::new(ring),
        })
    }

    fn ring(&self) -> Ring {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn read(&self) -> Result<Ring, KeyFileError> {
        let ring = read_ring(&self.path)?;
        *self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ring.clone();
        Ok(ring)
    }

    /// Changes the keyring as read from the file now, and writes it back (a new file renamed
    /// over the old one, so a reader sees the old keyring or the new, never a part).
    async fn change(&self, change: impl FnOnce(&mut Ring) -> StoreResult<()>) -> StoreResult<Ring> {
        let mut ring = self.read()?;
        change(&mut ring)?;
        let path = self.path.clone();
        let text = ring.to_text();
        tokio::task::spawn_blocking(move || replace_private(&path, &text))
            .await
            .map_err(|error| StoreError::unavailable(STORE, error))?
            .map_err(|error| KeyFileError::Io {
                path: self.path.display().to_string(),
                error,
            })?;
        *self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ring.clone();
        Ok(ring)
    }
}

#[async_trait]
impl Keyring for FileKeyring {
    async fn versions(&self) -> StoreResult<KeyVersions> {
        Ok(self.ring().versions())
    }

    async fn reload(&self) -> StoreResult<KeyVersions> {
        Ok(self.read()?.versions())
    }

    async fn root(&self, version: u32) -> StoreResult<Option<KeyBytes>> {
        Ok(self.ring().roots.get(&version).cloned())
    }

    async fn seal_key(&self, version: u32, _context: SealContext<'_>) -> StoreResult<SealKey> {
        let root = self.root(version).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("key version {version} is not in the key file"))
        })?;
        Ok(SealKey {
            key: root.seal_key(),
            wrapped: None,
        })
    }

    async fn open_key(
        &self,
        version: u32,
        _context: SealContext<'_>,
        wrapped: Option<&[u8]>,
    ) -> StoreResult<Option<KeyBytes>> {
        // A wrapped data key is another store's (KMS): no key here opens it.
        if wrapped.is_some() {
            return Ok(None);
        }
        Ok(self.root(version).await?.map(|root| root.seal_key()))
    }

    async fn add_version(&self) -> StoreResult<u32> {
        let ring = self
            .change(|ring| {
                let next = ring.roots.keys().next_back().copied().unwrap_or(0) + 1;
                ring.roots.insert(next, KeyBytes::generate());
                ring.current = next;
                Ok(())
            })
            .await?;
        Ok(ring.current)
    }

    async fn retire(&self, version: u32) -> StoreResult<()> {
        self.change(|ring| {
            if ring.current == version {
                return Err(StoreError::Corrupt(format!(
                    "key version {version} is current: it cannot be retired"
                )));
            }
            ring.roots.remove(&version);
            if version == 1 {
                ring.legacy = false;
            }
            Ok(())
        })
        .await
        .map(drop)
    }
}

fn read_ring(path: &Path) -> Result<Ring, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyFileError::Io {
        path: path.display().to_string(),
        error,
    })?;
    Ring::parse(&text).map_err(|problem| KeyFileError::Invalid {
        path: path.display().to_string(),
        problem,
    })
}

fn load_or_create(path: &Path) -> Result<Ring, KeyFileError> {
    let io = |error: std::io::Error| KeyFileError::Io {
        path: path.display().to_string(),
        error,
    };
    // A concurrent first start may be writing the file: give it a moment.
    for attempt in 0..20 {
        match std::fs::read_to_string(path) {
            Ok(text) => match Ring::parse(&text) {
                Ok(ring) => {
                    warn_if_readable_by_others(path);
                    return Ok(ring);
                }
                Err(_) if attempt < 19 && !text.ends_with('\n') => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(problem) => {
                    return Err(KeyFileError::Invalid {
                        path: path.display().to_string(),
                        problem,
                    })
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let ring = Ring::fresh();
                match create_private(path) {
                    Ok(mut file) => {
                        use std::io::Write;
                        file.write_all(ring.to_text().as_bytes())
                            .and_then(|()| file.sync_all())
                            .map_err(io)?;
                        return Ok(ring);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(io(error)),
                }
            }
            Err(error) => return Err(io(error)),
        }
    }
    Err(KeyFileError::Invalid {
        path: path.display().to_string(),
        problem: "still incomplete after half a second".to_owned(),
    })
}

/// Writes `text` to a new private file beside `path` and renames it over `path`.
fn replace_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let mut file = create_private(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the key file is readable by other users; make it mode 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn key_files_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let created = load_or_create(&path).unwrap();
        let loaded = load_or_create(&path).unwrap();
        assert_eq!(created.roots.get(&1), loaded.roots.get(&1));
        let text = std::fs::read_to_string(&path).unwrap();
        let root = hex::encode(created.roots[&1].expose());
        assert!(text.contains(&format!("\nv1 {root} current\n")), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(
            &path,
            "not a key but long enough to not be a partial write\n",
        )
        .unwrap();
        let error = load_or_create(&path).map(drop).unwrap_err();
        assert!(error.to_string().contains("master.key"), "{error}");
        assert!(!error.to_string().contains("long enough"), "{error}");
        assert!(load_or_create(&dir.path().join("missing/master.key")).is_err());
    }

    #[test]
    fn a_single_key_file_of_before_versions_is_version_one_and_legacy() {
        let hex_key = "00".repeat(31) + "ff";
        let ring = Ring::parse(&format!(" {hex_key}\n")).unwrap();
        assert_eq!(ring.roots[&1].expose()[31], 0xff);
        assert_eq!(
            ring.versions(),
            KeyVersions {
                current: Some(1),
                retiring: vec![],
                legacy: true
            }
        );
        let base64_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(
            Ring::parse(&base64_key).unwrap().roots[&1].expose(),
            &[9; 32]
        );
        let url_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 32]);
        assert_eq!(
            Ring::parse(&url_key).unwrap().roots[&1].expose(),
            &[0xfb; 32]
        );
        // Written back in the versioned form, still legacy.
        let again = Ring::parse(&ring.to_text()).unwrap();
        assert!(again.legacy);
        assert_eq!(again.roots[&1], ring.roots[&1]);
        for bad in [
            "",
            "abc",
            &"0".repeat(62),
            &"zz".repeat(32),
            "AAAA",
            &format!("v1 {hex_key}"),
            &format!("v1 {hex_key} current\nv1 {hex_key}"),
            &format!("v2 {hex_key} current legacy"),
            &format!("v1 {hex_key} current\nv2 {hex_key} current"),
        ] {
            assert!(Ring::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn versions_are_added_and_retired_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let keyring = FileKeyring::load_or_create(&path).unwrap();
        let first = keyring.root(1).await.unwrap().unwrap();
        assert_eq!(keyring.add_version().await.unwrap(), 2);
        let reread = FileKeyring::load_or_create(&path).unwrap();
        assert_eq!(
            reread.versions().await.unwrap(),
            KeyVersions {
                current: Some(2),
                retiring: vec![1],
                legacy: false
            }
        );
        assert_eq!(reread.root(1).await.unwrap(), Some(first));
        assert!(
            keyring.retire(2).await.is_err(),
            "the current version stays"
        );
        keyring.retire(1).await.unwrap();
        assert_eq!(reread.reload().await.unwrap().active(), vec![2]);
        assert_eq!(reread.root(1).await.unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

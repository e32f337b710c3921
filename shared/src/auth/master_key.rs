//! The server's master key: where it comes from (the environment, a file in the data
//! directory created on first start) and how it is read.

use std::path::Path;

use base64::Engine;
use rand::RngCore;

/// Bytes of the master key (AES-256 and HMAC-SHA256 key).
pub const MASTER_KEY_BYTES: usize = 32;

/// Why a master key could not be had. The messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "{} is not set: it must hold the server's master key ({MASTER_KEY_BYTES} bytes as 64 hex \
         characters or base64), the key the API credentials' secrets are sealed with",
        MasterKey::ENV
    )]
    Missing,
    #[error(
        "{source_name} does not hold a master key: it must be {MASTER_KEY_BYTES} bytes written as \
         64 hex characters or as base64"
    )]
    Invalid { source_name: String },
    #[error("master key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// The server's master key: 32 random bytes that seal credential secrets (AES-256-GCM) and key
/// their look-up digests (HMAC-SHA256). Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct MasterKey {
    pub(super) key: [u8; MASTER_KEY_BYTES],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The environment variable the AWS functions read the master key from.
    pub const ENV: &'static str = "BULK_MASTER_KEY";

    pub fn from_bytes(key: [u8; MASTER_KEY_BYTES]) -> MasterKey {
        MasterKey { key }
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        let mut key = [0u8; MASTER_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        MasterKey { key }
    }

    /// Reads a key written as 64 hex characters or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes. `source_name` names where the text came from, for the error.
    pub fn parse(text: &str, source_name: &str) -> Result<MasterKey, MasterKeyError> {
        let text = text.trim();
        let decoded =
            if text.len() == 2 * MASTER_KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex::decode(text).ok()
            } else {
                use base64::engine::general_purpose::{
                    STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
                };
                [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(text).ok())
            };
        decoded
            .and_then(|bytes| <[u8; MASTER_KEY_BYTES]>::try_from(bytes.as_slice()).ok())
            .map(MasterKey::from_bytes)
            .ok_or_else(|| MasterKeyError::Invalid {
                source_name: source_name.to_owned(),
            })
    }

    /// The key in `BULK_MASTER_KEY` (64 hex characters or base64 of 32 bytes).
    pub fn from_env() -> Result<MasterKey, MasterKeyError> {
        match std::env::var(MasterKey::ENV) {
            Ok(text) if !text.trim().is_empty() => MasterKey::parse(&text, MasterKey::ENV),
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(MasterKeyError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => Err(MasterKeyError::Invalid {
                source_name: MasterKey::ENV.to_owned(),
            }),
        }
    }

    /// The key in `BULK_MASTER_KEY` for a process that may not need one (the queue processor and
    /// the bucket intake never authenticate): when the variable is missing or invalid, a random
    /// key that lives as long as the process, so nothing stored elsewhere opens and every
    /// authentication fails closed. The problem is logged.
    pub fn from_env_or_ephemeral() -> MasterKey {
        match MasterKey::from_env() {
            Ok(key) => key,
            Err(MasterKeyError::Missing) => {
                tracing::debug!(
                    "{} is not set: this process cannot authenticate stored credentials",
                    MasterKey::ENV
                );
                MasterKey::generate()
            }
            Err(error) => {
                tracing::error!(%error, "no usable master key: every authentication will fail");
                MasterKey::generate()
            }
        }
    }

    /// The key in the file at `path`, creating the file (mode 0600, a fresh key as hex) when
    /// there is none: the local server's key, kept beside its database.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, MasterKeyError> {
        let io = |error: std::io::Error| MasterKeyError::Io {
            path: path.display().to_string(),
            error,
        };
        // A concurrent first start may be writing the file: give it a moment.
        for attempt in 0..20 {
            match std::fs::read_to_string(path) {
                Ok(text) => match MasterKey::parse(&text, &path.display().to_string()) {
                    Ok(key) => {
                        warn_if_readable_by_others(path);
                        return Ok(key);
                    }
                    Err(_) if attempt < 19 && text.trim().len() < 2 * MASTER_KEY_BYTES => {
                        std::thread::sleep(std::time::Duration::from_millis(25));
                    }
                    Err(error) => return Err(error),
                },
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let key = MasterKey::generate();
                    match create_private(path) {
                        Ok(mut file) => {
                            use std::io::Write;
                            file.write_all(format!("{}\n", hex::encode(key.key)).as_bytes())
                                .and_then(|()| file.sync_all())
                                .map_err(io)?;
                            return Ok(key);
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(error) => return Err(io(error)),
                    }
                }
                Err(error) => return Err(io(error)),
            }
        }
        Err(MasterKeyError::Invalid {
            source_name: path.display().to_string(),
        })
    }
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
                "the master key file is readable by other users; make it mode 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_parse_hex_and_base64_and_never_print() {
        let hex_key = "00".repeat(31) + "ff";
        let key = MasterKey::parse(&format!(" {hex_key}\n"), "test").unwrap();
        assert_eq!(key.key[31], 0xff);
        let base64_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(MasterKey::parse(&base64_key, "test").unwrap().key, [9; 32]);
        let url_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 32]);
        assert_eq!(MasterKey::parse(&url_key, "test").unwrap().key, [0xfb; 32]);
        for bad in ["", "abc", &"0".repeat(62), &"zz".repeat(32), "AAAA"] {
            let error = MasterKey::parse(bad, "BULK_MASTER_KEY").unwrap_err();
            assert!(error.to_string().contains("BULK_MASTER_KEY"), "{error}");
        }
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        assert!(!format!("{:?}", MasterKey::parse(&hex_key, "t")).contains("ff"));
    }

    #[test]
    fn master_key_files_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let created = MasterKey::load_or_create(&path).unwrap();
        let loaded = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(created.key, loaded.key);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), hex::encode(created.key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(
            &path,
            "not a key but long enough to not be a partial write at all ok",
        )
        .unwrap();
        let error = MasterKey::load_or_create(&path).unwrap_err();
        assert!(error.to_string().contains("master.key"), "{error}");
        assert!(MasterKey::load_or_create(&dir.path().join("missing/master.key")).is_err());
    }
}

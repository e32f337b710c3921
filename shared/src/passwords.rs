//! Initial passwords (Huawei Workspace `password`): hashed with argon2id before anything is
//! stored, never kept, logged or echoed in clear.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// The argon2id PHC string of a password, with a fresh random salt and the crate's default
/// (OWASP-recommended) cost: 19 MiB, 2 passes, 1 lane.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|error| format!("the password could not be salted: {error}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("the password could not be hashed: {error}"))
}

/// Hashes several passwords on the blocking pool, as many at once as there are CPUs (each
/// hash holds 19 MiB while it runs), in order. Memory-hard hashing is CPU work that must not
/// stall the async runtime.
pub async fn hash_passwords(passwords: Vec<String>) -> Result<Vec<String>, String> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};

    let parallel = std::thread::available_parallelism().map_or(1, usize::from);
    stream::iter(passwords)
        .map(|password| async move {
            tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|error| error.to_string())?
        })
        .buffered(parallel)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    #[test]
    fn hashes_verify_and_hide_the_password() {
        let hash = hash_password("Secret#2024").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("Secret#2024"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"Secret#2024", &parsed)
            .is_ok());
        assert_ne!(hash, hash_password("Secret#2024").unwrap());
    }
}

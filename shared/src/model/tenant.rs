//! Tenants, their configurable settings and their API credentials.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// A tenant (the CCAI subdomain). Every job, user and credential belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Tenant names are 1–63 characters of lower-case letters, digits and `-` (a DNS label),
    /// not starting or ending with `-`.
    pub fn parse(name: &str) -> Result<TenantId, String> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(TenantId(name.to_owned()))
        } else {
            Err(format!(
                "tenant '{name}' must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's configuration: what its users may be given, and its published limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub tenant: TenantId,
    pub roles: Vec<String>,
    pub teams: Vec<String>,
    pub locations: Vec<String>,
    /// Upper bound of a user's `max_chat_limit`.
    pub max_chat_limit: u32,
    #[serde(default)]
    pub limits: Limits,
}

impl TenantSettings {
    /// The settings a new tenant starts with.
    pub fn with_defaults(tenant: TenantId) -> TenantSettings {
        let names = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        TenantSettings {
            tenant,
            roles: names(&["Admin", "Manager", "Agent"]),
            teams: names(&["Sales", "Support"]),
            locations: names(&["Headquarters", "Remote"]),
            max_chat_limit: 10,
            limits: Limits::default(),
        }
    }
}

/// Published per-tenant limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest job file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most users one job file may hold.
    pub max_rows: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 1024 * 1024 * 1024,
            max_rows: 5_000_000,
        }
    }
}

/// An API credential. The secret itself is never stored: only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub tenant: TenantId,
    /// Public identifier of the credential.
    pub key_id: String,
    /// Human-readable name, reported as the job's `*_api_user_name`.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub revoked: bool,
    pub created_at: Timestamp,
}

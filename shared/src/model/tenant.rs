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
    /// Whether files dropped into the bucket (or the local drop folder) under
    /// `incoming/{tenant}/` become jobs; when off, each is moved aside unprocessed. On unless
    /// switched off (`bulk-admin tenant set --bucket-drops off`). Presigned uploads, asked for
    /// through the authenticated API, are not drops.
    #[serde(default = "drops_on")]
    pub bucket_drops: bool,
}

fn drops_on() -> bool {
    true
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
            bucket_drops: true,
        }
    }
}

/// Published per-tenant limits. A limit missing from stored settings takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest job file accepted, in bytes (413 beyond).
    pub max_file_bytes: u64,
    /// Most users one job file may hold (413 beyond).
    pub max_rows: u64,
    /// Most jobs in progress at once: starting another is refused (429) until one ends.
    pub max_concurrent_jobs: u64,
    /// Most API requests per minute (a fixed window per UTC minute): more are refused (429)
    /// until the minute ends.
    pub requests_per_minute: u64,
    /// Most Huawei `batch-create` requests of the tenant running at once (they run inline and
    /// hash every password): another is refused (429) until one ends.
    pub max_concurrent_batch_creates: u64,
    /// Days a job and everything recorded about it are kept after it was created (and after it
    /// was proceeded): [`RETENTION_DAYS`] bounds it.
    pub retention_days: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 1024 * 1024 * 1024,
            max_rows: 5_000_000,
            max_concurrent_jobs: 20,
            requests_per_minute: 6000,
            max_concurrent_batch_creates: 4,
            retention_days: 30,
        }
    }
}

/// A lease on one of a tenant's `slots` slots of a kind of work (`name`), held by `holder`
/// until `until`: how many of that work run at once is capped across every process. A slot is
/// free when no lease holds it or its lease has ended; a holder that dies frees its slot when
/// the lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLease {
    pub name: &'static str,
    pub slots: u64,
    pub holder: String,
    pub until: Timestamp,
}

impl SlotLease {
    /// Whether a slot whose lease ends at `until` is free at `at`.
    pub fn ended(until: Timestamp, at: Timestamp) -> bool {
        until <= at
    }
}

/// The retention a tenant may be given, in days: at least a day (an idempotency record is kept
/// that long), at most ten years.
pub const RETENTION_DAYS: std::ops::RangeInclusive<u64> = 1..=3650;

impl Limits {
    /// Until when a job created at `created_at` is kept: `retention_days` later.
    pub fn keep_until(&self, created_at: Timestamp) -> Timestamp {
        let days = self.retention_days.min(*RETENTION_DAYS.end());
        created_at.plus_seconds(days as i64 * 24 * 60 * 60)
    }
}

/// An API credential. The secret itself is never stored in clear: it is kept sealed under the
/// server's master key (signature schemes need to recompute an HMAC keyed by it), with a keyed
/// digest to find the credential by its secret (see `crate::auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub tenant: TenantId,
    /// Public identifier of the credential, unique across tenants: the access key (AK) of the
    /// Huawei SDK's request signing.
    pub key_id: String,
    /// Human-readable name, reported as the job's `*_api_user_name`.
    pub name: String,
    /// The secret sealed under a key version (see `auth::Sealed`: the version, a wrapped data
    /// key when the store has one per secret, nonce ‖ AES-256-GCM ciphertext with the tenant
    /// and key id as associated data).
    pub sealed_secret: String,
    /// Hex HMAC-SHA256(the look-up key of the version that sealed the secret, `"secret:" +
    /// secret`), unique across tenants.
    pub secret_lookup: String,
    pub revoked: bool,
    pub created_at: Timestamp,
}

/// What storing a credential did. Key ids and secrets are global: a key id held by another
/// tenant, or a secret (look-up digest) held by another credential, is refused and nothing is
/// written. Storing the same (tenant, key id) again replaces that credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialPut {
    Stored,
    /// Another tenant has a credential with this key id.
    KeyIdTaken,
    /// Another credential has this secret.
    SecretTaken,
}

/// What re-sealing a credential's secret under another key version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resealed {
    Stored,
    /// The credential is gone, or its secret was replaced since it was read: nothing written.
    Changed,
    /// Another credential holds the new look-up digest: nothing written.
    SecretTaken,
}

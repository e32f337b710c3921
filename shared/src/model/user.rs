//! Users of a tenant, as the bulk jobs create and change them.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// The system id of a user, unique across tenants.
pub type UserId = u64;

/// A stored user. `email_key` (the lower-cased email) is the match key, unique per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub agent_number: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub location: Option<String>,
    pub max_chat_limit: Option<u32>,
    pub max_chat_limit_enabled: bool,
    /// Names of the tenant roles the user holds, in the tenant's spelling, sorted.
    pub roles: Vec<String>,
    /// Names of the tenant teams the user belongs to, in the tenant's spelling, sorted.
    pub teams: Vec<String>,
    /// Set while the user is deactivated (`status: "Inactive"`).
    pub deactivated_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    pub fn email_key(&self) -> String {
        email_key(&self.email)
    }

    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }
}

/// Users are matched by email, case-insensitively.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A change to the user table, applied by the processor. Short-lived, a batch at a time, so
/// the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserWrite {
    /// Create or overwrite the user stored under `user.email_key()`.
    Put(User),
    /// Remove the entry stored under this email key (the old address of a renamed user).
    DeleteEmail(String),
}

/// How a selection of users is asked for in "get user configuration data".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSelector {
    Emails(Vec<String>),
    Ids(Vec<UserId>),
    AgentNumbers(Vec<String>),
}

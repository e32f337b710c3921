//! Users of a tenant: one record per person, whichever dialect created or changed it.
//!
//! A user is identified by its system `id` and may be found by any of its unique keys: its
//! email, its external id (Zendesk) and its user name (Huawei Workspace), each unique per
//! tenant, case-insensitively. The CCAI fields, the support profile (Zendesk) and the workspace
//! account (Huawei) are views of the same record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JobId, Timestamp};

/// The system id of a user, unique across tenants.
pub type UserId = u64;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Increases with every saved change; a save expects the version it read.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub agent_number: Option<String>,
    pub location: Option<String>,
    pub max_chat_limit: Option<u32>,
    pub max_chat_limit_enabled: bool,
    /// Names of the tenant roles the user holds, in the tenant's spelling, sorted.
    pub roles: Vec<String>,
    /// Names of the tenant teams the user belongs to, in the tenant's spelling, sorted.
    pub teams: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Zendesk `alias`, Huawei `alias_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default)]
    pub support: SupportProfile,
    #[serde(default)]
    pub workspace: WorkspaceAccount,
    /// Set while the user is deactivated (CCAI `status: "Inactive"`, Zendesk `suspended`).
    pub deactivated_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when the user was deleted (Zendesk destroy, Huawei delete). A deleted user holds no
    /// keys and is not listed; its record stays, a tombstone without personal data
    /// ([`User::delete`]), so a re-run of the job sees what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// The job row that last changed the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<ChangeStamp>,
}

/// Zendesk's view of a user, beyond the shared fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportProfile {
    #[serde(default)]
    pub role: SupportRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default)]
    pub verified: bool,
    /// Custom user fields, by key; values are strings, numbers, booleans or null.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SupportRole {
    #[default]
    EndUser,
    Agent,
    Admin,
}

impl SupportRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SupportRole::EndUser => "end-user",
            SupportRole::Agent => "agent",
            SupportRole::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<SupportRole> {
        match text {
            "end-user" | "end_user" => Some(SupportRole::EndUser),
            "agent" => Some(SupportRole::Agent),
            "admin" => Some(SupportRole::Admin),
            _ => None,
        }
    }
}

/// A Zendesk user identity (`{type, value}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// Huawei Workspace's view of a user, beyond the shared fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_type: Option<ActiveType>,
    /// `"0"` (never) or a `yyyy-MM-ddTHH:mm:ss[.SSS]Z` instant, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_expires: Option<String>,
    /// The initial password, hashed (argon2id, PHC string). Never the password itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_change_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_login_change_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActiveType {
    UserActivate,
    AdminActivate,
}

impl ActiveType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveType::UserActivate => "USER_ACTIVATE",
            ActiveType::AdminActivate => "ADMIN_ACTIVATE",
        }
    }
}

/// What a job row did to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserAction {
    Created,
    Updated,
    Deleted,
}

/// The job row that last changed a user, and how. A re-run of that row (a re-delivered chunk)
/// finds it and reports the same action without writing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeStamp {
    pub job: JobId,
    /// 1-based position of the row in the job's file.
    pub row: u64,
    pub action: UserAction,
    /// Whether the row was applied with a warning (its `new_email` matched, not its email):
    /// a re-run reports the warning again, though the user alone no longer tells.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
}

/// A unique key of a user within its tenant, normalised (trimmed, lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKey {
    Email(String),
    ExternalId(String),
    UserName(String),
}

impl UserKey {
    pub fn email(email: &str) -> UserKey {
        UserKey::Email(email_key(email))
    }

    pub fn external_id(external_id: &str) -> UserKey {
        UserKey::ExternalId(external_id.trim().to_lowercase())
    }

    pub fn user_name(user_name: &str) -> UserKey {
        UserKey::UserName(user_name.trim().to_lowercase())
    }

    /// The name of the field the key comes from.
    pub fn field(&self) -> &'static str {
        match self {
            UserKey::Email(_) => "email",
            UserKey::ExternalId(_) => "external_id",
            UserKey::UserName(_) => "user_name",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            UserKey::Email(value) | UserKey::ExternalId(value) | UserKey::UserName(value) => value,
        }
    }
}

impl std::fmt::Display for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} '{}'", self.field(), self.value())
    }
}

impl User {
    /// A new, active user with no fields set.
    pub fn new(id: UserId, now: Timestamp) -> User {
        User {
            id,
            version: 0,
            email: None,
            external_id: None,
            user_name: None,
            first_name: String::new(),
            last_name: String::new(),
            agent_number: None,
            location: None,
            max_chat_limit: None,
            max_chat_limit_enabled: false,
            roles: Vec::new(),
            teams: Vec::new(),
            phone: None,
            alias: None,
            support: SupportProfile::default(),
            workspace: WorkspaceAccount::default(),
            deactivated_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            last_change: None,
        }
    }

    pub fn email_key(&self) -> Option<String> {
        self.email.as_deref().map(email_key)
    }

    /// The unique keys the user holds; none once deleted.
    pub fn keys(&self) -> Vec<UserKey> {
        if self.is_deleted() {
            return Vec::new();
        }
        let mut keys = Vec::with_capacity(3);
        keys.extend(self.email.as_deref().map(UserKey::email));
        keys.extend(self.external_id.as_deref().map(UserKey::external_id));
        keys.extend(self.user_name.as_deref().map(UserKey::user_name));
        keys
    }

    pub fn holds(&self, key: &UserKey) -> bool {
        self.keys().contains(key)
    }

    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Deletes the user at `now`, leaving a tombstone with only what uniqueness and audit
    /// need: its `id` (never given to another user), `version` (the condition of a later
    /// save), `created_at`, `updated_at` and `deleted_at`, and `last_change`, the job row that
    /// deleted it (the caller stamps it), which a re-run of that row finds. No personal data
    /// stays: no name, email, external id, user name, phone, alias, agent number, location,
    /// roles, teams, support profile or workspace account.
    pub fn delete(&mut self, now: Timestamp) {
        *self = User {
            version: self.version,
            created_at: self.created_at,
            deleted_at: Some(now),
            last_change: self.last_change,
            ..User::new(self.id, now)
        };
    }

    /// Whether a deleted user is a tombstone as [`User::delete`] leaves it.
    pub fn is_tombstone(&self) -> bool {
        let Some(deleted_at) = self.deleted_at else {
            return false;
        };
        let mut clean = self.clone();
        clean.delete(deleted_at);
        clean.updated_at = self.updated_at;
        clean == *self
    }

    /// The display name: first and last name, else the alias, else the user name, else the email.
    pub fn display_name(&self) -> String {
        let full = format!("{} {}", self.first_name, self.last_name);
        let full = full.trim();
        if !full.is_empty() {
            return full.to_owned();
        }
        [&self.alias, &self.user_name, &self.email]
            .into_iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_default()
    }
}

/// Emails are matched case-insensitively.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Splits a full name into first and last name at its last space ("Ada King Lovelace" →
/// "Ada King", "Lovelace"; "Cher" → "Cher", "").
pub fn split_name(name: &str) -> (String, String) {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    match name.rsplit_once(' ') {
        Some((first, last)) => (first.to_owned(), last.to_owned()),
        None => (name, String::new()),
    }
}

/// A change to one user, saved atomically with the keys it claims and releases: `before` is the
/// user as read (`None` for a new user), `after` the user to store (its version one higher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub before: Option<User>,
    pub after: User,
}

impl UserChange {
    /// Keys `after` holds that `before` did not.
    pub fn claimed_keys(&self) -> Vec<UserKey> {
        let held = self.before.as_ref().map(User::keys).unwrap_or_default();
        self.after
            .keys()
            .into_iter()
            .filter(|key| !held.contains(key))
            .collect()
    }

    /// Keys `before` held that `after` does not.
    pub fn released_keys(&self) -> Vec<UserKey> {
        let kept = self.after.keys();
        self.before
            .as_ref()
            .map(User::keys)
            .unwrap_or_default()
            .into_iter()
            .filter(|key| !kept.contains(key))
            .collect()
    }
}

/// What saving one [`UserChange`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Another user holds this key; nothing was saved.
    KeyTaken(UserKey),
    /// The stored user is not the `before` of the change (changed concurrently, or a new
    /// user's id exists); nothing was saved.
    Stale,
}

/// How a selection of users is asked for in "get user configuration data".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSelector {
    Emails(Vec<String>),
    Ids(Vec<UserId>),
    AgentNumbers(Vec<String>),
}

/// Narrows a user listing.
///
/// A user name matches from its start (case-insensitively, as a user name key): an index of
/// user name keys finds the matches without reading the tenant's other users, which a
/// substring could not. A filtered listing is in user name order, an unfiltered one in id
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Only users whose user name key starts with this (itself a user name key).
    user_name_prefix: Option<String>,
}

impl UserFilter {
    /// Users whose user name starts with `text`, compared as user name keys; blank text
    /// filters nothing.
    pub fn user_name_starting_with(text: &str) -> UserFilter {
        let key = UserKey::user_name(text);
        UserFilter {
            user_name_prefix: (!key.value().is_empty()).then(|| key.value().to_owned()),
        }
    }

    /// The user name key prefix, if any.
    pub fn user_name_prefix(&self) -> Option<&str> {
        self.user_name_prefix.as_deref()
    }

    /// The smallest text above every key that starts with the prefix (keys compare as UTF-8
    /// bytes): the prefix's range of keys is `prefix..end`.
    pub fn user_name_range(&self) -> Option<(String, String)> {
        self.user_name_prefix
            .as_ref()
            .map(|prefix| (prefix.clone(), format!("{prefix}{}", char::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_last_space() {
        assert_eq!(
            split_name("  Ada  King Lovelace "),
            ("Ada King".into(), "Lovelace".into())
        );
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
    }

    #[test]
    fn changes_claim_and_release_keys() {
        let now = Timestamp::now();
        let mut before = User::new(1, now);
        before.email = Some("A@x.io".into());
        before.user_name = Some("ann".into());
        let mut after = before.clone();
        after.email = Some("b@x.io".into());
        let change = UserChange {
            before: Some(before),
            after: after.clone(),
        };
        assert_eq!(change.claimed_keys(), vec![UserKey::email("B@X.io")]);
        assert_eq!(change.released_keys(), vec![UserKey::email("a@x.io")]);
        after.deleted_at = Some(now);
        assert!(after.keys().is_empty());
    }

    #[test]
    fn a_deleted_user_keeps_no_personal_data() {
        let created = Timestamp::parse("2024-01-01T00:00:00.000Z").unwrap();
        let deleted = created.plus_seconds(60);
        let mut user = User::new(7, created);
        user.version = 3;
        user.email = Some("ann@x.io".into());
        user.external_id = Some("ext-1".into());
        user.user_name = Some("ann".into());
        user.first_name = "Ann".into();
        user.phone = Some("123".into());
        user.agent_number = Some("A1".into());
        user.roles = vec!["Agent".into()];
        user.support.notes = Some("likes tea".into());
        user.workspace.description = Some("desk 4".into());
        user.last_change = Some(ChangeStamp {
            job: 9,
            row: 2,
            action: UserAction::Deleted,
            warned: false,
        });
        assert!(!user.is_tombstone());
        user.delete(deleted);
        let mut expected = User::new(7, deleted);
        expected.version = 3;
        expected.created_at = created;
        expected.deleted_at = Some(deleted);
        expected.last_change = user.last_change;
        assert_eq!(user, expected);
        assert!(user.is_tombstone());
    }
}

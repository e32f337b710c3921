//! What a valid record asks for, whichever dialect it came in: the user it targets, whether it
//! creates, updates or deletes, and the fields it changes. The processor applies commands; the
//! dialects only turn their records into them.

use std::collections::BTreeMap;

use super::{Patch, UserRow, UserStatus};
use crate::model::{
    split_name, ActiveType, Identity, SupportRole, Timestamp, User, UserId, UserKey,
};

/// Whether a record creates, updates, does either, or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Update the user the target finds, or create one.
    Upsert,
    /// Create a user; fails when the target finds one.
    Create,
    /// Update the user the target finds; fails when there is none.
    Update,
    /// Delete the user the target finds; fails when there is none.
    Delete,
}

/// How a record names its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The first of these keys that a live user holds (none given: a new user).
    Keys(Vec<UserKey>),
    Id(UserId),
}

/// A valid record, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    pub intent: Intent,
    pub target: Target,
    /// The record's match-by field, for messages and results ("email", "id", …).
    pub target_field: &'static str,
    /// When the user was found by a later key of the target rather than the first, the
    /// record is applied with this warning (a CCAI rename that had been applied before).
    pub fallback_warning: bool,
    /// A new user must get a non-empty display name (Zendesk `name`).
    pub name_required_on_create: bool,
    /// The email a new user gets when the patch leaves the email as it is (a CCAI row keeps
    /// a matched user's spelling of the email but creates users with it).
    pub email_for_new_user: Option<String>,
    /// The record's name for the email field, for messages (`email`, `new_email`, `user_email`).
    pub email_field: &'static str,
    pub patch: UserPatch,
}

/// The fields a record changes. `Keep`/`None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub email: Patch<String>,
    pub external_id: Patch<String>,
    pub user_name: Patch<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub agent_number: Patch<String>,
    pub location: Patch<String>,
    pub max_chat_limit: Patch<u32>,
    pub max_chat_limit_enabled: Option<bool>,
    pub roles: Vec<(String, bool)>,
    pub teams: Vec<(String, bool)>,
    pub deactivated: Option<bool>,
    pub phone: Patch<String>,
    pub alias: Patch<String>,
    pub support_role: Option<SupportRole>,
    pub custom_role_id: Patch<u64>,
    pub organization_id: Patch<u64>,
    pub organization_name: Patch<String>,
    pub identities: Option<Vec<Identity>>,
    pub details: Patch<String>,
    pub notes: Patch<String>,
    pub tags: Option<Vec<String>>,
    pub time_zone: Patch<String>,
    pub locale: Patch<String>,
    pub verified: Option<bool>,
    /// Merged into the user's custom fields; a `null` value removes the key.
    pub user_fields: BTreeMap<String, serde_json::Value>,
    pub active_type: Option<ActiveType>,
    pub account_expires: Patch<String>,
    pub password_hash: Option<String>,
    pub enable_change_password: Option<bool>,
    pub next_login_change_password: Option<bool>,
    pub group_ids: Option<Vec<String>>,
    pub description: Patch<String>,
}

impl UserPatch {
    /// Sets first and last name from a full name.
    pub fn set_name(&mut self, name: &str) {
        let (first, last) = split_name(name);
        self.first_name = Some(first);
        self.last_name = Some(last);
    }

    /// The keys the patched user will hold that the patch itself sets.
    pub fn keys(&self) -> Vec<UserKey> {
        let mut keys = Vec::new();
        if let Patch::Set(email) = &self.email {
            keys.push(UserKey::email(email));
        }
        if let Patch::Set(external_id) = &self.external_id {
            keys.push(UserKey::external_id(external_id));
        }
        if let Patch::Set(user_name) = &self.user_name {
            keys.push(UserKey::user_name(user_name));
        }
        keys
    }

    /// Applies the patch to a user (its keys included).
    pub fn apply(&self, user: &mut User, now: Timestamp) {
        user.email = self.email.apply(user.email.take());
        user.external_id = self.external_id.apply(user.external_id.take());
        user.user_name = self.user_name.apply(user.user_name.take());
        if let Some(first) = &self.first_name {
            user.first_name.clone_from(first);
        }
        if let Some(last) = &self.last_name {
            user.last_name.clone_from(last);
        }
        user.agent_number = self.agent_number.apply(user.agent_number.take());
        user.location = self.location.apply(user.location.take());
        user.max_chat_limit = self.max_chat_limit.apply(user.max_chat_limit);
        if let Some(enabled) = self.max_chat_limit_enabled {
            user.max_chat_limit_enabled = enabled;
        }
        apply_memberships(&mut user.roles, &self.roles);
        apply_memberships(&mut user.teams, &self.teams);
        match self.deactivated {
            Some(false) => user.deactivated_at = None,
            Some(true) => user.deactivated_at = user.deactivated_at.or(Some(now)),
            None => {}
        }
        user.phone = self.phone.apply(user.phone.take());
        user.alias = self.alias.apply(user.alias.take());

        let support = &mut user.support;
        if let Some(role) = self.support_role {
            support.role = role;
        }
        support.custom_role_id = self.custom_role_id.apply(support.custom_role_id);
        support.organization_id = self.organization_id.apply(support.organization_id);
        support.organization_name = self
            .organization_name
            .apply(support.organization_name.take());
        if let Some(identities) = &self.identities {
            support.identities.clone_from(identities);
        }
        support.details = self.details.apply(support.details.take());
        support.notes = self.notes.apply(support.notes.take());
        if let Some(tags) = &self.tags {
            support.tags.clone_from(tags);
        }
        support.time_zone = self.time_zone.apply(support.time_zone.take());
        support.locale = self.locale.apply(support.locale.take());
        if let Some(verified) = self.verified {
            support.verified = verified;
        }
        for (key, value) in &self.user_fields {
            if value.is_null() {
                support.user_fields.remove(key);
            } else {
                support.user_fields.insert(key.clone(), value.clone());
            }
        }

        let account = &mut user.workspace;
        if let Some(active_type) = self.active_type {
            account.active_type = Some(active_type);
        }
        account.account_expires = self.account_expires.apply(account.account_expires.take());
        if let Some(hash) = &self.password_hash {
            account.password_hash = Some(hash.clone());
        }
        if let Some(allowed) = self.enable_change_password {
            account.enable_change_password = Some(allowed);
        }
        if let Some(required) = self.next_login_change_password {
            account.next_login_change_password = Some(required);
        }
        if let Some(groups) = &self.group_ids {
            account.group_ids.clone_from(groups);
        }
        account.description = self.description.apply(account.description.take());
        user.updated_at = now;
    }
}

fn apply_memberships(held: &mut Vec<String>, changes: &[(String, bool)]) {
    for (name, granted) in changes {
        let position = held.iter().position(|h| h == name);
        match (granted, position) {
            (true, None) => held.push(name.clone()),
            (false, Some(at)) => {
                held.remove(at);
            }
            _ => {}
        }
    }
    held.sort();
}

impl UserRow {
    /// The CCAI row as a command: matched by email (or, for a rename applied before, by the
    /// new email, with a warning); a row with `new_email` only updates.
    pub fn into_command(self) -> UserCommand {
        let mut keys = vec![UserKey::email(&self.email)];
        let (intent, email, email_field) = match self.new_email {
            Some(new_email) if UserKey::email(&new_email) != keys[0] => {
                keys.push(UserKey::email(&new_email));
                (Intent::Update, Patch::Set(new_email), "new_email")
            }
            Some(new_email) => (Intent::Upsert, Patch::Set(new_email), "email"),
            None => (Intent::Upsert, Patch::Keep, "email"),
        };
        UserCommand {
            intent,
            target: Target::Keys(keys),
            target_field: "email",
            fallback_warning: true,
            name_required_on_create: false,
            email_for_new_user: Some(self.email),
            email_field,
            patch: UserPatch {
                email,
                first_name: Some(self.first_name),
                last_name: Some(self.last_name),
                agent_number: self.agent_number,
                location: self.location,
                max_chat_limit: self.max_chat_limit,
                max_chat_limit_enabled: self.max_chat_limit_enabled,
                roles: self.roles,
                teams: self.teams,
                deactivated: self.status.map(|status| status == UserStatus::Inactive),
                ..UserPatch::default()
            },
        }
    }
}

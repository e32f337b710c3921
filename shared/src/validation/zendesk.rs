//! The rules of a Zendesk user record (`users/*_many`), turning it into a [`UserCommand`].

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::command::{Intent, Target, UserCommand, UserPatch};
use super::fields::{valid_email, Fields};
use super::row::{clip, has_control_characters, kind, string_of, Kind, RawRecord};
use super::{Patch, RowError, MAX_EMAIL_CHARS};
use crate::model::{Identity, JobKind, SupportRole, UserId, UserKey};

/// The fields a Zendesk record may set (plus `id`, which names the user to update or delete).
const FIELDS: &[&str] = &[
    "id",
    "name",
    "email",
    "external_id",
    "role",
    "custom_role_id",
    "organization_id",
    "organization",
    "identities",
    "phone",
    "alias",
    "details",
    "notes",
    "tags",
    "time_zone",
    "locale",
    "verified",
    "suspended",
    "user_fields",
];

/// Read-only fields of a Zendesk user: a client may send back a user it read; they are ignored.
const READ_ONLY: &[&str] = &[
    "url",
    "created_at",
    "updated_at",
    "active",
    "last_login_at",
    "photo",
    "shared",
    "shared_agent",
    "role_type",
    "iana_time_zone",
    "locale_id",
    "two_factor_auth_enabled",
    "result_type",
];

/// Identity types Zendesk knows.
const IDENTITY_TYPES: &[&str] = &[
    "email",
    "twitter",
    "facebook",
    "google",
    "phone_number",
    "agent_forwarding",
    "any_channel",
    "foreign",
    "sdk",
    "messaging",
];

const MAX_TEXT_CHARS: usize = 255;
const MAX_LONG_TEXT_CHARS: usize = 4_000;
const MAX_PHONE_CHARS: usize = 50;
const MAX_TAGS: usize = 100;
const MAX_IDENTITIES: usize = 50;
const MAX_USER_FIELDS: usize = 100;

/// Judges one Zendesk user record of a job of `kind` (one of the Zendesk kinds).
pub fn zendesk_command(kind: JobKind, bytes: &[u8]) -> Result<UserCommand, Vec<RowError>> {
    let mut fields = Fields::read(bytes, FIELDS, READ_ONLY)?;
    let id = match fields.positive_integer("id") {
        Patch::Set(id) => Some(id as UserId),
        _ => None,
    };
    let external_id = fields.identifier("external_id", MAX_TEXT_CHARS);
    let addressing = addressing(kind, &mut fields, id, &external_id)?;
    if kind == JobKind::DestroyMany {
        fields.finish()?;
        return Ok(addressing.command(UserPatch::default()));
    }
    let patch = user_patch(kind, &mut fields, &addressing, external_id);
    fields.finish()?;
    Ok(addressing.command(patch))
}

/// What a record asks for and how it names its user, by the kind of its job.
struct Addressing {
    intent: Intent,
    target: Target,
    target_field: &'static str,
    name_required_on_create: bool,
}

impl Addressing {
    fn command(self, patch: UserPatch) -> UserCommand {
        UserCommand {
            intent: self.intent,
            target: self.target,
            target_field: self.target_field,
            fallback_warning: false,
            name_required_on_create: self.name_required_on_create,
            email_for_new_user: None,
            email_field: "email",
            patch,
        }
    }

    /// Whether the user is found by its external id (which the record then does not change).
    fn by_external_id(&self) -> bool {
        let one_key = matches!(&self.target, Target::Keys(keys) if keys.len() == 1);
        self.target_field == "external_id" && one_key
    }
}

/// Creations are matched by email or external id and must not name an id; upserts likewise,
/// and a user they create needs a name; updates and deletions name an id or an external id.
fn addressing(
    kind: JobKind,
    fields: &mut Fields<'_>,
    id: Option<UserId>,
    external_id: &Patch<String>,
) -> Result<Addressing, Vec<RowError>> {
    let addressed = |intent, target, target_field, name_required_on_create| Addressing {
        intent,
        target,
        target_field,
        name_required_on_create,
    };
    Ok(match kind {
        JobKind::CreateMany => {
            if id.is_some() {
                fields.fail(
                    "id",
                    "id is assigned by the server; leave it out".to_owned(),
                );
            }
            let target = lookup_keys(fields, external_id);
            addressed(Intent::Create, target, "email", false)
        }
        JobKind::CreateOrUpdateMany => {
            let target = lookup_keys(fields, external_id);
            addressed(Intent::Upsert, target, "email", true)
        }
        JobKind::UpdateMany | JobKind::DestroyMany => {
            let intent = if kind == JobKind::DestroyMany {
                Intent::Delete
            } else {
                Intent::Update
            };
            match (id, external_id) {
                (Some(id), _) => addressed(intent, Target::Id(id), "id", false),
                (None, Patch::Set(external)) => {
                    let keys = vec![UserKey::external_id(external)];
                    addressed(intent, Target::Keys(keys), "external_id", false)
                }
                _ => {
                    fields.fail(
                        "id",
                        "each user must have an id or an external_id".to_owned(),
                    );
                    addressed(intent, Target::Keys(Vec::new()), "id", false)
                }
            }
        }
        other => {
            return Err(vec![RowError::record(format!(
                "a {} job has no Zendesk records",
                other.as_str()
            ))])
        }
    })
}

/// The fields a creating or updating record sets.
fn user_patch(
    kind: JobKind,
    fields: &mut Fields<'_>,
    addressing: &Addressing,
    external_id: Patch<String>,
) -> UserPatch {
    let mut patch = UserPatch::default();
    name(kind, fields, &mut patch);
    patch.email = fields.email("email", MAX_EMAIL_CHARS);
    // Matching by external id does not change it; naming one for a user found by id sets it.
    patch.external_id = if addressing.by_external_id() && matches!(external_id, Patch::Set(_)) {
        Patch::Keep
    } else {
        external_id
    };
    patch.support_role = support_role(fields);
    patch.custom_role_id = fields.positive_integer("custom_role_id");
    patch.organization_id = fields.positive_integer("organization_id");
    patch.organization_name = organization(fields);
    patch.identities = identities(fields);
    patch.phone = phone(fields);
    patch.alias = fields.text("alias", MAX_TEXT_CHARS);
    patch.details = fields.text("details", MAX_LONG_TEXT_CHARS);
    patch.notes = fields.text("notes", MAX_LONG_TEXT_CHARS);
    patch.tags = fields.string_list("tags", MAX_TAGS, 100);
    patch.time_zone = fields.text("time_zone", 100);
    patch.locale = fields.text("locale", 20);
    patch.verified = fields.boolean("verified");
    patch.deactivated = fields.boolean("suspended");
    patch.user_fields = user_fields(fields);
    patch
}

/// `name`: required to create; an update may leave it out but not empty it.
fn name(kind: JobKind, fields: &mut Fields<'_>, patch: &mut UserPatch) {
    match kind {
        JobKind::CreateMany => {
            if let Some(name) = fields.required_text("name", MAX_TEXT_CHARS) {
                patch.set_name(&name);
            }
        }
        _ => match fields.text("name", MAX_TEXT_CHARS) {
            Patch::Set(name) => patch.set_name(&name),
            Patch::Clear => fields.fail("name", "name must not be empty".to_owned()),
            Patch::Keep => {}
        },
    }
}

/// `role`: end-user, agent or admin, in any case; "" makes an end-user.
fn support_role(fields: &mut Fields<'_>) -> Option<SupportRole> {
    match fields.text("role", 20) {
        Patch::Set(role) => match SupportRole::parse(&role.to_lowercase()) {
            Some(role) => Some(role),
            None => {
                fields.fail(
                    "role",
                    format!(
                        "role '{}' is not one of end-user, agent, admin",
                        clip(&role)
                    ),
                );
                None
            }
        },
        Patch::Clear => Some(SupportRole::EndUser),
        Patch::Keep => None,
    }
}

/// A new or upserted user is matched by its email, else its external id.
fn lookup_keys(fields: &Fields<'_>, external_id: &Patch<String>) -> Target {
    let mut keys = Vec::new();
    if let Some(email) = fields
        .raw("email")
        .and_then(string_of)
        .filter(|email| valid_email(email.trim()))
    {
        keys.push(UserKey::email(&email));
    }
    if let Patch::Set(external) = external_id {
        keys.push(UserKey::external_id(external));
    }
    Target::Keys(keys)
}

/// `organization: {"name": …}`.
fn organization(fields: &mut Fields<'_>) -> Patch<String> {
    let Some(raw) = fields.raw("organization") else {
        return Patch::Keep;
    };
    let name = serde_json::from_str::<RawRecord>(raw.get())
        .ok()
        .and_then(|record| {
            record
                .entries
                .iter()
                .find(|(key, _)| key == "name")
                .and_then(|(_, value)| string_of(value))
                .map(|name| name.trim().to_owned())
        });
    match name {
        Some(name)
            if !name.is_empty()
                && name.chars().count() <= MAX_TEXT_CHARS
                && !has_control_characters(&name) =>
        {
            Patch::Set(name)
        }
        _ => {
            fields.fail(
                "organization",
                format!("organization must be an object with a name of 1 to {MAX_TEXT_CHARS} characters, without control characters"),
            );
            Patch::Keep
        }
    }
}

/// `identities: [{"type": …, "value": …}]`.
fn identities(fields: &mut Fields<'_>) -> Option<Vec<Identity>> {
    let raw = fields.raw("identities")?;
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        fields.fail(
            "identities",
            "identities must be an array of {\"type\", \"value\"} objects".to_owned(),
        );
        return None;
    };
    if items.len() > MAX_IDENTITIES {
        fields.fail(
            "identities",
            format!("identities must have at most {MAX_IDENTITIES} items"),
        );
        return None;
    }
    let mut identities = Vec::with_capacity(items.len());
    for (position, item) in items.iter().enumerate() {
        let entry = serde_json::from_str::<RawRecord>(item.get()).ok();
        let text = |name: &str| {
            entry.as_ref().and_then(|record| {
                record
                    .entries
                    .iter()
                    .find(|(key, _)| key == name)
                    .and_then(|(_, value)| string_of(value))
                    .map(|text| text.trim().to_owned())
            })
        };
        let (Some(kind), Some(value)) = (text("type"), text("value")) else {
            fields.fail(
                "identities",
                format!("identities[{position}] must have a string type and value"),
            );
            continue;
        };
        if !IDENTITY_TYPES.contains(&kind.as_str()) {
            fields.fail(
                "identities",
                format!(
                    "identities[{position}].type '{}' is not one of {}",
                    clip(&kind),
                    IDENTITY_TYPES.join(", ")
                ),
            );
        } else if value.is_empty()
            || value.chars().count() > MAX_TEXT_CHARS
            || has_control_characters(&value)
        {
            fields.fail(
                "identities",
                format!("identities[{position}].value must be 1 to {MAX_TEXT_CHARS} characters, without control characters"),
            );
        } else if kind == "email" && !valid_email(&value) {
            fields.fail(
                "identities",
                format!(
                    "identities[{position}].value must be a valid email address, got '{}'",
                    clip(&value)
                ),
            );
        } else {
            identities.push(Identity { kind, value });
        }
    }
    Some(identities)
}

fn phone(fields: &mut Fields<'_>) -> Patch<String> {
    match fields.identifier("phone", MAX_PHONE_CHARS) {
        Patch::Set(phone) => {
            let allowed = |c: char| c.is_ascii_digit() || " +-().xX".contains(c);
            if phone.chars().all(allowed) && phone.chars().any(|c| c.is_ascii_digit()) {
                Patch::Set(phone)
            } else {
                fields.fail(
                    "phone",
                    format!(
                        "phone must be digits with optional + - ( ) . x and spaces, got '{}'",
                        clip(&phone)
                    ),
                );
                Patch::Keep
            }
        }
        other => other,
    }
}

/// `user_fields`: an object of strings, numbers, booleans or null (null removes a value).
fn user_fields(fields: &mut Fields<'_>) -> BTreeMap<String, serde_json::Value> {
    let Some(raw) = fields.raw("user_fields") else {
        return BTreeMap::new();
    };
    let Ok(record) = serde_json::from_str::<RawRecord>(raw.get()) else {
        fields.fail("user_fields", "user_fields must be an object".to_owned());
        return BTreeMap::new();
    };
    if record.entries.len() > MAX_USER_FIELDS {
        fields.fail(
            "user_fields",
            format!("user_fields must have at most {MAX_USER_FIELDS} keys"),
        );
        return BTreeMap::new();
    }
    let mut values = BTreeMap::new();
    for (key, value) in &record.entries {
        let scalar = matches!(
            kind(value),
            Kind::Null | Kind::Bool | Kind::Number | Kind::String
        );
        let bad_text = string_of(value).is_some_and(|text| {
            text.chars().count() > MAX_LONG_TEXT_CHARS || has_control_characters(&text)
        });
        if key.is_empty() || key.chars().count() > 100 || has_control_characters(key) {
            fields.fail(
                "user_fields",
                "user_fields keys must be 1 to 100 characters, without control characters"
                    .to_owned(),
            );
        } else if !scalar || bad_text {
            fields.fail(
                "user_fields",
                format!(
                    "user_fields.{} must be a string (at most {MAX_LONG_TEXT_CHARS} characters, without control characters), a number, a boolean or null",
                    clip(key)
                ),
            );
        } else if let Ok(value) = serde_json::from_str(value.get()) {
            values.insert(key.to_string(), value);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(kind: JobKind, json: &str) -> Vec<String> {
        zendesk_command(kind, json.as_bytes())
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| format!("{}: {}", e.field.unwrap_or_default(), e.message))
            .collect()
    }

    #[test]
    fn a_full_user_becomes_a_create_command() {
        let command = zendesk_command(
            JobKind::CreateMany,
            br#"{"name":"Ada King Lovelace","email":"Ada@Example.com","external_id":42,"role":"Agent",
                "custom_role_id":7,"organization":{"name":"Analytical"},"identities":[{"type":"phone_number","value":"+44 1"}],
                "phone":"+44 20 7946 0000","alias":"Ada","tags":["vip"],"verified":true,"suspended":false,
                "user_fields":{"tier":"gold","seats":3},"url":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(command.intent, Intent::Create);
        assert_eq!(
            command.target,
            Target::Keys(vec![
                UserKey::email("ada@example.com"),
                UserKey::external_id("42")
            ])
        );
        assert_eq!(command.patch.first_name.as_deref(), Some("Ada King"));
        assert_eq!(command.patch.support_role, Some(SupportRole::Agent));
        assert_eq!(command.patch.external_id, Patch::Set("42".into()));
        assert_eq!(
            command.patch.organization_name,
            Patch::Set("Analytical".into())
        );
        assert_eq!(command.patch.deactivated, Some(false));
        assert_eq!(command.patch.user_fields.len(), 2);
    }

    #[test]
    fn every_problem_is_named() {
        let found = errors(
            JobKind::CreateMany,
            r#"{"email":"nope","role":"wizard","identities":[{"type":"pager","value":"1"}],"phone":"call me","colour":1}"#,
        );
        assert!(
            found.iter().any(|e| e.starts_with("colour: unknown field")),
            "{found:?}"
        );
        assert!(found
            .iter()
            .any(|e| e.starts_with("name: name is required")));
        assert!(found
            .iter()
            .any(|e| e.starts_with("email: email must be a valid email")));
        assert!(found
            .iter()
            .any(|e| e.contains("role 'wizard' is not one of")));
        assert!(found
            .iter()
            .any(|e| e.contains("identities[0].type 'pager'")));
        assert!(found.iter().any(|e| e.starts_with("phone:")));
    }

    #[test]
    fn updates_and_deletes_name_their_user() {
        let update = zendesk_command(
            JobKind::UpdateMany,
            br#"{"id":5,"external_id":"x9","notes":"n"}"#,
        )
        .unwrap();
        assert_eq!(update.target, Target::Id(5));
        assert_eq!(update.patch.external_id, Patch::Set("x9".into()));
        let by_external =
            zendesk_command(JobKind::DestroyMany, br#"{"external_id":"X9"}"#).unwrap();
        assert_eq!(by_external.intent, Intent::Delete);
        assert_eq!(
            by_external.target,
            Target::Keys(vec![UserKey::external_id("x9")])
        );
        assert!(errors(JobKind::UpdateMany, r#"{"name":"A"}"#)[0].contains("id or an external_id"));
        assert!(errors(JobKind::CreateMany, r#"{"id":3,"name":"A"}"#)[0]
            .contains("assigned by the server"));
    }
}

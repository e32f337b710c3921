//! The rules of a Huawei Workspace user record (`users/batch-create`, `users/batch-delete`),
//! turning it into a [`UserCommand`]. Field rules follow the service's API reference:
//! `CreateUserRequest` in `BatchCreateUsers`.

use super::command::{Intent, Target, UserCommand, UserPatch};
use super::fields::Fields;
use super::row::string_of;
use super::{Patch, RowError};
use crate::model::{ActiveType, JobKind, UserId, UserKey};

const FIELDS: &[&str] = &[
    "user_name",
    "user_email",
    "user_phone",
    "password",
    "password_hash",
    "active_type",
    "account_expires",
    "enable_change_password",
    "next_login_change_password",
    "group_ids",
    "description",
    "alias_name",
    "domain",
    "enterprise_project_id",
    "user_info_map",
];

pub const MAX_USER_NAME_CHARS: usize = 32;
pub const MAX_USER_EMAIL_CHARS: usize = 64;
pub const MAX_USER_PHONE_CHARS: usize = 20;
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=32;
pub const MAX_GROUP_IDS: usize = 5;
pub const MAX_DESCRIPTION_CHARS: usize = 255;
pub const MAX_ALIAS_CHARS: usize = 55;

/// Whether a record carries the initial password in clear (as a client sends it) or hashed
/// (as it is stored in the job's file, after [`hash_password`](crate::passwords)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordForm {
    Clear,
    Hashed,
}

/// `[a-zA-Z0-9]{1,32}|[a-zA-Z0-9][a-zA-Z0-9._-]{0,30}[a-zA-Z0-9-]`: letters, digits, `.`, `_`
/// and `-`, starting with a letter or digit and ending with a letter, digit or `-`.
fn valid_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    match bytes {
        [] => false,
        [only] => only.is_ascii_alphanumeric(),
        [first, middle @ .., last] => {
            bytes.len() <= MAX_USER_NAME_CHARS
                && first.is_ascii_alphanumeric()
                && middle.iter().all(inner)
                && (last.is_ascii_alphanumeric() || *last == b'-')
        }
    }
}

/// `yyyy-MM-ddTHH:mm:ssZ` or `yyyy-MM-ddTHH:mm:ss.SSSZ`.
fn valid_expiry(text: &str) -> bool {
    let shape = |pattern: &str| {
        text.len() == pattern.len()
            && text.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                b'9' => c.is_ascii_digit(),
                other => c == other,
            })
    };
    shape("9999-99-99T99:99:99Z") || shape("9999-99-99T99:99:99.999Z")
}

/// Judges one Huawei Workspace record of a job of `kind`.
pub fn workspace_command(
    kind: JobKind,
    bytes: &[u8],
    form: PasswordForm,
) -> Result<UserCommand, Vec<RowError>> {
    match kind {
        JobKind::WorkspaceCreate => create_command(bytes, form),
        JobKind::WorkspaceDelete => delete_command(bytes),
        other => Err(vec![RowError::record(format!(
            "a {} job has no Workspace records",
            other.as_str()
        ))]),
    }
}

/// A deletion record: `{"user_id": "…"}`.
fn delete_command(bytes: &[u8]) -> Result<UserCommand, Vec<RowError>> {
    let mut fields = Fields::read(bytes, &["user_id"], &[])?;
    let id = match fields.identifier("user_id", 20) {
        Patch::Set(id) => id.parse::<UserId>().ok(),
        _ => None,
    };
    if id.is_none() && fields.errors.is_empty() {
        fields.fail("user_id", "user_id must be a user id".to_owned());
    }
    fields.finish()?;
    Ok(UserCommand {
        intent: Intent::Delete,
        target: Target::Id(id.unwrap_or_default()),
        target_field: "user_id",
        fallback_warning: false,
        name_required_on_create: false,
        email_for_new_user: None,
        email_field: "user_email",
        patch: UserPatch::default(),
    })
}

fn create_command(bytes: &[u8], form: PasswordForm) -> Result<UserCommand, Vec<RowError>> {
    let mut fields = Fields::read(bytes, FIELDS, &[])?;
    let mut patch = UserPatch::default();

    let user_name = user_name(&mut fields);
    if let Some(name) = &user_name {
        patch.user_name = Patch::Set(name.clone());
    }
    patch.email = fields.email("user_email", MAX_USER_EMAIL_CHARS);
    patch.phone = phone(&mut fields);
    let active_type = active_type(&mut fields);
    patch.active_type = Some(active_type);

    let has_password = match form {
        PasswordForm::Clear => clear_password(&mut fields),
        PasswordForm::Hashed => {
            patch.password_hash = password_hash(&mut fields);
            patch.password_hash.is_some()
        }
    };
    require_activation_means(&mut fields, active_type, has_password, &patch);

    patch.account_expires = account_expires(&mut fields);
    patch.enable_change_password = fields.boolean("enable_change_password");
    patch.next_login_change_password = fields.boolean("next_login_change_password");
    patch.group_ids = group_ids(&mut fields);
    patch.description = fields.text("description", MAX_DESCRIPTION_CHARS);
    patch.alias = fields.text("alias_name", MAX_ALIAS_CHARS);
    for field in ["domain", "enterprise_project_id", "user_info_map"] {
        fields.text(field, 255);
    }
    fields.finish()?;

    let mut keys = Vec::with_capacity(2);
    keys.extend(user_name.as_deref().map(UserKey::user_name));
    Ok(UserCommand {
        intent: Intent::Create,
        target: Target::Keys(keys),
        target_field: "user_name",
        fallback_warning: false,
        name_required_on_create: false,
        email_for_new_user: None,
        email_field: "user_email",
        patch,
    })
}

/// `user_name`, required: `None` when it is missing or breaks a rule.
fn user_name(fields: &mut Fields<'_>) -> Option<String> {
    let name = fields.required_text("user_name", usize::MAX)?;
    if name.chars().count() > MAX_USER_NAME_CHARS {
        fields.fail(
            "user_name",
            format!("user_name must be at most {MAX_USER_NAME_CHARS} characters"),
        );
        None
    } else if !valid_user_name(&name) {
        fields.fail(
            "user_name",
            "user_name must be letters, digits, '.', '_' or '-', starting with a letter or digit and not ending with '.' or '_'".to_owned(),
        );
        None
    } else {
        Some(name)
    }
}

fn phone(fields: &mut Fields<'_>) -> Patch<String> {
    match fields.text("user_phone", MAX_USER_PHONE_CHARS) {
        Patch::Set(phone)
            if !phone
                .chars()
                .all(|c| c.is_ascii_digit() || c == '+' || c == '-') =>
        {
            fields.fail(
                "user_phone",
                "user_phone must be digits with an optional leading + and dashes".to_owned(),
            );
            Patch::Keep
        }
        other => other,
    }
}

/// `active_type`: `USER_ACTIVATE` when absent.
fn active_type(fields: &mut Fields<'_>) -> ActiveType {
    match fields.text("active_type", 50) {
        Patch::Set(text) if text == "USER_ACTIVATE" => ActiveType::UserActivate,
        Patch::Set(text) if text == "ADMIN_ACTIVATE" => ActiveType::AdminActivate,
        Patch::Keep | Patch::Clear => ActiveType::UserActivate,
        Patch::Set(_) => {
            fields.fail(
                "active_type",
                "active_type must be USER_ACTIVATE or ADMIN_ACTIVATE".to_owned(),
            );
            ActiveType::UserActivate
        }
    }
}

/// The clear `password` of a client's record: whether there is one.
fn clear_password(fields: &mut Fields<'_>) -> bool {
    if fields.has("password_hash") {
        fields.fail("password_hash", "unknown field 'password_hash'".to_owned());
    }
    // The value is never quoted: only its length is judged. It is stored (hashed) as
    // sent, so surrounding spaces are refused rather than trimmed.
    let padded = fields
        .raw("password")
        .and_then(string_of)
        .is_some_and(|text| text.trim() != text);
    if padded {
        fields.fail(
            "password",
            "password must not begin or end with spaces".to_owned(),
        );
    }
    match fields.text("password", usize::MAX) {
        Patch::Set(password) => {
            let chars = password.chars().count();
            if !PASSWORD_CHARS.contains(&chars) {
                fields.fail(
                    "password",
                    format!(
                        "password must be {} to {} characters",
                        PASSWORD_CHARS.start(),
                        PASSWORD_CHARS.end()
                    ),
                );
            }
            true
        }
        Patch::Clear | Patch::Keep => false,
    }
}

/// The `password_hash` of a stored record, which carries no clear password.
fn password_hash(fields: &mut Fields<'_>) -> Option<String> {
    if fields.has("password") {
        fields.fail(
            "password",
            "a stored record carries no clear password".to_owned(),
        );
    }
    match fields.text("password_hash", 512) {
        Patch::Set(hash) => Some(hash),
        _ => None,
    }
}

/// What the activation needs: the initial password for an administrator's activation, an
/// email or phone to send the activation to for the user's own.
fn require_activation_means(
    fields: &mut Fields<'_>,
    active_type: ActiveType,
    has_password: bool,
    patch: &UserPatch,
) {
    match active_type {
        ActiveType::AdminActivate if !has_password => fields.fail(
            "password",
            "password is required when active_type is ADMIN_ACTIVATE".to_owned(),
        ),
        ActiveType::UserActivate
            if !matches!(patch.email, Patch::Set(_)) && !matches!(patch.phone, Patch::Set(_)) =>
        {
            fields.fail(
                "user_email",
                "user_email or user_phone is required when active_type is USER_ACTIVATE".to_owned(),
            )
        }
        _ => {}
    }
}

fn account_expires(fields: &mut Fields<'_>) -> Patch<String> {
    match fields.text("account_expires", 55) {
        Patch::Set(text) if text == "0" || valid_expiry(&text) => Patch::Set(text),
        Patch::Set(_) => {
            fields.fail(
                "account_expires",
                "account_expires must be \"0\" (never) or yyyy-MM-ddTHH:mm:ssZ or yyyy-MM-ddTHH:mm:ss.SSSZ".to_owned(),
            );
            Patch::Keep
        }
        other => other,
    }
}

fn group_ids(fields: &mut Fields<'_>) -> Option<Vec<String>> {
    let groups = fields.string_list("group_ids", MAX_GROUP_IDS, 55)?;
    if groups.is_empty() {
        fields.fail(
            "group_ids",
            format!("group_ids must have 1 to {MAX_GROUP_IDS} items"),
        );
        return None;
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(json: &str) -> Vec<String> {
        workspace_command(
            JobKind::WorkspaceCreate,
            json.as_bytes(),
            PasswordForm::Clear,
        )
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| format!("{}: {}", e.field.unwrap_or_default(), e.message))
        .collect()
    }

    #[test]
    fn accepts_the_documented_example_and_admin_activation() {
        assert!(errors(r#"{"user_name":"abc","user_email":"xxx@mail.com"}"#).is_empty());
        assert!(errors(
            r#"{"user_name":"j.doe-1","active_type":"ADMIN_ACTIVATE","password":"Secret#2024","group_ids":["g1"],"account_expires":"2030-01-01T00:00:00.000Z"}"#
        )
        .is_empty());
    }

    #[test]
    fn every_rule_of_the_spec_is_checked() {
        let long = "a".repeat(33);
        for (json, expected) in [
            (
                format!(r#"{{"user_name":"{long}","user_phone":"1"}}"#),
                "user_name: user_name must be at most 32",
            ),
            (
                r#"{"user_name":"bad name","user_phone":"1"}"#.to_owned(),
                "user_name: user_name must be letters",
            ),
            (
                r#"{"user_name":"x_","user_phone":"1"}"#.to_owned(),
                "user_name: user_name must be letters",
            ),
            (
                format!(
                    r#"{{"user_name":"a","user_email":"{}@x.io"}}"#,
                    "e".repeat(60)
                ),
                "user_email: user_email must be at most 64",
            ),
            (
                r#"{"user_name":"a","user_phone":"123456789012345678901"}"#.to_owned(),
                "user_phone: user_phone must be at most 20",
            ),
            (
                r#"{"user_name":"a","active_type":"ADMIN_ACTIVATE"}"#.to_owned(),
                "password: password is required",
            ),
            (
                r#"{"user_name":"a","active_type":"ADMIN_ACTIVATE","password":"short"}"#.to_owned(),
                "password: password must be 8 to 32",
            ),
            (
                r#"{"user_name":"a","active_type":"SELF"}"#.to_owned(),
                "active_type: active_type must be",
            ),
            (
                r#"{"user_name":"a"}"#.to_owned(),
                "user_email: user_email or user_phone is required",
            ),
            (
                r#"{"user_name":"a","user_phone":"1","account_expires":"tomorrow"}"#.to_owned(),
                "account_expires:",
            ),
            (
                r#"{"user_name":"a","user_phone":"1","group_ids":[]}"#.to_owned(),
                "group_ids: group_ids must have 1 to 5",
            ),
            (
                r#"{"user_name":"a","user_phone":"1","group_ids":["1","2","3","4","5","6"]}"#
                    .to_owned(),
                "group_ids: group_ids must have at most 5",
            ),
            (
                format!(
                    r#"{{"user_name":"a","user_phone":"1","description":"{}"}}"#,
                    "d".repeat(256)
                ),
                "description: description must be at most 255",
            ),
            (
                format!(
                    r#"{{"user_name":"a","user_phone":"1","alias_name":"{}"}}"#,
                    "d".repeat(56)
                ),
                "alias_name: alias_name must be at most 55",
            ),
        ] {
            let found = errors(&json);
            assert!(
                found.iter().any(|e| e.starts_with(expected)),
                "{json}: {found:?}"
            );
        }
    }

    #[test]
    fn a_password_with_surrounding_spaces_is_refused() {
        for password in ["   ", " Secret#2024", "Secret#2024 "] {
            let record = format!(
                r#"{{"user_name":"a","active_type":"USER_ACTIVATE","password":"{password}"}}"#
            );
            assert!(
                errors(&record)
                    .iter()
                    .any(|error| error == "password: password must not begin or end with spaces"),
                "{password:?}"
            );
        }
    }

    #[test]
    fn a_password_is_never_quoted() {
        let found =
            errors(r#"{"user_name":"a","active_type":"ADMIN_ACTIVATE","password":"hunter2"}"#);
        assert!(found.iter().all(|e| !e.contains("hunter2")), "{found:?}");
        let stored = workspace_command(
            JobKind::WorkspaceCreate,
            br#"{"user_name":"a","active_type":"ADMIN_ACTIVATE","password_hash":"$argon2id$x"}"#,
            PasswordForm::Hashed,
        )
        .unwrap();
        assert_eq!(stored.patch.password_hash.as_deref(), Some("$argon2id$x"));
    }
}

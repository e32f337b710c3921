//! Validation of one user record.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    column_of, FIELDS, MAX_AGENT_NUMBER_CHARS, MAX_EMAIL_CHARS, MAX_NAME_CHARS, READ_ONLY_FIELDS,
};
use crate::model::{email_key, TenantSettings};

/// What a tenant's configuration allows, prepared for fast look-ups.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    roles: HashMap<String, String>,
    teams: HashMap<String, String>,
    locations: HashMap<String, String>,
    location_list: String,
    max_chat_limit: u32,
}

impl ValidationContext {
    pub fn new(settings: &TenantSettings) -> ValidationContext {
        let index = |names: &[String]| {
            names
                .iter()
                .map(|name| (name.to_lowercase(), name.clone()))
                .collect::<HashMap<_, _>>()
        };
        ValidationContext {
            roles: index(&settings.roles),
            teams: index(&settings.teams),
            locations: index(&settings.locations),
            location_list: settings.locations.join(", "),
            max_chat_limit: settings.max_chat_limit,
        }
    }
}

/// A change to an optional field: absent or `null` keeps it, `""` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> Patch<T> {
    pub fn apply(&self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(value) => Some(value.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Inactive,
}

/// A valid user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub email: String,
    pub email_key: String,
    pub new_email: Option<String>,
    pub agent_number: Patch<String>,
    pub first_name: String,
    pub last_name: String,
    /// `None` keeps the current status (new users are active).
    pub status: Option<UserStatus>,
    pub location: Patch<String>,
    pub max_chat_limit: Patch<u32>,
    pub max_chat_limit_enabled: Option<bool>,
    /// (role name in the tenant's spelling, granted) — `value` 1 grants, 0 revokes.
    pub roles: Vec<(String, bool)>,
    pub teams: Vec<(String, bool)>,
}

impl UserRow {
    pub fn new_email_key(&self) -> Option<String> {
        self.new_email.as_deref().map(email_key)
    }
}

/// One problem with one field (or the whole record when `field` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: Option<String>,
    pub column: Option<u32>,
    pub message: String,
}

impl RowError {
    pub(super) fn field(field: &str, message: String) -> RowError {
        RowError {
            field: Some(field.to_owned()),
            column: column_of(field),
            message,
        }
    }

    pub(super) fn record(message: String) -> RowError {
        RowError {
            field: None,
            column: None,
            message,
        }
    }
}

/// The record's fields, as raw JSON, in file order.
pub(super) struct RawRecord<'a> {
    pub(super) entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RawRecord<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::with_capacity(FIELDS.len());
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(RawRecord { entries })
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// The kind of a raw JSON value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

pub(super) fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

pub(super) fn kind_name(raw: &RawValue) -> &'static str {
    match kind(raw) {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Number => "a number",
        // JSON allows a \u escape of half a surrogate pair; such a string is not text.
        Kind::String if string_of(raw).is_none() => {
            "a string with an unpaired \\u surrogate escape"
        }
        Kind::String => "a string",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

pub(super) fn string_of<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    if kind(raw) == Kind::String {
        serde_json::from_str::<Cow<'a, str>>(raw.get()).ok()
    } else {
        None
    }
}

/// Text holding control characters other than tab and line breaks (NUL, escape sequences,
/// …): invisible, and cut short or mangled by the systems a user record is passed on to.
pub(super) fn has_control_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Collects the errors of one record.
struct Checker<'c> {
    context: &'c ValidationContext,
    errors: Vec<RowError>,
}

impl Checker<'_> {
    /// The record's values in the template's order of fields; a field given twice, or one
    /// the template does not have (but for the read-only ones), is an error.
    fn by_column<'r>(&mut self, record: &RawRecord<'r>) -> [Option<&'r RawValue>; FIELDS.len()] {
        let mut fields: [Option<&RawValue>; FIELDS.len()] = [None; FIELDS.len()];
        for (key, raw) in &record.entries {
            match FIELDS.iter().position(|field| *field == key.as_ref()) {
                Some(index) if fields[index].is_some() => {
                    self.fail(
                        FIELDS[index],
                        format!("{} appears more than once", FIELDS[index]),
                    );
                }
                Some(index) => fields[index] = Some(*raw),
                None if READ_ONLY_FIELDS.contains(&key.as_ref()) => {}
                None => self.errors.push(RowError {
                    field: Some(clip(key).into_owned()),
                    column: None,
                    message: format!(
                        "unknown field '{}'; the fields are {}",
                        clip(key),
                        FIELDS.join(", ")
                    ),
                }),
            }
        }
        fields
    }

    /// Judges every field: the email key (when the email is valid) and the row, or every
    /// error found.
    fn user_row(
        mut self,
        fields: [Option<&RawValue>; FIELDS.len()],
    ) -> (Option<String>, Result<UserRow, Vec<RowError>>) {
        let [email, new_email, agent_number, first_name, last_name, status, location, max_chat_limit, max_chat_limit_enabled, roles, teams] =
            fields;
        let email = self
            .required_text("email", email, MAX_EMAIL_CHARS * 4)
            .and_then(|text| self.email("email", &text));
        let new_email = match self.optional_text("new_email", new_email, MAX_EMAIL_CHARS * 4) {
            Patch::Set(text) => self.email("new_email", &text),
            Patch::Keep | Patch::Clear => None,
        };
        let agent_number = self.optional_text("agent_number", agent_number, MAX_AGENT_NUMBER_CHARS);
        let first_name = self.required_text("first_name", first_name, MAX_NAME_CHARS);
        let last_name = self.required_text("last_name", last_name, MAX_NAME_CHARS);
        let status = self.status(status);
        let location = self.location(location);
        let max_chat_limit = self.small_integer(
            "max_chat_limit",
            max_chat_limit,
            1,
            self.context.max_chat_limit,
        );
        let max_chat_limit_enabled =
            match self.small_integer("max_chat_limit_enabled", max_chat_limit_enabled, 0, 1) {
                Patch::Set(value) => Some(value == 1),
                Patch::Keep | Patch::Clear => None,
            };
        let roles = self.memberships("roles", roles);
        let teams = self.memberships("teams", teams);

        let key = email.as_deref().map(email_key);
        let result = match (email, first_name, last_name) {
            (Some(email), Some(first_name), Some(last_name)) if self.errors.is_empty() => {
                Ok(UserRow {
                    email_key: email_key(&email),
                    email,
                    new_email,
                    agent_number,
                    first_name,
                    last_name,
                    status,
                    location,
                    max_chat_limit,
                    max_chat_limit_enabled,
                    roles,
                    teams,
                })
            }
            _ => Err(self.errors),
        };
        (key, result)
    }

    fn fail(&mut self, field: &str, message: String) {
        self.errors.push(RowError::field(field, message));
    }

    /// A required, non-empty string of at most `max` characters.
    fn required_text(&mut self, field: &str, raw: Option<&RawValue>, max: usize) -> Option<String> {
        let Some(raw) = raw else {
            self.fail(field, format!("{field} is required"));
            return None;
        };
        match string_of(raw) {
            None => {
                self.fail(
                    field,
                    format!("{field} must be a string, not {}", kind_name(raw)),
                );
                None
            }
            Some(text) if text.trim().is_empty() => {
                self.fail(field, format!("{field} must not be empty"));
                None
            }
            Some(text) => self.bounded(field, text.trim(), max),
        }
    }

    fn bounded(&mut self, field: &str, text: &str, max: usize) -> Option<String> {
        if text.chars().count() > max {
            self.fail(field, format!("{field} must be at most {max} characters"));
            None
        } else if has_control_characters(text) {
            self.fail(
                field,
                format!("{field} must not contain control characters"),
            );
            None
        } else {
            Some(text.to_owned())
        }
    }

    /// An optional string: absent/null keeps, "" clears.
    fn optional_text(&mut self, field: &str, raw: Option<&RawValue>, max: usize) -> Patch<String> {
        match raw {
            None => Patch::Keep,
            Some(raw) if kind(raw) == Kind::Null => Patch::Keep,
            Some(raw) => match string_of(raw) {
                None => {
                    self.fail(
                        field,
                        format!("{field} must be a string, not {}", kind_name(raw)),
                    );
                    Patch::Keep
                }
                Some(text) if text.trim().is_empty() => Patch::Clear,
                Some(text) => self
                    .bounded(field, text.trim(), max)
                    .map_or(Patch::Keep, Patch::Set),
            },
        }
    }

    fn email(&mut self, field: &str, text: &str) -> Option<String> {
        let text = text.trim();
        if text.chars().count() > MAX_EMAIL_CHARS {
            self.fail(
                field,
                format!("{field} must be at most {MAX_EMAIL_CHARS} characters"),
            );
            None
        } else if !email_address::EmailAddress::is_valid(text) || !text.contains('.') {
            self.fail(
                field,
                format!(
                    "{field} must be a valid email address, got '{}'",
                    clip(text)
                ),
            );
            None
        } else {
            Some(text.to_owned())
        }
    }

    fn status(&mut self, raw: Option<&RawValue>) -> Option<UserStatus> {
        let raw = raw?;
        if kind(raw) == Kind::Null {
            return None;
        }
        match string_of(raw).as_deref().map(str::trim) {
            Some("") => None,
            Some(text) if text.eq_ignore_ascii_case("active") => Some(UserStatus::Active),
            Some(text) if text.eq_ignore_ascii_case("inactive") => Some(UserStatus::Inactive),
            _ => {
                self.fail(
                    "status",
                    "status must be Active, Inactive or empty".to_owned(),
                );
                None
            }
        }
    }

    fn location(&mut self, raw: Option<&RawValue>) -> Patch<String> {
        match self.optional_text("location", raw, MAX_NAME_CHARS) {
            Patch::Set(name) => match self.context.locations.get(&name.to_lowercase()) {
                Some(canonical) => Patch::Set(canonical.clone()),
                None => {
                    let known = self.context.location_list.clone();
                    self.fail(
                        "location",
                        format!(
                            "location '{}' is not a location of this tenant (known: {known})",
                            clip(&name)
                        ),
                    );
                    Patch::Keep
                }
            },
            other => other,
        }
    }

    /// An integer field given as a number or a string of digits; "" clears.
    fn small_integer(
        &mut self,
        field: &str,
        raw: Option<&RawValue>,
        min: u32,
        max: u32,
    ) -> Patch<u32> {
        let Some(raw) = raw else { return Patch::Keep };
        let parsed = match kind(raw) {
            Kind::Null => return Patch::Keep,
            Kind::Number => serde_json::from_str::<u32>(raw.get()).ok(),
            Kind::String => match string_of(raw).as_deref().map(str::trim) {
                Some("") => return Patch::Clear,
                Some(text) => text.parse::<u32>().ok(),
                None => None,
            },
            _ => None,
        };
        match parsed {
            Some(value) if (min..=max).contains(&value) => Patch::Set(value),
            _ if min == 0 && max == 1 => {
                self.fail(field, format!("{field} must be 0, 1 or empty"));
                Patch::Keep
            }
            _ => {
                self.fail(
                    field,
                    format!("{field} must be an integer from {min} to {max}, or empty"),
                );
                Patch::Keep
            }
        }
    }

    /// `roles` / `teams`: an array of `{"name": …, "value": 0 | 1 | "" | null}`.
    fn memberships(&mut self, field: &str, raw: Option<&RawValue>) -> Vec<(String, bool)> {
        let Some(raw) = raw else { return Vec::new() };
        if kind(raw) == Kind::Null {
            return Vec::new();
        }
        let singular = if field == "roles" { "role" } else { "team" };
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            self.fail(
                field,
                format!("{field} must be an array of {{\"name\", \"value\"}} objects"),
            );
            return Vec::new();
        };
        let mut chosen: Vec<(String, bool)> = Vec::new();
        for (position, item) in items.iter().enumerate() {
            let Some((canonical, granted)) = self.membership(field, singular, position, item)
            else {
                continue;
            };
            if chosen.iter().any(|(existing, _)| *existing == canonical) {
                self.fail(
                    field,
                    format!("{singular} '{canonical}' appears more than once in {field}"),
                );
                continue;
            }
            if let Some(granted) = granted {
                chosen.push((canonical, granted));
            }
        }
        chosen
    }

    /// One entry of `roles` / `teams`: the role or team in the tenant's spelling, and whether
    /// it is granted (`None`: kept as it is); `None` when the entry is wrong.
    fn membership(
        &mut self,
        field: &str,
        singular: &str,
        position: usize,
        item: &RawValue,
    ) -> Option<(String, Option<bool>)> {
        let Ok(entry) = serde_json::from_str::<RawRecord>(item.get()) else {
            self.fail(
                field,
                format!("{field}[{position}] must be an object with name and value"),
            );
            return None;
        };
        let (name, value) = self.name_and_value(field, position, &entry);
        let Some(name) = name
            .and_then(string_of)
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
        else {
            self.fail(
                field,
                format!("{field}[{position}].name is required and must be a string"),
            );
            return None;
        };
        let known = if field == "roles" {
            &self.context.roles
        } else {
            &self.context.teams
        };
        let Some(canonical) = known.get(&name.to_lowercase()).cloned() else {
            self.fail(
                field,
                format!(
                    "{field}[{position}].name '{}' is not a {singular} of this tenant",
                    clip(&name)
                ),
            );
            return None;
        };
        match self.small_integer_value(value) {
            Ok(granted) => Some((canonical, granted)),
            Err(()) => {
                self.fail(
                    field,
                    format!("{field}[{position}].value must be 0, 1 or empty"),
                );
                None
            }
        }
    }

    /// The `name` and `value` of a membership entry; any other key is an error.
    fn name_and_value<'r>(
        &mut self,
        field: &str,
        position: usize,
        entry: &RawRecord<'r>,
    ) -> (Option<&'r RawValue>, Option<&'r RawValue>) {
        let mut name = None;
        let mut value = None;
        for (key, raw) in &entry.entries {
            match key.as_ref() {
                "name" => name = Some(*raw),
                "value" => value = Some(*raw),
                other => self.fail(
                    field,
                    format!("{field}[{position}] has an unknown key '{}'", clip(other)),
                ),
            }
        }
        (name, value)
    }

    /// A membership value: 1 grants, 0 revokes, empty keeps.
    fn small_integer_value(&self, raw: Option<&RawValue>) -> Result<Option<bool>, ()> {
        let Some(raw) = raw else { return Ok(None) };
        let text = match kind(raw) {
            Kind::Null => return Ok(None),
            Kind::Number => raw.get().to_owned(),
            Kind::String => string_of(raw).map(|t| t.trim().to_owned()).ok_or(())?,
            _ => return Err(()),
        };
        match text.as_str() {
            "" => Ok(None),
            "0" => Ok(Some(false)),
            "1" => Ok(Some(true)),
            _ => Err(()),
        }
    }
}

/// Shortens a client-supplied value before it is quoted in a message.
pub(super) fn clip(text: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{}…", text.chars().take(MAX).collect::<String>()))
    }
}

/// Validates one user record (the bytes of one array element) against the tenant's settings.
/// Returns every problem of the record, not just the first.
pub fn validate_row(bytes: &[u8], context: &ValidationContext) -> Result<UserRow, Vec<RowError>> {
    check_row(bytes, context).1
}

/// Like [`validate_row`], also giving the record's email key whenever its email is valid, even
/// if other fields are not (so duplicates are found among invalid records too).
pub fn check_row(
    bytes: &[u8],
    context: &ValidationContext,
) -> (Option<String>, Result<UserRow, Vec<RowError>>) {
    let record = match parse_record(bytes) {
        Ok(record) => record,
        Err(error) => return (None, Err(vec![error])),
    };
    let mut checker = Checker {
        context,
        errors: Vec::new(),
    };
    let fields = checker.by_column(&record);
    checker.user_row(fields)
}

/// A record's fields, as raw JSON, or why it is no record at all (not a JSON object).
fn parse_record(bytes: &[u8]) -> Result<RawRecord<'_>, RowError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        let found = match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b'n') => "null",
            Some(b't' | b'f') => "a boolean",
            _ => "a number",
        };
        return Err(RowError::record(format!(
            "each user must be a JSON object, not {found}"
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| RowError::record(format!("the user is not valid JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;

    fn context() -> ValidationContext {
        ValidationContext::new(&TenantSettings::with_defaults(
            TenantId::parse("acme").unwrap(),
        ))
    }

    fn errors(json: &str) -> Vec<(Option<u32>, String)> {
        validate_row(json.as_bytes(), &context())
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.column, e.message))
            .collect()
    }

    #[test]
    fn accepts_a_full_record() {
        let row = validate_row(
            br#"{"email":"Jane.Doe@Example.com","new_email":"","agent_number":"7","first_name":"Jane",
                 "last_name":"Doe","status":"Inactive","location":"remote","max_chat_limit":"3",
                 "max_chat_limit_enabled":1,"roles":[{"name":"agent","value":1},{"name":"Admin","value":""}],
                 "teams":[{"name":"Sales","value":0}],"id":12}"#,
            &context(),
        )
        .unwrap();
        assert_eq!(row.email_key, "jane.doe@example.com");
        assert_eq!(row.status, Some(UserStatus::Inactive));
        assert_eq!(row.location, Patch::Set("Remote".to_owned()));
        assert_eq!(row.max_chat_limit, Patch::Set(3));
        assert_eq!(row.max_chat_limit_enabled, Some(true));
        assert_eq!(row.roles, vec![("Agent".to_owned(), true)]);
        assert_eq!(row.teams, vec![("Sales".to_owned(), false)]);
    }

    #[test]
    fn reports_every_problem_of_a_record_with_its_column() {
        let found = errors(
            r#"{"email":"nope","first_name":"","last_name":5,"status":"Gone","location":"Mars",
                "max_chat_limit":99,"max_chat_limit_enabled":2,"roles":[{"name":"Pilot","value":1}],
                "teams":"Sales","colour":"red"}"#,
        );
        let columns: Vec<Option<u32>> = found.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            columns,
            vec![
                None,
                Some(1),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                Some(9),
                Some(10),
                Some(11)
            ]
        );
        assert!(found[0].1.contains("unknown field 'colour'"));
        assert!(found[1].1.contains("valid email"));
        assert!(found[8].1.contains("'Pilot' is not a role"));
    }

    #[test]
    fn rejects_records_that_are_not_objects_or_not_json() {
        assert!(errors("[1]")[0].1.contains("must be a JSON object"));
        assert!(errors(r#""x""#)[0].1.contains("must be a JSON object"));
        assert!(errors(r#"{"email": }"#)[0].1.contains("not valid JSON"));
        assert!(
            errors(r#"{"email":"a@b.co","email":"c@d.co","first_name":"A","last_name":"B"}"#)[0]
                .1
                .contains("more than once")
        );
    }

    #[test]
    fn requires_email_and_names() {
        let found = errors("{}");
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|(_, m)| m.ends_with("is required")));
    }
}

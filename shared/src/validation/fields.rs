//! Typed reading of one JSON record's fields, collecting every problem: the building block of
//! the Zendesk and Huawei Workspace record rules.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::row::{clip, has_control_characters, kind, kind_name, string_of, Kind, RawRecord};
use super::{Patch, RowError};

/// A record's fields by name, and the problems found so far.
pub(super) struct Fields<'a> {
    values: HashMap<&'static str, &'a RawValue>,
    pub(super) errors: Vec<RowError>,
}

impl<'a> Fields<'a> {
    /// Reads a record. `known` fields are kept; `ignored` ones (read-only fields a client may
    /// echo back) are skipped; anything else is an error naming the field. `Err` when the
    /// record is not a JSON object at all.
    pub(super) fn read(
        bytes: &'a [u8],
        known: &[&'static str],
        ignored: &[&str],
    ) -> Result<Fields<'a>, Vec<RowError>> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return Err(vec![RowError::record(
                "each user must be a JSON object".to_owned(),
            )]);
        }
        let record: RawRecord<'a> = serde_json::from_slice(bytes).map_err(|error| {
            vec![RowError::record(format!(
                "the user is not valid JSON: {error}"
            ))]
        })?;
        let mut fields = Fields {
            values: HashMap::with_capacity(record.entries.len()),
            errors: Vec::new(),
        };
        for (key, raw) in record.entries {
            match known.iter().find(|name| **name == key.as_ref()) {
                Some(name) if fields.values.contains_key(name) => {
                    fields.fail(name, format!("{name} appears more than once"));
                }
                Some(name) => {
                    fields.values.insert(name, raw);
                }
                None if ignored.contains(&key.as_ref()) => {}
                None => fields.errors.push(RowError {
                    field: Some(clip(&key).into_owned()),
                    column: None,
                    message: format!(
                        "unknown field '{}'; the fields are {}",
                        clip(&key),
                        known.join(", ")
                    ),
                }),
            }
        }
        Ok(fields)
    }

    pub(super) fn fail(&mut self, field: &str, message: String) {
        self.errors.push(RowError {
            field: Some(field.to_owned()),
            column: None,
            message,
        });
    }

    pub(super) fn has(&self, field: &str) -> bool {
        self.values
            .get(field)
            .is_some_and(|raw| kind(raw) != Kind::Null)
    }

    pub(super) fn raw(&self, field: &str) -> Option<&'a RawValue> {
        self.values
            .get(field)
            .copied()
            .filter(|raw| kind(raw) != Kind::Null)
    }

    /// An optional string of at most `max` characters: absent or null keeps, "" clears.
    pub(super) fn text(&mut self, field: &str, max: usize) -> Patch<String> {
        let Some(raw) = self.raw(field) else {
            return Patch::Keep;
        };
        match string_of(raw) {
            None => {
                self.fail(
                    field,
                    format!("{field} must be a string, not {}", kind_name(raw)),
                );
                Patch::Keep
            }
            Some(text) if text.trim().is_empty() => Patch::Clear,
            Some(text) if text.trim().chars().count() > max => {
                self.fail(field, format!("{field} must be at most {max} characters"));
                Patch::Keep
            }
            Some(text) if has_control_characters(&text) => {
                self.fail(
                    field,
                    format!("{field} must not contain control characters"),
                );
                Patch::Keep
            }
            Some(text) => Patch::Set(text.trim().to_owned()),
        }
    }

    /// A required, non-empty string of at most `max` characters.
    pub(super) fn required_text(&mut self, field: &str, max: usize) -> Option<String> {
        match self.text(field, max) {
            Patch::Set(text) => Some(text),
            Patch::Clear => {
                self.fail(field, format!("{field} must not be empty"));
                None
            }
            Patch::Keep => {
                if !self.has(field) {
                    self.fail(field, format!("{field} is required"));
                }
                None
            }
        }
    }

    /// A string, or a number taken as its digits (identifiers clients send either way).
    pub(super) fn identifier(&mut self, field: &str, max: usize) -> Patch<String> {
        match self.raw(field) {
            Some(raw) if kind(raw) == Kind::Number => {
                let digits = raw.get().to_owned();
                if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= max {
                    Patch::Set(digits)
                } else {
                    self.fail(field, format!("{field} must be a string or a whole number"));
                    Patch::Keep
                }
            }
            _ => self.text(field, max),
        }
    }

    /// An email address of at most `max` characters: absent or null keeps, "" clears.
    pub(super) fn email(&mut self, field: &str, max: usize) -> Patch<String> {
        match self.text(field, max) {
            Patch::Set(text) => match valid_email(&text) {
                true => Patch::Set(text),
                false => {
                    self.fail(
                        field,
                        format!(
                            "{field} must be a valid email address, got '{}'",
                            clip(&text)
                        ),
                    );
                    Patch::Keep
                }
            },
            other => other,
        }
    }

    pub(super) fn boolean(&mut self, field: &str) -> Option<bool> {
        let raw = self.raw(field)?;
        match raw.get() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.fail(
                    field,
                    format!("{field} must be true or false, not {}", kind_name(raw)),
                );
                None
            }
        }
    }

    /// A positive whole number (or a string of digits); "" clears.
    pub(super) fn positive_integer(&mut self, field: &str) -> Patch<u64> {
        let Some(raw) = self.raw(field) else {
            return Patch::Keep;
        };
        let parsed = match kind(raw) {
            Kind::Number => raw.get().parse::<u64>().ok(),
            Kind::String => match string_of(raw).as_deref().map(str::trim) {
                Some("") => return Patch::Clear,
                Some(text) => text.parse::<u64>().ok(),
                None => None,
            },
            _ => None,
        };
        match parsed {
            Some(value) if value > 0 => Patch::Set(value),
            _ => {
                self.fail(field, format!("{field} must be a positive whole number"));
                Patch::Keep
            }
        }
    }

    /// An array of at most `max_items` strings of 1 to `max_chars` characters each.
    pub(super) fn string_list(
        &mut self,
        field: &str,
        max_items: usize,
        max_chars: usize,
    ) -> Option<Vec<String>> {
        let raw = self.raw(field)?;
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            self.fail(field, format!("{field} must be an array of strings"));
            return None;
        };
        if items.len() > max_items {
            self.fail(
                field,
                format!("{field} must have at most {max_items} items"),
            );
            return None;
        }
        let mut values = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            match string_of(item) {
                Some(text)
                    if !text.trim().is_empty()
                        && text.trim().chars().count() <= max_chars
                        && !has_control_characters(&text) =>
                {
                    values.push(text.trim().to_owned());
                }
                _ => {
                    self.fail(
                        field,
                        format!(
                            "{field}[{position}] must be a string of 1 to {max_chars} characters, without control characters"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(values)
    }

    /// Ends reading: the errors, when there are any.
    pub(super) fn finish(self) -> Result<(), Vec<RowError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// A syntactically valid address with a dotted domain.
pub(super) fn valid_email(text: &str) -> bool {
    email_address::EmailAddress::is_valid(text)
        && text.rsplit('@').next().is_some_and(|d| d.contains('.'))
}

//! Case tables kept as data under `tests/corpus/`: JSON Lines files, one case a line, whose text
//! may name values the test has only at run time as `{name}` (see [`Vars`]).

use std::path::PathBuf;

use serde_json::Value;

/// A path under `tests/corpus/`.
pub fn corpus(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(relative)
}

/// The cases of a JSON Lines file under `tests/corpus/`: one JSON object a line (blank lines
/// are skipped).
pub fn load(relative: &str) -> Vec<Value> {
    let path = corpus(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(at, line)| {
            let case: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{relative}:{}: {error}", at + 1));
            assert!(case.is_object(), "{relative}:{}: not an object", at + 1);
            case
        })
        .collect()
}

/// The `name` of a case, for messages.
pub fn name(case: &Value) -> &str {
    case["name"].as_str().unwrap_or("(unnamed case)")
}

/// Named values that a case's text refers to as `{name}`; `{name.2}` is an item of a list and
/// `{name.key}` a field of an object. Braces that name no value are left as they are.
#[derive(Clone, Default)]
pub struct Vars(Vec<(String, Value)>);

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    /// These values and `name` (which hides an earlier value of that name).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Vars {
        self.0.insert(0, (name.to_owned(), value.into()));
        self
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut value = &self.0.iter().find(|(name, _)| name == first)?.1;
        for part in parts {
            value = match value {
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                Value::Object(fields) => fields.get(part)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// `text` with every `{name}` replaced by its value: a string as it is, a list joined with
    /// commas, anything else as JSON.
    pub fn fill(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let named = after
                .find('}')
                .and_then(|close| Some((close, self.get(&after[..close])?)));
            match named {
                Some((close, value)) => {
                    out.push_str(&plain(value));
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// A JSON template filled in: a string that is one whole `{name}` becomes the value itself
    /// (a number stays a number), other strings are filled as text, `{"$text": text}` is the
    /// text filled (a number as a string), and `{"$each": "list", "as": template}` becomes the
    /// list of the template filled for each item of the list, the item being `{it}`.
    pub fn fill_json(&self, template: &Value) -> Value {
        match template {
            Value::String(text) => {
                let whole = text
                    .strip_prefix('{')
                    .and_then(|inner| inner.strip_suffix('}'))
                    .filter(|inner| !inner.contains(['{', '}']))
                    .and_then(|inner| self.get(inner));
                match whole {
                    Some(value) => value.clone(),
                    None => Value::String(self.fill(text)),
                }
            }
            Value::Array(items) => items.iter().map(|item| self.fill_json(item)).collect(),
            Value::Object(fields) if fields.contains_key("$text") => {
                Value::String(self.fill(fields["$text"].as_str().expect("$text is a text")))
            }
            Value::Object(fields) => match fields.get("$each").and_then(Value::as_str) {
                Some(list) => {
                    let items = self.get(list).and_then(Value::as_array);
                    let items = items.unwrap_or_else(|| panic!("no list {list}"));
                    let each = &fields["as"];
                    items
                        .iter()
                        .map(|item| self.clone().with("it", item.clone()).fill_json(each))
                        .collect()
                }
                None => Value::Object(
                    fields
                        .iter()
                        .map(|(key, value)| (key.clone(), self.fill_json(value)))
                        .collect(),
                ),
            },
            other => other.clone(),
        }
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

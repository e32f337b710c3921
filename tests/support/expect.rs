//! Expected answers kept as data: what a JSON body must hold, as `tests/corpus/lambda_day/README.md`
//! describes it (`body`, `fields`, `types`, `lengths`).

use serde_json::Value;

/// Holds `body` to `expect`: the whole `body`, `fields` (`{pointer: value}`), `types`
/// (`{pointer: "string" | "array"}`) and `lengths` (`{pointer: n}` of arrays, `""` the body).
/// `what` names the case in a failure.
pub fn check_body(body: &Value, expect: &Value, what: &str) {
    if let Some(whole) = expect.get("body") {
        assert_eq!(body, whole, "{what}");
    }
    for (pointer, value) in table(expect, "fields") {
        assert_eq!(body.pointer(pointer), Some(value), "{pointer} of {what}");
    }
    for (pointer, kind) in table(expect, "types") {
        let found = body.pointer(pointer);
        let is = match kind.as_str() {
            Some("string") => found.is_some_and(Value::is_string),
            Some("array") => found.is_some_and(Value::is_array),
            _ => panic!("no type {kind}"),
        };
        assert!(is, "{pointer} is no {kind} in {what}");
    }
    for (pointer, length) in table(expect, "lengths") {
        let found = body.pointer(pointer).and_then(Value::as_array);
        let found = found.map(|items| items.len() as u64);
        assert_eq!(found, length.as_u64(), "length of {pointer} of {what}");
    }
}

/// The entries of the object `expect[name]` (none when there is none).
pub fn table<'a>(expect: &'a Value, name: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    expect[name].as_object().into_iter().flatten()
}

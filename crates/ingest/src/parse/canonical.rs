//! Canonical JSON (object keys sorted recursively by their UTF-8 bytes, no whitespace) and its
//! SHA-256, the identity of an alert that carries no id of its own.
//!
//! Written out by hand rather than relying on `serde_json::Map` ordering, which changes when any
//! crate in the build enables serde_json's `preserve_order` feature.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `v` as canonical JSON: keys sorted at every level, no insignificant whitespace, strings
/// escaped as serde_json escapes them, numbers as serde_json prints them.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Lower-case hex SHA-256 of [`canonical_json`].
pub fn canonical_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(v).as_bytes()))
}

fn write_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write(val, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_recursively_without_whitespace() {
        let a: Value = serde_json::from_str(
            r#"{ "b": 1, "a": { "z": [1, {"y": 2, "x": "é\n"}], "c": null } }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"z":[1,{"x":"é\n","y":2}]},"b":1}"#
        );
        let b: Value =
            serde_json::from_str(r#"{"a":{"c":null,"z":[1,{"x":"é\n","y":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_eq!(canonical_hash(&a).len(), 64);
        let c: Value =
            serde_json::from_str(r#"{"a":{"c":null,"z":[{"x":"é\n","y":2},1]},"b":1}"#).unwrap();
        assert_ne!(
            canonical_hash(&a),
            canonical_hash(&c),
            "array order is significant"
        );
    }
}

//! Casebridge's plain JSON alert: `{"rule_id", "title", "criticality"}` required; `account`,
//! `description`, `observed_at` (RFC 3339), `observables`, `source_id` optional.

use casebridge_domain::Criticality;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Item, Observables, ParsedAlert, RuleRef, canonical_hash, is_ip, json_kind};
use crate::format::AlertFormat;

const CRITICALITY_WORDS: &str = "critical, high, medium, low, informational";

/// A required non-empty string field, or the reason it is not one.
fn required_str(v: &Value, field: &str, errors: &mut Vec<String>) -> Option<String> {
    match v.get(field) {
        None | Some(Value::Null) => {
            errors.push(format!("`{field}` is required"));
            None
        }
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::String(_)) => {
            errors.push(format!("`{field}` must not be empty"));
            None
        }
        Some(other) => {
            errors.push(format!(
                "`{field}` must be a string, not {}",
                json_kind(other)
            ));
            None
        }
    }
}

/// An optional string field: absent/null → None; a non-string → an error naming it.
fn optional_str(v: &Value, field: &str, errors: &mut Vec<String>) -> Option<String> {
    match v.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(other) => {
            errors.push(format!(
                "`{field}` must be a string, not {}",
                json_kind(other)
            ));
            None
        }
    }
}

pub(super) fn parse(v: Value) -> Item {
    let mut errors = Vec::new();
    let rule_id = required_str(&v, "rule_id", &mut errors);
    let title = required_str(&v, "title", &mut errors);
    let criticality = match required_str(&v, "criticality", &mut errors) {
        Some(word) => match Criticality::parse(&word) {
            Some(c) => Some(c),
            None => {
                errors.push(format!(
                    "`criticality` {word:?} is not one of {CRITICALITY_WORDS}"
                ));
                None
            }
        },
        None => None,
    };
    let account = optional_str(&v, "account", &mut errors);
    let description = optional_str(&v, "description", &mut errors).unwrap_or_default();
    let observed_at = optional_str(&v, "observed_at", &mut errors).and_then(|s| {
        OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|e| {
                errors.push(format!(
                    "`observed_at` {s:?} is not an RFC 3339 date-time ({e})"
                ))
            })
            .ok()
    });
    let source_id = match v.get("source_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            errors.push(format!(
                "`source_id` must be a non-empty string, not {}",
                describe(other)
            ));
            None
        }
    };
    let observables = observables(&v, &mut errors);

    if !errors.is_empty() {
        return Item::Error(format!("invalid plain JSON alert: {}", errors.join("; ")));
    }
    let (Some(rule_id), Some(title), Some(criticality)) = (rule_id, title, criticality) else {
        unreachable!("a missing required field is always reported as an error");
    };
    let source_id = source_id.unwrap_or_else(|| canonical_hash(&v));
    Item::Alert(Box::new(ParsedAlert {
        format: AlertFormat::Json,
        account,
        source_id,
        rule: RuleRef {
            // An ad-hoc rule is titled by its first alert; the caller uses the catalogue rule's
            // title instead when `rule_id` is a catalogue rule.
            title: title.clone(),
            id: rule_id,
            level: None,
            logsource: None,
            tags: Vec::new(),
            adhoc_source: Some(AlertFormat::Json),
        },
        title,
        description,
        criticality: Some(criticality),
        observed_at,
        observables,
        raw: v,
    }))
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "an empty string",
        other => json_kind(other),
    }
}

/// `observables`: an array of `{"kind"|"type", "value"}` objects or of plain strings (an IP
/// address becomes kind `ip`, anything else kind `other`).
fn observables(v: &Value, errors: &mut Vec<String>) -> Vec<super::Observable> {
    let mut out = Observables::default();
    match v.get("observables") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => {
                        let kind = if is_ip(s.trim()) { "ip" } else { "other" };
                        out.push(kind, Some(s.clone()));
                    }
                    Value::Object(o) => {
                        let kind = o
                            .get("kind")
                            .or_else(|| o.get("type"))
                            .and_then(Value::as_str);
                        let value = super::text(o.get("value"));
                        match (kind.map(str::trim).filter(|k| !k.is_empty()), value) {
                            (Some(kind), Some(value)) => {
                                out.push(&kind.to_ascii_lowercase(), Some(value))
                            }
                            (None, _) => errors.push(format!(
                                "`observables[{i}]` needs a `kind` (or `type`) string"
                            )),
                            (_, None) => {
                                errors.push(format!("`observables[{i}]` needs a non-empty `value`"))
                            }
                        }
                    }
                    other => errors.push(format!(
                        "`observables[{i}]` must be an object {{kind, value}} or a string, not {}",
                        json_kind(other)
                    )),
                }
            }
        }
        Some(other) => errors.push(format!(
            "`observables` must be an array, not {}",
            json_kind(other)
        )),
    }
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        match parse(v) {
            Item::Error(e) => e,
            Item::Alert(a) => panic!("expected an error, got {a:?}"),
            Item::Skipped(r) => panic!("expected an error, got skipped {r}"),
        }
    }

    fn ok(v: Value) -> ParsedAlert {
        match parse(v) {
            Item::Alert(a) => *a,
            Item::Error(e) => panic!("expected an alert, got {e}"),
            Item::Skipped(r) => panic!("expected an alert, got skipped {r}"),
        }
    }

    #[test]
    fn each_missing_required_field_is_named() {
        let e = err(json!({}));
        for f in [
            "`rule_id` is required",
            "`title` is required",
            "`criticality` is required",
        ] {
            assert!(e.contains(f), "{e}");
        }
        let e = err(json!({"rule_id": "r", "title": "t"}));
        assert!(
            e.contains("`criticality` is required") && !e.contains("`title`"),
            "{e}"
        );
        let e = err(json!({"rule_id": "r", "criticality": "high"}));
        assert!(
            e.contains("`title` is required") && !e.contains("rule_id"),
            "{e}"
        );
        let e = err(json!({"title": "t", "criticality": "high"}));
        assert!(e.contains("`rule_id` is required"), "{e}");
    }

    #[test]
    fn each_invalid_field_is_named() {
        let base = json!({"rule_id": "r", "title": "t", "criticality": "high"});
        let with = |k: &str, val: Value| {
            let mut v = base.clone();
            v[k] = val;
            v
        };
        let cases = [
            (
                with("criticality", json!("severe")),
                "`criticality` \"severe\" is not one of critical, high",
            ),
            (
                with("criticality", json!(4)),
                "`criticality` must be a string, not number",
            ),
            (with("rule_id", json!("  ")), "`rule_id` must not be empty"),
            (
                with("title", json!(["x"])),
                "`title` must be a string, not array",
            ),
            (with("account", json!(7)), "`account` must be a string"),
            (
                with("description", json!({})),
                "`description` must be a string",
            ),
            (
                with("observed_at", json!("yesterday")),
                "`observed_at` \"yesterday\" is not an RFC 3339",
            ),
            (
                with("observed_at", json!(1700000000)),
                "`observed_at` must be a string",
            ),
            (
                with("source_id", json!("")),
                "`source_id` must be a non-empty string",
            ),
            (
                with("source_id", json!(true)),
                "`source_id` must be a non-empty string, not boolean",
            ),
            (
                with("observables", json!("1.2.3.4")),
                "`observables` must be an array",
            ),
            (
                with("observables", json!([{"value": "x"}])),
                "`observables[0]` needs a `kind`",
            ),
            (
                with("observables", json!(["a", {"kind": "ip"}])),
                "`observables[1]` needs a non-empty `value`",
            ),
            (
                with("observables", json!([1])),
                "`observables[0]` must be an object",
            ),
        ];
        for (v, want) in cases {
            let e = err(v);
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn a_valid_alert_with_every_field() {
        let a = ok(json!({
            "rule_id": "R-1", "title": " Suspicious login ", "criticality": "Critical",
            "account": "acc_1", "description": "d", "observed_at": "2024-05-01T10:00:00+02:00",
            "source_id": "evt-9",
            "observables": [{"kind": "IP", "value": "10.0.0.1"}, {"type": "user", "value": "bob"}, "10.0.0.2", "host-1", "host-1"]
        }));
        assert_eq!(a.rule.id, "R-1");
        assert_eq!(a.rule.adhoc_source, Some(AlertFormat::Json));
        assert_eq!(a.rule.level, None);
        assert_eq!(a.title, "Suspicious login");
        assert_eq!(a.criticality, Some(Criticality::Critical));
        assert_eq!(a.account.as_deref(), Some("acc_1"));
        assert_eq!(a.source_id, "evt-9");
        assert_eq!(a.observed_at.unwrap().unix_timestamp(), 1714550400);
        let obs: Vec<(&str, &str)> = a
            .observables
            .iter()
            .map(|o| (o.kind.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            obs,
            vec![
                ("ip", "10.0.0.1"),
                ("user", "bob"),
                ("ip", "10.0.0.2"),
                ("other", "host-1")
            ]
        );
    }

    #[test]
    fn without_source_id_the_identity_is_the_canonical_hash() {
        let a =
            ok(json!({"rule_id": "r", "title": "t", "criticality": "low", "x": {"b": 1, "a": 2}}));
        let b: Value = serde_json::from_str(
            r#"{"x":{"a":2,"b":1},"criticality":"low","title":"t","rule_id":"r"}"#,
        )
        .unwrap();
        assert_eq!(a.source_id, ok(b).source_id);
        assert_eq!(a.source_id.len(), 64);
        let c = ok(
            json!({"rule_id": "r", "title": "t", "criticality": "medium", "x": {"b": 1, "a": 2}}),
        );
        assert_ne!(a.source_id, c.source_id);
    }
}

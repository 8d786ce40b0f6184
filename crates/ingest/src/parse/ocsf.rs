//! OCSF findings. Detection Finding (2004) and Security Finding (2001, the deprecated class of
//! schema 1.0) open cases; the other finding classes are skipped with a reason.

use casebridge_domain::Criticality;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Item, Observables, ParsedAlert, RuleRef, canonical_hash, is_ip, text};
use crate::format::{AlertFormat, lookup};

const SECURITY_FINDING: i64 = 2001;
const DETECTION_FINDING: i64 = 2004;

fn class_name(uid: i64) -> Option<&'static str> {
    Some(match uid {
        2001 => "Security Finding",
        2002 => "Vulnerability Finding",
        2003 => "Compliance Finding",
        2004 => "Detection Finding",
        2005 => "Incident Finding",
        2006 => "Data Security Finding",
        2007 => "Application Security Posture Finding",
        _ => return None,
    })
}

/// Why this OCSF document opens no case, or `None` when its class does (2004, 2001) or it has no
/// integer `class_uid` at all (then the signature check reports it).
pub(super) fn skip_reason(v: &Value) -> Option<String> {
    let uid = v.get("class_uid")?.as_i64()?;
    if uid == DETECTION_FINDING || uid == SECURITY_FINDING {
        return None;
    }
    let name = class_name(uid)
        .map(str::to_string)
        .or_else(|| text(v.get("class_name")))
        .unwrap_or_else(|| "unknown class".to_string());
    Some(match uid {
        2002 | 2003 => format!(
            "OCSF class {uid} ({name}) opens no case: only Detection Finding (2004) and Security Finding (2001) do"
        ),
        _ => format!(
            "OCSF class {uid} ({name}) is not a finding class that opens a case: only Detection Finding (2004) and Security Finding (2001) do"
        ),
    })
}

/// OCSF `time` is epoch milliseconds; some producers (Okta, Prowler samples) put seconds there.
/// Values below 10^11 cannot be milliseconds of a plausible date (that is March 1973), so they
/// are read as seconds.
fn epoch(n: &Value) -> Option<OffsetDateTime> {
    let raw = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
    let nanos = if raw.abs() < 100_000_000_000 {
        i128::from(raw) * 1_000_000_000
    } else {
        i128::from(raw) * 1_000_000
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

fn observed_at(v: &Value) -> Option<OffsetDateTime> {
    v.get("time").and_then(epoch).or_else(|| {
        v.get("time_dt")
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    })
}

/// OCSF observable `type_id` → our observable kind; other types keep the observable's `name`.
fn kind_of(type_id: Option<i64>) -> Option<&'static str> {
    Some(match type_id? {
        1 => "hostname",
        2 => "ip",
        3 => "mac",
        4 | 21 => "user",
        5 | 22 => "email",
        6 | 23 => "url",
        7 | 24 => "file",
        8 => "hash",
        9 | 25 => "process",
        10 => "resource",
        26 => "geo_location",
        27 => "container",
        28 => "registry_key",
        _ => return None,
    })
}

pub(super) fn parse(v: Value) -> Item {
    if let Some(reason) = skip_reason(&v) {
        return Item::Skipped(reason);
    }
    if v.get("class_uid").and_then(Value::as_i64).is_none() {
        return Item::Error(format!(
            "OCSF `class_uid` must be an integer, not {}",
            v.get("class_uid").map_or("missing", super::json_kind)
        ));
    }
    // `finding_info` since OCSF 1.1; `finding` in 1.0.
    let finding = v
        .get("finding_info")
        .filter(|f| f.is_object())
        .or_else(|| v.get("finding").filter(|f| f.is_object()));
    let Some(finding) = finding else {
        return Item::Error(
            "OCSF finding lacks a `finding_info` (or older `finding`) object".into(),
        );
    };

    let finding_title = text(finding.get("title"));
    let message = text(v.get("message"));
    let product = text(lookup(&v, &["metadata", "product", "name"]))
        .or_else(|| text(lookup(&v, &["metadata", "product", "vendor_name"])))
        .unwrap_or_else(|| "OCSF".to_string());
    let Some(title) = finding_title.clone().or_else(|| message.clone()) else {
        return Item::Error("OCSF finding has no title: `finding_info.title` (or `finding.title`) and `message` are both missing".into());
    };
    let description = text(finding.get("desc")).or(message).unwrap_or_default();

    let analytic = finding.get("analytic");
    let analytic_uid = analytic.and_then(|a| text(a.get("uid")));
    let analytic_name = analytic.and_then(|a| text(a.get("name")));
    let rule = match (analytic_uid, analytic_name) {
        (Some(uid), name) => RuleRef {
            title: name.unwrap_or_else(|| uid.clone()),
            id: uid,
            ..adhoc()
        },
        (None, Some(name)) => RuleRef {
            id: name.clone(),
            title: name,
            ..adhoc()
        },
        (None, None) => RuleRef {
            id: format!("{product}: {title}"),
            title: title.clone(),
            ..adhoc()
        },
    };

    let criticality = v
        .get("severity_id")
        .and_then(Value::as_i64)
        .and_then(Criticality::from_ocsf_severity_id);
    let source_id = text(finding.get("uid")).unwrap_or_else(|| canonical_hash(&v));

    let mut obs = Observables::default();
    if let Some(items) = v.get("observables").and_then(Value::as_array) {
        for o in items {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("").trim();
            let value = text(o.get("value"));
            // Unfilled templates (Falco's sample repeats the field name as its value) say nothing.
            if value.as_deref() == Some(name) {
                continue;
            }
            let kind = kind_of(o.get("type_id").and_then(Value::as_i64))
                .map(str::to_string)
                .or_else(|| Some(name.to_string()).filter(|n| !n.is_empty()))
                .unwrap_or_else(|| "other".to_string());
            obs.push(&kind, value);
        }
    }
    obs.push("hostname", text(lookup(&v, &["device", "hostname"])));
    obs.push("ip", text(lookup(&v, &["device", "ip"])));
    if let Some(resources) = v.get("resources").and_then(Value::as_array) {
        for r in resources {
            match text(r.get("uid")) {
                Some(uid) if is_ip(&uid) => obs.push("ip", Some(uid)),
                uid => obs.push("resource", uid),
            }
        }
    }

    Item::Alert(Box::new(ParsedAlert {
        format: AlertFormat::Ocsf,
        account: None,
        source_id,
        rule,
        title,
        description,
        criticality,
        observed_at: observed_at(&v),
        observables: obs.into_vec(),
        raw: v,
    }))
}

fn adhoc() -> RuleRef {
    RuleRef {
        id: String::new(),
        title: String::new(),
        level: None,
        logsource: None,
        tags: Vec::new(),
        adhoc_source: Some(AlertFormat::Ocsf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn analytic_names_the_rule_and_time_in_seconds_or_ms() {
        let v = json!({"class_uid": 2004, "severity_id": 5, "time": 1700000000123_i64,
            "finding_info": {"uid": "f1", "title": "T", "analytic": {"uid": "A-1", "name": "Analytic One"}},
            "device": {"hostname": "h1", "ip": "10.1.1.1"}});
        let Item::Alert(a) = parse(v) else { panic!() };
        assert_eq!(
            (a.rule.id.as_str(), a.rule.title.as_str()),
            ("A-1", "Analytic One")
        );
        assert_eq!(a.criticality, Some(Criticality::Critical));
        assert_eq!(a.observed_at.unwrap().unix_timestamp(), 1_700_000_000);
        assert_eq!(a.observables.len(), 2);

        let v = json!({"class_uid": 2004, "time": 1700000000, "finding_info": {"title": "T", "analytic": {"name": "N"}}});
        let Item::Alert(a) = parse(v) else { panic!() };
        assert_eq!(a.rule.id, "N");
        assert_eq!(a.observed_at.unwrap().unix_timestamp(), 1_700_000_000);
        assert_eq!(a.source_id.len(), 64, "no uid: the canonical hash");
    }

    #[test]
    fn other_classes_are_skipped_with_their_name() {
        let r = skip_reason(&json!({"class_uid": 3002, "class_name": "Authentication"})).unwrap();
        assert!(
            r.contains("3002 (Authentication)") && r.contains("not a finding class"),
            "{r}"
        );
        let r = skip_reason(&json!({"class_uid": 2002})).unwrap();
        assert!(
            r.contains("Vulnerability Finding") && r.contains("opens no case"),
            "{r}"
        );
        assert_eq!(skip_reason(&json!({"class_uid": 2001})), None);
    }
}

//! Wazuh 4 alerts (`alerts.json` lines).

use casebridge_domain::Criticality;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::{Item, Observables, ParsedAlert, RuleRef, canonical_hash, text};
use crate::format::{AlertFormat, lookup};

/// Wazuh writes `2022-07-20T14:53:16.482+0000`: RFC 3339 but for the colon-less offset.
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory][offset_minute]"
        );
        OffsetDateTime::parse(s, fmt).ok()
    })
}

pub(super) fn parse(v: Value) -> Item {
    let Some(rule_id) = text(lookup(&v, &["rule", "id"])) else {
        return Item::Error("Wazuh `rule.id` must be a non-empty string or number".into());
    };
    let level_value = lookup(&v, &["rule", "level"]);
    let level = level_value.and_then(|l| {
        l.as_i64()
            .or_else(|| l.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let Some(criticality) = level.and_then(Criticality::from_wazuh_level) else {
        return Item::Error(format!(
            "Wazuh `rule.level` must be an integer 0–15, not {}",
            level_value.map_or_else(|| "missing".to_string(), Value::to_string)
        ));
    };
    let description = text(lookup(&v, &["rule", "description"]));
    let rule_title = description
        .clone()
        .unwrap_or_else(|| format!("Wazuh rule {rule_id}"));

    let mut tags: Vec<String> = Vec::new();
    if let Some(ids) = lookup(&v, &["rule", "mitre", "id"]).and_then(Value::as_array) {
        for id in ids.iter().filter_map(|i| text(Some(i))) {
            let tag = format!("attack.{}", id.to_ascii_lowercase());
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }

    let mut obs = Observables::default();
    obs.push("hostname", text(lookup(&v, &["agent", "name"])));
    obs.push("ip", text(lookup(&v, &["agent", "ip"])));
    obs.push("ip", text(lookup(&v, &["data", "srcip"])));
    obs.push("ip", text(lookup(&v, &["data", "dstip"])));
    obs.push("user", text(lookup(&v, &["data", "srcuser"])));
    obs.push("user", text(lookup(&v, &["data", "dstuser"])));
    obs.push("file", text(lookup(&v, &["syscheck", "path"])));
    for t in &tags {
        obs.push(
            "mitre_attack",
            Some(t.trim_start_matches("attack.").to_ascii_uppercase()),
        );
    }

    let full_log = text(v.get("full_log"));
    let source_id = text(v.get("id")).unwrap_or_else(|| canonical_hash(&v));
    let observed_at = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    let location = text(v.get("location"));
    let mut desc = format!(
        "Wazuh rule {rule_id} (level {}).",
        level.unwrap_or_default()
    );
    if let Some(loc) = location {
        desc.push_str(&format!(" Location: {loc}."));
    }
    if let Some(log) = full_log {
        desc.push_str(&format!("\n{}", super::truncate_chars(&log, 2000)));
    }

    Item::Alert(Box::new(ParsedAlert {
        format: AlertFormat::Wazuh,
        account: None,
        source_id,
        rule: RuleRef {
            id: format!("wazuh:{rule_id}"),
            title: rule_title.clone(),
            level: Some(criticality),
            logsource: None,
            tags,
            adhoc_source: Some(AlertFormat::Wazuh),
        },
        title: rule_title,
        description: desc,
        criticality: Some(criticality),
        observed_at,
        observables: obs.into_vec(),
        raw: v,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wazuh_timestamps_with_and_without_colon() {
        let a = parse_timestamp("2022-07-20T14:53:16.482+0000").unwrap();
        assert_eq!(a.unix_timestamp(), 1_658_328_796);
        assert_eq!(a.millisecond(), 482);
        let b = parse_timestamp("2022-07-20T16:53:16.482+0200").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_timestamp("2022-07-20T14:53:16+0000")
                .unwrap()
                .unix_timestamp(),
            1_658_328_796
        );
        assert_eq!(parse_timestamp("2022-07-20T14:53:16.482Z").unwrap(), a);
        assert_eq!(parse_timestamp("20 July"), None);
    }
}

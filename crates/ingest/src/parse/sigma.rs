//! Sigma regression records (`data/alerts/sigma-regression-alerts.jsonl`): a catalogue rule and
//! the Windows events that make it fire. One record is one alert whatever its event count.

use casebridge_domain::Criticality;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Item, Observables, ParsedAlert, RuleRef, is_ip, text, truncate_chars};
use crate::catalogue::Logsource;
use crate::format::{AlertFormat, lookup};

/// Longest command line kept as an observable (characters).
const MAX_COMMAND_LINE: usize = 256;

pub(super) fn parse(v: Value) -> Item {
    let Some(rule) = v.get("rule").filter(|r| r.is_object()) else {
        return Item::Error("Sigma record `rule` must be an object".into());
    };
    let Some(rule_id) = text(rule.get("id")) else {
        return Item::Error("Sigma record `rule.id` must be a non-empty string".into());
    };
    let Some(source_path) = text(v.get("source_path")) else {
        return Item::Error("Sigma record `source_path` must be a non-empty string".into());
    };
    let Some(events) = v.get("events").and_then(Value::as_array) else {
        return Item::Error("Sigma record `events` must be an array".into());
    };
    let title = text(rule.get("title")).unwrap_or_else(|| format!("Sigma rule {rule_id}"));
    let level = rule
        .get("level")
        .and_then(Value::as_str)
        .and_then(Criticality::parse);
    let logsource = rule
        .get("logsource")
        .filter(|l| l.is_object())
        .and_then(|l| serde_json::from_value::<Logsource>(l.clone()).ok());
    let tags: Vec<String> = rule
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|x| text(Some(x))).collect())
        .unwrap_or_default();

    let mut obs = Observables::default();
    let mut earliest: Option<OffsetDateTime> = None;
    for event in events {
        let Some(e) = event.get("Event") else {
            continue;
        };
        obs.push("hostname", text(lookup(e, &["System", "Computer"])));
        if let Some(t) = lookup(e, &["System", "TimeCreated", "#attributes", "SystemTime"])
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        {
            earliest = Some(earliest.map_or(t, |cur| cur.min(t)));
        }
        let Some(data) = e.get("EventData").filter(|d| d.is_object()) else {
            continue;
        };
        for key in ["User", "SubjectUserName", "TargetUserName"] {
            obs.push("user", text(data.get(key)).filter(|u| u != "-"));
        }
        obs.push("process", text(data.get("Image")));
        obs.push(
            "command_line",
            text(data.get("CommandLine")).map(|c| truncate_chars(&c, MAX_COMMAND_LINE)),
        );
        for key in ["SourceIp", "DestinationIp", "IpAddress"] {
            obs.push("ip", text(data.get(key)).filter(|ip| is_ip(ip)));
        }
    }

    let test_name =
        text(lookup(&v, &["regression_test", "name"])).unwrap_or_else(|| "regression test".into());
    let test_type = text(lookup(&v, &["regression_test", "type"]));
    let n = events.len();
    let description = format!(
        "Sigma rule \"{title}\" fired in its regression test \"{test_name}\"{} on {n} event{}. Source: {source_path}",
        test_type.map(|t| format!(" ({t})")).unwrap_or_default(),
        if n == 1 { "" } else { "s" },
    );

    Item::Alert(Box::new(ParsedAlert {
        format: AlertFormat::Sigma,
        account: None,
        source_id: source_path,
        rule: RuleRef {
            id: rule_id,
            title: title.clone(),
            level,
            logsource,
            tags,
            adhoc_source: None,
        },
        title,
        description,
        criticality: level,
        observed_at: earliest,
        observables: obs.into_vec(),
        raw: v,
    }))
}

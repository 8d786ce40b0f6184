//! Alert formats, their signatures (the fields that identify each), and detection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::parse::ParseError;

/// The alert formats ingest understands (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// An OCSF finding (Detection Finding 2004 or Security Finding 2001 open cases).
    Ocsf,
    /// A Wazuh 4 `alerts.json` alert.
    Wazuh,
    /// A Sigma regression record (`rule` + `events` + `source_path`).
    Sigma,
    /// Casebridge's plain JSON alert (`rule_id`, `title`, `criticality`).
    Json,
}

impl AlertFormat {
    pub const ALL: [AlertFormat; 4] = [Self::Ocsf, Self::Wazuh, Self::Sigma, Self::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ocsf => "ocsf",
            Self::Wazuh => "wazuh",
            Self::Sigma => "sigma",
            Self::Json => "json",
        }
    }

    /// The fields that identify a document of this format, as shown in hints and errors.
    pub fn signature(self) -> &'static str {
        match self {
            Self::Ocsf => "class_uid + finding_info|finding",
            Self::Wazuh => "rule.id + rule.level + agent|manager|decoder",
            Self::Sigma => "rule.id + events + source_path",
            Self::Json => "rule_id + title + criticality",
        }
    }

    /// The signature fields of this format that `v` lacks (empty = `v` has this format's shape).
    pub fn missing_fields(self, v: &Value) -> Vec<&'static str> {
        let has = |path: &[&str]| lookup(v, path).is_some_and(|x| !x.is_null());
        let mut missing = Vec::new();
        let mut need = |ok: bool, name: &'static str| {
            if !ok {
                missing.push(name);
            }
        };
        match self {
            Self::Ocsf => {
                need(has(&["class_uid"]), "class_uid");
                need(
                    has(&["finding_info"]) || has(&["finding"]),
                    "finding_info|finding",
                );
            }
            Self::Wazuh => {
                need(has(&["rule", "id"]), "rule.id");
                need(has(&["rule", "level"]), "rule.level");
                need(
                    has(&["agent"]) || has(&["manager"]) || has(&["decoder"]),
                    "agent|manager|decoder",
                );
            }
            Self::Sigma => {
                need(has(&["rule", "id"]), "rule.id");
                need(has(&["events"]), "events");
                need(has(&["source_path"]), "source_path");
            }
            Self::Json => {
                need(has(&["rule_id"]), "rule_id");
                need(has(&["title"]), "title");
                need(has(&["criticality"]), "criticality");
            }
        }
        missing
    }

    /// "ocsf (class_uid + finding_info|finding), wazuh (…), sigma (…), json (…)".
    pub fn accepted_list() -> String {
        Self::ALL
            .iter()
            .map(|f| format!("{} ({})", f.as_str(), f.signature()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for AlertFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertFormat {
    type Err = ParseError;

    /// Accepts `ocsf`, `wazuh`, `sigma`, `json` (case and surrounding space ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == t)
            .ok_or_else(|| ParseError::UnknownFormat {
                given: s.to_string(),
            })
    }
}

/// Follows a path of object keys.
pub(crate) fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.as_object()?.get(*key))
}

/// Detects the format of one alert document, trying Sigma regression record, OCSF, Wazuh and
/// plain JSON in that order (the most specific signature first). `None` if no signature fits.
pub fn detect_format(v: &Value) -> Option<AlertFormat> {
    if !v.is_object() {
        return None;
    }
    [
        AlertFormat::Sigma,
        AlertFormat::Ocsf,
        AlertFormat::Wazuh,
        AlertFormat::Json,
    ]
    .into_iter()
    .find(|f| f.missing_fields(v).is_empty())
}

/// The message for a document no signature fits: the accepted formats and, when one is close
/// (some of its signature fields present), what that one lacks.
pub(crate) fn undetected_hint(v: &Value) -> String {
    let mut msg = format!(
        "cannot tell the alert format; accepted: {}",
        AlertFormat::accepted_list()
    );
    if !v.is_object() {
        msg.push_str(&format!(
            " (each alert must be a JSON object, found {})",
            crate::parse::json_kind(v)
        ));
        return msg;
    }
    let closest = AlertFormat::ALL
        .into_iter()
        .map(|f| (f, f.missing_fields(v)))
        .filter(|(f, missing)| missing.len() < f.signature().split(" + ").count())
        .min_by_key(|(_, missing)| missing.len());
    if let Some((f, missing)) = closest {
        msg.push_str(&format!(
            "; closest is {f}, which lacks {}",
            missing.join(", ")
        ));
    }
    msg.push_str("; or pass the format explicitly");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip_and_unknown_lists_the_accepted() {
        for f in AlertFormat::ALL {
            assert_eq!(f.as_str().parse::<AlertFormat>().unwrap(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.as_str()));
        }
        assert_eq!(" OCSF ".parse::<AlertFormat>().unwrap(), AlertFormat::Ocsf);
        let e = "cef".parse::<AlertFormat>().unwrap_err().to_string();
        for name in ["cef", "ocsf", "wazuh", "sigma", "json"] {
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn detection_by_signature() {
        let sigma = json!({"rule": {"id": "x", "level": "high"}, "events": [], "source_path": "p"});
        let ocsf = json!({"class_uid": 2004, "finding_info": {"uid": "u"}});
        let wazuh = json!({"rule": {"id": "5712", "level": 10}, "agent": {"name": "a"}});
        let plain = json!({"rule_id": "r", "title": "t", "criticality": "low"});
        assert_eq!(detect_format(&sigma), Some(AlertFormat::Sigma));
        assert_eq!(detect_format(&ocsf), Some(AlertFormat::Ocsf));
        assert_eq!(detect_format(&wazuh), Some(AlertFormat::Wazuh));
        assert_eq!(detect_format(&plain), Some(AlertFormat::Json));
        assert_eq!(detect_format(&json!({"class_uid": 3002})), None);
        assert_eq!(detect_format(&json!([1])), None);

        let hint = undetected_hint(&json!({"rule_id": "r", "title": "t"}));
        assert!(
            hint.contains("closest is json, which lacks criticality"),
            "{hint}"
        );
        assert!(hint.contains("ocsf (class_uid"), "{hint}");
    }
}

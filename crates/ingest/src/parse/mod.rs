//! Alert parsing: a request body → one outcome per alert (an alert, a skip with its reason, or an
//! error naming what is wrong). Pure: no I/O, no store, no catalogue — the caller resolves rules
//! and criticality defaults.

mod canonical;
mod json;
mod ocsf;
mod sigma;
mod wazuh;

use casebridge_domain::Criticality;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub use canonical::{canonical_hash, canonical_json};

use crate::catalogue::Logsource;
use crate::format::{AlertFormat, detect_format, undetected_hint};

/// The longest NDJSON line accepted by default, in bytes (64 KiB, as Wazuh's own integrations).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// The most observables kept per alert; the rest stay in `raw`.
pub const MAX_OBSERVABLES: usize = 50;

/// The rule an alert was raised by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub id: String,
    pub title: String,
    /// The rule's own level when the source states one (Sigma `rule.level`, Wazuh `rule.level`).
    pub level: Option<Criticality>,
    pub logsource: Option<Logsource>,
    pub tags: Vec<String>,
    /// `Some(source)` when the rule is not a catalogue rule: an ad-hoc rule of that source
    /// (plain JSON rules are ad-hoc unless the caller finds `rule_id` in the catalogue).
    pub adhoc_source: Option<AlertFormat>,
}

/// Something an analyst can pivot on: a host, an IP, a user, a file, a process …
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Observable {
    pub kind: String,
    pub value: String,
}

/// One alert, parsed but not yet attributed or stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedAlert {
    pub format: AlertFormat,
    /// The plain JSON alert's `account`; `None` for every other format.
    pub account: Option<String>,
    /// The alert's identity within its account (DESIGN §6 "alert attribution and identity").
    pub source_id: String,
    pub rule: RuleRef,
    pub title: String,
    pub description: String,
    /// `None` = the source gave no criticality: take the rule's level, else medium (the caller,
    /// who knows the catalogue, resolves it).
    pub criticality: Option<Criticality>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub observed_at: Option<OffsetDateTime>,
    pub observables: Vec<Observable>,
    /// The alert document as received (one array element / one line).
    pub raw: Value,
}

/// What became of one alert of a body. `line` is the 1-based physical line (NDJSON) or the
/// 1-based element index (a JSON array; 1 for a single object).
// Most outcomes are alerts, so boxing the big variant would only add an allocation per alert.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum LineOutcome {
    Alert { line: usize, alert: ParsedAlert },
    Skipped { line: usize, reason: String },
    Error { line: usize, reason: String },
}

impl LineOutcome {
    pub fn line(&self) -> usize {
        match self {
            Self::Alert { line, .. } | Self::Skipped { line, .. } | Self::Error { line, .. } => {
                *line
            }
        }
    }

    pub fn alert(&self) -> Option<&ParsedAlert> {
        match self {
            Self::Alert { alert, .. } => Some(alert),
            _ => None,
        }
    }

    pub fn into_alert(self) -> Option<ParsedAlert> {
        match self {
            Self::Alert { alert, .. } => Some(alert),
            _ => None,
        }
    }
}

/// Problems with the body as a whole (per-alert problems are [`LineOutcome::Error`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "the body is empty: send one JSON alert, a JSON array of alerts, or NDJSON (one alert per line)"
    )]
    Empty,
    #[error(
        "the body is not JSON (line {line}, column {column}: {message}); send one JSON alert, a JSON array of alerts, or NDJSON (one alert per line)"
    )]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the body is a JSON {found}; send one JSON alert object, an array of them, or NDJSON")]
    NotAnAlert { found: &'static str },
    #[error("unknown alert format {given:?}; accepted: ocsf, wazuh, sigma, json")]
    UnknownFormat { given: String },
}

/// Options for [`parse_alerts_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// The longest NDJSON line accepted, in bytes (without its line break).
    pub max_line_bytes: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Parses a body of alerts with the default options. See [`parse_alerts_with`].
pub fn parse_alerts(
    body: &[u8],
    format: Option<AlertFormat>,
    ndjson: bool,
) -> Result<Vec<LineOutcome>, ParseError> {
    parse_alerts_with(body, format, ndjson, ParseOptions::default())
}

/// Parses a body of alerts.
///
/// Unless `ndjson` is set, the body is first read as one JSON document: an object is one alert
/// (line 1), an array holds one alert per element (line = 1-based index). A body that is not one
/// JSON document (or any body when `ndjson` is set) is read as NDJSON: each non-blank line one
/// alert, numbered by physical line; lines starting with `#` are comments; a bad line is an
/// [`LineOutcome::Error`] and the others are still parsed; a line longer than
/// `opts.max_line_bytes` is an error naming the limit.
///
/// When `ndjson` is not set and the body is neither one JSON document nor lines of JSON objects
/// (say a pretty-printed document with a syntax error), the whole body is rejected with
/// [`ParseError::NotJson`], pointing at serde_json's line and column.
pub fn parse_alerts_with(
    body: &[u8],
    format: Option<AlertFormat>,
    ndjson: bool,
    opts: ParseOptions,
) -> Result<Vec<LineOutcome>, ParseError> {
    let content_lines: Vec<(usize, &[u8])> = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| {
            let t = l.trim_ascii();
            !t.is_empty() && !t.starts_with(b"#")
        })
        .collect();
    if content_lines.is_empty() {
        return Err(ParseError::Empty);
    }

    if !ndjson {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(ParseError::Empty);
                }
                return Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| outcome(i + 1, v, format))
                    .collect());
            }
            Ok(v @ Value::Object(_)) => return Ok(vec![outcome(1, v, format)]),
            Ok(other) => {
                return Err(ParseError::NotAnAlert {
                    found: json_kind(&other),
                });
            }
            Err(e) => {
                let looks_like_ndjson = content_lines
                    .iter()
                    .all(|(_, l)| l.trim_ascii().starts_with(b"{"));
                if !looks_like_ndjson {
                    return Err(ParseError::NotJson {
                        line: e.line(),
                        column: e.column(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    Ok(content_lines
        .into_iter()
        .map(|(line, bytes)| {
            if bytes.len() > opts.max_line_bytes {
                return LineOutcome::Error {
                    line,
                    reason: format!(
                        "line is {} bytes, over the limit of {} bytes ({} KiB) per alert line",
                        bytes.len(),
                        opts.max_line_bytes,
                        opts.max_line_bytes / 1024
                    ),
                };
            }
            match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => outcome(line, v, format),
                Err(e) => LineOutcome::Error {
                    line,
                    reason: format!("invalid JSON: {e}"),
                },
            }
        })
        .collect())
}

/// The outcome of one alert document (already JSON).
fn outcome(line: usize, v: Value, format: Option<AlertFormat>) -> LineOutcome {
    match parse_one(v, format) {
        Item::Alert(alert) => LineOutcome::Alert {
            line,
            alert: *alert,
        },
        Item::Skipped(reason) => LineOutcome::Skipped { line, reason },
        Item::Error(reason) => LineOutcome::Error { line, reason },
    }
}

pub(crate) enum Item {
    Alert(Box<ParsedAlert>),
    Skipped(String),
    Error(String),
}

/// Parses one alert document in the given (or detected) format.
pub fn parse_value(v: Value, format: Option<AlertFormat>) -> Result<Option<ParsedAlert>, String> {
    match parse_one(v, format) {
        Item::Alert(a) => Ok(Some(*a)),
        Item::Skipped(_) => Ok(None),
        Item::Error(e) => Err(e),
    }
}

fn parse_one(v: Value, format: Option<AlertFormat>) -> Item {
    if !v.is_object() {
        return Item::Error(format!(
            "expected a JSON object for each alert, found {}",
            json_kind(&v)
        ));
    }
    let format = match format {
        Some(f) => {
            // OCSF: a non-finding class is skipped whatever else it lacks.
            if f == AlertFormat::Ocsf
                && let Some(reason) = ocsf::skip_reason(&v)
            {
                return Item::Skipped(reason);
            }
            let missing = f.missing_fields(&v);
            if !missing.is_empty() && f != AlertFormat::Json {
                return Item::Error(format!(
                    "not a {} alert: missing {} (a {} alert has {})",
                    f.as_str(),
                    missing.join(", "),
                    f.as_str(),
                    f.signature()
                ));
            }
            f
        }
        None => match detect_format(&v) {
            Some(f) => f,
            None => return Item::Error(undetected_hint(&v)),
        },
    };
    match format {
        AlertFormat::Json => json::parse(v),
        AlertFormat::Ocsf => ocsf::parse(v),
        AlertFormat::Wazuh => wazuh::parse(v),
        AlertFormat::Sigma => sigma::parse(v),
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A non-empty trimmed string at `v` (strings only; numbers are rendered too, as ids often are).
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Collects observables, dropping empties and duplicates and stopping at [`MAX_OBSERVABLES`].
#[derive(Default)]
pub(crate) struct Observables(Vec<Observable>);

impl Observables {
    pub(crate) fn push(&mut self, kind: &str, value: Option<String>) {
        let Some(value) = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        else {
            return;
        };
        if self.0.len() >= MAX_OBSERVABLES
            || self.0.iter().any(|o| o.kind == kind && o.value == value)
        {
            return;
        }
        self.0.push(Observable {
            kind: kind.to_string(),
            value,
        });
    }

    pub(crate) fn into_vec(self) -> Vec<Observable> {
        self.0
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with an ellipsis.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

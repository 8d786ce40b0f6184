//! Ingest into the store: attribution to an account, rule resolution against the catalogue
//! (unknown rules become ad-hoc rules of their source), the criticality default, and the case
//! itself — created once per (account, identity); a repeat raises `alert_count`.
//!
//! Auto-escalation is not done here: ingest knows nothing of ConnectWise. The caller (web, CLI)
//! hands the created cases to sync's auto-escalation.

use casebridge_domain::Criticality;
use casebridge_domain::ids::new_id;
use casebridge_store::{AlertInsert, Case, NewCase, Rule, Store, StoreError};
use serde::Serialize;
use serde_json::json;

use crate::{
    AlertFormat, CatalogueRule, LineOutcome, ParseError, ParseOptions, ParsedAlert,
    parse_alerts_with, suggest_rule_type,
};

/// Who is ingesting, and for which accounts.
#[derive(Debug, Clone)]
pub struct Attribution<'a> {
    /// `?account_id=` / `--account`: the account of alerts that name none.
    pub default_account: Option<&'a str>,
    /// The caller's own account; used when nothing else names one, unless it is a partner.
    pub own_account: &'a str,
    pub own_is_partner: bool,
    /// Accounts the caller may file alerts for.
    pub allowed: &'a [String],
    pub actor: &'a str,
}

/// The result of one line of a body.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum LineResult {
    Created {
        line: usize,
        case_id: String,
    },
    Repeat {
        line: usize,
        case_id: String,
        alert_count: i64,
    },
    Skipped {
        line: usize,
        reason: String,
    },
    Error {
        line: usize,
        field: Option<String>,
        reason: String,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub created: usize,
    pub repeats: usize,
    pub skipped: usize,
    pub errors: usize,
    pub lines: Vec<LineResult>,
    /// Cases created by this request (for auto-escalation).
    #[serde(skip)]
    pub new_cases: Vec<Case>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports the rule catalogue; idempotent. Returns the number of rules in the file.
pub async fn import_catalogue(
    store: &dyn Store,
    rules: &[CatalogueRule],
) -> Result<usize, StoreError> {
    let rows: Vec<Rule> = rules
        .iter()
        .map(|r| Rule {
            id: r.id.clone(),
            title: r.title.clone(),
            level: r.level,
            source: "sigma".into(),
            logsource: serde_json::to_value(&r.logsource).unwrap_or(json!({})),
            tags: r.tags.clone(),
            suggested_rule_type: r.suggested_rule_type().to_string(),
        })
        .collect();
    store.upsert_rules(&rows).await?;
    Ok(rows.len())
}

/// Parses `body` and files every alert in it. Per-line problems are reported per line; the
/// other lines are still ingested. Each alert's case is written in its own transaction.
pub async fn ingest_body(
    store: &dyn Store,
    body: &[u8],
    format: Option<AlertFormat>,
    ndjson: bool,
    options: ParseOptions,
    who: &Attribution<'_>,
) -> Result<IngestReport, IngestError> {
    let outcomes = parse_alerts_with(body, format, ndjson, options)?;
    let mut report = IngestReport::default();
    for outcome in outcomes {
        let result = match outcome {
            LineOutcome::Alert { line, alert } => match file_alert(store, alert, who).await? {
                Ok(AlertInsert::Created(case)) => {
                    report.created += 1;
                    let r = LineResult::Created {
                        line,
                        case_id: case.id.clone(),
                    };
                    report.new_cases.push(*case);
                    r
                }
                Ok(AlertInsert::Repeat(case)) => {
                    report.repeats += 1;
                    LineResult::Repeat {
                        line,
                        case_id: case.id.clone(),
                        alert_count: case.alert_count,
                    }
                }
                Err((field, reason)) => {
                    report.errors += 1;
                    LineResult::Error {
                        line,
                        field,
                        reason,
                    }
                }
            },
            LineOutcome::Skipped { line, reason } => {
                report.skipped += 1;
                LineResult::Skipped { line, reason }
            }
            LineOutcome::Error { line, reason } => {
                report.errors += 1;
                LineResult::Error {
                    line,
                    field: None,
                    reason,
                }
            }
        };
        report.lines.push(result);
    }
    Ok(report)
}

type LineError = (Option<String>, String);

async fn file_alert(
    store: &dyn Store,
    alert: ParsedAlert,
    who: &Attribution<'_>,
) -> Result<Result<AlertInsert, LineError>, StoreError> {
    let account = match (alert.account.as_deref(), who.default_account) {
        (Some(a), _) | (None, Some(a)) => a.to_string(),
        (None, None) if !who.own_is_partner => who.own_account.to_string(),
        (None, None) => {
            return Ok(Err((
                Some("account_id".into()),
                "a partner must say which sub-tenant the alert is for: `account` in the alert, ?account_id= on the API or --account on `casebridge ingest`".into(),
            )));
        }
    };
    if !who.allowed.contains(&account) {
        let field = if alert.account.is_some() {
            "account"
        } else {
            "account_id"
        };
        return Ok(Err((
            Some(field.into()),
            format!("account {account} does not exist or is not yours"),
        )));
    }
    let rule = resolve_rule(store, &alert).await?;
    let criticality = alert
        .criticality
        .or(rule.level)
        .unwrap_or(Criticality::Medium);
    let observables = serde_json::to_value(&alert.observables).unwrap_or(json!([]));
    let case = NewCase {
        id: new_id("case"),
        account_id: account,
        rule_id: rule.id.clone(),
        title: alert.title.clone(),
        description: alert.description.clone(),
        criticality,
        source_format: alert.format.as_str().to_string(),
        source_key: alert.source_id.clone(),
        observables,
        raw_alert: alert.raw,
    };
    Ok(Ok(store.insert_alert_case(&case, who.actor).await?))
}

/// The catalogue rule the alert names, or an ad-hoc rule of its source (created on first sight).
async fn resolve_rule(store: &dyn Store, alert: &ParsedAlert) -> Result<Rule, StoreError> {
    if let Some(rule) = store.rule(&alert.rule.id).await? {
        return Ok(rule);
    }
    let logsource = alert.rule.logsource.clone().unwrap_or_default();
    let rule = Rule {
        id: alert.rule.id.clone(),
        title: alert.rule.title.clone(),
        level: alert.rule.level,
        source: alert
            .rule
            .adhoc_source
            .unwrap_or(alert.format)
            .as_str()
            .to_string(),
        logsource: serde_json::to_value(&logsource).unwrap_or(json!({})),
        tags: alert.rule.tags.clone(),
        suggested_rule_type: suggest_rule_type(&logsource, &alert.rule.tags).to_string(),
    };
    store.upsert_rules(std::slice::from_ref(&rule)).await?;
    Ok(rule)
}

//! `POST /api/v1/alerts`: one alert, a JSON array of alerts, or NDJSON; format detected or
//! `?format=`. Synchronous: the cases exist when the response arrives. Per-line problems are
//! reported with their line number while the other lines are still ingested.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use casebridge_domain::Role;
use casebridge_ingest::service::{Attribution, IngestError, ingest_body};
use casebridge_ingest::{AlertFormat, ParseError, ParseOptions};
use casebridge_sync::escalation;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(post_alerts))
}

/// Ingests alerts (OCSF, Wazuh, Sigma regression records, plain JSON; single, array or NDJSON).
#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts",
    params(("format" = Option<String>, Query, description = "ocsf | wazuh | sigma | json; detected when absent"),
           ("account_id" = Option<String>, Query, description = "account of alerts that name none")),
    request_body(content = Object, description = "one alert object, a JSON array of alerts, or NDJSON (one alert per line; send it as application/x-ndjson)"),
    responses((status = 200, description = "per-line report"), (status = 413, description = "body too large"),
              (status = 415, description = "unknown format"), (status = 422, description = "no alert could be ingested")))]
async fn post_alerts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Analyst)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!(
                    "the body is over the limit of {} bytes; split the batch",
                    state.config.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let format = match q.get("format").filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => Some(f.parse::<AlertFormat>().map_err(|e| {
            let mut err = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported alert format",
                e.to_string(),
            );
            err.fields.push((
                "format".into(),
                format!("accepted: {}", AlertFormat::accepted_list()),
            ));
            err
        })?),
    };
    let ndjson = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("ndjson") || ct.contains("jsonlines"));
    let default_account = q.get("account_id").filter(|a| !a.is_empty());
    if let Some(a) = default_account
        && !caller.visible.contains(a)
    {
        return Err(ApiError::field(
            "account_id",
            format!("account {a} does not exist or is not yours"),
        ));
    }
    let who = Attribution {
        default_account: default_account.map(String::as_str),
        own_account: &caller.account.id,
        own_is_partner: caller.is_partner(),
        allowed: &caller.visible,
        actor: &caller.actor(),
    };
    let options = ParseOptions {
        max_line_bytes: state.config.max_line_bytes,
    };
    let report = ingest_body(state.store.as_ref(), &body, format, ndjson, options, &who)
        .await
        .map_err(|e| match e {
            IngestError::Parse(p @ ParseError::UnknownFormat { .. }) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported alert format",
                p.to_string(),
            ),
            IngestError::Parse(p) => ApiError::bad_request(p.to_string()),
            IngestError::Store(s) => s.into(),
        })?;
    let mut escalated = 0;
    for case in &report.new_cases {
        match escalation::auto_escalate(&state.sync, case).await {
            Ok(Some(_)) => escalated += 1,
            Ok(None) => {}
            Err(e) => tracing::warn!(case = %case.id, error = %e, "auto-escalation failed"),
        }
    }
    let only_errors = report.errors > 0 && report.created + report.repeats + report.skipped == 0;
    if only_errors {
        let fields: Vec<(String, String)> = report
            .lines
            .iter()
            .filter_map(|l| match l {
                casebridge_ingest::service::LineResult::Error {
                    line,
                    field,
                    reason,
                } => {
                    // the field names the line when the line has no field of its own; say it once
                    Some(match field {
                        Some(f) => (f.clone(), format!("line {line}: {reason}")),
                        None => (format!("line {line}"), reason.clone()),
                    })
                }
                _ => None,
            })
            .collect();
        let mut err = ApiError::fields(fields);
        err.title = "No alert could be ingested";
        return Err(err);
    }
    let mut body = serde_json::to_value(&report).unwrap_or(json!({}));
    body["auto_escalated"] = json!(escalated);
    Ok((StatusCode::OK, Json(body)))
}

//! Cases: list and filter, create, read (with its ticket link and routing), change status,
//! escalate, notes and the Activity Log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use casebridge_domain::ids::new_id;
use casebridge_domain::{CaseStatus, Criticality, Role, Visibility};
use casebridge_store::{AlertInsert, Case, CaseFilter, NewCase};
use casebridge_sync::{changes, escalation};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_json};
use crate::views;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_cases, create_case))
        .routes(routes!(get_case, patch_case))
        .routes(routes!(escalate_case))
        .routes(routes!(list_notes, add_note))
        .routes(routes!(list_activity))
}

/// Largest page size of list endpoints.
pub const MAX_LIMIT: i64 = 500;

/// Reads `limit` (default 50, 1..=500) from a query.
pub fn limit_of(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("limit") {
        None => Ok(50),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

async fn visible_case(state: &AppState, caller: &Caller, id: &str) -> Result<Case, ApiError> {
    let case = state
        .store
        .case(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("case {id}")))?;
    if !caller.visible.contains(&case.account_id) {
        return Err(ApiError::not_found(format!("case {id}")));
    }
    Ok(case)
}

/// Lists cases, newest first; filters `account_id`, `status`, `criticality`, `q`; paging with
/// `limit` and `cursor`.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases",
    params(("account_id" = Option<String>, Query), ("status" = Option<String>, Query), ("criticality" = Option<String>, Query),
           ("q" = Option<String>, Query), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next}")))]
async fn list_cases(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit_of(&q)?;
    let account_ids = match q.get("account_id") {
        Some(a) => {
            caller
                .account(state.store.as_ref(), a)
                .await
                .map_err(|_| ApiError::field("account_id", format!("no visible account {a}")))?;
            vec![a.clone()]
        }
        None => caller.visible.clone(),
    };
    let status = q
        .get("status")
        .map(|s| {
            CaseStatus::parse(s).ok_or_else(|| {
                ApiError::field(
                    "status",
                    "one of open, escalated, in_progress, waiting_on_customer, closed",
                )
            })
        })
        .transpose()?;
    let criticality = q
        .get("criticality")
        .map(|s| {
            Criticality::parse(s).ok_or_else(|| {
                ApiError::field(
                    "criticality",
                    "one of critical, high, medium, low, informational",
                )
            })
        })
        .transpose()?;
    let before_id = q.get("cursor").filter(|c| !c.is_empty()).cloned();
    if let Some(c) = &before_id
        && !c.starts_with("case_")
    {
        return Err(ApiError::field("cursor", "not a cursor this API gave out"));
    }
    let filter = CaseFilter {
        account_ids,
        status,
        criticality,
        q: q.get("q").cloned(),
        before_id,
        limit: limit + 1,
    };
    let mut cases = state.store.cases(&filter).await?;
    let next = if cases.len() as i64 > limit {
        cases.truncate(limit as usize);
        cases.last().map(|c| c.id.clone())
    } else {
        None
    };
    Ok(Json(views::list(
        cases.iter().map(views::case).collect(),
        next,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCaseBody {
    account_id: String,
    rule_id: String,
    title: String,
    /// `critical`, `high`, `medium`, `low` or `informational`.
    criticality: String,
    #[serde(default)]
    description: String,
}

/// Opens a case by hand.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = NewCaseBody, responses((status = 201, description = "the case")))]
async fn create_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Analyst)?;
    let b: NewCaseBody = parse_json(&body)?;
    let account = caller
        .account(state.store.as_ref(), &b.account_id)
        .await
        .map_err(|_| {
            ApiError::field("account_id", format!("no visible account {}", b.account_id))
        })?;
    let criticality = Criticality::parse(&b.criticality).ok_or_else(|| {
        ApiError::field(
            "criticality",
            "one of critical, high, medium, low, informational",
        )
    })?;
    if b.title.trim().is_empty() {
        return Err(ApiError::field("title", "must not be empty"));
    }
    if b.rule_id.trim().is_empty() {
        return Err(ApiError::field("rule_id", "must not be empty"));
    }
    at_most("title", &b.title, MAX_TITLE_CHARS)?;
    at_most("rule_id", &b.rule_id, MAX_RULE_ID_CHARS)?;
    at_most("description", &b.description, MAX_NOTE_CHARS)?;
    let id = new_id("case");
    let new = NewCase {
        id: id.clone(),
        account_id: account.id,
        rule_id: b.rule_id,
        title: b.title,
        description: b.description,
        criticality,
        source_format: "manual".into(),
        source_key: id,
        observables: json!([]),
        raw_alert: json!({}),
    };
    let case = match state.store.insert_alert_case(&new, &caller.actor()).await? {
        AlertInsert::Created(c) | AlertInsert::Repeat(c) => c,
    };
    let case = escalation::auto_escalate(&state.sync, &case)
        .await?
        .unwrap_or(*case);
    Ok((axum::http::StatusCode::CREATED, Json(views::case(&case))))
}

/// One case, with its ticket link and its routing decision.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = String, Path)), responses((status = 200, description = "the case")))]
async fn get_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::case(
        &visible_case(&state, &caller, &id).await?,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchCase {
    /// `open`, `escalated`, `in_progress`, `waiting_on_customer` or `closed`; a non-closed
    /// status on a closed case reopens it.
    status: String,
    /// Status closed only; `resolved` when absent.
    #[serde(default)]
    close_reason: Option<String>,
    /// A closing note (status closed only): kept as a shared note of the case and sent to
    /// ConnectWise as the ticket's resolution.
    #[serde(default)]
    resolution: Option<String>,
}

/// Changes a case's status (close with `close_reason` and an optional `resolution` text; reopen
/// by setting a non-closed status).
#[utoipa::path(patch, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = String, Path)), request_body = PatchCase, responses((status = 200, description = "the case")))]
async fn patch_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Analyst)?;
    visible_case(&state, &caller, &id).await?;
    let p: PatchCase = parse_json(&body)?;
    let status = CaseStatus::parse(&p.status).ok_or_else(|| {
        ApiError::field(
            "status",
            "one of open, escalated, in_progress, waiting_on_customer, closed",
        )
    })?;
    if let Some(reason) = &p.close_reason {
        if status != CaseStatus::Closed {
            return Err(ApiError::field("close_reason", "only with status closed"));
        }
        if reason.trim().is_empty() {
            return Err(ApiError::field("close_reason", "must not be empty"));
        }
        at_most("close_reason", reason, MAX_CLOSE_REASON_CHARS)?;
    }
    // change_status names `resolution` when it goes with another status or a closed case
    if let Some(text) = &p.resolution {
        at_most("resolution", text, MAX_NOTE_CHARS)?;
    }
    let case = changes::change_status(
        &state.sync,
        &id,
        status,
        p.close_reason,
        p.resolution,
        &caller.actor(),
    )
    .await?;
    Ok(Json(views::case(&case)))
}

/// Escalates a case: idempotent, 200 with the case whatever its state (DESIGN §4).
#[utoipa::path(post, path = "/api/v1/cases/{id}/escalate", tag = "cases", params(("id" = String, Path)), responses((status = 200, description = "the case")))]
async fn escalate_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Analyst)?;
    visible_case(&state, &caller, &id).await?;
    let case = escalation::escalate(&state.sync, &id, &caller.actor()).await?;
    Ok(Json(views::case(&case)))
}

/// The case's notes, oldest first.
#[utoipa::path(get, path = "/api/v1/cases/{id}/notes", tag = "cases", params(("id" = String, Path)), responses((status = 200, description = "{items, next}")))]
async fn list_notes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    visible_case(&state, &caller, &id).await?;
    let notes = state.store.notes(&id).await?;
    Ok(Json(views::list(
        notes.iter().map(views::note).collect(),
        None,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewNoteBody {
    /// 1–20,000 characters.
    text: String,
    /// `shared` (reaches the customer as a discussion note) or `internal` (the default).
    #[serde(default = "default_visibility")]
    visibility: String,
}

fn default_visibility() -> String {
    "internal".into()
}

/// Longest note text (and closing note, and hand-made case description) accepted, in characters.
const MAX_NOTE_CHARS: usize = 20_000;
/// Longest hand-made case title, rule id and close reason accepted, in characters.
const MAX_TITLE_CHARS: usize = 1_000;
const MAX_RULE_ID_CHARS: usize = 200;
const MAX_CLOSE_REASON_CHARS: usize = 100;

/// Refuses `value` when it is longer than `max` characters, naming `field`.
fn at_most(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::field(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// Adds a note; a ticketed case sends it to ConnectWise (shared → discussion, internal →
/// internal analysis).
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", params(("id" = String, Path)), request_body = NewNoteBody, responses((status = 201, description = "the note")))]
async fn add_note(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Analyst)?;
    visible_case(&state, &caller, &id).await?;
    let b: NewNoteBody = parse_json(&body)?;
    let visibility = Visibility::parse(&b.visibility)
        .ok_or_else(|| ApiError::field("visibility", "internal or shared"))?;
    if b.text.trim().is_empty() {
        return Err(ApiError::field("text", "must not be empty"));
    }
    at_most("text", &b.text, MAX_NOTE_CHARS)?;
    let (_, note) =
        changes::add_note(&state.sync, &id, &b.text, visibility, &caller.actor()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(views::note(&note))))
}

/// The case's Activity Log, oldest first.
#[utoipa::path(get, path = "/api/v1/cases/{id}/activity", tag = "cases", params(("id" = String, Path)), responses((status = 200, description = "{items, next}")))]
async fn list_activity(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    visible_case(&state, &caller, &id).await?;
    let entries = state.store.activity(&id).await?;
    Ok(Json(views::list(
        entries.iter().map(views::activity).collect(),
        None,
    )))
}

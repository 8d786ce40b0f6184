//! The outbox as the API shows it: jobs by state (dead ones with their attempts, blocked ones
//! marked), and a hand retry of a dead job.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use casebridge_domain::Role;
use casebridge_store::{Job, JobState};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cases::limit_of;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::views;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
}

async fn job_json(state: &AppState, j: &Job) -> Result<Value, ApiError> {
    let attempts = state.store.job_attempts(&j.id).await?;
    Ok(json!({
        "id": j.id, "case_id": j.case_id, "account_id": j.account_id, "kind": j.kind, "state": j.state.as_str(),
        "blocked": j.blocked && j.state == JobState::Pending, "attempts": j.attempts, "due_at": views::rfc3339(j.due_at),
        "last_error": j.last_error, "created_at": views::rfc3339(j.created_at),
        "attempt_log": attempts.iter().map(|a| json!({
            "at": views::rfc3339(a.at), "status_code": a.status_code, "error": a.error, "duration_ms": a.duration_ms, "outcome": a.outcome,
        })).collect::<Vec<_>>(),
    }))
}

/// Outbox jobs, newest first; `?state=pending|running|done|dead`.
#[utoipa::path(get, path = "/api/v1/sync/jobs", tag = "sync", params(("state" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "{items, next}")))]
async fn list_jobs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit_of(&q)?;
    let st = q
        .get("state")
        .map(|s| {
            JobState::parse(s)
                .ok_or_else(|| ApiError::field("state", "one of pending, running, done, dead"))
        })
        .transpose()?;
    let jobs = state.store.jobs(st, &caller.visible, limit).await?;
    let mut items = Vec::with_capacity(jobs.len());
    for j in &jobs {
        items.push(job_json(&state, j).await?);
    }
    Ok(Json(views::list(items, None)))
}

/// Queues a dead job again.
#[utoipa::path(post, path = "/api/v1/sync/jobs/{id}/retry", tag = "sync", params(("id" = String, Path)),
    responses((status = 200, description = "the job"), (status = 409, description = "the job is not dead")))]
async fn retry_job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Analyst)?;
    let job = state
        .store
        .job(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if !caller.visible.contains(&job.account_id) {
        return Err(ApiError::not_found(format!("job {id}")));
    }
    let job = state.store.retry_job(&id, &caller.actor()).await?;
    state.sync.wake_outbox.notify_one();
    Ok(Json(job_json(&state, &job).await?))
}

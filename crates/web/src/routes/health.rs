//! `/healthz` (the process is up), `/readyz` (the database answers and its migrations are
//! current) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casebridge_store::JobState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "up")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ready().await {
        Ok(true) => (StatusCode::OK, "ready".to_string()),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "migrations pending".to_string(),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {e}"),
        ),
    }
}

/// Prometheus metrics: outbox jobs by state.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let accounts: Vec<String> = match state.store.all_accounts().await {
        Ok(a) => a.into_iter().map(|a| a.id).collect(),
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("# database unreachable: {e}\n"),
            );
        }
    };
    let mut out = String::from(
        "# HELP casebridge_outbox_jobs Outbox jobs by state (latest 10000).\n# TYPE casebridge_outbox_jobs gauge\n",
    );
    for s in [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
    ] {
        let n = state
            .store
            .jobs(Some(s), &accounts, 10_000)
            .await
            .map(|j| j.len())
            .unwrap_or(0);
        out.push_str(&format!(
            "casebridge_outbox_jobs{{state=\"{}\"}} {n}\n",
            s.as_str()
        ));
    }
    out.push_str(
        "# HELP casebridge_callbacks_total ConnectWise callbacks answered since start, by outcome: accepted (200), ignored (202), refused (4xx), failed (5xx).\n# TYPE casebridge_callbacks_total counter\n",
    );
    for (outcome, n) in state.sync.inbound.callback_counts() {
        out.push_str(&format!(
            "casebridge_callbacks_total{{outcome=\"{outcome}\"}} {n}\n"
        ));
    }
    (StatusCode::OK, out)
}

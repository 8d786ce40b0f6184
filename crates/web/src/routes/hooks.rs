//! `POST /hooks/connectwise/{integration_id}`: ConnectWise callbacks. No bearer token — the
//! signature (`x-content-signature`) is the authentication, verified over the raw body before
//! anything is stored. The record id ConnectWise appends to the registered URL is ignored: the
//! body names the ticket.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use casebridge_sync::inbound::accept_callback;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(connectwise_callback))
}

/// A ConnectWise callback (signed); answered fast, processed in the background.
#[utoipa::path(post, path = "/hooks/connectwise/{integration_id}", tag = "sync", params(("integration_id" = String, Path)),
    responses(
        (status = 200, description = "accepted (or a repeated MessageId, already stored)"),
        (status = 202, description = "ignored, with the reason: unlinked ticket, other record type, inactive support system"),
        (status = 400, description = "malformed: not JSON, or a signed envelope without a usable MessageId, Type or ID"),
        (status = 401, description = "missing or bad signature, or a key_url not on the support system's host"),
        (status = 404, description = "unknown support system"),
        (status = 413, description = "body too large"),
        (status = 503, description = "storage unavailable; ConnectWise retries"),
    ))]
async fn connectwise_callback(
    State(state): State<Arc<AppState>>,
    Path(integration_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let signature = headers
        .get("x-content-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = accept_callback(&state.sync, &integration_id, signature, &body).await;
    if outcome.status >= 400 {
        tracing::info!(integration = %integration_id, status = outcome.status, reason = %outcome.message, "callback refused");
    }
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(serde_json::json!({ "status": outcome.status, "detail": outcome.message })),
    )
}

//! The web layer: REST API (`/api/v1`), the ConnectWise callback endpoint (`/hooks`), health,
//! metrics and the OpenAPI document — all built from one route table.
//!
//! One file per resource under `routes/`, each ending in its own `routes()`; handlers are thin:
//! they authenticate ([`auth::Caller`]), validate, and call the store, ingest or sync services.
//! Every error leaves as problem+json ([`error::ApiError`]).

pub mod auth;
pub mod error;
mod routes;
pub mod views;

use std::sync::Arc;

use axum::Router;
use casebridge_store::Store;
use casebridge_sync::{SecretBox, SyncContext};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Settings of the web layer.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address ConnectWise can reach for callbacks (`…/hooks/connectwise/{id}` is appended);
    /// without it integrations run on polling alone.
    pub public_url: Option<String>,
    /// Largest request body accepted (alerts included), in bytes.
    pub max_body_bytes: usize,
    /// Longest NDJSON line accepted, in bytes.
    pub max_line_bytes: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            max_body_bytes: 1024 * 1024,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub sync: SyncContext,
    pub secrets: SecretBox,
    pub config: WebConfig,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Casebridge API", description = "Security cases synced both ways with ConnectWise PSA tickets."),
    tags(
        (name = "cases"), (name = "alerts"), (name = "accounts"), (name = "settings"), (name = "sync"), (name = "health")
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::routes())
        .merge(routes::accounts::routes())
        .merge(routes::cases::routes())
        .merge(routes::alerts::routes())
        .merge(routes::settings::routes())
        .merge(routes::sync_jobs::routes())
        .merge(routes::hooks::routes())
}

/// The OpenAPI document, generated from the route table.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, spec) = api_router().split_for_parts();
    let spec = Arc::new(spec);
    let limit = state.config.max_body_bytes;
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        // unknown paths and methods answer problem+json like every other error
        .fallback(|uri: axum::http::Uri| async move {
            error::ApiError::not_found(format!("route {}", uri.path()))
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                error::ApiError::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    format!(
                        "{method} is not allowed on {}; see /api/openapi.json",
                        uri.path()
                    ),
                )
            },
        )
        .layer(axum::middleware::map_response(
            move |res: axum::response::Response| async move { problem_for_plain_413(res, limit) },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// axum's body limit answers 413 in plain text; every error of ours is problem+json.
fn problem_for_plain_413(res: axum::response::Response, limit: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_problem = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if res.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE || is_problem {
        return res;
    }
    error::ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "Body too large",
        format!("the body is over the limit of {limit} bytes"),
    )
    .into_response()
}

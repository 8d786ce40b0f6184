//! Accounts: a caller sees its own and, as a partner, its sub-tenants; a partner admin creates
//! sub-tenants.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use casebridge_domain::{AccountKind, Role};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_json};
use crate::views;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_accounts, create_account))
}

/// The caller's account and, for a partner, its sub-tenants.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", responses((status = 200, description = "{items, next}")))]
async fn list_accounts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let mut items = vec![views::account(&caller.account)];
    if caller.is_partner() {
        items.extend(
            state
                .store
                .subtenants(&caller.account.id)
                .await?
                .iter()
                .map(views::account),
        );
    }
    Ok(Json(views::list(items, None)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    /// `subtenant` (the only kind created through the API).
    kind: String,
}

/// A partner admin creates a sub-tenant: `{"name", "kind": "subtenant"}`.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = NewAccount, responses((status = 201, description = "the account")))]
async fn create_account(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    let b: NewAccount = parse_json(&body)?;
    if AccountKind::parse(&b.kind) != Some(AccountKind::Subtenant) {
        return Err(ApiError::field(
            "kind",
            "only \"subtenant\" can be created here",
        ));
    }
    if !caller.is_partner() {
        return Err(ApiError::forbidden("only a partner can create sub-tenants"));
    }
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::field("name", "1 to 200 characters"));
    }
    let a = state
        .store
        .create_account(name, AccountKind::Subtenant, Some(&caller.account.id))
        .await?;
    Ok((StatusCode::CREATED, Json(views::account(&a))))
}

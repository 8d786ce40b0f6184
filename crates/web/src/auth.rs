//! Bearer-token authentication. Tokens are random strings shown once; only their SHA-256 is
//! stored. A token belongs to one account and role, and sees that account and — for a partner —
//! its sub-tenants.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use casebridge_domain::{AccountKind, Role};
use casebridge_store::{Account, Store};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// SHA-256 (hex) of a token: what the store keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random API token (`cb_` + 40 hex digits).
pub fn new_token() -> String {
    let bytes: [u8; 20] = rand::random();
    format!("cb_{}", hex::encode(bytes))
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub role: Role,
    pub token_id: String,
    /// Accounts this caller may see: its own and, for a partner, its sub-tenants.
    pub visible: Vec<String>,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("{} ({})", self.account.name, self.role.as_str())
    }

    pub fn is_partner(&self) -> bool {
        self.account.kind == AccountKind::Partner
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; the token has {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// The account, if this caller may see it (404 otherwise, so ids of others don't leak).
    pub async fn account(&self, store: &dyn Store, id: &str) -> Result<Account, ApiError> {
        if !self.visible.iter().any(|v| v == id) {
            return Err(ApiError::not_found(format!("account {id}")));
        }
        store
            .account(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("account {id}")))
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let store = state.store.as_ref();
        let grant = store
            .token_grant(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
        let account = store
            .account(&grant.account_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's account no longer exists"))?;
        let mut visible = vec![account.id.clone()];
        if account.kind == AccountKind::Partner {
            visible.extend(
                store
                    .subtenants(&account.id)
                    .await?
                    .into_iter()
                    .map(|a| a.id),
            );
        }
        Ok(Caller {
            account,
            role: grant.role,
            token_id: grant.token_id,
            visible,
        })
    }
}

//! The one web error type: every failure becomes an RFC 9457 problem+json body with a `status`,
//! a human `detail` and, for bad input, `errors: [{field, message}]` naming each field. Causes
//! are logged in full; only the safe summary reaches the client.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub fields: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            fields: Vec::new(),
        }
    }
    /// 400: the request cannot be read at all.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    /// 422 naming one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Invalid field",
            detail: format!("{field}: {message}"),
            fields: vec![(field.to_string(), message)],
        }
    }
    /// 422 with several fields.
    pub fn fields(fields: Vec<(String, String)>) -> Self {
        let detail = fields
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Invalid fields",
            detail,
            fields,
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("{} not found", what.into()),
        )
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    /// 502: ConnectWise failed; the message is the connector's admin-readable sentence.
    pub fn upstream(e: &casebridge_connector::PsaError) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "ConnectWise request failed",
            e.to_string(),
        )
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the server failed to handle the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<_> = self
            .fields
            .iter()
            .map(|(f, m)| json!({"field": f, "message": m}))
            .collect();
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "errors": errors,
        });
        (
            self.status,
            [(CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<casebridge_store::StoreError> for ApiError {
    fn from(e: casebridge_store::StoreError) -> Self {
        match e {
            casebridge_store::StoreError::NotFound(w) => ApiError::not_found(w),
            casebridge_store::StoreError::Conflict(m) => ApiError::conflict(m),
            other => ApiError::internal(other),
        }
    }
}

impl From<casebridge_sync::SyncError> for ApiError {
    fn from(e: casebridge_sync::SyncError) -> Self {
        match e {
            casebridge_sync::SyncError::Store(s) => s.into(),
            casebridge_sync::SyncError::Psa(p) => ApiError::upstream(&p),
            casebridge_sync::SyncError::Invalid(m) => ApiError::bad_request(m),
            casebridge_sync::SyncError::Field(f, m) => ApiError::field(f, m),
            casebridge_sync::SyncError::NotFound(w) => ApiError::not_found(w),
        }
    }
}

/// Parses a JSON body, turning serde's complaint into a 422 that names the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"))
            .map(str::to_string);
        match (e.classify(), field) {
            (serde_json::error::Category::Syntax | serde_json::error::Category::Eof, _) => {
                ApiError::bad_request(format!("the body is not valid JSON: {msg}"))
            }
            (_, Some(f)) => ApiError::field(&f, msg),
            (_, None) => ApiError::field(&culprit::<T>(body).unwrap_or_else(|| "body".into()), msg),
        }
    })
}

/// serde names no field in a type error (`{"status": 5}`): the top-level key whose value alone
/// fails to deserialize is the one to name.
fn culprit<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    map.into_iter().find_map(|(k, v)| {
        let alone = serde_json::Value::Object([(k.clone(), v)].into_iter().collect());
        match serde_json::from_value::<T>(alone) {
            Err(e)
                if !e.to_string().starts_with("missing field")
                    && !e.to_string().starts_with("unknown field") =>
            {
                Some(k)
            }
            _ => None,
        }
    })
}

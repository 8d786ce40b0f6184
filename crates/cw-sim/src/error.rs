//! ConnectWise-shaped error bodies.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One entry of `errors[]` in a ConnectWise validation error.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
    pub field: String,
}

impl FieldError {
    pub fn missing(field: &str) -> Self {
        FieldError {
            code: "MissingRequiredField",
            message: format!("The {field} field is required."),
            field: field.to_string(),
        }
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            code: "InvalidField",
            message: message.into(),
            field: field.to_string(),
        }
    }
}

/// An error answered to the client: HTTP status + ConnectWise JSON body.
#[derive(Debug, Clone)]
pub struct CwError {
    pub status: StatusCode,
    pub body: Value,
}

impl CwError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        CwError {
            status,
            body: json!({"code": code, "message": message.into(), "errors": null}),
        }
    }
    /// 400 `InvalidObject` "`resource` object is invalid" with field errors.
    pub fn invalid_object(resource: &str, errors: Vec<FieldError>) -> Self {
        let errs: Vec<Value> = errors
            .into_iter()
            .map(|e| json!({"code": e.code, "message": e.message, "resource": resource, "field": e.field}))
            .collect();
        CwError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"code": "InvalidObject", "message": format!("{resource} object is invalid"), "errors": errs}),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidObject", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    pub fn no_endpoint() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ConnectWiseApi",
            "The endpoint does not exist.",
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ConnectWiseApi",
            "The requested resource does not support this http method.",
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }
    pub fn forbidden(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Security",
            format!("You do not have sufficient permissions to access this record: {what}."),
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "ConnectWiseApi", message)
    }
}

impl IntoResponse for CwError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

pub type CwResult<T> = Result<T, CwError>;

//! The error every PSA call returns, classified so the sync workers can decide what to do
//! (retry, wait, park) and so a partner admin can read what went wrong.
//!
//! Display texts never contain the private key or the Authorization header: the client never
//! puts either into an error.

use std::time::Duration;

/// A failed PSA call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsaError {
    #[error(
        "ConnectWise refused the API keys (401): check the login company id, the public key and the private key"
    )]
    BadCredentials,
    #[error(
        "ConnectWise denied access (403): the API member's security role does not allow this: {message}"
    )]
    PermissionDenied { message: String },
    #[error(
        "ConnectWise rejected the request (400){}: {message}",
        field_suffix(field)
    )]
    Validation {
        field: Option<String>,
        message: String,
    },
    #[error("ConnectWise could not find it (404): {message}")]
    NotFound { message: String },
    #[error("ConnectWise is rate limiting us (429){}", retry_suffix(retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error(
        "ConnectWise had a temporary problem{}: {message}",
        status_suffix(status)
    )]
    Transient {
        status: Option<u16>,
        message: String,
    },
    #[error(
        "ConnectWise did not answer in time; if this was a change, it may or may not have been applied"
    )]
    Timeout,
    #[error("ConnectWise could not be reached: {message}")]
    Unreachable { message: String },
    #[error("The ConnectWise settings are not usable: {message}")]
    Config { message: String },
    #[error("ConnectWise gave an answer we do not understand (HTTP {status}): {excerpt}")]
    UnexpectedResponse { status: u16, excerpt: String },
}

fn field_suffix(field: &Option<String>) -> String {
    match field {
        Some(f) if !f.is_empty() => format!(" for the field `{f}`"),
        _ => String::new(),
    }
}

fn retry_suffix(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(": try again in {} s", d.as_secs_f64().ceil() as u64),
        None => ": try again later".to_owned(),
    }
}

fn status_suffix(status: &Option<u16>) -> String {
    match status {
        Some(s) => format!(" (HTTP {s})"),
        None => String::new(),
    }
}

impl PsaError {
    /// Whether trying the same call again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PsaError::RateLimited { .. }
                | PsaError::Transient { .. }
                | PsaError::Timeout
                | PsaError::Unreachable { .. }
        )
    }

    /// How long ConnectWise asked us to wait (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PsaError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status behind the error, when there was one. `Validation` reports 400 also
    /// when the client refused the data before sending it.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            PsaError::BadCredentials => Some(401),
            PsaError::PermissionDenied { .. } => Some(403),
            PsaError::Validation { .. } => Some(400),
            PsaError::NotFound { .. } => Some(404),
            PsaError::RateLimited { .. } => Some(429),
            PsaError::Transient { status, .. } => *status,
            PsaError::Timeout | PsaError::Unreachable { .. } | PsaError::Config { .. } => None,
            PsaError::UnexpectedResponse { status, .. } => Some(*status),
        }
    }

    /// True when a write that got this error may nevertheless have been applied: a timeout, a
    /// 5xx, or a connection lost after the request went out. Before re-sending such a write,
    /// look it up (ticket by `externalXRef`, note by its marker). Not-applied errors (4xx,
    /// refused connection) answer false. Meaningless for reads.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PsaError::Timeout => true,
            PsaError::Transient { status, .. } => match status {
                Some(s) => *s >= 500,
                None => true,
            },
            PsaError::UnexpectedResponse { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A stable machine name for the class of error.
    pub fn kind(&self) -> &'static str {
        match self {
            PsaError::BadCredentials => "bad_credentials",
            PsaError::PermissionDenied { .. } => "permission_denied",
            PsaError::Validation { .. } => "validation",
            PsaError::NotFound { .. } => "not_found",
            PsaError::RateLimited { .. } => "rate_limited",
            PsaError::Transient { .. } => "transient",
            PsaError::Timeout => "timeout",
            PsaError::Unreachable { .. } => "unreachable",
            PsaError::Config { .. } => "config",
            PsaError::UnexpectedResponse { .. } => "unexpected_response",
        }
    }

    pub(crate) fn validation(field: &str, message: impl Into<String>) -> Self {
        PsaError::Validation {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        PsaError::Config {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_are_sentences_without_secrets() {
        let e = PsaError::BadCredentials;
        assert!(e.to_string().contains("401"));
        assert!(e.to_string().contains("private key"));
        let e = PsaError::Validation {
            field: Some("summary".into()),
            message: "too long".into(),
        };
        assert_eq!(
            e.to_string(),
            "ConnectWise rejected the request (400) for the field `summary`: too long"
        );
        let e = PsaError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            e.to_string(),
            "ConnectWise is rate limiting us (429): try again in 30 s"
        );
        assert!(
            PsaError::RateLimited { retry_after: None }
                .to_string()
                .ends_with("try again later")
        );
    }

    #[test]
    fn classification_helpers() {
        assert!(PsaError::Timeout.outcome_unknown());
        assert!(PsaError::Timeout.is_retryable());
        let t500 = PsaError::Transient {
            status: Some(500),
            message: "x".into(),
        };
        assert!(t500.outcome_unknown() && t500.is_retryable());
        assert_eq!(t500.status_code(), Some(500));
        let t409 = PsaError::Transient {
            status: Some(409),
            message: "x".into(),
        };
        assert!(!t409.outcome_unknown() && t409.is_retryable());
        let rl = PsaError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(7)));
        assert!(!rl.outcome_unknown());
        assert_eq!(rl.kind(), "rate_limited");
        assert!(!PsaError::BadCredentials.is_retryable());
        assert!(
            !PsaError::Unreachable {
                message: "refused".into()
            }
            .outcome_unknown()
        );
        assert_eq!(PsaError::Timeout.status_code(), None);
    }
}

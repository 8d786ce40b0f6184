//! Turning a ConnectWise error answer (status, headers, body) into a [`PsaError`]. Pure
//! functions: no I/O, so every class is unit-tested from canned answers. Bodies may be JSON
//! (`{"code","message","errors"}`), the 429 shape (`{"error","message"}`), plain text
//! (`Cannot route. Codebase/company is invalid`, pitfall 6) or empty; none of them panics.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};

use super::wire::ErrorBody;
use crate::PsaError;

/// Longest excerpt of a body kept in an error.
pub const EXCERPT_CHARS: usize = 300;

/// The longest `Retry-After` honoured (longer values are capped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A short, single-line, char-boundary-safe excerpt of a body.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space || out.is_empty() {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if out.chars().count() >= EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        out
    }
}

/// Parses `Retry-After`: delta-seconds (fractions tolerated) or an HTTP-date.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(MAX_RETRY_AFTER.as_secs_f64()),
            ));
        }
        return None;
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let delta = at - now;
    if delta.is_negative() {
        Some(Duration::ZERO)
    } else {
        Some(Duration::try_from(delta).ok()?.min(MAX_RETRY_AFTER))
    }
}

fn parse_body(body: &[u8]) -> Option<ErrorBody> {
    let trimmed = String::from_utf8_lossy(body);
    let t = trimmed.trim_start();
    if !t.starts_with('{') {
        return None;
    }
    serde_json::from_str::<ErrorBody>(t).ok()
}

/// The readable message of an error body: top message plus the item messages.
fn body_message(parsed: Option<&ErrorBody>, body: &[u8]) -> String {
    let Some(b) = parsed else {
        return excerpt(body);
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = b.message.as_deref().filter(|m| !m.trim().is_empty()) {
        parts.push(m.trim().to_owned());
    }
    for item in b.errors.iter().flatten() {
        if let Some(m) = item.message.as_deref().filter(|m| !m.trim().is_empty()) {
            let m = m.trim().to_owned();
            if !parts.contains(&m) {
                parts.push(m);
            }
        }
    }
    if parts.is_empty() {
        excerpt(body)
    } else {
        let joined = parts.join("; ");
        excerpt(joined.as_bytes())
    }
}

/// Whether the parsed body's code or any item code equals `code` (case-insensitive).
pub fn has_code(body: &[u8], code: &str) -> bool {
    let Some(b) = parse_body(body) else {
        return false;
    };
    b.code.iter().any(|c| c.eq_ignore_ascii_case(code))
        || b.errors.iter().flatten().any(|i| {
            i.code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
}

/// Classifies a non-2xx ConnectWise answer.
pub fn classify_error(status: u16, headers: &HeaderMap, body: &[u8]) -> PsaError {
    let parsed = parse_body(body);
    let text = String::from_utf8_lossy(body);
    let code = parsed
        .as_ref()
        .and_then(|b| b.code.clone().or_else(|| b.error.clone()))
        .unwrap_or_default();
    let message = body_message(parsed.as_ref(), body);

    if text.contains("Cannot route") {
        return PsaError::config(format!(
            "ConnectWise cannot route the request (HTTP {status}: {}): the login company id or the codebase is wrong for this site",
            excerpt(body)
        ));
    }
    // `Security` is also the code of plain 403 permission errors; only the SSL refusal is a
    // settings problem.
    if code.eq_ignore_ascii_case("Security") && status != 403 && text.contains("SSL") {
        return PsaError::config(format!(
            "ConnectWise refused the connection (HTTP {status}: {message}): use https and the site address ConnectWise gave you"
        ));
    }
    if text.contains("UserNotAuthenticated") {
        return PsaError::BadCredentials;
    }

    match status {
        300..=399 => {
            let to = headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(redact_location)
                .unwrap_or_else(|| "an unknown address".to_owned());
            PsaError::config(format!(
                "ConnectWise redirected the request (HTTP {status}) to {to}: set the site URL to the address ConnectWise serves the API on"
            ))
        }
        400 => {
            let field = parsed.as_ref().and_then(|b| {
                b.errors
                    .iter()
                    .flatten()
                    .find_map(|i| i.field.clone().filter(|f| !f.is_empty()))
            });
            PsaError::Validation { field, message }
        }
        401 => PsaError::BadCredentials,
        403 => PsaError::PermissionDenied { message },
        404 => {
            let record_not_found = parsed
                .as_ref()
                .and_then(|b| b.code.as_deref())
                .is_some_and(|c| !c.eq_ignore_ascii_case("ConnectWiseApi"));
            if record_not_found {
                PsaError::NotFound { message }
            } else {
                PsaError::config(format!(
                    "ConnectWise answered 404 for this address ({message}): check the site URL, the login company id and the codebase"
                ))
            }
        }
        408 | 409 | 423 | 425 => PsaError::Transient {
            status: Some(status),
            message,
        },
        429 => PsaError::RateLimited {
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc())),
        },
        500..=599 => PsaError::Transient {
            status: Some(status),
            message,
        },
        _ => PsaError::UnexpectedResponse {
            status,
            excerpt: excerpt(body),
        },
    }
}

/// A redirect target without userinfo, query or fragment.
fn redact_location(loc: &str) -> String {
    match url::Url::parse(loc) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => excerpt(loc.split(['?', '#']).next().unwrap_or("").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn validation_with_field() {
        let body = br#"{"code":"InvalidObject","message":"ticket object is invalid","errors":[{"code":"InvalidField","message":"The summary field has a maximum length of 100.","resource":"ticket","field":"summary"}]}"#;
        match classify_error(400, &HeaderMap::new(), body) {
            PsaError::Validation { field, message } => {
                assert_eq!(field.as_deref(), Some("summary"));
                assert!(message.contains("ticket object is invalid"));
                assert!(message.contains("maximum length of 100"));
            }
            e => panic!("{e:?}"),
        }
        assert!(has_code(
            br#"{"code":"InvalidObject","errors":[{"code":"ObjectExists","field":"objectId"}]}"#,
            "ObjectExists"
        ));
        assert!(!has_code(b"ObjectExists", "ObjectExists"));
    }

    #[test]
    fn auth_and_permission() {
        assert_eq!(
            classify_error(401, &HeaderMap::new(), b""),
            PsaError::BadCredentials
        );
        assert_eq!(
            classify_error(
                400,
                &HeaderMap::new(),
                br#"{"code":"ConnectWiseApi","message":"UserNotAuthenticated"}"#
            ),
            PsaError::BadCredentials
        );
        match classify_error(
            403,
            &HeaderMap::new(),
            br#"{"code":"Unauthorized","message":"You do not have access to company/companies."}"#,
        ) {
            PsaError::PermissionDenied { message } => assert!(message.contains("company")),
            e => panic!("{e:?}"),
        }
        match classify_error(
            403,
            &HeaderMap::new(),
            br#"{"code":"Security","message":"You do not have sufficient permissions to access this record: add tickets.","errors":null}"#,
        ) {
            PsaError::PermissionDenied { message } => assert!(message.contains("add tickets")),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn not_found_versus_bad_route() {
        assert!(matches!(
            classify_error(
                404,
                &HeaderMap::new(),
                br#"{"code":"NotFound","message":"Ticket 1255787 not found"}"#
            ),
            PsaError::NotFound { .. }
        ));
        assert!(matches!(
            classify_error(
                404,
                &HeaderMap::new(),
                br#"{"code":"ConnectWiseApi","message":"The endpoint does not exist."}"#
            ),
            PsaError::Config { .. }
        ));
        assert!(matches!(
            classify_error(404, &HeaderMap::new(), b"<html>Not Found</html>"),
            PsaError::Config { .. }
        ));
        let e = classify_error(
            404,
            &HeaderMap::new(),
            b"Cannot route. Codebase/company is invalid",
        );
        assert_eq!(e.kind(), "config");
        assert!(e.to_string().contains("company id or the codebase"));
        // Also on other statuses.
        assert_eq!(
            classify_error(
                500,
                &HeaderMap::new(),
                b"Cannot route. Codebase/company is invalid"
            )
            .kind(),
            "config"
        );
    }

    #[test]
    fn rate_limits() {
        let body =
            br#"{"error":"ConnectWiseAPI","message":"Too many requests. Please try again in 30 seconds."}"#;
        assert_eq!(
            classify_error(429, &h(&[("retry-after", "30")]), body),
            PsaError::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            classify_error(429, &HeaderMap::new(), body),
            PsaError::RateLimited { retry_after: None }
        );
        assert_eq!(
            classify_error(429, &h(&[("retry-after", "soon")]), b""),
            PsaError::RateLimited { retry_after: None }
        );
        let now = time::macros::datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:10 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn server_errors_and_oddities() {
        let e = classify_error(500, &HeaderMap::new(), b"");
        assert_eq!(
            e,
            PsaError::Transient {
                status: Some(500),
                message: "(empty body)".into()
            }
        );
        assert!(e.outcome_unknown());
        let e = classify_error(
            503,
            &HeaderMap::new(),
            b"<html>\n\n  Service Unavailable</html>",
        );
        assert!(
            matches!(e, PsaError::Transient { status: Some(503), ref message } if message == "<html> Service Unavailable</html>")
        );
        let e = classify_error(
            409,
            &HeaderMap::new(),
            br#"{"code":"Conflict","message":"in use"}"#,
        );
        assert!(e.is_retryable() && !e.outcome_unknown());
        let e = classify_error(
            400,
            &HeaderMap::new(),
            br#"{"code":"Security","message":"SSL is required.","errors":null}"#,
        );
        assert!(e.to_string().contains("https"), "{e}");
        let e = classify_error(
            302,
            &h(&[("location", "https://user:pw@evil.example/x?token=1")]),
            b"",
        );
        let s = e.to_string();
        assert!(
            s.contains("https://evil.example/x") && !s.contains("pw") && !s.contains("token"),
            "{s}"
        );
        let e = classify_error(414, &HeaderMap::new(), b"URI too long");
        assert_eq!(
            e,
            PsaError::UnexpectedResponse {
                status: 414,
                excerpt: "URI too long".into()
            }
        );
        // Broken JSON and binary garbage do not panic.
        let _ = classify_error(400, &HeaderMap::new(), b"{\"code\": ");
        let _ = classify_error(500, &HeaderMap::new(), &[0xff, 0xfe, 0x00, 0x80]);
    }

    #[test]
    fn excerpts_are_bounded_and_char_safe() {
        let long = "é".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"  \n "), "(empty body)");
    }
}

//! JSON shapes of the public resources (DESIGN §6). Kept apart from the store's rows so the
//! contract stays stable when storage changes.

use casebridge_store::{Account, Activity, Case, Millis, Note};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 UTC text of a Unix-millisecond time.
pub fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn account(a: &Account) -> Value {
    json!({ "id": a.id, "name": a.name, "kind": a.kind.as_str(), "parent_id": a.parent_id, "created_at": rfc3339(a.created_at) })
}

pub fn case(c: &Case) -> Value {
    let ticket = c.ticket.as_ref().map(|t| {
        json!({
            "id": t.id, "board_id": t.board_id, "status_id": t.status_id, "priority_id": t.priority_id,
            "company_identifier": t.company_identifier, "url": t.url, "state": t.state.as_str(),
        })
    });
    json!({
        "id": c.id,
        "account_id": c.account_id,
        "rule_id": c.rule_id,
        "title": c.title,
        "description": c.description,
        "criticality": c.criticality.as_str(),
        "status": c.status.as_str(),
        "close_reason": c.close_reason,
        "source_format": c.source_format,
        "alert_count": c.alert_count,
        "observables": c.observables,
        "routing": c.routing,
        "ticket": ticket,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

pub fn note(n: &Note) -> Value {
    json!({
        "id": n.id, "text": n.text, "visibility": n.visibility.as_str(), "origin": n.origin.as_str(),
        "author": n.author, "created_at": rfc3339(n.created_at), "connectwise_note_id": n.cw_note_id,
    })
}

pub fn activity(a: &Activity) -> Value {
    json!({ "at": rfc3339(a.at), "actor": a.actor, "direction": a.direction.as_str(), "kind": a.kind, "message": a.message })
}

/// `{"items": [...], "next": cursor | null}`
pub fn list(items: Vec<Value>, next: Option<String>) -> Value {
    json!({ "items": items, "next": next })
}

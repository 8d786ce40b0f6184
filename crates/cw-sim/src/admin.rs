//! Test-only admin surface under `/__sim/` (no authentication).
//!
//! - `POST /__sim/reset` → 204; empty site (same login company, no members, boards, tickets, callbacks).
//! - `POST /__sim/seed` `{"seed":"demo"|"empty"}` → the demo's [`crate::DemoKeys`] JSON (or `{}`).
//! - `GET /__sim/state` → `{company, members, boards, statuses, priorities, companies, tickets, notes,
//!   callbacks, deliveries, next_ticket_id}` (deliveries: `{message_id, callback_id, url, action, ticket_id,
//!   outcome: delivered|failed|dropped, attempts: [{status|error, at}]}`).
//! - `POST /__sim/members` `{identifier, public_key, private_key, role: admin|technician|restricted, name?}`
//!   → 201 `{id, identifier, role}`.
//! - `GET/PUT /__sim/faults` → see [`crate::faults`].
use crate::faults::{FaultRuntime, Faults};
use crate::model::{Member, Role, State};
use crate::{App, seed};
use axum::Json;
use axum::extract::State as Ax;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.into()}))).into_response()
}

fn reset_state(app: &App) {
    let company = app.state().company_id.clone();
    *app.state() = State::empty(&company);
    crate::lock(&app.deliveries).clear();
    app.mark_dirty();
}

pub async fn reset(Ax(app): Ax<App>) -> Response {
    reset_state(&app);
    StatusCode::NO_CONTENT.into_response()
}

pub async fn seed(Ax(app): Ax<App>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    match v.get("seed").and_then(|s| s.as_str()).unwrap_or("demo") {
        "demo" => {
            reset_state(&app);
            let keys = seed::seed_demo(&mut app.state());
            app.mark_dirty();
            Json(keys).into_response()
        }
        "empty" => {
            reset_state(&app);
            Json(json!({})).into_response()
        }
        other => bad(format!("unknown seed '{other}' (demo|empty)")),
    }
}

pub async fn state(Ax(app): Ax<App>) -> Response {
    let st = app.state();
    let notes: serde_json::Map<String, Value> = st
        .notes
        .iter()
        .map(|(k, ns)| {
            (
                k.to_string(),
                Value::Array(ns.iter().map(|n| st.render_note(n)).collect()),
            )
        })
        .collect();
    let v = json!({
        "company": st.company_id,
        "members": st.members.iter().map(|m| json!({"id": m.id, "identifier": m.identifier, "name": m.name, "role": m.role})).collect::<Vec<_>>(),
        "boards": st.boards.iter().map(|b| st.render_board(b)).collect::<Vec<_>>(),
        "statuses": st.statuses.iter().map(|s| st.render_status(s)).collect::<Vec<_>>(),
        "priorities": st.priorities.iter().map(|p| st.render_priority(p)).collect::<Vec<_>>(),
        "companies": st.companies.iter().map(|c| st.render_company(c)).collect::<Vec<_>>(),
        "tickets": st.tickets.values().map(|t| st.render_ticket(t)).collect::<Vec<_>>(),
        "notes": notes,
        "callbacks": st.callbacks.values().map(|c| {
            let mut v = st.render_callback(c);
            v["consecutiveFailures"] = json!(c.consecutive_failures);
            v
        }).collect::<Vec<_>>(),
        "next_ticket_id": st.next_ticket_id,
    });
    drop(st);
    let mut v = v;
    v["deliveries"] = Value::Array(crate::lock(&app.deliveries).iter().cloned().collect());
    Json(v).into_response()
}

#[derive(Deserialize)]
pub struct NewMember {
    identifier: String,
    public_key: String,
    private_key: String,
    #[serde(default = "default_role")]
    role: Role,
    name: Option<String>,
}

fn default_role() -> Role {
    Role::Admin
}

pub async fn add_member(Ax(app): Ax<App>, body: axum::body::Bytes) -> Response {
    let m: NewMember = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return bad(format!("invalid member: {e}")),
    };
    if m.identifier.is_empty() || m.public_key.is_empty() || m.private_key.is_empty() {
        return bad("identifier, public_key and private_key are required");
    }
    let mut st = app.state();
    if st
        .members
        .iter()
        .any(|x| x.identifier.eq_ignore_ascii_case(&m.identifier))
    {
        return bad(format!("member '{}' exists", m.identifier));
    }
    if st.authenticate(&m.public_key, &m.private_key).is_some()
        || st
            .members
            .iter()
            .any(|x| x.public_hash == crate::model::sha256_hex(&m.public_key))
    {
        return bad("public key already in use");
    }
    let id = st.next_member_id;
    st.next_member_id += 1;
    let name = m.name.clone().unwrap_or_else(|| m.identifier.clone());
    st.members.push(Member::new(
        id,
        &m.identifier,
        &name,
        m.role,
        &m.public_key,
        &m.private_key,
    ));
    drop(st);
    app.mark_dirty();
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "identifier": m.identifier, "role": m.role})),
    )
        .into_response()
}

fn faults_json(app: &App) -> Value {
    let f = app.faults();
    let mut v = serde_json::to_value(&f.cfg).unwrap_or(json!({}));
    v["apply_then_fail_remaining"] = json!(f.apply_remaining);
    v["requests_seen"] = json!(f.requests);
    v
}

pub async fn get_faults(Ax(app): Ax<App>) -> Response {
    Json(faults_json(&app)).into_response()
}

pub async fn put_faults(Ax(app): Ax<App>, body: axum::body::Bytes) -> Response {
    let mut v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("invalid JSON: {e}")),
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("apply_then_fail_remaining");
        o.remove("requests_seen");
        if !o.contains_key("time_scale") {
            o.insert("time_scale".into(), json!(app.time_scale()));
        }
    }
    let cfg: Faults = match serde_json::from_value(v) {
        Ok(c) => c,
        Err(e) => return bad(format!("invalid faults: {e}")),
    };
    if !(0.0..=1.0).contains(&cfg.error_rate) || cfg.time_scale < 0.0 {
        return bad("error_rate must be within 0..1 and time_scale >= 0");
    }
    *app.faults() = FaultRuntime::new(cfg);
    Json(faults_json(&app)).into_response()
}

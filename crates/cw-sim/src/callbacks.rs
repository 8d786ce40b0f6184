//! Callback delivery, as ConnectWise sends them.
//!
//! Every ticket added/updated/deleted and every note added (as a ticket `updated`) is delivered to each
//! active registration of type `ticket` whose level matches (`owner`: all; `board`/`status`/`company`:
//! the ticket's board/status/company id equals `objectId`), whoever made the change. The POST goes to
//! `url + ticketId` with the envelope `{MessageId, FromUrl, CompanyId, MemberId, Action, Type, ID,
//! CallbackObjectRecId, ProductInstanceId, PartnerId, Entity, Metadata:{key_url}}` (`Entity` is the ticket
//! JSON as a string, `null` on delete) and header `x-content-signature` =
//! Base64(HMAC-SHA256(key = SHA256(signing_key), body)). One signing key per site, served without
//! authentication at `key_url` (the `id` in it is the secret).
//!
//! Retries: a 404/409/419/429 answer is retried 2 s and then 4 s later (× time_scale); timeout 5 s
//! (× time_scale, at least 200 ms). Anything else that is not 2xx fails at once. After
//! `callbacks.inactivate_after_failures` consecutive failed deliveries (or failing for
//! `inactivate_after_secs` × time_scale, ConnectWise's "three days") the registration gets
//! `inactiveFlag: true`.
//!
//! `isSelfSuppressedFlag: true` suppresses deliveries of changes made by the member who created the
//! registration. That is this sim's reading of "whether the callback creator receives messages"; the
//! real semantics are UNVERIFIED.
//!
//! Deliveries run concurrently, so their order is not guaranteed (ConnectWise guarantees none either);
//! the `reorder` fault deterministically sends a held delivery after the next one.
use crate::model::{Callback, Change};
use crate::{App, CODEBASE};
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "FromUrl")]
    from_url: &'a str,
    #[serde(rename = "CompanyId")]
    company_id: &'a str,
    #[serde(rename = "MemberId")]
    member_id: &'a str,
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "Type")]
    cb_type: &'a str,
    #[serde(rename = "ID")]
    id: u64,
    #[serde(rename = "CallbackObjectRecId")]
    callback_id: u64,
    #[serde(rename = "ProductInstanceId")]
    product_instance_id: &'a str,
    #[serde(rename = "PartnerId")]
    partner_id: &'a str,
    #[serde(rename = "Entity")]
    entity: Option<&'a str>,
    #[serde(rename = "Metadata")]
    metadata: Value,
}

/// Base64(HMAC-SHA256(SHA256(signing_key), body)).
pub fn sign(signing_key: &str, body: &[u8]) -> String {
    let key = Sha256::digest(signing_key.as_bytes());
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("hmac key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One prepared delivery.
#[derive(Clone)]
struct Delivery {
    callback_id: u64,
    url: String,
    body: Vec<u8>,
    signature: String,
    message_id: String,
    action: &'static str,
    ticket_id: u64,
}

fn matches(c: &Callback, ch: &Change) -> bool {
    !c.inactive
        && c.cb_type == "ticket"
        && match c.level.as_str() {
            "owner" => true,
            "board" => c.object_id == ch.board_id,
            "status" => c.object_id == ch.status_id,
            "company" => c.object_id == ch.company_id,
            _ => false,
        }
        && !(c.self_suppressed && c.member_id == ch.member_id)
}

fn prepare(app: &App, ch: &Change) -> Vec<Delivery> {
    let st = app.state();
    let key_url = format!(
        "{}/{CODEBASE}/system/callbackkey/index.rails?companyName={}&id={}",
        app.base_url, st.company_id, st.key_id
    );
    st.callbacks
        .values()
        .filter(|c| matches(c, ch))
        .map(|c| {
            let message_id = crate::random_guid();
            let env = Envelope {
                message_id: message_id.clone(),
                from_url: &app.authority,
                company_id: &st.company_id,
                member_id: &ch.member_identifier,
                action: ch.action,
                cb_type: "ticket",
                id: ch.ticket_id,
                callback_id: c.id,
                product_instance_id: &st.product_instance_id,
                partner_id: &st.partner_id,
                entity: ch.entity.as_deref(),
                metadata: json!({"key_url": key_url}),
            };
            let body = serde_json::to_vec(&env).expect("envelope");
            Delivery {
                callback_id: c.id,
                url: format!("{}{}", c.url, ch.ticket_id),
                signature: sign(&st.signing_key, &body),
                body,
                message_id,
                action: ch.action,
                ticket_id: ch.ticket_id,
            }
        })
        .collect()
}

fn log(app: &App, entry: Value) {
    let mut d = crate::lock(&app.deliveries);
    d.push_back(entry);
    while d.len() > 2000 {
        d.pop_front();
    }
}

/// Receives changes and spawns deliveries (applying the callback faults).
pub async fn dispatcher(app: App, mut rx: mpsc::UnboundedReceiver<Vec<Change>>) {
    let mut held: Option<Vec<Delivery>> = None;
    loop {
        let hold_timeout = {
            let f = app.faults();
            Duration::from_secs_f64(
                (2.0 * f.cfg.time_scale).max(0.1)
                    + f.cfg.callbacks.delay_ms as f64 / 1000.0 * f.cfg.time_scale,
            )
        };
        let next = if held.is_some() {
            match tokio::time::timeout(hold_timeout, rx.recv()).await {
                Ok(x) => x,
                Err(_) => {
                    if let Some(h) = held.take() {
                        spawn_sequence(app.clone(), vec![h]);
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(changes) = next else { break };
        for ch in changes {
            let mut ds = prepare(&app, &ch);
            let (reorder, dup) = {
                let mut f = app.faults();
                let drop_rate = f.cfg.callbacks.drop_rate;
                let dup_rate = f.cfg.callbacks.duplicate_rate;
                ds.retain(|d| {
                    let dropped = f.roll(drop_rate);
                    if dropped {
                        log(&app, json!({"message_id": d.message_id, "callback_id": d.callback_id, "url": d.url, "action": d.action,
                                         "ticket_id": d.ticket_id, "outcome": "dropped", "attempts": []}));
                    }
                    !dropped
                });
                let dup: Vec<bool> = ds.iter().map(|_| f.roll(dup_rate)).collect();
                (f.cfg.callbacks.reorder, dup)
            };
            let mut expanded = Vec::new();
            for (d, twice) in ds.into_iter().zip(dup) {
                if twice {
                    expanded.push(d.clone());
                }
                expanded.push(d);
            }
            if expanded.is_empty() {
                continue;
            }
            if reorder {
                match held.take() {
                    None => held = Some(expanded),
                    Some(h) => spawn_sequence(app.clone(), vec![expanded, h]),
                }
            } else {
                if let Some(h) = held.take() {
                    spawn_sequence(app.clone(), vec![h]);
                }
                for d in expanded {
                    spawn_sequence(app.clone(), vec![vec![d]]);
                }
            }
        }
    }
}

/// Delivers the groups one after the other (deliveries inside a group sequentially too).
fn spawn_sequence(app: App, groups: Vec<Vec<Delivery>>) {
    tokio::spawn(async move {
        let delay = {
            let f = app.faults();
            f.scaled(f.cfg.callbacks.delay_ms)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        for g in groups {
            for d in g {
                deliver(&app, d).await;
            }
        }
    });
}

async fn deliver(app: &App, d: Delivery) {
    let scale = app.time_scale();
    let timeout = Duration::from_secs_f64((5.0 * scale).max(0.2));
    // seconds to wait before the 2nd and 3rd attempt (none after the 3rd)
    let waits = [Some(2.0), Some(4.0), None];
    let mut attempts = Vec::new();
    let mut ok = false;
    for wait in waits {
        let res = app
            .http
            .post(&d.url)
            .header("content-type", "application/json")
            .header("x-content-signature", &d.signature)
            .timeout(timeout)
            .body(d.body.clone())
            .send()
            .await;
        let (retry, rec) = match res {
            Ok(r) => {
                let s = r.status().as_u16();
                ok = r.status().is_success();
                (
                    matches!(s, 404 | 409 | 419 | 429),
                    json!({"status": s, "at": crate::model::now_str()}),
                )
            }
            Err(e) => (
                false,
                json!({"error": e.to_string(), "at": crate::model::now_str()}),
            ),
        };
        attempts.push(rec);
        match wait {
            Some(w) if !ok && retry => tokio::time::sleep(Duration::from_secs_f64(w * scale)).await,
            _ => break,
        }
    }
    log(
        app,
        json!({"message_id": d.message_id, "callback_id": d.callback_id, "url": d.url, "action": d.action,
                    "ticket_id": d.ticket_id, "outcome": if ok { "delivered" } else { "failed" }, "attempts": attempts}),
    );
    // failure accounting
    let (limit, secs) = {
        let f = app.faults();
        (
            f.cfg.callbacks.inactivate_after_failures,
            f.cfg.callbacks.inactivate_after_secs * f.cfg.time_scale,
        )
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let mut st = app.state();
    if let Some(c) = st.callbacks.get_mut(&d.callback_id) {
        if ok {
            c.consecutive_failures = 0;
            c.failing_since = None;
        } else {
            c.consecutive_failures += 1;
            let since = *c.failing_since.get_or_insert(now);
            if (limit > 0 && c.consecutive_failures >= limit)
                || (c.consecutive_failures >= 2 && now - since >= secs)
            {
                c.inactive = true;
            }
        }
    }
    drop(st);
    app.mark_dirty();
}

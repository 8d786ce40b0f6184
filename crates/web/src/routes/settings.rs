//! Settings → Support System (DESIGN §3): the integration itself (secrets write-only), its Test,
//! activation and test ticket; board, criticality, company and status mappings; the
//! escalation policy. Mappings are validated against live ConnectWise data when saved.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casebridge_connector::{Psa, ssrf};
use casebridge_domain::status_mapping::propose_defaults;
use casebridge_domain::{
    AccountKind, BoardMappings, Criticality, CriticalityMappings, Role, StatusMappings,
};
use casebridge_store::{Account, AuditEntry, Integration, MappingResource, now_millis};
use casebridge_sync::settings::{board_mappings, criticality_mappings, effective_settings};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_json};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(get_support_system, put_support_system))
        .routes(routes!(test_support_system))
        .routes(routes!(activate_support_system))
        .routes(routes!(test_ticket))
        .routes(routes!(
            get_board_mappings,
            put_board_mappings,
            delete_board_mappings
        ))
        .routes(routes!(
            get_criticality_mappings,
            put_criticality_mappings,
            delete_criticality_mappings
        ))
        .routes(routes!(get_company_mappings, put_company_mappings))
        .routes(routes!(get_status_mappings, put_status_mappings))
        .routes(routes!(get_escalation_policy, put_escalation_policy))
}

fn audit(caller: &Caller, account_id: &str, action: &str, detail: Value) -> AuditEntry {
    AuditEntry {
        account_id: account_id.to_string(),
        actor: caller.actor(),
        at: now_millis(),
        action: action.to_string(),
        detail,
    }
}

/// The callback URL of an integration, when a public URL is configured.
pub fn hook_url(state: &AppState, integration_id: &str) -> Option<String> {
    state.config.public_url.as_ref().map(|u| {
        format!(
            "{}/hooks/connectwise/{integration_id}?recordId=",
            u.trim_end_matches('/')
        )
    })
}

/// The sub-tenants of `partner_id` that use the partner's integration (have none of their own).
async fn inheriting_subtenants(
    state: &AppState,
    partner_id: &str,
) -> Result<Vec<Account>, ApiError> {
    let subs = state.store.subtenants(partner_id).await?;
    let with_integration: std::collections::HashSet<String> = state
        .store
        .integrations()
        .await?
        .into_iter()
        .map(|i| i.account_id)
        .collect();
    Ok(subs
        .into_iter()
        .filter(|s| !with_integration.contains(&s.id))
        .collect())
}

async fn support_system_json(
    state: &AppState,
    i: &Integration,
    source: &str,
) -> Result<Value, ApiError> {
    // what uniform mode would overwrite — for the partner only: a sub-tenant reading its
    // partner's integration learns nothing about the partner's other clients
    let with_own_mappings = if source == "own" {
        let inheriting = inheriting_subtenants(state, &i.account_id).await?;
        let ids: Vec<String> = inheriting.iter().map(|s| s.id.clone()).collect();
        let with_own: std::collections::HashSet<String> = state
            .store
            .accounts_with_own_mappings(&ids)
            .await?
            .into_iter()
            .collect();
        let names: Vec<&str> = inheriting
            .iter()
            .filter(|s| with_own.contains(&s.id))
            .map(|s| s.name.as_str())
            .collect();
        json!({ "count": names.len(), "names": names })
    } else {
        Value::Null
    };
    Ok(json!({
        "integration_id": i.id, "type": i.kind, "site_url": i.site_url, "company_id": i.company_id,
        "public_key": i.public_key, "private_key_set": i.private_key_enc.is_some(), "client_id": i.client_id,
        "parent_company_identifier": i.parent_company_identifier, "apply_to_all_subtenants": i.apply_to_all_subtenants,
        "uniform_subtenant_mappings": i.uniform_subtenant_mappings, "active": i.active, "sync_mode": i.sync_mode,
        "hook_url": hook_url(state, &i.id), "allow_private_hosts": i.allow_private_hosts,
        "process_notifications": i.process_notifications, "last_test": i.last_test,
        "last_callback_at": i.last_callback_at.map(crate::views::rfc3339), "source": source,
        "subtenants_with_own_mappings": with_own_mappings,
    }))
}

async fn admin_account(state: &AppState, caller: &Caller, id: &str) -> Result<Account, ApiError> {
    caller.require(Role::Admin)?;
    caller.account(state.store.as_ref(), id).await
}

/// The integration of an account (a sub-tenant without its own sees its partner's, read-only).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/support-system", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "the support system")))]
async fn get_support_system(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.account(state.store.as_ref(), &id).await?;
    if let Some(i) = state.store.integration_of(&id).await? {
        return Ok(Json(support_system_json(&state, &i, "own").await?));
    }
    let (_, integration) = effective_settings(state.store.as_ref(), &account).await?;
    match integration {
        Some(i) => Ok(Json(support_system_json(&state, &i, "partner").await?)),
        None => Err(ApiError::not_found(format!(
            "support system of account {id}"
        ))),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SupportSystemBody {
    #[serde(rename = "type", default = "connectwise")]
    kind: String,
    site_url: String,
    company_id: String,
    public_key: String,
    /// Write-only: kept when omitted, never returned.
    #[serde(default)]
    private_key: Option<String>,
    client_id: String,
    #[serde(default)]
    parent_company_identifier: Option<String>,
    #[serde(default)]
    apply_to_all_subtenants: bool,
    #[serde(default)]
    uniform_subtenant_mappings: bool,
    #[serde(default)]
    allow_private_hosts: bool,
    #[serde(default)]
    process_notifications: bool,
}

fn connectwise() -> String {
    "connectwise".into()
}

/// Saves the integration. The private key is write-only (kept when omitted); changing how
/// ConnectWise is reached deactivates it until the Test passes again.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/support-system", tag = "settings", params(("id" = String, Path)), request_body = SupportSystemBody, responses((status = 200, description = "the support system")))]
async fn put_support_system(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = admin_account(&state, &caller, &id).await?;
    let b: SupportSystemBody = parse_json(&body)?;
    let mut errors = Vec::new();
    if b.kind != "connectwise" {
        errors.push((
            "type".to_string(),
            "only \"connectwise\" is supported".to_string(),
        ));
    }
    if let Err(e) = ssrf::check_site_url(&b.site_url, b.allow_private_hosts) {
        errors.push(("site_url".into(), e));
    }
    for (f, v) in [
        ("company_id", &b.company_id),
        ("public_key", &b.public_key),
        ("client_id", &b.client_id),
    ] {
        if v.trim().is_empty() {
            errors.push((f.into(), "must not be empty".into()));
        }
    }
    let partner_only = account.kind != AccountKind::Partner;
    if partner_only && (b.apply_to_all_subtenants || b.uniform_subtenant_mappings) {
        errors.push((
            "apply_to_all_subtenants".into(),
            "only a partner can apply its integration to sub-tenants".into(),
        ));
    }
    let parent = b
        .parent_company_identifier
        .clone()
        .filter(|p| !p.trim().is_empty());
    if b.apply_to_all_subtenants && parent.is_none() {
        errors.push((
            "parent_company_identifier".into(),
            "Apply to All Subtenants needs a parent company identifier".into(),
        ));
    }
    if b.uniform_subtenant_mappings && !b.apply_to_all_subtenants {
        errors.push((
            "uniform_subtenant_mappings".into(),
            "uniform mappings need Apply to All Subtenants".into(),
        ));
    }
    let existing = state.store.integration_of(&id).await?;
    if b.private_key.as_deref().is_none_or(|k| k.is_empty())
        && existing
            .as_ref()
            .and_then(|e| e.private_key_enc.as_ref())
            .is_none()
    {
        errors.push(("private_key".into(), "required the first time".into()));
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let now = now_millis();
    let private_key_enc = match b.private_key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(state.secrets.seal(k)),
        None => existing.as_ref().and_then(|e| e.private_key_enc.clone()),
    };
    let reach_changed = existing.as_ref().is_none_or(|e| {
        e.site_url != b.site_url
            || e.company_id != b.company_id
            || e.public_key != b.public_key
            || e.client_id != b.client_id
            || e.allow_private_hosts != b.allow_private_hosts
            || b.private_key.as_deref().is_some_and(|k| !k.is_empty())
    });
    let was_uniform = existing
        .as_ref()
        .is_some_and(|e| e.uniform_subtenant_mappings);
    let integration = Integration {
        id: existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| casebridge_domain::ids::new_id("intg")),
        account_id: id.clone(),
        kind: b.kind,
        site_url: b.site_url,
        company_id: b.company_id,
        public_key: b.public_key,
        private_key_enc,
        client_id: b.client_id,
        parent_company_identifier: parent,
        apply_to_all_subtenants: b.apply_to_all_subtenants,
        uniform_subtenant_mappings: b.uniform_subtenant_mappings,
        allow_private_hosts: b.allow_private_hosts,
        process_notifications: b.process_notifications,
        active: existing.as_ref().is_some_and(|e| e.active) && !reach_changed,
        last_test: if reach_changed {
            None
        } else {
            existing.as_ref().and_then(|e| e.last_test.clone())
        },
        tested_ok: existing.as_ref().is_some_and(|e| e.tested_ok) && !reach_changed,
        callback_id: existing.as_ref().and_then(|e| e.callback_id),
        sync_mode: existing
            .as_ref()
            .map(|e| e.sync_mode.clone())
            .unwrap_or_else(|| "polling".into()),
        last_callback_at: existing.as_ref().and_then(|e| e.last_callback_at),
        watermark: existing.as_ref().and_then(|e| e.watermark.clone()),
        created_at: existing.as_ref().map(|e| e.created_at).unwrap_or(now),
        updated_at: now,
    };
    let detail = json!({
        "site_url": integration.site_url, "company_id": integration.company_id, "public_key": integration.public_key,
        "private_key_changed": b.private_key.as_deref().is_some_and(|k| !k.is_empty()),
        "apply_to_all_subtenants": integration.apply_to_all_subtenants, "uniform_subtenant_mappings": integration.uniform_subtenant_mappings,
    });
    if integration.uniform_subtenant_mappings && !was_uniform {
        let inheriting: Vec<String> = inheriting_subtenants(&state, &id)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let cleared = state.store.accounts_with_own_mappings(&inheriting).await?;
        let mut detail = detail;
        detail["deleted_subtenant_mappings"] = json!(cleared);
        state
            .store
            .set_uniform_mode(
                &integration,
                &cleared,
                &audit(&caller, &id, "uniform_mappings_on", detail),
            )
            .await?;
    } else {
        state
            .store
            .save_integration(
                &integration,
                &audit(&caller, &id, "support_system_saved", detail),
            )
            .await?;
    }
    Ok(Json(
        support_system_json(&state, &integration, "own").await?,
    ))
}

async fn own_integration(state: &AppState, id: &str) -> Result<Integration, ApiError> {
    state.store.integration_of(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("support system of account {id} (save it first)"))
    })
}

/// Runs each check separately (reachable, codebase, auth, permissions, callbacks); creates and
/// changes nothing in ConnectWise.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/support-system/test", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "per-check results")))]
async fn test_support_system(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_account(&state, &caller, &id).await?;
    let mut i = own_integration(&state, &id).await?;
    let report = match state.sync.connectors.connector(&i) {
        Ok(psa) => psa.test_connection().await,
        Err(e) => return Err(ApiError::field("support_system", e.to_string())),
    };
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|c| json!({"name": c.name, "ok": c.ok, "message": c.message}))
        .collect();
    let passed = report.passed();
    i.last_test = Some(
        json!({ "at": crate::views::rfc3339(now_millis()), "passed": passed, "checks": checks }),
    );
    i.tested_ok = passed;
    if !passed {
        i.active = false;
    }
    state
        .store
        .save_integration(
            &i,
            &audit(
                &caller,
                &id,
                "support_system_tested",
                json!({"passed": passed}),
            ),
        )
        .await?;
    Ok(Json(json!({ "passed": passed, "checks": checks })))
}

/// Activates a tested integration; registers (or repairs) its ConnectWise callback when a
/// public URL is configured, else it runs on polling alone.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/support-system/activate", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "the support system")))]
async fn activate_support_system(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_account(&state, &caller, &id).await?;
    let mut i = own_integration(&state, &id).await?;
    if !i.tested_ok {
        return Err(ApiError::conflict(
            "run the Test first: only an integration that passed it can be activated",
        ));
    }
    i.active = true;
    i.updated_at = now_millis();
    match hook_url(&state, &i.id) {
        Some(url) => {
            let psa = state
                .sync
                .connectors
                .connector(&i)
                .map_err(|e| ApiError::upstream(&e))?;
            match psa.ensure_callback(&url).await {
                Ok(reg) => {
                    i.callback_id = Some(reg.id);
                    i.sync_mode = "callbacks".into();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "callback registration failed; polling alone");
                    i.sync_mode = "polling".into();
                }
            }
        }
        None => i.sync_mode = "polling".into(),
    }
    state
        .store
        .save_integration(
            &i,
            &audit(
                &caller,
                &id,
                "support_system_activated",
                json!({"sync_mode": i.sync_mode}),
            ),
        )
        .await?;
    Ok(Json(support_system_json(&state, &i, "own").await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestTicketBody {
    #[serde(default)]
    board_id: Option<i64>,
}

/// Sends a test ticket under the parent company and closes it again.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/support-system/test-ticket", tag = "settings", params(("id" = String, Path)), request_body(content = Option<TestTicketBody>, description = "optional; the board to file it on"), responses((status = 200, description = "the test ticket")))]
async fn test_ticket(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_account(&state, &caller, &id).await?;
    let b: TestTicketBody = if body.is_empty() {
        TestTicketBody::default()
    } else {
        parse_json(&body)?
    };
    let i = own_integration(&state, &id).await?;
    let company = i
        .parent_company_identifier
        .clone()
        .ok_or_else(|| ApiError::field("parent_company_identifier", "needed for a test ticket"))?;
    let psa = state
        .sync
        .connectors
        .connector(&i)
        .map_err(|e| ApiError::upstream(&e))?;
    let board_id = match b.board_id {
        Some(b) => b,
        None => psa
            .boards()
            .await
            .map_err(|e| ApiError::upstream(&e))?
            .into_iter()
            .find(|b| !b.inactive)
            .map(|b| b.id)
            .ok_or_else(|| ApiError::field("board_id", "ConnectWise has no active board"))?,
    };
    let ticket = psa
        .create_ticket(&casebridge_connector::NewTicket {
            summary: "Casebridge test ticket".into(),
            board_id,
            status_id: None,
            company_identifier: company,
            priority_id: None,
            type_id: None,
            subtype_id: None,
            item_id: None,
            external_xref: format!("casebridge-test-{}", now_millis()),
            initial_description:
                "A test ticket from Casebridge's Support System settings. It closes itself.".into(),
            initial_internal_analysis: String::new(),
            severity: None,
            impact: None,
            process_notifications: false,
        })
        .await
        .map_err(|e| ApiError::upstream(&e))?;
    let statuses = psa
        .board_statuses(board_id)
        .await
        .map_err(|e| ApiError::upstream(&e))?;
    let closed = statuses
        .iter()
        .filter(|s| s.closed_status && !s.inactive)
        .min_by_key(|s| s.sort_order)
        .map(|s| s.id);
    let closed_ok = match closed {
        Some(s) => psa.set_ticket_status(ticket.id, s).await.is_ok(),
        None => false,
    };
    Ok(Json(
        json!({ "ticket_id": ticket.id, "board_id": board_id, "closed_again": closed_ok }),
    ))
}

/// The account whose resource the caller may write: 409 while uniform mode governs it.
async fn writable_mapping_account(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Account, ApiError> {
    let account = admin_account(state, caller, id).await?;
    if let Some(parent) = &account.parent_id
        && state.store.integration_of(&account.id).await?.is_none()
        && let Some(pi) = state.store.integration_of(parent).await?
        && pi.apply_to_all_subtenants
        && pi.uniform_subtenant_mappings
    {
        let mut e = ApiError::conflict(
            "the partner's uniform_subtenant_mappings setting is on: this sub-tenant routes with the partner's mappings",
        );
        e.fields
            .push(("uniform_subtenant_mappings".into(), "on".into()));
        return Err(e);
    }
    Ok(account)
}

/// The connector of the integration in effect for `account`, if it has an active one.
async fn connector_for(
    state: &AppState,
    account: &Account,
) -> Result<Option<(Integration, Arc<dyn Psa>)>, ApiError> {
    let (_, integration) = effective_settings(state.store.as_ref(), account).await?;
    match integration {
        Some(i) => {
            let psa = state
                .sync
                .connectors
                .connector(&i)
                .map_err(|e| ApiError::upstream(&e))?;
            Ok(Some((i, psa)))
        }
        None => Ok(None),
    }
}

async fn unassigned_rules(state: &AppState, m: Option<&BoardMappings>) -> Result<usize, ApiError> {
    let rules = state.store.rules().await?;
    Ok(match m {
        Some(m) => rules
            .iter()
            .filter(|r| {
                m.rule_type_of(&r.id)
                    .and_then(|t| m.board_of(t))
                    .and_then(|b| b.board_id)
                    .is_none()
            })
            .count(),
        None => rules.len(),
    })
}

/// Deletes an account's own copy of a mapping resource (a sub-tenant then inherits the
/// partner's), audited; 409 while uniform mode governs the account.
async fn delete_own_mapping(
    state: &AppState,
    caller: &Caller,
    id: &str,
    resource: MappingResource,
    action: &str,
) -> Result<StatusCode, ApiError> {
    writable_mapping_account(state, caller, id).await?;
    state
        .store
        .put_mapping(id, resource, None, &audit(caller, id, action, json!({})))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Board mappings in effect (`source`: own | partner) and how many rules would not be ticketed.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/board-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "board mappings")))]
async fn get_board_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.account(state.store.as_ref(), &id).await?;
    let (settings, _) = effective_settings(state.store.as_ref(), &account).await?;
    let (m, source) = match settings.board_mappings {
        Some((m, s)) => (Some(m), Some(s.as_str())),
        None => (
            board_mappings(state.store.as_ref(), &id).await?,
            Some("own"),
        ),
    };
    let unassigned = unassigned_rules(&state, m.as_ref()).await?;
    let mut body = serde_json::to_value(m.clone().unwrap_or_default()).unwrap_or(json!({}));
    body["source"] = json!(if m.is_some() { source } else { None });
    body["rules_unassigned"] = json!(unassigned);
    Ok(Json(body))
}

/// Saves the account's own board mappings, checked against ConnectWise's boards.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/board-mappings", tag = "settings", params(("id" = String, Path)), request_body(content = Object, description = "`{\"rule_types\": [{\"rule_type\", \"board_id\", \"type_id\"?, \"subtype_id\"?, \"item_id\"?, \"status_id\"?}], \"assignments\": [{\"rule_id\", \"rule_type\"}]}`"), responses((status = 200, description = "board mappings")))]
async fn put_board_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = writable_mapping_account(&state, &caller, &id).await?;
    let mut m: BoardMappings = parse_json(&body)?;
    let errors = m.validate();
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    if let Some((integration, psa)) = connector_for(&state, &account).await? {
        let boards = psa.boards().await.map_err(|e| ApiError::upstream(&e))?;
        let mut errors = Vec::new();
        for (i, rt) in m.rule_types.iter_mut().enumerate() {
            let Some(board_id) = rt.board_id else {
                continue;
            };
            match boards.iter().find(|b| b.id == board_id) {
                Some(b) if !b.inactive => rt.board_name = Some(b.name.clone()),
                Some(_) => errors.push((
                    format!("rule_types[{i}].board_id"),
                    format!("board {board_id} is inactive in ConnectWise"),
                )),
                None => errors.push((
                    format!("rule_types[{i}].board_id"),
                    format!("ConnectWise has no board {board_id}"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::fields(errors));
        }
        // propose status mappings for boards mapped for the first time
        let mut sm = state.store.status_mappings(&integration.account_id).await?;
        let mut added = false;
        for board_id in m.rule_types.iter().filter_map(|r| r.board_id) {
            if sm.for_board(board_id).is_none() {
                let statuses = psa
                    .board_statuses(board_id)
                    .await
                    .map_err(|e| ApiError::upstream(&e))?;
                let facts: Vec<_> = statuses.iter().map(|s| s.facts()).collect();
                sm.boards.push(propose_defaults(board_id, &facts));
                added = true;
            }
        }
        if added {
            state
                .store
                .put_status_mappings(
                    &integration.account_id,
                    &sm,
                    &audit(
                        &caller,
                        &integration.account_id,
                        "status_mappings_proposed",
                        json!({}),
                    ),
                )
                .await?;
        }
    }
    let value = serde_json::to_value(&m).map_err(ApiError::internal)?;
    state
        .store
        .put_mapping(
            &id,
            MappingResource::Board,
            Some(&value),
            &audit(
                &caller,
                &id,
                "board_mappings_saved",
                json!({"rule_types": m.rule_types.len(), "assignments": m.assignments.len()}),
            ),
        )
        .await?;
    get_board_mappings(State(state), caller, Path(id)).await
}

/// Deletes the account's own board mappings (a sub-tenant then inherits the partner's).
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/board-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 204, description = "deleted")))]
async fn delete_board_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_own_mapping(
        &state,
        &caller,
        &id,
        MappingResource::Board,
        "board_mappings_deleted",
    )
    .await
}

/// Criticality mappings in effect (`source`: own | partner).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/criticality-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "criticality mappings")))]
async fn get_criticality_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.account(state.store.as_ref(), &id).await?;
    let (settings, _) = effective_settings(state.store.as_ref(), &account).await?;
    let (m, source) = match settings.criticality_mappings {
        Some((m, s)) => (Some(m), Some(s.as_str())),
        None => (
            criticality_mappings(state.store.as_ref(), &id).await?,
            Some("own"),
        ),
    };
    let mut body = serde_json::to_value(m.clone().unwrap_or_default()).unwrap_or(json!({}));
    body["source"] = json!(if m.is_some() { source } else { None });
    Ok(Json(body))
}

/// Saves the account's own criticality mappings, checked against ConnectWise's priorities.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/criticality-mappings", tag = "settings", params(("id" = String, Path)), request_body(content = Object, description = "criticality → ConnectWise priority id or null: `{\"critical\": 1, …, \"informational\": null}`"), responses((status = 200, description = "criticality mappings")))]
async fn put_criticality_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = writable_mapping_account(&state, &caller, &id).await?;
    let m: CriticalityMappings = parse_json(&body)?;
    if let Some((_, psa)) = connector_for(&state, &account).await? {
        let priorities = psa.priorities().await.map_err(|e| ApiError::upstream(&e))?;
        let errors: Vec<(String, String)> = Criticality::ALL
            .iter()
            .filter_map(|c| m.priority_for(*c).map(|p| (c, p)))
            .filter(|(_, p)| !priorities.iter().any(|x| x.id == *p))
            .map(|(c, p)| {
                (
                    c.as_str().to_string(),
                    format!("ConnectWise has no priority {p}"),
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::fields(errors));
        }
    }
    let value = serde_json::to_value(&m).map_err(ApiError::internal)?;
    state
        .store
        .put_mapping(
            &id,
            MappingResource::Criticality,
            Some(&value),
            &audit(&caller, &id, "criticality_mappings_saved", value.clone()),
        )
        .await?;
    get_criticality_mappings(State(state), caller, Path(id)).await
}

/// Deletes the account's own criticality mappings.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/criticality-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 204, description = "deleted")))]
async fn delete_criticality_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_own_mapping(
        &state,
        &caller,
        &id,
        MappingResource::Criticality,
        "criticality_mappings_deleted",
    )
    .await
}

/// Company ID mappings of a partner: sub-tenant → ConnectWise company identifier.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/company-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "company mappings")))]
async fn get_company_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.account(state.store.as_ref(), &id).await?;
    let items: Vec<Value> = state
        .store
        .company_mappings(&id)
        .await?
        .into_iter()
        .map(|(a, c)| json!({"account_id": a, "company_identifier": c}))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CompanyMappingsBody {
    items: Vec<CompanyMappingItem>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CompanyMappingItem {
    account_id: String,
    company_identifier: String,
}

/// Replaces the company mappings; each identifier must exist in ConnectWise and not be deleted.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/company-mappings", tag = "settings", params(("id" = String, Path)), request_body = CompanyMappingsBody, responses((status = 200, description = "company mappings")))]
async fn put_company_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = admin_account(&state, &caller, &id).await?;
    let b: CompanyMappingsBody = parse_json(&body)?;
    let subs: Vec<String> = state
        .store
        .subtenants(&id)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    let mut errors = Vec::new();
    let psa = connector_for(&state, &account).await?;
    let mut seen = std::collections::HashSet::new();
    for (i, item) in b.items.iter().enumerate() {
        if !subs.contains(&item.account_id) && item.account_id != id {
            errors.push((
                format!("items[{i}].account_id"),
                format!("{} is not a sub-tenant of this partner", item.account_id),
            ));
        } else if !seen.insert(item.account_id.as_str()) {
            errors.push((
                format!("items[{i}].account_id"),
                format!(
                    "{} is listed twice: one company per sub-tenant",
                    item.account_id
                ),
            ));
        }
        if item.company_identifier.trim().is_empty() {
            errors.push((
                format!("items[{i}].company_identifier"),
                "must not be empty".into(),
            ));
            continue;
        }
        if let Some((_, psa)) = &psa {
            match psa.company_by_identifier(&item.company_identifier).await {
                Ok(Some(c)) if !c.deleted => {}
                Ok(Some(_)) => errors.push((
                    format!("items[{i}].company_identifier"),
                    format!(
                        "company {} is deleted in ConnectWise",
                        item.company_identifier
                    ),
                )),
                Ok(None) => errors.push((
                    format!("items[{i}].company_identifier"),
                    format!("ConnectWise has no company {}", item.company_identifier),
                )),
                Err(e) => return Err(ApiError::upstream(&e)),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let items: Vec<(String, String)> = b
        .items
        .into_iter()
        .map(|i| (i.account_id, i.company_identifier))
        .collect();
    state
        .store
        .put_company_mappings(
            &id,
            &items,
            &audit(
                &caller,
                &id,
                "company_mappings_saved",
                json!({"count": items.len()}),
            ),
        )
        .await?;
    get_company_mappings(State(state), caller, Path(id)).await
}

/// Status mappings per board (`confirmed: false` marks proposed defaults).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/status-mappings", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "status mappings")))]
async fn get_status_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.account(state.store.as_ref(), &id).await?;
    let m = state.store.status_mappings(&id).await?;
    Ok(Json(serde_json::to_value(&m).map_err(ApiError::internal)?))
}

/// Saves (and so confirms) the status mappings; every status must belong to its board.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/status-mappings", tag = "settings", params(("id" = String, Path)), request_body(content = Object, description = "`{\"boards\": [{\"board_id\", \"statuses\": {\"open\", \"escalated\", \"in_progress\", \"waiting_on_customer\", \"closed\": ConnectWise status id or null}}]}`"), responses((status = 200, description = "status mappings")))]
async fn put_status_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = admin_account(&state, &caller, &id).await?;
    let mut m: StatusMappings = parse_json(&body)?;
    if let Some((_, psa)) = connector_for(&state, &account).await? {
        let boards = psa.boards().await.map_err(|e| ApiError::upstream(&e))?;
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, b) in m.boards.iter().enumerate() {
            if !boards.iter().any(|x| x.id == b.board_id) {
                errors.push((
                    format!("boards[{i}].board_id"),
                    format!("ConnectWise has no board {}", b.board_id),
                ));
                continue;
            }
            if !seen.insert(b.board_id) {
                errors.push((
                    format!("boards[{i}].board_id"),
                    format!("board {} is listed twice", b.board_id),
                ));
                continue;
            }
            let statuses = psa
                .board_statuses(b.board_id)
                .await
                .map_err(|e| ApiError::upstream(&e))?;
            for s in casebridge_domain::CaseStatus::ALL {
                if let Some(sid) = b.statuses.get(s)
                    && !statuses.iter().any(|x| x.id == sid)
                {
                    errors.push((
                        format!("boards[{i}].statuses.{}", s.as_str()),
                        format!("status {sid} does not belong to board {}", b.board_id),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::fields(errors));
        }
    }
    for b in &mut m.boards {
        b.confirmed = true;
    }
    state
        .store
        .put_status_mappings(
            &id,
            &m,
            &audit(
                &caller,
                &id,
                "status_mappings_saved",
                json!({"boards": m.boards.len()}),
            ),
        )
        .await?;
    Ok(Json(serde_json::to_value(&m).map_err(ApiError::internal)?))
}

/// `{"auto_escalate_at": "critical" … "informational" | null}`
#[utoipa::path(get, path = "/api/v1/accounts/{id}/escalation-policy", tag = "settings", params(("id" = String, Path)), responses((status = 200, description = "escalation policy")))]
async fn get_escalation_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.account(state.store.as_ref(), &id).await?;
    let at = state.store.escalation_policy(&id).await?;
    Ok(Json(json!({ "auto_escalate_at": at.map(|c| c.as_str()) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    /// A criticality (`critical` … `informational`) or null for never.
    auto_escalate_at: Option<String>,
}

/// Sets the criticality at and above which new cases escalate by themselves (null: never).
#[utoipa::path(put, path = "/api/v1/accounts/{id}/escalation-policy", tag = "settings", params(("id" = String, Path)), request_body = PolicyBody, responses((status = 200, description = "escalation policy")))]
async fn put_escalation_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_account(&state, &caller, &id).await?;
    let b: PolicyBody = parse_json(&body)?;
    let at = b
        .auto_escalate_at
        .as_deref()
        .map(|s| {
            Criticality::parse(s).ok_or_else(|| {
                ApiError::field(
                    "auto_escalate_at",
                    "one of critical, high, medium, low, informational, or null",
                )
            })
        })
        .transpose()?;
    state
        .store
        .put_escalation_policy(
            &id,
            at,
            &audit(
                &caller,
                &id,
                "escalation_policy_saved",
                json!({"auto_escalate_at": at.map(|c| c.as_str())}),
            ),
        )
        .await?;
    Ok(Json(json!({ "auto_escalate_at": at.map(|c| c.as_str()) })))
}

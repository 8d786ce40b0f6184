//! Escalation (DESIGN §4): idempotent. A case that routing can ticket gets exactly one queued
//! create job; one that it cannot is escalated with the reason in its Activity Log and routed
//! again on the next escalation; a case with a ticket keeps it.

use casebridge_domain::routing::{RoutingCase, resolve_ticket_plan};
use casebridge_domain::{CaseStatus, Criticality, Direction};
use casebridge_store::{Activity, Case, CaseChange, NewJob};
use serde_json::json;

use crate::settings::effective_settings;
use crate::{SyncContext, SyncError};

pub const CREATE_TICKET: &str = "create_ticket";

/// Escalates a case. Returns the case as it is afterwards.
pub async fn escalate(ctx: &SyncContext, case_id: &str, actor: &str) -> Result<Case, SyncError> {
    let store = ctx.store.as_ref();
    let case = store
        .case(case_id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("case {case_id}")))?;
    let new_status = match case.status {
        CaseStatus::Open | CaseStatus::Closed => Some(CaseStatus::Escalated),
        _ => None,
    };
    if let Some(t) = case
        .ticket
        .as_ref()
        .filter(|t| !t.state.allows_new_ticket())
    {
        let msg = format!(
            "escalated again; the case keeps ConnectWise ticket #{}",
            t.id
        );
        let change = CaseChange {
            activity: vec![Activity::new(
                actor,
                Direction::Local,
                "escalate_repeat",
                msg,
            )],
            ..Default::default()
        };
        return Ok(store.apply_case_change(case_id, change).await?);
    }
    if store.has_pending_create(case_id).await? {
        let change = CaseChange {
            activity: vec![Activity::new(
                actor,
                Direction::Local,
                "escalate_repeat",
                "escalated again; its ticket is already queued for creation",
            )],
            ..Default::default()
        };
        return Ok(store.apply_case_change(case_id, change).await?);
    }
    let account = store
        .account(&case.account_id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("account {}", case.account_id)))?;
    let (settings, _) = effective_settings(store, &account).await?;
    let routing_case = RoutingCase {
        account_name: &account.name,
        rule_id: &case.rule_id,
        criticality: case.criticality,
    };
    let mut activity = Vec::new();
    if let Some(t) = &case.ticket {
        activity.push(Activity::new(
            actor,
            Direction::Local,
            "ticket_relink",
            format!(
                "ticket #{} was {} in ConnectWise; a new ticket may be created",
                t.id,
                t.state.as_str()
            ),
        ));
    }
    let change = match resolve_ticket_plan(&routing_case, &settings) {
        Ok(plan) => {
            activity.push(Activity::new(
                actor,
                Direction::Local,
                "escalated",
                format!("escalated; ticket queued — {}", plan.reasons.join("; ")),
            ));
            CaseChange {
                status: new_status,
                close_reason: new_status.map(|_| None),
                routing: Some(json!({ "ticketed": true, "plan": plan })),
                activity,
                jobs: vec![NewJob {
                    kind: CREATE_TICKET.into(),
                    payload: json!({ "plan": plan }),
                }],
                ..Default::default()
            }
        }
        Err(reason) => {
            activity.push(Activity::new(
                actor,
                Direction::Local,
                "not_ticketed",
                format!("escalated; {reason}"),
            ));
            CaseChange {
                status: new_status,
                close_reason: new_status.map(|_| None),
                routing: Some(
                    json!({ "ticketed": false, "code": reason.code(), "reason": reason.to_string() }),
                ),
                activity,
                ..Default::default()
            }
        }
    };
    let case = store.apply_case_change(case_id, change).await?;
    ctx.wake_outbox.notify_one();
    Ok(case)
}

/// Escalates `case` when the account's auto-escalation policy says its criticality is high
/// enough. Returns the case after, and whether it escalated.
pub async fn auto_escalate(ctx: &SyncContext, case: &Case) -> Result<Option<Case>, SyncError> {
    let threshold: Option<Criticality> = ctx.store.escalation_policy(&case.account_id).await?;
    match threshold {
        Some(t) if case.criticality >= t && case.status == CaseStatus::Open => {
            Ok(Some(escalate(ctx, &case.id, "auto-escalation").await?))
        }
        _ => Ok(None),
    }
}

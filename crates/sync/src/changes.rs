//! Portal-side case changes that must reach ConnectWise: notes and status changes. Each writes
//! its outbox job in the same transaction as the change itself, and only when the case has a
//! ticket (or one is queued): a case that was never ticketed changes locally only.

use casebridge_domain::ids::new_id;
use casebridge_domain::{CaseStatus, Direction, NoteOrigin, Visibility};
use casebridge_store::{Activity, Case, CaseChange, NewJob, Note, now_millis};
use serde_json::json;

use crate::{SyncContext, SyncError};

pub const ADD_NOTE: &str = "add_note";
pub const UPDATE_STATUS: &str = "update_status";

async fn reaches_connectwise(ctx: &SyncContext, case: &Case) -> Result<bool, SyncError> {
    let linked = case
        .ticket
        .as_ref()
        .is_some_and(|t| !t.state.allows_new_ticket());
    Ok(linked || ctx.store.has_pending_create(&case.id).await?)
}

/// Adds a portal note; queues it for the ticket when the case has one.
pub async fn add_note(
    ctx: &SyncContext,
    case_id: &str,
    text: &str,
    visibility: Visibility,
    author: &str,
) -> Result<(Case, Note), SyncError> {
    let case = ctx
        .store
        .case(case_id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("case {case_id}")))?;
    let note = Note {
        id: new_id("note"),
        case_id: case_id.to_string(),
        text: text.to_string(),
        visibility,
        origin: NoteOrigin::Portal,
        author: author.to_string(),
        cw_note_id: None,
        created_at: now_millis(),
    };
    let mut change = CaseChange {
        note: Some(note.clone()),
        ..Default::default()
    };
    if reaches_connectwise(ctx, &case).await? {
        change.activity.push(Activity::new(
            author,
            Direction::Local,
            "note_added",
            format!("{} note added; queued for the ticket", visibility.as_str()),
        ));
        change.jobs.push(NewJob {
            kind: ADD_NOTE.into(),
            payload: json!({ "note_id": note.id }),
        });
    } else {
        change.activity.push(Activity::new(
            author,
            Direction::Local,
            "note_added",
            format!(
                "{} note added (the case has no ticket)",
                visibility.as_str()
            ),
        ));
    }
    let case = ctx.store.apply_case_change(case_id, change).await?;
    ctx.wake_outbox.notify_one();
    Ok((case, note))
}

/// Changes a case's status from the portal; a close may carry a resolution text, kept as a
/// shared note of the case and sent to the ticket as its resolution. Setting the status the case
/// already has changes nothing; a resolution for a case that is already closed is refused (it
/// would otherwise be dropped unseen).
pub async fn change_status(
    ctx: &SyncContext,
    case_id: &str,
    status: CaseStatus,
    close_reason: Option<String>,
    resolution: Option<String>,
    actor: &str,
) -> Result<Case, SyncError> {
    let case = ctx
        .store
        .case(case_id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("case {case_id}")))?;
    let resolution = resolution.filter(|t| !t.trim().is_empty());
    if resolution.is_some() && status != CaseStatus::Closed {
        return Err(SyncError::Field(
            "resolution",
            "only with status closed".into(),
        ));
    }
    if case.status == status {
        if resolution.is_some() {
            return Err(SyncError::Field(
                "resolution",
                "the case is already closed; add the text as a note instead".into(),
            ));
        }
        return Ok(case);
    }
    let reopen = case.status == CaseStatus::Closed;
    let mut msg = format!("status {} → {}", case.status.as_str(), status.as_str());
    if let Some(r) = &close_reason {
        msg.push_str(&format!(" (reason: {r})"));
    }
    let mut change = CaseChange {
        expect_status: Some(case.status),
        status: Some(status),
        close_reason: Some(if status == CaseStatus::Closed {
            close_reason.or(Some("resolved".into()))
        } else {
            None
        }),
        ..Default::default()
    };
    let note = resolution.map(|text| Note {
        id: new_id("note"),
        case_id: case_id.to_string(),
        text,
        visibility: Visibility::Shared,
        origin: NoteOrigin::Portal,
        author: actor.to_string(),
        cw_note_id: None,
        created_at: now_millis(),
    });
    if note.is_some() {
        msg.push_str(" with a closing note");
    }
    if reaches_connectwise(ctx, &case).await? {
        msg.push_str("; queued for the ticket");
        change.jobs.push(NewJob {
            kind: UPDATE_STATUS.into(),
            payload: json!({
                "status": status.as_str(),
                "reopen": reopen,
                "resolution": note.as_ref().map(|n| n.text.clone()),
                "resolution_note_id": note.as_ref().map(|n| n.id.clone()),
            }),
        });
    }
    change.note = note;
    change.activity.push(Activity::new(
        actor,
        Direction::Local,
        if reopen { "reopened" } else { "status_changed" },
        msg,
    ));
    let case = ctx.store.apply_case_change(case_id, change).await?;
    ctx.wake_outbox.notify_one();
    Ok(case)
}

//! The outbox worker: runs queued jobs against ConnectWise.
//!
//! Jobs are claimed per case — only a case's oldest unfinished job, under a lease that a
//! heartbeat extends — so a note never overtakes its ticket's creation and a dead node's jobs are
//! taken over when its lease runs out. Every attempt is recorded. Retryable failures (429, 5xx,
//! timeouts) back off exponentially with jitter, honouring `Retry-After`; after
//! `max_attempts`, or at once for failures no retry can fix (validation, permission, bad keys),
//! the job is parked as dead and the case's later jobs wait behind it.
//!
//! Exactly one ticket per case: a create whose earlier attempt may have reached ConnectWise
//! (`attempts > 1` — claims count, so a crash before recording counts too) first looks the
//! ticket up by `externalXRef` = case id and adopts it. Notes likewise, by their marker.
//!
//! Request budget: before a job runs, its requests are reserved from its integration's budget
//! (`SyncConfig::request_budget` a `budget_window`, shared by every node through the store and
//! divided fairly between sub-tenants); a job over budget waits for the next window without
//! counting an attempt.
//!
//! Shutdown: `run` stops claiming when told to, finishes what it holds, and releases anything
//! left so another node can take it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge_connector::{NewNote, NewTicket, Psa, PsaError, Ticket};
use casebridge_domain::ids::new_id;
use casebridge_domain::status_mapping::reopen_status;
use casebridge_domain::text::truncate_utf16;
use casebridge_domain::ticket_content::{
    CaseForTicket, build_ticket_content, find_note_marker, note_marker, outbound_note_text,
};
use casebridge_domain::{CaseStatus, Direction, TicketPlan, TicketState, Visibility};
use casebridge_store::{
    Activity, Attempt, Case, CaseChange, Integration, Job, JobOutcome, StoreError, TicketLink,
    TicketLinkChange, TicketSyncState, now_millis,
};
use time::format_description::well_known::Rfc3339;

use crate::SyncContext;
use crate::changes::{ADD_NOTE, UPDATE_STATUS};
use crate::escalation::CREATE_TICKET;

const ACTOR: &str = "sync";

/// One worker; run several (one per node) against the same store.
pub struct Worker {
    ctx: SyncContext,
    owner: String,
}

/// What a successful job changes on its case.
struct Success {
    effects: CaseChange,
    sync_state: Option<TicketSyncState>,
    status_code: Option<i64>,
}

/// Why a job failed: a PSA error, or a reason no retry can fix.
enum Failure {
    Psa(PsaError),
    Permanent(String),
}

impl From<PsaError> for Failure {
    fn from(e: PsaError) -> Self {
        Failure::Psa(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Permanent(format!("storage error: {e}"))
    }
}

impl Worker {
    pub fn new(ctx: SyncContext) -> Self {
        Self {
            ctx,
            owner: new_id("worker"),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` turns true; then releases whatever it still holds.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox round failed"),
            }
            tokio::select! {
                _ = self.ctx.wake_outbox.notified() => {}
                _ = tokio::time::sleep(self.ctx.config.poll_interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break; // the sender is gone: nobody can tell us to stop any more
                    }
                }
            }
        }
        if let Err(e) = self.ctx.store.release_jobs(&self.owner).await {
            tracing::warn!(error = %e, "could not release leased jobs at shutdown");
        }
    }

    /// Claims one batch of due jobs and runs them (concurrently, one per case). Returns how many
    /// jobs ran. Tests drive the outbox with this instead of waiting.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let cfg = &self.ctx.config;
        let now = now_millis();
        let lease_ms = cfg.lease.as_millis() as i64;
        let jobs = self
            .ctx
            .store
            .claim_jobs(&self.owner, now, now + lease_ms, cfg.batch)
            .await?;
        if jobs.is_empty() {
            return Ok(0);
        }
        let n = jobs.len();
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        // The jobs run as tasks owned by this round: if the round is dropped (the worker is
        // cancelled or its runtime goes away), they are aborted with it instead of running on
        // without a heartbeat while another node takes their expired leases over.
        let mut work = tokio::task::JoinSet::new();
        for job in jobs {
            let ctx = self.ctx.clone();
            let owner = self.owner.clone();
            work.spawn(async move { run_job(&ctx, &owner, job).await });
        }
        let mut beat = tokio::time::interval(cfg.lease / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                joined = work.join_next() => match joined {
                    None => break,
                    Some(Err(e)) => tracing::error!(error = %e, "outbox job task panicked"),
                    Some(Ok(())) => {}
                },
                _ = beat.tick() => {
                    let until = now_millis() + lease_ms;
                    if let Err(e) = self.ctx.store.heartbeat_jobs(&self.owner, &ids, until).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            }
        }
        Ok(n)
    }
}

/// Requests a job of this kind makes at most (lookups included).
fn request_cost(kind: &str) -> i64 {
    match kind {
        CREATE_TICKET => 3,
        _ => 2,
    }
}

/// Reserves the job's requests from its integration's budget. `Some(due_at)` when the budget
/// (or the account's fair share of it) is spent for this window: the job waits for the next.
async fn over_budget(ctx: &SyncContext, job: &Job) -> Result<Option<i64>, StoreError> {
    let integration_id = match job.payload["plan"]["integration_id"].as_str() {
        Some(i) => Some(i.to_string()),
        None => ctx
            .store
            .case(&job.case_id)
            .await?
            .and_then(|c| c.ticket)
            .map(|t| t.integration_id),
    };
    let Some(integration_id) = integration_id else {
        return Ok(None);
    };
    let window = ctx.config.budget_window.as_millis().max(1) as i64;
    let now = now_millis();
    let start = now - now % window;
    let cost = request_cost(&job.kind);
    let ok = ctx
        .store
        .reserve_requests(
            &integration_id,
            &job.account_id,
            start,
            cost,
            ctx.config.request_budget,
        )
        .await?;
    Ok(if ok { None } else { Some(start + window) })
}

async fn run_job(ctx: &SyncContext, owner: &str, job: Job) {
    match over_budget(ctx, &job).await {
        Ok(None) => {}
        Ok(Some(due_at)) => {
            tracing::debug!(job = %job.id, account = %job.account_id, "request budget spent for this window; job deferred");
            if let Err(e) = ctx.store.defer_job(&job.id, owner, due_at).await {
                tracing::warn!(job = %job.id, error = %e, "could not defer the job");
            }
            return;
        }
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "request budget unavailable; running the job anyway")
        }
    }
    let started = Instant::now();
    let result = match job.kind.as_str() {
        CREATE_TICKET => create_ticket(ctx, &job).await,
        ADD_NOTE => add_note(ctx, &job).await,
        UPDATE_STATUS => update_status(ctx, &job).await,
        other => Err(Failure::Permanent(format!("unknown job kind {other:?}"))),
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    let at = now_millis();
    let (attempt, outcome, effects, sync_state) = match result {
        Ok(s) => (
            Attempt {
                at,
                status_code: s.status_code,
                error: None,
                duration_ms,
                outcome: "done".into(),
            },
            JobOutcome::Done,
            Some(s.effects),
            s.sync_state,
        ),
        Err(f) => failed(ctx, &job, f, at, duration_ms),
    };
    match ctx
        .store
        .finish_job(&job.id, owner, &attempt, outcome, effects)
        .await
    {
        Ok(()) => {
            if let Some(s) = sync_state
                && let Err(e) = ctx.store.put_ticket_sync(&s).await
            {
                tracing::warn!(error = %e, case = %job.case_id, "could not record sync state");
            }
        }
        Err(StoreError::Conflict(m)) => {
            tracing::warn!(job = %job.id, "{m}; another worker took it over")
        }
        Err(e) => tracing::error!(job = %job.id, error = %e, "could not record the job's outcome"),
    }
}

fn failed(
    ctx: &SyncContext,
    job: &Job,
    f: Failure,
    at: i64,
    duration_ms: i64,
) -> (
    Attempt,
    JobOutcome,
    Option<CaseChange>,
    Option<TicketSyncState>,
) {
    let cfg = &ctx.config;
    let (message, status, retry, retry_after) = match &f {
        Failure::Psa(e) => (
            e.to_string(),
            e.status_code().map(i64::from),
            e.is_retryable(),
            e.retry_after(),
        ),
        Failure::Permanent(m) => (m.clone(), None, false, None),
    };
    let what = describe_job(job);
    let (outcome, activity) = if retry && job.attempts < cfg.max_attempts {
        let delay =
            retry_after.unwrap_or_else(|| backoff(cfg.backoff_base, cfg.backoff_max, job.attempts));
        let due_at = at + delay.as_millis() as i64;
        let msg = format!(
            "{what} failed (attempt {} of {}): {message}; retrying in {}",
            job.attempts,
            cfg.max_attempts,
            human_duration(delay)
        );
        (
            JobOutcome::Retry {
                due_at,
                error: message.clone(),
            },
            Activity::new(ACTOR, Direction::Outbound, "sync_retry", msg),
        )
    } else {
        let msg = if retry {
            format!(
                "{what} failed after {} attempts: {message}; parked as dead (retry it from Sync jobs)",
                job.attempts
            )
        } else {
            format!(
                "{what} failed: {message}; parked as dead — no retry can fix this (fix it, then retry the job)"
            )
        };
        (
            JobOutcome::Dead {
                error: message.clone(),
            },
            Activity::new(ACTOR, Direction::Outbound, "sync_failed", msg),
        )
    };
    let attempt = Attempt {
        at,
        status_code: status,
        error: Some(truncate_utf16(&message, 500)),
        duration_ms,
        outcome: match outcome {
            JobOutcome::Retry { .. } => "retry".into(),
            _ => "dead".into(),
        },
    };
    (
        attempt,
        outcome,
        Some(CaseChange {
            activity: vec![activity],
            ..Default::default()
        }),
        None,
    )
}

fn describe_job(job: &Job) -> &'static str {
    match job.kind.as_str() {
        CREATE_TICKET => "creating the ConnectWise ticket",
        ADD_NOTE => "sending the note to ConnectWise",
        UPDATE_STATUS => "sending the status change to ConnectWise",
        _ => "the sync job",
    }
}

/// Exponential backoff with full jitter in the upper half: base·2^(attempt-1), capped.
pub fn backoff(base: Duration, max: Duration, attempt: i64) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.clamp(1, 20).saturating_sub(1) as u32)
        .min(max);
    let half = exp / 2;
    half + Duration::from_millis(rand::random_range(0..=half.as_millis().max(1) as u64))
}

fn human_duration(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

async fn load_case(ctx: &SyncContext, job: &Job) -> Result<Case, Failure> {
    ctx.store
        .case(&job.case_id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("case {} no longer exists", job.case_id)))
}

async fn load_integration(
    ctx: &SyncContext,
    id: &str,
) -> Result<(Integration, Arc<dyn Psa>), Failure> {
    let integration = ctx
        .store
        .integration(id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("support system {id} no longer exists")))?;
    if !integration.active {
        return Err(Failure::Permanent(
            "the support system is not active".into(),
        ));
    }
    let psa = ctx.connectors.connector(&integration)?;
    Ok((integration, psa))
}

fn cw_time(t: &Ticket) -> Option<String> {
    t.last_updated.and_then(|t| t.format(&Rfc3339).ok())
}

/// A link a person can open: cw-sim's ticket page for a private (demo) site, else ConnectWise's
/// classic ticket URL.
pub fn ticket_url(i: &Integration, ticket_id: i64) -> String {
    let site = i.site_url.trim_end_matches('/');
    if i.allow_private_hosts {
        format!("{site}/ui/tickets/{ticket_id}")
    } else {
        format!(
            "{site}/v4_6_release/services/system_io/Service/fv_sr100_request.rsp?service_recid={ticket_id}"
        )
    }
}

async fn create_ticket(ctx: &SyncContext, job: &Job) -> Result<Success, Failure> {
    let plan: TicketPlan = serde_json::from_value(job.payload["plan"].clone())
        .map_err(|e| Failure::Permanent(format!("the queued ticket plan is unreadable: {e}")))?;
    let case = load_case(ctx, job).await?;
    if let Some(t) = case
        .ticket
        .as_ref()
        .filter(|t| t.state == TicketState::Linked)
    {
        let msg = format!(
            "create skipped: the case already has ConnectWise ticket #{}",
            t.id
        );
        return Ok(Success {
            effects: CaseChange {
                activity: vec![Activity::new(
                    ACTOR,
                    Direction::Outbound,
                    "create_skipped",
                    msg,
                )],
                ..Default::default()
            },
            sync_state: None,
            status_code: None,
        });
    }
    let (integration, psa) = load_integration(ctx, &plan.integration_id).await?;
    let mut activity = Vec::new();
    // A ticket the case lost (deleted, or merged away: a merged ticket stays in ConnectWise with
    // the same externalXRef) is never adopted; only one an earlier attempt of this create made.
    let lost = case.ticket.as_ref().map(|t| t.id);
    let earlier = if job.attempts > 1 {
        psa.find_tickets_by_external_ref(&case.id)
            .await?
            .into_iter()
            .find(|t| Some(t.id) != lost && t.merged_parent_id.is_none())
    } else {
        None
    };
    let (ticket, code) = match earlier {
        Some(t) => {
            activity.push(Activity::new(
                ACTOR,
                Direction::Outbound,
                "ticket_adopted",
                format!("found ConnectWise ticket #{} made by an earlier attempt (externalXRef {}); adopted it instead of creating another", t.id, case.id),
            ));
            (t, 200)
        }
        None => {
            let new_ticket = new_ticket_for(ctx, &case, &plan, &integration).await?;
            (psa.create_ticket(&new_ticket).await?, 201)
        }
    };
    activity.push(Activity::new(
        ACTOR,
        Direction::Outbound,
        "ticket_created",
        format!(
            "ConnectWise ticket #{} on board {} under company {}{}",
            ticket.id,
            ticket.board_id.unwrap_or(plan.board_id),
            ticket
                .company_identifier
                .as_deref()
                .unwrap_or(&plan.company_identifier),
            plan.priority_id
                .map(|p| format!(", priority {p}"))
                .unwrap_or_default()
        ),
    ));
    // The ticket's first notes are ours (description, internal analysis): never import them.
    let seen: Vec<i64> = psa
        .notes(ticket.id)
        .await
        .map(|n| n.iter().map(|n| n.id).collect())
        .unwrap_or_default();
    let link = TicketLink {
        id: ticket.id,
        integration_id: integration.id.clone(),
        board_id: ticket.board_id.or(Some(plan.board_id)),
        status_id: ticket.status_id,
        priority_id: ticket.priority_id.or(plan.priority_id),
        company_identifier: ticket
            .company_identifier
            .clone()
            .or(Some(plan.company_identifier.clone())),
        url: Some(ticket_url(&integration, ticket.id)),
        state: TicketState::Linked,
    };
    Ok(Success {
        effects: CaseChange {
            ticket: Some(TicketLinkChange::Set(link)),
            activity,
            ..Default::default()
        },
        sync_state: Some(TicketSyncState {
            case_id: case.id.clone(),
            integration_id: integration.id.clone(),
            ticket_id: ticket.id,
            last_status_id: ticket.status_id,
            last_write_cw_at: cw_time(&ticket),
            seen_note_ids: seen,
        }),
        status_code: Some(code),
    })
}

async fn new_ticket_for(
    ctx: &SyncContext,
    case: &Case,
    plan: &TicketPlan,
    integration: &Integration,
) -> Result<NewTicket, Failure> {
    let account_name = ctx
        .store
        .account(&case.account_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    let rule_title = ctx
        .store
        .rule(&case.rule_id)
        .await?
        .map(|r| r.title)
        .unwrap_or_else(|| case.rule_id.clone());
    let observables: Vec<(String, String)> = case
        .observables
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    Some((
                        o.get("kind")?.as_str()?.to_string(),
                        o.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    // the portal has no UI yet: the link points at the case's API resource
    let portal = ctx
        .portal_url
        .as_ref()
        .map(|u| format!("{}/api/v1/cases/{}", u.trim_end_matches('/'), case.id));
    let content = build_ticket_content(&CaseForTicket {
        case_id: &case.id,
        title: &case.title,
        description: &case.description,
        criticality: case.criticality,
        rule_id: &case.rule_id,
        rule_title: &rule_title,
        account_name: &account_name,
        observables,
        source_format: &case.source_format,
        alert_count: case.alert_count,
        portal_url: portal.as_deref(),
    });
    Ok(NewTicket {
        summary: content.summary,
        board_id: plan.board_id,
        status_id: plan.status_id,
        company_identifier: plan.company_identifier.clone(),
        priority_id: plan.priority_id,
        type_id: plan.type_id,
        subtype_id: plan.subtype_id,
        item_id: plan.item_id,
        external_xref: case.id.clone(),
        initial_description: content.initial_description,
        initial_internal_analysis: content.initial_internal_analysis,
        severity: Some(content.severity.to_string()),
        impact: Some(content.impact.to_string()),
        process_notifications: integration.process_notifications,
    })
}

/// The case's ticket, when it is still linked; otherwise a success that only logs the skip.
async fn linked_ticket(
    ctx: &SyncContext,
    case: &Case,
    what: &str,
) -> Result<Result<(TicketLink, Integration, Arc<dyn Psa>), Success>, Failure> {
    match &case.ticket {
        Some(t) if t.state == TicketState::Linked => {
            let (integration, psa) = load_integration(ctx, &t.integration_id).await?;
            Ok(Ok((t.clone(), integration, psa)))
        }
        other => {
            let why = match other {
                Some(t) => format!("ticket #{} was {} in ConnectWise", t.id, t.state.as_str()),
                None => "the case has no ticket".to_string(),
            };
            let msg = format!("{what} not sent: {why}");
            Ok(Err(Success {
                effects: CaseChange {
                    activity: vec![Activity::new(
                        ACTOR,
                        Direction::Outbound,
                        "sync_skipped",
                        msg,
                    )],
                    ..Default::default()
                },
                sync_state: None,
                status_code: None,
            }))
        }
    }
}

async fn remember_write(
    ctx: &SyncContext,
    case: &Case,
    link: &TicketLink,
    note_id: Option<i64>,
    status: Option<i64>,
    ticket: Option<&Ticket>,
) -> Result<TicketSyncState, Failure> {
    let mut s = ctx
        .store
        .ticket_sync(&case.id)
        .await?
        .unwrap_or_else(|| TicketSyncState {
            case_id: case.id.clone(),
            integration_id: link.integration_id.clone(),
            ticket_id: link.id,
            ..Default::default()
        });
    if let Some(n) = note_id
        && !s.seen_note_ids.contains(&n)
    {
        s.seen_note_ids.push(n);
    }
    if let Some(st) = status {
        s.last_status_id = Some(st);
    }
    if let Some(t) = ticket.and_then(cw_time) {
        s.last_write_cw_at = Some(t);
    }
    Ok(s)
}

async fn add_note(ctx: &SyncContext, job: &Job) -> Result<Success, Failure> {
    let case = load_case(ctx, job).await?;
    let note_id = job.payload["note_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let note = ctx
        .store
        .notes(&case.id)
        .await?
        .into_iter()
        .find(|n| n.id == note_id)
        .ok_or_else(|| Failure::Permanent(format!("note {note_id} no longer exists")))?;
    let (link, integration, psa) = match linked_ticket(ctx, &case, "note").await? {
        Ok(t) => t,
        Err(skip) => return Ok(skip),
    };
    let existing = already_sent(psa.as_ref(), job, link.id, &note.id).await?;
    let (sent, code, verb) = match existing {
        Some(n) => (n, 200, "found on"),
        None => {
            let shared = note.visibility == Visibility::Shared;
            let n = psa
                .add_note(
                    link.id,
                    &NewNote {
                        text: outbound_note_text(&note.text, &note.id),
                        discussion: shared,
                        internal: !shared,
                        resolution: false,
                        process_notifications: integration.process_notifications,
                    },
                )
                .await?;
            (n, 201, "sent to")
        }
    };
    let flag = if note.visibility == Visibility::Shared {
        "discussion"
    } else {
        "internal analysis"
    };
    let msg = format!(
        "{} note {verb} ticket #{} ({flag}, ConnectWise note {})",
        note.visibility.as_str(),
        link.id,
        sent.id
    );
    let state = remember_write(ctx, &case, &link, Some(sent.id), None, None).await?;
    Ok(Success {
        effects: CaseChange {
            note_delivered: Some((note.id.clone(), sent.id)),
            activity: vec![Activity::new(ACTOR, Direction::Outbound, "note_sent", msg)],
            ..Default::default()
        },
        sync_state: Some(state),
        status_code: Some(code),
    })
}

/// After an earlier attempt of `job` (whose POST may have landed without us seeing the answer),
/// the ticket's note carrying `marker_owner`'s marker, if there is one; never on a first attempt.
async fn already_sent(
    psa: &dyn Psa,
    job: &Job,
    ticket_id: i64,
    marker_owner: &str,
) -> Result<Option<casebridge_connector::Note>, Failure> {
    if job.attempts <= 1 {
        return Ok(None);
    }
    let marker = note_marker(marker_owner);
    Ok(psa
        .notes(ticket_id)
        .await?
        .into_iter()
        .find(|n| find_note_marker(&n.text) == Some(marker.as_str())))
}

async fn update_status(ctx: &SyncContext, job: &Job) -> Result<Success, Failure> {
    let case = load_case(ctx, job).await?;
    let status = job.payload["status"]
        .as_str()
        .and_then(CaseStatus::parse)
        .ok_or_else(|| Failure::Permanent("the queued status change is unreadable".into()))?;
    let reopen = job.payload["reopen"].as_bool().unwrap_or(false);
    let (link, integration, psa) = match linked_ticket(ctx, &case, "status change").await? {
        Ok(t) => t,
        Err(skip) => return Ok(skip),
    };
    let board = link.board_id.unwrap_or_default();
    let mappings = ctx.store.status_mappings(&integration.account_id).await?;
    let mapping = mappings.for_board(board);
    let target = mapping.and_then(|m| {
        if reopen {
            reopen_status(m)
        } else {
            m.statuses.get(status)
        }
    });
    let mut activity = Vec::new();
    let mut note_id = None;
    let mut delivered = None;
    if let Some(text) = job.payload["resolution"]
        .as_str()
        .filter(|t| !t.trim().is_empty() && status == CaseStatus::Closed)
    {
        // The closing note is the case's note (jobs queued before it was kept as one carry
        // only the text, marked by the job id). Like any note it is sent exactly once: after an
        // earlier attempt (whose POST may have landed before the status change failed) it is
        // looked up on the ticket by its marker first.
        let local_note = job.payload["resolution_note_id"].as_str();
        let marker_owner = local_note.map_or_else(|| format!("{}r", job.id), str::to_string);
        let existing = already_sent(psa.as_ref(), job, link.id, &marker_owner).await?;
        let (n, verb) = match existing {
            Some(n) => (n, "found on"),
            None => {
                let n = psa
                    .add_note(
                        link.id,
                        &NewNote {
                            text: outbound_note_text(text, &marker_owner),
                            discussion: false,
                            internal: false,
                            resolution: true,
                            process_notifications: integration.process_notifications,
                        },
                    )
                    .await?;
                (n, "sent to")
            }
        };
        note_id = Some(n.id);
        delivered = local_note.map(|id| (id.to_string(), n.id));
        activity.push(Activity::new(
            ACTOR,
            Direction::Outbound,
            "note_sent",
            format!(
                "closing note {verb} ticket #{} as its resolution (ConnectWise note {})",
                link.id, n.id
            ),
        ));
    }
    let Some(target) = target else {
        activity.push(Activity::new(
            ACTOR,
            Direction::Outbound,
            "status_not_sent",
            format!(
                "status {} not sent: no ConnectWise status is mapped to it on board {board}",
                status.as_str()
            ),
        ));
        let state = remember_write(ctx, &case, &link, note_id, None, None).await?;
        return Ok(Success {
            effects: CaseChange {
                note_delivered: delivered,
                activity,
                ..Default::default()
            },
            sync_state: Some(state),
            status_code: None,
        });
    };
    let ticket = psa.set_ticket_status(link.id, target).await?;
    activity.push(Activity::new(
        ACTOR,
        Direction::Outbound,
        "status_sent",
        format!(
            "ticket #{} moved to ConnectWise status {}{} for case status {}",
            link.id,
            target,
            ticket
                .status_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            status.as_str()
        ),
    ));
    let state = remember_write(ctx, &case, &link, note_id, Some(target), Some(&ticket)).await?;
    Ok(Success {
        effects: CaseChange {
            ticket: Some(TicketLinkChange::UpdateStatus(target)),
            note_delivered: delivered,
            activity,
            ..Default::default()
        },
        sync_state: Some(state),
        status_code: Some(200),
    })
}

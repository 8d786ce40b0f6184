//! Reconciliation (DESIGN §4): polling so that missed, disabled or forged callbacks never leave
//! the two sides apart.
//!
//! - [`Reconciler::run_once`]: per active integration, re-read the linked tickets ConnectWise
//!   reports as updated since the watermark (ConnectWise's clock) minus `reconcile_overlap`, sync
//!   each, and move the watermark to the newest `lastUpdated` seen.
//! - [`Reconciler::sweep_notes`]: re-read every open linked ticket (a note may not move
//!   `lastUpdated`; a deleted ticket is simply missing from the updated list).
//! - [`check_callback_registration`]: notices a registration ConnectWise disabled (or lost) and
//!   repairs it; otherwise the integration runs on polling alone.

use std::collections::HashMap;

use casebridge_domain::CaseStatus;
use casebridge_store::{Case, Integration};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::inbound::{format_cw_time, record_failure, sync_ticket};
use crate::{SyncContext, SyncError};

/// `sync_mode` of an integration that receives callbacks.
pub const MODE_CALLBACKS: &str = "callbacks";
/// `sync_mode` of an integration that runs on polling alone.
pub const MODE_POLLING: &str = "polling";

/// What one reconciliation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Active integrations looked at.
    pub integrations: usize,
    /// Linked tickets asked about.
    pub linked: usize,
    /// Tickets ConnectWise reported as updated since the watermark (minus the overlap).
    pub updated: usize,
    /// Of those, synced without error.
    pub synced: usize,
    /// One line per failure (integration or ticket).
    pub errors: Vec<String>,
}

/// The URL to register for an integration's callbacks under the portal's public base URL.
/// ConnectWise appends the record id to the registered URL, so it ends in `?recordId=`.
pub fn hook_url(public_base: &str, integration_id: &str) -> String {
    format!(
        "{}/hooks/connectwise/{integration_id}?recordId=",
        public_base.trim_end_matches('/')
    )
}

/// Polls linked tickets.
pub struct Reconciler {
    ctx: SyncContext,
    hook_base: Option<String>,
}

impl Reconciler {
    pub fn new(ctx: SyncContext) -> Self {
        Self {
            ctx,
            hook_base: None,
        }
    }

    /// The public base URL ConnectWise reaches the hook endpoint on; registration checks use it
    /// (otherwise they repair the URL already registered).
    pub fn with_hook_base(mut self, base: impl Into<String>) -> Self {
        self.hook_base = Some(base.into());
        self
    }

    /// Runs a pass every `reconcile_interval` until `shutdown` turns true; sweeps notes every
    /// `notes_sweep_every` passes and checks callback registrations every `callback_check_every`
    /// passes (both on the first pass too).
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut pass: u64 = 0;
        let mut stoppable = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let cfg = self.ctx.config.clone();
            let due = |every: u32| every > 0 && pass.is_multiple_of(u64::from(every));
            if due(cfg.callback_check_every)
                && let Err(e) = self.check_registrations().await
            {
                tracing::warn!(error = %e, "callback registration check failed");
            }
            match self.run_once().await {
                Ok(r) if !r.errors.is_empty() => {
                    tracing::warn!(errors = ?r.errors, "reconciliation pass had failures")
                }
                Ok(r) => tracing::debug!(?r, "reconciliation pass"),
                Err(e) => tracing::warn!(error = %e, "reconciliation pass failed"),
            }
            if due(cfg.callback_check_every) {
                self.prune_inbox().await;
            }
            if due(cfg.notes_sweep_every) {
                match self.sweep_notes().await {
                    Ok(n) => tracing::debug!(tickets = n, "notes sweep"),
                    Err(e) => tracing::warn!(error = %e, "notes sweep failed"),
                }
            }
            pass += 1;
            tokio::select! {
                _ = tokio::time::sleep(cfg.reconcile_interval) => {}
                r = shutdown.changed(), if stoppable => stoppable = r.is_ok(),
            }
        }
    }

    /// Deletes processed callback events older than `inbox_retention`; returns how many went.
    pub async fn prune_inbox(&self) -> u64 {
        let retention =
            i64::try_from(self.ctx.config.inbox_retention.as_millis()).unwrap_or(i64::MAX);
        let cut = casebridge_store::now_millis().saturating_sub(retention);
        match self.ctx.store.prune_inbox(cut).await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(events = n, "old callback events pruned");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning old callback events failed");
                0
            }
        }
    }

    /// One pass over all active integrations.
    pub async fn run_once(&self) -> Result<ReconcileReport, SyncError> {
        let mut report = ReconcileReport::default();
        for integration in self
            .ctx
            .store
            .integrations()
            .await?
            .into_iter()
            .filter(|i| i.active)
        {
            report.integrations += 1;
            if let Err(e) = self.reconcile_integration(&integration, &mut report).await {
                tracing::warn!(integration = %integration.id, error = %e, "reconciliation failed");
                report
                    .errors
                    .push(format!("support system {}: {e}", integration.id));
            }
        }
        Ok(report)
    }

    async fn reconcile_integration(
        &self,
        integration: &Integration,
        report: &mut ReconcileReport,
    ) -> Result<(), SyncError> {
        let ctx = &self.ctx;
        let cases = ctx.store.linked_cases(&integration.id).await?;
        if cases.is_empty() {
            return Ok(());
        }
        report.linked += cases.len();
        let by_ticket: HashMap<i64, &Case> = cases
            .iter()
            .filter_map(|c| Some((c.ticket.as_ref()?.id, c)))
            .collect();
        let ids: Vec<i64> = by_ticket.keys().copied().collect();
        let watermark = integration
            .watermark
            .as_deref()
            .and_then(|w| OffsetDateTime::parse(w, &Rfc3339).ok());
        let overlap =
            time::Duration::try_from(ctx.config.reconcile_overlap).unwrap_or(time::Duration::ZERO);
        let since = watermark.map(|w| w - overlap);
        let psa = ctx.connectors.connector(integration)?;
        let tickets = psa.tickets_updated_since(&ids, since).await?;
        report.updated += tickets.len();
        let mut newest_ok: Option<OffsetDateTime> = None;
        let mut oldest_failed: Option<OffsetDateTime> = None;
        for t in &tickets {
            let Some(case) = by_ticket.get(&t.id) else {
                continue;
            };
            match sync_ticket(ctx, case, "reconcile").await {
                Ok(()) => {
                    report.synced += 1;
                    newest_ok = newest_ok.max(t.last_updated);
                }
                Err(e) => {
                    tracing::warn!(case = %case.id, ticket = t.id, error = %e, "reconcile: ticket sync failed");
                    report.errors.push(format!("ticket #{}: {e}", t.id));
                    record_failure(ctx, &case.id, &e).await;
                    if let Some(lu) = t.last_updated {
                        oldest_failed = Some(oldest_failed.map_or(lu, |o| o.min(lu)));
                    }
                }
            }
        }
        // Never move past a ticket that failed: the next pass must see it again.
        let mut next = newest_ok;
        if let Some(f) = oldest_failed {
            next = next.map(|n| n.min(f - time::Duration::SECOND));
        }
        if let Some(n) = next
            && watermark.is_none_or(|w| n > w)
        {
            ctx.store
                .set_watermark(&integration.id, &format_cw_time(n))
                .await?;
        }
        Ok(())
    }

    /// Re-reads every linked ticket of a case that is not closed (all active integrations):
    /// catches notes that did not move `lastUpdated` and tickets deleted in ConnectWise. Returns
    /// how many tickets were synced without error.
    pub async fn sweep_notes(&self) -> Result<usize, SyncError> {
        let ctx = &self.ctx;
        let mut n = 0;
        for integration in ctx
            .store
            .integrations()
            .await?
            .into_iter()
            .filter(|i| i.active)
        {
            for case in ctx.store.linked_cases(&integration.id).await? {
                if case.status == CaseStatus::Closed {
                    continue;
                }
                match sync_ticket(ctx, &case, "sweep").await {
                    Ok(()) => n += 1,
                    Err(e) => {
                        tracing::warn!(case = %case.id, error = %e, "notes sweep: ticket sync failed");
                        record_failure(ctx, &case.id, &e).await;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Checks the callback registration of every active integration that uses callbacks (or
    /// could, given a hook base URL). Returns how many were checked.
    pub async fn check_registrations(&self) -> Result<usize, SyncError> {
        let ctx = &self.ctx;
        let mut checked = 0;
        for integration in ctx
            .store
            .integrations()
            .await?
            .into_iter()
            .filter(|i| i.active)
        {
            let hook = match &self.hook_base {
                Some(base) => Some(hook_url(base, &integration.id)),
                None => match integration.callback_id {
                    Some(id) => {
                        let psa = ctx.connectors.connector(&integration)?;
                        match psa.callbacks().await {
                            Ok(regs) => regs.into_iter().find(|r| r.id == id).map(|r| r.url),
                            Err(e) => {
                                tracing::warn!(integration = %integration.id, error = %e, "cannot list callbacks");
                                continue;
                            }
                        }
                    }
                    None => None,
                },
            };
            let Some(hook) = hook else { continue };
            match check_callback_registration(ctx, &integration, &hook).await {
                Ok(mode) => {
                    checked += 1;
                    tracing::debug!(integration = %integration.id, mode, "callback registration checked");
                }
                Err(e) => {
                    tracing::warn!(integration = %integration.id, error = %e, "callback registration check failed")
                }
            }
        }
        Ok(checked)
    }
}

/// Makes sure ConnectWise has an active ticket callback registration for `hook_url`: an
/// existing active one is kept; a missing one, or one ConnectWise disabled after failed
/// deliveries, is repaired through `Psa::ensure_callback`. Records the outcome with
/// `set_integration_sync` (`callbacks` + registration id, or `polling` when ConnectWise refuses
/// the registration) and returns the sync mode. Transient failures are errors and change nothing.
pub async fn check_callback_registration(
    ctx: &SyncContext,
    integration: &Integration,
    hook_url: &str,
) -> Result<String, SyncError> {
    let hook_url = hook_url.trim();
    let (id, mode) = if hook_url.is_empty() {
        (None, MODE_POLLING)
    } else {
        let psa = ctx.connectors.connector(integration)?;
        let regs = psa.callbacks().await?;
        let active = regs
            .iter()
            .find(|r| r.url == hook_url && r.kind.eq_ignore_ascii_case("ticket") && !r.inactive);
        match active {
            Some(r) => (Some(r.id), MODE_CALLBACKS),
            None => {
                let disabled = regs
                    .iter()
                    .find(|r| Some(r.id) == integration.callback_id || r.url == hook_url);
                match psa.ensure_callback(hook_url).await {
                    Ok(r) if !r.inactive => {
                        match disabled {
                            Some(old) => {
                                tracing::info!(integration = %integration.id, old = old.id, new = r.id,
                                "callback registration was disabled by ConnectWise; repaired")
                            }
                            None => {
                                tracing::info!(integration = %integration.id, id = r.id, "callback registration created")
                            }
                        }
                        (Some(r.id), MODE_CALLBACKS)
                    }
                    Ok(r) => (Some(r.id), MODE_POLLING),
                    Err(e) if e.is_retryable() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(integration = %integration.id, error = %e, "callback registration refused; polling only");
                        (None, MODE_POLLING)
                    }
                }
            }
        }
    };
    if integration.callback_id != id || integration.sync_mode != mode {
        ctx.store
            .set_integration_sync(&integration.id, id, mode)
            .await?;
    }
    Ok(mode.to_string())
}

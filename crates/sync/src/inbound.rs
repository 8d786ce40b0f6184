//! Inbound sync: ConnectWise → portal (DESIGN §4 "Inbound").
//!
//! - [`accept_callback`]: verify the signature first, then drop what nobody links, store the
//!   event durably (de-duplicated by `MessageId`) and answer fast.
//! - [`Processor`]: drains the inbox, coalescing events for one ticket, and runs [`sync_ticket`].
//! - [`sync_ticket`]: a callback is only a hint — re-read the ticket and its notes, diff against
//!   [`TicketSyncState`], apply. Used by the processor and by `reconcile::Reconciler`.
//!
//! Echo and order rules: notes carrying our marker (or written by our own API member) are never
//! imported; a status change our API member made that matches what the case's status maps to is
//! not applied back; a status change whose `lastUpdated` (ConnectWise's clock) is older than our
//! last write to the ticket is not applied, and the Activity Log names both times.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use casebridge_connector::signature::DEFAULT_KEY_FETCH_TIMEOUT;
use casebridge_connector::{
    Note as CwNote, PsaError, SigningKeyFetcher, Ticket, verify_callback_signature,
};
use casebridge_domain::case::CLOSED_IN_CONNECTWISE;
use casebridge_domain::ids::new_id;
use casebridge_domain::status_mapping::{
    InboundStatusEffect, inbound_status_effect, reopen_status,
};
use casebridge_domain::ticket_content::find_note_marker;
use casebridge_domain::{
    CaseStatus, Direction, NoteOrigin, StatusMapping, TicketState, Visibility,
};
use casebridge_store::{
    Activity, Case, CaseChange, InboxEvent, Integration, Note, StoreError, TicketLinkChange,
    TicketSyncState, now_millis,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{SyncContext, SyncError};

/// Largest callback body looked at (ConnectWise sends one ticket; real ones are a few KiB).
pub const MAX_CALLBACK_BYTES: usize = 2 * 1024 * 1024;
/// A signature that fails with a cached key re-fetches the key at most this often per URL (the
/// key may have been rotated), so forged callbacks cannot make us hammer ConnectWise.
const KEY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Events taken from the inbox per round.
const INBOX_BATCH: i64 = 256;
const ACTOR: &str = "sync";

/// How the hook endpoint should answer a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// HTTP status for ConnectWise: 2xx accepted or deliberately ignored, 401 bad signature,
    /// 400 malformed, 404 unknown integration.
    pub status: u16,
    pub message: String,
}

impl CallbackOutcome {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Inbound state shared by every clone of one `SyncContext`.
#[derive(Default)]
pub struct InboundShared {
    /// Fetcher for integrations that must stay on public addresses.
    strict: OnceLock<Result<SigningKeyFetcher, String>>,
    /// Fetcher for integrations with `allow_private_hosts` (on-prem / cw-sim).
    private: OnceLock<Result<SigningKeyFetcher, String>>,
    /// When each key URL was last (re)fetched because a signature failed.
    refreshed: Mutex<HashMap<String, Instant>>,
    case_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The group-commit writer of inbox events (started on first use).
    inbox_writer: OnceLock<tokio::sync::mpsc::Sender<InboxWrite>>,
    /// When `last_callback_at` was last written per integration (written at most once a second).
    last_touch: Mutex<HashMap<String, i64>>,
    /// Integrations and linked tickets recently read, so a burst of callbacks does not read the
    /// same rows again for each one. Entries live [`LOOKUP_TTL`]: a change (deactivation, a
    /// ticket unlinked) reaches the callback path within that time, and the processor re-checks
    /// everything it takes from the inbox anyway.
    integrations: Mutex<HashMap<String, (Instant, Integration)>>,
    linked: Mutex<HashMap<(String, i64), Instant>>,
    /// Key URLs found allowed, per integration (the verdict depends only on the URL and the
    /// integration's site and host rule, which the key includes).
    allowed_key_urls: Mutex<HashSet<(String, String, bool)>>,
    /// Callbacks answered since start, by outcome (see [`InboundShared::callback_counts`]).
    answered: [std::sync::atomic::AtomicU64; 4],
}

/// The outcomes callbacks are counted by: 200, 202, 4xx, 5xx.
pub const CALLBACK_OUTCOMES: [&str; 4] = ["accepted", "ignored", "refused", "failed"];

impl InboundShared {
    /// How many callbacks were answered since start, per [`CALLBACK_OUTCOMES`] entry: accepted
    /// (200, repeats included), ignored (202), refused (4xx: signature, malformed, unknown,
    /// too large), failed (5xx: storage unavailable).
    pub fn callback_counts(&self) -> [(&'static str, u64); 4] {
        std::array::from_fn(|i| {
            (
                CALLBACK_OUTCOMES[i],
                self.answered[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    fn count(&self, status: u16) {
        let i = match status {
            200 => 0,
            202 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.answered[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a cached integration or linked-ticket lookup is trusted on the callback path.
const LOOKUP_TTL: Duration = Duration::from_secs(1);

/// One event for the inbox writer, with where to send whether it was new.
type InboxWrite = (
    InboxEvent,
    tokio::sync::oneshot::Sender<Result<bool, String>>,
);

/// Events one inbox transaction takes at most.
const INBOX_GROUP_COMMIT: usize = 256;
/// Inbox transactions committing at the same time.
const INBOX_COMMITS_IN_FLIGHT: usize = 4;

impl InboundShared {
    fn fetcher(
        &self,
        ctx: &SyncContext,
        integration: &Integration,
    ) -> Result<&SigningKeyFetcher, String> {
        let private = integration.allow_private_hosts;
        let cell = if private { &self.private } else { &self.strict };
        let timeout = ctx.config.request_timeout.min(DEFAULT_KEY_FETCH_TIMEOUT);
        cell.get_or_init(|| SigningKeyFetcher::new(integration.client_id.clone(), timeout, private))
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// Whether a failed signature may re-fetch the key at `url` now (and notes that it does).
    fn may_refresh(&self, url: &str) -> bool {
        let Ok(mut m) = self.refreshed.lock() else {
            return false;
        };
        let now = Instant::now();
        if m.get(url)
            .is_some_and(|t| now.duration_since(*t) < KEY_REFRESH_MIN_INTERVAL)
        {
            return false;
        }
        if m.len() > 1024 {
            m.clear();
        }
        m.insert(url.to_string(), now);
        true
    }

    /// Stores a callback event through the group-commit writer: callbacks arriving together
    /// share one transaction, so a burst costs one commit, not one each. True when the event is
    /// new, false for a repeated MessageId.
    async fn store_event(&self, ctx: &SyncContext, event: InboxEvent) -> Result<bool, String> {
        let writer = self.inbox_writer.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<InboxWrite>(4 * INBOX_GROUP_COMMIT);
            let store = ctx.store.clone();
            // Up to INBOX_COMMITS_IN_FLIGHT batches commit at once: while one waits for its
            // commit (a disk flush), the next burst gathers and is sent — with one commit at a
            // time, throughput would be capped at one batch per flush.
            let in_flight = Arc::new(tokio::sync::Semaphore::new(INBOX_COMMITS_IN_FLIGHT));
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break;
                    };
                    let mut batch = vec![first];
                    while batch.len() < INBOX_GROUP_COMMIT {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let store = store.clone();
                    tokio::spawn(async move {
                        let events: Vec<InboxEvent> =
                            batch.iter().map(|(e, _)| e.clone()).collect();
                        match store.insert_inbox_batch(&events).await {
                            Ok(fresh) => {
                                for ((_, reply), is_new) in batch.into_iter().zip(fresh) {
                                    let _ = reply.send(Ok(is_new));
                                }
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                for (_, reply) in batch {
                                    let _ = reply.send(Err(msg.clone()));
                                }
                            }
                        }
                        drop(permit);
                    });
                }
            });
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        writer
            .send((event, reply))
            .await
            .map_err(|_| "the inbox writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the inbox writer has stopped".to_string())?
    }

    async fn integration(
        &self,
        ctx: &SyncContext,
        id: &str,
    ) -> Result<Option<Integration>, StoreError> {
        if let Some((at, i)) = self
            .integrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            && at.elapsed() < LOOKUP_TTL
        {
            return Ok(Some(i.clone()));
        }
        let found = ctx.store.integration(id).await?;
        let mut m = self.integrations.lock().unwrap_or_else(|e| e.into_inner());
        match &found {
            Some(i) => {
                if m.len() > 1024 {
                    m.clear();
                }
                m.insert(id.to_string(), (Instant::now(), i.clone()));
            }
            None => {
                m.remove(id);
            }
        }
        Ok(found)
    }

    /// Whether a case links `ticket_id` of this integration (a positive answer is cached).
    async fn is_linked(
        &self,
        ctx: &SyncContext,
        integration_id: &str,
        ticket_id: i64,
    ) -> Result<bool, StoreError> {
        let key = (integration_id.to_string(), ticket_id);
        if self
            .linked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|at| at.elapsed() < LOOKUP_TTL)
        {
            return Ok(true);
        }
        let linked = ctx
            .store
            .case_by_ticket(integration_id, ticket_id)
            .await?
            .and_then(|c| c.ticket)
            .is_some_and(|t| t.state == TicketState::Linked);
        let mut m = self.linked.lock().unwrap_or_else(|e| e.into_inner());
        if linked {
            if m.len() > 65_536 {
                m.clear();
            }
            m.insert(key, Instant::now());
        } else {
            m.remove(&key);
        }
        Ok(linked)
    }

    /// [`casebridge_connector::key_url_allowed`] for this integration, remembering URLs that
    /// passed (parsing two URLs per callback is a measurable share of accepting one).
    fn key_url_allowed(&self, key_url: &str, integration: &Integration) -> Result<(), String> {
        let key = (
            key_url.to_string(),
            integration.site_url.clone(),
            integration.allow_private_hosts,
        );
        let mut m = self
            .allowed_key_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if m.contains(&key) {
            return Ok(());
        }
        casebridge_connector::key_url_allowed(
            key_url,
            &integration.site_url,
            integration.allow_private_hosts,
        )
        .map_err(|e| e.to_string())?;
        if m.len() > 1024 {
            m.clear();
        }
        m.insert(key);
        Ok(())
    }

    /// Whether `last_callback_at` should be written now (at most once a second per integration).
    fn should_touch(&self, integration_id: &str, now: i64) -> bool {
        let mut m = self.last_touch.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(integration_id) {
            Some(t) if now - *t < 1_000 => false,
            _ => {
                m.insert(integration_id.to_string(), now);
                true
            }
        }
    }

    fn case_lock(&self, case_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.case_locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(case_id.to_string()).or_default().clone()
    }

    fn release_case_lock(&self, case_id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut m = self.case_locks.lock().unwrap_or_else(|e| e.into_inner());
        // the map's reference and ours: nobody else waits for it
        if Arc::strong_count(&lock) <= 2 {
            m.remove(case_id);
        }
    }
}

/// Handles one callback delivery: verifies `x-content-signature` over the raw body first, then
/// drops callbacks for tickets nobody links, stores the event (de-duplicated by `MessageId`) and
/// wakes the processor. Never panics, whatever the body.
pub async fn accept_callback(
    ctx: &SyncContext,
    integration_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> CallbackOutcome {
    let outcome = answer_callback(ctx, integration_id, signature, body).await;
    ctx.inbound.count(outcome.status);
    outcome
}

async fn answer_callback(
    ctx: &SyncContext,
    integration_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> CallbackOutcome {
    let integration = match ctx.inbound.integration(ctx, integration_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return CallbackOutcome::new(404, "unknown support system"),
        Err(e) => {
            tracing::error!(error = %e, "callback: cannot read the integration");
            return CallbackOutcome::new(503, "storage unavailable");
        }
    };
    if body.len() > MAX_CALLBACK_BYTES {
        return CallbackOutcome::new(413, "callback body too large");
    }
    let Some(signature) = signature.map(str::trim).filter(|s| !s.is_empty()) else {
        return CallbackOutcome::new(401, "missing x-content-signature");
    };
    // Only Metadata.key_url is read before the signature holds; a body that is not JSON at
    // all cannot be a ConnectWise delivery and is refused as such (no key is fetched for it).
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return CallbackOutcome::new(
                400,
                format!("malformed callback: the body is not JSON ({e})"),
            );
        }
    };
    let Some(key_url) = parsed
        .get("Metadata")
        .and_then(|m| m.get("key_url"))
        .and_then(Value::as_str)
    else {
        return CallbackOutcome::new(
            401,
            "signature cannot be verified: the body has no Metadata.key_url",
        );
    };
    if let Err(reason) = ctx.inbound.key_url_allowed(key_url, &integration) {
        return CallbackOutcome::new(401, format!("signature cannot be verified: {reason}"));
    }
    if let Err(reason) = verify(ctx, &integration, key_url, signature, body).await {
        return CallbackOutcome::new(401, reason);
    }
    accept_verified(ctx, &integration, &parsed).await
}

/// Checks the signature with the (cached) key at `key_url`; a failure with a cached key
/// re-fetches it once (rate-limited) in case ConnectWise rotated it.
async fn verify(
    ctx: &SyncContext,
    integration: &Integration,
    key_url: &str,
    signature: &str,
    body: &[u8],
) -> Result<(), String> {
    let fetcher = ctx
        .inbound
        .fetcher(ctx, integration)
        .map_err(|e| format!("signature cannot be verified: {e}"))?;
    let was_cached = fetcher.cached(key_url).is_some();
    let key = fetcher
        .signing_key(
            key_url,
            &integration.site_url,
            integration.allow_private_hosts,
        )
        .await
        .map_err(|e| format!("signature cannot be verified: {e}"))?;
    if verify_callback_signature(&key, body, signature) {
        return Ok(());
    }
    if was_cached && ctx.inbound.may_refresh(key_url) {
        fetcher.forget(key_url);
        if let Ok(fresh) = fetcher
            .signing_key(
                key_url,
                &integration.site_url,
                integration.allow_private_hosts,
            )
            .await
            && fresh != key
            && verify_callback_signature(&fresh, body, signature)
        {
            return Ok(());
        }
    }
    Err("invalid x-content-signature".into())
}

/// What a verified envelope says.
#[derive(Debug, PartialEq, Eq)]
enum Envelope {
    Ticket { message_id: String, ticket_id: i64 },
    Ignored(String),
}

/// The one field of a callback's `Entity` the hook looks at.
#[derive(serde::Deserialize)]
struct EntityHead {
    #[serde(rename = "recordType")]
    record_type: Option<String>,
}

fn read_envelope(v: &Value) -> Result<Envelope, String> {
    let obj = v.as_object().ok_or("the callback is not a JSON object")?;
    let message_id = match obj.get("MessageId") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
        Some(Value::String(_)) => return Err("MessageId is empty or too long".into()),
        Some(_) => return Err("MessageId must be a string".into()),
        None => return Err("MessageId is missing".into()),
    };
    let kind = match obj.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("Type must be a string".into()),
        None => return Err("Type is missing".into()),
    };
    if !kind.eq_ignore_ascii_case("ticket") {
        return Ok(Envelope::Ignored(format!("callback type {kind:?} ignored")));
    }
    let ticket_id = match obj.get("ID") {
        Some(Value::Number(n)) => n.as_i64().filter(|i| *i > 0),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok().filter(|i| *i > 0),
        _ => None,
    }
    .ok_or("ID must be a positive ticket id")?;
    // Entity: null (deleted), a string of JSON (ConnectWise), or an object (tolerated). Only its
    // recordType matters here (the ticket is re-read anyway), so only that is deserialised.
    let record_type: Option<String> = match obj.get("Entity") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => serde_json::from_str::<EntityHead>(s)
            .ok()
            .and_then(|e| e.record_type),
        Some(o @ Value::Object(_)) => o
            .get("recordType")
            .and_then(Value::as_str)
            .map(str::to_string),
        Some(_) => return Err("Entity must be a string, an object or null".into()),
    };
    if let Some(rt) = record_type
        && !rt.eq_ignore_ascii_case("ServiceTicket")
    {
        return Ok(Envelope::Ignored(format!(
            "{rt} ignored: only service tickets are synced"
        )));
    }
    Ok(Envelope::Ticket {
        message_id,
        ticket_id,
    })
}

async fn accept_verified(
    ctx: &SyncContext,
    integration: &Integration,
    envelope: &Value,
) -> CallbackOutcome {
    let (message_id, ticket_id) = match read_envelope(envelope) {
        Ok(Envelope::Ticket {
            message_id,
            ticket_id,
        }) => (message_id, ticket_id),
        Ok(Envelope::Ignored(why)) => return CallbackOutcome::new(202, why),
        Err(e) => return CallbackOutcome::new(400, format!("malformed callback: {e}")),
    };
    if !integration.active {
        return CallbackOutcome::new(202, "the support system is not active; callback ignored");
    }
    match ctx.inbound.is_linked(ctx, &integration.id, ticket_id).await {
        Ok(true) => {}
        Ok(false) => {
            return CallbackOutcome::new(
                202,
                format!("ticket #{ticket_id} is not linked to a case; ignored"),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "callback: case lookup failed");
            return CallbackOutcome::new(503, "storage unavailable");
        }
    }
    let now = now_millis();
    let event = InboxEvent {
        message_id: message_id.clone(),
        integration_id: integration.id.clone(),
        ticket_id,
        received_at: now,
    };
    match ctx.inbound.store_event(ctx, event).await {
        Ok(true) => {}
        Ok(false) => {
            return CallbackOutcome::new(
                200,
                format!("duplicate MessageId {message_id}; already stored"),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "callback: cannot store the event");
            return CallbackOutcome::new(503, "storage unavailable");
        }
    }
    if ctx.inbound.should_touch(&integration.id, now)
        && let Err(e) = ctx.store.touch_last_callback(&integration.id, now).await
    {
        tracing::warn!(error = %e, "callback: cannot record its time");
    }
    ctx.wake_inbox.notify_one();
    CallbackOutcome::new(
        200,
        format!("accepted; ticket #{ticket_id} queued for sync"),
    )
}

/// Drains the callback inbox.
pub struct Processor {
    ctx: SyncContext,
}

impl Processor {
    pub fn new(ctx: SyncContext) -> Self {
        Self { ctx }
    }

    /// Runs until `shutdown` turns true. After a wake-up it waits `coalesce_window` so a burst of
    /// callbacks for one ticket is processed once.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut stoppable = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "inbox round failed");
            }
            tokio::select! {
                _ = self.ctx.wake_inbox.notified() => {}
                _ = tokio::time::sleep(self.ctx.config.poll_interval) => {}
                r = shutdown.changed(), if stoppable => {
                    // a dropped sender can never stop us: stop listening instead of spinning
                    stoppable = r.is_ok();
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.ctx.config.coalesce_window) => {}
                r = shutdown.changed(), if stoppable => stoppable = r.is_ok(),
            }
        }
    }

    /// Takes every pending inbox event and syncs each ticket they name once. Returns how many
    /// events were drained. Failures are logged and recorded on the case; the reconciler
    /// catches up later.
    pub async fn run_once(&self) -> Result<usize, SyncError> {
        let mut drained = 0;
        loop {
            let events = self.ctx.store.take_inbox(INBOX_BATCH).await?;
            if events.is_empty() {
                break;
            }
            drained += events.len();
            let mut seen = HashSet::new();
            let tickets: Vec<(String, i64)> = events
                .into_iter()
                .map(|e| (e.integration_id, e.ticket_id))
                .filter(|k| seen.insert(k.clone()))
                .collect();
            for (integration_id, ticket_id) in tickets {
                let case = match self
                    .ctx
                    .store
                    .case_by_ticket(&integration_id, ticket_id)
                    .await?
                {
                    Some(c)
                        if c.ticket
                            .as_ref()
                            .is_some_and(|t| t.state == TicketState::Linked) =>
                    {
                        c
                    }
                    _ => continue,
                };
                if let Err(e) = sync_ticket(&self.ctx, &case, "callback").await {
                    tracing::warn!(case = %case.id, ticket = ticket_id, error = %e, "inbound sync failed");
                    record_failure(&self.ctx, &case.id, &e).await;
                }
            }
        }
        Ok(drained)
    }
}

/// Records "inbound sync failed: …" on the case, unless its last entry already says exactly that
/// (so a ConnectWise outage does not flood the Activity Log).
pub(crate) async fn record_failure(ctx: &SyncContext, case_id: &str, e: &SyncError) {
    let msg = format!("inbound sync failed: {e}");
    if let Ok(log) = ctx.store.activity(case_id).await
        && log
            .last()
            .is_some_and(|a| a.kind == "inbound_failed" && a.message == msg)
    {
        return;
    }
    let change = CaseChange {
        activity: vec![Activity::new(
            ACTOR,
            Direction::Inbound,
            "inbound_failed",
            msg,
        )],
        ..Default::default()
    };
    if let Err(e) = ctx.store.apply_case_change(case_id, change).await {
        tracing::warn!(case = %case_id, error = %e, "could not record the inbound failure");
    }
}

fn parse_cw_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

pub(crate) fn format_cw_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Re-reads the case's ticket and its notes and applies what changed in ConnectWise. A case
/// whose link is not `linked` is left alone. `actor_hint` names what asked (`callback`,
/// `reconcile`, `sweep`) and stands in for the actor when ConnectWise names no member.
pub async fn sync_ticket(
    ctx: &SyncContext,
    case: &Case,
    actor_hint: &str,
) -> Result<(), SyncError> {
    let lock = ctx.inbound.case_lock(&case.id);
    let result = {
        let _guard = lock.lock().await;
        sync_ticket_locked(ctx, &case.id, actor_hint).await
    };
    ctx.inbound.release_case_lock(&case.id, lock);
    result
}

async fn sync_ticket_locked(
    ctx: &SyncContext,
    case_id: &str,
    actor_hint: &str,
) -> Result<(), SyncError> {
    let store = ctx.store.as_ref();
    // The caller's copy may be stale: work on the case as it is now.
    let Some(case) = store.case(case_id).await? else {
        return Ok(());
    };
    let Some(link) = case
        .ticket
        .clone()
        .filter(|t| t.state == TicketState::Linked)
    else {
        return Ok(());
    };
    let integration = store
        .integration(&link.integration_id)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("support system {}", link.integration_id)))?;
    if !integration.active {
        return Ok(());
    }
    let psa = ctx.connectors.connector(&integration)?;
    let mut state = match store.ticket_sync(&case.id).await? {
        Some(s) if s.ticket_id == link.id => s,
        _ => TicketSyncState {
            case_id: case.id.clone(),
            integration_id: integration.id.clone(),
            ticket_id: link.id,
            last_status_id: link.status_id,
            ..Default::default()
        },
    };

    let Some(ticket) = psa.get_ticket(link.id).await? else {
        let msg = format!(
            "ticket #{} was deleted in ConnectWise; escalate the case to create a new one",
            link.id
        );
        store
            .apply_case_change(
                &case.id,
                CaseChange {
                    ticket: Some(TicketLinkChange::State(TicketState::Deleted)),
                    activity: vec![Activity::new(
                        actor_hint,
                        Direction::Inbound,
                        "ticket_deleted",
                        msg,
                    )],
                    ..Default::default()
                },
            )
            .await?;
        return Ok(());
    };

    let notes = psa.notes(ticket.id).await?;
    let ours = our_members(&case, &ticket, &notes);
    import_notes(ctx, &case, &ticket, &notes, &ours, &mut state).await?;

    if let Some(parent) = ticket.merged_parent_id {
        store.put_ticket_sync(&state).await?;
        let msg = format!(
            "ticket #{} was merged into ticket #{parent} in ConnectWise{}; escalate the case to create a new one",
            ticket.id,
            ticket
                .updated_by
                .as_deref()
                .map(|m| format!(" by {m}"))
                .unwrap_or_default()
        );
        let actor = ticket
            .updated_by
            .clone()
            .unwrap_or_else(|| actor_hint.to_string());
        store
            .apply_case_change(
                &case.id,
                CaseChange {
                    ticket: Some(TicketLinkChange::State(TicketState::Merged)),
                    activity: vec![Activity::new(
                        actor,
                        Direction::Inbound,
                        "ticket_merged",
                        msg,
                    )],
                    ..Default::default()
                },
            )
            .await?;
        return Ok(());
    }

    apply_status(
        ctx,
        &integration,
        &link.board_id,
        &ticket,
        &ours,
        &mut state,
        actor_hint,
    )
    .await?;
    store.put_ticket_sync(&state).await?;
    Ok(())
}

/// Member identifiers that are us: authors of notes carrying our marker, and — on a ticket we
/// created (`externalXRef` = case id) — the author of its first note (the initial description
/// is posted with the ticket by our API member).
fn our_members(case: &Case, ticket: &Ticket, notes: &[CwNote]) -> HashSet<String> {
    let author = |n: &CwNote| n.member.clone().or_else(|| n.created_by.clone());
    let mut ours: HashSet<String> = notes
        .iter()
        .filter(|n| find_note_marker(&n.text).is_some())
        .filter_map(author)
        .collect();
    if ticket.external_xref.as_deref() == Some(case.id.as_str())
        && let Some(first) = notes.iter().min_by_key(|n| n.id).and_then(author)
    {
        ours.insert(first);
    }
    ours
}

fn visibility_of(n: &CwNote) -> Visibility {
    if n.internal_analysis && !n.detail_description && !n.resolution {
        Visibility::Internal
    } else {
        Visibility::Shared
    }
}

async fn import_notes(
    ctx: &SyncContext,
    case: &Case,
    ticket: &Ticket,
    notes: &[CwNote],
    ours: &HashSet<String>,
    state: &mut TicketSyncState,
) -> Result<(), SyncError> {
    let store = ctx.store.as_ref();
    let mut fresh: Vec<&CwNote> = notes
        .iter()
        .filter(|n| !state.seen_note_ids.contains(&n.id))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    fresh.sort_by_key(|n| n.id);
    let existing: HashSet<i64> = store
        .notes(&case.id)
        .await?
        .iter()
        .filter_map(|n| n.cw_note_id)
        .collect();
    for n in fresh {
        let author = n.member.clone().or_else(|| n.created_by.clone());
        let skip = find_note_marker(&n.text).is_some()
            || author.as_ref().is_some_and(|a| ours.contains(a))
            || existing.contains(&n.id)
            || n.text.trim().is_empty();
        if !skip {
            let author = author.unwrap_or_else(|| "ConnectWise".to_string());
            let visibility = visibility_of(n);
            let note = Note {
                id: new_id("note"),
                case_id: case.id.clone(),
                text: n.text.clone(),
                visibility,
                origin: NoteOrigin::Connectwise,
                author: author.clone(),
                cw_note_id: Some(n.id),
                created_at: n
                    .date_created
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                    .unwrap_or_else(now_millis),
            };
            let flag = if n.resolution {
                "resolution"
            } else if visibility == Visibility::Internal {
                "internal analysis"
            } else {
                "discussion"
            };
            let msg = format!(
                "note from {author} added ({} note, ConnectWise {flag} note {} on ticket #{})",
                visibility.as_str(),
                n.id,
                ticket.id
            );
            let change = CaseChange {
                note: Some(note),
                activity: vec![Activity::new(
                    author,
                    Direction::Inbound,
                    "note_inbound",
                    msg,
                )],
                ..Default::default()
            };
            match store.apply_case_change(&case.id, change).await {
                Ok(_) => {}
                // Another node imported it in the meantime (unique case_id + cw_note_id).
                Err(e) if imported_meanwhile(ctx, &case.id, n.id).await => {
                    tracing::debug!(error = %e, "note {} already imported", n.id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        state.seen_note_ids.push(n.id);
    }
    Ok(())
}

async fn imported_meanwhile(ctx: &SyncContext, case_id: &str, cw_note_id: i64) -> bool {
    ctx.store
        .notes(case_id)
        .await
        .map(|ns| ns.iter().any(|n| n.cw_note_id == Some(cw_note_id)))
        .unwrap_or(false)
}

/// The ConnectWise statuses our outbound side would have written for a case in `status`.
fn our_targets(mapping: Option<&StatusMapping>, status: CaseStatus) -> Vec<i64> {
    let Some(m) = mapping else { return Vec::new() };
    let mut v: Vec<i64> = m.statuses.get(status).into_iter().collect();
    if status != CaseStatus::Closed {
        v.extend(reopen_status(m));
    }
    v
}

async fn apply_status(
    ctx: &SyncContext,
    integration: &Integration,
    link_board: &Option<i64>,
    ticket: &Ticket,
    ours: &HashSet<String>,
    state: &mut TicketSyncState,
    actor_hint: &str,
) -> Result<(), SyncError> {
    let store = ctx.store.as_ref();
    let Some(status_id) = ticket.status_id else {
        return Ok(());
    };
    let case_id = state.case_id.clone();
    if state.last_status_id == Some(status_id) {
        // Unchanged since we last looked; keep the link's copy right.
        if let Some(case) = store.case(&case_id).await?
            && case
                .ticket
                .as_ref()
                .is_some_and(|t| t.status_id != Some(status_id))
        {
            store
                .apply_case_change(
                    &case_id,
                    CaseChange {
                        ticket: Some(TicketLinkChange::UpdateStatus(status_id)),
                        ..Default::default()
                    },
                )
                .await?;
        }
        return Ok(());
    }
    let board = ticket.board_id.or(*link_board);
    let mappings = store.status_mappings(&integration.account_id).await?;
    let mapping = board.and_then(|b| mappings.for_board(b)).cloned();
    let (closed, name) = match board {
        Some(b) => match ctx
            .connectors
            .connector(integration)?
            .board_statuses(b)
            .await
        {
            Ok(list) => match list.iter().find(|s| s.id == status_id) {
                Some(s) => (s.closed_status, Some(s.name.clone())),
                None => (ticket.closed_flag, ticket.status_name.clone()),
            },
            Err(PsaError::NotFound { .. }) => (ticket.closed_flag, ticket.status_name.clone()),
            Err(e) => return Err(e.into()),
        },
        None => (ticket.closed_flag, ticket.status_name.clone()),
    };
    let label = match &name {
        Some(n) => format!("ConnectWise status {status_id} ({n})"),
        None => format!("ConnectWise status {status_id}"),
    };
    let member = ticket.updated_by.clone();
    let actor = member.clone().unwrap_or_else(|| actor_hint.to_string());
    let by = member
        .as_deref()
        .map(|m| format!(" by {m}"))
        .unwrap_or_default();

    for _ in 0..3 {
        let Some(case) = store.case(&case_id).await? else {
            return Ok(());
        };
        let mut change = CaseChange {
            ticket: Some(TicketLinkChange::UpdateStatus(status_id)),
            ..Default::default()
        };
        // ECHO: our own API member wrote what the case's status maps to.
        let echo = member.as_ref().is_some_and(|m| ours.contains(m))
            && our_targets(mapping.as_ref(), case.status).contains(&status_id);
        // ORDER: ConnectWise's clock says this is older than our last write.
        let older = match (
            ticket.last_updated,
            state.last_write_cw_at.as_deref().and_then(parse_cw_time),
        ) {
            (Some(changed), Some(written)) if changed < written => Some((changed, written)),
            _ => None,
        };
        if echo {
            tracing::debug!(case = %case_id, status_id, "status change is our own write; not applied back");
        } else if let Some((changed, written)) = older {
            change.ticket = None;
            change.activity.push(Activity::new(
                actor.clone(),
                Direction::Inbound,
                "status_not_applied",
                format!(
                    "ticket #{} {label}{by} not applied: changed at {} (ConnectWise clock), before our last write at {}",
                    ticket.id,
                    format_cw_time(changed),
                    format_cw_time(written)
                ),
            ));
        } else {
            let effect = inbound_status_effect(case.status, status_id, closed, mapping.as_ref());
            let (target, reason) = match effect {
                InboundStatusEffect::Close => (
                    Some(CaseStatus::Closed),
                    Some(Some(CLOSED_IN_CONNECTWISE.to_string())),
                ),
                InboundStatusEffect::Reopen => (Some(CaseStatus::InProgress), Some(None)),
                InboundStatusEffect::MoveTo(s) => (Some(s), None),
                InboundStatusEffect::Keep(_) => (None, None),
            };
            let msg = match (&effect, target) {
                (InboundStatusEffect::Keep(why), _) => {
                    format!(
                        "ticket #{} moved to {label}{by}; the case keeps status {} ({why})",
                        ticket.id,
                        case.status.as_str()
                    )
                }
                (InboundStatusEffect::Close, _) => format!(
                    "ticket #{} moved to {label}{by} (a closed status); case closed ({CLOSED_IN_CONNECTWISE})",
                    ticket.id
                ),
                (InboundStatusEffect::Reopen, _) => {
                    format!(
                        "ticket #{} moved to {label}{by} (an open status); case reopened as in_progress",
                        ticket.id
                    )
                }
                (_, Some(s)) => format!(
                    "ticket #{} moved to {label}{by}; case status {} → {}",
                    ticket.id,
                    case.status.as_str(),
                    s.as_str()
                ),
                _ => String::new(),
            };
            let kind = match effect {
                InboundStatusEffect::Keep(_) => "status_kept",
                InboundStatusEffect::Reopen => "reopened",
                _ => "status_inbound",
            };
            change.expect_status = target.map(|_| case.status);
            change.status = target;
            change.close_reason = reason;
            change
                .activity
                .push(Activity::new(actor.clone(), Direction::Inbound, kind, msg));
        }
        match store.apply_case_change(&case_id, change).await {
            Ok(_) => {
                state.last_status_id = Some(status_id);
                return Ok(());
            }
            // The portal changed the case meanwhile: decide again on its new status.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SyncError::Invalid(format!(
        "case {case_id} kept changing while its ConnectWise status was applied"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_are_read_defensively() {
        let ok = json!({"MessageId": "m1", "Type": "ticket", "ID": 5, "Entity": "{\"recordType\":\"ServiceTicket\"}"});
        assert_eq!(
            read_envelope(&ok),
            Ok(Envelope::Ticket {
                message_id: "m1".into(),
                ticket_id: 5
            })
        );
        let deleted = json!({"MessageId": "m1", "Type": "ticket", "ID": 5, "Entity": null});
        assert!(matches!(
            read_envelope(&deleted),
            Ok(Envelope::Ticket { .. })
        ));
        let project = json!({"MessageId": "m1", "Type": "ticket", "ID": 5, "Entity": "{\"recordType\":\"ProjectTicket\"}"});
        assert!(matches!(read_envelope(&project), Ok(Envelope::Ignored(_))));
        let contact = json!({"MessageId": "m1", "Type": "contact", "ID": 5});
        assert!(matches!(read_envelope(&contact), Ok(Envelope::Ignored(_))));
        let garbage_entity =
            json!({"MessageId": "m1", "Type": "ticket", "ID": 5, "Entity": "{not json"});
        assert!(matches!(
            read_envelope(&garbage_entity),
            Ok(Envelope::Ticket { .. })
        ));
        for bad in [
            json!([1, 2]),
            json!({"Type": "ticket", "ID": 5}),
            json!({"MessageId": 7, "Type": "ticket", "ID": 5}),
            json!({"MessageId": "m", "Type": "ticket", "ID": -1}),
            json!({"MessageId": "m", "Type": "ticket", "ID": 1.5}),
            json!({"MessageId": "m", "Type": "ticket", "ID": 99999999999999999999u128 as f64}),
            json!({"MessageId": "m", "Type": ["ticket"], "ID": 5}),
            json!({"MessageId": "m", "Type": "ticket", "ID": 5, "Entity": 3}),
        ] {
            assert!(read_envelope(&bad).is_err(), "{bad}");
        }
    }
}

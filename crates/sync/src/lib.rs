//! Sync: everything that moves between a case and its ConnectWise ticket.
//!
//! ```text
//!  escalate / case change ──(same tx)──► outbox ──► outbox::Worker ──► Psa (ConnectWise)
//!                                                        │ attempts, backoff, dead jobs
//!  /hooks/connectwise ──► inbound::accept_callback ──► inbox ──► inbound::Processor ──► case
//!                                     reconcile::Reconciler (poll) ──────────┘
//! ```
//!
//! * [`escalation`] decides, through routing, whether an escalated case gets a ticket and queues
//!   the create job; [`changes`] queues notes and status changes of ticketed cases.
//! * [`outbox`] runs the jobs: per case in order, under a lease, with retries and dead jobs.
//! * [`inbound`] takes callbacks and applies ConnectWise's changes to cases; [`reconcile`] polls
//!   so that missed callbacks never leave the two sides apart.
//!
//! Every wait is a [`SyncConfig`] duration, so tests run the whole pipeline fast.

pub mod changes;
pub mod escalation;
pub mod factory;
pub mod inbound;
pub mod outbox;
pub mod reconcile;
pub mod secrets;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use casebridge_store::Store;

pub use factory::{ConnectWiseFactory, ConnectorFactory};
pub use secrets::SecretBox;

/// Every duration and limit of the sync engine.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How long a claimed job stays leased without a heartbeat.
    pub lease: Duration,
    /// How often the worker looks for due jobs when nobody woke it.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before a job is parked as dead.
    pub max_attempts: i64,
    /// Jobs claimed per round.
    pub batch: i64,
    /// How often linked tickets are re-read (reconciliation).
    pub reconcile_interval: Duration,
    /// Overlap subtracted from the watermark so changes at its edge are not missed.
    pub reconcile_overlap: Duration,
    /// Callbacks for one ticket arriving within this window are processed once.
    pub coalesce_window: Duration,
    /// Every this many reconcile passes, the notes of open linked tickets are swept too (a note
    /// may not move a ticket's `lastUpdated`); 0 = never from the run loop.
    pub notes_sweep_every: u32,
    /// Every this many reconcile passes, callback registrations are checked (and repaired when
    /// ConnectWise disabled them); 0 = never from the run loop.
    pub callback_check_every: u32,
    /// ConnectWise request timeout.
    pub request_timeout: Duration,
    /// ConnectWise requests each integration may make per `budget_window`, shared by all nodes
    /// and divided fairly between its sub-tenants.
    pub request_budget: i64,
    pub budget_window: Duration,
    /// How long processed callback events are kept so a redelivered MessageId is recognised;
    /// the reconciler deletes older ones (a later redelivery is harmless: a callback is a hint).
    pub inbox_retention: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            max_attempts: 8,
            batch: 16,
            reconcile_interval: Duration::from_secs(60),
            reconcile_overlap: Duration::from_secs(120),
            coalesce_window: Duration::from_millis(200),
            notes_sweep_every: 5,
            callback_check_every: 10,
            request_timeout: Duration::from_secs(20),
            request_budget: 600,
            budget_window: Duration::from_secs(60),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What the sync engine needs to run: the store, a way to reach each integration's PSA, its
/// configuration, and a bell that wakes the workers when new work is queued.
#[derive(Clone)]
pub struct SyncContext {
    pub store: Arc<dyn Store>,
    pub connectors: Arc<dyn ConnectorFactory>,
    pub config: SyncConfig,
    /// Base URL of the portal, for links in the ticket's internal analysis.
    pub portal_url: Option<String>,
    pub wake_outbox: Arc<tokio::sync::Notify>,
    pub wake_inbox: Arc<tokio::sync::Notify>,
    /// State the inbound side shares between calls: the signing-key fetchers (keys cached per
    /// URL) and per-case locks so two syncs of one case never interleave in this process.
    pub inbound: Arc<inbound::InboundShared>,
}

impl SyncContext {
    pub fn new(
        store: Arc<dyn Store>,
        connectors: Arc<dyn ConnectorFactory>,
        config: SyncConfig,
    ) -> Self {
        Self {
            store,
            connectors,
            config,
            portal_url: None,
            wake_outbox: Arc::new(tokio::sync::Notify::new()),
            wake_inbox: Arc::new(tokio::sync::Notify::new()),
            inbound: Arc::new(inbound::InboundShared::default()),
        }
    }
}

/// Errors of the sync services.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] casebridge_store::StoreError),
    #[error(transparent)]
    Psa(#[from] casebridge_connector::PsaError),
    #[error("{0}")]
    Invalid(String),
    /// A request field breaks a rule of the change: (field, why).
    #[error("{0}: {1}")]
    Field(&'static str, String),
    #[error("not found: {0}")]
    NotFound(String),
}

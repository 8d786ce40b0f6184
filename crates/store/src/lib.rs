//! Storage: the [`Store`] trait and its two implementations, SQLite (the embedded default) and
//! PostgreSQL (scale-out). Both run the same SQL text (written to be valid on both) from
//! `sql_impl.rs`, included once per backend with that backend's types; what differs — migrations,
//! how a write transaction starts, how jobs are locked while claimed — lives in the backend
//! module. `tests/conformance.rs` runs one suite against both.
//!
//! Every write that must be atomic is one method here (e.g. [`Store::apply_case_change`] writes
//! the case, its note, its Activity Log entries and its outbox jobs in one transaction), so no
//! caller can leave a change half-written.

mod migrations;
pub mod model;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use casebridge_domain::{AccountKind, CaseStatus, Role};

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the store a database URL names: `sqlite://PATH` (created if missing) or
/// `postgres://…`. Runs migrations when `migrate` is true.
pub async fn open(url: &str, migrate: bool) -> Result<std::sync::Arc<dyn Store>> {
    let store: std::sync::Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            std::sync::Arc::new(PgStore::connect(url).await?)
        } else {
            std::sync::Arc::new(SqliteStore::connect(url).await?)
        };
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> Result<()>;
    /// True when the database answers and every migration of this binary is applied.
    async fn ready(&self) -> Result<bool>;

    // accounts, users, tokens
    async fn create_account(
        &self,
        name: &str,
        kind: AccountKind,
        parent_id: Option<&str>,
    ) -> Result<Account>;
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    async fn account_by_name(&self, name: &str) -> Result<Option<Account>>;
    async fn subtenants(&self, partner_id: &str) -> Result<Vec<Account>>;
    async fn all_accounts(&self) -> Result<Vec<Account>>;
    async fn create_user(&self, user: &NewUser) -> Result<String>;
    async fn user_exists(&self, email: &str) -> Result<bool>;
    async fn create_token(
        &self,
        account_id: &str,
        role: Role,
        token_hash: &str,
        label: &str,
    ) -> Result<String>;
    async fn token_grant(&self, token_hash: &str) -> Result<Option<TokenGrant>>;

    // rules
    async fn upsert_rules(&self, rules: &[Rule]) -> Result<u64>;
    async fn rule(&self, id: &str) -> Result<Option<Rule>>;
    async fn rules(&self) -> Result<Vec<Rule>>;

    // cases
    /// Creates the case, or — when (account, source_key) exists — raises its alert count and
    /// logs the repeat. One transaction.
    async fn insert_alert_case(&self, case: &NewCase, actor: &str) -> Result<AlertInsert>;
    async fn case(&self, id: &str) -> Result<Option<Case>>;
    async fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>>;
    async fn case_by_ticket(&self, integration_id: &str, ticket_id: i64) -> Result<Option<Case>>;
    /// Applies a change to a case atomically. Returns the case after the change, or
    /// `Conflict` when `expect_status` did not hold.
    async fn apply_case_change(&self, case_id: &str, change: CaseChange) -> Result<Case>;
    async fn notes(&self, case_id: &str) -> Result<Vec<Note>>;
    async fn activity(&self, case_id: &str) -> Result<Vec<Activity>>;
    async fn linked_cases(&self, integration_id: &str) -> Result<Vec<Case>>;

    // outbox
    /// Claims up to `limit` due jobs, at most one per case and only a case's oldest unfinished
    /// job, leasing them to `owner` until `lease_until`. Each claim counts as an attempt
    /// (`attempts` is raised here), so a worker that sees `attempts > 1` knows an earlier try may
    /// have reached ConnectWise — even one whose process died before recording anything.
    async fn claim_jobs(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> Result<Vec<Job>>;
    async fn heartbeat_jobs(
        &self,
        owner: &str,
        job_ids: &[String],
        lease_until: Millis,
    ) -> Result<()>;
    /// Records an attempt and ends or reschedules the job; applies `effects` to its case in the
    /// same transaction (e.g. the ticket link after a create).
    async fn finish_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: &Attempt,
        outcome: JobOutcome,
        effects: Option<CaseChange>,
    ) -> Result<()>;
    async fn release_jobs(&self, owner: &str) -> Result<()>;
    async fn jobs(
        &self,
        state: Option<JobState>,
        account_ids: &[String],
        limit: i64,
    ) -> Result<Vec<Job>>;
    async fn job(&self, id: &str) -> Result<Option<Job>>;
    async fn job_attempts(&self, id: &str) -> Result<Vec<Attempt>>;
    /// Makes a dead job due again now.
    async fn retry_job(&self, id: &str, actor: &str) -> Result<Job>;
    async fn has_pending_create(&self, case_id: &str) -> Result<bool>;
    /// Puts a claimed job back, due at `due_at`, without counting the claim as an attempt (used
    /// when the request budget defers it).
    async fn defer_job(&self, job_id: &str, owner: &str, due_at: Millis) -> Result<()>;
    /// Reserves `n` ConnectWise requests for `account_id` in the window starting at
    /// `window_start` of `integration_id`'s budget: `limit` requests a window in all, shared
    /// fairly between the accounts using it in that window. False when that would overdraw the
    /// budget or the account's share. Serialised per integration, so several nodes share one
    /// budget.
    async fn reserve_requests(
        &self,
        integration_id: &str,
        account_id: &str,
        window_start: Millis,
        n: i64,
        limit: i64,
    ) -> Result<bool>;

    // integrations and settings
    async fn integration_of(&self, account_id: &str) -> Result<Option<Integration>>;
    async fn integration(&self, id: &str) -> Result<Option<Integration>>;
    async fn integrations(&self) -> Result<Vec<Integration>>;
    async fn save_integration(&self, integration: &Integration, audit: &AuditEntry) -> Result<()>;
    /// Switches uniform mode; switching it on deletes the sub-tenants' own board and
    /// criticality mappings in the same transaction and audits what was deleted.
    async fn set_uniform_mode(
        &self,
        integration: &Integration,
        subtenants_to_clear: &[String],
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn set_integration_sync(
        &self,
        id: &str,
        callback_id: Option<i64>,
        sync_mode: &str,
    ) -> Result<()>;
    async fn set_watermark(&self, id: &str, watermark: &str) -> Result<()>;
    async fn touch_last_callback(&self, id: &str, at: Millis) -> Result<()>;
    async fn mapping(
        &self,
        account_id: &str,
        resource: MappingResource,
    ) -> Result<Option<serde_json::Value>>;
    async fn put_mapping(
        &self,
        account_id: &str,
        resource: MappingResource,
        body: Option<&serde_json::Value>,
        audit: &AuditEntry,
    ) -> Result<()>;
    /// Accounts among `account_ids` that have their own copy of a board or criticality mapping.
    async fn accounts_with_own_mappings(&self, account_ids: &[String]) -> Result<Vec<String>>;
    async fn company_mappings(&self, account_id: &str) -> Result<Vec<(String, String)>>;
    async fn put_company_mappings(
        &self,
        account_id: &str,
        items: &[(String, String)],
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn status_mappings(&self, account_id: &str) -> Result<casebridge_domain::StatusMappings>;
    async fn put_status_mappings(
        &self,
        account_id: &str,
        mappings: &casebridge_domain::StatusMappings,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn escalation_policy(
        &self,
        account_id: &str,
    ) -> Result<Option<casebridge_domain::Criticality>>;
    async fn put_escalation_policy(
        &self,
        account_id: &str,
        at: Option<casebridge_domain::Criticality>,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn audit_log(&self, account_id: &str) -> Result<Vec<AuditEntry>>;

    // inbound sync
    /// Stores a callback event; false when its MessageId was seen before.
    async fn insert_inbox(&self, event: &InboxEvent) -> Result<bool>;
    /// Stores several callback events in one transaction (group commit); for each, false when
    /// its MessageId was seen before.
    async fn insert_inbox_batch(&self, events: &[InboxEvent]) -> Result<Vec<bool>>;
    /// Pending inbox events, oldest first, marked as taken.
    async fn take_inbox(&self, limit: i64) -> Result<Vec<InboxEvent>>;
    /// Deletes inbox events already taken that were received before `received_before` (Unix
    /// ms); they are kept only so a redelivered MessageId is recognised. Pending events stay.
    /// Returns how many went.
    async fn prune_inbox(&self, received_before: i64) -> Result<u64>;
    async fn ticket_sync(&self, case_id: &str) -> Result<Option<TicketSyncState>>;
    async fn put_ticket_sync(&self, state: &TicketSyncState) -> Result<()>;
}

/// Parses a status stored as text.
fn parse_status(s: &str) -> Result<CaseStatus> {
    CaseStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown case status {s:?}")))
}

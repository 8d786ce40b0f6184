//! Rows and write-sets the store reads and writes. Plain data; times are Unix milliseconds UTC.

use casebridge_domain::{
    AccountKind, CaseStatus, Criticality, Direction, NoteOrigin, Role, TicketState, Visibility,
};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Now, in Unix milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
    pub parent_id: Option<String>,
    pub created_at: Millis,
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: String,
    pub account_id: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub account_id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub level: Option<Criticality>,
    /// `sigma` for catalogue rules; the alert format for ad-hoc rules.
    pub source: String,
    pub logsource: serde_json::Value,
    pub tags: Vec<String>,
    pub suggested_rule_type: String,
}

/// The link from a case to its ConnectWise ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketLink {
    pub id: i64,
    pub integration_id: String,
    pub board_id: Option<i64>,
    pub status_id: Option<i64>,
    pub priority_id: Option<i64>,
    pub company_identifier: Option<String>,
    pub url: Option<String>,
    pub state: TicketState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    pub id: String,
    pub account_id: String,
    pub rule_id: String,
    pub title: String,
    pub description: String,
    pub criticality: Criticality,
    pub status: CaseStatus,
    pub close_reason: Option<String>,
    pub source_format: String,
    pub source_key: String,
    pub alert_count: i64,
    pub observables: serde_json::Value,
    pub raw_alert: serde_json::Value,
    /// The last routing decision: a ticket plan or a not-ticketed reason.
    pub routing: Option<serde_json::Value>,
    pub ticket: Option<TicketLink>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A case to create from an alert.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub id: String,
    pub account_id: String,
    pub rule_id: String,
    pub title: String,
    pub description: String,
    pub criticality: Criticality,
    pub source_format: String,
    pub source_key: String,
    pub observables: serde_json::Value,
    pub raw_alert: serde_json::Value,
}

/// What inserting an alert's case did.
#[derive(Debug, Clone)]
pub enum AlertInsert {
    Created(Box<Case>),
    /// The alert's identity was seen before on this account: its case's `alert_count` was raised.
    Repeat(Box<Case>),
}

#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Restrict to these accounts (the caller's visible accounts).
    pub account_ids: Vec<String>,
    pub status: Option<CaseStatus>,
    pub criticality: Option<Criticality>,
    pub q: Option<String>,
    /// Return cases with ids strictly below this one (newest first).
    pub before_id: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub id: String,
    pub case_id: String,
    pub text: String,
    pub visibility: Visibility,
    pub origin: NoteOrigin,
    pub author: String,
    pub cw_note_id: Option<i64>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub at: Millis,
    pub actor: String,
    pub direction: Direction,
    pub kind: String,
    pub message: String,
}

impl Activity {
    pub fn new(
        actor: impl Into<String>,
        direction: Direction,
        kind: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Activity {
            at: now_millis(),
            actor: actor.into(),
            direction,
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// A job to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
}

/// Everything one case change writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CaseChange {
    /// Only apply when the case is currently in this status (optimistic check).
    pub expect_status: Option<CaseStatus>,
    pub status: Option<CaseStatus>,
    /// `Some(None)` clears the close reason.
    pub close_reason: Option<Option<String>>,
    pub routing: Option<serde_json::Value>,
    pub ticket: Option<TicketLinkChange>,
    pub note: Option<Note>,
    /// A local note has been delivered to ConnectWise: (note id, ConnectWise note id).
    pub note_delivered: Option<(String, i64)>,
    pub activity: Vec<Activity>,
    pub jobs: Vec<NewJob>,
    pub raise_alert_count: bool,
}

#[derive(Debug, Clone)]
pub enum TicketLinkChange {
    Set(TicketLink),
    UpdateStatus(i64),
    State(TicketState),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub seq: i64,
    pub id: String,
    pub case_id: String,
    pub account_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: i64,
    pub due_at: Millis,
    pub last_error: Option<String>,
    pub created_at: Millis,
    /// Waiting behind an earlier unfinished (or dead) job of the same case.
    pub blocked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub at: Millis,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub outcome: String,
}

/// How a claimed job ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Done,
    Retry { due_at: Millis, error: String },
    Dead { error: String },
}

/// The integration (support system) of one account. The private key stays encrypted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub site_url: String,
    pub company_id: String,
    pub public_key: String,
    /// `key_id:nonce:ciphertext`, never the plain key.
    pub private_key_enc: Option<String>,
    pub client_id: String,
    pub parent_company_identifier: Option<String>,
    pub apply_to_all_subtenants: bool,
    pub uniform_subtenant_mappings: bool,
    pub allow_private_hosts: bool,
    pub process_notifications: bool,
    pub active: bool,
    pub last_test: Option<serde_json::Value>,
    pub tested_ok: bool,
    pub callback_id: Option<i64>,
    pub sync_mode: String,
    pub last_callback_at: Option<Millis>,
    /// ConnectWise's clock (`_info.lastUpdated`) of the newest change reconciliation has seen.
    pub watermark: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A mapping resource kind stored as one document per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingResource {
    Board,
    Criticality,
}

impl MappingResource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Board => "board",
            Self::Criticality => "criticality",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub account_id: String,
    pub actor: String,
    pub at: Millis,
    pub action: String,
    pub detail: serde_json::Value,
}

/// What the sync engine remembers of a linked ticket between looks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketSyncState {
    pub case_id: String,
    pub integration_id: String,
    pub ticket_id: i64,
    pub last_status_id: Option<i64>,
    /// ConnectWise's `_info.lastUpdated` of our own last write.
    pub last_write_cw_at: Option<String>,
    pub seen_note_ids: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct InboxEvent {
    pub message_id: String,
    pub integration_id: String,
    pub ticket_id: i64,
    pub received_at: Millis,
}

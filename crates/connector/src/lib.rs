//! The PSA connector boundary (DESIGN §5): the [`Psa`] trait the sync engine drives, the
//! PSA-neutral types it speaks, and the ConnectWise Manage implementation
//! ([`ConnectWiseClient`]) with its own wire types.
//!
//! Nothing here retries on its own (apart from one codebase refresh on a 404, API.md pitfall
//! 21): retry policy, backoff and request budgets belong to the sync workers, which use
//! [`PsaError::is_retryable`], [`PsaError::retry_after`] and [`PsaError::outcome_unknown`].

pub mod connectwise;
pub mod error;
pub mod signature;
pub mod ssrf;

use async_trait::async_trait;
use casebridge_domain::status_mapping::BoardStatusFacts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use connectwise::{ConnectWiseClient, ConnectWiseConfig, DEFAULT_ACCEPT_VERSION};
pub use error::PsaError;
pub use signature::{
    SigningKeyFetcher, callback_signature, key_url_allowed, verify_callback_signature,
};

/// Installs rustls' `ring` crypto provider as the process default. Safe to call any number of
/// times (an already installed provider is kept). The clients of this crate call it themselves.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A secret string (API private key, signing key). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; keep it out of logs and error messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// A service board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub id: i64,
    pub name: String,
    pub inactive: bool,
}

/// One status of a board. Names are for display only; decisions use [`BoardStatus::facts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardStatus {
    pub id: i64,
    pub name: String,
    pub sort_order: i64,
    pub inactive: bool,
    pub closed_status: bool,
    pub default_flag: bool,
}

impl BoardStatus {
    pub fn facts(&self) -> BoardStatusFacts {
        BoardStatusFacts {
            id: self.id,
            sort_order: self.sort_order,
            inactive: self.inactive,
            closed_status: self.closed_status,
            default_flag: self.default_flag,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priority {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: i64,
    pub identifier: String,
    pub name: String,
    pub deleted: bool,
}

/// A ticket to create. The caller cuts `summary` to 100 UTF-16 code units; the client refuses
/// (does not cut) a longer one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewTicket {
    pub summary: String,
    pub board_id: i64,
    pub status_id: Option<i64>,
    pub company_identifier: String,
    pub priority_id: Option<i64>,
    pub type_id: Option<i64>,
    pub subtype_id: Option<i64>,
    pub item_id: Option<i64>,
    /// Exactly the case id (DESIGN §4); at most 100 UTF-16 code units.
    pub external_xref: String,
    /// Customer-visible description (first Discussion note).
    pub initial_description: String,
    /// Internal analysis (first Internal note).
    pub initial_internal_analysis: String,
    /// `Low` | `Medium` | `High`
    pub severity: Option<String>,
    /// `Low` | `Medium` | `High`
    pub impact: Option<String>,
    pub process_notifications: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: i64,
    pub summary: String,
    pub board_id: Option<i64>,
    pub status_id: Option<i64>,
    pub status_name: Option<String>,
    pub closed_flag: bool,
    pub priority_id: Option<i64>,
    pub company_identifier: Option<String>,
    pub external_xref: Option<String>,
    pub record_type: Option<String>,
    /// `_info.lastUpdated`: ConnectWise's clock.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_updated: Option<OffsetDateTime>,
    /// `_info.updatedBy`: member identifier of the last writer.
    pub updated_by: Option<String>,
    pub merged_parent_id: Option<i64>,
}

/// A note to add. At least one of `discussion`, `internal`, `resolution` must be true
/// (API.md pitfall 1); the client refuses a note with none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewNote {
    pub text: String,
    /// `detailDescriptionFlag` (customer-visible Discussion).
    pub discussion: bool,
    /// `internalAnalysisFlag`.
    pub internal: bool,
    /// `resolutionFlag`.
    pub resolution: bool,
    pub process_notifications: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    pub text: String,
    pub detail_description: bool,
    pub internal_analysis: bool,
    pub resolution: bool,
    /// Member identifier of the author, when a member wrote it.
    pub member: Option<String>,
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub date_created: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRegistration {
    pub id: i64,
    pub url: String,
    /// ConnectWise `type`, e.g. `ticket`.
    pub kind: String,
    pub level: String,
    pub object_id: i64,
    pub inactive: bool,
}

/// Result of [`Psa::test_connection`]: one entry per separate check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub checks: Vec<TestCheck>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
    /// The check with this name, if it ran.
    pub fn check(&self, name: &str) -> Option<&TestCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestCheck {
    pub name: &'static str,
    pub ok: bool,
    pub message: String,
}

/// Names of the checks [`Psa::test_connection`] reports, in order.
pub const TEST_CHECKS: [&str; 7] = [
    "reachable",
    "codebase",
    "auth",
    "read_boards",
    "read_priorities",
    "read_companies",
    "callbacks",
];

/// A PSA (professional services automation) system the sync engine files tickets in.
#[async_trait]
pub trait Psa: Send + Sync {
    /// Separate checks ([`TEST_CHECKS`]); creates and changes nothing.
    async fn test_connection(&self) -> TestReport;
    async fn boards(&self) -> Result<Vec<Board>, PsaError>;
    async fn board_statuses(&self, board_id: i64) -> Result<Vec<BoardStatus>, PsaError>;
    async fn priorities(&self) -> Result<Vec<Priority>, PsaError>;
    /// The company with exactly this identifier (deleted ones included, flagged), or `None`.
    async fn company_by_identifier(&self, identifier: &str) -> Result<Option<Company>, PsaError>;
    async fn create_ticket(&self, t: &NewTicket) -> Result<Ticket, PsaError>;
    /// The ticket whose `externalXRef` is exactly `xref` (lowest id if several).
    async fn find_ticket_by_external_ref(&self, xref: &str) -> Result<Option<Ticket>, PsaError>;
    /// Every ticket whose `externalXRef` is exactly `xref`, lowest id first. A case whose ticket
    /// was merged away keeps that ticket in ConnectWise (same `externalXRef`), so adopting a
    /// ticket for a new create must be able to look past it.
    async fn find_tickets_by_external_ref(&self, xref: &str) -> Result<Vec<Ticket>, PsaError> {
        Ok(self
            .find_ticket_by_external_ref(xref)
            .await?
            .into_iter()
            .collect())
    }
    /// `Ok(None)` when ConnectWise says the ticket does not exist.
    async fn get_ticket(&self, id: i64) -> Result<Option<Ticket>, PsaError>;
    async fn set_ticket_status(&self, id: i64, status_id: i64) -> Result<Ticket, PsaError>;
    async fn add_note(&self, ticket_id: i64, n: &NewNote) -> Result<Note, PsaError>;
    /// All notes of the ticket, all pages.
    async fn notes(&self, ticket_id: i64) -> Result<Vec<Note>, PsaError>;
    /// Those of `ids` updated after `since` (all of them when `None`).
    async fn tickets_updated_since(
        &self,
        ids: &[i64],
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<Ticket>, PsaError>;
    async fn callbacks(&self) -> Result<Vec<CallbackRegistration>, PsaError>;
    /// Reuses (and re-activates) an identical registration for `url`, else creates one.
    async fn ensure_callback(&self, url: &str) -> Result<CallbackRegistration, PsaError>;
    async fn delete_ticket(&self, id: i64) -> Result<(), PsaError>;
}

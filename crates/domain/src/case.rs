//! The case's state machine and the small enums of notes and the Activity Log.

use serde::{Deserialize, Serialize};

/// A case's status. `Closed` carries its reason separately (see [`CloseReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    Escalated,
    InProgress,
    WaitingOnCustomer,
    Closed,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 5] = [
        Self::Open,
        Self::Escalated,
        Self::InProgress,
        Self::WaitingOnCustomer,
        Self::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Escalated => "escalated",
            Self::InProgress => "in_progress",
            Self::WaitingOnCustomer => "waiting_on_customer",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether an analyst may move a case from `self` to `to` through the API.
    /// Every move is allowed except to the same status; reopening goes through `InProgress`
    /// (or any other non-closed status).
    pub fn can_move_to(self, to: CaseStatus) -> bool {
        self != to
    }
}

/// Why a case was closed.
pub const CLOSED_IN_CONNECTWISE: &str = "closed_in_connectwise";

/// A note's visibility: `shared` notes are customer-visible in ConnectWise (discussion),
/// `internal` ones go to the ticket's internal analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Internal,
    Shared,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Shared => "shared",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "internal" => Some(Self::Internal),
            "shared" => Some(Self::Shared),
            _ => None,
        }
    }
}

/// Where a note was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteOrigin {
    Portal,
    Connectwise,
}

impl NoteOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portal => "portal",
            Self::Connectwise => "connectwise",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "portal" => Some(Self::Portal),
            "connectwise" => Some(Self::Connectwise),
            _ => None,
        }
    }
}

/// Direction of an Activity Log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// portal → ConnectWise
    Outbound,
    /// ConnectWise → portal
    Inbound,
    /// inside the portal
    Local,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
            Self::Local => "local",
        }
    }
}

/// The state of a case's link to its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketState {
    Linked,
    Deleted,
    Merged,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Deleted => "deleted",
            Self::Merged => "merged",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linked" => Some(Self::Linked),
            "deleted" => Some(Self::Deleted),
            "merged" => Some(Self::Merged),
            _ => None,
        }
    }
    /// A case may get a new ticket only when its old one is gone from ConnectWise.
    pub fn allows_new_ticket(self) -> bool {
        !matches!(self, Self::Linked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CaseStatus::parse("Closed"), None);
    }

    #[test]
    fn only_a_deleted_or_merged_ticket_allows_a_new_one() {
        assert!(!TicketState::Linked.allows_new_ticket());
        assert!(TicketState::Deleted.allows_new_ticket());
        assert!(TicketState::Merged.allows_new_ticket());
    }
}

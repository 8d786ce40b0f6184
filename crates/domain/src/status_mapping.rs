//! Status mapping decisions (DESIGN §3.6): proposed defaults for a board, the status a case
//! change sends out, and what an inbound ticket status does to the case. Status names are never
//! read — only ids and the `closedStatus` / `defaultFlag` / `inactive` / `sortOrder` facts.

use crate::CaseStatus;
use crate::mapping::{CaseStatusMap, StatusMapping};

/// The facts of one ConnectWise board status that mapping decisions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardStatusFacts {
    pub id: i64,
    pub sort_order: i64,
    pub inactive: bool,
    pub closed_status: bool,
    pub default_flag: bool,
}

/// Proposed defaults for a board just mapped: `open`/`escalated` → the default status (else the
/// first active non-closed status by sort order), `closed` → the first active closed status,
/// `in_progress`/`waiting_on_customer` → not sent.
pub fn propose_defaults(board_id: i64, statuses: &[BoardStatusFacts]) -> StatusMapping {
    let mut active: Vec<&BoardStatusFacts> = statuses.iter().filter(|s| !s.inactive).collect();
    active.sort_by_key(|s| (s.sort_order, s.id));
    let opening = active
        .iter()
        .find(|s| s.default_flag && !s.closed_status)
        .or_else(|| active.iter().find(|s| !s.closed_status))
        .map(|s| s.id);
    let closed = active.iter().find(|s| s.closed_status).map(|s| s.id);
    StatusMapping {
        board_id,
        confirmed: false,
        statuses: CaseStatusMap {
            open: opening,
            escalated: opening,
            in_progress: None,
            waiting_on_customer: None,
            closed,
        },
    }
}

/// The ticket status to send when a case already ticketed is reopened: mapped `in_progress`,
/// else the mapped `escalated` status.
pub fn reopen_status(mapping: &StatusMapping) -> Option<i64> {
    mapping.statuses.in_progress.or(mapping.statuses.escalated)
}

/// What an inbound ticket status does to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundStatusEffect {
    /// A `closedStatus` status: close the case (reason `closed_in_connectwise`).
    Close,
    /// A non-closed status on a closed case: reopen it as `in_progress`.
    Reopen,
    /// Move the case to this mapped status.
    MoveTo(CaseStatus),
    /// Nothing changes; the reason says why (none or several case statuses map there, or the
    /// case already has it).
    Keep(String),
}

/// Decides what ticket status `status` (with its `closed` flag) does to a case now in `current`.
pub fn inbound_status_effect(
    current: CaseStatus,
    status_id: i64,
    status_is_closed: bool,
    mapping: Option<&StatusMapping>,
) -> InboundStatusEffect {
    if status_is_closed {
        return if current == CaseStatus::Closed {
            InboundStatusEffect::Keep("the case is already closed".into())
        } else {
            InboundStatusEffect::Close
        };
    }
    if current == CaseStatus::Closed {
        return InboundStatusEffect::Reopen;
    }
    let candidates = mapping
        .map(|m| m.statuses.case_statuses_for(status_id))
        .unwrap_or_default();
    let candidates: Vec<CaseStatus> = candidates
        .into_iter()
        .filter(|s| *s != CaseStatus::Closed)
        .collect();
    match candidates.as_slice() {
        [] => InboundStatusEffect::Keep(format!(
            "no case status is mapped to ConnectWise status {status_id}"
        )),
        [only] if *only == current => {
            InboundStatusEffect::Keep(format!("the case is already {}", only.as_str()))
        }
        [only] => InboundStatusEffect::MoveTo(*only),
        several if several.contains(&current) => InboundStatusEffect::Keep(format!(
            "ConnectWise status {status_id} maps to the case's current status"
        )),
        _ => InboundStatusEffect::Keep(format!(
            "several case statuses are mapped to ConnectWise status {status_id}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: i64, sort: i64, closed: bool, default: bool, inactive: bool) -> BoardStatusFacts {
        BoardStatusFacts {
            id,
            sort_order: sort,
            inactive,
            closed_status: closed,
            default_flag: default,
        }
    }

    #[test]
    fn defaults_use_flags_and_sort_order_never_names() {
        // 1 "Closed?" is open, 2 is the default, 3 inactive closed, 4 closed ("Resolved")
        let statuses = [
            st(1, 0, false, false, false),
            st(2, 5, false, true, false),
            st(3, 1, true, false, true),
            st(4, 9, true, false, false),
        ];
        let m = propose_defaults(7, &statuses);
        assert_eq!(m.statuses.open, Some(2));
        assert_eq!(m.statuses.escalated, Some(2));
        assert_eq!(m.statuses.closed, Some(4));
        assert_eq!(m.statuses.in_progress, None);
        assert!(!m.confirmed);
    }

    #[test]
    fn without_a_default_flag_the_first_active_open_status_is_proposed() {
        let statuses = [
            st(10, 3, false, false, false),
            st(11, 1, false, false, true),
            st(12, 2, true, false, false),
            st(13, 2, false, false, false),
        ];
        let m = propose_defaults(1, &statuses);
        assert_eq!(m.statuses.escalated, Some(13));
        assert_eq!(m.statuses.closed, Some(12));
    }

    #[test]
    fn inbound_closed_status_closes_and_open_status_reopens() {
        let m = propose_defaults(
            1,
            &[st(1, 0, false, true, false), st(2, 1, true, false, false)],
        );
        assert_eq!(
            inbound_status_effect(CaseStatus::Escalated, 2, true, Some(&m)),
            InboundStatusEffect::Close
        );
        assert_eq!(
            inbound_status_effect(CaseStatus::Closed, 1, false, Some(&m)),
            InboundStatusEffect::Reopen
        );
        // 1 maps to both open and escalated: keep the current status
        assert!(matches!(
            inbound_status_effect(CaseStatus::InProgress, 1, false, Some(&m)),
            InboundStatusEffect::Keep(_)
        ));
    }

    #[test]
    fn an_unambiguous_mapping_moves_the_case() {
        let mut m = propose_defaults(
            1,
            &[st(1, 0, false, true, false), st(5, 1, false, false, false)],
        );
        m.statuses.in_progress = Some(5);
        assert_eq!(
            inbound_status_effect(CaseStatus::Escalated, 5, false, Some(&m)),
            InboundStatusEffect::MoveTo(CaseStatus::InProgress)
        );
        assert_eq!(reopen_status(&m), Some(5));
    }
}

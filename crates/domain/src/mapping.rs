//! Mapping resources: board mappings (rule types → boards, rules → rule types), criticality
//! mappings (criticality → priority) and status mappings (case status ↔ board status).
//!
//! Each resource is one value: effective settings pick a whole resource (own or partner), never
//! single keys of it — see `routing::resolve_settings`.

use serde::{Deserialize, Serialize};

use crate::{CaseStatus, Criticality};

/// Where an effective resource came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingSource {
    Own,
    Partner,
}

impl MappingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Partner => "partner",
        }
    }
    /// The words used in routing reasons: "own mapping" / "partner mapping".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Own => "own mapping",
            Self::Partner => "partner mapping",
        }
    }
}

/// One rule type and the board its tickets go to. `board_id: None` means "no board": rules of
/// this type are not ticketed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTypeBoard {
    pub rule_type: String,
    pub board_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board_name: Option<String>,
    #[serde(default)]
    pub type_id: Option<i64>,
    #[serde(default)]
    pub subtype_id: Option<i64>,
    #[serde(default)]
    pub item_id: Option<i64>,
    /// Initial status of new tickets; `None` falls back to the board's mapped `escalated` status.
    #[serde(default)]
    pub status_id: Option<i64>,
}

/// A rule assigned to a rule type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleAssignment {
    pub rule_id: String,
    pub rule_type: String,
}

/// The board mappings resource of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardMappings {
    #[serde(default)]
    pub rule_types: Vec<RuleTypeBoard>,
    #[serde(default)]
    pub assignments: Vec<RuleAssignment>,
}

impl BoardMappings {
    pub fn rule_type_of(&self, rule_id: &str) -> Option<&str> {
        self.assignments
            .iter()
            .find(|a| a.rule_id == rule_id)
            .map(|a| a.rule_type.as_str())
    }

    pub fn board_of(&self, rule_type: &str) -> Option<&RuleTypeBoard> {
        self.rule_types.iter().find(|r| r.rule_type == rule_type)
    }

    /// Problems that make the resource unusable as a whole: duplicate rule types, a rule
    /// assigned twice, or assigned to a rule type that is not listed. Each names the offending
    /// field as `rule_types[i]` / `assignments[i]`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, rt) in self.rule_types.iter().enumerate() {
            if rt.rule_type.trim().is_empty() {
                errors.push((
                    format!("rule_types[{i}].rule_type"),
                    "must not be empty".into(),
                ));
            } else if !seen.insert(rt.rule_type.as_str()) {
                errors.push((
                    format!("rule_types[{i}].rule_type"),
                    format!("rule type {:?} is listed twice", rt.rule_type),
                ));
            }
        }
        let mut rules = std::collections::HashSet::new();
        for (i, a) in self.assignments.iter().enumerate() {
            if !rules.insert(a.rule_id.as_str()) {
                errors.push((
                    format!("assignments[{i}].rule_id"),
                    format!("rule {} is assigned twice", a.rule_id),
                ));
            }
            if !seen.contains(a.rule_type.as_str()) {
                errors.push((
                    format!("assignments[{i}].rule_type"),
                    format!("rule type {:?} is not among rule_types", a.rule_type),
                ));
            }
        }
        errors
    }
}

/// Criticality → ConnectWise priority id; `None` = not mapped (ConnectWise applies its default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalityMappings {
    #[serde(default)]
    pub critical: Option<i64>,
    #[serde(default)]
    pub high: Option<i64>,
    #[serde(default)]
    pub medium: Option<i64>,
    #[serde(default)]
    pub low: Option<i64>,
    #[serde(default)]
    pub informational: Option<i64>,
}

impl CriticalityMappings {
    pub fn priority_for(&self, c: Criticality) -> Option<i64> {
        match c {
            Criticality::Critical => self.critical,
            Criticality::High => self.high,
            Criticality::Medium => self.medium,
            Criticality::Low => self.low,
            Criticality::Informational => self.informational,
        }
    }

    pub fn set(&mut self, c: Criticality, priority: Option<i64>) {
        let slot = match c {
            Criticality::Critical => &mut self.critical,
            Criticality::High => &mut self.high,
            Criticality::Medium => &mut self.medium,
            Criticality::Low => &mut self.low,
            Criticality::Informational => &mut self.informational,
        };
        *slot = priority;
    }
}

/// Case status → ConnectWise status of one board; `None` = that change is not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseStatusMap {
    #[serde(default)]
    pub open: Option<i64>,
    #[serde(default)]
    pub escalated: Option<i64>,
    #[serde(default)]
    pub in_progress: Option<i64>,
    #[serde(default)]
    pub waiting_on_customer: Option<i64>,
    #[serde(default)]
    pub closed: Option<i64>,
}

impl CaseStatusMap {
    pub fn get(&self, s: CaseStatus) -> Option<i64> {
        match s {
            CaseStatus::Open => self.open,
            CaseStatus::Escalated => self.escalated,
            CaseStatus::InProgress => self.in_progress,
            CaseStatus::WaitingOnCustomer => self.waiting_on_customer,
            CaseStatus::Closed => self.closed,
        }
    }

    /// The case statuses mapped to `status_id`.
    pub fn case_statuses_for(&self, status_id: i64) -> Vec<CaseStatus> {
        CaseStatus::ALL
            .into_iter()
            .filter(|s| self.get(*s) == Some(status_id))
            .collect()
    }
}

/// The status mapping of one board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMapping {
    pub board_id: i64,
    /// `false` marks proposed defaults that nobody confirmed yet.
    #[serde(default)]
    pub confirmed: bool,
    pub statuses: CaseStatusMap,
}

/// The status mappings resource (per board) of the integration's account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMappings {
    #[serde(default)]
    pub boards: Vec<StatusMapping>,
}

impl StatusMappings {
    pub fn for_board(&self, board_id: i64) -> Option<&StatusMapping> {
        self.boards.iter().find(|b| b.board_id == board_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_duplicate_and_dangling_entries() {
        let m = BoardMappings {
            rule_types: vec![
                RuleTypeBoard {
                    rule_type: "Endpoint".into(),
                    board_id: Some(1),
                    board_name: None,
                    type_id: None,
                    subtype_id: None,
                    item_id: None,
                    status_id: None,
                },
                RuleTypeBoard {
                    rule_type: "Endpoint".into(),
                    board_id: Some(2),
                    board_name: None,
                    type_id: None,
                    subtype_id: None,
                    item_id: None,
                    status_id: None,
                },
            ],
            assignments: vec![
                RuleAssignment {
                    rule_id: "r1".into(),
                    rule_type: "Endpoint".into(),
                },
                RuleAssignment {
                    rule_id: "r1".into(),
                    rule_type: "Cloud".into(),
                },
            ],
        };
        let fields: Vec<_> = m.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "rule_types[1].rule_type",
                "assignments[1].rule_id",
                "assignments[1].rule_type"
            ]
        );
    }
}

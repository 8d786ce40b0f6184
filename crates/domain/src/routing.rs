//! Routing: (case, effective settings) → ticket plan, or a reason a person can read.
//!
//! Two pure steps:
//! 1. [`resolve_settings`] picks, per resource, the settings that apply to one account: its own
//!    integration and everything of its own, or — when the partner applies its integration to all
//!    sub-tenants — the partner's integration with the sub-tenant's own board / criticality
//!    mappings if it has them (unless uniform mode forces the partner's), else the partner's.
//!    Resources are taken whole: inside the one in use, a missing entry never falls through.
//! 2. [`resolve_ticket_plan`] turns a case plus those settings into a [`TicketPlan`] (board,
//!    type, status, priority, company, and the reasons for each) or a [`NotTicketed`] reason.

use serde::{Deserialize, Serialize};

use crate::mapping::{BoardMappings, CriticalityMappings, MappingSource, StatusMappings};
use crate::{CaseStatus, Criticality};

/// The integration (support system) settings routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRef {
    pub id: String,
    /// The account that owns the integration.
    pub account_id: String,
    pub parent_company_identifier: Option<String>,
    pub active: bool,
    pub apply_to_all_subtenants: bool,
    pub uniform_subtenant_mappings: bool,
}

/// Everything one account has configured of its own.
#[derive(Debug, Clone, Default)]
pub struct AccountSettings {
    pub account_id: String,
    pub integration: Option<IntegrationRef>,
    pub board_mappings: Option<BoardMappings>,
    pub criticality_mappings: Option<CriticalityMappings>,
    /// Company ID mappings (`account_id` → company identifier); only meaningful on the
    /// integration's account.
    pub company_mappings: Vec<(String, String)>,
    pub status_mappings: StatusMappings,
}

/// The settings in effect for one account, each resource with where it came from.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub integration: Option<(IntegrationRef, MappingSource)>,
    pub board_mappings: Option<(BoardMappings, MappingSource)>,
    pub criticality_mappings: Option<(CriticalityMappings, MappingSource)>,
    /// This account's company ID mapping in the integration's account, if any.
    pub company_identifier: Option<String>,
    pub status_mappings: StatusMappings,
}

/// Resolves the effective settings of `own` (an account), given its partner's settings when it
/// is a sub-tenant.
pub fn resolve_settings(
    own: &AccountSettings,
    partner: Option<&AccountSettings>,
) -> RoutingSettings {
    if let Some(integration) = &own.integration {
        return RoutingSettings {
            integration: Some((integration.clone(), MappingSource::Own)),
            board_mappings: own.board_mappings.clone().map(|m| (m, MappingSource::Own)),
            criticality_mappings: own
                .criticality_mappings
                .clone()
                .map(|m| (m, MappingSource::Own)),
            company_identifier: company_mapping_of(own, &own.account_id),
            status_mappings: own.status_mappings.clone(),
        };
    }
    let inherited = partner.and_then(|p| {
        p.integration
            .as_ref()
            .filter(|i| i.apply_to_all_subtenants)
            .map(|i| (p, i))
    });
    let Some((partner, integration)) = inherited else {
        return RoutingSettings {
            integration: None,
            board_mappings: own.board_mappings.clone().map(|m| (m, MappingSource::Own)),
            criticality_mappings: own
                .criticality_mappings
                .clone()
                .map(|m| (m, MappingSource::Own)),
            company_identifier: None,
            status_mappings: StatusMappings::default(),
        };
    };
    let uniform = integration.uniform_subtenant_mappings;
    RoutingSettings {
        integration: Some((integration.clone(), MappingSource::Partner)),
        board_mappings: pick(uniform, &own.board_mappings, &partner.board_mappings),
        criticality_mappings: pick(
            uniform,
            &own.criticality_mappings,
            &partner.criticality_mappings,
        ),
        company_identifier: company_mapping_of(partner, &own.account_id),
        status_mappings: partner.status_mappings.clone(),
    }
}

/// Picks one whole resource: the sub-tenant's own copy unless uniform mode forces the partner's.
fn pick<T: Clone>(
    uniform: bool,
    own: &Option<T>,
    partner: &Option<T>,
) -> Option<(T, MappingSource)> {
    match (uniform, own) {
        (false, Some(m)) => Some((m.clone(), MappingSource::Own)),
        _ => partner.clone().map(|m| (m, MappingSource::Partner)),
    }
}

fn company_mapping_of(integration_account: &AccountSettings, account_id: &str) -> Option<String> {
    integration_account
        .company_mappings
        .iter()
        .find(|(a, _)| a == account_id)
        .map(|(_, c)| c.clone())
}

/// The facts of a case routing looks at.
#[derive(Debug, Clone)]
pub struct RoutingCase<'a> {
    pub account_name: &'a str,
    pub rule_id: &'a str,
    pub criticality: Criticality,
}

/// Where a case's ticket goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPlan {
    pub integration_id: String,
    pub board_id: i64,
    pub type_id: Option<i64>,
    pub subtype_id: Option<i64>,
    pub item_id: Option<i64>,
    pub status_id: Option<i64>,
    pub priority_id: Option<i64>,
    pub company_identifier: String,
    /// One sentence per decision, e.g. "board 7: rule type Endpoint, partner mapping".
    pub reasons: Vec<String>,
}

/// Why a case gets no ticket. Its `Display` is the Activity Log's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTicketed {
    #[error(
        "not ticketed: {account} has no support system, and no partner applies its integration to it"
    )]
    NoIntegration { account: String },
    #[error("not ticketed: the support system is not active (run its Test, then activate it)")]
    IntegrationInactive,
    #[error("not ticketed: {account} has no board mappings ({source_hint})")]
    NoBoardMappings {
        account: String,
        source_hint: String,
    },
    #[error("not ticketed: rule {rule_id} has no rule type on this account ({mapping})")]
    RuleUnassigned {
        rule_id: String,
        mapping: &'static str,
    },
    #[error("not ticketed: rule type {rule_type} has no board ({mapping})")]
    RuleTypeWithoutBoard {
        rule_type: String,
        mapping: &'static str,
    },
    #[error(
        "not ticketed: no company mapping for {account} and the integration has no parent company identifier"
    )]
    NoCompany { account: String },
}

impl NotTicketed {
    /// A stable machine-readable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoIntegration { .. } => "no_integration",
            Self::IntegrationInactive => "integration_inactive",
            Self::NoBoardMappings { .. } => "no_board_mappings",
            Self::RuleUnassigned { .. } => "rule_unassigned",
            Self::RuleTypeWithoutBoard { .. } => "rule_type_without_board",
            Self::NoCompany { .. } => "no_company",
        }
    }
}

/// Decides where `case`'s ticket goes under `settings`.
pub fn resolve_ticket_plan(
    case: &RoutingCase<'_>,
    settings: &RoutingSettings,
) -> Result<TicketPlan, NotTicketed> {
    let account = case.account_name.to_string();
    let Some((integration, integration_source)) = &settings.integration else {
        return Err(NotTicketed::NoIntegration { account });
    };
    if !integration.active {
        return Err(NotTicketed::IntegrationInactive);
    }
    let Some((boards, board_source)) = &settings.board_mappings else {
        let source_hint = match integration_source {
            MappingSource::Own => "set them under Board Mappings".to_string(),
            MappingSource::Partner => "neither its own nor the partner's".to_string(),
        };
        return Err(NotTicketed::NoBoardMappings {
            account,
            source_hint,
        });
    };
    let Some(rule_type) = boards.rule_type_of(case.rule_id) else {
        return Err(NotTicketed::RuleUnassigned {
            rule_id: case.rule_id.to_string(),
            mapping: board_source.describe(),
        });
    };
    let Some(board) = boards.board_of(rule_type).filter(|b| b.board_id.is_some()) else {
        return Err(NotTicketed::RuleTypeWithoutBoard {
            rule_type: rule_type.to_string(),
            mapping: board_source.describe(),
        });
    };
    let board_id = board.board_id.expect("filtered above");
    let board_label = match &board.board_name {
        Some(name) => format!("board {board_id} ({name})"),
        None => format!("board {board_id}"),
    };
    let mut reasons = vec![format!(
        "{board_label}: rule type {rule_type}, {}",
        board_source.describe()
    )];

    let (company_identifier, company_reason) = match &settings.company_identifier {
        Some(c) => (
            c.clone(),
            format!("company {c}: company ID mapping of {account}"),
        ),
        None => match &integration.parent_company_identifier {
            Some(p) => (
                p.clone(),
                format!(
                    "company {p}: no company ID mapping for {account}, filed under the parent company"
                ),
            ),
            None => return Err(NotTicketed::NoCompany { account }),
        },
    };
    reasons.push(company_reason);

    let priority_id = match &settings.criticality_mappings {
        Some((m, src)) => match m.priority_for(case.criticality) {
            Some(p) => {
                reasons.push(format!(
                    "priority {p}: {}, {}",
                    case.criticality,
                    src.describe()
                ));
                Some(p)
            }
            None => {
                reasons.push(format!(
                    "no priority: {} is not mapped ({}); ConnectWise applies its default",
                    case.criticality,
                    src.describe()
                ));
                None
            }
        },
        None => {
            reasons.push(
                "no priority: no criticality mappings; ConnectWise applies its default".to_string(),
            );
            None
        }
    };

    let mapped_escalated = settings
        .status_mappings
        .for_board(board_id)
        .and_then(|m| m.statuses.get(CaseStatus::Escalated));
    let status_id = match (board.status_id, mapped_escalated) {
        (Some(s), _) => {
            reasons.push(format!("status {s}: initial status of the board mapping"));
            Some(s)
        }
        (None, Some(s)) => {
            reasons.push(format!("status {s}: mapped escalated status of the board"));
            Some(s)
        }
        (None, None) => {
            reasons.push("status: the board's default".to_string());
            None
        }
    };

    Ok(TicketPlan {
        integration_id: integration.id.clone(),
        board_id,
        type_id: board.type_id,
        subtype_id: board.subtype_id,
        item_id: board.item_id,
        status_id,
        priority_id,
        company_identifier,
        reasons,
    })
}

#[cfg(test)]
mod tests;

//! The Casebridge domain: accounts, rules, cases, mappings, routing, status mapping and the case
//! state machine.
//!
//! This crate has no I/O, no async and no framework types. Everything here is a plain value or a
//! pure function, so the decisions that matter most — where a ticket goes, which status a change
//! maps to, what a summary looks like once cut to ConnectWise's limit — can be tested exhaustively.
//!
//! Read `routing` first: it is the function that turns a case plus the effective settings into a
//! ticket plan, or into a reason a person can read for why no ticket is made.

pub mod account;
pub mod case;
pub mod criticality;
pub mod ids;
pub mod mapping;
pub mod routing;
pub mod status_mapping;
pub mod text;
pub mod ticket_content;

pub use account::{AccountKind, Role};
pub use case::{CaseStatus, Direction, NoteOrigin, TicketState, Visibility};
pub use criticality::Criticality;
pub use mapping::{
    BoardMappings, CriticalityMappings, MappingSource, RuleAssignment, RuleTypeBoard,
    StatusMapping, StatusMappings,
};
pub use routing::{IntegrationRef, NotTicketed, RoutingCase, RoutingSettings, TicketPlan};

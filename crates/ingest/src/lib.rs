//! Alert ingest for Casebridge: the rule catalogue and the pure parsing half of alert ingest.
//!
//! - [`catalogue`]: the Sigma rule catalogue (`data/sigma-rules.jsonl`) and the suggested rule
//!   type of a rule (`docs/rule-types.md`).
//! - [`format`]: the alert formats (OCSF, Wazuh, Sigma regression record, plain JSON) and detection.
//! - [`parse`]: a request body → one [`LineOutcome`] per alert.
//!
//! Nothing here touches the store; attribution to an account, rule resolution against the
//! catalogue and the criticality default are the caller's.

pub mod catalogue;
pub mod format;
pub mod parse;
pub mod service;

pub use catalogue::{
    CatalogueError, CatalogueRule, DEFAULT_RULE_TYPES, Logsource, parse_catalogue,
    suggest_rule_type,
};
pub use format::{AlertFormat, detect_format};
pub use parse::{
    DEFAULT_MAX_LINE_BYTES, LineOutcome, Observable, ParseError, ParseOptions, ParsedAlert,
    RuleRef, parse_alerts, parse_alerts_with,
};

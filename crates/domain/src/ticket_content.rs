//! What a case looks like as a ConnectWise ticket (DESIGN §4): a summary cut to 100 UTF-16 code
//! units, a customer-visible description with the full title and a plain summary only, and an
//! internal analysis with observables, source details and the portal link. Analyst-only data
//! never goes into customer-visible fields.

use crate::Criticality;
use crate::text::truncate_utf16;

/// ConnectWise's `summary` limit, in UTF-16 code units.
pub const SUMMARY_MAX: usize = 100;

/// The case facts a ticket is written from.
#[derive(Debug, Clone)]
pub struct CaseForTicket<'a> {
    pub case_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub criticality: Criticality,
    pub rule_id: &'a str,
    pub rule_title: &'a str,
    pub account_name: &'a str,
    /// `kind: value` lines.
    pub observables: Vec<(String, String)>,
    pub source_format: &'a str,
    pub alert_count: i64,
    pub portal_url: Option<&'a str>,
}

/// The text fields of a new ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketContent {
    pub summary: String,
    pub initial_description: String,
    pub initial_internal_analysis: String,
    pub severity: &'static str,
    pub impact: &'static str,
}

pub fn build_ticket_content(c: &CaseForTicket<'_>) -> TicketContent {
    let summary = truncate_utf16(c.title.trim(), SUMMARY_MAX);
    let mut description = format!("{}\n\nCriticality: {}.", c.title.trim(), c.criticality);
    let plain = c.description.trim();
    if !plain.is_empty() {
        description.push_str("\n\n");
        description.push_str(plain);
    }
    let mut internal = format!(
        "Casebridge case {}\nAccount: {}\nRule: {} ({})\nSource format: {}\nAlerts: {}",
        c.case_id, c.account_name, c.rule_title, c.rule_id, c.source_format, c.alert_count
    );
    if !c.observables.is_empty() {
        internal.push_str("\n\nObservables:");
        for (kind, value) in &c.observables {
            internal.push_str(&format!("\n- {kind}: {value}"));
        }
    }
    if let Some(url) = c.portal_url {
        internal.push_str(&format!("\n\nCase in Casebridge: {url}"));
    }
    let (severity, impact) = c.criticality.connectwise_severity_impact();
    TicketContent {
        summary,
        initial_description: description,
        initial_internal_analysis: internal,
        severity,
        impact,
    }
}

/// The marker a note we send carries, so that a note whose POST outcome is unknown can be found
/// among the ticket's notes, and so inbound sync recognises our own notes.
pub fn note_marker(note_id: &str) -> String {
    let tail = &note_id[note_id.len().saturating_sub(12)..];
    format!("[cb:{tail}]")
}

/// The text sent to ConnectWise for a portal note.
pub fn outbound_note_text(text: &str, note_id: &str) -> String {
    format!("{}\n\n{}", text.trim_end(), note_marker(note_id))
}

/// Extracts our marker from a ConnectWise note's text, if it carries one.
pub fn find_note_marker(text: &str) -> Option<&str> {
    let start = text.rfind("[cb:")?;
    let end = text[start..].find(']')? + start + 1;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case<'a>(title: &'a str, portal: Option<&'a str>) -> CaseForTicket<'a> {
        CaseForTicket {
            case_id: "case_0190aaaabbbbccccddddeeeeffff0000",
            title,
            description: "PowerShell downloaded a file.",
            criticality: Criticality::High,
            rule_id: "r-1",
            rule_title: "Suspicious PowerShell",
            account_name: "Acme",
            observables: vec![("host".into(), "WKSTN-01".into())],
            source_format: "sigma",
            alert_count: 1,
            portal_url: portal,
        }
    }

    #[test]
    fn observables_and_portal_link_stay_out_of_the_customer_visible_description() {
        let t = build_ticket_content(&case("Mimikatz", Some("https://portal.example/cases/1")));
        assert!(!t.initial_description.contains("WKSTN-01"));
        assert!(!t.initial_description.contains("https://portal.example"));
        assert!(t.initial_internal_analysis.contains("WKSTN-01"));
        assert!(
            t.initial_internal_analysis
                .contains("https://portal.example/cases/1")
        );
        assert_eq!((t.severity, t.impact), ("High", "Medium"));
    }

    #[test]
    fn a_long_title_is_cut_in_the_summary_but_whole_in_the_description() {
        let title = "Ä".repeat(120);
        let t = build_ticket_content(&case(&title, None));
        assert_eq!(t.summary.encode_utf16().count(), 100);
        assert!(t.initial_description.contains(&title));
    }

    #[test]
    fn the_note_marker_is_found_again_in_the_sent_text() {
        let id = "note_0190aaaabbbbccccddddeeeeffff1234";
        let sent = outbound_note_text("Isolated the host.", id);
        assert_eq!(find_note_marker(&sent), Some(note_marker(id).as_str()));
        assert_eq!(find_note_marker("a technician note"), None);
    }
}

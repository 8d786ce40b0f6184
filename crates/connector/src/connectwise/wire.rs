//! ConnectWise's JSON shapes, as this client reads and writes them. Every field is optional
//! (ConnectWise omits null/empty fields, pitfall 10) and unknown fields are ignored (new
//! fields are not a breaking change, API.md §1.5). Ids are `i64`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// `GET /login/companyinfo/{company}` — PascalCase keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompanyInfo {
    #[serde(rename = "CompanyName", default)]
    pub company_name: Option<String>,
    #[serde(rename = "Codebase", default)]
    pub codebase: Option<String>,
    #[serde(rename = "VersionCode", default)]
    pub version_code: Option<String>,
    #[serde(rename = "CompanyID", default)]
    pub company_id: Option<String>,
    #[serde(rename = "IsCloud", default)]
    pub is_cloud: Option<bool>,
}

/// An error body: `{"code","message","errors":[{"code","message","resource","field"}]}`.
/// The 429 body uses `error` instead of `code`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Option<Vec<ErrorItem>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

/// A `…Reference` object as read: `{id, name, identifier, …}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reference {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub identifier: Option<String>,
}

/// `_info`: a string map; only the keys used here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Info {
    #[serde(rename = "lastUpdated", default)]
    pub last_updated: Option<String>,
    #[serde(rename = "updatedBy", default)]
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireBoard {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// Newer models (pitfall 23).
    #[serde(rename = "inactiveFlag", default)]
    pub inactive_flag: Option<bool>,
    /// Older models.
    #[serde(default)]
    pub inactive: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireBoardStatus {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "sortOrder", default)]
    pub sort_order: Option<i64>,
    #[serde(default)]
    pub inactive: Option<bool>,
    #[serde(rename = "inactiveFlag", default)]
    pub inactive_flag: Option<bool>,
    #[serde(rename = "closedStatus", default)]
    pub closed_status: Option<bool>,
    #[serde(rename = "defaultFlag", default)]
    pub default_flag: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WirePriority {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireCompany {
    pub id: i64,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "deletedFlag", default)]
    pub deleted_flag: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireTicket {
    pub id: i64,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(rename = "recordType", default)]
    pub record_type: Option<String>,
    #[serde(default)]
    pub board: Option<Reference>,
    #[serde(default)]
    pub status: Option<Reference>,
    #[serde(default)]
    pub company: Option<Reference>,
    #[serde(default)]
    pub priority: Option<Reference>,
    #[serde(rename = "closedFlag", default)]
    pub closed_flag: Option<bool>,
    #[serde(rename = "externalXRef", default)]
    pub external_xref: Option<String>,
    #[serde(rename = "mergedParentTicket", default)]
    pub merged_parent_ticket: Option<Reference>,
    #[serde(rename = "_info", default)]
    pub info: Option<Info>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireNote {
    pub id: i64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(rename = "detailDescriptionFlag", default)]
    pub detail_description_flag: Option<bool>,
    #[serde(rename = "internalAnalysisFlag", default)]
    pub internal_analysis_flag: Option<bool>,
    #[serde(rename = "resolutionFlag", default)]
    pub resolution_flag: Option<bool>,
    #[serde(default)]
    pub member: Option<Reference>,
    #[serde(rename = "createdBy", default)]
    pub created_by: Option<String>,
    #[serde(rename = "dateCreated", default)]
    pub date_created: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireCallback {
    pub id: i64,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(rename = "objectId", default)]
    pub object_id: Option<i64>,
    #[serde(rename = "inactiveFlag", default)]
    pub inactive_flag: Option<bool>,
}

/// A reference as written: only the key.
#[derive(Debug, Clone, Serialize)]
pub struct IdRef {
    pub id: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentifierRef {
    pub identifier: String,
}

/// `POST /service/tickets` body.
#[derive(Debug, Clone, Serialize)]
pub struct PostTicket {
    pub summary: String,
    pub board: IdRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<IdRef>,
    pub company: IdentifierRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<IdRef>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdRef>,
    #[serde(rename = "subType", skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<IdRef>,
    #[serde(rename = "externalXRef")]
    pub external_xref: String,
    #[serde(
        rename = "initialDescription",
        skip_serializing_if = "String::is_empty"
    )]
    pub initial_description: String,
    #[serde(
        rename = "initialInternalAnalysis",
        skip_serializing_if = "String::is_empty"
    )]
    pub initial_internal_analysis: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    #[serde(rename = "processNotifications")]
    pub process_notifications: bool,
}

/// `POST /service/tickets/{id}/notes` body.
#[derive(Debug, Clone, Serialize)]
pub struct PostNote {
    pub text: String,
    #[serde(rename = "detailDescriptionFlag")]
    pub detail_description_flag: bool,
    #[serde(rename = "internalAnalysisFlag")]
    pub internal_analysis_flag: bool,
    #[serde(rename = "resolutionFlag")]
    pub resolution_flag: bool,
    #[serde(rename = "processNotifications")]
    pub process_notifications: bool,
}

/// `POST /system/callbacks` body.
#[derive(Debug, Clone, Serialize)]
pub struct PostCallback {
    pub description: String,
    pub url: String,
    #[serde(rename = "objectId")]
    pub object_id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub level: String,
    #[serde(rename = "inactiveFlag")]
    pub inactive_flag: bool,
}

/// One PATCH operation.
#[derive(Debug, Clone, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: &'static str,
    pub value: serde_json::Value,
}

/// Parses a ConnectWise timestamp (`yyyy-MM-ddTHH:mm:ssZ`, RFC 3339 in general; a value
/// without offset is taken as UTC). `None` for anything else.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let fmt_frac = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    time::PrimitiveDateTime::parse(s, &fmt)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &fmt_frac))
        .ok()
        .map(|p| p.assume_utc())
}

/// Formats a timestamp as ConnectWise writes it: `yyyy-MM-ddTHH:mm:ssZ` (UTC, no fraction).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

impl WireBoard {
    pub fn into_board(self) -> crate::Board {
        crate::Board {
            id: self.id,
            name: self.name.unwrap_or_default(),
            inactive: self.inactive_flag.or(self.inactive).unwrap_or(false),
        }
    }
}

impl WireBoardStatus {
    pub fn into_status(self) -> crate::BoardStatus {
        crate::BoardStatus {
            id: self.id,
            name: self.name.unwrap_or_default(),
            sort_order: self.sort_order.unwrap_or(0),
            inactive: self.inactive.or(self.inactive_flag).unwrap_or(false),
            closed_status: self.closed_status.unwrap_or(false),
            default_flag: self.default_flag.unwrap_or(false),
        }
    }
}

impl WirePriority {
    pub fn into_priority(self) -> crate::Priority {
        crate::Priority {
            id: self.id,
            name: self.name.unwrap_or_default(),
        }
    }
}

impl WireCompany {
    pub fn into_company(self) -> crate::Company {
        crate::Company {
            id: self.id,
            identifier: self.identifier.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            deleted: self.deleted_flag.unwrap_or(false),
        }
    }
}

impl WireTicket {
    pub fn into_ticket(self) -> crate::Ticket {
        let info = self.info.unwrap_or_default();
        crate::Ticket {
            id: self.id,
            summary: self.summary.unwrap_or_default(),
            board_id: self.board.and_then(|b| b.id),
            status_id: self.status.as_ref().and_then(|s| s.id),
            status_name: self.status.and_then(|s| s.name),
            closed_flag: self.closed_flag.unwrap_or(false),
            priority_id: self.priority.and_then(|p| p.id),
            company_identifier: self.company.and_then(|c| c.identifier),
            external_xref: self.external_xref.filter(|x| !x.is_empty()),
            record_type: self.record_type,
            last_updated: info.last_updated.as_deref().and_then(parse_time),
            updated_by: info.updated_by,
            merged_parent_id: self.merged_parent_ticket.and_then(|m| m.id),
        }
    }
}

impl WireNote {
    pub fn into_note(self) -> crate::Note {
        crate::Note {
            id: self.id,
            text: self.text.unwrap_or_default(),
            detail_description: self.detail_description_flag.unwrap_or(false),
            internal_analysis: self.internal_analysis_flag.unwrap_or(false),
            resolution: self.resolution_flag.unwrap_or(false),
            member: self.member.and_then(|m| m.identifier),
            created_by: self.created_by,
            date_created: self.date_created.as_deref().and_then(parse_time),
        }
    }
}

impl WireCallback {
    pub fn into_registration(self) -> crate::CallbackRegistration {
        crate::CallbackRegistration {
            id: self.id,
            url: self.url.unwrap_or_default(),
            kind: self.kind.unwrap_or_default(),
            level: self.level.unwrap_or_default(),
            object_id: self.object_id.unwrap_or(0),
            inactive: self.inactive_flag.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ticket_tolerates_missing_and_unknown_fields() {
        let t: WireTicket = serde_json::from_str(
            r#"{"id": 3000000000, "summary": "x", "brandNewField": {"a": [1]},
                "status": {"id": 41, "name": "New", "sort": 0, "_info": {}},
                "company": {"id": 5, "identifier": "ACME", "name": "Acme"},
                "closedFlag": false, "externalXRef": "case_1",
                "mergedParentTicket": {"id": 9, "summary": "p"},
                "_info": {"lastUpdated": "2024-01-02T03:04:05Z", "updatedBy": "jtech", "notes_href": "h"}}"#,
        )
        .unwrap();
        let t = t.into_ticket();
        assert_eq!(t.id, 3_000_000_000);
        assert_eq!(t.status_id, Some(41));
        assert_eq!(t.status_name.as_deref(), Some("New"));
        assert_eq!(t.company_identifier.as_deref(), Some("ACME"));
        assert_eq!(t.last_updated, Some(datetime!(2024-01-02 03:04:05 UTC)));
        assert_eq!(t.updated_by.as_deref(), Some("jtech"));
        assert_eq!(t.merged_parent_id, Some(9));
        assert_eq!(t.board_id, None);

        let bare: WireTicket = serde_json::from_str(r#"{"id": 1}"#).unwrap();
        let bare = bare.into_ticket();
        assert_eq!(bare.summary, "");
        assert!(!bare.closed_flag);
        assert_eq!(bare.last_updated, None);
    }

    #[test]
    fn board_accepts_both_inactive_spellings() {
        let a: WireBoard =
            serde_json::from_str(r#"{"id":1,"name":"A","inactiveFlag":true}"#).unwrap();
        let b: WireBoard = serde_json::from_str(r#"{"id":2,"name":"B","inactive":true}"#).unwrap();
        let c: WireBoard = serde_json::from_str(r#"{"id":3}"#).unwrap();
        assert!(a.into_board().inactive);
        assert!(b.into_board().inactive);
        assert!(!c.into_board().inactive);
    }

    #[test]
    fn status_facts() {
        let s: WireBoardStatus = serde_json::from_str(
            r#"{"id":7,"name":"Closed","sortOrder":9,"inactive":false,"closedStatus":true,"defaultFlag":false}"#,
        )
        .unwrap();
        let s = s.into_status();
        let f = s.facts();
        assert_eq!((f.id, f.sort_order, f.closed_status), (7, 9, true));
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2024-01-02T03:04:05Z"),
            Some(datetime!(2024-01-02 03:04:05 UTC))
        );
        assert_eq!(
            parse_time("2024-01-02T03:04:05"),
            Some(datetime!(2024-01-02 03:04:05 UTC))
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(
            format_time(datetime!(2024-01-02 03:04:05.9 +02:00)),
            "2024-01-02T01:04:05Z"
        );
    }

    #[test]
    fn post_ticket_shape() {
        let p = PostTicket {
            summary: "s".into(),
            board: IdRef { id: 7 },
            status: None,
            company: IdentifierRef {
                identifier: "A&B".into(),
            },
            priority: Some(IdRef { id: 4 }),
            kind: None,
            sub_type: Some(IdRef { id: 60 }),
            item: None,
            external_xref: "case_1".into(),
            initial_description: "d".into(),
            initial_internal_analysis: String::new(),
            severity: None,
            impact: Some("High".into()),
            process_notifications: false,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"summary":"s","board":{"id":7},"company":{"identifier":"A&B"},
                "priority":{"id":4},"subType":{"id":60},"externalXRef":"case_1",
                "initialDescription":"d","impact":"High","processNotifications":false})
        );
    }
}

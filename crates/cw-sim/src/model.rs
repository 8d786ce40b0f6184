//! The simulated site's state (everything persisted) and the business rules on it.
//!
//! Tickets, notes and callback registrations live in memory behind one mutex; every change goes through
//! the methods here (the REST API and the HTML view share them), which validate like ConnectWise, keep
//! `_info` current and return the callback events to deliver.
//!
//! **Merge.** `POST /service/tickets/{parentId}/merge` with `{"mergeTicketIds":[id,…], "status":{"id":N}?}`
//! merges each listed ticket into the parent: the child's notes are copied onto the parent
//! (`allNotes` marks them `mergedFlag: true`), the child moves to a closed status of its board (the
//! `status` given if it is a closed status of that board, else the first active closed status by
//! `sortOrder`), so `closedFlag` is true, and the child carries `mergedParentTicket: {id, summary}`.
//! The child stays readable (GET 200). Both tickets fire an `updated` callback. Detect "merged away" by
//! `mergedParentTicket` being present.
//!
//! **Delete.** `DELETE /service/tickets/{id}` → 204; the ticket and its notes are gone, GET answers
//! 404 `{"code":"NotFound","message":"Ticket N not found"}`, and a `deleted` callback with `Entity: null`
//! goes out.
use crate::cond;
use crate::error::{CwError, CwResult, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use time::OffsetDateTime;

pub const FIRST_TICKET_ID: u64 = 3_000_000_001;
pub const FIRST_NOTE_ID: u64 = 4_000_000_001;

pub fn now_str() -> String {
    fmt_time(OffsetDateTime::now_utc())
}

pub fn fmt_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// Length as ConnectWise counts it: UTF-16 code units (a character outside the BMP counts 2).
pub fn utf16_len(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) > 0xFFFF { 2 } else { 1 })
        .sum()
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The integration's API member: everything.
    Admin,
    /// Tickets and notes (read, create, update, delete), reading boards, priorities and companies.
    Technician,
    /// Reads tickets, boards and priorities; cannot create or change tickets, read companies or callbacks.
    Restricted,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Perm {
    SystemInfo,
    ReadService,
    ReadCompanies,
    ReadTickets,
    AddTickets,
    EditTickets,
    DeleteTickets,
    Callbacks,
}

impl Perm {
    pub fn label(self) -> &'static str {
        match self {
            Perm::SystemInfo => "System > API Reports: Inquire",
            Perm::ReadService => "Service Desk > Service Tickets: Inquire",
            Perm::ReadCompanies => "Companies > Company Maintenance: Inquire",
            Perm::ReadTickets => "Service Desk > Service Tickets: Inquire",
            Perm::AddTickets => "Service Desk > Service Tickets: Add",
            Perm::EditTickets => "Service Desk > Service Tickets: Edit",
            Perm::DeleteTickets => "Service Desk > Service Tickets: Delete",
            Perm::Callbacks => "System > Table Setup: Callbacks",
        }
    }
}

impl Role {
    pub fn allows(self, p: Perm) -> bool {
        match self {
            Role::Admin => true,
            Role::Technician => p != Perm::Callbacks,
            Role::Restricted => {
                matches!(p, Perm::SystemInfo | Perm::ReadService | Perm::ReadTickets)
            }
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub identifier: String,
    pub name: String,
    pub role: Role,
    /// sha256 hex of the public key (lookup).
    pub public_hash: String,
    pub salt: String,
    /// sha256 hex of `salt + private key`.
    pub private_hash: String,
}

impl Member {
    pub fn new(
        id: u64,
        identifier: &str,
        name: &str,
        role: Role,
        public_key: &str,
        private_key: &str,
    ) -> Self {
        let salt = crate::random_hex(16);
        Member {
            id,
            identifier: identifier.into(),
            name: name.into(),
            role,
            public_hash: sha256_hex(public_key),
            private_hash: sha256_hex(&format!("{salt}{private_key}")),
            salt,
        }
    }
    pub fn reference(&self) -> Value {
        json!({"id": self.id, "identifier": self.identifier, "name": self.name, "dailyCapacity": 8.0,
               "_info": {"member_href": format!("/system/members/{}", self.id)}})
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Board {
    pub id: u64,
    pub name: String,
    pub inactive: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BoardStatus {
    pub id: u64,
    pub board_id: u64,
    pub name: String,
    pub sort_order: i64,
    pub display_on_board: bool,
    pub inactive: bool,
    pub closed_status: bool,
    pub default_flag: bool,
    pub escalation_status: String,
}

/// A board type, subtype or item.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BoardItem {
    pub id: u64,
    pub board_id: u64,
    pub name: String,
    pub inactive: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Priority {
    pub id: u64,
    pub name: String,
    pub sort_order: i64,
    pub level: String,
    pub color: String,
    pub default_flag: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Company {
    pub id: u64,
    pub identifier: String,
    pub name: String,
    pub deleted: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Ticket {
    pub id: u64,
    pub summary: String,
    pub record_type: String,
    pub board_id: u64,
    pub status_id: u64,
    pub company_id: u64,
    pub priority_id: Option<u64>,
    pub type_id: Option<u64>,
    pub subtype_id: Option<u64>,
    pub item_id: Option<u64>,
    pub owner_id: Option<u64>,
    /// Optional string fields by their JSON name (siteName, externalXRef, severity, …).
    pub strings: BTreeMap<String, String>,
    /// Optional boolean fields by JSON name (customerUpdatedFlag, …).
    pub flags: BTreeMap<String, bool>,
    pub closed_date: Option<String>,
    pub closed_by: Option<String>,
    pub merged_parent: Option<u64>,
    pub date_entered: String,
    pub entered_by: String,
    pub last_updated: String,
    pub updated_by: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Note {
    pub id: u64,
    pub ticket_id: u64,
    pub text: String,
    pub detail: bool,
    pub internal: bool,
    pub resolution: bool,
    pub customer_updated: bool,
    pub member_id: u64,
    pub created_by: String,
    pub date_created: String,
    pub last_updated: String,
    pub updated_by: String,
    pub merged_from: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Callback {
    pub id: u64,
    pub description: String,
    pub url: String,
    pub object_id: u64,
    pub cb_type: String,
    pub level: String,
    pub member_id: u64,
    pub inactive: bool,
    pub self_suppressed: bool,
    pub connectwise_id: String,
    pub date_entered: String,
    pub last_updated: String,
    pub updated_by: String,
    /// Consecutive deliveries that finally failed.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the current run of failures started (unix seconds, f64).
    #[serde(default)]
    pub failing_since: Option<f64>,
}

/// A change to deliver as callbacks.
#[derive(Clone, Debug)]
pub struct Change {
    pub action: &'static str,
    pub ticket_id: u64,
    /// Ticket JSON as a string, None on delete.
    pub entity: Option<String>,
    pub member_id: u64,
    pub member_identifier: String,
    pub board_id: u64,
    pub status_id: u64,
    pub company_id: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct State {
    pub company_id: String,
    pub company_name: String,
    pub signing_key: String,
    pub key_id: String,
    pub product_instance_id: String,
    pub partner_id: String,
    pub members: Vec<Member>,
    pub boards: Vec<Board>,
    pub statuses: Vec<BoardStatus>,
    pub types: Vec<BoardItem>,
    pub subtypes: Vec<BoardItem>,
    pub items: Vec<BoardItem>,
    pub priorities: Vec<Priority>,
    pub companies: Vec<Company>,
    pub tickets: BTreeMap<u64, Ticket>,
    pub notes: BTreeMap<u64, Vec<Note>>,
    pub callbacks: BTreeMap<u64, Callback>,
    pub next_ticket_id: u64,
    pub next_note_id: u64,
    pub next_callback_id: u64,
    pub next_member_id: u64,
}

/// Optional string fields of a ticket with their max lengths (UTF-16 units).
pub const TICKET_STRINGS: &[(&str, usize)] = &[
    ("wbsCode", 50),
    ("siteName", 50),
    ("addressLine1", 50),
    ("addressLine2", 50),
    ("city", 50),
    ("stateIdentifier", 50),
    ("zip", 12),
    ("contactName", 62),
    ("contactPhoneNumber", 20),
    ("contactPhoneExtension", 15),
    ("contactEmailAddress", 250),
    ("externalXRef", 100),
    ("poNumber", 50),
    ("automaticEmailCc", 1000),
];
const TICKET_ENUMS: &[(&str, &[&str])] = &[
    ("severity", &["Low", "Medium", "High"]),
    ("impact", &["Low", "Medium", "High"]),
    (
        "recordType",
        &["ServiceTicket", "ProjectTicket", "ProjectIssue"],
    ),
];
const TICKET_FLAGS: &[&str] = &[
    "customerUpdatedFlag",
    "allowAllClientsPortalView",
    "automaticEmailContactFlag",
    "automaticEmailResourceFlag",
    "automaticEmailCcFlag",
];
/// Accepted on writes, not stored.
const TICKET_TRANSIENT: &[&str] = &["processNotifications", "skipCallback"];
const TICKET_REFS: &[&str] = &[
    "board", "status", "company", "priority", "type", "subType", "item", "owner",
];

/// Top-level fields known to `conditions` on tickets.
pub const TICKET_FIELDS: &[&str] = &[
    "id",
    "summary",
    "recordType",
    "board",
    "status",
    "company",
    "priority",
    "type",
    "subType",
    "item",
    "owner",
    "wbsCode",
    "siteName",
    "addressLine1",
    "addressLine2",
    "city",
    "stateIdentifier",
    "zip",
    "contactName",
    "contactPhoneNumber",
    "contactPhoneExtension",
    "contactEmailAddress",
    "externalXRef",
    "poNumber",
    "automaticEmailCc",
    "severity",
    "impact",
    "customerUpdatedFlag",
    "allowAllClientsPortalView",
    "automaticEmailContactFlag",
    "automaticEmailResourceFlag",
    "automaticEmailCcFlag",
    "closedFlag",
    "closedDate",
    "closedBy",
    "mergedParentTicket",
    "parentTicketId",
    "hasChildTicket",
    "_info",
    "lastUpdated",
    "dateEntered",
    "enteredBy",
    "updatedBy",
    "contact",
    "team",
    "source",
    "approved",
];

enum RefKey {
    Id(u64),
    Ident(String),
}

fn ref_key(input: &Map<String, Value>, field: &str, errs: &mut Vec<FieldError>) -> Option<RefKey> {
    match input.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => {
            if let Some(id) = o.get("id").filter(|v| !v.is_null()) {
                match id.as_u64() {
                    Some(n) => Some(RefKey::Id(n)),
                    None => {
                        errs.push(FieldError::invalid(
                            field,
                            format!("The {field} id must be an integer."),
                        ));
                        None
                    }
                }
            } else if let Some(Value::String(s)) = o.get("identifier") {
                if field == "company" || field == "owner" {
                    Some(RefKey::Ident(s.clone()))
                } else {
                    errs.push(FieldError::invalid(
                        field,
                        format!("The {field} must be referenced by id."),
                    ));
                    None
                }
            } else if field == "board" || field == "status" || field == "priority" {
                // ConnectWise also accepts a name for some references.
                match o.get("name") {
                    Some(Value::String(_)) => {
                        errs.push(FieldError::invalid(
                            field,
                            format!("The {field} must be referenced by id."),
                        ));
                        None
                    }
                    _ => {
                        errs.push(FieldError::invalid(
                            field,
                            format!("The {field} reference needs an id."),
                        ));
                        None
                    }
                }
            } else {
                errs.push(FieldError::invalid(
                    field,
                    format!("The {field} reference needs an id."),
                ));
                None
            }
        }
        Some(_) => {
            errs.push(FieldError::invalid(
                field,
                format!("The {field} field must be an object, e.g. {{\"id\": 1}}."),
            ));
            None
        }
    }
}

impl State {
    pub fn empty(company: &str) -> Self {
        State {
            company_id: company.to_string(),
            company_name: "Casebridge Demo MSSP".into(),
            signing_key: crate::random_hex(32),
            key_id: crate::random_guid(),
            product_instance_id: crate::random_hex(12),
            partner_id: crate::random_hex(12),
            next_ticket_id: FIRST_TICKET_ID,
            next_note_id: FIRST_NOTE_ID,
            next_callback_id: 1,
            next_member_id: 100,
            ..Default::default()
        }
    }

    pub fn authenticate(&self, public_key: &str, private_key: &str) -> Option<&Member> {
        let ph = sha256_hex(public_key);
        let m = self.members.iter().find(|m| m.public_hash == ph)?;
        (sha256_hex(&format!("{}{}", m.salt, private_key)) == m.private_hash).then_some(m)
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
    pub fn board(&self, id: u64) -> Option<&Board> {
        self.boards.iter().find(|b| b.id == id)
    }
    pub fn status(&self, id: u64) -> Option<&BoardStatus> {
        self.statuses.iter().find(|s| s.id == id)
    }
    pub fn priority(&self, id: u64) -> Option<&Priority> {
        self.priorities.iter().find(|p| p.id == id)
    }
    pub fn company(&self, id: u64) -> Option<&Company> {
        self.companies.iter().find(|c| c.id == id)
    }
    pub fn board_statuses(&self, board: u64) -> Vec<&BoardStatus> {
        let mut v: Vec<&BoardStatus> = self
            .statuses
            .iter()
            .filter(|s| s.board_id == board)
            .collect();
        v.sort_by_key(|s| (s.sort_order, s.id));
        v
    }
    pub fn default_status(&self, board: u64) -> Option<&BoardStatus> {
        let sts = self.board_statuses(board);
        sts.iter()
            .find(|s| s.default_flag && !s.inactive)
            .or_else(|| sts.iter().find(|s| !s.inactive && !s.closed_status))
            .copied()
    }

    // ---------- rendering ----------

    pub fn board_ref(&self, id: u64) -> Value {
        let name = self.board(id).map(|b| b.name.clone()).unwrap_or_default();
        json!({"id": id, "name": name, "_info": {"board_href": format!("/service/boards/{id}")}})
    }
    pub fn status_ref(&self, id: u64) -> Value {
        let s = self.status(id);
        json!({"id": id, "name": s.map(|s| s.name.clone()).unwrap_or_default(),
               "sort": s.map(|s| s.sort_order).unwrap_or(0),
               "_info": {"status_href": format!("/service/boards/{}/statuses/{id}", s.map(|s| s.board_id).unwrap_or(0))}})
    }
    pub fn priority_ref(&self, id: u64) -> Value {
        let p = self.priority(id);
        json!({"id": id, "name": p.map(|p| p.name.clone()).unwrap_or_default(),
               "sort": p.map(|p| p.sort_order).unwrap_or(0), "level": p.map(|p| p.level.clone()).unwrap_or_default(),
               "_info": {"priority_href": format!("/service/priorities/{id}"), "image_href": format!("/service/priorities/{id}/image?lm=2024-01-01T00:00:00Z")}})
    }
    pub fn company_ref(&self, id: u64) -> Value {
        let c = self.company(id);
        json!({"id": id, "identifier": c.map(|c| c.identifier.clone()).unwrap_or_default(),
               "name": c.map(|c| c.name.clone()).unwrap_or_default(),
               "_info": {"company_href": format!("/company/companies/{id}")}})
    }
    fn item_ref(list: &[BoardItem], id: u64, kind: &str) -> Value {
        let name = list
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        json!({"id": id, "name": name, "_info": {format!("{kind}_href"): format!("/service/boards/0/{kind}s/{id}")}})
    }

    pub fn render_board(&self, b: &Board) -> Value {
        json!({"id": b.id, "name": b.name, "location": {"id": 2, "name": "Main"}, "department": {"id": 10, "name": "Security Operations"},
               "inactiveFlag": b.inactive, "projectFlag": false, "signOffOnCloseFlag": false, "workRole": null,
               "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "setup"}})
    }
    pub fn render_status(&self, s: &BoardStatus) -> Value {
        json!({"id": s.id, "name": s.name, "board": self.board_ref(s.board_id), "boardId": s.board_id,
               "sortOrder": s.sort_order, "displayOnBoard": s.display_on_board, "inactive": s.inactive,
               "closedStatus": s.closed_status, "timeEntryNotAllowed": false, "roundRobinCatchall": false,
               "defaultFlag": s.default_flag, "escalationStatus": s.escalation_status, "customerPortalFlag": false,
               "saveTimeAsNote": false, "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "setup"}})
    }
    pub fn render_board_item(&self, i: &BoardItem) -> Value {
        json!({"id": i.id, "name": i.name, "board": self.board_ref(i.board_id), "inactiveFlag": i.inactive,
               "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "setup"}})
    }
    pub fn render_priority(&self, p: &Priority) -> Value {
        json!({"id": p.id, "name": p.name, "color": p.color, "sortOrder": p.sort_order, "defaultFlag": p.default_flag,
               "level": p.level, "urgencySortOrder": p.sort_order,
               "imageLink": format!("/service/priorities/{}/image", p.id),
               "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "setup"}})
    }
    pub fn render_company(&self, c: &Company) -> Value {
        json!({"id": c.id, "identifier": c.identifier, "name": c.name,
               "status": {"id": 1, "name": if c.deleted { "Inactive" } else { "Active" }},
               "deletedFlag": c.deleted, "types": [{"id": 1, "name": "Client"}],
               "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "setup", "dateEntered": "2024-01-01T00:00:00Z", "enteredBy": "setup"}})
    }

    pub fn render_ticket(&self, t: &Ticket) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(t.id));
        m.insert("summary".into(), json!(t.summary));
        m.insert("recordType".into(), json!(t.record_type));
        m.insert("board".into(), self.board_ref(t.board_id));
        m.insert("status".into(), self.status_ref(t.status_id));
        m.insert("company".into(), self.company_ref(t.company_id));
        if let Some(p) = t.priority_id {
            m.insert("priority".into(), self.priority_ref(p));
        }
        if let Some(i) = t.type_id {
            m.insert("type".into(), Self::item_ref(&self.types, i, "type"));
        }
        if let Some(i) = t.subtype_id {
            m.insert(
                "subType".into(),
                Self::item_ref(&self.subtypes, i, "subType"),
            );
        }
        if let Some(i) = t.item_id {
            m.insert("item".into(), Self::item_ref(&self.items, i, "item"));
        }
        if let Some(o) = t.owner_id.and_then(|o| self.member(o)) {
            m.insert("owner".into(), o.reference());
        }
        for (k, v) in &t.strings {
            m.insert(k.clone(), json!(v));
        }
        for f in TICKET_FLAGS {
            m.insert(
                (*f).into(),
                json!(t.flags.get(*f).copied().unwrap_or(false)),
            );
        }
        let closed = self
            .status(t.status_id)
            .map(|s| s.closed_status)
            .unwrap_or(false);
        m.insert("closedFlag".into(), json!(closed));
        if let Some(d) = &t.closed_date {
            m.insert("closedDate".into(), json!(d));
        }
        if let Some(b) = &t.closed_by {
            m.insert("closedBy".into(), json!(b));
        }
        m.insert("approved".into(), json!(true));
        m.insert("isInSla".into(), json!(true));
        m.insert("hasChildTicket".into(), json!(false));
        m.insert("dateEntered".into(), json!(t.date_entered));
        m.insert("enteredBy".into(), json!(t.entered_by));
        if let Some(p) = t.merged_parent {
            let summary = self
                .tickets
                .get(&p)
                .map(|x| x.summary.clone())
                .unwrap_or_default();
            m.insert(
                "mergedParentTicket".into(),
                json!({"id": p, "summary": summary, "_info": {"ticket_href": format!("/service/tickets/{p}")}}),
            );
        }
        m.insert(
            "_info".into(),
            json!({"lastUpdated": t.last_updated, "updatedBy": t.updated_by, "dateEntered": t.date_entered,
                   "enteredBy": t.entered_by, "notes_href": format!("/service/tickets/{}/notes", t.id)}),
        );
        Value::Object(m)
    }

    pub fn render_note(&self, n: &Note) -> Value {
        let member = self
            .member(n.member_id)
            .map(|m| m.reference())
            .unwrap_or(Value::Null);
        json!({"id": n.id, "ticketId": n.ticket_id, "text": n.text, "detailDescriptionFlag": n.detail,
               "internalAnalysisFlag": n.internal, "resolutionFlag": n.resolution, "issueFlag": false,
               "member": member, "customerUpdatedFlag": n.customer_updated, "dateCreated": n.date_created,
               "createdBy": n.created_by, "internalFlag": n.internal, "externalFlag": n.detail || n.resolution,
               "_info": {"lastUpdated": n.last_updated, "updatedBy": n.updated_by}})
    }

    pub fn render_all_note(&self, n: &Note) -> Value {
        let member = self.member(n.member_id);
        let summary = self
            .tickets
            .get(&n.ticket_id)
            .map(|t| t.summary.clone())
            .unwrap_or_default();
        json!({"id": n.id, "noteType": "TicketNote",
               "ticket": {"id": n.ticket_id, "summary": summary, "_info": {"ticket_href": format!("/service/tickets/{}", n.ticket_id)}},
               "text": n.text, "isMarkdownFlag": false, "detailDescriptionFlag": n.detail,
               "internalAnalysisFlag": n.internal, "resolutionFlag": n.resolution, "timeStart": n.date_created,
               "timeEnd": n.date_created, "bundledFlag": false, "mergedFlag": n.merged_from.is_some(), "issueFlag": false,
               "originalAuthor": member.map(|m| m.name.clone()).unwrap_or_default(), "createdByParentFlag": false,
               "member": member.map(|m| m.reference()).unwrap_or(Value::Null),
               "_info": {"lastUpdated": n.last_updated, "updatedBy": n.updated_by, "dateEntered": n.date_created}})
    }

    pub fn render_callback(&self, c: &Callback) -> Value {
        json!({"id": c.id, "description": c.description, "url": c.url, "objectId": c.object_id, "type": c.cb_type,
               "level": c.level, "memberId": c.member_id, "payloadVersion": "3.0.0", "inactiveFlag": c.inactive,
               "isSoapCallbackFlag": false, "isSelfSuppressedFlag": c.self_suppressed, "connectWiseID": c.connectwise_id,
               "_info": {"lastUpdated": c.last_updated, "updatedBy": c.updated_by, "dateEntered": c.date_entered}})
    }

    // ---------- tickets ----------

    /// The writable form of a ticket (what a PATCH is applied to).
    fn ticket_input(&self, t: &Ticket) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("summary".into(), json!(t.summary));
        m.insert("recordType".into(), json!(t.record_type));
        m.insert("board".into(), json!({"id": t.board_id}));
        m.insert("status".into(), json!({"id": t.status_id}));
        m.insert("company".into(), json!({"id": t.company_id}));
        let opt = |v: Option<u64>| v.map(|i| json!({"id": i})).unwrap_or(Value::Null);
        m.insert("priority".into(), opt(t.priority_id));
        m.insert("type".into(), opt(t.type_id));
        m.insert("subType".into(), opt(t.subtype_id));
        m.insert("item".into(), opt(t.item_id));
        m.insert("owner".into(), opt(t.owner_id));
        for (k, v) in &t.strings {
            m.insert(k.clone(), json!(v));
        }
        for (k, v) in &t.flags {
            m.insert(k.clone(), json!(v));
        }
        m
    }

    fn resolve_company(&self, key: RefKey, errs: &mut Vec<FieldError>) -> Option<u64> {
        let c = match &key {
            RefKey::Id(id) => self.company(*id),
            RefKey::Ident(s) => self
                .companies
                .iter()
                .find(|c| c.identifier.eq_ignore_ascii_case(s)),
        };
        match c {
            None => {
                let what = match key {
                    RefKey::Id(id) => format!("id {id}"),
                    RefKey::Ident(s) => format!("identifier '{s}'"),
                };
                errs.push(FieldError::invalid(
                    "company",
                    format!("Company with {what} was not found."),
                ));
                None
            }
            Some(c) if c.deleted => {
                errs.push(FieldError::invalid(
                    "company",
                    format!(
                        "Company '{}' has been deleted and cannot be used.",
                        c.identifier
                    ),
                ));
                None
            }
            Some(c) => Some(c.id),
        }
    }

    /// Validates writable input into a ticket. `prev` is the ticket being replaced/patched.
    fn build_ticket(
        &self,
        input: &Map<String, Value>,
        prev: Option<&Ticket>,
        actor: &Member,
        now: &str,
    ) -> CwResult<Ticket> {
        let mut errs = Vec::new();
        let summary = match input.get("summary") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if utf16_len(s) > 100 {
                    errs.push(FieldError::invalid(
                        "summary",
                        "The summary field cannot be longer than 100 characters.",
                    ));
                }
                s.clone()
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errs.push(FieldError::missing("summary"));
                String::new()
            }
            Some(_) => {
                errs.push(FieldError::invalid(
                    "summary",
                    "The summary field must be a string.",
                ));
                String::new()
            }
        };
        let company_id = match ref_key(input, "company", &mut errs) {
            Some(k) => {
                // keeping an already-deleted company on an existing ticket is allowed
                match (&k, prev) {
                    (RefKey::Id(id), Some(p)) if *id == p.company_id => Some(*id),
                    _ => self.resolve_company(k, &mut errs),
                }
            }
            None => {
                if !errs.iter().any(|e| e.field == "company") {
                    errs.push(FieldError::missing("company"));
                }
                None
            }
        };
        let board_id = match ref_key(input, "board", &mut errs) {
            Some(RefKey::Id(id)) => match self.board(id) {
                None => {
                    errs.push(FieldError::invalid(
                        "board",
                        format!("Board with id {id} was not found."),
                    ));
                    None
                }
                Some(b) if b.inactive && prev.map(|p| p.board_id) != Some(id) => {
                    errs.push(FieldError::invalid(
                        "board",
                        format!("Board '{}' is inactive.", b.name),
                    ));
                    None
                }
                Some(b) => Some(b.id),
            },
            Some(RefKey::Ident(_)) => None,
            None => {
                if !errs.iter().any(|e| e.field == "board") {
                    errs.push(FieldError::missing("board"));
                }
                None
            }
        };
        let mut status_id = None;
        if let Some(b) = board_id {
            let board_name = self.board(b).map(|b| b.name.clone()).unwrap_or_default();
            match ref_key(input, "status", &mut errs) {
                Some(RefKey::Id(id)) => match self.status(id) {
                    Some(s) if s.board_id == b => {
                        if s.inactive && prev.map(|p| p.status_id) != Some(id) {
                            errs.push(FieldError::invalid(
                                "status",
                                format!("Status '{}' is inactive.", s.name),
                            ));
                        } else {
                            status_id = Some(id);
                        }
                    }
                    Some(_) => errs.push(FieldError::invalid(
                        "status",
                        format!("Status with id {id} is not a status of board '{board_name}'."),
                    )),
                    None => errs.push(FieldError::invalid(
                        "status",
                        format!("Status with id {id} was not found."),
                    )),
                },
                Some(RefKey::Ident(_)) => {}
                None => match self.default_status(b) {
                    Some(s) => status_id = Some(s.id),
                    None => errs.push(FieldError::invalid(
                        "status",
                        format!("Board '{board_name}' has no default status."),
                    )),
                },
            }
        }
        let priority_id = match ref_key(input, "priority", &mut errs) {
            Some(RefKey::Id(id)) => {
                if self.priority(id).is_none() {
                    errs.push(FieldError::invalid(
                        "priority",
                        format!("Priority with id {id} was not found."),
                    ));
                }
                Some(id)
            }
            Some(RefKey::Ident(_)) => None,
            None => {
                if prev.is_none() {
                    self.priorities
                        .iter()
                        .find(|p| p.default_flag)
                        .map(|p| p.id)
                } else {
                    None
                }
            }
        };
        let board_item = |field: &str,
                          list: &[BoardItem],
                          errs: &mut Vec<FieldError>|
         -> Option<u64> {
            match ref_key(input, field, errs) {
                Some(RefKey::Id(id)) => {
                    match list.iter().find(|i| i.id == id) {
                        Some(i) if Some(i.board_id) == board_id || board_id.is_none() => Some(id),
                        Some(_) => {
                            errs.push(FieldError::invalid(field, format!("The {field} with id {id} does not belong to the ticket's board.")));
                            None
                        }
                        None => {
                            errs.push(FieldError::invalid(
                                field,
                                format!("The {field} with id {id} was not found."),
                            ));
                            None
                        }
                    }
                }
                _ => None,
            }
        };
        let type_id = board_item("type", &self.types, &mut errs);
        let subtype_id = board_item("subType", &self.subtypes, &mut errs);
        let item_id = board_item("item", &self.items, &mut errs);
        let owner_id = match ref_key(input, "owner", &mut errs) {
            Some(RefKey::Id(id)) => match self.member(id) {
                Some(m) => Some(m.id),
                None => {
                    errs.push(FieldError::invalid(
                        "owner",
                        format!("Member with id {id} was not found."),
                    ));
                    None
                }
            },
            Some(RefKey::Ident(s)) => match self
                .members
                .iter()
                .find(|m| m.identifier.eq_ignore_ascii_case(&s))
            {
                Some(m) => Some(m.id),
                None => {
                    errs.push(FieldError::invalid(
                        "owner",
                        format!("Member '{s}' was not found."),
                    ));
                    None
                }
            },
            None => None,
        };
        let mut strings = BTreeMap::new();
        for (f, max) in TICKET_STRINGS {
            match input.get(*f) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    if utf16_len(s) > *max {
                        errs.push(FieldError::invalid(
                            f,
                            format!("The {f} field cannot be longer than {max} characters."),
                        ));
                    } else if !s.is_empty() {
                        strings.insert(f.to_string(), s.clone());
                    }
                }
                Some(_) => errs.push(FieldError::invalid(
                    f,
                    format!("The {f} field must be a string."),
                )),
            }
        }
        let mut record_type = "ServiceTicket".to_string();
        for (f, allowed) in TICKET_ENUMS {
            match input.get(*f) {
                None | Some(Value::Null) => {
                    if *f != "recordType" {
                        strings.insert(f.to_string(), "Medium".into());
                    }
                }
                Some(Value::String(s)) => {
                    match allowed.iter().find(|a| a.eq_ignore_ascii_case(s)) {
                        Some(a) if *f == "recordType" => record_type = a.to_string(),
                        Some(a) => {
                            strings.insert(f.to_string(), a.to_string());
                        }
                        None => errs.push(FieldError::invalid(
                            f,
                            format!("The {f} field must be one of: {}.", allowed.join(", ")),
                        )),
                    }
                }
                Some(_) => errs.push(FieldError::invalid(
                    f,
                    format!("The {f} field must be a string."),
                )),
            }
        }
        let mut flags = BTreeMap::new();
        for f in TICKET_FLAGS.iter().chain(TICKET_TRANSIENT) {
            match input.get(*f) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => {
                    if TICKET_FLAGS.contains(f) {
                        flags.insert(f.to_string(), *b);
                    }
                }
                Some(_) => errs.push(FieldError::invalid(
                    f,
                    format!("The {f} field must be a boolean."),
                )),
            }
        }
        if !errs.is_empty() {
            return Err(CwError::invalid_object("ticket", errs));
        }
        let status_id = status_id.expect("status resolved");
        let closed = self
            .status(status_id)
            .map(|s| s.closed_status)
            .unwrap_or(false);
        let was_closed = prev
            .and_then(|p| self.status(p.status_id))
            .map(|s| s.closed_status)
            .unwrap_or(false);
        let (closed_date, closed_by) = if closed && was_closed {
            (
                prev.and_then(|p| p.closed_date.clone()),
                prev.and_then(|p| p.closed_by.clone()),
            )
        } else if closed {
            (Some(now.to_string()), Some(actor.identifier.clone()))
        } else {
            (None, None)
        };
        Ok(Ticket {
            id: prev.map(|p| p.id).unwrap_or(0),
            summary,
            record_type,
            board_id: board_id.expect("board"),
            status_id,
            company_id: company_id.expect("company"),
            priority_id,
            type_id,
            subtype_id,
            item_id,
            owner_id,
            strings,
            flags,
            closed_date,
            closed_by,
            merged_parent: prev.and_then(|p| p.merged_parent),
            date_entered: prev
                .map(|p| p.date_entered.clone())
                .unwrap_or_else(|| now.to_string()),
            entered_by: prev
                .map(|p| p.entered_by.clone())
                .unwrap_or_else(|| actor.identifier.clone()),
            last_updated: now.to_string(),
            updated_by: actor.identifier.clone(),
        })
    }

    fn change(&self, action: &'static str, t: &Ticket, actor: &Member) -> Change {
        Change {
            action,
            ticket_id: t.id,
            entity: if action == "deleted" {
                None
            } else {
                Some(self.render_ticket(t).to_string())
            },
            member_id: actor.id,
            member_identifier: actor.identifier.clone(),
            board_id: t.board_id,
            status_id: t.status_id,
            company_id: t.company_id,
        }
    }

    pub fn get_ticket(&self, id: u64) -> CwResult<&Ticket> {
        self.tickets
            .get(&id)
            .ok_or_else(|| CwError::not_found(format!("Ticket {id} not found")))
    }

    pub fn create_ticket(
        &mut self,
        body: &Value,
        actor: &Member,
    ) -> CwResult<(Value, Vec<Change>)> {
        let input = body
            .as_object()
            .ok_or_else(|| CwError::bad_request("The request body must be a ticket object."))?;
        let now = now_str();
        let mut t = self.build_ticket(input, None, actor, &now)?;
        t.id = self.next_ticket_id;
        self.next_ticket_id += 1;
        let id = t.id;
        self.tickets.insert(id, t);
        for (field, detail, internal, resolution) in [
            ("initialDescription", true, false, false),
            ("initialInternalAnalysis", false, true, false),
            ("initialResolution", false, false, true),
        ] {
            if let Some(Value::String(text)) = input.get(field)
                && !text.is_empty()
            {
                self.push_note(
                    id,
                    text.clone(),
                    detail,
                    internal,
                    resolution,
                    false,
                    actor,
                    &now,
                    None,
                );
            }
        }
        let t = &self.tickets[&id];
        Ok((self.render_ticket(t), vec![self.change("added", t, actor)]))
    }

    #[allow(clippy::too_many_arguments)]
    fn push_note(
        &mut self,
        ticket_id: u64,
        text: String,
        detail: bool,
        internal: bool,
        resolution: bool,
        customer_updated: bool,
        actor: &Member,
        now: &str,
        merged_from: Option<u64>,
    ) -> u64 {
        let id = self.next_note_id;
        self.next_note_id += 1;
        self.notes.entry(ticket_id).or_default().push(Note {
            id,
            ticket_id,
            text,
            detail,
            internal,
            resolution,
            customer_updated,
            member_id: actor.id,
            created_by: actor.identifier.clone(),
            date_created: now.to_string(),
            last_updated: now.to_string(),
            updated_by: actor.identifier.clone(),
            merged_from,
        });
        id
    }

    fn store_update(&mut self, mut t: Ticket, actor: &Member) -> (Value, Vec<Change>) {
        t.last_updated = now_str();
        t.updated_by = actor.identifier.clone();
        let id = t.id;
        self.tickets.insert(id, t);
        let t = &self.tickets[&id];
        (
            self.render_ticket(t),
            vec![self.change("updated", t, actor)],
        )
    }

    pub fn patch_ticket(
        &mut self,
        id: u64,
        body: &Value,
        actor: &Member,
    ) -> CwResult<(Value, Vec<Change>)> {
        let ops = body.as_array().ok_or_else(|| {
            CwError::invalid_object(
                "operations",
                vec![FieldError::invalid(
                    "operations",
                    "The request body must be an array of patch operations [{op, path, value}].",
                )],
            )
        })?;
        let prev = self.get_ticket(id)?.clone();
        let mut input = self.ticket_input(&prev);
        let writable = |p: &str| {
            p == "summary"
                || p == "recordType"
                || TICKET_REFS.contains(&p)
                || TICKET_STRINGS.iter().any(|(f, _)| *f == p)
                || TICKET_ENUMS.iter().any(|(f, _)| *f == p)
                || TICKET_FLAGS.contains(&p)
                || TICKET_TRANSIENT.contains(&p)
        };
        for (i, op) in ops.iter().enumerate() {
            let o = op.as_object().ok_or_else(|| {
                CwError::invalid_object(
                    "operations",
                    vec![FieldError::invalid(
                        "operations",
                        format!("Operation {i} is not an object."),
                    )],
                )
            })?;
            let kind = o
                .get("op")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let path = o.get("path").and_then(|v| v.as_str()).unwrap_or("");
            let path = path.strip_prefix('/').unwrap_or(path);
            if !matches!(kind.as_str(), "add" | "replace" | "remove") {
                return Err(CwError::invalid_object(
                    "operations",
                    vec![FieldError::invalid(
                        "op",
                        format!("The op '{kind}' is not valid; use add, replace or remove."),
                    )],
                ));
            }
            if !writable(path) {
                return Err(CwError::invalid_object(
                    "operations",
                    vec![FieldError::invalid(
                        "path",
                        format!("The path '{path}' is not valid."),
                    )],
                ));
            }
            let value = if kind == "remove" {
                Value::Null
            } else {
                o.get("value").cloned().unwrap_or(Value::Null)
            };
            if TICKET_REFS.contains(&path) && !(value.is_object() || value.is_null()) {
                return Err(CwError::invalid_object(
                    "ticket",
                    vec![FieldError::invalid(
                        path,
                        format!("The value for '{path}' must be an object, e.g. {{\"id\": 1}}."),
                    )],
                ));
            }
            input.insert(path.to_string(), value);
        }
        let now = now_str();
        let t = self.build_ticket(&input, Some(&prev), actor, &now)?;
        Ok(self.store_update(t, actor))
    }

    pub fn put_ticket(
        &mut self,
        id: u64,
        body: &Value,
        actor: &Member,
    ) -> CwResult<(Value, Vec<Change>)> {
        let input = body
            .as_object()
            .ok_or_else(|| CwError::bad_request("The request body must be a ticket object."))?;
        let prev = self.get_ticket(id)?.clone();
        let now = now_str();
        let t = self.build_ticket(input, Some(&prev), actor, &now)?;
        Ok(self.store_update(t, actor))
    }

    pub fn delete_ticket(&mut self, id: u64, actor: &Member) -> CwResult<Vec<Change>> {
        let t = self
            .tickets
            .remove(&id)
            .ok_or_else(|| CwError::not_found(format!("Ticket {id} not found")))?;
        self.notes.remove(&id);
        Ok(vec![self.change("deleted", &t, actor)])
    }

    pub fn add_note(
        &mut self,
        ticket_id: u64,
        body: &Value,
        actor: &Member,
        moves_last_updated: bool,
    ) -> CwResult<(Value, Vec<Change>)> {
        let input = body
            .as_object()
            .ok_or_else(|| CwError::bad_request("The request body must be a note object."))?;
        self.get_ticket(ticket_id)?;
        let mut errs = Vec::new();
        let text = match input.get("text") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errs.push(FieldError::missing("text"));
                String::new()
            }
            Some(_) => {
                errs.push(FieldError::invalid(
                    "text",
                    "The text field must be a string.",
                ));
                String::new()
            }
        };
        let flag = |f: &str, errs: &mut Vec<FieldError>| match input.get(f) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errs.push(FieldError::invalid(
                    f,
                    format!("The {f} field must be a boolean."),
                ));
                false
            }
        };
        let detail = flag("detailDescriptionFlag", &mut errs);
        let internal = flag("internalAnalysisFlag", &mut errs);
        let resolution = flag("resolutionFlag", &mut errs);
        let customer_updated = flag("customerUpdatedFlag", &mut errs);
        flag("processNotifications", &mut errs);
        if errs.is_empty() && !(detail || internal || resolution) {
            errs.push(FieldError::invalid(
                "detailDescriptionFlag",
                "Please choose where to display the notes in order to save this record.",
            ));
        }
        if !errs.is_empty() {
            return Err(CwError::invalid_object("serviceNote", errs));
        }
        let now = now_str();
        let nid = self.push_note(
            ticket_id,
            text,
            detail,
            internal,
            resolution,
            customer_updated,
            actor,
            &now,
            None,
        );
        if moves_last_updated {
            let t = self.tickets.get_mut(&ticket_id).expect("ticket");
            t.last_updated = now.clone();
            t.updated_by = actor.identifier.clone();
        }
        let note = self.notes[&ticket_id]
            .iter()
            .find(|n| n.id == nid)
            .expect("note");
        let t = &self.tickets[&ticket_id];
        Ok((
            self.render_note(note),
            vec![self.change("updated", t, actor)],
        ))
    }

    pub fn merge(
        &mut self,
        parent_id: u64,
        body: &Value,
        actor: &Member,
    ) -> CwResult<(Value, Vec<Change>)> {
        self.get_ticket(parent_id)?;
        let ids: Vec<u64> = match body.get("mergeTicketIds").and_then(|v| v.as_array()) {
            Some(a) if !a.is_empty() && a.iter().all(|x| x.as_u64().is_some()) => {
                a.iter().filter_map(|x| x.as_u64()).collect()
            }
            _ => {
                return Err(CwError::invalid_object(
                    "mergeTicket",
                    vec![FieldError::missing("mergeTicketIds")],
                ));
            }
        };
        let wanted_status = body
            .get("status")
            .and_then(|s| s.get("id"))
            .and_then(|v| v.as_u64());
        for id in &ids {
            if *id == parent_id {
                return Err(CwError::invalid_object(
                    "mergeTicket",
                    vec![FieldError::invalid(
                        "mergeTicketIds",
                        "A ticket cannot be merged into itself.",
                    )],
                ));
            }
            let t = self.get_ticket(*id)?;
            if t.merged_parent.is_some() {
                return Err(CwError::invalid_object(
                    "mergeTicket",
                    vec![FieldError::invalid(
                        "mergeTicketIds",
                        format!("Ticket {id} has already been merged."),
                    )],
                ));
            }
            let sts = self.board_statuses(t.board_id);
            if !sts.iter().any(|s| s.closed_status && !s.inactive) {
                return Err(CwError::invalid_object(
                    "mergeTicket",
                    vec![FieldError::invalid(
                        "status",
                        format!("Ticket {id}'s board has no closed status."),
                    )],
                ));
            }
        }
        let now = now_str();
        let mut changes = Vec::new();
        for id in ids {
            let child = self.tickets[&id].clone();
            let sts = self.board_statuses(child.board_id);
            let closed = wanted_status
                .and_then(|w| sts.iter().find(|s| s.id == w && s.closed_status))
                .or_else(|| sts.iter().find(|s| s.closed_status && !s.inactive))
                .map(|s| s.id)
                .expect("checked");
            let notes = self.notes.get(&id).cloned().unwrap_or_default();
            for n in notes {
                let author = self
                    .member(n.member_id)
                    .cloned()
                    .unwrap_or_else(|| actor.clone());
                self.push_note(
                    parent_id,
                    n.text,
                    n.detail,
                    n.internal,
                    n.resolution,
                    false,
                    &author,
                    &n.date_created,
                    Some(id),
                );
            }
            let was_closed = self
                .status(child.status_id)
                .map(|s| s.closed_status)
                .unwrap_or(false);
            let t = self.tickets.get_mut(&id).expect("child");
            t.status_id = closed;
            t.merged_parent = Some(parent_id);
            if !was_closed {
                t.closed_date = Some(now.clone());
                t.closed_by = Some(actor.identifier.clone());
            }
            t.last_updated = now.clone();
            t.updated_by = actor.identifier.clone();
            let t = &self.tickets[&id];
            changes.push(self.change("updated", t, actor));
        }
        let p = self.tickets.get_mut(&parent_id).expect("parent");
        p.last_updated = now.clone();
        p.updated_by = actor.identifier.clone();
        let p = &self.tickets[&parent_id];
        changes.push(self.change("updated", p, actor));
        Ok((self.render_ticket(p), changes))
    }

    // ---------- callbacks ----------

    fn build_callback(
        &self,
        input: &Map<String, Value>,
        prev: Option<&Callback>,
        actor: &Member,
    ) -> CwResult<Callback> {
        let mut errs = Vec::new();
        let s = |f: &str| input.get(f).and_then(|v| v.as_str()).map(|s| s.to_string());
        let description = s("description").unwrap_or_default();
        if utf16_len(&description) > 100 {
            errs.push(FieldError::invalid(
                "description",
                "The description field cannot be longer than 100 characters.",
            ));
        }
        let url = match s("url") {
            None => {
                errs.push(FieldError::missing("url"));
                String::new()
            }
            Some(u) => {
                let ok = url::Url::parse(&u).ok().is_some_and(|p| {
                    matches!(p.scheme(), "http" | "https")
                        && p.host_str().is_some_and(|h| !h.is_empty())
                });
                if !ok {
                    errs.push(FieldError::invalid("url", "Invalid URL"));
                }
                u
            }
        };
        let cb_type = match s("type") {
            None => {
                errs.push(FieldError::missing("type"));
                String::new()
            }
            Some(t) => {
                let t = t.to_ascii_lowercase();
                const TYPES: &[&str] = &[
                    "ticket",
                    "company",
                    "contact",
                    "project",
                    "opportunity",
                    "activity",
                    "schedule",
                    "agreement",
                    "configuration",
                    "expense",
                    "invoice",
                    "member",
                    "productcatalog",
                    "purchaseorder",
                    "time",
                ];
                if !TYPES.contains(&t.as_str()) {
                    errs.push(FieldError::invalid(
                        "type",
                        format!("Unrecognized callback type '{t}'."),
                    ));
                }
                t
            }
        };
        let level = s("level").map(|l| l.to_ascii_lowercase());
        let mut object_id = input.get("objectId").and_then(|v| v.as_u64());
        match level.as_deref() {
            None => errs.push(FieldError::missing("level")),
            Some("owner") => object_id = Some(1),
            Some(l @ ("board" | "status" | "company")) if cb_type == "ticket" => {
                let exists = match (l, object_id) {
                    (_, None) => false,
                    ("board", Some(i)) => self.board(i).is_some(),
                    ("status", Some(i)) => self.status(i).is_some(),
                    (_, Some(i)) => self.company(i).is_some(),
                };
                if object_id.is_none() {
                    errs.push(FieldError::missing("objectId"));
                } else if !exists {
                    errs.push(FieldError::invalid(
                        "objectId",
                        format!("No {l} with id {} exists.", object_id.unwrap_or(0)),
                    ));
                }
            }
            Some(_) => {
                return Err(CwError::invalid_object(
                    "callbackEntry",
                    vec![FieldError::invalid(
                        "level",
                        "Unrecognized level for type, see documentation for supported levels for each type",
                    )],
                ));
            }
        }
        let flag = |f: &str, d: bool| input.get(f).and_then(|v| v.as_bool()).unwrap_or(d);
        if !errs.is_empty() {
            return Err(CwError::invalid_object("callbackEntry", errs));
        }
        let level = level.unwrap_or_default();
        let object_id = object_id.unwrap_or(1);
        let dup = self.callbacks.values().any(|c| {
            Some(c.id) != prev.map(|p| p.id)
                && c.url == url
                && c.cb_type == cb_type
                && c.level == level
                && c.object_id == object_id
        });
        if dup {
            return Err(CwError::invalid_object(
                "callbackEntry",
                vec![FieldError {
                    code: "ObjectExists",
                    message: "A matching callback entry already exists".into(),
                    field: "objectId".into(),
                }],
            ));
        }
        let now = now_str();
        Ok(Callback {
            id: prev.map(|p| p.id).unwrap_or(0),
            description,
            url,
            object_id,
            cb_type,
            level,
            member_id: prev.map(|p| p.member_id).unwrap_or(actor.id),
            inactive: flag("inactiveFlag", false),
            self_suppressed: flag("isSelfSuppressedFlag", false),
            connectwise_id: prev
                .map(|p| p.connectwise_id.clone())
                .unwrap_or_else(crate::random_guid),
            date_entered: prev
                .map(|p| p.date_entered.clone())
                .unwrap_or_else(|| now.clone()),
            last_updated: now,
            updated_by: actor.identifier.clone(),
            consecutive_failures: 0,
            failing_since: None,
        })
    }

    pub fn create_callback(&mut self, body: &Value, actor: &Member) -> CwResult<Value> {
        let input = body
            .as_object()
            .ok_or_else(|| CwError::bad_request("The request body must be a callback object."))?;
        let mut c = self.build_callback(input, None, actor)?;
        c.id = self.next_callback_id;
        self.next_callback_id += 1;
        let v = self.render_callback(&c);
        self.callbacks.insert(c.id, c);
        Ok(v)
    }

    pub fn get_callback(&self, id: u64) -> CwResult<&Callback> {
        self.callbacks
            .get(&id)
            .ok_or_else(|| CwError::not_found(format!("Callback {id} not found")))
    }

    pub fn update_callback(
        &mut self,
        id: u64,
        body: &Value,
        patch: bool,
        actor: &Member,
    ) -> CwResult<Value> {
        let prev = self.get_callback(id)?.clone();
        let input = if patch {
            let ops = body.as_array().ok_or_else(|| {
                CwError::invalid_object(
                    "operations",
                    vec![FieldError::invalid(
                        "operations",
                        "The request body must be an array of patch operations.",
                    )],
                )
            })?;
            let mut m = self
                .render_callback(&prev)
                .as_object()
                .cloned()
                .unwrap_or_default();
            for op in ops {
                let path = op.get("path").and_then(|v| v.as_str()).unwrap_or("");
                let path = path.strip_prefix('/').unwrap_or(path);
                const W: &[&str] = &[
                    "description",
                    "url",
                    "objectId",
                    "type",
                    "level",
                    "inactiveFlag",
                    "isSelfSuppressedFlag",
                ];
                if !W.contains(&path) {
                    return Err(CwError::invalid_object(
                        "operations",
                        vec![FieldError::invalid(
                            "path",
                            format!("The path '{path}' is not valid."),
                        )],
                    ));
                }
                m.insert(path.into(), op.get("value").cloned().unwrap_or(Value::Null));
            }
            m
        } else {
            body.as_object().cloned().ok_or_else(|| {
                CwError::bad_request("The request body must be a callback object.")
            })?
        };
        let mut c = self.build_callback(&input, Some(&prev), actor)?;
        if !c.inactive {
            c.consecutive_failures = 0;
            c.failing_since = None;
        }
        let v = self.render_callback(&c);
        self.callbacks.insert(id, c);
        Ok(v)
    }

    pub fn delete_callback(&mut self, id: u64) -> CwResult<()> {
        self.callbacks
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| CwError::not_found(format!("Callback {id} not found")))
    }
}

/// Fields known to `conditions` for the list endpoints other than tickets.
pub fn known_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "tickets" => TICKET_FIELDS,
        _ => &[],
    }
}

pub fn eval_ok(e: &Option<cond::Expr>, v: &Value) -> bool {
    e.as_ref().is_none_or(|e| cond::eval(e, v))
}

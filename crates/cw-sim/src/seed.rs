//! The demo seed (`Seed::Demo`).
//!
//! Login company `cbdemo`. Boards: 1 "SOC - Endpoint", 2 "SOC - Cloud & Identity" (active), 3 "Legacy
//! Helpdesk" (inactive). Statuses (ids `board*100 + n`, so they differ across boards):
//! n=1 "New" (defaultFlag), 2 "In Progress", 3 "Waiting on Customer", 4 "Closure Pending" (open!),
//! 5 "Resolved" (closedStatus), 6 "Cancelled" (closedStatus), 7 "Escalated (old)" (inactive).
//! Types 11,12 / 21,22; subtypes 111,112 / 211,212; items 1101,1102 / 2101,2102 (board 1 / board 2).
//! Priorities 1..5 "Priority 1 - Critical" … "Priority 5 - Informational" (3 is the default).
//! Companies: 250 CBMSSP (parent), 251 ACMECORP, 252 GLOBEX, 253 INITECH, 254 "SMITH & SONS",
//! 255 OLDCO (deletedFlag). Members: 150 `casebridge-api` (admin), 151 `jtech` (technician),
//! 152 `readonly` (restricted), with random keys returned once as [`DemoKeys`].
use crate::model::{Board, BoardItem, BoardStatus, Company, Member, Priority, Role, State};
use crate::{DemoKeys, MemberKeys, random_guid, random_hex};

pub const DEMO_COMPANY: &str = "cbdemo";

pub fn seed_demo(st: &mut State) -> DemoKeys {
    st.company_id = DEMO_COMPANY.into();
    st.company_name = "Casebridge Demo MSSP".into();
    st.boards = vec![
        Board {
            id: 1,
            name: "SOC - Endpoint".into(),
            inactive: false,
        },
        Board {
            id: 2,
            name: "SOC - Cloud & Identity".into(),
            inactive: false,
        },
        Board {
            id: 3,
            name: "Legacy Helpdesk".into(),
            inactive: true,
        },
    ];
    st.statuses.clear();
    for b in 1..=3u64 {
        let defs: &[(&str, bool, bool, bool, &str)] = &[
            ("New", false, true, false, "NotResponded"),
            ("In Progress", false, false, false, "Responded"),
            ("Waiting on Customer", false, false, false, "Responded"),
            ("Closure Pending", false, false, false, "ResolutionPlan"),
            ("Resolved", true, false, false, "Resolved"),
            ("Cancelled", true, false, false, "Resolved"),
            ("Escalated (old)", false, false, true, "NoEscalation"),
        ];
        for (i, (name, closed, default, inactive, esc)) in defs.iter().enumerate() {
            if b == 3 && i > 4 {
                break;
            }
            st.statuses.push(BoardStatus {
                id: b * 100 + i as u64 + 1,
                board_id: b,
                name: name.to_string(),
                sort_order: i as i64 + 1,
                display_on_board: !closed,
                inactive: *inactive,
                closed_status: *closed,
                default_flag: *default,
                escalation_status: esc.to_string(),
            });
        }
    }
    let bi = |id: u64, board_id: u64, name: &str| BoardItem {
        id,
        board_id,
        name: name.into(),
        inactive: false,
    };
    st.types = vec![
        bi(11, 1, "Malware"),
        bi(12, 1, "Suspicious Activity"),
        bi(21, 2, "Identity Compromise"),
        bi(22, 2, "Cloud Misconfiguration"),
    ];
    st.subtypes = vec![
        bi(111, 1, "Ransomware"),
        bi(112, 1, "Credential Theft"),
        bi(211, 2, "MFA Fatigue"),
        bi(212, 2, "Impossible Travel"),
    ];
    st.items = vec![
        bi(1101, 1, "Workstation"),
        bi(1102, 1, "Server"),
        bi(2101, 2, "Entra ID"),
        bi(2102, 2, "AWS"),
    ];
    let pr = |id: u64, name: &str, level: &str, color: &str| Priority {
        id,
        name: name.into(),
        sort_order: id as i64,
        level: level.into(),
        color: color.into(),
        default_flag: id == 3,
    };
    st.priorities = vec![
        pr(1, "Priority 1 - Critical", "Critical", "Red"),
        pr(2, "Priority 2 - High", "High", "Orange"),
        pr(3, "Priority 3 - Medium", "Medium", "Yellow"),
        pr(4, "Priority 4 - Low", "Low", "Green"),
        pr(5, "Priority 5 - Informational", "NotApplicable", "Blue"),
    ];
    let co = |id: u64, identifier: &str, name: &str, deleted: bool| Company {
        id,
        identifier: identifier.into(),
        name: name.into(),
        deleted,
    };
    st.companies = vec![
        co(250, "CBMSSP", "Casebridge MSSP", false),
        co(251, "ACMECORP", "Acme Corporation", false),
        co(252, "GLOBEX", "Globex Corporation", false),
        co(253, "INITECH", "Initech", false),
        co(254, "SMITH & SONS", "Smith & Sons Ltd", false),
        co(255, "OLDCO", "Old Co (deleted)", true),
    ];
    st.members.clear();
    let mut keys = Vec::new();
    for (id, ident, name, role) in [
        (150u64, "casebridge-api", "Casebridge API", Role::Admin),
        (151, "jtech", "Jamie Tech", Role::Technician),
        (152, "readonly", "Read Only", Role::Restricted),
    ] {
        let (public, private) = (random_hex(8), random_hex(8));
        st.members
            .push(Member::new(id, ident, name, role, &public, &private));
        keys.push(MemberKeys {
            company: DEMO_COMPANY.into(),
            public_key: public,
            private_key: private,
            client_id: random_guid(),
            member: ident.into(),
        });
    }
    st.next_member_id = st.next_member_id.max(200);
    let mut it = keys.into_iter();
    DemoKeys {
        api_member: it.next().expect("api"),
        technician: it.next().expect("tech"),
        restricted: it.next().expect("restricted"),
    }
}

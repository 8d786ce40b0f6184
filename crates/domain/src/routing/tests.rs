//! Routing tests: example-based tests with the wording people read, then properties over random
//! partner trees that check the rules of DESIGN §3 ("Effective settings").
//!
//! The random trees keep provenance visible: every id a plan can carry (board, type, subtype,
//! item, initial status, priority) is `owner * 1000 + n`, where `owner` is 1 for the partner and
//! `i + 2` for sub-tenant `i`, so a property can tell whose resource a decision came from.

use proptest::prelude::*;

use super::*;
use crate::mapping::{CaseStatusMap, RuleAssignment, RuleTypeBoard, StatusMapping};

// ---------------------------------------------------------------------------------------------
// builders

fn integration(id: &str, account: &str, parent: Option<&str>) -> IntegrationRef {
    IntegrationRef {
        id: id.into(),
        account_id: account.into(),
        parent_company_identifier: parent.map(str::to_string),
        active: true,
        apply_to_all_subtenants: false,
        uniform_subtenant_mappings: false,
    }
}

fn board(rule_type: &str, board_id: Option<i64>, name: Option<&str>) -> RuleTypeBoard {
    RuleTypeBoard {
        rule_type: rule_type.into(),
        board_id,
        board_name: name.map(str::to_string),
        type_id: None,
        subtype_id: None,
        item_id: None,
        status_id: None,
    }
}

fn assign(rule_id: &str, rule_type: &str) -> RuleAssignment {
    RuleAssignment {
        rule_id: rule_id.into(),
        rule_type: rule_type.into(),
    }
}

fn priorities(c: [Option<i64>; 5]) -> CriticalityMappings {
    CriticalityMappings {
        critical: c[0],
        high: c[1],
        medium: c[2],
        low: c[3],
        informational: c[4],
    }
}

/// A partner "MSSP" applying its integration to all sub-tenants, parent company CBMSSP, with
/// rule type Endpoint on board 7 (SOC) and priorities 1..5.
fn partner() -> AccountSettings {
    let mut i = integration("intg-partner", "partner", Some("CBMSSP"));
    i.apply_to_all_subtenants = true;
    AccountSettings {
        account_id: "partner".into(),
        integration: Some(i),
        board_mappings: Some(BoardMappings {
            rule_types: vec![
                board("Endpoint", Some(7), Some("SOC")),
                board("Cloud", None, None),
            ],
            assignments: vec![assign("r-endpoint", "Endpoint"), assign("r-cloud", "Cloud")],
        }),
        criticality_mappings: Some(priorities([Some(1), Some(2), Some(3), Some(4), Some(5)])),
        company_mappings: vec![("acme".into(), "ACMECORP".into())],
        status_mappings: StatusMappings::default(),
    }
}

fn subtenant(id: &str) -> AccountSettings {
    AccountSettings {
        account_id: id.into(),
        ..Default::default()
    }
}

fn case(rule_id: &str, criticality: Criticality) -> RoutingCase<'_> {
    RoutingCase {
        account_name: "Globex",
        rule_id,
        criticality,
    }
}

fn route(
    own: &AccountSettings,
    partner: Option<&AccountSettings>,
    case: &RoutingCase<'_>,
) -> Result<TicketPlan, NotTicketed> {
    resolve_ticket_plan(case, &resolve_settings(own, partner))
}

// ---------------------------------------------------------------------------------------------
// examples

#[test]
fn unmapped_subtenant_tickets_land_under_the_parent_company() {
    let plan = route(
        &subtenant("globex"),
        Some(&partner()),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap();
    assert_eq!(plan.integration_id, "intg-partner");
    assert_eq!(plan.company_identifier, "CBMSSP");
    assert_eq!(plan.board_id, 7);
    assert_eq!(plan.priority_id, Some(2));
    assert_eq!(
        plan.reasons,
        vec![
            "board 7 (SOC): rule type Endpoint, partner mapping".to_string(),
            "company CBMSSP: no company ID mapping for Globex, filed under the parent company"
                .to_string(),
            "priority 2: high, partner mapping".to_string(),
            "status: the board's default".to_string(),
        ]
    );
}

#[test]
fn a_company_id_mapping_of_the_partner_names_the_subtenants_company() {
    let plan = route(
        &subtenant("acme"),
        Some(&partner()),
        &case("r-endpoint", Criticality::Low),
    )
    .unwrap();
    assert_eq!(plan.company_identifier, "ACMECORP");
    assert_eq!(
        plan.reasons[1],
        "company ACMECORP: company ID mapping of Globex"
    );
}

#[test]
fn a_subtenants_own_mappings_win_over_the_partners_when_not_uniform() {
    let mut own = subtenant("globex");
    own.board_mappings = Some(BoardMappings {
        rule_types: vec![board("Endpoint", Some(9), Some("Globex SOC"))],
        assignments: vec![assign("r-endpoint", "Endpoint")],
    });
    own.criticality_mappings = Some(priorities([Some(11), None, None, None, None]));
    let plan = route(
        &own,
        Some(&partner()),
        &case("r-endpoint", Criticality::Critical),
    )
    .unwrap();
    assert_eq!((plan.board_id, plan.priority_id), (9, Some(11)));
    assert_eq!(
        plan.reasons[0],
        "board 9 (Globex SOC): rule type Endpoint, own mapping"
    );
    assert_eq!(plan.reasons[2], "priority 11: critical, own mapping");
}

#[test]
fn uniform_mode_routes_with_the_partners_board_and_priority_even_over_an_own_copy() {
    let mut p = partner();
    p.integration.as_mut().unwrap().uniform_subtenant_mappings = true;
    let mut own = subtenant("globex");
    own.board_mappings = Some(BoardMappings {
        rule_types: vec![board("Endpoint", Some(9), None)],
        assignments: vec![assign("r-endpoint", "Endpoint")],
    });
    own.criticality_mappings = Some(priorities([Some(11); 5]));
    let plan = route(&own, Some(&p), &case("r-endpoint", Criticality::Critical)).unwrap();
    assert_eq!((plan.board_id, plan.priority_id), (7, Some(1)));
    assert_eq!(
        plan.reasons[0],
        "board 7 (SOC): rule type Endpoint, partner mapping"
    );
}

#[test]
fn an_own_board_mapping_without_the_rule_does_not_fall_through_to_the_partner() {
    let mut own = subtenant("globex");
    own.board_mappings = Some(BoardMappings {
        rule_types: vec![board("Endpoint", Some(9), None)],
        assignments: vec![],
    });
    let err = route(
        &own,
        Some(&partner()),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not ticketed: rule r-endpoint has no rule type on this account (own mapping)"
    );
    assert_eq!(err.code(), "rule_unassigned");
}

#[test]
fn an_own_criticality_mapping_without_the_level_is_ticketed_without_a_priority() {
    let mut own = subtenant("globex");
    own.criticality_mappings = Some(priorities([Some(11), None, None, None, None]));
    let plan = route(
        &own,
        Some(&partner()),
        &case("r-endpoint", Criticality::Medium),
    )
    .unwrap();
    assert_eq!(
        plan.priority_id, None,
        "the partner's priority 3 must not be used"
    );
    assert_eq!(
        plan.reasons[2],
        "no priority: medium is not mapped (own mapping); ConnectWise applies its default"
    );
}

#[test]
fn without_any_criticality_mappings_the_ticket_has_no_priority_and_says_so() {
    let mut p = partner();
    p.criticality_mappings = None;
    let plan = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::Medium),
    )
    .unwrap();
    assert_eq!(plan.priority_id, None);
    assert_eq!(
        plan.reasons[2],
        "no priority: no criticality mappings; ConnectWise applies its default"
    );
}

#[test]
fn a_rule_type_without_a_board_is_not_ticketed_and_names_the_rule_type() {
    let err = route(
        &subtenant("globex"),
        Some(&partner()),
        &case("r-cloud", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not ticketed: rule type Cloud has no board (partner mapping)"
    );
    assert_eq!(err.code(), "rule_type_without_board");
}

#[test]
fn a_rule_without_a_rule_type_is_not_ticketed_and_names_the_rule() {
    let err = route(
        &subtenant("globex"),
        Some(&partner()),
        &case("r-unknown", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(
        err,
        NotTicketed::RuleUnassigned {
            rule_id: "r-unknown".into(),
            mapping: "partner mapping"
        }
    );
    assert!(err.to_string().contains("rule r-unknown has no rule type"));
}

#[test]
fn a_subtenant_with_its_own_integration_ignores_the_partner_entirely() {
    let mut p = partner();
    p.integration.as_mut().unwrap().uniform_subtenant_mappings = true;
    p.company_mappings
        .push(("globex".into(), "GLOBEX-VIA-PARTNER".into()));
    let mut own = subtenant("globex");
    own.integration = Some(integration("intg-globex", "globex", Some("GLOBEX-PARENT")));
    let err = route(&own, Some(&p), &case("r-endpoint", Criticality::High)).unwrap_err();
    assert_eq!(
        err.code(),
        "no_board_mappings",
        "the partner's board mappings must not be used"
    );
    own.board_mappings = Some(BoardMappings {
        rule_types: vec![board("Endpoint", Some(9), None)],
        assignments: vec![assign("r-endpoint", "Endpoint")],
    });
    let plan = route(&own, Some(&p), &case("r-endpoint", Criticality::High)).unwrap();
    assert_eq!(plan.integration_id, "intg-globex");
    assert_eq!(plan.company_identifier, "GLOBEX-PARENT");
    assert_eq!(plan.priority_id, None);
    assert_eq!(plan.reasons[0], "board 9: rule type Endpoint, own mapping");
}

#[test]
fn without_apply_to_all_a_subtenant_without_an_integration_is_not_ticketed() {
    let mut p = partner();
    p.integration.as_mut().unwrap().apply_to_all_subtenants = false;
    let err = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(
        err,
        NotTicketed::NoIntegration {
            account: "Globex".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "not ticketed: Globex has no support system, and no partner applies its integration to it"
    );
    let err = route(
        &subtenant("globex"),
        None,
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(err.code(), "no_integration");
}

#[test]
fn an_inactive_integration_tickets_nothing() {
    let mut p = partner();
    p.integration.as_mut().unwrap().active = false;
    let err = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(err, NotTicketed::IntegrationInactive);
    let err = route(&p, None, &case("r-endpoint", Criticality::High)).unwrap_err();
    assert_eq!(err, NotTicketed::IntegrationInactive);
}

#[test]
fn no_board_mappings_anywhere_names_the_missing_resource() {
    let mut p = partner();
    p.board_mappings = None;
    let err = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not ticketed: Globex has no board mappings (neither its own nor the partner's)"
    );
}

#[test]
fn without_company_mapping_or_parent_company_the_case_is_not_ticketed() {
    let mut p = partner();
    p.integration.as_mut().unwrap().parent_company_identifier = None;
    let err = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap_err();
    assert_eq!(err.code(), "no_company");
}

#[test]
fn the_initial_status_comes_from_the_board_mapping_then_the_mapped_escalated_status() {
    let mut p = partner();
    p.status_mappings.boards.push(StatusMapping {
        board_id: 7,
        confirmed: true,
        statuses: CaseStatusMap {
            escalated: Some(701),
            ..Default::default()
        },
    });
    let plan = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap();
    assert_eq!(plan.status_id, Some(701));
    assert_eq!(
        plan.reasons[3],
        "status 701: mapped escalated status of the board"
    );
    p.board_mappings.as_mut().unwrap().rule_types[0].status_id = Some(702);
    let plan = route(
        &subtenant("globex"),
        Some(&p),
        &case("r-endpoint", Criticality::High),
    )
    .unwrap();
    assert_eq!(plan.status_id, Some(702));
    assert_eq!(
        plan.reasons[3],
        "status 702: initial status of the board mapping"
    );
}

#[test]
fn the_partners_own_cases_route_with_its_own_settings() {
    let plan = route(
        &partner(),
        None,
        &case("r-endpoint", Criticality::Informational),
    )
    .unwrap();
    assert_eq!(
        (plan.integration_id.as_str(), plan.priority_id),
        ("intg-partner", Some(5))
    );
    assert_eq!(
        plan.reasons[0],
        "board 7 (SOC): rule type Endpoint, own mapping"
    );
}

// ---------------------------------------------------------------------------------------------
// random partner trees

const RULE_TYPES: [&str; 6] = ["Endpoint", "Network", "Cloud", "Identity", "Email", "Other"];
/// Rule ids `rule-0` … `rule-{RULES-1}`; `rule-unknown` is never assigned.
const RULES: usize = 16;
const PARTNER: i64 = 1;

fn owner_of(id: i64) -> i64 {
    id / 1000
}

fn sub_owner(i: usize) -> i64 {
    i as i64 + 2
}

fn rule_id(i: usize) -> String {
    format!("rule-{i}")
}

/// One rule type entry, ids without the owner offset.
fn rule_type_entry() -> impl Strategy<Value = (Option<i64>, Option<i64>, Option<i64>, Option<i64>)>
{
    // board (None: "no board"), type, item, initial status
    (
        prop::option::weighted(0.8, 1..60i64),
        prop::option::of(1..60i64),
        prop::option::of(1..60i64),
        prop::option::of(1..60i64),
    )
}

fn board_mappings(owner: i64) -> impl Strategy<Value = BoardMappings> {
    (
        prop::collection::vec(
            prop::option::weighted(0.8, rule_type_entry()),
            RULE_TYPES.len(),
        ),
        prop::collection::vec(prop::option::weighted(0.75, 0..RULE_TYPES.len()), RULES),
    )
        .prop_map(move |(entries, assignments)| {
            let off = |v: Option<i64>| v.map(|v| owner * 1000 + v);
            BoardMappings {
                rule_types: entries
                    .into_iter()
                    .zip(RULE_TYPES)
                    .filter_map(|(e, name)| {
                        e.map(|(b, t, item, status)| RuleTypeBoard {
                            rule_type: name.into(),
                            board_id: off(b),
                            board_name: b.map(|b| format!("Board {b} of {owner}")),
                            type_id: off(t),
                            subtype_id: off(t.map(|t| t + 100)),
                            item_id: off(item),
                            status_id: off(status),
                        })
                    })
                    .collect(),
                // a rule may be assigned to a rule type the resource does not list: no board
                assignments: assignments
                    .into_iter()
                    .enumerate()
                    .filter_map(|(r, t)| t.map(|t| assign(&rule_id(r), RULE_TYPES[t])))
                    .collect(),
            }
        })
}

fn criticality_mappings(owner: i64) -> impl Strategy<Value = CriticalityMappings> {
    prop::collection::vec(prop::option::weighted(0.8, 1..10i64), 5).prop_map(move |p| {
        let p: Vec<Option<i64>> = p.into_iter().map(|v| v.map(|v| owner * 1000 + v)).collect();
        priorities([p[0], p[1], p[2], p[3], p[4]])
    })
}

#[derive(Debug, Clone)]
struct RawIntegration {
    active: bool,
    apply_to_all: bool,
    uniform: bool,
    parent: bool,
    /// Bit `b % 64` set: the integration's account has a status mapping for board `b`.
    status_bits: u64,
}

fn raw_integration() -> impl Strategy<Value = RawIntegration> {
    (
        prop::bool::weighted(0.85),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        any::<u64>(),
    )
        .prop_map(
            |(active, apply_to_all, uniform, parent, status_bits)| RawIntegration {
                active,
                apply_to_all,
                uniform,
                parent,
                status_bits,
            },
        )
}

/// An account's own settings, before company and status mappings are filled in.
fn account(
    owner: i64,
    integration_weight: f64,
) -> impl Strategy<
    Value = (
        Option<RawIntegration>,
        Option<BoardMappings>,
        Option<CriticalityMappings>,
        bool,
    ),
> {
    (
        prop::option::weighted(integration_weight, raw_integration()),
        prop::option::weighted(0.6, board_mappings(owner)),
        prop::option::weighted(0.6, criticality_mappings(owner)),
        // own company ID mapping of itself (used only with its own integration)
        any::<bool>(),
    )
}

#[derive(Debug, Clone)]
struct Tree {
    partner: AccountSettings,
    subs: Vec<AccountSettings>,
}

impl Tree {
    fn sub_name(i: usize) -> String {
        format!("Sub {i}")
    }
}

fn build(
    owner: i64,
    raw: Option<RawIntegration>,
    boards: Option<BoardMappings>,
    crit: Option<CriticalityMappings>,
) -> AccountSettings {
    let account_id = if owner == PARTNER {
        "partner".to_string()
    } else {
        format!("sub-{}", owner - 2)
    };
    let integration = raw.map(|r| IntegrationRef {
        id: format!("intg-{account_id}"),
        account_id: account_id.clone(),
        parent_company_identifier: r.parent.then(|| format!("PARENT-{owner}")),
        active: r.active,
        apply_to_all_subtenants: owner == PARTNER && r.apply_to_all,
        uniform_subtenant_mappings: owner == PARTNER && r.apply_to_all && r.uniform,
    });
    AccountSettings {
        account_id,
        integration,
        board_mappings: boards,
        criticality_mappings: crit,
        company_mappings: Vec::new(),
        status_mappings: StatusMappings::default(),
    }
}

/// Status mappings of an integration's account for every board any account could route to
/// whose bit is set; the mapped escalated status is `owner * 1_000_000 + board`.
fn status_mappings(owner: i64, bits: u64, all_boards: &[i64]) -> StatusMappings {
    StatusMappings {
        boards: all_boards
            .iter()
            .filter(|b| bits & (1 << (**b as u64 % 64)) != 0)
            .map(|b| StatusMapping {
                board_id: *b,
                confirmed: true,
                statuses: CaseStatusMap {
                    escalated: Some(owner * 1_000_000 + b),
                    ..Default::default()
                },
            })
            .collect(),
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    (
        account(PARTNER, 0.9),
        (1..=20usize).prop_flat_map(|n| {
            let subs: Vec<_> = (0..n).map(|i| account(sub_owner(i), 0.25)).collect();
            (subs, prop::collection::vec(any::<bool>(), n))
        }),
    )
        .prop_map(|((p_int, p_boards, p_crit, _), (subs, partner_maps))| {
            let p_status = p_int.as_ref().map(|r| r.status_bits);
            let mut partner = build(PARTNER, p_int, p_boards, p_crit);
            let mut all_boards: Vec<i64> = Vec::new();
            let mut accounts = Vec::new();
            for (i, (raw, boards, crit, own_company)) in subs.into_iter().enumerate() {
                let bits = raw.as_ref().map(|r| r.status_bits);
                let mut s = build(sub_owner(i), raw, boards, crit);
                if s.integration.is_some() && own_company {
                    s.company_mappings
                        .push((s.account_id.clone(), format!("OWN-{i}")));
                }
                // a sub-tenant without an integration may still hold stray company mappings; they
                // must never be used
                if s.integration.is_none() && own_company {
                    s.company_mappings
                        .push((s.account_id.clone(), format!("STRAY-{i}")));
                }
                accounts.push((s, bits));
            }
            for s in std::iter::once(&partner).chain(accounts.iter().map(|(s, _)| s)) {
                if let Some(b) = &s.board_mappings {
                    all_boards.extend(b.rule_types.iter().filter_map(|r| r.board_id));
                }
            }
            if let Some(bits) = p_status {
                partner.status_mappings = status_mappings(PARTNER, bits, &all_boards);
            }
            for (i, ((s, bits), mapped)) in accounts.iter_mut().zip(partner_maps).enumerate() {
                // status mappings of a sub-tenant without an integration are ignored as well
                s.status_mappings =
                    status_mappings(sub_owner(i), bits.unwrap_or(u64::MAX), &all_boards);
                if mapped {
                    partner
                        .company_mappings
                        .push((s.account_id.clone(), format!("P-{i}")));
                }
            }
            Tree {
                partner,
                subs: accounts.into_iter().map(|(s, _)| s).collect(),
            }
        })
}

/// Every rule id a case can carry in the properties.
fn all_rules() -> Vec<String> {
    (0..RULES)
        .map(rule_id)
        .chain(std::iter::once("rule-unknown".to_string()))
        .collect()
}

/// Calls `f` with every (sub-tenant index, rule, criticality) decision of the tree.
fn each_decision(
    t: &Tree,
    mut f: impl FnMut(usize, &AccountSettings, &str, Criticality, Result<TicketPlan, NotTicketed>),
) {
    for (i, s) in t.subs.iter().enumerate() {
        let name = Tree::sub_name(i);
        let settings = resolve_settings(s, Some(&t.partner));
        for r in all_rules() {
            for c in Criticality::ALL {
                let case = RoutingCase {
                    account_name: &name,
                    rule_id: &r,
                    criticality: c,
                };
                f(i, s, &r, c, resolve_ticket_plan(&case, &settings));
            }
        }
    }
}

/// The partner's integration when it applies to sub-tenants without their own.
fn inherited(t: &Tree) -> Option<&IntegrationRef> {
    t.partner
        .integration
        .as_ref()
        .filter(|i| i.apply_to_all_subtenants)
}

/// The resource in use for a sub-tenant on the partner's integration: its own copy unless
/// uniform mode is on or it has none, then the partner's — whole.
fn whole<'a, T>(
    uniform: bool,
    own: Option<&'a T>,
    partner: Option<&'a T>,
) -> Option<(&'a T, &'static str)> {
    match (uniform, own) {
        (false, Some(m)) => Some((m, "own mapping")),
        _ => partner.map(|m| (m, "partner mapping")),
    }
}

/// What DESIGN §3 says a decision must be, derived step by step from the rules.
fn expected(
    t: &Tree,
    s: &AccountSettings,
    name: &str,
    rule: &str,
    c: Criticality,
) -> Result<TicketPlan, NotTicketed> {
    // which account's integration, and whose resources
    let (integration, int_account, boards, crit) = match (&s.integration, inherited(t)) {
        (Some(i), _) => (
            i,
            s,
            s.board_mappings.as_ref().map(|b| (b, "own mapping")),
            s.criticality_mappings.as_ref().map(|m| (m, "own mapping")),
        ),
        (None, Some(i)) => {
            let u = i.uniform_subtenant_mappings;
            (
                i,
                &t.partner,
                whole(
                    u,
                    s.board_mappings.as_ref(),
                    t.partner.board_mappings.as_ref(),
                ),
                whole(
                    u,
                    s.criticality_mappings.as_ref(),
                    t.partner.criticality_mappings.as_ref(),
                ),
            )
        }
        (None, None) => {
            return Err(NotTicketed::NoIntegration {
                account: name.into(),
            });
        }
    };
    if !integration.active {
        return Err(NotTicketed::IntegrationInactive);
    }
    let Some((boards, bsrc)) = boards else {
        let source_hint = if s.integration.is_some() {
            "set them under Board Mappings"
        } else {
            "neither its own nor the partner's"
        };
        return Err(NotTicketed::NoBoardMappings {
            account: name.into(),
            source_hint: source_hint.into(),
        });
    };
    let Some(rule_type) = boards
        .assignments
        .iter()
        .find(|a| a.rule_id == rule)
        .map(|a| a.rule_type.clone())
    else {
        return Err(NotTicketed::RuleUnassigned {
            rule_id: rule.into(),
            mapping: bsrc,
        });
    };
    let Some(entry) = boards
        .rule_types
        .iter()
        .find(|r| r.rule_type == rule_type && r.board_id.is_some())
    else {
        return Err(NotTicketed::RuleTypeWithoutBoard {
            rule_type,
            mapping: bsrc,
        });
    };
    let company = int_account
        .company_mappings
        .iter()
        .find(|(a, _)| *a == s.account_id)
        .map(|(_, c)| c.clone());
    let Some(company) = company.or_else(|| integration.parent_company_identifier.clone()) else {
        return Err(NotTicketed::NoCompany {
            account: name.into(),
        });
    };
    let board_id = entry.board_id.unwrap();
    let mapped_escalated = int_account
        .status_mappings
        .boards
        .iter()
        .find(|m| m.board_id == board_id)
        .and_then(|m| m.statuses.escalated);
    Ok(TicketPlan {
        integration_id: integration.id.clone(),
        board_id,
        type_id: entry.type_id,
        subtype_id: entry.subtype_id,
        item_id: entry.item_id,
        status_id: entry.status_id.or(mapped_escalated),
        priority_id: crit.and_then(|(m, _)| m.priority_for(c)),
        company_identifier: company,
        reasons: Vec::new(), // compared separately
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The whole decision agrees with the rules, for every sub-tenant, rule and criticality.
    #[test]
    fn every_decision_follows_the_design_rules(t in tree()) {
        each_decision(&t, |i, s, rule, c, got| {
            let want = expected(&t, s, &Tree::sub_name(i), rule, c);
            match (&got, &want) {
                (Ok(g), Ok(w)) => {
                    let mut g = g.clone();
                    g.reasons.clear();
                    assert_eq!(&g, w, "sub-tenant {i}, {rule}, {c}");
                }
                _ => assert_eq!(got, want, "sub-tenant {i}, {rule}, {c}"),
            }
        });
    }

    /// A sub-tenant using the partner's integration without a company ID mapping files under
    /// the parent company, and the plan's reasons say so.
    #[test]
    fn unmapped_subtenants_file_under_the_parent_company(t in tree()) {
        each_decision(&t, |i, s, _, _, got| {
            let unmapped = !t.partner.company_mappings.iter().any(|(a, _)| *a == s.account_id);
            if let (None, Some(pi), true, Ok(plan)) = (&s.integration, inherited(&t), unmapped, &got) {
                let parent = pi.parent_company_identifier.as_deref().expect("a plan without a mapping needs the parent");
                assert_eq!(plan.company_identifier, parent);
                assert_eq!(plan.integration_id, pi.id);
                let reason = format!("company {parent}: no company ID mapping for {}, filed under the parent company", Tree::sub_name(i));
                assert!(plan.reasons.contains(&reason), "{:?}", plan.reasons);
            }
            if let (None, Some(pi), true, Err(e)) = (&s.integration, inherited(&t), unmapped, &got)
                && pi.parent_company_identifier.is_some()
            {
                assert_ne!(e.code(), "no_company");
            }
        });
    }

    /// Uniform mode: board and priority always come from the partner's resources, even for a
    /// sub-tenant that still holds its own copy.
    #[test]
    fn uniform_mode_gives_the_partners_board_and_priority(t in tree()) {
        let Some(pi) = inherited(&t).filter(|i| i.uniform_subtenant_mappings) else { return Ok(()) };
        each_decision(&t, |_, s, rule, c, got| {
            if s.integration.is_some() {
                return;
            }
            match got {
                Ok(plan) => {
                    assert_eq!(owner_of(plan.board_id), PARTNER);
                    assert!(plan.reasons[0].ends_with(", partner mapping"), "{:?}", plan.reasons);
                    let want = t.partner.criticality_mappings.as_ref().and_then(|m| m.priority_for(c));
                    assert_eq!(plan.priority_id, want, "{rule} {c}");
                    assert_eq!(plan.integration_id, pi.id);
                }
                Err(NotTicketed::RuleUnassigned { mapping, .. } | NotTicketed::RuleTypeWithoutBoard { mapping, .. }) => {
                    assert_eq!(mapping, "partner mapping");
                }
                Err(_) => {}
            }
        });
    }

    /// A rule the resource in use does not assign is not ticketed, and the reason names the rule
    /// — whatever the other resource (own or partner) would have said.
    #[test]
    fn unassigned_rules_are_not_ticketed_and_named(t in tree()) {
        each_decision(&t, |_, s, rule, _, got| {
            let settings = resolve_settings(s, Some(&t.partner));
            let (Some((i, _)), Some((boards, src))) = (&settings.integration, &settings.board_mappings) else { return };
            if !i.active || boards.rule_type_of(rule).is_some() {
                return;
            }
            let err = got.expect_err("an unassigned rule must not be ticketed");
            assert_eq!(err.code(), "rule_unassigned");
            assert!(err.to_string().contains(&format!("rule {rule} has no rule type")), "{err}");
            assert!(err.to_string().contains(src.describe()), "{err}");
        });
    }

    /// A rule type without a board (listed with a null board, or not listed at all) is not
    /// ticketed, and the reason names the rule type.
    #[test]
    fn rule_types_without_a_board_are_not_ticketed_and_named(t in tree()) {
        each_decision(&t, |_, s, rule, _, got| {
            let settings = resolve_settings(s, Some(&t.partner));
            let (Some((i, _)), Some((boards, _))) = (&settings.integration, &settings.board_mappings) else { return };
            let Some(rule_type) = boards.rule_type_of(rule) else { return };
            if !i.active || boards.board_of(rule_type).and_then(|b| b.board_id).is_some() {
                return;
            }
            let err = got.expect_err("a rule type without a board must not be ticketed");
            assert_eq!(err.to_string().split(" (").next().unwrap(), format!("not ticketed: rule type {rule_type} has no board"));
        });
    }

    /// Each of the five criticalities gets exactly the priority the resource in use maps it to;
    /// an unmapped one is ticketed without a priority and the reasons say so.
    #[test]
    fn each_criticality_gets_exactly_its_mapped_priority(t in tree()) {
        each_decision(&t, |i, s, _, c, got| {
            let Ok(plan) = got else { return };
            let settings = resolve_settings(s, Some(&t.partner));
            match &settings.criticality_mappings {
                Some((m, src)) => {
                    assert_eq!(plan.priority_id, m.priority_for(c));
                    let reason = match m.priority_for(c) {
                        Some(p) => format!("priority {p}: {c}, {}", src.describe()),
                        None => format!("no priority: {c} is not mapped ({}); ConnectWise applies its default", src.describe()),
                    };
                    assert!(plan.reasons.contains(&reason), "{:?}", plan.reasons);
                    // provenance: the priority's owner is the resource's owner
                    if let Some(p) = plan.priority_id {
                        let want = if *src == MappingSource::Partner { PARTNER } else { sub_owner(i) };
                        assert_eq!(owner_of(p), want);
                    }
                }
                None => {
                    assert_eq!(plan.priority_id, None);
                    assert!(plan.reasons.iter().any(|r| r == "no priority: no criticality mappings; ConnectWise applies its default"));
                }
            }
        });
    }

    /// A sub-tenant with its own integration: the plan uses its integration, and nothing of the
    /// partner's (board, priority, company, status) ever appears in it.
    #[test]
    fn an_own_integration_ignores_the_partner(t in tree()) {
        each_decision(&t, |i, s, _, _, got| {
            let Some(own) = &s.integration else { return };
            match got {
                Ok(plan) => {
                    assert_eq!(plan.integration_id, own.id);
                    for id in [Some(plan.board_id), plan.type_id, plan.subtype_id, plan.item_id, plan.priority_id].into_iter().flatten() {
                        assert_eq!(owner_of(id), sub_owner(i), "id {id} is not the sub-tenant's own");
                    }
                    if let Some(st) = plan.status_id {
                        assert!(owner_of(st) == sub_owner(i) || st / 1_000_000 == sub_owner(i), "status {st}");
                    }
                    assert!(!plan.company_identifier.starts_with("P-") && plan.company_identifier != format!("PARENT-{PARTNER}"));
                    assert!(plan.reasons.iter().all(|r| !r.contains("partner")), "{:?}", plan.reasons);
                }
                Err(NotTicketed::IntegrationInactive) => assert!(!own.active),
                Err(e) => {
                    assert!(own.active);
                    assert!(!e.to_string().contains("partner"), "{e}");
                }
            }
        });
    }

    /// Resources are picked whole: with an own copy in use, every decision is the one the own
    /// copy alone gives — a missing entry never falls through to the partner's.
    #[test]
    fn resources_are_picked_whole(t in tree()) {
        each_decision(&t, |i, s, rule, c, got| {
            let settings = resolve_settings(s, Some(&t.partner));
            if let Some((b, MappingSource::Own)) = &settings.board_mappings {
                assert_eq!(b, s.board_mappings.as_ref().unwrap());
                match &got {
                    Ok(plan) => assert_eq!(owner_of(plan.board_id), sub_owner(i)),
                    Err(NotTicketed::RuleUnassigned { mapping, .. } | NotTicketed::RuleTypeWithoutBoard { mapping, .. }) => assert_eq!(*mapping, "own mapping"),
                    Err(_) => {}
                }
                if b.rule_type_of(rule).and_then(|t| b.board_of(t)).and_then(|x| x.board_id).is_none() {
                    assert!(got.is_err(), "{rule} is not mapped by the own copy");
                }
            }
            if let (Some((m, MappingSource::Own)), Ok(plan)) = (&settings.criticality_mappings, &got) {
                assert_eq!(m, s.criticality_mappings.as_ref().unwrap());
                assert_eq!(plan.priority_id, m.priority_for(c));
            }
        });
    }

    /// No integration anywhere → NoIntegration; an inactive one → IntegrationInactive.
    #[test]
    fn missing_or_inactive_integrations_ticket_nothing(t in tree()) {
        each_decision(&t, |_, s, _, _, got| {
            let integration = s.integration.as_ref().or(inherited(&t));
            match integration {
                None => assert!(matches!(got, Err(NotTicketed::NoIntegration { .. })), "{got:?}"),
                Some(i) if !i.active => assert_eq!(got, Err(NotTicketed::IntegrationInactive)),
                Some(_) => assert!(!matches!(got, Err(NotTicketed::NoIntegration { .. } | NotTicketed::IntegrationInactive))),
            }
        });
    }

    /// The partner's own cases always route with its own integration and own resources.
    #[test]
    fn the_partner_routes_with_its_own_settings(t in tree()) {
        let settings = resolve_settings(&t.partner, None);
        for r in all_rules() {
            for c in Criticality::ALL {
                let case = RoutingCase { account_name: "MSSP", rule_id: &r, criticality: c };
                if let Ok(plan) = resolve_ticket_plan(&case, &settings) {
                    assert_eq!(owner_of(plan.board_id), PARTNER);
                    assert!(plan.reasons[0].ends_with(", own mapping"));
                }
            }
        }
    }
}

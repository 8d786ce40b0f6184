//! `casebridge-bench`: timings of Casebridge's hot paths, one subcommand each. The figures and
//! the exact commands live in BENCHMARKS.md.
//!
//! - `routing`: resolves routing decisions (effective settings + ticket plan) over a realistic
//!   partner tree — the catalogue's ~3,000 rules assigned to rule types.
//! - `uniform`: a partner whose 10,000 sub-tenants each hold their own board and criticality
//!   mappings switches uniform mode on (find the copies, delete them and audit, one
//!   transaction) — on SQLite in a temp file, or on PostgreSQL with `--database-url`.
//! - `ingest`: alerts/s of one 10,000-line NDJSON batch of the shipped alerts (then repeats/s).
//! - `escalation`: escalations/s and escalate → ticket linked latency against an in-process
//!   cw-sim with two outbox workers, next to cw-sim's raw ticket-create rate.
//! - `callbacks`: signed ConnectWise callbacks/s and acknowledgement time through the web
//!   router, then technician change → case latency.
//!
//! `uniform`, `ingest`, `escalation` and `callbacks` take `--database-url postgres://…/postgres`
//! (a base URL: a fresh `cb_bench_<random>` database is created on that server and dropped
//! afterwards; the database the URL names is never written).

mod callbacks;
mod env;
mod escalation;
mod ingest;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use casebridge_domain::routing::{
    AccountSettings, IntegrationRef, resolve_settings, resolve_ticket_plan,
};
use casebridge_domain::{
    AccountKind, BoardMappings, Criticality, CriticalityMappings, RoutingCase, RuleAssignment,
    RuleTypeBoard, StatusMapping, StatusMappings,
};
use casebridge_store::{AuditEntry, Integration, MappingResource, Store, now_millis};
use clap::{Parser, Subcommand};
use rand::Rng;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "casebridge-bench",
    about = "Benchmarks of Casebridge's hot paths"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Routing decisions per second over a partner tree with ~3,000 rule assignments.
    Routing {
        #[arg(long, default_value_t = 100_000)]
        decisions: usize,
        /// Sub-tenants of the partner (a fifth keep their own mappings, a tenth their own integration).
        #[arg(long, default_value_t = 200)]
        subtenants: usize,
    },
    /// Switching uniform mode on for a partner whose sub-tenants all hold their own mappings.
    Uniform {
        #[arg(long, default_value_t = 10_000)]
        subtenants: usize,
        /// A PostgreSQL base URL; a fresh `cb_bench_<random>` database is created on it
        /// (default: SQLite in a temp file).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Alerts/s of `ingest_body` for one NDJSON batch of the shipped alerts (then repeats/s).
    Ingest {
        #[arg(long, default_value_t = 10_000)]
        lines: usize,
        /// A PostgreSQL base URL; a fresh `cb_bench_<random>` database is created on it
        /// (default: SQLite in a temp file).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Escalations/s end to end against an in-process cw-sim with two outbox workers.
    Escalation {
        #[arg(long, default_value_t = 500)]
        cases: usize,
        /// Concurrent `escalate` callers (1: one bulk loop over all cases).
        #[arg(long, default_value_t = 1)]
        callers: usize,
        /// A PostgreSQL base URL; a fresh `cb_bench_<random>` database is created on it
        /// (default: SQLite in a temp file).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Signed callbacks/s through the web router, then technician → case latency.
    Callbacks {
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// A PostgreSQL base URL; a fresh `cb_bench_<random>` database is created on it
        /// (default: SQLite in a temp file).
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Routing {
            decisions,
            subtenants,
        } => routing(decisions, subtenants),
        Command::Uniform {
            subtenants,
            database_url,
        } => uniform(subtenants, database_url).await,
        Command::Ingest {
            lines,
            database_url,
        } => ingest::run(lines, database_url).await,
        Command::Escalation {
            cases,
            callers,
            database_url,
        } => escalation::run(cases, callers, database_url).await,
        Command::Callbacks { secs, database_url } => callbacks::run(secs, database_url).await,
    }
}

// ---------------------------------------------------------------------------------------------
// routing

const RULE_TYPES: [&str; 6] = ["Endpoint", "Network", "Cloud", "Identity", "Email", "Other"];

/// The catalogue's rule ids with a rule type from their logsource (or synthetic ids when the
/// data file is not there).
fn catalogue() -> Vec<(String, &'static str)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sigma-rules.jsonl");
    let from_file: Vec<(String, &'static str)> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let id = v["id"].as_str()?.to_string();
            let field = |f: &str| v["logsource"][f].as_str().unwrap_or("").to_lowercase();
            let (product, category, service) =
                (field("product"), field("category"), field("service"));
            let t = match (product.as_str(), category.as_str(), service.as_str()) {
                (_, "firewall" | "dns" | "proxy" | "webserver" | "network_connection", _) => {
                    "Network"
                }
                ("aws" | "azure" | "gcp" | "m365" | "google_workspace", _, _) => "Cloud",
                (_, _, "security" | "okta" | "activedirectory" | "signinlogs") => "Identity",
                ("windows" | "linux" | "macos", _, _) => "Endpoint",
                _ => "Other",
            };
            Some((id, t))
        })
        .collect();
    if from_file.len() >= 3000 {
        return from_file;
    }
    (0..3100)
        .map(|i| {
            (
                format!("{i:08x}-0000-4000-8000-{i:012x}"),
                RULE_TYPES[i % RULE_TYPES.len()],
            )
        })
        .collect()
}

fn integration(id: &str, account: &str, parent: &str, apply_to_all: bool) -> IntegrationRef {
    IntegrationRef {
        id: id.into(),
        account_id: account.into(),
        parent_company_identifier: Some(parent.into()),
        active: true,
        apply_to_all_subtenants: apply_to_all,
        uniform_subtenant_mappings: false,
    }
}

fn board_mappings(
    rules: &[(String, &'static str)],
    board_base: i64,
    every: usize,
) -> BoardMappings {
    BoardMappings {
        rule_types: RULE_TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| RuleTypeBoard {
                rule_type: t.to_string(),
                // "Other" has no board: its rules are not ticketed
                board_id: (*t != "Other").then_some(board_base + i as i64),
                board_name: Some(format!("SOC - {t}")),
                type_id: Some(10 + i as i64),
                subtype_id: None,
                item_id: None,
                status_id: None,
            })
            .collect(),
        // `every` > 1 leaves rules unassigned
        assignments: rules
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every != every - 1 || every == 1)
            .map(|(_, (r, t))| RuleAssignment {
                rule_id: r.clone(),
                rule_type: t.to_string(),
            })
            .collect(),
    }
}

fn routing(decisions: usize, subtenants: usize) -> Result<()> {
    let rules = catalogue();
    let statuses = StatusMappings {
        boards: (1..=6)
            .map(|b| StatusMapping {
                board_id: b,
                confirmed: true,
                statuses: casebridge_domain::mapping::CaseStatusMap {
                    escalated: Some(b * 100 + 1),
                    ..Default::default()
                },
            })
            .collect(),
    };
    let partner = AccountSettings {
        account_id: "partner".into(),
        integration: Some(integration("intg-partner", "partner", "CBMSSP", true)),
        board_mappings: Some(board_mappings(&rules, 1, 1)),
        criticality_mappings: Some(CriticalityMappings {
            critical: Some(1),
            high: Some(2),
            medium: Some(3),
            low: Some(4),
            informational: None,
        }),
        company_mappings: (0..subtenants)
            .filter(|i| i % 2 == 0)
            .map(|i| (format!("sub-{i}"), format!("CO-{i}")))
            .collect(),
        status_mappings: statuses.clone(),
    };
    let subs: Vec<AccountSettings> = (0..subtenants)
        .map(|i| {
            let id = format!("sub-{i}");
            let own_integration = i % 10 == 9;
            let own_mappings = own_integration || i % 5 == 0;
            AccountSettings {
                integration: own_integration.then(|| {
                    integration(&format!("intg-{id}"), &id, &format!("PARENT-{i}"), false)
                }),
                board_mappings: own_mappings.then(|| board_mappings(&rules, 1, 7)),
                criticality_mappings: own_mappings.then(|| CriticalityMappings {
                    critical: Some(1),
                    high: Some(1),
                    ..Default::default()
                }),
                company_mappings: Vec::new(),
                status_mappings: if own_integration {
                    statuses.clone()
                } else {
                    StatusMappings::default()
                },
                account_id: id,
            }
        })
        .collect();
    let assignments: usize = std::iter::once(&partner)
        .chain(&subs)
        .filter_map(|a| a.board_mappings.as_ref())
        .map(|b| b.assignments.len())
        .sum();
    let names: Vec<String> = (0..subtenants).map(|i| format!("Sub {i}")).collect();

    // the cases: random sub-tenant, rule (some not in the catalogue) and criticality
    let mut rng = rand::rng();
    let cases: Vec<(usize, usize, Criticality)> = (0..decisions)
        .map(|_| {
            (
                rng.random_range(0..subtenants),
                rng.random_range(0..rules.len() + rules.len() / 50),
                Criticality::ALL[rng.random_range(0..5)],
            )
        })
        .collect();
    let unknown = "not-in-the-catalogue".to_string();
    let rule_of = |r: usize| rules.get(r).map_or(&unknown, |(id, _)| id);

    // as the sync engine does it: effective settings, then the plan, per case
    let started = Instant::now();
    let (mut ticketed, mut not_ticketed) = (0usize, 0usize);
    for &(s, r, c) in &cases {
        let settings = resolve_settings(&subs[s], Some(&partner));
        let case = RoutingCase {
            account_name: &names[s],
            rule_id: rule_of(r),
            criticality: c,
        };
        match black_box(resolve_ticket_plan(&case, &settings)) {
            Ok(_) => ticketed += 1,
            Err(_) => not_ticketed += 1,
        }
    }
    let full = started.elapsed();

    // the plan alone, settings resolved once per sub-tenant
    let resolved: Vec<_> = subs
        .iter()
        .map(|s| resolve_settings(s, Some(&partner)))
        .collect();
    let started = Instant::now();
    for &(s, r, c) in &cases {
        let case = RoutingCase {
            account_name: &names[s],
            rule_id: rule_of(r),
            criticality: c,
        };
        let _ = black_box(resolve_ticket_plan(&case, &resolved[s]));
    }
    let plan_only = started.elapsed();

    println!(
        "routing: {subtenants} sub-tenants, {} catalogue rules, {assignments} rule assignments in all board mappings",
        rules.len()
    );
    println!(
        "  partner board mappings: {} assignments; {} sub-tenants with their own copy, {} with their own integration",
        partner
            .board_mappings
            .as_ref()
            .map_or(0, |b| b.assignments.len()),
        subs.iter().filter(|s| s.board_mappings.is_some()).count(),
        subs.iter().filter(|s| s.integration.is_some()).count()
    );
    println!("  {decisions} decisions: {ticketed} ticketed, {not_ticketed} not ticketed");
    println!(
        "  resolve_settings + resolve_ticket_plan: {:>10.0} decisions/s ({:.2?})",
        per_sec(decisions, full),
        full
    );
    println!(
        "  resolve_ticket_plan alone:             {:>10.0} decisions/s ({:.2?})",
        per_sec(decisions, plan_only),
        plan_only
    );
    Ok(())
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------------
// uniform mode

fn audit(account_id: &str, action: &str, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        account_id: account_id.into(),
        actor: "casebridge-bench".into(),
        at: now_millis(),
        action: action.into(),
        detail,
    }
}

async fn uniform(subtenants: usize, database_url: Option<String>) -> Result<()> {
    let db = env::scratch_db(database_url.as_deref()).await?;
    let store = casebridge_store::open(db.url(), true)
        .await
        .context("opening the scratch database")?;
    println!(
        "uniform: {} backend, {subtenants} sub-tenants each with own board + criticality mappings",
        store.backend()
    );

    // setup (not timed): the partner, its integration and the sub-tenants' own mappings
    let setup = Instant::now();
    let partner = store
        .create_account("Bench MSSP", AccountKind::Partner, None)
        .await?;
    let now = now_millis();
    let mut integration = Integration {
        id: format!("intg-bench-{}", rand::random::<u32>()),
        account_id: partner.id.clone(),
        kind: "connectwise".into(),
        site_url: "https://na.myconnectwise.net".into(),
        company_id: "bench".into(),
        public_key: "pub".into(),
        private_key_enc: None,
        client_id: "client".into(),
        parent_company_identifier: Some("CBMSSP".into()),
        apply_to_all_subtenants: true,
        uniform_subtenant_mappings: false,
        allow_private_hosts: false,
        process_notifications: false,
        active: true,
        last_test: None,
        tested_ok: true,
        callback_id: None,
        sync_mode: "polling".into(),
        last_callback_at: None,
        watermark: None,
        created_at: now,
        updated_at: now,
    };
    store
        .save_integration(
            &integration,
            &audit(&partner.id, "support_system_saved", json!({})),
        )
        .await?;
    let rules = catalogue();
    let board = serde_json::to_value(board_mappings(&rules[..60], 1, 1))?;
    let crit = json!({"critical": 1, "high": 2, "medium": 3, "low": 4, "informational": null});
    let workers = if store.backend() == "postgres" { 8 } else { 1 };
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (store, partner_id, board, crit): (Arc<dyn Store>, _, _, _) = (
            store.clone(),
            partner.id.clone(),
            board.clone(),
            crit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in (w..subtenants).step_by(workers) {
                let sub = store
                    .create_account(
                        &format!("Sub {i:05}"),
                        AccountKind::Subtenant,
                        Some(&partner_id),
                    )
                    .await?;
                store
                    .put_mapping(
                        &sub.id,
                        MappingResource::Board,
                        Some(&board),
                        &audit(&sub.id, "board_mappings_saved", json!({})),
                    )
                    .await?;
                store
                    .put_mapping(
                        &sub.id,
                        MappingResource::Criticality,
                        Some(&crit),
                        &audit(&sub.id, "criticality_mappings_saved", json!({})),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("  setup: {:.1?}", setup.elapsed());

    // what PUT …/support-system does when uniform mode goes on
    let started = Instant::now();
    let subs = store.subtenants(&partner.id).await?;
    let with_integration: std::collections::HashSet<String> = store
        .integrations()
        .await?
        .into_iter()
        .map(|i| i.account_id)
        .collect();
    let inheriting: Vec<String> = subs
        .into_iter()
        .filter(|s| !with_integration.contains(&s.id))
        .map(|s| s.id)
        .collect();
    let listed = started.elapsed();
    let t_find = Instant::now();
    let cleared = store.accounts_with_own_mappings(&inheriting).await?;
    let find = t_find.elapsed();
    integration.uniform_subtenant_mappings = true;
    integration.updated_at = now_millis();
    let t_switch = Instant::now();
    store
        .set_uniform_mode(
            &integration,
            &cleared,
            &audit(
                &partner.id,
                "uniform_mappings_on",
                json!({"deleted_subtenant_mappings": cleared}),
            ),
        )
        .await?;
    let switch = t_switch.elapsed();
    let total = started.elapsed();

    ensure!(
        cleared.len() == subtenants,
        "expected {subtenants} sub-tenants with own mappings, found {}",
        cleared.len()
    );
    ensure!(
        store
            .accounts_with_own_mappings(&inheriting)
            .await?
            .is_empty(),
        "own mappings left after switching uniform mode on"
    );
    ensure!(
        store
            .integration_of(&partner.id)
            .await?
            .is_some_and(|i| i.uniform_subtenant_mappings),
        "uniform mode not saved"
    );

    println!("  list sub-tenants without own integration: {listed:.1?}");
    println!(
        "  accounts_with_own_mappings ({} found):    {find:.1?}",
        cleared.len()
    );
    println!(
        "  set_uniform_mode (delete {} rows + audit):  {switch:.1?}",
        cleared.len() * 2
    );
    println!(
        "  accounts_with_own_mappings + set_uniform_mode: {:.1?} (target ≤ 1 s)",
        find + switch
    );
    println!("  whole switch incl. listing:                    {total:.1?}");
    drop(store);
    db.drop_db().await;
    Ok(())
}

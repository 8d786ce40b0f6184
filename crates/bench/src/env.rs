//! Shared setup of the end-to-end benchmarks: a fresh store (SQLite temp file, or a fresh
//! `cb_bench_<random>` database on the PostgreSQL server of `--database-url`), an in-process
//! cw-sim with the demo seed, and a partner whose active integration points at it with board,
//! criticality and confirmed status mappings (as crates/sync/tests/support/mod.rs seeds them).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use casebridge_domain::ids::new_id;
use casebridge_domain::status_mapping::propose_defaults;
use casebridge_domain::{
    AccountKind, BoardMappings, Criticality, CriticalityMappings, RuleAssignment, RuleTypeBoard,
    StatusMappings,
};
use casebridge_store::{
    AlertInsert, AuditEntry, Case, Integration, MappingResource, NewCase, Rule, Store, now_millis,
};
use casebridge_sync::{ConnectWiseFactory, SecretBox, SyncConfig, SyncContext};
use casebridge_testkit::ScratchDb;
use serde_json::json;

pub const RULE: &str = "r-bench-endpoint";

/// A fresh database of its own for one benchmark run: a SQLite temp file without
/// `--database-url`, else a new `cb_bench_<random>` database on that server (the database the
/// URL names is never written). Remove it with [`ScratchDb::drop_db`].
pub async fn scratch_db(database_url: Option<&str>) -> Result<ScratchDb> {
    match database_url {
        None => Ok(ScratchDb::sqlite("casebridge-bench")),
        Some(url) => ScratchDb::postgres(url, "cb_bench").await,
    }
}

pub fn audit(account_id: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.into(),
        actor: "casebridge-bench".into(),
        at: now_millis(),
        action: "bench".into(),
        detail: json!({}),
    }
}

pub fn secrets() -> SecretBox {
    SecretBox::new("k", [1; 32])
}

/// A store, cw-sim and a partner with an active integration and all mappings.
pub struct SyncEnv {
    pub db: Option<ScratchDb>,
    pub store: Arc<dyn Store>,
    pub sim: cw_sim::SimHandle,
    pub keys: cw_sim::DemoKeys,
    pub ctx: SyncContext,
    pub integration: Integration,
    pub partner: String,
}

impl SyncEnv {
    pub async fn setup(database_url: Option<&str>, config: SyncConfig) -> Result<SyncEnv> {
        let db = scratch_db(database_url).await?;
        let store = casebridge_store::open(db.url(), true)
            .await
            .context("opening the scratch database")?;
        let sim = cw_sim::start(cw_sim::SimOptions {
            bind: "127.0.0.1:0".parse()?,
            seed: cw_sim::Seed::Demo,
            state_dir: None,
            time_scale: 0.01,
        })
        .await?;
        let keys = sim.demo_keys().cloned().context("demo keys")?;
        let ctx = SyncContext::new(
            store.clone(),
            Arc::new(ConnectWiseFactory::new(secrets(), Duration::from_secs(10))),
            config,
        );
        let partner = store
            .create_account("Bench MSSP", AccountKind::Partner, None)
            .await?
            .id;
        let integration = casebridge_testkit::sim_integration(
            &sim,
            &partner,
            secrets().seal(&keys.api_member.private_key),
            "CBMSSP",
        );
        store
            .save_integration(&integration, &audit(&partner))
            .await?;
        store
            .upsert_rules(&[Rule {
                id: RULE.into(),
                title: "Suspicious PowerShell".into(),
                level: Some(Criticality::High),
                source: "sigma".into(),
                logsource: json!({}),
                tags: vec![],
                suggested_rule_type: "Endpoint".into(),
            }])
            .await?;
        let boards = BoardMappings {
            rule_types: vec![RuleTypeBoard {
                rule_type: "Endpoint".into(),
                board_id: Some(1),
                board_name: None,
                type_id: None,
                subtype_id: None,
                item_id: None,
                status_id: None,
            }],
            assignments: vec![RuleAssignment {
                rule_id: RULE.into(),
                rule_type: "Endpoint".into(),
            }],
        };
        store
            .put_mapping(
                &partner,
                MappingResource::Board,
                Some(&serde_json::to_value(&boards)?),
                &audit(&partner),
            )
            .await?;
        let crit = CriticalityMappings {
            critical: Some(1),
            high: Some(2),
            medium: Some(3),
            low: Some(4),
            informational: Some(5),
        };
        store
            .put_mapping(
                &partner,
                MappingResource::Criticality,
                Some(&serde_json::to_value(&crit)?),
                &audit(&partner),
            )
            .await?;
        let psa = ctx.connectors.connector(&integration)?;
        let statuses = psa.board_statuses(1).await?;
        let mut m = propose_defaults(1, &statuses.iter().map(|s| s.facts()).collect::<Vec<_>>());
        m.confirmed = true;
        // as crates/sync/tests/inbound.rs: 102 is "in progress" (101 escalated, 105 closed)
        m.statuses.in_progress = Some(102);
        store
            .put_status_mappings(
                &partner,
                &StatusMappings { boards: vec![m] },
                &audit(&partner),
            )
            .await?;
        Ok(SyncEnv {
            db: Some(db),
            store,
            sim,
            keys,
            ctx,
            integration,
            partner,
        })
    }

    /// A new open case of the partner on the mapped rule.
    pub async fn new_case(&self, host: &str) -> Result<Case> {
        let c = NewCase {
            id: new_id("case"),
            account_id: self.partner.clone(),
            rule_id: RULE.into(),
            title: format!("Suspicious PowerShell on {host}"),
            description: "PowerShell started with an encoded command.".into(),
            criticality: Criticality::High,
            source_format: "generic".into(),
            source_key: new_id("k"),
            observables: json!([{ "kind": "host", "value": host }]),
            raw_alert: json!({ "host": host }),
        };
        match self.store.insert_alert_case(&c, "ingest").await? {
            AlertInsert::Created(c) => Ok(*c),
            AlertInsert::Repeat(c) => anyhow::bail!("unexpected repeat of {}", c.id),
        }
    }

    pub async fn teardown(mut self) {
        let db = self.db.take();
        self.sim.shutdown().await;
        if let Some(db) = db {
            db.drop_db().await;
        }
    }
}

/// p-th percentile (0..=100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

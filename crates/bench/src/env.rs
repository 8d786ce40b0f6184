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
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

pub const RULE: &str = "r-bench-endpoint";

/// A fresh database; dropped (PostgreSQL) or deleted (SQLite) by [`Db::cleanup`].
pub enum Db {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Db {
    /// A fresh database and its URL: SQLite in a temp file without `base`, else a new
    /// `cb_bench_<random>` database on `base`'s server.
    pub async fn create(base: Option<&str>) -> Result<(Db, String)> {
        match base {
            None => {
                let path = std::env::temp_dir()
                    .join(format!("casebridge-bench-{}.db", rand::random::<u64>()));
                let url = format!("sqlite://{}", path.display());
                Ok((Db::Sqlite(path), url))
            }
            Some(admin_url) => {
                let name = format!("cb_bench_{:016x}", rand::random::<u64>());
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .with_context(|| format!("connecting to {admin_url}"))?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                let _ = admin.close().await;
                let url = with_database(admin_url, &name);
                Ok((
                    Db::Postgres {
                        admin_url: admin_url.to_string(),
                        name,
                    },
                    url,
                ))
            }
        }
    }

    pub async fn cleanup(self) {
        match self {
            Db::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Db::Postgres { admin_url, name } => {
                let dropped = async {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                }
                .await;
                if let Err(e) = dropped {
                    eprintln!("note: could not drop {name}: {e}");
                }
            }
        }
    }
}

/// The URL with its database (path) replaced, keeping user, host, port and query.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{db}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
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
    pub db: Option<Db>,
    pub store: Arc<dyn Store>,
    pub sim: cw_sim::SimHandle,
    pub keys: cw_sim::DemoKeys,
    pub ctx: SyncContext,
    pub integration: Integration,
    pub partner: String,
}

impl SyncEnv {
    pub async fn setup(database_url: Option<&str>, config: SyncConfig) -> Result<SyncEnv> {
        let (db, url) = Db::create(database_url).await?;
        let store = casebridge_store::open(&url, true)
            .await
            .with_context(|| format!("opening {url}"))?;
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
        let now = now_millis();
        let integration = Integration {
            id: new_id("int"),
            account_id: partner.clone(),
            kind: "connectwise".into(),
            site_url: sim.url().to_string(),
            company_id: sim.login_company().to_string(),
            public_key: keys.api_member.public_key.clone(),
            private_key_enc: Some(secrets().seal(&keys.api_member.private_key)),
            client_id: keys.api_member.client_id.clone(),
            parent_company_identifier: Some("CBMSSP".into()),
            apply_to_all_subtenants: true,
            uniform_subtenant_mappings: false,
            allow_private_hosts: true,
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
            db.cleanup().await;
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

//! `casebridge demo`: the whole product in one process against an embedded cw-sim.
//!
//! Seeds idempotently (a re-run on the same data dir duplicates nothing): one partner with a
//! parent company identifier and four sub-tenants (three with company ID mappings, one of them
//! with its own criticality mappings; one filing under the parent company), an active
//! integration with callbacks, board mappings for every rule that occurs in a shipped alert (the
//! rest of the catalogue stays unassigned), auto-escalation at `high`, then ingests the shipped
//! alerts round-robin in file order. `demo.json` is written last, atomically, once both servers
//! answer.

use std::path::Path;

use anyhow::Context;
use casebridge_connector::Psa;
use casebridge_domain::status_mapping::propose_defaults;
use casebridge_domain::{
    AccountKind, BoardMappings, Criticality, CriticalityMappings, Role, RuleAssignment,
    RuleTypeBoard, StatusMappings,
};
use casebridge_ingest::service::{Attribution, import_catalogue, ingest_body};
use casebridge_ingest::{
    DEFAULT_RULE_TYPES, ParseOptions, parse_alerts, parse_catalogue, suggest_rule_type,
};
use casebridge_store::{
    Account, AuditEntry, Integration, MappingResource, NewUser, Store, now_millis,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Settings;
use crate::runtime;

const CATALOGUE: &str = include_str!("../../../data/sigma-rules.jsonl");
const SIGMA_ALERTS: &str = include_str!("../../../data/alerts/sigma-regression-alerts.jsonl");
const WAZUH_ALERTS: &str = include_str!("../../../data/alerts/wazuh/wazuh4-alerts.jsonl");
const OCSF_ALERTS: &[(&str, &str)] = &[
    (
        "falco-kmod",
        include_str!("../../../data/alerts/ocsf/falco-kmod.security_finding.ocsf.json"),
    ),
    (
        "guardduty-via-securityhub",
        include_str!(
            "../../../data/alerts/ocsf/guardduty-via-securityhub.detection_finding.ocsf.json"
        ),
    ),
    (
        "inspector-openssl",
        include_str!("../../../data/alerts/ocsf/inspector-openssl.vulnerability_finding.ocsf.json"),
    ),
    (
        "okta-threat",
        include_str!("../../../data/alerts/ocsf/okta-threat.detection_finding.ocsf.json"),
    ),
    (
        "prowler-acm",
        include_str!("../../../data/alerts/ocsf/prowler-acm.detection_finding.ocsf.json"),
    ),
    (
        "qradar-offense",
        include_str!("../../../data/alerts/ocsf/qradar-offense.security_finding.ocsf.json"),
    ),
    (
        "securityhub-ec2-19",
        include_str!("../../../data/alerts/ocsf/securityhub-ec2-19.security_finding.ocsf.json"),
    ),
    (
        "securityhub-pci",
        include_str!("../../../data/alerts/ocsf/securityhub-pci.compliance_finding.ocsf.json"),
    ),
    (
        "ssc-malware-sinkhole",
        include_str!("../../../data/alerts/ocsf/ssc-malware-sinkhole.security_finding.ocsf.json"),
    ),
];

const PARTNER: &str = "Northwind MSSP";
const PARENT_COMPANY: &str = "CBMSSP";
/// (sub-tenant, company ID mapping, own criticality mappings)
const SUBTENANTS: [(&str, Option<&str>, bool); 4] = [
    ("Acme Corporation", Some("ACMECORP"), false),
    ("Globex", Some("GLOBEX"), true),
    ("Initech", Some("INITECH"), false),
    ("Umbrella Health", None, false),
];
const LOGIN_EMAIL: &str = "admin@northwind.example";

/// Every shipped alert, one JSON document each, in file order.
fn shipped_alerts() -> Vec<String> {
    let mut out: Vec<String> = SIGMA_ALERTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    for (_, doc) in OCSF_ALERTS {
        match serde_json::from_str::<Value>(doc) {
            Ok(Value::Array(items)) => out.extend(items.iter().map(Value::to_string)),
            Ok(v) => out.push(v.to_string()),
            Err(e) => tracing::error!(error = %e, "a shipped OCSF file does not parse"),
        }
    }
    out.extend(
        WAZUH_ALERTS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string),
    );
    out
}

fn audit(account_id: &str, action: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.into(),
        actor: "demo seed".into(),
        at: now_millis(),
        action: action.into(),
        detail: json!({}),
    }
}

async fn account(
    store: &dyn Store,
    name: &str,
    kind: AccountKind,
    parent: Option<&str>,
) -> anyhow::Result<Account> {
    match store.account_by_name(name).await? {
        Some(a) => Ok(a),
        None => Ok(store.create_account(name, kind, parent).await?),
    }
}

pub async fn run(s: Settings, port: u16, sim_port: u16) -> anyhow::Result<()> {
    let dir = s.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let previous: Option<Value> = std::fs::read(dir.join("demo.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());

    // 1. the API listener first: a taken port fails before any state is written
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding port {port}"))?;

    // 2. the embedded ConnectWise simulator (its state lives in the data dir)
    let sim = cw_sim::start(cw_sim::SimOptions {
        bind: format!("127.0.0.1:{sim_port}").parse()?,
        seed: cw_sim::Seed::Demo,
        state_dir: Some(dir.join("cw-sim")),
        time_scale: 1.0,
    })
    .await
    .context("starting the embedded ConnectWise simulator")?;
    let keys: cw_sim::DemoKeys = match (sim.demo_keys(), &previous) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => serde_json::from_value(json!({
            "api_member": p["api_member"], "technician": p["technician"], "restricted": p["restricted"],
        }))
        .context("demo.json lacks the simulator's member keys; delete the data dir to start over")?,
        (None, None) => anyhow::bail!("the simulator state in {} has no demo.json beside it; delete the data dir to start over", dir.display()),
    };

    let url = format!("http://{}", listener.local_addr()?);
    let mut s = s;
    s.public_url = Some(url.clone());
    let rt = runtime::build(&s).await?;
    let store = rt.store.as_ref();

    // 3. accounts, login, token
    let partner = account(store, PARTNER, AccountKind::Partner, None).await?;
    let mut subs = Vec::new();
    for (name, _, _) in SUBTENANTS {
        subs.push(account(store, name, AccountKind::Subtenant, Some(&partner.id)).await?);
    }
    let password = previous
        .as_ref()
        .and_then(|p| p["login"]["password"].as_str().map(str::to_string))
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 9]>()));
    if !store.user_exists(LOGIN_EMAIL).await? {
        store
            .create_user(&NewUser {
                account_id: partner.id.clone(),
                email: LOGIN_EMAIL.into(),
                password_hash: hash_password(&password)?,
                role: Role::Admin,
            })
            .await?;
    }
    let token = match previous.as_ref().and_then(|p| p["token"].as_str()) {
        Some(t)
            if store
                .token_grant(&casebridge_web::auth::hash_token(t))
                .await?
                .is_some() =>
        {
            t.to_string()
        }
        _ => {
            let t = casebridge_web::auth::new_token();
            store
                .create_token(
                    &partner.id,
                    Role::Admin,
                    &casebridge_web::auth::hash_token(&t),
                    "demo",
                )
                .await?;
            t
        }
    };

    // 4. catalogue, integration, mappings, policy
    let catalogue = parse_catalogue(CATALOGUE).context("the shipped rule catalogue")?;
    import_catalogue(store, &catalogue).await?;
    let integration = seed_integration(&rt, &partner, sim.url(), &keys, &url).await?;
    let psa = rt
        .sync
        .connectors
        .connector(&integration)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    seed_mappings(store, psa.as_ref(), &partner, &subs, &integration).await?;

    // 5. workers and the API, then the shipped alerts
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = runtime::spawn_workers(&rt.sync, &stop_rx);
    let app = casebridge_web::router(runtime::web_state(&rt, &s));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(runtime::stop_signal())
            .await
    });
    let (created, repeats) = ingest_shipped(&rt, &subs).await?;
    tracing::info!(created, repeats, "shipped alerts ingested");

    // 6. demo.json, once both servers answer
    wait_for_ok(&format!("{url}/healthz")).await?;
    wait_for_ok(&format!(
        "{}/login/companyinfo/{}",
        sim.url(),
        sim.login_company()
    ))
    .await?;
    let mut accounts = vec![
        json!({"id": partner.id, "name": partner.name, "kind": "partner", "company_identifier": PARENT_COMPANY}),
    ];
    for (a, (_, company, _)) in subs.iter().zip(SUBTENANTS) {
        accounts.push(
            json!({"id": a.id, "name": a.name, "kind": "subtenant", "company_identifier": company}),
        );
    }
    let info = json!({
        "url": url, "sim_url": sim.url(),
        "login": { "email": LOGIN_EMAIL, "password": password },
        "token": token, "accounts": accounts,
        "technician": keys.technician, "api_member": keys.api_member, "restricted": keys.restricted,
    });
    write_atomically(&dir.join("demo.json"), &serde_json::to_vec_pretty(&info)?)?;
    println!("Casebridge demo is running.");
    println!("  API:          {url}/api/v1  (OpenAPI: {url}/api/openapi.json)");
    println!(
        "  ConnectWise:  {}/ui  (the simulator's ticket view; act as the technician there)",
        sim.url()
    );
    println!("  Login:        {LOGIN_EMAIL} / {password}");
    println!("  API token:    {token}");
    println!("  Cases:        {created} new from the shipped alerts ({repeats} already known)");
    println!("  Details:      {}", dir.join("demo.json").display());
    println!("Stop with Ctrl-C.");

    let _ = server.await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    sim.shutdown().await;
    Ok(())
}

fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    let salt: [u8; 16] = rand::random();
    let hash = argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
    Ok(hash.to_string())
}

async fn seed_integration(
    rt: &runtime::Runtime,
    partner: &Account,
    sim_url: &str,
    keys: &cw_sim::DemoKeys,
    url: &str,
) -> anyhow::Result<Integration> {
    let store = rt.store.as_ref();
    let now = now_millis();
    let existing = store.integration_of(&partner.id).await?;
    let mut i = Integration {
        id: existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| casebridge_domain::ids::new_id("intg")),
        account_id: partner.id.clone(),
        kind: "connectwise".into(),
        site_url: sim_url.to_string(),
        company_id: keys.api_member.company.clone(),
        public_key: keys.api_member.public_key.clone(),
        private_key_enc: Some(rt.secrets.seal(&keys.api_member.private_key)),
        client_id: keys.api_member.client_id.clone(),
        parent_company_identifier: Some(PARENT_COMPANY.into()),
        apply_to_all_subtenants: true,
        uniform_subtenant_mappings: false,
        allow_private_hosts: true,
        process_notifications: false,
        active: false,
        last_test: None,
        tested_ok: false,
        callback_id: None,
        sync_mode: "polling".into(),
        last_callback_at: existing.as_ref().and_then(|e| e.last_callback_at),
        watermark: existing.as_ref().and_then(|e| e.watermark.clone()),
        created_at: existing.as_ref().map(|e| e.created_at).unwrap_or(now),
        updated_at: now,
    };
    let psa = rt
        .sync
        .connectors
        .connector(&i)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = psa.test_connection().await;
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|c| json!({"name": c.name, "ok": c.ok, "message": c.message}))
        .collect();
    anyhow::ensure!(
        report.passed(),
        "the demo integration failed its Test: {checks:?}"
    );
    i.last_test = Some(json!({"passed": true, "checks": checks}));
    i.tested_ok = true;
    i.active = true;
    let hook = format!("{url}/hooks/connectwise/{}?recordId=", i.id);
    let reg = psa
        .ensure_callback(&hook)
        .await
        .map_err(|e| anyhow::anyhow!("registering the demo callback: {e}"))?;
    i.callback_id = Some(reg.id);
    i.sync_mode = "callbacks".into();
    store
        .save_integration(&i, &audit(&partner.id, "demo_support_system"))
        .await?;
    Ok(i)
}

async fn seed_mappings(
    store: &dyn Store,
    psa: &dyn Psa,
    partner: &Account,
    subs: &[Account],
    integration: &Integration,
) -> anyhow::Result<()> {
    let boards = psa.boards().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let active: Vec<_> = boards.iter().filter(|b| !b.inactive).collect();
    anyhow::ensure!(
        active.len() >= 2,
        "the simulator seed needs two active boards"
    );
    let (endpoint, cloud) = (active[0], active[1]);
    // every rule that occurs in a shipped alert, with its suggested rule type
    let mut assignments: Vec<RuleAssignment> = Vec::new();
    for doc in shipped_alerts() {
        for outcome in parse_alerts(doc.as_bytes(), None, false).unwrap_or_default() {
            if let Some(a) = outcome.alert()
                && !assignments.iter().any(|x| x.rule_id == a.rule.id)
            {
                let rule_type = match store.rule(&a.rule.id).await? {
                    Some(r) if r.source == "sigma" => r.suggested_rule_type,
                    _ => {
                        let ls = a.rule.logsource.clone().unwrap_or_default();
                        match a.format.as_str() {
                            "ocsf" => "Cloud".to_string(),
                            _ => suggest_rule_type(&ls, &a.rule.tags).to_string(),
                        }
                    }
                };
                let rule_type = if rule_type == "Other" {
                    "Endpoint".to_string()
                } else {
                    rule_type
                };
                assignments.push(RuleAssignment {
                    rule_id: a.rule.id.clone(),
                    rule_type,
                });
            }
        }
    }
    let rule_types = DEFAULT_RULE_TYPES
        .iter()
        .map(|t| {
            let board = if matches!(*t, "Cloud" | "Identity" | "Email") {
                cloud
            } else {
                endpoint
            };
            RuleTypeBoard {
                rule_type: t.to_string(),
                board_id: Some(board.id),
                board_name: Some(board.name.clone()),
                type_id: None,
                subtype_id: None,
                item_id: None,
                status_id: None,
            }
        })
        .collect();
    let board = BoardMappings {
        rule_types,
        assignments,
    };
    store
        .put_mapping(
            &partner.id,
            MappingResource::Board,
            Some(&serde_json::to_value(&board)?),
            &audit(&partner.id, "demo_board_mappings"),
        )
        .await?;

    let priorities = psa.priorities().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let p = |i: usize| priorities.get(i).map(|p| p.id);
    let partner_crit = CriticalityMappings {
        critical: p(0),
        high: p(1),
        medium: p(2),
        low: p(3),
        informational: p(4),
    };
    store
        .put_mapping(
            &partner.id,
            MappingResource::Criticality,
            Some(&serde_json::to_value(&partner_crit)?),
            &audit(&partner.id, "demo_criticality"),
        )
        .await?;
    let mut companies = Vec::new();
    for (a, (_, company, own_crit)) in subs.iter().zip(SUBTENANTS) {
        if let Some(c) = company {
            companies.push((a.id.clone(), c.to_string()));
        }
        if own_crit {
            // a stricter client: high is treated as critical, medium as high
            let own = CriticalityMappings {
                critical: p(0),
                high: p(0),
                medium: p(1),
                low: p(2),
                informational: p(3),
            };
            store
                .put_mapping(
                    &a.id,
                    MappingResource::Criticality,
                    Some(&serde_json::to_value(&own)?),
                    &audit(&a.id, "demo_criticality"),
                )
                .await?;
        }
        store
            .put_escalation_policy(&a.id, Some(Criticality::High), &audit(&a.id, "demo_policy"))
            .await?;
    }
    store
        .put_escalation_policy(
            &partner.id,
            Some(Criticality::High),
            &audit(&partner.id, "demo_policy"),
        )
        .await?;
    store
        .put_company_mappings(
            &partner.id,
            &companies,
            &audit(&partner.id, "demo_company_mappings"),
        )
        .await?;
    let mut sm = StatusMappings::default();
    for b in [endpoint, cloud] {
        let statuses = psa
            .board_statuses(b.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let facts: Vec<_> = statuses.iter().map(|s| s.facts()).collect();
        let mut m = propose_defaults(b.id, &facts);
        m.confirmed = true;
        sm.boards.push(m);
    }
    store
        .put_status_mappings(
            &integration.account_id,
            &sm,
            &audit(&partner.id, "demo_status_mappings"),
        )
        .await?;
    Ok(())
}

async fn ingest_shipped(rt: &runtime::Runtime, subs: &[Account]) -> anyhow::Result<(usize, usize)> {
    let allowed: Vec<String> = subs.iter().map(|a| a.id.clone()).collect();
    let (mut created, mut repeats) = (0, 0);
    for (n, doc) in shipped_alerts().iter().enumerate() {
        let target = &subs[n % subs.len()].id;
        let who = Attribution {
            default_account: Some(target),
            own_account: target,
            own_is_partner: false,
            allowed: &allowed,
            actor: "demo ingest",
        };
        let report = ingest_body(
            rt.store.as_ref(),
            doc.as_bytes(),
            None,
            false,
            ParseOptions::default(),
            &who,
        )
        .await?;
        created += report.created;
        repeats += report.repeats;
        for case in &report.new_cases {
            if let Err(e) = casebridge_sync::escalation::auto_escalate(&rt.sync, case).await {
                tracing::warn!(case = %case.id, error = %e, "auto-escalation failed");
            }
        }
    }
    Ok((created, repeats))
}

async fn wait_for_ok(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    for _ in 0..100 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} did not answer")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    crate::config::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

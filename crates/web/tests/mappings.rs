//! Support System and mapping settings driven through HTTP (DESIGN §3), in process: the web
//! router on a local port, an in-process cw-sim with the demo seed, and the store on SQLite —
//! and, when `CASEBRIDGE_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database as well.
//!
//! Every scenario runs once per backend (`backend_tests!`). Without the variable the PostgreSQL
//! variant only says that it did not run; with it set, an unreachable server fails the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use casebridge_domain::{AccountKind, Criticality, Role};
use casebridge_store::{Account, MappingResource, Rule, Store};
use casebridge_sync::{ConnectWiseFactory, SecretBox, SyncConfig, SyncContext};
use casebridge_web::{AppState, WebConfig};
use serde_json::{Value, json};

use casebridge_testkit::{Backend, PG_ENV, ScratchDb};

fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

// ---------------------------------------------------------------------------------------------
// harness

/// An HTTP client for one bearer token that keeps every response body it saw.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        self.seen.lock().unwrap().push(text.clone());
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{method} {path}: {text}"))?
        };
        Ok((status, value))
    }
    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn put(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn post(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, None).await
    }
    async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The problem+json `errors[].field` names of a response.
fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn message_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body["errors"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["field"] == field))
        .and_then(|e| e["message"].as_str())
        .unwrap_or("")
}

/// One running environment: cw-sim, store, web server, a partner with four sub-tenants that use
/// its integration and one (`Selfco`) with its own.
struct Env {
    db: ScratchDb,
    store: Arc<dyn Store>,
    sim: cw_sim::SimHandle,
    keys: cw_sim::MemberKeys,
    /// Admin token of the partner (sees its sub-tenants).
    partner_api: Api,
    /// Admin token of sub-tenant Acme.
    acme_api: Api,
    partner: Account,
    acme: Account,
    globex: Account,
    initech: Account,
    smith: Account,
    selfco: Account,
    server: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn start(db: ScratchDb) -> Result<Env> {
        let sim = cw_sim::start(cw_sim::SimOptions {
            bind: "127.0.0.1:0".parse()?,
            seed: cw_sim::Seed::Demo,
            state_dir: None,
            time_scale: 0.01,
        })
        .await?;
        let keys = sim
            .demo_keys()
            .context("demo seed gives keys")?
            .api_member
            .clone();
        let store = casebridge_store::open(db.url(), true).await?;
        let secrets = SecretBox::new("k", [1; 32]);
        let factory = Arc::new(ConnectWiseFactory::new(
            secrets.clone(),
            Duration::from_secs(5),
        ));
        let state = Arc::new(AppState {
            store: store.clone(),
            sync: SyncContext::new(store.clone(), factory, SyncConfig::default()),
            secrets,
            config: WebConfig {
                public_url: None,
                ..Default::default()
            },
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = casebridge_web::router(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("web server");
        });

        let partner = store
            .create_account("MSSP", AccountKind::Partner, None)
            .await?;
        let sub = |name: &'static str| {
            let store = store.clone();
            let parent = partner.id.clone();
            async move {
                store
                    .create_account(name, AccountKind::Subtenant, Some(&parent))
                    .await
            }
        };
        let (acme, globex, initech, smith, selfco) = (
            sub("Acme").await?,
            sub("Globex").await?,
            sub("Initech").await?,
            sub("Smith").await?,
            sub("Selfco").await?,
        );
        let http = reqwest::Client::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut apis = Vec::new();
        for a in [&partner, &acme] {
            let token = format!("tok-{}-{}", a.name, unique());
            store
                .create_token(
                    &a.id,
                    Role::Admin,
                    &casebridge_web::auth::hash_token(&token),
                    "t",
                )
                .await?;
            apis.push(Api {
                base: base.clone(),
                http: http.clone(),
                token,
                seen: seen.clone(),
            });
        }
        let acme_api = apis.pop().unwrap();
        let partner_api = apis.pop().unwrap();
        store
            .upsert_rules(&[
                rule("r-endpoint"),
                rule("r-cloud"),
                rule("r-identity"),
                rule("r-spare"),
            ])
            .await?;
        Ok(Env {
            db,
            store,
            sim,
            keys,
            partner_api,
            acme_api,
            partner,
            acme,
            globex,
            initech,
            smith,
            selfco,
            server,
        })
    }

    fn support_body(&self, private_key: Option<&str>, apply_to_all: bool, uniform: bool) -> Value {
        let mut b = json!({
            "type": "connectwise",
            "site_url": self.sim.url(),
            "company_id": self.sim.login_company(),
            "public_key": self.keys.public_key,
            "client_id": self.keys.client_id,
            "parent_company_identifier": "CBMSSP",
            "apply_to_all_subtenants": apply_to_all,
            "uniform_subtenant_mappings": uniform,
            "allow_private_hosts": true,
        });
        if let Some(k) = private_key {
            b["private_key"] = json!(k);
        }
        b
    }

    /// Saves, tests and activates the partner's integration (Apply to All Subtenants on).
    async fn activate_partner(&self) -> Result<()> {
        let p = format!("/api/v1/accounts/{}/support-system", self.partner.id);
        let (s, b) = self
            .partner_api
            .put(
                &p,
                self.support_body(Some(&self.keys.private_key), true, false),
            )
            .await?;
        ensure!(s == 200, "save: {s} {b}");
        let (s, b) = self.partner_api.post(&format!("{p}/test")).await?;
        ensure!(s == 200 && b["passed"] == true, "test: {s} {b}");
        let (s, b) = self.partner_api.post(&format!("{p}/activate")).await?;
        ensure!(s == 200 && b["active"] == true, "activate: {s} {b}");
        Ok(())
    }

    /// Selfco's own integration (same ConnectWise site, its own parent company).
    async fn selfco_integration(&self) -> Result<()> {
        let mut body = self.support_body(Some(&self.keys.private_key), false, false);
        body["parent_company_identifier"] = json!("GLOBEX");
        let (s, b) = self
            .partner_api
            .put(
                &format!("/api/v1/accounts/{}/support-system", self.selfco.id),
                body,
            )
            .await?;
        ensure!(s == 200, "selfco save: {s} {b}");
        Ok(())
    }

    fn url(&self, account: &Account, resource: &str) -> String {
        format!("/api/v1/accounts/{}/{resource}", account.id)
    }

    /// Every response body seen so far, by every token.
    fn responses(&self) -> Vec<String> {
        self.partner_api.seen.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.server.abort();
        self.sim.shutdown().await;
        self.db.drop_db().await;
    }
}

fn audit(a: &Account) -> casebridge_store::AuditEntry {
    casebridge_store::AuditEntry {
        account_id: a.id.clone(),
        actor: "test".into(),
        at: casebridge_store::now_millis(),
        action: "test".into(),
        detail: json!({}),
    }
}

fn rule(id: &str) -> Rule {
    Rule {
        id: id.into(),
        title: format!("rule {id}"),
        level: Some(Criticality::High),
        source: "sigma".into(),
        logsource: json!({}),
        tags: Vec::new(),
        suggested_rule_type: "Other".into(),
    }
}

fn boards(entries: &[(&str, Option<i64>)], assignments: &[(&str, &str)]) -> Value {
    json!({
        "rule_types": entries.iter().map(|(t, b)| json!({"rule_type": t, "board_id": b})).collect::<Vec<_>>(),
        "assignments": assignments.iter().map(|(r, t)| json!({"rule_id": r, "rule_type": t})).collect::<Vec<_>>(),
    })
}

/// Runs a scenario on SQLite and, when `CASEBRIDGE_TEST_DATABASE_URL` is set, on PostgreSQL.
macro_rules! backend_tests {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                let db = super::ScratchDb::for_test(super::Backend::Sqlite, "cb_web").await;
                let env = super::Env::start(db.expect("SQLite always runs")).await?;
                let result = super::$scenario(&env).await;
                env.stop().await;
                result
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                let Some(db) = super::ScratchDb::for_test(super::Backend::Postgres, "cb_web").await else {
                    eprintln!("{} is not set: the PostgreSQL variant did not run", super::PG_ENV);
                    return Ok(());
                };
                let env = super::Env::start(db).await?;
                let result = super::$scenario(&env).await;
                env.stop().await;
                result
            }
        }
    )*};
}

backend_tests!(
    support_system_keeps_the_private_key_secret_and_activates_only_after_a_passed_test,
    board_mappings_are_validated_and_subtenants_inherit_or_override_them,
    status_mappings_are_proposed_when_a_board_is_first_mapped_and_confirmed_on_save,
    criticality_company_and_escalation_settings_are_validated,
    uniform_mode_deletes_subtenant_copies_once_and_locks_them,
);

// ---------------------------------------------------------------------------------------------
// scenarios

async fn support_system_keeps_the_private_key_secret_and_activates_only_after_a_passed_test(
    env: &Env,
) -> Result<()> {
    let api = &env.partner_api;
    let path = env.url(&env.partner, "support-system");
    let wrong_key = "0123456789abcdef-wrong";

    // bad keys: saved, but the Test's auth check is red and activation is refused
    let (s, b) = api
        .put(&path, env.support_body(Some(wrong_key), true, false))
        .await?;
    ensure!(s == 200, "save: {s} {b}");
    ensure!(
        b["private_key_set"] == true && b.get("private_key").is_none(),
        "{b}"
    );
    ensure!(b["active"] == false, "{b}");
    let (s, b) = api.post(&format!("{path}/test")).await?;
    ensure!(s == 200 && b["passed"] == false, "{s} {b}");
    let check = |b: &Value, name: &str| {
        b["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name).cloned())
    };
    ensure!(
        check(&b, "reachable").is_some_and(|c| c["ok"] == true),
        "{b}"
    );
    let auth = check(&b, "auth").context("auth check reported")?;
    ensure!(
        auth["ok"] == false && !auth["message"].as_str().unwrap_or("").is_empty(),
        "{auth}"
    );
    let (s, b) = api.post(&format!("{path}/activate")).await?;
    ensure!(s == 409, "activate after a failed test: {s} {b}");

    // the right keys: every check passes, then it activates (polling: no public URL)
    let (s, b) = api
        .put(
            &path,
            env.support_body(Some(&env.keys.private_key), true, false),
        )
        .await?;
    ensure!(s == 200, "{s} {b}");
    let (s, b) = api.post(&format!("{path}/test")).await?;
    ensure!(s == 200 && b["passed"] == true, "{s} {b}");
    let checks = b["checks"].as_array().context("checks")?;
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    ensure!(
        names == casebridge_connector_checks(),
        "checks reported: {names:?}"
    );
    for c in checks {
        ensure!(c["ok"] == true, "check failed: {c}");
    }
    let (s, b) = api.post(&format!("{path}/activate")).await?;
    ensure!(
        s == 200 && b["active"] == true && b["sync_mode"] == "polling",
        "{s} {b}"
    );

    let (s, b) = api.get(&path).await?;
    ensure!(
        s == 200 && b["source"] == "own" && b["active"] == true,
        "{s} {b}"
    );
    ensure!(
        b.get("private_key").is_none() && b["private_key_set"] == true,
        "GET shows no private key: {b}"
    );
    // a sub-tenant sees the partner's integration, read-only, and nothing about the partner's
    // other clients
    env.store
        .put_mapping(
            &env.globex.id,
            MappingResource::Board,
            Some(&json!({})),
            &audit(&env.globex),
        )
        .await?;
    let (s, b) = env
        .acme_api
        .get(&env.url(&env.acme, "support-system"))
        .await?;
    ensure!(
        s == 200 && b["source"] == "partner" && b.get("private_key").is_none(),
        "{s} {b}"
    );
    ensure!(
        !b.to_string().contains("Globex"),
        "a sub-tenant learns of its siblings: {b}"
    );
    let (_, b) = api.get(&path).await?;
    ensure!(
        b["subtenants_with_own_mappings"]["names"] == json!(["Globex"]),
        "{b}"
    );

    // saving again without a private key keeps the stored one and stays active
    let (s, b) = api.put(&path, env.support_body(None, true, false)).await?;
    ensure!(
        s == 200 && b["active"] == true && b["private_key_set"] == true,
        "{s} {b}"
    );

    // the secret appears nowhere: responses, the audit log, the stored row, the raw database
    for key in [env.keys.private_key.as_str(), wrong_key] {
        for r in env.responses() {
            ensure!(!r.contains(key), "a response carries the private key: {r}");
        }
        let audit = serde_json::to_string(&env.store.audit_log(&env.partner.id).await?)?;
        ensure!(
            !audit.contains(key),
            "the audit log carries the private key"
        );
        let stored = env
            .store
            .integration_of(&env.partner.id)
            .await?
            .context("stored")?;
        let sealed = stored.private_key_enc.context("sealed key")?;
        ensure!(
            !sealed.contains(key) && sealed.starts_with("v1:"),
            "stored key is not sealed: {sealed}"
        );
        if let Some(file) = env.db.sqlite_file() {
            let mut bytes = std::fs::read(file)?;
            if let Ok(wal) = std::fs::read(format!("{}-wal", file.display())) {
                bytes.extend(wal);
            }
            ensure!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "the SQLite file holds the private key in clear"
            );
        }
    }
    Ok(())
}

/// The check names the connector reports, in order (DESIGN §3.1).
fn casebridge_connector_checks() -> Vec<&'static str> {
    vec![
        "reachable",
        "codebase",
        "auth",
        "read_boards",
        "read_priorities",
        "read_companies",
        "callbacks",
    ]
}

async fn board_mappings_are_validated_and_subtenants_inherit_or_override_them(
    env: &Env,
) -> Result<()> {
    env.activate_partner().await?;
    let api = &env.partner_api;
    let partner_path = env.url(&env.partner, "board-mappings");

    // unknown and inactive boards are refused, naming the field
    let (s, b) = api
        .put(
            &partner_path,
            boards(&[("Endpoint", Some(1)), ("Cloud", Some(99))], &[]),
        )
        .await?;
    ensure!(
        s == 422 && fields(&b) == ["rule_types[1].board_id"],
        "{s} {b}"
    );
    let (s, b) = api
        .put(&partner_path, boards(&[("Endpoint", Some(3))], &[]))
        .await?;
    ensure!(
        s == 422 && fields(&b) == ["rule_types[0].board_id"],
        "{s} {b}"
    );
    ensure!(
        message_of(&b, "rule_types[0].board_id").contains("inactive"),
        "{b}"
    );
    // structurally broken resources as well
    let (s, b) = api
        .put(
            &partner_path,
            boards(&[("Endpoint", Some(1))], &[("r-cloud", "Cloud")]),
        )
        .await?;
    ensure!(
        s == 422 && fields(&b) == ["assignments[0].rule_type"],
        "{s} {b}"
    );
    ensure!(
        env.store
            .mapping(&env.partner.id, MappingResource::Board)
            .await?
            .is_none(),
        "nothing saved by refused PUTs"
    );

    // the partner's mappings: 4 rules, 2 ticketed (r-identity's type has no board, r-spare none)
    let partner_boards = boards(
        &[
            ("Endpoint", Some(1)),
            ("Cloud", Some(2)),
            ("Identity", None),
        ],
        &[
            ("r-endpoint", "Endpoint"),
            ("r-cloud", "Cloud"),
            ("r-identity", "Identity"),
        ],
    );
    let (s, b) = api.put(&partner_path, partner_boards).await?;
    ensure!(
        s == 200 && b["source"] == "own" && b["rules_unassigned"] == 2,
        "{s} {b}"
    );
    ensure!(
        b["rule_types"][0]["board_name"] == "SOC - Endpoint",
        "board names come from ConnectWise: {b}"
    );

    // a sub-tenant without its own copy sees the partner's
    let acme_path = env.url(&env.acme, "board-mappings");
    let (s, b) = env.acme_api.get(&acme_path).await?;
    ensure!(
        s == 200 && b["source"] == "partner" && b["rules_unassigned"] == 2,
        "{s} {b}"
    );
    ensure!(b["rule_types"].as_array().map(Vec::len) == Some(3), "{b}");

    // its own copy (saved by its own admin) wins, whole
    let (s, b) = env
        .acme_api
        .put(
            &acme_path,
            boards(&[("Endpoint", Some(2))], &[("r-endpoint", "Endpoint")]),
        )
        .await?;
    ensure!(
        s == 200 && b["source"] == "own" && b["rules_unassigned"] == 3,
        "{s} {b}"
    );
    ensure!(
        b["rule_types"].as_array().map(Vec::len) == Some(1) && b["rule_types"][0]["board_id"] == 2,
        "{b}"
    );
    let (s, b) = api.get(&acme_path).await?;
    ensure!(
        s == 200 && b["source"] == "own",
        "the partner sees the sub-tenant's own copy: {s} {b}"
    );
    // its own PUT is validated against the partner's ConnectWise too
    let (s, b) = env
        .acme_api
        .put(&acme_path, boards(&[("Endpoint", Some(42))], &[]))
        .await?;
    ensure!(
        s == 422 && fields(&b) == ["rule_types[0].board_id"],
        "{s} {b}"
    );

    // DELETE removes the own copy: back to the partner's
    let (s, _) = env.acme_api.delete(&acme_path).await?;
    ensure!(s == 204, "delete: {s}");
    let (s, b) = env.acme_api.get(&acme_path).await?;
    ensure!(
        s == 200 && b["source"] == "partner" && b["rule_types"][0]["board_id"] == 1,
        "{s} {b}"
    );
    ensure!(
        env.store
            .mapping(&env.acme.id, MappingResource::Board)
            .await?
            .is_none()
    );

    // another sub-tenant never saw any of it
    let (s, b) = api.get(&env.url(&env.globex, "board-mappings")).await?;
    ensure!(s == 200 && b["source"] == "partner", "{s} {b}");

    // the partner's own account without mappings reports none
    let (s, _) = api.delete(&partner_path).await?;
    ensure!(s == 204);
    let (s, b) = api.get(&acme_path).await?;
    ensure!(
        s == 200 && b["source"].is_null() && b["rules_unassigned"] == 4,
        "{s} {b}"
    );
    Ok(())
}

async fn status_mappings_are_proposed_when_a_board_is_first_mapped_and_confirmed_on_save(
    env: &Env,
) -> Result<()> {
    env.activate_partner().await?;
    let api = &env.partner_api;
    let sm_path = env.url(&env.partner, "status-mappings");
    let (s, b) = api.get(&sm_path).await?;
    ensure!(
        s == 200 && b["boards"].as_array().is_some_and(Vec::is_empty),
        "{s} {b}"
    );

    // mapping board 1 proposes its defaults (unconfirmed), on the integration's account — also
    // when the mapping is a sub-tenant's own
    let (s, b) = env
        .acme_api
        .put(
            &env.url(&env.acme, "board-mappings"),
            boards(&[("Endpoint", Some(1))], &[]),
        )
        .await?;
    ensure!(s == 200, "{s} {b}");
    let (s, b) = api.get(&sm_path).await?;
    ensure!(s == 200, "{s} {b}");
    let proposed = b["boards"].as_array().context("boards")?;
    ensure!(proposed.len() == 1, "{b}");
    let p = &proposed[0];
    ensure!(p["board_id"] == 1 && p["confirmed"] == false, "{p}");
    let st = &p["statuses"];
    // seed: 101 "New" (defaultFlag), 105 "Resolved" (first closed by sortOrder)
    ensure!(
        st["open"] == 101 && st["escalated"] == 101 && st["closed"] == 105,
        "{st}"
    );
    ensure!(
        st["in_progress"].is_null() && st["waiting_on_customer"].is_null(),
        "{st}"
    );
    let (_, b) = env
        .acme_api
        .get(&env.url(&env.acme, "status-mappings"))
        .await?;
    ensure!(
        b["boards"].as_array().is_some_and(Vec::is_empty),
        "status mappings belong to the integration's account: {b}"
    );

    // mapping board 1 again and board 2 first: only board 2 is added
    let (s, b) = api
        .put(
            &env.url(&env.partner, "board-mappings"),
            boards(&[("Endpoint", Some(1)), ("Cloud", Some(2))], &[]),
        )
        .await?;
    ensure!(s == 200, "{s} {b}");
    let (_, b) = api.get(&sm_path).await?;
    let ids: Vec<i64> = b["boards"]
        .as_array()
        .context("boards")?
        .iter()
        .filter_map(|m| m["board_id"].as_i64())
        .collect();
    ensure!(ids == [1, 2], "{b}");
    ensure!(b["boards"][1]["statuses"]["escalated"] == 201, "{b}");

    // PUT confirms; a status of another board is refused, naming the field
    let mut body = b.clone();
    body["boards"][0]["statuses"]["in_progress"] = json!(202);
    let (s, e) = api.put(&sm_path, body.clone()).await?;
    ensure!(
        s == 422 && fields(&e) == ["boards[0].statuses.in_progress"],
        "{s} {e}"
    );
    ensure!(
        message_of(&e, "boards[0].statuses.in_progress").contains("does not belong to board 1"),
        "{e}"
    );
    // a board ConnectWise does not have is a field error too, not a ConnectWise failure
    let mut unknown = b.clone();
    unknown["boards"][1]["board_id"] = json!(99);
    let (s, e) = api.put(&sm_path, unknown).await?;
    ensure!(s == 422 && fields(&e) == ["boards[1].board_id"], "{s} {e}");
    let mut twice = b.clone();
    twice["boards"][1]["board_id"] = json!(1);
    let (s, e) = api.put(&sm_path, twice).await?;
    ensure!(s == 422 && fields(&e) == ["boards[1].board_id"], "{s} {e}");
    body["boards"][0]["statuses"]["in_progress"] = json!(102);
    let (s, saved) = api.put(&sm_path, body).await?;
    ensure!(s == 200, "{s} {saved}");
    let (_, b) = api.get(&sm_path).await?;
    for m in b["boards"].as_array().context("boards")? {
        ensure!(m["confirmed"] == true, "{m}");
    }
    ensure!(b["boards"][0]["statuses"]["in_progress"] == 102, "{b}");

    // a confirmed mapping is not replaced by a later proposal
    let (s, _) = api
        .put(
            &env.url(&env.partner, "board-mappings"),
            boards(&[("Endpoint", Some(1)), ("Cloud", Some(2))], &[]),
        )
        .await?;
    ensure!(s == 200);
    let (_, after) = api.get(&sm_path).await?;
    ensure!(after == b, "confirmed status mappings changed: {after}");
    Ok(())
}

async fn criticality_company_and_escalation_settings_are_validated(env: &Env) -> Result<()> {
    env.activate_partner().await?;
    let api = &env.partner_api;

    // criticality mappings: an unknown priority names the criticality
    let crit_path = env.url(&env.partner, "criticality-mappings");
    let (s, b) = api
        .put(&crit_path, json!({"critical": 1, "high": 2, "medium": 77}))
        .await?;
    ensure!(s == 422 && fields(&b) == ["medium"], "{s} {b}");
    ensure!(message_of(&b, "medium").contains("77"), "{b}");
    let (s, b) = api
        .put(
            &crit_path,
            json!({"critical": 1, "high": 2, "medium": 3, "low": 4}),
        )
        .await?;
    ensure!(
        s == 200 && b["source"] == "own" && b["informational"].is_null(),
        "{s} {b}"
    );
    let (s, b) = env
        .acme_api
        .get(&env.url(&env.acme, "criticality-mappings"))
        .await?;
    ensure!(
        s == 200 && b["source"] == "partner" && b["critical"] == 1,
        "{s} {b}"
    );
    let (s, b) = env
        .acme_api
        .put(
            &env.url(&env.acme, "criticality-mappings"),
            json!({"critical": 2}),
        )
        .await?;
    ensure!(
        s == 200 && b["source"] == "own" && b["high"].is_null(),
        "own copy is whole: {s} {b}"
    );
    let (s, _) = env
        .acme_api
        .delete(&env.url(&env.acme, "criticality-mappings"))
        .await?;
    ensure!(s == 204);
    let (_, b) = env
        .acme_api
        .get(&env.url(&env.acme, "criticality-mappings"))
        .await?;
    ensure!(b["source"] == "partner", "{b}");

    // company mappings: checked against ConnectWise
    let co_path = env.url(&env.partner, "company-mappings");
    let (s, b) = api
        .put(
            &co_path,
            json!({"items": [{"account_id": env.smith.id, "company_identifier": "SMITH & SONS"}]}),
        )
        .await?;
    ensure!(s == 200, "{s} {b}");
    ensure!(
        b["items"] == json!([{"account_id": env.smith.id, "company_identifier": "SMITH & SONS"}]),
        "{b}"
    );
    let (s, b) = api
        .put(
            &co_path,
            json!({"items": [
                {"account_id": env.acme.id, "company_identifier": "ACMECORP"},
                {"account_id": env.globex.id, "company_identifier": "OLDCO"},
                {"account_id": env.initech.id, "company_identifier": "NO-SUCH-CO"},
            ]}),
        )
        .await?;
    ensure!(
        s == 422 && fields(&b) == ["items[1].company_identifier", "items[2].company_identifier"],
        "{s} {b}"
    );
    ensure!(
        message_of(&b, "items[1].company_identifier").contains("deleted"),
        "{b}"
    );
    let (_, b) = api.get(&co_path).await?;
    ensure!(
        b["items"].as_array().map(Vec::len) == Some(1),
        "a refused PUT changes nothing: {b}"
    );
    // one company per sub-tenant: listing one twice names the second entry
    let (s, b) = api
        .put(
            &co_path,
            json!({"items": [
                {"account_id": env.acme.id, "company_identifier": "ACMECORP"},
                {"account_id": env.acme.id, "company_identifier": "GLOBEX"},
            ]}),
        )
        .await?;
    ensure!(s == 422 && fields(&b) == ["items[1].account_id"], "{s} {b}");
    // an account that is not one of the partner's sub-tenants
    let stranger = env
        .store
        .create_account("Stranger", AccountKind::Standalone, None)
        .await?;
    let (s, b) = api
        .put(
            &co_path,
            json!({"items": [{"account_id": stranger.id, "company_identifier": "GLOBEX"}]}),
        )
        .await?;
    ensure!(s == 422 && fields(&b) == ["items[0].account_id"], "{s} {b}");

    // escalation policy
    let pol_path = env.url(&env.acme, "escalation-policy");
    let (s, b) = env.acme_api.get(&pol_path).await?;
    ensure!(s == 200 && b["auto_escalate_at"].is_null(), "{s} {b}");
    let (s, b) = env
        .acme_api
        .put(&pol_path, json!({"auto_escalate_at": "high"}))
        .await?;
    ensure!(s == 200 && b["auto_escalate_at"] == "high", "{s} {b}");
    let (s, b) = env
        .acme_api
        .put(&pol_path, json!({"auto_escalate_at": "severe"}))
        .await?;
    ensure!(s == 422 && fields(&b) == ["auto_escalate_at"], "{s} {b}");
    let (s, b) = env
        .acme_api
        .put(&pol_path, json!({"auto_escalate_at": "high", "extra": 1}))
        .await?;
    ensure!(s == 422 && fields(&b) == ["extra"], "{s} {b}");
    let (_, b) = env.acme_api.get(&pol_path).await?;
    ensure!(b["auto_escalate_at"] == "high", "{b}");
    let (s, b) = env
        .acme_api
        .put(&pol_path, json!({"auto_escalate_at": null}))
        .await?;
    ensure!(s == 200 && b["auto_escalate_at"].is_null(), "{s} {b}");
    Ok(())
}

async fn uniform_mode_deletes_subtenant_copies_once_and_locks_them(env: &Env) -> Result<()> {
    env.activate_partner().await?;
    env.selfco_integration().await?;
    let api = &env.partner_api;
    let endpoint = boards(&[("Endpoint", Some(1))], &[("r-endpoint", "Endpoint")]);
    let cloud = boards(&[("Cloud", Some(2))], &[("r-cloud", "Cloud")]);
    for (a, path, body) in [
        (&env.partner, "board-mappings", endpoint.clone()),
        (&env.partner, "criticality-mappings", json!({"critical": 1})),
        (&env.acme, "board-mappings", cloud.clone()),
        (&env.acme, "criticality-mappings", json!({"critical": 2})),
        (&env.globex, "board-mappings", cloud.clone()),
        (&env.initech, "criticality-mappings", json!({"high": 3})),
        (&env.selfco, "board-mappings", cloud.clone()),
        (&env.selfco, "criticality-mappings", json!({"low": 4})),
    ] {
        let (s, b) = api.put(&env.url(a, path), body).await?;
        ensure!(s == 200, "{} {path}: {s} {b}", a.name);
    }

    // before saving, the UI can say what will be overwritten (Selfco has its own integration)
    let path = env.url(&env.partner, "support-system");
    let (s, b) = api.get(&path).await?;
    ensure!(s == 200, "{s} {b}");
    let own = &b["subtenants_with_own_mappings"];
    let mut names: Vec<&str> = own["names"]
        .as_array()
        .context("names")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    names.sort();
    ensure!(
        own["count"] == 3 && names == ["Acme", "Globex", "Initech"],
        "{own}"
    );

    // uniform needs Apply to All Subtenants
    let (s, b) = api.put(&path, env.support_body(None, false, true)).await?;
    ensure!(
        s == 422 && fields(&b) == ["uniform_subtenant_mappings"],
        "{s} {b}"
    );

    // switching it on deletes those copies in one go, audited; the integration stays active
    let audit_before = env.store.audit_log(&env.partner.id).await?.len();
    let (s, b) = api.put(&path, env.support_body(None, true, true)).await?;
    ensure!(
        s == 200 && b["uniform_subtenant_mappings"] == true && b["active"] == true,
        "{s} {b}"
    );
    ensure!(b["subtenants_with_own_mappings"]["count"] == 0, "{b}");
    for a in [&env.acme, &env.globex, &env.initech] {
        for r in [MappingResource::Board, MappingResource::Criticality] {
            ensure!(
                env.store.mapping(&a.id, r).await?.is_none(),
                "{} still has {r:?}",
                a.name
            );
        }
    }
    ensure!(
        env.store
            .mapping(&env.selfco.id, MappingResource::Board)
            .await?
            .is_some(),
        "Selfco's own board mappings were touched"
    );
    ensure!(
        env.store
            .mapping(&env.selfco.id, MappingResource::Criticality)
            .await?
            .is_some(),
        "Selfco's own criticality mappings were touched"
    );
    ensure!(
        env.store
            .mapping(&env.partner.id, MappingResource::Board)
            .await?
            .is_some(),
        "the partner's own mappings stay"
    );
    let audit = env.store.audit_log(&env.partner.id).await?;
    let new: Vec<_> = audit.iter().skip(audit_before).collect();
    let on: Vec<_> = new
        .iter()
        .filter(|e| e.action == "uniform_mappings_on")
        .collect();
    ensure!(
        on.len() == 1,
        "one audit entry for switching uniform mode on: {new:?}"
    );
    let mut deleted: Vec<String> =
        serde_json::from_value(on[0].detail["deleted_subtenant_mappings"].clone())?;
    deleted.sort();
    let mut want = vec![
        env.acme.id.clone(),
        env.globex.id.clone(),
        env.initech.id.clone(),
    ];
    want.sort();
    ensure!(deleted == want, "audited deletions {deleted:?}");

    // while on: sub-tenant writes get 409 naming the setting; reads show the partner's
    for (method, resource) in [
        ("PUT", "board-mappings"),
        ("PUT", "criticality-mappings"),
        ("DELETE", "board-mappings"),
        ("DELETE", "criticality-mappings"),
    ] {
        let p = env.url(&env.acme, resource);
        let (s, b) = if method == "PUT" {
            let body = if resource == "board-mappings" {
                cloud.clone()
            } else {
                json!({"critical": 2})
            };
            env.acme_api.put(&p, body).await?
        } else {
            env.acme_api.delete(&p).await?
        };
        ensure!(
            s == 409 && fields(&b) == ["uniform_subtenant_mappings"],
            "{method} {resource}: {s} {b}"
        );
        ensure!(
            b["detail"]
                .as_str()
                .unwrap_or("")
                .contains("uniform_subtenant_mappings"),
            "{b}"
        );
    }
    let (_, b) = api.get(&env.url(&env.globex, "board-mappings")).await?;
    ensure!(
        b["source"] == "partner" && b["rule_types"][0]["board_id"] == 1,
        "{b}"
    );
    // the partner's own edits keep flowing to every sub-tenant
    let (s, _) = api
        .put(
            &env.url(&env.partner, "criticality-mappings"),
            json!({"critical": 5}),
        )
        .await?;
    ensure!(s == 200);
    let (_, b) = api
        .get(&env.url(&env.initech, "criticality-mappings"))
        .await?;
    ensure!(
        b["source"] == "partner" && b["critical"] == 5 && b["high"].is_null(),
        "{b}"
    );
    // a sub-tenant with its own integration is never governed by uniform mode
    let (s, b) = api
        .put(&env.url(&env.selfco, "board-mappings"), endpoint.clone())
        .await?;
    ensure!(s == 200 && b["source"] == "own", "{s} {b}");
    let (_, b) = api
        .get(&env.url(&env.selfco, "criticality-mappings"))
        .await?;
    ensure!(b["source"] == "own" && b["low"] == 4, "{b}");

    // saving again with uniform still on deletes nothing more and audits no second deletion
    let (s, _) = api.put(&path, env.support_body(None, true, true)).await?;
    ensure!(s == 200);
    let audit = env.store.audit_log(&env.partner.id).await?;
    ensure!(
        audit
            .iter()
            .filter(|e| e.action == "uniform_mappings_on")
            .count()
            == 1,
        "{audit:?}"
    );

    // switching it off restores nothing: sub-tenants inherit until they save their own
    let (s, b) = api.put(&path, env.support_body(None, true, false)).await?;
    ensure!(
        s == 200 && b["uniform_subtenant_mappings"] == false,
        "{s} {b}"
    );
    for a in [&env.acme, &env.globex, &env.initech] {
        let (_, b) = api.get(&env.url(a, "board-mappings")).await?;
        ensure!(b["source"] == "partner", "{}: {b}", a.name);
        let (_, b) = api.get(&env.url(a, "criticality-mappings")).await?;
        ensure!(b["source"] == "partner", "{}: {b}", a.name);
    }
    let (s, b) = env
        .acme_api
        .put(&env.url(&env.acme, "board-mappings"), cloud)
        .await?;
    ensure!(s == 200 && b["source"] == "own", "{s} {b}");
    Ok(())
}

//! The SIGKILL drill (DESIGN §4, the outbox): the real `casebridge serve` binary is SIGKILLed at
//! random moments while cases are being escalated, and restarted on the same database each time.
//! Afterwards no case is lost, every case has its ticket, and the ConnectWise simulator holds
//! exactly one ticket per case (counted by `externalXRef`): no duplicates, none missing.
//!
//! The simulator runs in this test's process, so it survives every kill of casebridge.
//! `DRILL_CASES` (default 2000) sets how many cases; `DRILL_SEED` seeds the killer's intervals
//! (0.3–1.5 s); `DRILL_KILLS` (default 20) is the least number of kills: the killer goes on while
//! the escalations are answered and then on into the outbox's drain until that many landed.
//! On SQLite always; on PostgreSQL as well when `CASEBRIDGE_TEST_DATABASE_URL` is set (an
//! unreachable server then fails the test).

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, BIN, TempDir, client, free_port, last_word, pg_database, run_ok};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NDJSON: &str = "application/x-ndjson";
const RULE: &str = "drill-rule";
const DEFAULT_CASES: usize = 2000;
/// Kills at least this many times (`DRILL_KILLS`), also after the last escalation answered.
const DEFAULT_KILLS: usize = 20;
const BATCH: usize = 250;
const ESCALATORS: usize = 4;
/// How long a restarted server may take to answer /healthz.
const RESTART_DEADLINE: Duration = Duration::from_secs(120);
/// How long one escalation may keep failing (the server down) before the drill gives up.
const ESCALATE_DEADLINE: Duration = Duration::from_secs(300);
/// How long the outbox may take to drain after the last kill.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(50);
/// The two drills run one after the other: each wants both cores to itself.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SERVE_ENV: &[(&str, &str)] = &[
    ("CASEBRIDGE_REQUEST_BUDGET_PER_MINUTE", "1000000"),
    ("CASEBRIDGE_POLL_INTERVAL_MS", "20"),
    ("CASEBRIDGE_BACKOFF_BASE_MS", "10"),
    ("CASEBRIDGE_MAX_ATTEMPTS", "50"),
    ("CASEBRIDGE_REQUEST_TIMEOUT_MS", "2000"),
    ("CASEBRIDGE_LOG", "warn"),
];

/// `casebridge serve` on a fixed port and data dir; SIGKILLed and restarted by the drill,
/// killed on drop (also when the test fails). Every incarnation appends to one log.
struct Server {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    url: String,
    starts: usize,
}

impl Server {
    fn new(db_args: &[String], dir: &Path) -> Self {
        let port = free_port();
        let mut args = db_args.to_vec();
        args.extend([
            "serve".to_string(),
            "--bind".to_string(),
            format!("127.0.0.1:{port}"),
        ]);
        let mut s = Self {
            child: None,
            args,
            log: dir.join("serve.log"),
            url: format!("http://127.0.0.1:{port}"),
            starts: 0,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("the serve log")
        };
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .env_remove("CASEBRIDGE_DATABASE_URL")
            .env_remove("CASEBRIDGE_DATA_DIR")
            .env_remove("CASEBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log());
        for (k, v) in SERVE_ENV {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("starting casebridge serve"));
        self.starts += 1;
    }

    /// SIGKILL (`Child::kill` on unix), reaped, then a fresh process on the same database.
    fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics with the log's tail when the current process has exited on its own.
    fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait().expect("try_wait")
        {
            panic!(
                "casebridge serve exited on its own ({status}); its log:\n{}",
                log_tail(&self.log)
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let start = s.len().saturating_sub(8000);
    s.get(start..).unwrap_or(&s).to_string()
}

/// Polls /healthz until it answers 200 (the server behind `server` is checked to be alive).
async fn wait_healthy(server: &Mutex<Server>, url: &str) {
    let http = client();
    let end = Instant::now() + RESTART_DEADLINE;
    loop {
        server.lock().unwrap().assert_running();
        if http
            .get(format!("{url}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return;
        }
        assert!(
            Instant::now() < end,
            "serve did not answer /healthz within {RESTART_DEADLINE:?}\n{}",
            log_tail(&server.lock().unwrap().log)
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn put(api: &Api, path: &str, body: &Value) -> Value {
    let r = api
        .send(
            reqwest::Method::PUT,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "PUT {path} {body}: {r:#?}");
    r.body
}

/// Escalates `id`, retrying while the server is down (connection errors, 5xx) until it answers
/// 200. Returns how many attempts failed.
async fn escalate(http: &reqwest::Client, base: &str, token: &str, id: &str) -> usize {
    let end = Instant::now() + ESCALATE_DEADLINE;
    let mut failures = 0;
    loop {
        let r = http
            .post(format!("{base}/api/v1/cases/{id}/escalate"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => return failures,
            Ok(r) if r.status().is_client_error() => {
                let s = r.status();
                panic!("escalate {id}: {s} {}", r.text().await.unwrap_or_default());
            }
            Ok(_) | Err(_) => failures += 1,
        }
        assert!(
            Instant::now() < end,
            "escalate {id} kept failing for {ESCALATE_DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every ticket the simulator holds whose externalXRef looks like a case id: xref → ticket ids.
async fn sim_tickets(sim_url: &str, keys: &cw_sim::MemberKeys) -> HashMap<String, Vec<i64>> {
    let http = client();
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    const PAGE_SIZE: usize = 1000;
    for page in 1.. {
        let page_url = reqwest::Url::parse_with_params(
            &format!("{sim_url}/v4_6_release/apis/3.0/service/tickets"),
            &[
                ("conditions", "externalXRef like \"case_*\"".to_string()),
                ("fields", "id,externalXRef".to_string()),
                ("orderBy", "id asc".to_string()),
                ("pageSize", PAGE_SIZE.to_string()),
                ("page", page.to_string()),
            ],
        )
        .expect("a ticket list URL");
        let res = http
            .get(page_url)
            .basic_auth(
                format!("{}+{}", keys.company, keys.public_key),
                Some(&keys.private_key),
            )
            .header("clientId", &keys.client_id)
            .send()
            .await
            .expect("cw-sim answers");
        let status = res.status();
        let body: Value = res.json().await.expect("cw-sim ticket JSON");
        assert!(
            status.is_success(),
            "cw-sim tickets page {page}: {status} {body}"
        );
        let items = body.as_array().expect("a ticket list");
        for t in items {
            let xref = t["externalXRef"].as_str().unwrap_or_default().to_string();
            out.entry(xref)
                .or_default()
                .push(t["id"].as_i64().expect("ticket id"));
        }
        if items.len() < PAGE_SIZE {
            break;
        }
    }
    out
}

fn drill_cases() -> usize {
    std::env::var("DRILL_CASES")
        .ok()
        .map(|v| v.parse().expect("DRILL_CASES is a number"))
        .unwrap_or(DEFAULT_CASES)
}

async fn drill(database_url: Option<&str>, backend: &str) {
    let _serial = SERIAL.lock().await;
    let n = drill_cases();
    let seed: u64 = std::env::var("DRILL_SEED")
        .ok()
        .map(|v| v.parse().expect("DRILL_SEED is a number"))
        .unwrap_or(0x5eed_c0de);
    let min_kills: usize = std::env::var("DRILL_KILLS")
        .ok()
        .map(|v| v.parse().expect("DRILL_KILLS is a number"))
        .unwrap_or(DEFAULT_KILLS);
    let started = Instant::now();

    // the simulator, in process: it outlives every kill of casebridge
    let sim = cw_sim::start(cw_sim::SimOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        seed: cw_sim::Seed::Demo,
        state_dir: None,
        time_scale: 0.01,
    })
    .await
    .expect("cw-sim starts");
    let keys = sim.demo_keys().expect("the demo seed has keys").clone();
    let sim_url = sim.url().to_string();

    // bootstrap with the CLI
    let dir = TempDir::new("kill-drill");
    let mut db_args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(u) = database_url {
        db_args.extend(["--database-url".to_string(), u.to_string()]);
    }
    let cli = |extra: &[&str]| {
        let mut a: Vec<&str> = db_args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        last_word(&run_ok(&a))
    };
    let partner = cli(&[
        "account",
        "create",
        "--name",
        "Drill MSSP",
        "--kind",
        "partner",
    ]);
    let subs: Vec<String> = ["Drill Acme", "Drill Beta"]
        .iter()
        .map(|name| {
            cli(&[
                "account",
                "create",
                "--name",
                name,
                "--kind",
                "subtenant",
                "--parent",
                &partner,
            ])
        })
        .collect();
    let token = cli(&["token", "create", "--account", &partner, "--role", "admin"]);
    assert!(token.len() >= 20, "token create printed no token: {token}");

    let server = Arc::new(Mutex::new(Server::new(&db_args, dir.path())));
    let url = server.lock().unwrap().url.clone();
    wait_healthy(&server, &url).await;
    let api = Api::new(&url, Some(&token));

    // the integration and its mappings, through the API
    let acct = |id: &str, res: &str| format!("/api/v1/accounts/{id}/{res}");
    let ss = acct(&partner, "support-system");
    let am = &keys.api_member;
    put(
        &api,
        &ss,
        &json!({
            "type": "connectwise",
            "site_url": sim_url,
            "company_id": sim.login_company(),
            "public_key": am.public_key,
            "private_key": am.private_key,
            "client_id": am.client_id,
            "parent_company_identifier": "CBMSSP",
            "apply_to_all_subtenants": true,
            "uniform_subtenant_mappings": false,
            "allow_private_hosts": true,
        }),
    )
    .await;
    let r = api.post(&format!("{ss}/test"), &json!({})).await;
    assert!(r.status == 200 && r.body["passed"] == true, "test: {r:#?}");
    let r = api.post(&format!("{ss}/activate"), &json!({})).await;
    assert!(
        r.status == 200 && r.body["active"] == true,
        "activate: {r:#?}"
    );
    put(
        &api,
        &acct(&partner, "board-mappings"),
        &json!({
            "rule_types": [{"rule_type": "Endpoint", "board_id": 1}],
            "assignments": [{"rule_id": RULE, "rule_type": "Endpoint"}],
        }),
    )
    .await;
    put(
        &api,
        &acct(&partner, "criticality-mappings"),
        &json!({"critical": 1, "high": 2}),
    )
    .await;
    put(
        &api,
        &acct(&partner, "company-mappings"),
        &json!({"items": [{"account_id": subs[0], "company_identifier": "ACMECORP"}]}),
    )
    .await;
    let sm_path = acct(&partner, "status-mappings");
    let proposed = api.get(&sm_path).await.ok().clone();
    assert!(
        proposed["boards"].as_array().is_some_and(|b| !b.is_empty()),
        "no status mapping proposed for board 1: {proposed}"
    );
    put(&api, &sm_path, &proposed).await;
    for s in &subs {
        put(
            &api,
            &acct(s, "escalation-policy"),
            &json!({"auto_escalate_at": null}),
        )
        .await;
    }

    // N cases, in NDJSON batches, alternating between the two sub-tenants
    let ingest_started = Instant::now();
    let mut case_ids: Vec<String> = Vec::with_capacity(n);
    for (k, sub) in subs.iter().enumerate() {
        let mine: Vec<usize> = (0..n).filter(|i| i % subs.len() == k).collect();
        for chunk in mine.chunks(BATCH) {
            let body: String = chunk
                .iter()
                .map(|i| {
                    format!(
                        "{}\n",
                        json!({"rule_id": RULE, "title": format!("drill {i}"), "criticality": "high", "source_id": format!("drill-{i}")})
                    )
                })
                .collect();
            let r = api
                .post_raw(&format!("/api/v1/alerts?account_id={sub}"), NDJSON, body)
                .await;
            let report = r.ok();
            assert_eq!(
                report["created"].as_u64(),
                Some(chunk.len() as u64),
                "batch report: {report}"
            );
            for line in report["lines"].as_array().expect("per-line report") {
                case_ids.push(line["case_id"].as_str().expect("case_id").to_string());
            }
        }
    }
    let ingest_time = ingest_started.elapsed();
    let distinct: HashSet<&String> = case_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        n,
        "{n} alerts should make {n} distinct cases"
    );
    eprintln!("[{backend}] {n} cases ingested in {ingest_time:.1?}");

    // escalate every case while the killer SIGKILLs and restarts casebridge
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (server, done, kills, url) = (server.clone(), done.clone(), kills.clone(), url.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut downtime = Duration::ZERO;
            // kills go on after the last escalation answered, into the outbox's drain, until
            // `min_kills` have landed
            while !done.load(Ordering::SeqCst) || kills.load(Ordering::SeqCst) < min_kills {
                let pause = Duration::from_millis(rng.random_range(300..=1500));
                tokio::time::sleep(pause).await;
                let t = Instant::now();
                server.lock().unwrap().kill_and_restart();
                kills.fetch_add(1, Ordering::SeqCst);
                wait_healthy(&server, &url).await;
                downtime += t.elapsed();
            }
            downtime
        })
    };
    let escalate_started = Instant::now();
    let ids = Arc::new(case_ids.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let failed_calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..ESCALATORS {
        let (ids, next, failed, url, token) = (
            ids.clone(),
            next.clone(),
            failed_calls.clone(),
            url.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = client();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(id) = ids.get(i) else { break };
                let f = escalate(&http, &url, &token, id).await;
                failed.fetch_add(f, Ordering::SeqCst);
            }
        }));
    }
    let mut escalate_error = None;
    for t in tasks {
        if let Err(e) = t.await {
            escalate_error.get_or_insert(e);
        }
    }
    if let Some(e) = escalate_error {
        std::panic::resume_unwind(e.into_panic());
    }
    let escalate_time = escalate_started.elapsed();
    let kills_while_escalating = kills.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let downtime = killer.await.expect("the killer task");
    let kill_time = escalate_started.elapsed();
    let kills = kills.load(Ordering::SeqCst);

    // after the last kill: the server runs on until the outbox is idle
    let drain_started = Instant::now();
    let end = Instant::now() + DRAIN_DEADLINE;
    loop {
        server.lock().unwrap().assert_running();
        let mut busy = 0;
        for state in ["pending", "running"] {
            busy += api
                .get(&format!("/api/v1/sync/jobs?state={state}&limit=500"))
                .await
                .ok()["items"]
                .as_array()
                .map_or(0, Vec::len);
        }
        if busy == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the outbox still has {busy}+ pending/running jobs after {DRAIN_DEADLINE:?}\n{}",
            log_tail(&server.lock().unwrap().log)
        );
        tokio::time::sleep(POLL).await;
    }
    let drain_time = drain_started.elapsed();
    let dead = api.all("/api/v1/sync/jobs?state=dead", 500).await;
    assert!(
        dead.is_empty(),
        "[{backend}] {} dead jobs after the drill, e.g. {}",
        dead.len(),
        dead[0]
    );

    // 0 lost: every case exists and has its ticket
    let mut cases: HashMap<String, Value> = HashMap::new();
    for s in &subs {
        for c in api.all(&format!("/api/v1/cases?account_id={s}"), 500).await {
            cases.insert(c["id"].as_str().unwrap().to_string(), c);
        }
    }
    let lost: Vec<&String> = case_ids
        .iter()
        .filter(|id| !cases.contains_key(*id))
        .collect();
    let unticketed: Vec<&String> = case_ids
        .iter()
        .filter(|id| {
            cases
                .get(*id)
                .is_some_and(|c| c["ticket"]["id"].as_i64().is_none())
        })
        .collect();

    // exactly one ticket per case in the simulator, the one the case names
    let tickets = sim_tickets(&sim_url, &keys.api_member).await;
    let ticket_total: usize = tickets.values().map(Vec::len).sum();
    let duplicates: Vec<(&String, &Vec<i64>)> =
        tickets.iter().filter(|(_, t)| t.len() > 1).collect();
    let missing: Vec<&String> = case_ids
        .iter()
        .filter(|id| !tickets.contains_key(*id))
        .collect();
    let foreign: Vec<&String> = tickets.keys().filter(|x| !distinct.contains(x)).collect();
    let mismatched: Vec<&String> = case_ids
        .iter()
        .filter(|id| {
            let named = cases.get(*id).and_then(|c| c["ticket"]["id"].as_i64());
            match (named, tickets.get(*id)) {
                (Some(t), Some(ts)) => !ts.contains(&t),
                _ => false,
            }
        })
        .collect();

    // adoptions (an earlier attempt's ticket found by externalXRef), from the Activity Logs
    let adoptions = {
        let next = Arc::new(AtomicUsize::new(0));
        let found = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..ESCALATORS {
            let (ids, next, found, api) = (ids.clone(), next.clone(), found.clone(), api.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = ids.get(i) else { break };
                    let adopted = api
                        .activity(id)
                        .await
                        .iter()
                        .filter(|e| e["kind"] == "ticket_adopted")
                        .count();
                    found.fetch_add(adopted, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.expect("an activity task");
        }
        found.load(Ordering::SeqCst)
    };

    let starts = server.lock().unwrap().starts;
    eprintln!(
        "[{backend}] kill drill: {n} cases, {kills} SIGKILLs ({starts} starts, seed {seed}), \
         {} failed escalate calls retried; ingest {ingest_time:.1?}, escalation under fire \
         {escalate_time:.1?} ({kills_while_escalating} kills), killing went on to {kill_time:.1?} \
         (restart downtime {downtime:.1?}), drain after the last kill {drain_time:.1?}, total \
         {:.1?}; cases found {}/{n}, lost {}, without ticket {}; sim tickets {ticket_total}, \
         duplicates {}, missing {}, foreign {}, case→ticket mismatches {}; adoptions {adoptions}",
        failed_calls.load(Ordering::SeqCst),
        started.elapsed(),
        n - lost.len(),
        lost.len(),
        unticketed.len(),
        duplicates.len(),
        missing.len(),
        foreign.len(),
        mismatched.len(),
    );
    assert!(
        kills > 0,
        "the drill killed nothing (escalation finished in {escalate_time:?})"
    );
    assert!(lost.is_empty(), "[{backend}] lost cases: {lost:?}");
    assert!(
        unticketed.is_empty(),
        "[{backend}] cases without a ticket: {:?}",
        &unticketed[..unticketed.len().min(20)]
    );
    assert!(
        duplicates.is_empty(),
        "[{backend}] duplicate tickets (xref → ticket ids): {:?}",
        &duplicates[..duplicates.len().min(20)]
    );
    assert!(
        missing.is_empty(),
        "[{backend}] cases with no ticket in cw-sim: {:?}",
        &missing[..missing.len().min(20)]
    );
    assert!(
        foreign.is_empty(),
        "[{backend}] tickets for unknown cases: {foreign:?}"
    );
    assert!(
        mismatched.is_empty(),
        "[{backend}] cases naming a ticket cw-sim does not hold for them: {:?}",
        &mismatched[..mismatched.len().min(20)]
    );
    assert_eq!(ticket_total, n, "[{backend}] one ticket per case");

    server.lock().unwrap().kill();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_drill_loses_no_case_and_duplicates_no_ticket_on_sqlite() {
    drill(None, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_drill_loses_no_case_and_duplicates_no_ticket_on_postgres() {
    let Some(db) = pg_database() else {
        eprintln!("CASEBRIDGE_TEST_DATABASE_URL is not set: the PostgreSQL drill did not run");
        return;
    };
    drill(Some(&db.url), "postgres").await;
}

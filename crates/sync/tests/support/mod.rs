//! Harness of the outbox tests (inbound.rs uses its `ScratchDb`): a fresh store (SQLite, and PostgreSQL when
//! `CASEBRIDGE_TEST_DATABASE_URL` is set), an in-process cw-sim with the demo seed, a partner with
//! sub-tenants wired to it, and a connector factory that records what is sent and can "kill" the
//! process right after ConnectWise applied a write.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use casebridge_connector::{
    Board, BoardStatus, CallbackRegistration, Company, NewNote, NewTicket, Note, Priority, Psa,
    PsaError, TestReport, Ticket,
};
use casebridge_domain::ids::new_id;
use casebridge_domain::status_mapping::propose_defaults;
use casebridge_domain::{
    AccountKind, BoardMappings, Criticality, CriticalityMappings, RuleAssignment, RuleTypeBoard,
    StatusMappings,
};
use casebridge_store::{
    Activity, AlertInsert, AuditEntry, Case, Integration, Job, JobState, MappingResource, NewCase,
    Rule, Store, now_millis,
};
use casebridge_sync::outbox::Worker;
use casebridge_sync::{ConnectWiseFactory, ConnectorFactory, SecretBox, SyncConfig, SyncContext};
use serde_json::{Value, json};

/// Upper bound for any wait in these tests; nothing sleeps for a fixed time.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const RULE_ENDPOINT: &str = "r-endpoint";
pub const RULE_CLOUD: &str = "r-cloud";
pub const RULE_UNASSIGNED: &str = "r-unassigned";

pub use casebridge_testkit::{Backend, PG_ENV, ScratchDb};

// ---------------------------------------------------------------------------------------------
// a connector factory that records and can crash

/// "Kill the process" right after ConnectWise applied a write: the call signals `tx` with
/// (`slot`, ticket id) and never returns, so nothing is committed.
pub struct Crash {
    pub slot: usize,
    /// Probability per applied write (1.0 = the next one).
    pub rate: f64,
    pub remaining: u32,
    pub tx: tokio::sync::mpsc::UnboundedSender<(usize, i64)>,
}

#[derive(Default)]
pub struct Recorder {
    pub tickets: Mutex<Vec<NewTicket>>,
    pub notes: Mutex<Vec<(i64, NewNote)>>,
    pub crash: Mutex<Option<Crash>>,
    pub crashes: AtomicU32,
}

impl Recorder {
    async fn maybe_die(&self, ticket_id: i64) {
        let die = {
            let mut c = self.crash.lock().unwrap();
            match c.as_mut() {
                Some(c) if c.remaining > 0 && (c.rate >= 1.0 || rand::random::<f64>() < c.rate) => {
                    c.remaining -= 1;
                    let _ = c.tx.send((c.slot, ticket_id));
                    true
                }
                _ => false,
            }
        };
        if die {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

pub struct RecordingFactory {
    inner: ConnectWiseFactory,
    pub rec: Arc<Recorder>,
}

impl RecordingFactory {
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: ConnectWiseFactory::new(secrets(), timeout),
            rec: Arc::new(Recorder::default()),
        }
    }
}

impl ConnectorFactory for RecordingFactory {
    fn connector(&self, integration: &Integration) -> Result<Arc<dyn Psa>, PsaError> {
        Ok(Arc::new(RecordingPsa {
            inner: self.inner.connector(integration)?,
            rec: self.rec.clone(),
        }))
    }
}

struct RecordingPsa {
    inner: Arc<dyn Psa>,
    rec: Arc<Recorder>,
}

#[async_trait]
impl Psa for RecordingPsa {
    async fn test_connection(&self) -> TestReport {
        self.inner.test_connection().await
    }
    async fn boards(&self) -> Result<Vec<Board>, PsaError> {
        self.inner.boards().await
    }
    async fn board_statuses(&self, board_id: i64) -> Result<Vec<BoardStatus>, PsaError> {
        self.inner.board_statuses(board_id).await
    }
    async fn priorities(&self) -> Result<Vec<Priority>, PsaError> {
        self.inner.priorities().await
    }
    async fn company_by_identifier(&self, identifier: &str) -> Result<Option<Company>, PsaError> {
        self.inner.company_by_identifier(identifier).await
    }
    async fn create_ticket(&self, t: &NewTicket) -> Result<Ticket, PsaError> {
        self.rec.tickets.lock().unwrap().push(t.clone());
        let ticket = self.inner.create_ticket(t).await?;
        self.rec.maybe_die(ticket.id).await;
        Ok(ticket)
    }
    async fn find_ticket_by_external_ref(&self, xref: &str) -> Result<Option<Ticket>, PsaError> {
        self.inner.find_ticket_by_external_ref(xref).await
    }
    async fn find_tickets_by_external_ref(&self, xref: &str) -> Result<Vec<Ticket>, PsaError> {
        self.inner.find_tickets_by_external_ref(xref).await
    }
    async fn get_ticket(&self, id: i64) -> Result<Option<Ticket>, PsaError> {
        self.inner.get_ticket(id).await
    }
    async fn set_ticket_status(&self, id: i64, status_id: i64) -> Result<Ticket, PsaError> {
        self.inner.set_ticket_status(id, status_id).await
    }
    async fn add_note(&self, ticket_id: i64, n: &NewNote) -> Result<Note, PsaError> {
        self.rec.notes.lock().unwrap().push((ticket_id, n.clone()));
        let note = self.inner.add_note(ticket_id, n).await?;
        self.rec.maybe_die(ticket_id).await;
        Ok(note)
    }
    async fn notes(&self, ticket_id: i64) -> Result<Vec<Note>, PsaError> {
        self.inner.notes(ticket_id).await
    }
    async fn tickets_updated_since(
        &self,
        ids: &[i64],
        since: Option<time::OffsetDateTime>,
    ) -> Result<Vec<Ticket>, PsaError> {
        self.inner.tickets_updated_since(ids, since).await
    }
    async fn callbacks(&self) -> Result<Vec<CallbackRegistration>, PsaError> {
        self.inner.callbacks().await
    }
    async fn ensure_callback(&self, url: &str) -> Result<CallbackRegistration, PsaError> {
        self.inner.ensure_callback(url).await
    }
    async fn delete_ticket(&self, id: i64) -> Result<(), PsaError> {
        self.inner.delete_ticket(id).await
    }
}

pub fn secrets() -> SecretBox {
    SecretBox::new("k1", [7; 32])
}

// ---------------------------------------------------------------------------------------------
// the environment

pub struct Options {
    /// ConnectWise request timeout of the connector (and `SyncConfig::request_timeout`).
    pub request_timeout: Duration,
    pub max_attempts: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            request_timeout: Duration::from_secs(3),
            max_attempts: 4,
        }
    }
}

pub fn config(o: &Options) -> SyncConfig {
    SyncConfig {
        lease: Duration::from_millis(200),
        poll_interval: Duration::from_millis(5),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        max_attempts: o.max_attempts,
        batch: 16,
        request_timeout: o.request_timeout,
        // The request budget is not under test here; the drill alone makes thousands of requests.
        request_budget: 1_000_000,
        ..SyncConfig::default()
    }
}

pub struct Env {
    pub backend: Backend,
    pub sim: cw_sim::SimHandle,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub ctx: SyncContext,
    pub rec: Arc<Recorder>,
    pub opts: Options,
    pub integration: Integration,
    pub partner: String,
    /// Mapped to ACMECORP.
    pub acme: String,
    /// Mapped to GLOBEX.
    pub globex: String,
    /// No company mapping: filed under the parent company CBMSSP.
    pub plain: String,
    db: Option<ScratchDb>,
}

pub fn audit(account_id: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.into(),
        actor: "test".into(),
        at: now_millis(),
        action: "test".into(),
        detail: json!({}),
    }
}

pub fn board_mappings(assign_unassigned: bool) -> BoardMappings {
    let rt = |name: &str, board: i64| RuleTypeBoard {
        rule_type: name.into(),
        board_id: Some(board),
        board_name: None,
        type_id: None,
        subtype_id: None,
        item_id: None,
        status_id: None,
    };
    let mut assignments = vec![
        RuleAssignment {
            rule_id: RULE_ENDPOINT.into(),
            rule_type: "Endpoint".into(),
        },
        RuleAssignment {
            rule_id: RULE_CLOUD.into(),
            rule_type: "Cloud".into(),
        },
    ];
    if assign_unassigned {
        assignments.push(RuleAssignment {
            rule_id: RULE_UNASSIGNED.into(),
            rule_type: "Cloud".into(),
        });
    }
    BoardMappings {
        rule_types: vec![rt("Endpoint", 1), rt("Cloud", 2)],
        assignments,
    }
}

/// A fresh environment, or `None` when PostgreSQL was asked for and the variable is unset.
pub async fn setup(backend: Backend, opts: Options) -> Option<Env> {
    let Some(db) = ScratchDb::for_test(backend, "cb_sync").await else {
        eprintln!("note: {PG_ENV} is unset; the PostgreSQL outbox tests are skipped");
        return None;
    };
    let store = casebridge_store::open(db.url(), true)
        .await
        .unwrap_or_else(|e| panic!("opening the {backend:?} store: {e}"));
    let sim = cw_sim::start(cw_sim::SimOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: cw_sim::Seed::Demo,
        state_dir: None,
        time_scale: 0.01,
    })
    .await
    .expect("cw-sim starts");
    let keys = sim.demo_keys().cloned().expect("demo keys");
    let factory = Arc::new(RecordingFactory::new(opts.request_timeout));
    let rec = factory.rec.clone();
    let mut ctx = SyncContext::new(store.clone(), factory, config(&opts));
    ctx.portal_url = Some("https://portal.example.test".into());

    let partner = store
        .create_account("Casebridge MSSP", AccountKind::Partner, None)
        .await
        .unwrap();
    let mut subs = Vec::new();
    for name in ["Acme", "Globex", "Plain Ltd"] {
        subs.push(
            store
                .create_account(name, AccountKind::Subtenant, Some(&partner.id))
                .await
                .unwrap()
                .id,
        );
    }
    let integration = casebridge_testkit::sim_integration(
        &sim,
        &partner.id,
        secrets().seal(&keys.api_member.private_key),
        "CBMSSP",
    );
    store
        .save_integration(&integration, &audit(&partner.id))
        .await
        .unwrap();
    let rule = |id: &str, title: &str, t: &str| Rule {
        id: id.into(),
        title: title.into(),
        level: Some(Criticality::High),
        source: "sigma".into(),
        logsource: json!({}),
        tags: vec![],
        suggested_rule_type: t.into(),
    };
    store
        .upsert_rules(&[
            rule(RULE_ENDPOINT, "Suspicious PowerShell", "Endpoint"),
            rule(RULE_CLOUD, "Impossible travel", "Cloud"),
            rule(RULE_UNASSIGNED, "Odd thing", "Other"),
        ])
        .await
        .unwrap();
    let boards = serde_json::to_value(board_mappings(false)).unwrap();
    store
        .put_mapping(
            &partner.id,
            MappingResource::Board,
            Some(&boards),
            &audit(&partner.id),
        )
        .await
        .unwrap();
    let crit = CriticalityMappings {
        critical: Some(1),
        high: Some(2),
        medium: Some(3),
        low: Some(4),
        informational: Some(5),
    };
    store
        .put_mapping(
            &partner.id,
            MappingResource::Criticality,
            Some(&serde_json::to_value(&crit).unwrap()),
            &audit(&partner.id),
        )
        .await
        .unwrap();
    store
        .put_company_mappings(
            &partner.id,
            &[
                (subs[0].clone(), "ACMECORP".into()),
                (subs[1].clone(), "GLOBEX".into()),
            ],
            &audit(&partner.id),
        )
        .await
        .unwrap();
    let psa = ctx.connectors.connector(&integration).unwrap();
    let mut boards = Vec::new();
    for b in [1, 2] {
        let statuses = psa.board_statuses(b).await.unwrap();
        let mut m = propose_defaults(b, &statuses.iter().map(|s| s.facts()).collect::<Vec<_>>());
        m.confirmed = true;
        boards.push(m);
    }
    store
        .put_status_mappings(&partner.id, &StatusMappings { boards }, &audit(&partner.id))
        .await
        .unwrap();

    Some(Env {
        backend,
        sim,
        http: reqwest::Client::new(),
        store,
        ctx,
        rec,
        opts,
        integration,
        partner: partner.id,
        acme: subs[0].clone(),
        globex: subs[1].clone(),
        plain: subs[2].clone(),
        db: Some(db),
    })
}

impl Env {
    pub async fn teardown(mut self) {
        let db = self.db.take();
        self.sim.shutdown().await;
        if let Some(db) = db {
            db.drop_db().await;
        }
    }

    pub fn accounts(&self) -> Vec<String> {
        vec![
            self.partner.clone(),
            self.acme.clone(),
            self.globex.clone(),
            self.plain.clone(),
        ]
    }

    pub fn psa(&self) -> Arc<dyn Psa> {
        ConnectWiseFactory::new(secrets(), Duration::from_secs(10))
            .connector(&self.integration)
            .unwrap()
    }

    pub async fn new_case(&self, account_id: &str, rule_id: &str, title: &str) -> Case {
        let c = NewCase {
            id: new_id("case"),
            account_id: account_id.to_string(),
            rule_id: rule_id.to_string(),
            title: title.to_string(),
            description: "PowerShell started with an encoded command.".into(),
            criticality: Criticality::High,
            source_format: "generic".into(),
            source_key: new_id("k"),
            observables: json!([{ "kind": "ip", "value": "203.0.113.77" }, { "kind": "host", "value": "ws-secret-42" }]),
            raw_alert: json!({ "raw": "do-not-send" }),
        };
        match self.store.insert_alert_case(&c, "ingest").await.unwrap() {
            AlertInsert::Created(c) => *c,
            AlertInsert::Repeat(c) => panic!("unexpected repeat of {}", c.id),
        }
    }

    pub async fn case(&self, id: &str) -> Case {
        self.store.case(id).await.unwrap().expect("case exists")
    }

    pub async fn activity(&self, case_id: &str) -> Vec<Activity> {
        self.store.activity(case_id).await.unwrap()
    }

    pub async fn all_jobs(&self) -> Vec<Job> {
        self.store
            .jobs(None, &self.accounts(), 100_000)
            .await
            .unwrap()
    }

    /// The case's jobs, oldest first.
    pub async fn jobs_of(&self, case_id: &str) -> Vec<Job> {
        let mut j: Vec<Job> = self
            .all_jobs()
            .await
            .into_iter()
            .filter(|j| j.case_id == case_id)
            .collect();
        j.sort_by_key(|j| j.seq);
        j
    }

    /// Jobs some worker still has to run: pending and not blocked, or running.
    pub async fn outstanding(&self) -> usize {
        self.all_jobs()
            .await
            .iter()
            .filter(|j| {
                (j.state == JobState::Pending && !j.blocked) || j.state == JobState::Running
            })
            .count()
    }

    /// Runs `workers` round by round until nothing is due or running; waits only for backoff
    /// and leases, bounded by [`DEADLINE`].
    pub async fn drain(&self, workers: &[&Worker]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut ran = 0;
            for w in workers {
                ran += w.run_once().await.expect("outbox round");
            }
            if ran > 0 {
                continue;
            }
            if self.outstanding().await == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "outbox did not drain within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until `cond` holds (polling the store), bounded by [`DEADLINE`].
    pub async fn wait_until<F, Fut>(&self, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + DEADLINE;
        while !cond().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn faults(&self, body: Value) {
        let r = self
            .http
            .put(format!("{}/__sim/faults", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "PUT /__sim/faults: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub async fn sim_state(&self) -> Value {
        self.http
            .get(format!("{}/__sim/state", self.sim.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// cw-sim's tickets whose externalXRef is `xref`.
    pub async fn sim_tickets_for(&self, xref: &str) -> Vec<Value> {
        let state = self.sim_state().await;
        state["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["externalXRef"] == json!(xref))
            .cloned()
            .collect()
    }
}

/// Whether the case's Activity Log has an entry of `kind` whose message contains `text`.
pub fn logged(activity: &[Activity], kind: &str, text: &str) -> bool {
    activity
        .iter()
        .any(|a| a.kind == kind && a.message.contains(text))
}

//! Inbound sync end to end against cw-sim: callbacks through a tiny hook receiver that calls
//! `accept_callback`, the processor, the reconciler, and a technician acting through
//! ConnectWise's REST API. Every test runs on SQLite and — when `CASEBRIDGE_TEST_DATABASE_URL`
//! is set — on a fresh PostgreSQL database of its own.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use casebridge_connector::callback_signature;
use casebridge_domain::ids::new_id;
use casebridge_domain::status_mapping::propose_defaults;
use casebridge_domain::{
    AccountKind, BoardMappings, CaseStatus, Criticality, CriticalityMappings, Direction,
    NoteOrigin, RuleAssignment, RuleTypeBoard, StatusMappings, TicketState, Visibility,
};
use casebridge_store::{
    AlertInsert, AuditEntry, Case, InboxEvent, Integration, MappingResource, NewCase, Rule, Store,
    now_millis,
};
use casebridge_sync::inbound::{Processor, accept_callback, sync_ticket};
use casebridge_sync::reconcile::{Reconciler, check_callback_registration, hook_url};
use casebridge_sync::{
    ConnectWiseFactory, SecretBox, SyncConfig, SyncContext, changes, escalation, outbox,
};
use serde_json::{Value, json};
use support::{Backend, PG_ENV, ScratchDb};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Lets cw-sim deliver its callbacks (a bounded poll) and runs the processor until `$cond`.
macro_rules! process_until {
    ($env:expr, $what:expr, $cond:expr) => {{
        let processor = Processor::new($env.ctx.clone());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            processor.run_once().await.unwrap();
            if $cond {
                break;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }};
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::setup(super::Backend::Sqlite).await.expect("sqlite env");
                    super::$name(&env).await;
                    env.teardown().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(env) = super::setup(super::Backend::Postgres).await else { return };
                    super::$name(&env).await;
                    env.teardown().await;
                }
            )*
        }
    };
}

both_backends!(
    technician_changes_arrive_through_callbacks,
    our_own_writes_are_not_applied_back,
    a_change_older_than_our_last_write_is_not_applied,
    forged_and_odd_callbacks_change_nothing,
    events_for_one_ticket_are_coalesced,
    concurrent_repeats_are_stored_once_and_old_events_are_pruned,
    a_deleted_ticket_unlinks_and_escalating_creates_a_new_one,
    a_merged_ticket_is_noticed_by_the_sweep,
    reconciliation_repairs_lossy_callbacks,
    notes_that_do_not_move_last_updated_are_found_by_the_sweep,
    a_disabled_callback_registration_is_repaired,
    the_run_loops_sync_and_stop_when_told,
    a_failing_connectwise_is_visible_on_the_case_and_caught_up_later,
);

/// Bodies and signatures the hook receiver got, in order.
type Received = Arc<Mutex<Vec<(Vec<u8>, String)>>>;

#[derive(Clone)]
struct Hook {
    ctx: SyncContext,
    hits: Arc<AtomicUsize>,
    received: Received,
}

async fn hook(
    State(h): State<Hook>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    h.hits.fetch_add(1, Ordering::SeqCst);
    let sig = headers
        .get("x-content-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    h.received
        .lock()
        .unwrap()
        .push((body.to_vec(), sig.clone().unwrap_or_default()));
    let out = accept_callback(&h.ctx, &id, sig.as_deref(), &body).await;
    (StatusCode::from_u16(out.status).unwrap(), out.message)
}

async fn count_only(State(h): State<Hook>) -> StatusCode {
    h.hits.fetch_add(1, Ordering::SeqCst);
    StatusCode::NOT_FOUND
}

struct Env {
    sim: cw_sim::SimHandle,
    ctx: SyncContext,
    store: Arc<dyn Store>,
    integration: Integration,
    account_id: String,
    tech: cw_sim::MemberKeys,
    api: cw_sim::MemberKeys,
    http: reqwest::Client,
    hook_base: String,
    hook_hits: Arc<AtomicUsize>,
    received: Received,
    db: Option<ScratchDb>,
}

fn audit(account_id: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.into(),
        actor: "test".into(),
        at: now_millis(),
        action: "test".into(),
        detail: json!({}),
    }
}

fn config() -> SyncConfig {
    SyncConfig {
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        max_attempts: 3,
        batch: 16,
        reconcile_interval: Duration::from_millis(20),
        reconcile_overlap: Duration::from_secs(120),
        coalesce_window: Duration::from_millis(5),
        request_timeout: Duration::from_secs(5),
        notes_sweep_every: 2,
        callback_check_every: 3,
        ..SyncConfig::default()
    }
}

/// A fresh environment, or `None` when PostgreSQL was asked for and the variable is unset.
async fn setup(backend: Backend) -> Option<Env> {
    let Some(db) = ScratchDb::for_test(backend, "cb_inbound").await else {
        eprintln!("note: {PG_ENV} is unset; the PostgreSQL inbound tests are skipped");
        return None;
    };
    let sim = cw_sim::start(cw_sim::SimOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: cw_sim::Seed::Demo,
        state_dir: None,
        time_scale: 0.01,
    })
    .await
    .expect("cw-sim starts");
    let keys = sim.demo_keys().cloned().expect("demo keys");
    let store = casebridge_store::open(db.url(), true)
        .await
        .unwrap_or_else(|e| panic!("opening the {backend:?} store: {e}"));
    let secrets = SecretBox::new("k1", [7; 32]);
    let sealed = secrets.seal(&keys.api_member.private_key);
    let ctx = SyncContext::new(
        store.clone(),
        Arc::new(ConnectWiseFactory::new(secrets, Duration::from_secs(5))),
        config(),
    );

    let account = store
        .create_account("Acme", AccountKind::Standalone, None)
        .await
        .expect("account");
    let integration = casebridge_testkit::sim_integration(&sim, &account.id, sealed, "ACMECORP");
    store
        .save_integration(&integration, &audit(&account.id))
        .await
        .expect("integration");
    store
        .upsert_rules(&[Rule {
            id: "r-1".into(),
            title: "Suspicious PowerShell".into(),
            level: Some(Criticality::High),
            source: "sigma".into(),
            logsource: json!({}),
            tags: vec![],
            suggested_rule_type: "Endpoint".into(),
        }])
        .await
        .expect("rule");
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
            rule_id: "r-1".into(),
            rule_type: "Endpoint".into(),
        }],
    };
    store
        .put_mapping(
            &account.id,
            MappingResource::Board,
            Some(&serde_json::to_value(&boards).unwrap()),
            &audit(&account.id),
        )
        .await
        .expect("board mappings");
    let crit = CriticalityMappings {
        critical: Some(1),
        high: Some(2),
        medium: Some(3),
        low: Some(4),
        informational: Some(5),
    };
    store
        .put_mapping(
            &account.id,
            MappingResource::Criticality,
            Some(&serde_json::to_value(&crit).unwrap()),
            &audit(&account.id),
        )
        .await
        .expect("criticality mappings");
    let psa = ctx.connectors.connector(&integration).expect("connector");
    let statuses = psa.board_statuses(1).await.expect("board statuses");
    let mut mapping = propose_defaults(1, &statuses.iter().map(|s| s.facts()).collect::<Vec<_>>());
    mapping.confirmed = true;
    mapping.statuses.in_progress = Some(102);
    assert_eq!(
        (mapping.statuses.escalated, mapping.statuses.closed),
        (Some(101), Some(105))
    );
    store
        .put_status_mappings(
            &account.id,
            &StatusMappings {
                boards: vec![mapping],
            },
            &audit(&account.id),
        )
        .await
        .expect("status mappings");

    // hook receiver
    let hits = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let state = Hook {
        ctx: ctx.clone(),
        hits: hits.clone(),
        received: received.clone(),
    };
    let app = axum::Router::new()
        .route("/hooks/connectwise/{id}", axum::routing::post(hook))
        .fallback(count_only)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mode =
        check_callback_registration(&ctx, &integration, &hook_url(&hook_base, &integration.id))
            .await
            .expect("registration");
    assert_eq!(mode, "callbacks");
    let integration = store.integration(&integration.id).await.unwrap().unwrap();
    assert_eq!(integration.sync_mode, "callbacks");
    assert!(integration.callback_id.is_some());

    Some(Env {
        sim,
        ctx,
        store,
        integration,
        account_id: account.id,
        tech: keys.technician.clone(),
        api: keys.api_member.clone(),
        http: reqwest::Client::new(),
        hook_base,
        hook_hits: hits,
        received,
        db: Some(db),
    })
}

impl Env {
    async fn teardown(mut self) {
        if let Some(db) = self.db.take() {
            db.drop_db().await;
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}/v4_6_release/apis/3.0/{path}", self.sim.url())
    }

    async fn cw(
        &self,
        who: &cw_sim::MemberKeys,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.api_url(path))
            .basic_auth(
                format!("{}+{}", who.company, who.public_key),
                Some(&who.private_key),
            )
            .header("clientId", &who.client_id);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("cw-sim answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn tech_note(&self, ticket: i64, text: &str, internal: bool) -> i64 {
        let body = if internal {
            json!({"text": text, "internalAnalysisFlag": true})
        } else {
            json!({"text": text, "detailDescriptionFlag": true})
        };
        let (s, v) = self
            .cw(
                &self.tech,
                reqwest::Method::POST,
                &format!("service/tickets/{ticket}/notes"),
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    async fn tech_status(&self, ticket: i64, status: i64) {
        let ops = json!([{"op": "replace", "path": "status", "value": {"id": status}}]);
        let (s, v) = self
            .cw(
                &self.tech,
                reqwest::Method::PATCH,
                &format!("service/tickets/{ticket}"),
                Some(ops),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/__sim/{path}", self.sim.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn requests_seen(&self) -> u64 {
        self.sim_get("faults").await["requests_seen"]
            .as_u64()
            .unwrap()
    }

    async fn set_faults(&self, faults: Value) {
        let r = self
            .http
            .put(format!("{}/__sim/faults", self.sim.url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    async fn case(&self, id: &str) -> Case {
        self.store.case(id).await.unwrap().unwrap()
    }

    /// A new alert case, escalated and ticketed through the outbox. Returns it with its ticket.
    async fn ticketed_case(&self, key: &str) -> (Case, i64) {
        let inserted = self
            .store
            .insert_alert_case(
                &NewCase {
                    id: new_id("case"),
                    account_id: self.account_id.clone(),
                    rule_id: "r-1".into(),
                    title: format!("PowerShell download on {key}"),
                    description: "PowerShell downloaded a file.".into(),
                    criticality: Criticality::High,
                    source_format: "sigma".into(),
                    source_key: key.into(),
                    observables: json!([{"kind": "host", "value": key}]),
                    raw_alert: json!({}),
                },
                "test",
            )
            .await
            .unwrap();
        let AlertInsert::Created(case) = inserted else {
            panic!("a new case")
        };
        escalation::escalate(&self.ctx, &case.id, "analyst")
            .await
            .unwrap();
        self.drive_outbox(&case.id).await;
        let case = self.case(&case.id).await;
        let ticket = case.ticket.as_ref().expect("ticket linked").id;
        (case, ticket)
    }

    /// Runs the outbox until the case has no unfinished job.
    async fn drive_outbox(&self, case_id: &str) {
        let worker = outbox::Worker::new(self.ctx.clone());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            worker.run_once().await.unwrap();
            let pending = self
                .store
                .jobs(None, std::slice::from_ref(&self.account_id), 1000)
                .await
                .unwrap()
                .into_iter()
                .any(|j| {
                    j.case_id == case_id
                        && matches!(
                            j.state,
                            casebridge_store::JobState::Pending
                                | casebridge_store::JobState::Running
                        )
                });
            if !pending {
                return;
            }
            assert!(Instant::now() < deadline, "outbox did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until cw-sim logged `n` finished deliveries (any outcome) in total.
    async fn wait_deliveries(&self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let st = self.sim_get("state").await;
            let done = st["deliveries"].as_array().map(|d| d.len()).unwrap_or(0);
            if done >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cw-sim delivered {done} of {n} callbacks"
            );
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    async fn deliveries(&self) -> usize {
        self.sim_get("state").await["deliveries"]
            .as_array()
            .map(|d| d.len())
            .unwrap_or(0)
    }

    async fn cw_notes(&self, case_id: &str) -> Vec<casebridge_store::Note> {
        self.store
            .notes(case_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.origin == NoteOrigin::Connectwise)
            .collect()
    }
}

async fn technician_changes_arrive_through_callbacks(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-1").await;
    assert_eq!(case.status, CaseStatus::Escalated);
    let activity_before = env.store.activity(&case.id).await.unwrap().len();

    // a discussion note
    let shared_id = env
        .tech_note(ticket, "Isolated the host, re-imaging tomorrow.", false)
        .await;
    process_until!(
        env,
        "the shared note",
        env.cw_notes(&case.id).await.len() == 1
    );
    let notes = env.cw_notes(&case.id).await;
    assert_eq!(notes[0].text, "Isolated the host, re-imaging tomorrow.");
    assert_eq!(notes[0].visibility, Visibility::Shared);
    assert_eq!(notes[0].author, "jtech");
    assert_eq!(notes[0].cw_note_id, Some(shared_id));
    let i = env
        .store
        .integration(&env.integration.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        i.last_callback_at.is_some(),
        "the callback time is recorded"
    );

    // an internal-analysis note stays internal
    env.tech_note(ticket, "Hash matches known loader.", true)
        .await;
    process_until!(
        env,
        "the internal note",
        env.cw_notes(&case.id).await.len() == 2
    );
    let internal = env
        .cw_notes(&case.id)
        .await
        .into_iter()
        .find(|n| n.text.contains("loader"))
        .unwrap();
    assert_eq!(internal.visibility, Visibility::Internal);

    // 102 is mapped to in_progress: the case follows
    env.tech_status(ticket, 102).await;
    process_until!(
        env,
        "in_progress",
        env.case(&case.id).await.status == CaseStatus::InProgress
    );

    // a closed status closes the case
    env.tech_status(ticket, 105).await;
    process_until!(
        env,
        "closed",
        env.case(&case.id).await.status == CaseStatus::Closed
    );
    let closed = env.case(&case.id).await;
    assert_eq!(
        closed.close_reason.as_deref(),
        Some("closed_in_connectwise")
    );
    assert_eq!(closed.ticket.as_ref().unwrap().status_id, Some(105));

    // an open status reopens it as in_progress
    env.tech_status(ticket, 101).await;
    process_until!(
        env,
        "reopened",
        env.case(&case.id).await.status == CaseStatus::InProgress
    );
    let reopened = env.case(&case.id).await;
    assert_eq!(reopened.close_reason, None);
    assert_eq!(reopened.ticket.as_ref().unwrap().status_id, Some(101));

    let log = env.store.activity(&case.id).await.unwrap();
    let inbound: Vec<_> = log[activity_before..]
        .iter()
        .filter(|a| a.direction == Direction::Inbound)
        .collect();
    assert!(inbound.iter().any(|a| a.kind == "note_inbound"
        && a.actor == "jtech"
        && a.message.contains("note from jtech added")));
    let status_msgs: Vec<&str> = inbound
        .iter()
        .filter(|a| a.actor == "jtech" && a.message.contains("ConnectWise status"))
        .map(|a| a.message.as_str())
        .collect();
    assert!(
        status_msgs
            .iter()
            .any(|m| m.contains("105 (Resolved)") && m.contains("closed_in_connectwise")),
        "{status_msgs:?}"
    );
    assert!(
        status_msgs
            .iter()
            .any(|m| m.contains("101 (New)") && m.contains("reopened")),
        "{status_msgs:?}"
    );
    assert!(
        status_msgs
            .iter()
            .any(|m| m.contains("102 (In Progress)") && m.contains("in_progress")),
        "{status_msgs:?}"
    );
    // each note imported once, even though cw-sim sent a callback per change
    assert_eq!(env.cw_notes(&case.id).await.len(), 2);
    // nothing inbound was queued back to ConnectWise
    let jobs = env
        .store
        .jobs(None, std::slice::from_ref(&env.account_id), 100)
        .await
        .unwrap();
    assert_eq!(
        jobs.iter().filter(|j| j.case_id == case.id).count(),
        1,
        "only the create job"
    );
}

async fn our_own_writes_are_not_applied_back(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-echo").await;
    let deliveries = env.deliveries().await;

    // a portal note goes out (with its marker) and its callback comes back
    changes::add_note(
        &env.ctx,
        &case.id,
        "Customer informed by phone.",
        Visibility::Shared,
        "analyst@acme",
    )
    .await
    .unwrap();
    env.drive_outbox(&case.id).await;
    env.wait_deliveries(deliveries + 1).await;
    // the portal closes the case: a status write and a resolution note, each with a callback
    changes::change_status(
        &env.ctx,
        &case.id,
        CaseStatus::Closed,
        Some("resolved".into()),
        Some("Re-imaged.".into()),
        "analyst@acme",
    )
    .await
    .unwrap();
    env.drive_outbox(&case.id).await;
    env.wait_deliveries(deliveries + 3).await;
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    Reconciler::new(env.ctx.clone()).run_once().await.unwrap();

    let after = env.case(&case.id).await;
    assert_eq!(after.status, CaseStatus::Closed);
    assert_eq!(
        after.close_reason.as_deref(),
        Some("resolved"),
        "our own close is not re-applied as closed_in_connectwise"
    );
    assert!(
        env.cw_notes(&case.id).await.is_empty(),
        "none of our notes came back"
    );
    // the case holds the portal note and the closing note, each linked to the ticket note it became
    let notes = env.store.notes(&case.id).await.unwrap();
    let texts: Vec<&str> = notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["Customer informed by phone.", "Re-imaged."]);
    let (_, on_ticket) = env
        .cw(
            &env.tech,
            reqwest::Method::GET,
            &format!("service/tickets/{ticket}/notes"),
            None,
        )
        .await;
    let on_ticket = on_ticket.as_array().cloned().unwrap_or_default();
    for n in &notes {
        let sent = on_ticket
            .iter()
            .find(|t| t["id"].as_i64() == n.cw_note_id)
            .unwrap_or_else(|| panic!("{n:?} not linked to a note of {on_ticket:?}"));
        assert!(
            sent["text"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&n.text),
            "{sent:?}"
        );
    }
    assert!(
        on_ticket
            .iter()
            .any(|t| t["resolutionFlag"] == json!(true) && t["id"].as_i64() == notes[1].cw_note_id),
        "the closing note went out as the resolution: {on_ticket:?}"
    );
    let log = env.store.activity(&case.id).await.unwrap();
    assert!(
        !log.iter().any(|a| a.direction == Direction::Inbound),
        "{log:#?}"
    );

    // The race: our status write reached ConnectWise but our sync state does not know it yet.
    changes::change_status(
        &env.ctx,
        &case.id,
        CaseStatus::InProgress,
        None,
        None,
        "analyst@acme",
    )
    .await
    .unwrap();
    env.drive_outbox(&case.id).await;
    let mut state = env.store.ticket_sync(&case.id).await.unwrap().unwrap();
    assert_eq!(state.last_status_id, Some(102));
    state.last_status_id = Some(105);
    env.store.put_ticket_sync(&state).await.unwrap();
    sync_ticket(&env.ctx, &env.case(&case.id).await, "test")
        .await
        .unwrap();
    let after = env.case(&case.id).await;
    assert_eq!(after.status, CaseStatus::InProgress);
    let log = env.store.activity(&case.id).await.unwrap();
    assert!(
        !log.iter().any(|a| a.direction == Direction::Inbound),
        "an echo of our write changes nothing: {log:#?}"
    );
    assert_eq!(
        env.store
            .ticket_sync(&case.id)
            .await
            .unwrap()
            .unwrap()
            .last_status_id,
        Some(102)
    );
    let (_, t) = env
        .cw(
            &env.tech,
            reqwest::Method::GET,
            &format!("service/tickets/{ticket}"),
            None,
        )
        .await;
    assert_eq!(t["status"]["id"], 102);
}

async fn a_change_older_than_our_last_write_is_not_applied(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-order").await;
    let mut state = env.store.ticket_sync(&case.id).await.unwrap().unwrap();
    state.last_write_cw_at = Some("2999-01-01T00:00:00Z".into());
    env.store.put_ticket_sync(&state).await.unwrap();
    env.tech_status(ticket, 105).await;
    sync_ticket(&env.ctx, &case, "test").await.unwrap();
    assert_eq!(env.case(&case.id).await.status, CaseStatus::Escalated);
    let log = env.store.activity(&case.id).await.unwrap();
    let entry = log
        .iter()
        .find(|a| a.kind == "status_not_applied")
        .expect("the Activity Log says so");
    assert!(
        entry.message.contains("2999-01-01T00:00:00Z") && entry.message.contains("105"),
        "{}",
        entry.message
    );
    assert_eq!(entry.actor, "jtech");
}

/// A signed copy of `body` with cw-sim's real signing key (read from a real delivery's key_url).
async fn signing_key(env: &Env) -> (String, String) {
    let (body, _) = env
        .received
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("a real delivery was received");
    let v: Value = serde_json::from_slice(&body).unwrap();
    let key_url = v["Metadata"]["key_url"].as_str().unwrap().to_string();
    let key: Value = env
        .http
        .get(&key_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (key_url, key["signing_key"].as_str().unwrap().to_string())
}

fn envelope(key_url: &str, message_id: &str, kind: &str, id: Value, entity: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "MessageId": message_id, "FromUrl": "127.0.0.1", "CompanyId": "cbdemo", "MemberId": "jtech", "Action": "updated",
        "Type": kind, "ID": id, "CallbackObjectRecId": 1, "ProductInstanceId": "p", "PartnerId": "x",
        "Entity": entity, "Metadata": {"key_url": key_url}
    }))
    .unwrap()
}

async fn forged_and_odd_callbacks_change_nothing(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-forged").await;
    env.wait_deliveries(1).await; // the ticket's "added" callback went through the hook
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let (key_url, key) = signing_key(env).await;
    let ctx = &env.ctx;
    let id = env.integration.id.as_str();
    let entity = |record_type: &str| {
        Value::String(json!({"id": ticket, "recordType": record_type}).to_string())
    };
    let notes_before = env.store.notes(&case.id).await.unwrap();
    let log_before = env.store.activity(&case.id).await.unwrap();
    let requests_before = env.requests_seen().await;

    let good = envelope(
        &key_url,
        "forge-1",
        "ticket",
        json!(ticket),
        entity("ServiceTicket"),
    );
    let sig = callback_signature(&key, &good);

    // unknown integration
    assert_eq!(
        accept_callback(ctx, "int_nope", Some(&sig), &good)
            .await
            .status,
        404
    );
    // missing / wrong signatures
    assert_eq!(accept_callback(ctx, id, None, &good).await.status, 401);
    assert_eq!(accept_callback(ctx, id, Some(""), &good).await.status, 401);
    assert_eq!(
        accept_callback(
            ctx,
            id,
            Some(&callback_signature("not-the-key", &good)),
            &good
        )
        .await
        .status,
        401
    );
    assert_eq!(
        accept_callback(ctx, id, Some("%%% not base64"), &good)
            .await
            .status,
        401
    );
    let mut tampered = good.clone();
    let pos = tampered.len() - 3;
    tampered[pos] ^= 0x01;
    assert_eq!(
        accept_callback(ctx, id, Some(&sig), &tampered).await.status,
        401
    );
    // key_url on another port of the same host, or another host: refused without fetching
    let hits = env.hook_hits.load(Ordering::SeqCst);
    let other_port = format!(
        "{}/v2025_1/system/callbackkey/index.rails?id=x",
        env.hook_base
    );
    let forged = envelope(&other_port, "forge-2", "ticket", json!(ticket), Value::Null);
    let out = accept_callback(
        ctx,
        id,
        Some(&callback_signature("attacker", &forged)),
        &forged,
    )
    .await;
    assert_eq!(out.status, 401);
    assert!(out.message.contains("key_url"), "{}", out.message);
    assert_eq!(
        env.hook_hits.load(Ordering::SeqCst),
        hits,
        "the forged key_url was never fetched"
    );
    let evil = envelope(
        "https://evil.example.com/key",
        "forge-3",
        "ticket",
        json!(ticket),
        Value::Null,
    );
    assert_eq!(
        accept_callback(ctx, id, Some(&callback_signature("attacker", &evil)), &evil)
            .await
            .status,
        401
    );
    // a key_url on the right origin but with a made-up key id
    let wrong_id = key_url.split("&id=").next().unwrap().to_string() + "&id=made-up";
    let b = envelope(&wrong_id, "forge-4", "ticket", json!(ticket), Value::Null);
    assert_eq!(
        accept_callback(ctx, id, Some(&callback_signature("attacker", &b)), &b)
            .await
            .status,
        401
    );
    // garbage, non-UTF-8, too deep: not JSON, refused as such
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        b"".to_vec(),
        b"{{{{".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        deep.into_bytes(),
    ] {
        let sig = callback_signature(&key, &body);
        let out = accept_callback(ctx, id, Some(&sig), &body).await;
        assert_eq!(
            (out.status, out.message.contains("the body is not JSON")),
            (400, true),
            "{:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(20)]),
            out.message
        );
    }
    // JSON of the wrong shape: no key to verify the signature with
    for body in [
        b"[1,2,3]".to_vec(),
        b"null".to_vec(),
        br#"{"Metadata": {"key_url": 7}}"#.to_vec(),
    ] {
        let sig = callback_signature(&key, &body);
        let out = accept_callback(ctx, id, Some(&sig), &body).await;
        assert_eq!(
            (out.status, out.message.contains("no Metadata.key_url")),
            (401, true),
            "{:?}: {}",
            String::from_utf8_lossy(&body),
            out.message
        );
    }
    let huge = vec![b' '; 3 * 1024 * 1024];
    assert_eq!(
        accept_callback(ctx, id, Some(&sig), &huge).await.status,
        413
    );

    // signed but malformed envelopes
    for (mid, kind, tid, ent) in [
        ("", "ticket", json!(ticket), Value::Null),
        ("m-bad-id", "ticket", json!("not a number"), Value::Null),
        ("m-neg", "ticket", json!(-5), Value::Null),
        ("m-ent", "ticket", json!(ticket), json!(42)),
    ] {
        let b = envelope(&key_url, mid, kind, tid, ent);
        assert_eq!(
            accept_callback(ctx, id, Some(&callback_signature(&key, &b)), &b)
                .await
                .status,
            400,
            "{mid}"
        );
    }
    let mut no_type: Value = serde_json::from_slice(&good).unwrap();
    no_type.as_object_mut().unwrap().remove("Type");
    let b = serde_json::to_vec(&no_type).unwrap();
    assert_eq!(
        accept_callback(ctx, id, Some(&callback_signature(&key, &b)), &b)
            .await
            .status,
        400
    );

    // signed and well-formed, but deliberately ignored
    let contact = envelope(&key_url, "m-contact", "contact", json!(ticket), Value::Null);
    assert_eq!(
        accept_callback(ctx, id, Some(&callback_signature(&key, &contact)), &contact)
            .await
            .status,
        202
    );
    let project = envelope(
        &key_url,
        "m-project",
        "ticket",
        json!(ticket),
        entity("ProjectTicket"),
    );
    assert_eq!(
        accept_callback(ctx, id, Some(&callback_signature(&key, &project)), &project)
            .await
            .status,
        202
    );
    let unlinked = envelope(
        &key_url,
        "m-unlinked",
        "ticket",
        json!(ticket + 1000),
        entity("ServiceTicket"),
    );
    let out = accept_callback(
        ctx,
        id,
        Some(&callback_signature(&key, &unlinked)),
        &unlinked,
    )
    .await;
    assert_eq!(
        (out.status, out.message.contains("not linked")),
        (202, true),
        "{}",
        out.message
    );
    assert_eq!(
        env.requests_seen().await,
        requests_before,
        "nothing so far made a ConnectWise API request"
    );
    assert!(
        env.store.take_inbox(100).await.unwrap().is_empty(),
        "nothing was stored"
    );

    // a signed "deleted" with Entity null for a ticket that still exists is only a hint
    let deleted = envelope(&key_url, "m-deleted", "ticket", json!(ticket), Value::Null);
    let sig_deleted = callback_signature(&key, &deleted);
    assert_eq!(
        accept_callback(ctx, id, Some(&sig_deleted), &deleted)
            .await
            .status,
        200
    );
    // the same MessageId again is stored once
    let dup = accept_callback(ctx, id, Some(&sig_deleted), &deleted).await;
    assert_eq!((dup.status, dup.message.contains("duplicate")), (200, true));
    assert_eq!(
        Processor::new(ctx.clone()).run_once().await.unwrap(),
        1,
        "one stored event"
    );

    let after = env.case(&case.id).await;
    assert_eq!(
        after.ticket.as_ref().unwrap().state,
        TicketState::Linked,
        "the ticket still exists in ConnectWise"
    );
    assert_eq!(after.status, CaseStatus::Escalated);
    assert_eq!(env.store.notes(&case.id).await.unwrap(), notes_before);
    assert_eq!(
        env.store.activity(&case.id).await.unwrap().len(),
        log_before.len()
    );
}

async fn events_for_one_ticket_are_coalesced(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-coalesce").await;
    env.wait_deliveries(1).await;
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let event = |m: &str| InboxEvent {
        message_id: m.into(),
        integration_id: env.integration.id.clone(),
        ticket_id: ticket,
        received_at: now_millis(),
    };
    env.store.insert_inbox(&event("one")).await.unwrap();
    let before = env.requests_seen().await;
    assert_eq!(Processor::new(env.ctx.clone()).run_once().await.unwrap(), 1);
    let single = env.requests_seen().await - before;
    assert!(single >= 2, "a sync reads the ticket and its notes");
    for i in 0..5 {
        env.store
            .insert_inbox(&event(&format!("burst-{i}")))
            .await
            .unwrap();
    }
    let before = env.requests_seen().await;
    assert_eq!(Processor::new(env.ctx.clone()).run_once().await.unwrap(), 5);
    assert_eq!(
        env.requests_seen().await - before,
        single,
        "five events, one sync"
    );
    assert_eq!(env.case(&case.id).await.status, CaseStatus::Escalated);
}

/// Deliveries arriving together share group commits (several in flight at once); a MessageId
/// repeated across those concurrent batches is still stored exactly once. Processed events are
/// forgotten after `inbox_retention`, after which the same MessageId counts as new again.
async fn concurrent_repeats_are_stored_once_and_old_events_are_pruned(env: &Env) {
    let (_case, ticket) = env.ticketed_case("host-group-commit").await;
    env.wait_deliveries(1).await;
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let (key_url, key) = signing_key(env).await;
    let entity = json!(json!({"id": ticket, "recordType": "ServiceTicket"}).to_string());
    let mut tasks = tokio::task::JoinSet::new();
    for copy in 0..3 {
        for m in 0..20 {
            let body = envelope(
                &key_url,
                &format!("gc-{m}"),
                "ticket",
                json!(ticket),
                entity.clone(),
            );
            let sig = callback_signature(&key, &body);
            let (ctx, id) = (env.ctx.clone(), env.integration.id.clone());
            tasks.spawn(async move {
                let out = accept_callback(&ctx, &id, Some(&sig), &body).await;
                (m, copy, out)
            });
        }
    }
    let mut new_per_message = [0u32; 20];
    while let Some(r) = tasks.join_next().await {
        let (m, copy, out) = r.unwrap();
        assert_eq!(out.status, 200, "gc-{m} copy {copy}: {}", out.message);
        if !out.message.contains("duplicate") {
            new_per_message[m] += 1;
        }
    }
    assert_eq!(
        new_per_message, [1; 20],
        "each MessageId stored exactly once"
    );
    assert_eq!(
        Processor::new(env.ctx.clone()).run_once().await.unwrap(),
        20
    );

    // kept within the retention…
    let reconciler = Reconciler::new(env.ctx.clone());
    assert_eq!(
        reconciler.prune_inbox().await,
        0,
        "a week's retention keeps them"
    );
    let body = envelope(&key_url, "gc-0", "ticket", json!(ticket), entity.clone());
    let sig = callback_signature(&key, &body);
    let again = accept_callback(&env.ctx, &env.integration.id, Some(&sig), &body).await;
    assert!(again.message.contains("duplicate"), "{}", again.message);
    // …and forgotten after it
    let mut short = env.ctx.clone();
    short.config.inbox_retention = Duration::ZERO;
    // (the events were received before the processor's ConnectWise round trips: in the past)
    let pruned = Reconciler::new(short).prune_inbox().await;
    assert!(pruned >= 20, "pruned {pruned}");
    let again = accept_callback(&env.ctx, &env.integration.id, Some(&sig), &body).await;
    assert_eq!(
        (again.status, again.message.contains("accepted")),
        (200, true),
        "{}",
        again.message
    );
}

async fn a_deleted_ticket_unlinks_and_escalating_creates_a_new_one(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-deleted").await;
    let (s, _) = env
        .cw(
            &env.tech,
            reqwest::Method::DELETE,
            &format!("service/tickets/{ticket}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    process_until!(
        env,
        "the deleted link",
        env.case(&case.id)
            .await
            .ticket
            .as_ref()
            .is_some_and(|t| t.state == TicketState::Deleted)
    );
    let log = env.store.activity(&case.id).await.unwrap();
    assert!(log.iter().any(|a| {
        a.kind == "ticket_deleted"
            && a.message
                .contains(&format!("ticket #{ticket} was deleted in ConnectWise"))
    }));
    // no more syncing of the dead ticket
    assert!(
        env.store
            .linked_cases(&env.integration.id)
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != case.id)
    );

    escalation::escalate(&env.ctx, &case.id, "analyst")
        .await
        .unwrap();
    assert!(
        env.store.has_pending_create(&case.id).await.unwrap(),
        "a new create is queued"
    );
    env.drive_outbox(&case.id).await;
    let relinked = env.case(&case.id).await;
    let link = relinked.ticket.unwrap();
    assert_eq!(link.state, TicketState::Linked);
    assert_ne!(link.id, ticket);
}

async fn a_merged_ticket_is_noticed_by_the_sweep(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-merged").await;
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    let (s, parent) = env
        .cw(
            &env.tech,
            reqwest::Method::POST,
            "service/tickets",
            Some(json!({"summary": "Parent incident", "board": {"id": 1}, "company": {"identifier": "ACMECORP"}})),
        )
        .await;
    assert_eq!(s, 201, "{parent}");
    let parent_id = parent["id"].as_i64().unwrap();
    env.tech_note(ticket, "Duplicate of the parent incident.", false)
        .await;
    let (s, v) = env
        .cw(
            &env.tech,
            reqwest::Method::POST,
            &format!("service/tickets/{parent_id}/merge"),
            Some(json!({"mergeTicketIds": [ticket]})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    assert_eq!(
        Reconciler::new(env.ctx.clone())
            .sweep_notes()
            .await
            .unwrap(),
        1
    );
    let after = env.case(&case.id).await;
    assert_eq!(after.ticket.as_ref().unwrap().state, TicketState::Merged);
    assert_eq!(
        env.cw_notes(&case.id).await.len(),
        1,
        "notes written before the merge are kept"
    );
    let log = env.store.activity(&case.id).await.unwrap();
    assert!(log.iter().any(|a| {
        a.kind == "ticket_merged"
            && a.message
                .contains(&format!("merged into ticket #{parent_id}"))
    }));
}

async fn reconciliation_repairs_lossy_callbacks(env: &Env) {
    let (a, ticket_a) = env.ticketed_case("host-a").await;
    let (b, ticket_b) = env.ticketed_case("host-b").await;
    let (c, ticket_c) = env.ticketed_case("host-c").await;
    env.wait_deliveries(3).await;
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let base = env.deliveries().await;
    env.set_faults(
        json!({"seed": 7, "callbacks": {"drop_rate": 0.3, "duplicate_rate": 0.3, "reorder": true}}),
    )
    .await;
    // the processor runs while the technician works and the callbacks get lost, doubled, reordered
    let (stop, rx) = tokio::sync::watch::channel(false);
    let processor = tokio::spawn(Processor::new(env.ctx.clone()).run(rx));

    let mut expected_a = Vec::new();
    for i in 0..6 {
        let text = format!("step {i} on A");
        env.tech_note(ticket_a, &text, i % 2 == 1).await;
        expected_a.push(text);
    }
    env.tech_status(ticket_a, 102).await;
    let mut expected_b = Vec::new();
    for i in 0..4 {
        let text = format!("B note {i}");
        env.tech_note(ticket_b, &text, false).await;
        expected_b.push(text);
    }
    env.tech_status(ticket_c, 102).await;
    env.tech_status(ticket_c, 103).await;
    // Every one of those 13 changes is logged by cw-sim once it was dropped or delivered (a
    // delivered one was stored before it was logged). A late duplicate copy is refused by its
    // MessageId, so nothing of this phase can arrive after the processor stops.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let st = env.sim_get("state").await;
        let mut ids: Vec<String> = st["deliveries"].as_array().unwrap()[base..]
            .iter()
            .filter_map(|d| d["message_id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        if ids.len() >= 13 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cw-sim finished {} of 13 deliveries",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.send(true).unwrap();
    processor.await.unwrap();
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let st = env.sim_get("state").await;
    let log = &st["deliveries"].as_array().unwrap()[base..];
    assert!(
        log.iter().any(|d| d["outcome"] == "dropped"),
        "some callbacks were dropped"
    );
    let mut ids: Vec<&str> = log
        .iter()
        .filter_map(|d| d["message_id"].as_str())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert!(ids.len() < n, "some callbacks were delivered twice");

    // the last changes lose every callback
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    env.tech_note(ticket_a, "final word on A", false).await;
    expected_a.push("final word on A".into());
    env.tech_status(ticket_a, 105).await;
    env.tech_note(ticket_b, "final word on B", true).await;
    expected_b.push("final word on B".into());
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    assert!(
        !env.cw_notes(&a.id)
            .await
            .iter()
            .any(|n| n.text == "final word on A"),
        "the two sides disagree before reconciliation"
    );
    assert_ne!(env.case(&a.id).await.status, CaseStatus::Closed);

    let reconciler = Reconciler::new(env.ctx.clone());
    let report = reconciler.run_once().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.integrations, 1);
    assert!(report.updated >= 2, "{report:?}");
    reconciler.sweep_notes().await.unwrap();

    let texts = |notes: Vec<casebridge_store::Note>| {
        let mut t: Vec<String> = notes.into_iter().map(|n| n.text).collect();
        t.sort();
        t
    };
    let mut want_a = expected_a.clone();
    want_a.sort();
    assert_eq!(texts(env.cw_notes(&a.id).await), want_a);
    let internal = env
        .cw_notes(&a.id)
        .await
        .into_iter()
        .filter(|n| n.visibility == Visibility::Internal)
        .count();
    assert_eq!(internal, 3);
    let a_now = env.case(&a.id).await;
    assert_eq!(
        (a_now.status, a_now.close_reason.as_deref()),
        (CaseStatus::Closed, Some("closed_in_connectwise"))
    );
    expected_b.sort();
    assert_eq!(texts(env.cw_notes(&b.id).await), expected_b);
    assert_eq!(env.case(&b.id).await.status, CaseStatus::Escalated);
    // C ends on 103, which no case status maps to: whatever step was seen last, the case does
    // not move for 103 and the Activity Log says why
    let c_now = env.case(&c.id).await;
    assert!(
        matches!(c_now.status, CaseStatus::Escalated | CaseStatus::InProgress),
        "{:?}",
        c_now.status
    );
    assert_eq!(c_now.ticket.as_ref().unwrap().status_id, Some(103));
    let log = env.store.activity(&c.id).await.unwrap();
    assert!(
        log.iter()
            .any(|x| x.kind == "status_kept" && x.message.contains("103 (Waiting on Customer)")),
        "{log:#?}"
    );

    // the watermark is ConnectWise's clock: the newest lastUpdated among the linked tickets
    let st = env.sim_get("state").await;
    let newest = st["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| [ticket_a, ticket_b, ticket_c].contains(&t["id"].as_i64().unwrap()))
        .filter_map(|t| t["_info"]["lastUpdated"].as_str().map(str::to_string))
        .max()
        .unwrap();
    let i = env
        .store
        .integration(&env.integration.id)
        .await
        .unwrap()
        .unwrap();
    let wm = time::OffsetDateTime::parse(
        i.watermark.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let newest =
        time::OffsetDateTime::parse(&newest, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(wm, newest);

    // a second pass changes nothing and imports nothing twice
    let notes_a = env.store.notes(&a.id).await.unwrap().len();
    let log_a = env.store.activity(&a.id).await.unwrap().len();
    reconciler.run_once().await.unwrap();
    reconciler.sweep_notes().await.unwrap();
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    assert_eq!(env.store.notes(&a.id).await.unwrap().len(), notes_a);
    assert_eq!(env.store.activity(&a.id).await.unwrap().len(), log_a);
}

async fn notes_that_do_not_move_last_updated_are_found_by_the_sweep(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-sweep").await;
    let reconciler = Reconciler::new(env.ctx.clone());
    reconciler.run_once().await.unwrap();
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    env.tech_note(ticket, "Silent note.", false).await;
    reconciler.sweep_notes().await.unwrap();
    let notes = env.cw_notes(&case.id).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].text, "Silent note.");
    // a ticket deleted while callbacks are lost: the sweep notices
    let (s, _) = env
        .cw(
            &env.tech,
            reqwest::Method::DELETE,
            &format!("service/tickets/{ticket}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    reconciler.run_once().await.unwrap();
    reconciler.sweep_notes().await.unwrap();
    assert_eq!(
        env.case(&case.id).await.ticket.unwrap().state,
        TicketState::Deleted
    );
}

async fn a_disabled_callback_registration_is_repaired(env: &Env) {
    let cb_id = env.integration.callback_id.unwrap();
    let (s, v) = env
        .cw(
            &env.api,
            reqwest::Method::PATCH,
            &format!("system/callbacks/{cb_id}"),
            Some(json!([{"op": "replace", "path": "inactiveFlag", "value": true}])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let reconciler = Reconciler::new(env.ctx.clone());
    assert_eq!(reconciler.check_registrations().await.unwrap(), 1);
    let st = env.sim_get("state").await;
    let hook = hook_url(&env.hook_base, &env.integration.id);
    let active: Vec<&Value> = st["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["url"] == hook.as_str() && c["inactiveFlag"] == false)
        .collect();
    assert_eq!(active.len(), 1, "{st:#}");
    let i = env
        .store
        .integration(&env.integration.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.sync_mode, "callbacks");
    assert_eq!(i.callback_id, active[0]["id"].as_i64());

    // callbacks flow again
    let (case, ticket) = env.ticketed_case("host-repaired").await;
    env.tech_note(ticket, "After the repair.", false).await;
    process_until!(
        env,
        "the note after the repair",
        env.cw_notes(&case.id).await.len() == 1
    );

    // a URL ConnectWise refuses leaves the integration on polling alone
    let mode = check_callback_registration(&env.ctx, &i, "not a url")
        .await
        .unwrap();
    assert_eq!(mode, "polling");
    let i = env
        .store
        .integration(&env.integration.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((i.sync_mode.as_str(), i.callback_id), ("polling", None));
}

async fn the_run_loops_sync_and_stop_when_told(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-loops").await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let processor = tokio::spawn(Processor::new(env.ctx.clone()).run(rx.clone()));
    env.tech_note(ticket, "Seen by the running processor.", false)
        .await;
    let deadline = Instant::now() + TIMEOUT;
    while env.cw_notes(&case.id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the processor loop did not sync the note"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // with every callback lost, the reconciler loop's sweep finds the next note
    env.set_faults(json!({"callbacks": {"drop_rate": 1.0}}))
        .await;
    let reconciler = tokio::spawn(Reconciler::new(env.ctx.clone()).run(rx));
    env.tech_note(ticket, "Only the sweep sees this.", true)
        .await;
    while env.cw_notes(&case.id).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the reconciler loop did not sweep the note"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // the watermark is written at the end of the pass that imported the note: wait for it
    loop {
        let i = env
            .store
            .integration(&env.integration.id)
            .await
            .unwrap()
            .unwrap();
        if i.watermark.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reconciler loop set the watermark"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), processor)
        .await
        .expect("processor stops")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), reconciler)
        .await
        .expect("reconciler stops")
        .unwrap();
}

async fn a_failing_connectwise_is_visible_on_the_case_and_caught_up_later(env: &Env) {
    let (case, ticket) = env.ticketed_case("host-failing").await;
    env.wait_deliveries(1).await;
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    env.tech_note(ticket, "Written while the API is down.", false)
        .await;
    env.wait_deliveries(2).await;
    env.set_faults(json!({"error_rate": 1.0})).await;
    let event = |m: &str| InboxEvent {
        message_id: m.into(),
        integration_id: env.integration.id.clone(),
        ticket_id: ticket,
        received_at: now_millis(),
    };
    // the callback of the note (already stored) plus one more: both fail, logged once
    env.store.insert_inbox(&event("while-down")).await.unwrap();
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    env.store
        .insert_inbox(&event("while-down-2"))
        .await
        .unwrap();
    Processor::new(env.ctx.clone()).run_once().await.unwrap();
    let log = env.store.activity(&case.id).await.unwrap();
    let failures: Vec<_> = log.iter().filter(|a| a.kind == "inbound_failed").collect();
    assert_eq!(failures.len(), 1, "{log:#?}");
    assert!(
        failures[0].message.starts_with("inbound sync failed: "),
        "{}",
        failures[0].message
    );
    assert_eq!(failures[0].direction, Direction::Inbound);
    assert!(env.cw_notes(&case.id).await.is_empty());
    // the reconciler reports the failure and does not move the watermark past it
    let reconciler = Reconciler::new(env.ctx.clone());
    let report = reconciler.run_once().await.unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let i = env
        .store
        .integration(&env.integration.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.watermark, None);
    // ConnectWise is back: the next pass catches up
    env.set_faults(json!({})).await;
    let report = reconciler.run_once().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(env.cw_notes(&case.id).await.len(), 1);
}

//! One conformance suite for both store backends.
//!
//! Every behaviour below is an `async fn(Arc<dyn Store>) -> anyhow::Result<()>`; the
//! `conformance!` macro at the bottom turns each into `sqlite::<name>` and `postgres::<name>`
//! tests. SQLite always runs, on a fresh temp-file database per test. PostgreSQL runs when
//! `CASEBRIDGE_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/postgres`):
//! each test creates its own `cb_conformance_<random>` database on that server, so tests run in
//! parallel, and drops it when the test passed. When the variable is set and the server cannot
//! be reached the tests fail; they only skip (with a note) when it is unset.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, ensure};
use casebridge_domain::ids::new_id;
use casebridge_domain::mapping::CaseStatusMap;
use casebridge_domain::{
    AccountKind, CaseStatus, Criticality, Direction, NoteOrigin, Role, StatusMapping,
    StatusMappings, TicketState, Visibility,
};
use casebridge_store::{
    Activity, AlertInsert, Attempt, AuditEntry, Case, CaseChange, CaseFilter, InboxEvent,
    Integration, Job, JobOutcome, JobState, MappingResource, NewCase, NewJob, NewUser, Note, Rule,
    Store, StoreError, TicketLink, TicketLinkChange, TicketSyncState, now_millis,
};
use serde_json::json;

type R = anyhow::Result<()>;

/// A ConnectWise-sized id: above 2^31, so a 32-bit column would corrupt it.
const BIG_TICKET: i64 = 3_000_000_123;

// ---------------------------------------------------------------------------------------------
// harness

mod harness {
    use std::future::Future;
    use std::sync::Arc;

    use casebridge_store::Store;
    pub use casebridge_testkit::Backend;
    use casebridge_testkit::{PG_ENV, ScratchDb};

    /// Runs one behaviour against a fresh database of `backend`; `migrate` says whether the store
    /// is handed over migrated.
    pub async fn run<F, Fut>(backend: Backend, migrate: bool, body: F)
    where
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let Some(db) = ScratchDb::for_test(backend, "cb_conformance").await else {
            eprintln!("note: {PG_ENV} is unset; PostgreSQL conformance skipped");
            return;
        };
        let store = casebridge_store::open(db.url(), migrate)
            .await
            .unwrap_or_else(|e| panic!("opening the {backend:?} store: {e}"));
        assert_eq!(store.backend(), backend.name());
        if let Err(e) = body(store).await {
            panic!("{backend:?}: {e:#}");
        }
        db.drop_db().await;
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

fn audit(account_id: &str, action: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.to_string(),
        actor: "admin@example.test".into(),
        at: now_millis(),
        action: action.to_string(),
        detail: json!({ "action": action }),
    }
}

fn new_case(account_id: &str, source_key: &str) -> NewCase {
    NewCase {
        id: new_id("case"),
        account_id: account_id.to_string(),
        rule_id: "rule-1".into(),
        title: format!("Alert {source_key}"),
        description: "something happened".into(),
        criticality: Criticality::Medium,
        source_format: "generic".into(),
        source_key: source_key.to_string(),
        observables: json!([{ "type": "ip", "value": "10.0.0.1" }]),
        raw_alert: json!({ "key": source_key }),
    }
}

async fn account(store: &Arc<dyn Store>, name: &str) -> anyhow::Result<String> {
    Ok(store
        .create_account(name, AccountKind::Standalone, None)
        .await?
        .id)
}

async fn open_case(store: &Arc<dyn Store>, account_id: &str, key: &str) -> anyhow::Result<Case> {
    match store
        .insert_alert_case(&new_case(account_id, key), "ingest")
        .await?
    {
        AlertInsert::Created(c) => Ok(*c),
        AlertInsert::Repeat(c) => anyhow::bail!("expected a new case, got repeat of {}", c.id),
    }
}

fn jobs_change(kinds: &[&str]) -> CaseChange {
    CaseChange {
        jobs: kinds
            .iter()
            .map(|k| NewJob {
                kind: (*k).to_string(),
                payload: json!({ "kind": k }),
            })
            .collect(),
        ..Default::default()
    }
}

/// A case with the given jobs queued, each by its own change, in order.
async fn case_with_jobs(
    store: &Arc<dyn Store>,
    account_id: &str,
    kinds: &[&str],
) -> anyhow::Result<(Case, Vec<Job>)> {
    let case = open_case(store, account_id, &new_id("key")).await?;
    for k in kinds {
        store.apply_case_change(&case.id, jobs_change(&[k])).await?;
    }
    let jobs = case_jobs(store, account_id, &case.id).await?;
    ensure!(jobs.len() == kinds.len(), "queued {} jobs", jobs.len());
    Ok((case, jobs))
}

/// The case's jobs, oldest first.
async fn case_jobs(
    store: &Arc<dyn Store>,
    account_id: &str,
    case_id: &str,
) -> anyhow::Result<Vec<Job>> {
    let mut jobs: Vec<Job> = store
        .jobs(None, &[account_id.to_string()], 10_000)
        .await?
        .into_iter()
        .filter(|j| j.case_id == case_id)
        .collect();
    jobs.sort_by_key(|j| j.seq);
    Ok(jobs)
}

fn attempt(status: Option<i64>, error: Option<&str>, outcome: &str) -> Attempt {
    Attempt {
        at: now_millis(),
        status_code: status,
        error: error.map(str::to_string),
        duration_ms: 12,
        outcome: outcome.to_string(),
    }
}

fn ids(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

fn note(case_id: &str, text: &str) -> Note {
    Note {
        id: new_id("note"),
        case_id: case_id.to_string(),
        text: text.to_string(),
        visibility: Visibility::Shared,
        origin: NoteOrigin::Portal,
        author: "analyst@example.test".into(),
        cw_note_id: None,
        created_at: now_millis(),
    }
}

fn link(integration_id: &str, ticket_id: i64) -> TicketLink {
    TicketLink {
        id: ticket_id,
        integration_id: integration_id.to_string(),
        board_id: Some(4_000_000_001),
        status_id: Some(4_000_000_002),
        priority_id: Some(4_000_000_003),
        company_identifier: Some("ACME".into()),
        url: Some(format!("https://cw.example.test/ticket/{ticket_id}")),
        state: TicketState::Linked,
    }
}

fn integration(account_id: &str) -> Integration {
    Integration {
        id: new_id("int"),
        account_id: account_id.to_string(),
        kind: "connectwise".into(),
        site_url: "https://na.myconnectwise.net".into(),
        company_id: "acme".into(),
        public_key: "pub-key".into(),
        private_key_enc: Some("k1:bm9uY2U=:Y2lwaGVydGV4dA==".into()),
        client_id: "client-123".into(),
        parent_company_identifier: Some("PARENT".into()),
        apply_to_all_subtenants: true,
        uniform_subtenant_mappings: false,
        allow_private_hosts: true,
        process_notifications: false,
        active: true,
        last_test: Some(json!({ "ok": true, "at": 1_700_000_000_000_i64 })),
        tested_ok: true,
        callback_id: Some(BIG_TICKET),
        sync_mode: "callbacks".into(),
        last_callback_at: Some(1_700_000_000_123),
        watermark: Some("2025-01-02T03:04:05Z".into()),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_500,
    }
}

fn is_conflict<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

// ---------------------------------------------------------------------------------------------
// migrations

async fn migrations_are_idempotent_and_ready_turns_true_only_after_them(
    store: Arc<dyn Store>,
) -> R {
    ensure!(!store.ready().await?, "ready() before any migration");
    store.migrate().await?;
    ensure!(store.ready().await?, "ready() after migrating");
    let acct = account(&store, "Survivor").await?;
    store.migrate().await?;
    store.migrate().await?;
    ensure!(store.ready().await?, "ready() after migrating again");
    ensure!(
        store.account(&acct).await?.is_some(),
        "data survives a repeated migrate"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// accounts, users, tokens

async fn a_partner_lists_only_its_own_subtenants_and_accounts_are_found_by_name(
    store: Arc<dyn Store>,
) -> R {
    let p1 = store
        .create_account("Partner One", AccountKind::Partner, None)
        .await?;
    let p2 = store
        .create_account("Partner Two", AccountKind::Partner, None)
        .await?;
    let s1 = store
        .create_account("Sub A", AccountKind::Subtenant, Some(&p1.id))
        .await?;
    let s2 = store
        .create_account("Sub B", AccountKind::Subtenant, Some(&p1.id))
        .await?;
    let s3 = store
        .create_account("Sub C", AccountKind::Subtenant, Some(&p2.id))
        .await?;
    let solo = store
        .create_account("Solo", AccountKind::Standalone, None)
        .await?;

    ensure!(store.subtenants(&p1.id).await? == vec![s1.clone(), s2.clone()]);
    ensure!(store.subtenants(&p2.id).await? == vec![s3.clone()]);
    ensure!(store.subtenants(&solo.id).await?.is_empty());
    ensure!(store.account(&s1.id).await?.as_ref() == Some(&s1));
    ensure!(s1.parent_id.as_deref() == Some(p1.id.as_str()));
    ensure!(s1.kind == AccountKind::Subtenant);
    ensure!(store.account_by_name("Sub B").await? == Some(s2.clone()));
    ensure!(store.account_by_name("Partner Two").await? == Some(p2.clone()));
    ensure!(store.account_by_name("Nobody").await?.is_none());
    ensure!(store.account("acct_missing").await?.is_none());
    let all: Vec<String> = store
        .all_accounts()
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    ensure!(all.len() == 6, "all_accounts: {all:?}");
    for a in [&p1, &p2, &s1, &s2, &s3, &solo] {
        ensure!(all.contains(&a.id));
    }
    Ok(())
}

async fn a_token_grant_is_found_by_its_hash_and_an_unknown_hash_grants_nothing(
    store: Arc<dyn Store>,
) -> R {
    let acct = account(&store, "Tokens").await?;
    let id = store
        .create_token(&acct, Role::Analyst, "hash-1", "ci")
        .await?;
    let grant = store.token_grant("hash-1").await?.context("grant")?;
    ensure!(grant.token_id == id);
    ensure!(grant.account_id == acct);
    ensure!(grant.role == Role::Analyst);
    ensure!(store.token_grant("hash-unknown").await?.is_none());
    ensure!(
        store
            .create_token(&acct, Role::Admin, "hash-1", "dup")
            .await
            .is_err(),
        "a second token with the same hash"
    );
    Ok(())
}

async fn a_users_email_is_unique(store: Arc<dyn Store>) -> R {
    let acct = account(&store, "Users").await?;
    let user = |email: &str| NewUser {
        account_id: acct.clone(),
        email: email.to_string(),
        password_hash: "$argon2id$x".into(),
        role: Role::Admin,
    };
    ensure!(!store.user_exists("a@example.test").await?);
    store.create_user(&user("a@example.test")).await?;
    ensure!(store.user_exists("a@example.test").await?);
    ensure!(
        store.create_user(&user("a@example.test")).await.is_err(),
        "second user with the same email was accepted"
    );
    store.create_user(&user("b@example.test")).await?;
    ensure!(store.user_exists("b@example.test").await?);
    ensure!(!store.user_exists("c@example.test").await?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// rules

async fn re_importing_the_same_rules_changes_nothing_and_an_update_changes_the_title(
    store: Arc<dyn Store>,
) -> R {
    let rule = |id: &str, title: &str| Rule {
        id: id.to_string(),
        title: title.to_string(),
        level: Some(Criticality::High),
        source: "sigma".into(),
        logsource: json!({ "product": "windows", "category": "process_creation" }),
        tags: vec!["attack.execution".into(), "attack.t1059".into()],
        suggested_rule_type: "Endpoint".into(),
    };
    let mut rules = vec![rule("r-1", "First"), rule("r-2", "Second")];
    rules[1].level = None;
    rules[1].tags = vec![];
    store.upsert_rules(&rules).await?;
    ensure!(store.rules().await? == rules);
    store.upsert_rules(&rules).await?;
    ensure!(store.rules().await? == rules, "re-import changed the rules");
    store.upsert_rules(&[rule("r-1", "First, renamed")]).await?;
    let r1 = store.rule("r-1").await?.context("r-1")?;
    ensure!(r1.title == "First, renamed");
    ensure!(store.rule("r-2").await?.as_ref() == Some(&rules[1]));
    ensure!(store.rules().await?.len() == 2);
    ensure!(store.rule("r-missing").await?.is_none());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cases

async fn a_repeated_alert_raises_the_count_on_its_case_and_another_account_opens_its_own(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "A").await?;
    let b = account(&store, "B").await?;
    let first = new_case(&a, "alert-7");
    let AlertInsert::Created(created) = store.insert_alert_case(&first, "ingest").await? else {
        anyhow::bail!("first alert was not created");
    };
    ensure!(created.id == first.id);
    ensure!(created.alert_count == 1);
    ensure!(created.status == CaseStatus::Open);
    ensure!(created.title == first.title && created.description == first.description);
    ensure!(created.observables == first.observables && created.raw_alert == first.raw_alert);
    ensure!(created.ticket.is_none() && created.routing.is_none());
    let opened = store.activity(&created.id).await?;
    ensure!(opened.len() == 1, "activity after create: {opened:?}");

    let again = new_case(&a, "alert-7");
    let AlertInsert::Repeat(repeat) = store.insert_alert_case(&again, "ingest").await? else {
        anyhow::bail!("repeat alert created a second case");
    };
    ensure!(
        repeat.id == created.id,
        "the repeat must point at the first case"
    );
    ensure!(repeat.alert_count == 2);
    ensure!(store.case(&again.id).await?.is_none());
    let activity = store.activity(&created.id).await?;
    ensure!(activity.len() == 2);
    ensure!(activity[1].kind == "alert_repeat", "{activity:?}");
    ensure!(activity[1].direction == Direction::Local);

    let other = new_case(&b, "alert-7");
    let AlertInsert::Created(theirs) = store.insert_alert_case(&other, "ingest").await? else {
        anyhow::bail!("the same key on another account must open its own case");
    };
    ensure!(theirs.id == other.id && theirs.account_id == b && theirs.alert_count == 1);
    ensure!(store.case(&created.id).await?.context("case")?.alert_count == 2);
    Ok(())
}

async fn cases_filter_by_account_status_criticality_and_case_insensitive_text(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "A").await?;
    let b = account(&store, "B").await?;
    let c = account(&store, "C").await?;
    let mk = |acct: &str, title: &str, crit: Criticality, rule: &str| {
        let mut n = new_case(acct, &new_id("k"));
        n.title = title.to_string();
        n.criticality = crit;
        n.rule_id = rule.to_string();
        n
    };
    let a1 = mk(
        &a,
        "Suspicious PowerShell download",
        Criticality::High,
        "r-ps",
    );
    let a2 = mk(&a, "Brute force on VPN", Criticality::Low, "r-bf");
    let b1 = mk(&b, "Mimikatz detected", Criticality::Critical, "r-mimi");
    let c1 = mk(&c, "powershell encoded command", Criticality::High, "r-ps2");
    let mut b2 = mk(&b, "Quiet alert", Criticality::Medium, "r-Quiet");
    b2.description = "Contains the word POWERSHELL in its description".into();
    let a3 = mk(&a, "Disk 100% full", Criticality::Low, "r-disk");
    let a4 = mk(&a, "Disk 1000 errors", Criticality::Low, "r-disk");
    for n in [&a1, &a2, &b1, &c1, &b2, &a3, &a4] {
        store.insert_alert_case(n, "ingest").await?;
    }
    store
        .apply_case_change(
            &a2.id,
            CaseChange {
                status: Some(CaseStatus::Closed),
                close_reason: Some(Some("false positive".into())),
                ..Default::default()
            },
        )
        .await?;

    let query = |accounts: &[&String], f: CaseFilter| {
        let store = store.clone();
        let accounts: Vec<String> = accounts.iter().map(|s| s.to_string()).collect();
        async move {
            let cases = store
                .cases(&CaseFilter {
                    account_ids: accounts,
                    limit: 100,
                    ..f
                })
                .await?;
            anyhow::Ok(cases.into_iter().map(|c| c.id).collect::<Vec<_>>())
        }
    };
    // newest first within the visible accounts
    ensure!(
        query(&[&a, &b], CaseFilter::default()).await?
            == vec![
                a4.id.clone(),
                a3.id.clone(),
                b2.id.clone(),
                b1.id.clone(),
                a2.id.clone(),
                a1.id.clone()
            ]
    );
    ensure!(query(&[], CaseFilter::default()).await?.is_empty());
    ensure!(query(&[&c], CaseFilter::default()).await? == vec![c1.id.clone()]);

    let closed = CaseFilter {
        status: Some(CaseStatus::Closed),
        ..Default::default()
    };
    ensure!(query(&[&a, &b, &c], closed).await? == vec![a2.id.clone()]);
    let closed_case = store.case(&a2.id).await?.context("a2")?;
    ensure!(closed_case.close_reason.as_deref() == Some("false positive"));

    let high = CaseFilter {
        criticality: Some(Criticality::High),
        ..Default::default()
    };
    ensure!(query(&[&a, &b, &c], high.clone()).await? == vec![c1.id.clone(), a1.id.clone()]);
    ensure!(query(&[&a], high).await? == vec![a1.id.clone()]);

    let text = |q: &str| CaseFilter {
        q: Some(q.to_string()),
        ..Default::default()
    };
    let ps = vec![b2.id.clone(), c1.id.clone(), a1.id.clone()];
    ensure!(query(&[&a, &b, &c], text("powershell")).await? == ps);
    ensure!(query(&[&a, &b, &c], text("POWERSHELL")).await? == ps);
    ensure!(query(&[&a, &b, &c], text("  PowerShell ")).await? == ps);
    // the rule id is searched too, case-insensitively
    ensure!(query(&[&a, &b, &c], text("r-quiet")).await? == vec![b2.id.clone()]);
    ensure!(
        query(
            &[&a, &b, &c],
            CaseFilter {
                q: Some("powershell".into()),
                criticality: Some(Criticality::High),
                ..Default::default()
            }
        )
        .await?
            == vec![c1.id.clone(), a1.id.clone()]
    );
    // LIKE wildcards in the query are plain text
    ensure!(query(&[&a], text("100%")).await? == vec![a3.id.clone()]);
    ensure!(query(&[&a], text("_")).await?.is_empty());
    ensure!(
        query(&[&a, &b, &c], text("no such thing"))
            .await?
            .is_empty()
    );
    // non-ASCII text is found as typed (full Unicode case folding is not promised on SQLite)
    let d = account(&store, "D").await?;
    let d1 = mk(&d, "Überwachung der Anmeldungen", Criticality::Low, "r-de");
    store.insert_alert_case(&d1, "ingest").await?;
    ensure!(query(&[&d], text("Überwachung")).await? == vec![d1.id.clone()]);
    ensure!(query(&[&d], text("ÜBERWACHUNG DER")).await? == vec![d1.id.clone()]);
    ensure!(query(&[&d], text("anMELDungen")).await? == vec![d1.id.clone()]);
    Ok(())
}

async fn cases_page_newest_first_by_cursor_without_duplicates_or_gaps(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Pager").await?;
    let other = account(&store, "Other").await?;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(open_case(&store, &a, &format!("k-{i}")).await?.id);
        if i % 5 == 0 {
            open_case(&store, &other, &format!("k-{i}")).await?;
        }
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut before = None;
    let mut sizes = Vec::new();
    loop {
        let page = store
            .cases(&CaseFilter {
                account_ids: vec![a.clone()],
                before_id: before.clone(),
                limit: 10,
                ..Default::default()
            })
            .await?;
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        seen.extend(page.into_iter().map(|c| c.id));
        ensure!(sizes.len() < 10, "paging does not end");
    }
    ensure!(sizes == vec![10, 10, 5, 0], "page sizes {sizes:?}");
    ensure!(seen == created, "pages are not newest-first without gaps");
    Ok(())
}

async fn a_case_change_writes_status_note_activity_and_jobs_together_and_a_conflict_writes_nothing(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Changes").await?;
    let case = open_case(&store, &a, "k").await?;
    let n = note(&case.id, "escalating to the customer");
    let change = CaseChange {
        expect_status: Some(CaseStatus::Open),
        status: Some(CaseStatus::Escalated),
        routing: Some(json!({ "board_id": 1 })),
        note: Some(n.clone()),
        activity: vec![Activity::new(
            "analyst",
            Direction::Local,
            "escalated",
            "escalated by hand",
        )],
        jobs: vec![
            NewJob {
                kind: "create_ticket".into(),
                payload: json!({ "case": case.id }),
            },
            NewJob {
                kind: "add_note".into(),
                payload: json!({ "note": n.id }),
            },
        ],
        ..Default::default()
    };
    let after = store.apply_case_change(&case.id, change).await?;
    ensure!(after.status == CaseStatus::Escalated);
    ensure!(after.routing == Some(json!({ "board_id": 1 })));
    ensure!(after.updated_at >= case.updated_at);
    ensure!(store.case(&case.id).await?.as_ref() == Some(&after));
    ensure!(store.notes(&case.id).await? == vec![n.clone()]);
    let activity = store.activity(&case.id).await?;
    ensure!(activity.len() == 2 && activity[1].kind == "escalated");
    let jobs = case_jobs(&store, &a, &case.id).await?;
    ensure!(jobs.len() == 2);
    ensure!(jobs[0].kind == "create_ticket" && jobs[1].kind == "add_note");
    ensure!(
        jobs.iter()
            .all(|j| j.state == JobState::Pending && j.account_id == a && j.attempts == 0)
    );
    ensure!(jobs[0].payload == json!({ "case": case.id }));
    ensure!(!jobs[0].blocked && jobs[1].blocked);

    // a stale expectation: nothing at all is written
    let stale = CaseChange {
        expect_status: Some(CaseStatus::Open),
        status: Some(CaseStatus::Closed),
        close_reason: Some(Some("resolved".into())),
        note: Some(note(&case.id, "must not appear")),
        activity: vec![Activity::new(
            "analyst",
            Direction::Local,
            "closed",
            "closed",
        )],
        jobs: vec![NewJob {
            kind: "update_status".into(),
            payload: json!({}),
        }],
        raise_alert_count: true,
        ..Default::default()
    };
    let r = store.apply_case_change(&case.id, stale).await;
    ensure!(is_conflict(&r), "expected Conflict, got {r:?}");
    ensure!(store.case(&case.id).await?.as_ref() == Some(&after));
    ensure!(store.notes(&case.id).await? == vec![n]);
    ensure!(store.activity(&case.id).await? == activity);
    ensure!(ids(&case_jobs(&store, &a, &case.id).await?) == ids(&jobs));

    let missing = store
        .apply_case_change("case_missing", CaseChange::default())
        .await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // close, then reopen clearing the reason
    let closed = store
        .apply_case_change(
            &case.id,
            CaseChange {
                expect_status: Some(CaseStatus::Escalated),
                status: Some(CaseStatus::Closed),
                close_reason: Some(Some("resolved".into())),
                ..Default::default()
            },
        )
        .await?;
    ensure!(closed.status == CaseStatus::Closed);
    ensure!(closed.close_reason.as_deref() == Some("resolved"));
    let reopened = store
        .apply_case_change(
            &case.id,
            CaseChange {
                status: Some(CaseStatus::Open),
                close_reason: Some(None),
                ..Default::default()
            },
        )
        .await?;
    ensure!(reopened.status == CaseStatus::Open && reopened.close_reason.is_none());
    Ok(())
}

async fn a_delivered_note_records_its_connectwise_id_and_a_clash_leaves_it_unset(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Delivered notes").await?;
    let case = open_case(&store, &a, "k").await?;
    let (n1, n2) = (note(&case.id, "first"), note(&case.id, "second"));
    for n in [&n1, &n2] {
        store
            .apply_case_change(
                &case.id,
                CaseChange {
                    note: Some(n.clone()),
                    ..Default::default()
                },
            )
            .await?;
    }
    let delivered = |id: &str, cw: i64, why: &str| CaseChange {
        note_delivered: Some((id.to_string(), cw)),
        activity: vec![Activity::new("sync", Direction::Outbound, "note_sent", why)],
        ..Default::default()
    };
    store
        .apply_case_change(&case.id, delivered(&n1.id, 4_000_000_219, "sent"))
        .await?;
    // the same ConnectWise note cannot belong to two notes of a case: the second link is not
    // made, and the rest of the change (its Activity Log entry) still commits
    store
        .apply_case_change(&case.id, delivered(&n2.id, 4_000_000_219, "clash"))
        .await?;
    // a note of another case is never touched
    let other = open_case(&store, &a, "other").await?;
    store
        .apply_case_change(&other.id, delivered(&n2.id, 4_000_000_220, "wrong case"))
        .await?;
    let mut ids: Vec<(String, Option<i64>)> = store
        .notes(&case.id)
        .await?
        .into_iter()
        .map(|n| (n.id, n.cw_note_id))
        .collect();
    ids.sort();
    let mut want = vec![(n1.id.clone(), Some(4_000_000_219)), (n2.id.clone(), None)];
    want.sort();
    ensure!(ids == want, "{ids:?}");
    let kinds: Vec<String> = store
        .activity(&case.id)
        .await?
        .into_iter()
        .map(|a| a.message)
        .collect();
    ensure!(kinds.iter().any(|m| m == "clash"), "{kinds:?}");
    Ok(())
}

async fn a_ticket_link_is_set_updated_and_found_by_a_ticket_id_above_2_pow_31(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Tickets").await?;
    let case = open_case(&store, &a, "k1").await?;
    let other = open_case(&store, &a, "k2").await?;
    ensure!(store.case_by_ticket("int_1", BIG_TICKET).await?.is_none());
    let set = store
        .apply_case_change(
            &case.id,
            CaseChange {
                ticket: Some(TicketLinkChange::Set(link("int_1", BIG_TICKET))),
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        set.ticket == Some(link("int_1", BIG_TICKET)),
        "{:?}",
        set.ticket
    );
    let found = store
        .case_by_ticket("int_1", BIG_TICKET)
        .await?
        .context("by ticket")?;
    ensure!(found.id == case.id);
    ensure!(store.case_by_ticket("int_2", BIG_TICKET).await?.is_none());
    ensure!(
        store
            .case_by_ticket("int_1", BIG_TICKET + 1)
            .await?
            .is_none()
    );
    ensure!(
        store
            .case_by_ticket("int_1", 3_000_000_123 - (1 << 32))
            .await?
            .is_none()
    );
    ensure!(ids_of(&store.linked_cases("int_1").await?) == vec![case.id.clone()]);

    let updated = store
        .apply_case_change(
            &case.id,
            CaseChange {
                ticket: Some(TicketLinkChange::UpdateStatus(5_000_000_001)),
                ..Default::default()
            },
        )
        .await?;
    let t = updated.ticket.context("ticket")?;
    ensure!(t.status_id == Some(5_000_000_001));
    ensure!(t.id == BIG_TICKET && t.board_id == Some(4_000_000_001));

    let deleted = store
        .apply_case_change(
            &case.id,
            CaseChange {
                ticket: Some(TicketLinkChange::State(TicketState::Deleted)),
                ..Default::default()
            },
        )
        .await?;
    ensure!(deleted.ticket.as_ref().map(|t| t.state) == Some(TicketState::Deleted));
    ensure!(store.linked_cases("int_1").await?.is_empty());
    ensure!(
        store
            .case(&other.id)
            .await?
            .context("other")?
            .ticket
            .is_none()
    );
    Ok(())
}

fn ids_of(cases: &[Case]) -> Vec<String> {
    cases.iter().map(|c| c.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// outbox

async fn a_claim_gives_one_job_per_case_and_a_note_never_overtakes_the_create(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Outbox").await?;
    let (x, xj) = case_with_jobs(&store, &a, &["create_ticket", "add_note", "add_note"]).await?;
    let (_y, yj) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    let now = now_millis() + 1_000;
    let lease = now + 60_000;

    let first = store.claim_jobs("w1", now, lease, 10).await?;
    ensure!(
        ids(&first) == vec![xj[0].id.clone(), yj[0].id.clone()],
        "first claim {:?}",
        first.iter().map(|j| &j.kind).collect::<Vec<_>>()
    );
    ensure!(
        first
            .iter()
            .all(|j| j.state == JobState::Running && j.attempts == 1)
    );
    ensure!(store.claim_jobs("w1", now, lease, 10).await?.is_empty());
    ensure!(store.claim_jobs("w2", now, lease, 10).await?.is_empty());
    let listed = case_jobs(&store, &a, &x.id).await?;
    ensure!(listed[0].state == JobState::Running && !listed[0].blocked);
    ensure!(listed[1].blocked && listed[2].blocked);

    // the create fails and is retried later: the notes still wait behind it
    store
        .finish_job(
            &xj[0].id,
            "w1",
            &attempt(Some(503), Some("busy"), "retry"),
            JobOutcome::Retry {
                due_at: now + 5_000,
                error: "busy".into(),
            },
            None,
        )
        .await?;
    ensure!(store.claim_jobs("w1", now + 1, lease, 10).await?.is_empty());
    let again = store.claim_jobs("w1", now + 5_000, lease, 10).await?;
    ensure!(ids(&again) == vec![xj[0].id.clone()]);
    store
        .finish_job(
            &xj[0].id,
            "w1",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await?;
    let next = store.claim_jobs("w1", now + 5_000, lease, 10).await?;
    ensure!(ids(&next) == vec![xj[1].id.clone()]);
    store
        .finish_job(
            &xj[1].id,
            "w1",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await?;
    // limit is honoured
    let (_z, zj) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    let limited = store.claim_jobs("w1", now + 5_000, lease, 1).await?;
    ensure!(ids(&limited) == vec![xj[2].id.clone()]);
    let rest = store.claim_jobs("w1", now + 5_000, lease, 10).await?;
    ensure!(ids(&rest) == vec![zj[0].id.clone()]);
    Ok(())
}

async fn two_owners_claiming_concurrently_never_get_the_same_job(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Race").await?;
    let mut firsts = HashSet::new();
    let mut seconds = HashSet::new();
    for _ in 0..20 {
        let (_c, jobs) = case_with_jobs(&store, &a, &["create_ticket", "add_note"]).await?;
        firsts.insert(jobs[0].id.clone());
        seconds.insert(jobs[1].id.clone());
    }
    let now = now_millis() + 1_000;
    let claimer = |owner: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim_jobs(owner, now, now + 60_000, 3).await?;
                if batch.is_empty() {
                    break;
                }
                got.extend(ids(&batch));
            }
            anyhow::Ok(got)
        })
    };
    let (t1, t2) = (claimer("owner-1"), claimer("owner-2"));
    let (got1, got2) = (t1.await??, t2.await??);
    let got3 = ids(&store.claim_jobs("owner-3", now, now + 60_000, 100).await?);

    let mut all = HashSet::new();
    for id in got1.iter().chain(&got2).chain(&got3) {
        ensure!(all.insert(id.clone()), "job {id} was claimed twice");
        ensure!(
            !seconds.contains(id),
            "a case's second job was claimed while its first runs"
        );
    }
    ensure!(
        all == firsts,
        "claimed {} of {} first jobs",
        all.len(),
        firsts.len()
    );
    for id in &got1 {
        ensure!(store.job(id).await?.context("job")?.state == JobState::Running);
    }
    Ok(())
}

async fn an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_finish(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Lease").await?;
    let (_c, jobs) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    let t = now_millis() + 1_000;
    ensure!(ids(&store.claim_jobs("old", t, t + 1_000, 10).await?) == ids(&jobs));
    // while the lease holds nobody else gets it; a heartbeat extends it
    ensure!(
        store
            .claim_jobs("new", t + 500, t + 60_000, 10)
            .await?
            .is_empty()
    );
    store.heartbeat_jobs("old", &ids(&jobs), t + 3_000).await?;
    ensure!(
        store
            .claim_jobs("new", t + 2_000, t + 60_000, 10)
            .await?
            .is_empty()
    );
    // a heartbeat by someone else does not extend it
    store
        .heartbeat_jobs("intruder", &ids(&jobs), t + 100_000)
        .await?;
    let taken = store.claim_jobs("new", t + 3_001, t + 60_000, 10).await?;
    ensure!(
        ids(&taken) == ids(&jobs),
        "the expired lease was not taken over"
    );

    let stale = store
        .finish_job(
            &jobs[0].id,
            "old",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await;
    ensure!(is_conflict(&stale), "finish by the old owner: {stale:?}");
    ensure!(store.job_attempts(&jobs[0].id).await?.is_empty());
    ensure!(store.job(&jobs[0].id).await?.context("job")?.state == JobState::Running);
    store
        .finish_job(
            &jobs[0].id,
            "new",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await?;
    let done = store.job(&jobs[0].id).await?.context("job")?;
    // each claim counts as an attempt: the takeover was the second
    ensure!(
        done.state == JobState::Done && done.attempts == 2,
        "{done:?}"
    );
    // a finished job cannot be finished again
    let twice = store
        .finish_job(
            &jobs[0].id,
            "new",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await;
    ensure!(is_conflict(&twice), "{twice:?}");
    Ok(())
}

async fn a_dead_job_blocks_its_cases_later_jobs_until_retried_by_hand(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Dead").await?;
    let (c, jobs) = case_with_jobs(&store, &a, &["create_ticket", "add_note"]).await?;
    let t = now_millis() + 1_000;
    ensure!(ids(&store.claim_jobs("w", t, t + 60_000, 10).await?) == vec![jobs[0].id.clone()]);
    store
        .finish_job(
            &jobs[0].id,
            "w",
            &attempt(Some(400), Some("bad request"), "dead"),
            JobOutcome::Dead {
                error: "bad request".into(),
            },
            None,
        )
        .await?;
    ensure!(
        store
            .claim_jobs("w", t + 1_000_000, t + 2_000_000, 10)
            .await?
            .is_empty()
    );
    let listed = case_jobs(&store, &a, &c.id).await?;
    ensure!(listed[0].state == JobState::Dead && !listed[0].blocked);
    ensure!(listed[0].last_error.as_deref() == Some("bad request"));
    ensure!(listed[1].state == JobState::Pending && listed[1].blocked);
    let dead = store
        .jobs(Some(JobState::Dead), std::slice::from_ref(&a), 10)
        .await?;
    ensure!(ids(&dead) == vec![jobs[0].id.clone()]);
    ensure!(
        store.has_pending_create(&c.id).await?,
        "a dead create still counts"
    );

    // only dead jobs can be retried
    let r = store.retry_job(&jobs[1].id, "admin").await;
    ensure!(is_conflict(&r), "retry of a pending job: {r:?}");
    let r = store.retry_job("job_missing", "admin").await;
    ensure!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    let before_retry = now_millis();
    let retried = store.retry_job(&jobs[0].id, "admin").await?;
    ensure!(retried.state == JobState::Pending && retried.due_at >= before_retry);
    ensure!(retried.due_at <= now_millis());
    let activity = store.activity(&c.id).await?;
    ensure!(activity.last().map(|a| a.kind.as_str()) == Some("job_retry"));
    let r = store.retry_job(&jobs[0].id, "admin").await;
    ensure!(
        is_conflict(&r),
        "retry of a job that is pending again: {r:?}"
    );
    let claimed = store
        .claim_jobs("w", now_millis() + 1, t + 60_000, 10)
        .await?;
    ensure!(
        ids(&claimed) == vec![jobs[0].id.clone()],
        "the retried job comes first"
    );
    ensure!(claimed[0].attempts == 2);
    let r = store.retry_job(&jobs[0].id, "admin").await;
    ensure!(is_conflict(&r), "retry of a running job: {r:?}");
    store
        .finish_job(
            &jobs[0].id,
            "w",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await?;
    let claimed = store
        .claim_jobs("w", now_millis() + 1, t + 60_000, 10)
        .await?;
    ensure!(
        ids(&claimed) == vec![jobs[1].id.clone()],
        "the note follows"
    );
    ensure!(!case_jobs(&store, &a, &c.id).await?[1].blocked);
    Ok(())
}

async fn attempts_are_recorded_in_order_and_a_retry_is_not_claimable_before_it_is_due(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Attempts").await?;
    let (_c, jobs) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    let id = &jobs[0].id;
    let t = now_millis() + 1_000;
    store.claim_jobs("w", t, t + 60_000, 10).await?;
    let first = Attempt {
        at: t,
        status_code: Some(429),
        error: Some("too many requests".into()),
        duration_ms: 40,
        outcome: "retry".into(),
    };
    store
        .finish_job(
            id,
            "w",
            &first,
            JobOutcome::Retry {
                due_at: t + 30_000,
                error: "too many requests".into(),
            },
            None,
        )
        .await?;
    let job = store.job(id).await?.context("job")?;
    ensure!(job.state == JobState::Pending && job.due_at == t + 30_000 && job.attempts == 1);
    ensure!(job.last_error.as_deref() == Some("too many requests"));
    ensure!(
        store
            .claim_jobs("w", t + 29_999, t + 60_000, 10)
            .await?
            .is_empty()
    );
    ensure!(ids(&store.claim_jobs("w", t + 30_000, t + 90_000, 10).await?) == vec![id.clone()]);
    let second = Attempt {
        at: t + 30_000,
        status_code: None,
        error: Some("timeout".into()),
        duration_ms: 5_000,
        outcome: "retry".into(),
    };
    store
        .finish_job(
            id,
            "w",
            &second,
            JobOutcome::Retry {
                due_at: t + 60_000,
                error: "timeout".into(),
            },
            None,
        )
        .await?;
    store.claim_jobs("w", t + 60_000, t + 120_000, 10).await?;
    let third = Attempt {
        at: t + 60_000,
        status_code: Some(201),
        error: None,
        duration_ms: 80,
        outcome: "done".into(),
    };
    store
        .finish_job(id, "w", &third, JobOutcome::Done, None)
        .await?;

    let got = store.job_attempts(id).await?;
    let summary: Vec<_> = got
        .iter()
        .map(|a| {
            (
                a.at,
                a.status_code,
                a.error.clone(),
                a.duration_ms,
                a.outcome.clone(),
            )
        })
        .collect();
    let want: Vec<_> = [&first, &second, &third]
        .iter()
        .map(|a| {
            (
                a.at,
                a.status_code,
                a.error.clone(),
                a.duration_ms,
                a.outcome.clone(),
            )
        })
        .collect();
    ensure!(summary == want, "attempts {summary:?}");
    let job = store.job(id).await?.context("job")?;
    ensure!(job.state == JobState::Done && job.attempts == 3);
    ensure!(store.job_attempts("job_missing").await?.is_empty());
    ensure!(store.job("job_missing").await?.is_none());
    Ok(())
}

async fn released_jobs_return_to_pending_and_only_the_owners(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Release").await?;
    let (_c1, j1) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    let t = now_millis() + 1_000;
    ensure!(ids(&store.claim_jobs("leaving", t, t + 60_000, 10).await?) == ids(&j1));
    let (_c2, j2) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    ensure!(ids(&store.claim_jobs("staying", t, t + 60_000, 10).await?) == ids(&j2));
    store.release_jobs("leaving").await?;
    ensure!(store.job(&j1[0].id).await?.context("j1")?.state == JobState::Pending);
    ensure!(store.job(&j2[0].id).await?.context("j2")?.state == JobState::Running);
    let running = store
        .jobs(Some(JobState::Running), std::slice::from_ref(&a), 10)
        .await?;
    ensure!(ids(&running) == ids(&j2));
    ensure!(ids(&store.claim_jobs("other", t, t + 60_000, 10).await?) == ids(&j1));
    Ok(())
}

async fn has_pending_create_tracks_the_create_job(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Pending").await?;
    let case = open_case(&store, &a, "k").await?;
    ensure!(!store.has_pending_create(&case.id).await?);
    store
        .apply_case_change(&case.id, jobs_change(&["add_note"]))
        .await?;
    ensure!(
        !store.has_pending_create(&case.id).await?,
        "a note is no create"
    );
    let (other, _) = case_with_jobs(&store, &a, &["create_ticket"]).await?;
    ensure!(store.has_pending_create(&other.id).await?);
    ensure!(!store.has_pending_create(&case.id).await?, "per case");
    let t = now_millis() + 1_000;
    let claimed = store.claim_jobs("w", t, t + 60_000, 10).await?;
    let create = claimed
        .iter()
        .find(|j| j.case_id == other.id)
        .context("create claimed")?;
    ensure!(store.has_pending_create(&other.id).await?, "running counts");
    store
        .finish_job(
            &create.id,
            "w",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            None,
        )
        .await?;
    ensure!(!store.has_pending_create(&other.id).await?);
    Ok(())
}

async fn finishing_a_job_with_effects_applies_the_case_change_in_the_same_transaction(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Effects").await?;
    let (c, jobs) = case_with_jobs(&store, &a, &["create_ticket", "add_note"]).await?;
    let t = now_millis() + 1_000;
    store.claim_jobs("w", t, t + 60_000, 10).await?;

    // effects that do not apply roll back the whole finish
    let bad = CaseChange {
        expect_status: Some(CaseStatus::Closed),
        ticket: Some(TicketLinkChange::Set(link("int_1", BIG_TICKET))),
        ..Default::default()
    };
    let r = store
        .finish_job(
            &jobs[0].id,
            "w",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            Some(bad),
        )
        .await;
    ensure!(is_conflict(&r), "{r:?}");
    let job = store.job(&jobs[0].id).await?.context("job")?;
    ensure!(
        job.state == JobState::Running && job.attempts == 1,
        "{job:?}"
    );
    ensure!(store.job_attempts(&jobs[0].id).await?.is_empty());
    ensure!(store.case(&c.id).await?.context("case")?.ticket.is_none());

    let effects = CaseChange {
        ticket: Some(TicketLinkChange::Set(link("int_1", BIG_TICKET))),
        activity: vec![Activity::new(
            "worker",
            Direction::Outbound,
            "ticket_created",
            format!("ticket #{BIG_TICKET} created"),
        )],
        ..Default::default()
    };
    store
        .finish_job(
            &jobs[0].id,
            "w",
            &attempt(Some(201), None, "done"),
            JobOutcome::Done,
            Some(effects),
        )
        .await?;
    let case = store.case(&c.id).await?.context("case")?;
    ensure!(case.ticket == Some(link("int_1", BIG_TICKET)));
    let activity = store.activity(&c.id).await?;
    let last = activity.last().context("activity")?;
    ensure!(last.kind == "ticket_created" && last.direction == Direction::Outbound);
    ensure!(store.job(&jobs[0].id).await?.context("job")?.state == JobState::Done);
    ensure!(store.job_attempts(&jobs[0].id).await?.len() == 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// integrations and settings

async fn an_integration_round_trips_every_field_and_keeps_the_encrypted_key_as_given(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Integrated").await?;
    let b = account(&store, "Bare").await?;
    ensure!(store.integration_of(&a).await?.is_none());
    let mut i = integration(&a);
    store
        .save_integration(&i, &audit(&a, "integration.create"))
        .await?;
    ensure!(store.integration(&i.id).await?.as_ref() == Some(&i));
    ensure!(store.integration_of(&a).await?.as_ref() == Some(&i));
    ensure!(store.integration_of(&b).await?.is_none());
    ensure!(store.integrations().await? == vec![i.clone()]);

    // every field changes on a second save; the stored secret stays exactly as given
    i.kind = "connectwise-v2".into();
    i.site_url = "https://eu.myconnectwise.net".into();
    i.company_id = "acme2".into();
    i.public_key = "pub-2".into();
    i.private_key_enc = Some("k2:bm9uY2Uy:c2VjcmV0Mg==".into());
    i.client_id = "client-456".into();
    i.parent_company_identifier = None;
    i.apply_to_all_subtenants = false;
    i.uniform_subtenant_mappings = true;
    i.allow_private_hosts = false;
    i.process_notifications = true;
    i.active = false;
    i.last_test = None;
    i.tested_ok = false;
    i.callback_id = None;
    i.sync_mode = "polling".into();
    i.last_callback_at = None;
    i.watermark = None;
    i.updated_at += 1_000;
    store
        .save_integration(&i, &audit(&a, "integration.update"))
        .await?;
    ensure!(store.integration(&i.id).await?.as_ref() == Some(&i));
    i.private_key_enc = None;
    store
        .save_integration(&i, &audit(&a, "integration.update"))
        .await?;
    ensure!(
        store
            .integration(&i.id)
            .await?
            .context("int")?
            .private_key_enc
            .is_none()
    );

    store
        .set_integration_sync(&i.id, Some(BIG_TICKET + 7), "callbacks")
        .await?;
    store.set_watermark(&i.id, "2025-06-01T00:00:00Z").await?;
    store.touch_last_callback(&i.id, 1_750_000_000_000).await?;
    let got = store.integration(&i.id).await?.context("int")?;
    ensure!(got.callback_id == Some(BIG_TICKET + 7) && got.sync_mode == "callbacks");
    ensure!(got.watermark.as_deref() == Some("2025-06-01T00:00:00Z"));
    ensure!(got.last_callback_at == Some(1_750_000_000_000));
    ensure!(got.created_at == i.created_at);

    let log = store.audit_log(&a).await?;
    let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
    ensure!(
        actions
            == [
                "integration.create",
                "integration.update",
                "integration.update"
            ],
        "{actions:?}"
    );
    ensure!(log[0] == audit_like(&log[0], &a, "integration.create"));
    ensure!(store.audit_log(&b).await?.is_empty());
    Ok(())
}

fn audit_like(entry: &AuditEntry, account_id: &str, action: &str) -> AuditEntry {
    AuditEntry {
        account_id: account_id.to_string(),
        actor: "admin@example.test".into(),
        at: entry.at,
        action: action.to_string(),
        detail: json!({ "action": action }),
    }
}

async fn mappings(store: &Arc<dyn Store>, account_id: &str) -> anyhow::Result<()> {
    store
        .put_mapping(
            account_id,
            MappingResource::Board,
            Some(&json!({ "rule_types": [], "assignments": [] })),
            &audit(account_id, "mapping.board"),
        )
        .await?;
    store
        .put_mapping(
            account_id,
            MappingResource::Criticality,
            Some(&json!({ "high": 3 })),
            &audit(account_id, "mapping.criticality"),
        )
        .await?;
    Ok(())
}

async fn uniform_mode_deletes_the_listed_subtenants_mappings_and_audits_it(
    store: Arc<dyn Store>,
) -> R {
    let p = store
        .create_account("Partner", AccountKind::Partner, None)
        .await?;
    let mut subs = Vec::new();
    for n in 0..3 {
        let s = store
            .create_account(&format!("Sub {n}"), AccountKind::Subtenant, Some(&p.id))
            .await?;
        mappings(&store, &s.id).await?;
        subs.push(s.id);
    }
    mappings(&store, &p.id).await?;
    let mut i = integration(&p.id);
    store
        .save_integration(&i, &audit(&p.id, "integration.create"))
        .await?;
    let mut everyone = subs.clone();
    everyone.push(p.id.clone());
    let mut want = everyone.clone();
    want.sort();
    ensure!(store.accounts_with_own_mappings(&everyone).await? == want);

    i.uniform_subtenant_mappings = true;
    let mut entry = audit(&p.id, "integration.uniform_on");
    entry.detail = json!({ "cleared": [subs[0], subs[1]] });
    store
        .set_uniform_mode(&i, &[subs[0].clone(), subs[1].clone()], &entry)
        .await?;
    ensure!(
        store
            .integration(&i.id)
            .await?
            .context("int")?
            .uniform_subtenant_mappings
    );
    for s in &subs[..2] {
        ensure!(store.mapping(s, MappingResource::Board).await?.is_none());
        ensure!(
            store
                .mapping(s, MappingResource::Criticality)
                .await?
                .is_none()
        );
    }
    ensure!(
        store
            .mapping(&subs[2], MappingResource::Board)
            .await?
            .is_some()
    );
    ensure!(
        store
            .mapping(&p.id, MappingResource::Criticality)
            .await?
            .is_some()
    );
    let mut want = vec![subs[2].clone(), p.id.clone()];
    want.sort();
    ensure!(store.accounts_with_own_mappings(&everyone).await? == want);
    let log = store.audit_log(&p.id).await?;
    let last = log.last().context("audit")?;
    ensure!(*last == entry, "{last:?}");
    Ok(())
}

async fn uniform_mode_clears_ten_thousand_subtenants_in_one_go(store: Arc<dyn Store>) -> R {
    let p = store
        .create_account("Big partner", AccountKind::Partner, None)
        .await?;
    // a few real sub-tenants with mappings, spread over the list, among 10,000 ids
    let mut list: Vec<String> = (0..10_000).map(|n| format!("acct_gone_{n:05}")).collect();
    let mut real = Vec::new();
    for (n, pos) in [0_usize, 4_999, 9_999].into_iter().enumerate() {
        let s = store
            .create_account(&format!("Real {n}"), AccountKind::Subtenant, Some(&p.id))
            .await?;
        mappings(&store, &s.id).await?;
        list[pos] = s.id.clone();
        real.push(s.id);
    }
    let keep = store
        .create_account("Keeps", AccountKind::Subtenant, Some(&p.id))
        .await?;
    mappings(&store, &keep.id).await?;

    let mut with_keep = list.clone();
    with_keep.push(keep.id.clone());
    let mut found = store.accounts_with_own_mappings(&with_keep).await?;
    found.sort();
    let mut want = real.clone();
    want.push(keep.id.clone());
    want.sort();
    ensure!(found == want, "accounts_with_own_mappings over 10,001 ids");

    let mut i = integration(&p.id);
    i.uniform_subtenant_mappings = true;
    store
        .save_integration(&i, &audit(&p.id, "integration.create"))
        .await?;
    store
        .set_uniform_mode(&i, &list, &audit(&p.id, "integration.uniform_on"))
        .await?;
    ensure!(store.accounts_with_own_mappings(&with_keep).await? == vec![keep.id.clone()]);
    ensure!(
        store
            .audit_log(&p.id)
            .await?
            .last()
            .map(|e| e.action.as_str())
            == Some("integration.uniform_on")
    );
    Ok(())
}

async fn a_mapping_is_put_read_and_deleted_with_an_audit_entry_each_time(
    store: Arc<dyn Store>,
) -> R {
    let a = account(&store, "Maps").await?;
    let b = account(&store, "Other").await?;
    ensure!(store.mapping(&a, MappingResource::Board).await?.is_none());
    let board = json!({ "rule_types": [{ "rule_type": "Endpoint", "board_id": BIG_TICKET }], "assignments": [] });
    store
        .put_mapping(
            &a,
            MappingResource::Board,
            Some(&board),
            &audit(&a, "board.put"),
        )
        .await?;
    ensure!(store.mapping(&a, MappingResource::Board).await? == Some(board.clone()));
    ensure!(
        store
            .mapping(&a, MappingResource::Criticality)
            .await?
            .is_none()
    );
    ensure!(store.mapping(&b, MappingResource::Board).await?.is_none());
    let board2 =
        json!({ "rule_types": [], "assignments": [{ "rule_id": "r", "rule_type": "Cloud" }] });
    store
        .put_mapping(
            &a,
            MappingResource::Board,
            Some(&board2),
            &audit(&a, "board.put"),
        )
        .await?;
    ensure!(store.mapping(&a, MappingResource::Board).await? == Some(board2));
    let crit = json!({ "critical": 1, "high": 2 });
    store
        .put_mapping(
            &a,
            MappingResource::Criticality,
            Some(&crit),
            &audit(&a, "crit.put"),
        )
        .await?;
    ensure!(
        store
            .accounts_with_own_mappings(&[a.clone(), b.clone()])
            .await?
            == vec![a.clone()]
    );
    store
        .put_mapping(&a, MappingResource::Board, None, &audit(&a, "board.delete"))
        .await?;
    ensure!(store.mapping(&a, MappingResource::Board).await?.is_none());
    ensure!(store.mapping(&a, MappingResource::Criticality).await? == Some(crit));
    ensure!(
        store
            .accounts_with_own_mappings(std::slice::from_ref(&a))
            .await?
            == vec![a.clone()]
    );
    store
        .put_mapping(
            &a,
            MappingResource::Criticality,
            None,
            &audit(&a, "crit.delete"),
        )
        .await?;
    ensure!(
        store
            .accounts_with_own_mappings(&[a.clone(), b.clone()])
            .await?
            .is_empty()
    );
    ensure!(store.accounts_with_own_mappings(&[]).await?.is_empty());
    let actions: Vec<_> = store
        .audit_log(&a)
        .await?
        .into_iter()
        .map(|e| e.action)
        .collect();
    ensure!(
        actions
            == [
                "board.put",
                "board.put",
                "crit.put",
                "board.delete",
                "crit.delete"
            ],
        "{actions:?}"
    );
    Ok(())
}

async fn company_mappings_are_replaced_as_a_whole(store: Arc<dyn Store>) -> R {
    let p = store
        .create_account("Partner", AccountKind::Partner, None)
        .await?;
    let s1 = store
        .create_account("S1", AccountKind::Subtenant, Some(&p.id))
        .await?
        .id;
    let s2 = store
        .create_account("S2", AccountKind::Subtenant, Some(&p.id))
        .await?
        .id;
    ensure!(store.company_mappings(&p.id).await?.is_empty());
    let first = vec![
        (s1.clone(), "ACME".to_string()),
        (s2.clone(), "Globex".to_string()),
    ];
    store
        .put_company_mappings(&p.id, &first, &audit(&p.id, "companies"))
        .await?;
    ensure!(store.company_mappings(&p.id).await? == first);
    let second = vec![(s2.clone(), "Initech".to_string())];
    store
        .put_company_mappings(&p.id, &second, &audit(&p.id, "companies"))
        .await?;
    ensure!(store.company_mappings(&p.id).await? == second);
    store
        .put_company_mappings(&p.id, &[], &audit(&p.id, "companies"))
        .await?;
    ensure!(store.company_mappings(&p.id).await?.is_empty());
    ensure!(store.audit_log(&p.id).await?.len() == 3);
    Ok(())
}

async fn status_mappings_round_trip_with_their_confirmed_flag(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Statuses").await?;
    ensure!(store.status_mappings(&a).await? == StatusMappings::default());
    let m = StatusMappings {
        boards: vec![
            StatusMapping {
                board_id: 7,
                confirmed: true,
                statuses: CaseStatusMap {
                    open: Some(1),
                    escalated: Some(2),
                    in_progress: Some(3),
                    waiting_on_customer: None,
                    closed: Some(BIG_TICKET),
                },
            },
            StatusMapping {
                board_id: BIG_TICKET,
                confirmed: false,
                statuses: CaseStatusMap {
                    open: Some(10),
                    ..Default::default()
                },
            },
        ],
    };
    store
        .put_status_mappings(&a, &m, &audit(&a, "statuses"))
        .await?;
    ensure!(store.status_mappings(&a).await? == m);
    let one = StatusMappings {
        boards: vec![StatusMapping {
            confirmed: true,
            ..m.boards[1].clone()
        }],
    };
    store
        .put_status_mappings(&a, &one, &audit(&a, "statuses"))
        .await?;
    ensure!(store.status_mappings(&a).await? == one);
    ensure!(store.audit_log(&a).await?.len() == 2);
    Ok(())
}

async fn the_escalation_policy_is_set_changed_and_cleared(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Escalation").await?;
    ensure!(store.escalation_policy(&a).await?.is_none());
    store
        .put_escalation_policy(&a, Some(Criticality::High), &audit(&a, "escalation"))
        .await?;
    ensure!(store.escalation_policy(&a).await? == Some(Criticality::High));
    store
        .put_escalation_policy(&a, Some(Criticality::Critical), &audit(&a, "escalation"))
        .await?;
    ensure!(store.escalation_policy(&a).await? == Some(Criticality::Critical));
    store
        .put_escalation_policy(&a, None, &audit(&a, "escalation"))
        .await?;
    ensure!(store.escalation_policy(&a).await?.is_none());
    ensure!(store.audit_log(&a).await?.len() == 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inbound sync

async fn the_inbox_drops_a_repeated_message_id_and_hands_out_each_event_once(
    store: Arc<dyn Store>,
) -> R {
    let ev = |id: &str, at: i64| InboxEvent {
        message_id: id.to_string(),
        integration_id: "int_1".into(),
        ticket_id: BIG_TICKET,
        received_at: at,
    };
    let t = now_millis();
    ensure!(store.take_inbox(10).await?.is_empty());
    ensure!(store.insert_inbox(&ev("m-2", t + 2)).await?);
    ensure!(store.insert_inbox(&ev("m-1", t + 1)).await?);
    ensure!(
        !store.insert_inbox(&ev("m-1", t + 5)).await?,
        "a duplicate MessageId"
    );
    ensure!(store.insert_inbox(&ev("m-3", t + 3)).await?);

    let first = store.take_inbox(2).await?;
    let got: Vec<_> = first.iter().map(|e| e.message_id.as_str()).collect();
    ensure!(got == ["m-1", "m-2"], "oldest first: {got:?}");
    ensure!(first[0].ticket_id == BIG_TICKET && first[0].received_at == t + 1);
    ensure!(first[0].integration_id == "int_1");
    let second = store.take_inbox(10).await?;
    let got: Vec<_> = second.iter().map(|e| e.message_id.as_str()).collect();
    ensure!(got == ["m-3"], "{got:?}");
    ensure!(store.take_inbox(10).await?.is_empty());
    ensure!(
        !store.insert_inbox(&ev("m-2", t + 9)).await?,
        "taken ids stay known"
    );
    ensure!(store.take_inbox(10).await?.is_empty());
    Ok(())
}

async fn a_group_commit_batch_marks_only_first_sightings_new_and_old_taken_events_are_pruned(
    store: Arc<dyn Store>,
) -> R {
    let ev = |id: String, at: i64| InboxEvent {
        message_id: id,
        integration_id: "int_1".into(),
        ticket_id: BIG_TICKET,
        received_at: at,
    };
    let t = now_millis();
    ensure!(store.insert_inbox(&ev("old".into(), t)).await?);
    // 1,200 events (more than one INSERT statement's worth), with a repeat inside the batch
    // and one already stored
    let mut batch: Vec<InboxEvent> = (0..1_200)
        .map(|i| ev(format!("b-{i}"), t + 1 + i))
        .collect();
    batch.insert(700, ev("b-3".into(), t + 5_000));
    batch.push(ev("old".into(), t + 6_000));
    let fresh = store.insert_inbox_batch(&batch).await?;
    ensure!(fresh.len() == batch.len());
    ensure!(fresh.iter().filter(|f| **f).count() == 1_200, "new ones");
    ensure!(
        fresh[3] && !fresh[700],
        "the first sighting of b-3 is the new one"
    );
    ensure!(!fresh[batch.len() - 1], "an id stored before is not new");
    ensure!(store.insert_inbox_batch(&[]).await?.is_empty());

    let mut taken = Vec::new();
    loop {
        let got = store.take_inbox(500).await?;
        if got.is_empty() {
            break;
        }
        taken.extend(got);
    }
    ensure!(taken.len() == 1_201, "{}", taken.len());
    ensure!(
        taken
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at),
        "oldest first across rounds"
    );
    ensure!(taken[0].message_id == "old");
    let b3 = taken.iter().find(|e| e.message_id == "b-3").expect("b-3");
    ensure!(b3.received_at == t + 4, "the first sighting's time is kept");

    // pruning forgets taken ids received before the cut, and only those
    ensure!(store.prune_inbox(t).await? == 0);
    ensure!(store.prune_inbox(t + 4).await? == 4, "old, b-0, b-1, b-2");
    ensure!(store.prune_inbox(t + 10_000).await? == 1_197);
    ensure!(
        store.insert_inbox(&ev("old".into(), t)).await?,
        "a pruned id is new again"
    );
    ensure!(
        store.prune_inbox(t + 10_000).await? == 0,
        "pending events stay"
    );
    ensure!(store.take_inbox(10).await?.len() == 1);
    Ok(())
}

async fn ticket_sync_state_upserts_and_round_trips(store: Arc<dyn Store>) -> R {
    let a = account(&store, "Sync").await?;
    let case = open_case(&store, &a, "k").await?;
    ensure!(store.ticket_sync(&case.id).await?.is_none());
    let mut s = TicketSyncState {
        case_id: case.id.clone(),
        integration_id: "int_1".into(),
        ticket_id: BIG_TICKET,
        last_status_id: Some(4_000_000_009),
        last_write_cw_at: Some("2025-01-01T00:00:00Z".into()),
        seen_note_ids: vec![1, BIG_TICKET, 5_000_000_000],
    };
    store.put_ticket_sync(&s).await?;
    ensure!(store.ticket_sync(&case.id).await?.as_ref() == Some(&s));
    s.last_status_id = None;
    s.last_write_cw_at = None;
    s.seen_note_ids = vec![];
    s.ticket_id = BIG_TICKET + 1;
    store.put_ticket_sync(&s).await?;
    ensure!(store.ticket_sync(&case.id).await?.as_ref() == Some(&s));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// request budget

async fn the_request_budget_is_shared_fairly_and_a_deferred_job_keeps_its_attempts(
    store: Arc<dyn Store>,
) -> R {
    let partner = account(&store, "Budget partner").await?;
    let i = integration(&partner);
    store
        .save_integration(&i, &audit(&partner, "budget"))
        .await?;
    let window = 1_700_000_000_000_i64;
    // alone in the window, an account may take what leaves room for one more: 10 of 20
    let mut noisy = 0;
    while store
        .reserve_requests(&i.id, "acct_noisy", window, 1, 20)
        .await?
    {
        noisy += 1;
        ensure!(noisy <= 20, "the budget never ran out");
    }
    ensure!(noisy == 10, "a lone account got {noisy} of 20, want 10");
    // a quiet account arriving later still gets its share
    let mut quiet = 0;
    while store
        .reserve_requests(&i.id, "acct_quiet", window, 1, 20)
        .await?
    {
        quiet += 1;
        ensure!(quiet <= 20, "the budget never ran out");
    }
    ensure!(quiet >= 5, "the quiet account got only {quiet}");
    ensure!(
        noisy + quiet <= 20,
        "the budget was overdrawn: {}",
        noisy + quiet
    );
    // a new window starts afresh
    ensure!(
        store
            .reserve_requests(&i.id, "acct_noisy", window + 60_000, 1, 20)
            .await?
    );

    let (case, _) = case_with_jobs(&store, &partner, &["create_ticket"]).await?;
    let t = now_millis();
    let claimed = store.claim_jobs("w", t, t + 60_000, 10).await?;
    let job = claimed
        .iter()
        .find(|j| j.case_id == case.id)
        .context("claimed")?;
    ensure!(job.attempts == 1);
    store.defer_job(&job.id, "w", t + 5_000).await?;
    let back = store.job(&job.id).await?.context("job")?;
    ensure!(
        back.state == JobState::Pending && back.attempts == 0,
        "deferred: {:?} with {} attempts",
        back.state,
        back.attempts
    );
    ensure!(
        store
            .claim_jobs("w", t + 1, t + 60_000, 10)
            .await?
            .is_empty(),
        "claimable before its new due time"
    );
    ensure!(
        store
            .claim_jobs("w", t + 5_000, t + 60_000, 10)
            .await?
            .len()
            == 1
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the suite, once per backend

macro_rules! conformance {
    (fresh: [$($fresh:ident),* $(,)?], migrated: [$($name:ident),* $(,)?] $(,)?) => {
        conformance!(@backend sqlite, Sqlite, [$($fresh),*], [$($name),*]);
        conformance!(@backend postgres, Postgres, [$($fresh),*], [$($name),*]);
    };
    (@backend $module:ident, $backend:ident, [$($fresh:ident),*], [$($name:ident),*]) => {
        mod $module {
            use crate::harness::{run, Backend};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $fresh() {
                    run(Backend::$backend, false, super::$fresh).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    run(Backend::$backend, true, super::$name).await;
                }
            )*
        }
    };
}

conformance! {
    fresh: [migrations_are_idempotent_and_ready_turns_true_only_after_them],
    migrated: [
        a_partner_lists_only_its_own_subtenants_and_accounts_are_found_by_name,
        a_token_grant_is_found_by_its_hash_and_an_unknown_hash_grants_nothing,
        a_users_email_is_unique,
        re_importing_the_same_rules_changes_nothing_and_an_update_changes_the_title,
        a_repeated_alert_raises_the_count_on_its_case_and_another_account_opens_its_own,
        cases_filter_by_account_status_criticality_and_case_insensitive_text,
        cases_page_newest_first_by_cursor_without_duplicates_or_gaps,
        a_case_change_writes_status_note_activity_and_jobs_together_and_a_conflict_writes_nothing,
        a_delivered_note_records_its_connectwise_id_and_a_clash_leaves_it_unset,
        a_ticket_link_is_set_updated_and_found_by_a_ticket_id_above_2_pow_31,
        a_claim_gives_one_job_per_case_and_a_note_never_overtakes_the_create,
        two_owners_claiming_concurrently_never_get_the_same_job,
        an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_finish,
        a_dead_job_blocks_its_cases_later_jobs_until_retried_by_hand,
        attempts_are_recorded_in_order_and_a_retry_is_not_claimable_before_it_is_due,
        released_jobs_return_to_pending_and_only_the_owners,
        has_pending_create_tracks_the_create_job,
        finishing_a_job_with_effects_applies_the_case_change_in_the_same_transaction,
        an_integration_round_trips_every_field_and_keeps_the_encrypted_key_as_given,
        uniform_mode_deletes_the_listed_subtenants_mappings_and_audits_it,
        uniform_mode_clears_ten_thousand_subtenants_in_one_go,
        a_mapping_is_put_read_and_deleted_with_an_audit_entry_each_time,
        company_mappings_are_replaced_as_a_whole,
        status_mappings_round_trip_with_their_confirmed_flag,
        the_escalation_policy_is_set_changed_and_cleared,
        the_inbox_drops_a_repeated_message_id_and_hands_out_each_event_once,
        a_group_commit_batch_marks_only_first_sightings_new_and_old_taken_events_are_pruned,
        ticket_sync_state_upserts_and_round_trips,
        the_request_budget_is_shared_fairly_and_a_deferred_job_keeps_its_attempts,
    ],
}

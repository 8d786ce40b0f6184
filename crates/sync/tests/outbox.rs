//! Outbound sync (DESIGN §4) against an in-process cw-sim: the outbox worker's retries, dead
//! jobs, per-case ordering and exactly-one-ticket-per-case across crashes and unknown outcomes,
//! and escalation's idempotence. Every test runs on SQLite and — when
//! `CASEBRIDGE_TEST_DATABASE_URL` is set — on a fresh PostgreSQL database of its own.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge_domain::ticket_content::note_marker;
use casebridge_domain::{CaseStatus, TicketState, Visibility};
use casebridge_store::{CaseChange, JobState, MappingResource, TicketLinkChange, now_millis};
use casebridge_sync::escalation::{CREATE_TICKET, escalate};
use casebridge_sync::outbox::Worker;
use casebridge_sync::{ConnectorFactory, SyncContext, changes};
use serde_json::json;
use support::*;

type R = anyhow::Result<()>;

macro_rules! both_backends {
    ($($name:ident $(($opts:expr))?),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut, unused_assignments)]
                    let mut opts = super::Options::default();
                    $( opts = $opts; )?
                    let env = super::setup(super::Backend::Sqlite, opts).await.expect("sqlite env");
                    super::$name(&env).await.unwrap_or_else(|e| panic!("sqlite: {e:#}"));
                    env.teardown().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut, unused_assignments)]
                    let mut opts = super::Options::default();
                    $( opts = $opts; )?
                    let Some(env) = super::setup(super::Backend::Postgres, opts).await else { return };
                    super::$name(&env).await.unwrap_or_else(|e| panic!("postgres: {e:#}"));
                    env.teardown().await;
                }
            )*
        }
    };
}

both_backends!(
    crash_after_create_is_adopted_by_the_next_worker,
    timeout_after_create_is_adopted(Options {
        request_timeout: Duration::from_millis(300),
        ..Options::default()
    }),
    error_500_after_create_is_adopted,
    rate_limit_honours_retry_after,
    dead_job_blocks_later_jobs_until_retried,
    validation_error_is_dead_at_once,
    notes_never_overtake_the_ticket(Options {
        max_attempts: 100,
        ..Options::default()
    }),
    escalating_twice_queues_one_create,
    unticketable_case_is_ticketed_once_mapping_is_fixed,
    closed_and_reopened_case_keeps_its_ticket,
    a_closing_note_is_kept_and_sent_once_when_the_status_write_fails,
    ticket_gone_in_connectwise_allows_a_new_one,
    ticket_content_and_flags,
    graceful_shutdown_releases_nothing_running,
    drill_300_escalations_with_faults_and_crashes(Options {
        request_timeout: Duration::from_millis(800),
        max_attempts: 100
    }),
);

/// One worker, one run to completion.
async fn drain(env: &Env) {
    let w = Worker::new(env.ctx.clone());
    env.drain(&[&w]).await;
}

async fn one_ticket(env: &Env, case_id: &str) -> anyhow::Result<i64> {
    let tickets = env.sim_tickets_for(case_id).await;
    anyhow::ensure!(
        tickets.len() == 1,
        "case {case_id} has {} tickets in ConnectWise: {tickets:?}",
        tickets.len()
    );
    let id = tickets[0]["id"].as_i64().unwrap();
    let case = env.case(case_id).await;
    let link = case
        .ticket
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("case {case_id} has no ticket link"))?;
    anyhow::ensure!(
        link.id == id && link.state == TicketState::Linked,
        "case links {link:?}, ConnectWise has #{id}"
    );
    Ok(id)
}

async fn create_job(env: &Env, case_id: &str) -> casebridge_store::Job {
    let jobs: Vec<_> = env
        .jobs_of(case_id)
        .await
        .into_iter()
        .filter(|j| j.kind == CREATE_TICKET)
        .collect();
    assert_eq!(jobs.len(), 1, "one create job for {case_id}: {jobs:?}");
    jobs.into_iter().next().unwrap()
}

// (a) ------------------------------------------------------------------------------------------

/// The process dies after ConnectWise created the ticket and before the commit: the next worker
/// takes the job over once the lease ran out and adopts the ticket through `externalXRef`.
async fn crash_after_create_is_adopted_by_the_next_worker(env: &Env) -> R {
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Encoded PowerShell on ws-1")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;

    // A node whose connector "kills" the process right after the create was applied.
    let dying = Arc::new(RecordingFactory::new(Duration::from_secs(3)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    *dying.rec.crash.lock().unwrap() = Some(Crash {
        slot: 0,
        rate: 1.0,
        remaining: 1,
        tx,
    });
    let mut dying_ctx: SyncContext = env.ctx.clone();
    dying_ctx.connectors = dying.clone() as Arc<dyn ConnectorFactory>;
    let node_a = Worker::new(dying_ctx);
    let killed_at = Instant::now();
    let task = tokio::spawn(async move { node_a.run_once().await });
    let (_, ticket_id) = tokio::time::timeout(DEADLINE, rx.recv())
        .await?
        .expect("node A created the ticket");
    task.abort(); // kill -9: no commit, no release, no more heartbeats

    let job = create_job(env, &case.id).await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Running, 1),
        "still leased to the dead node"
    );
    assert!(
        env.case(&case.id).await.ticket.is_none(),
        "the create was never committed"
    );
    assert_eq!(env.sim_tickets_for(&case.id).await.len(), 1);

    // Node B: nothing to claim while the lease runs, then it takes over.
    let node_b = Worker::new(env.ctx.clone());
    env.drain(&[&node_b]).await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(150),
        "taken over only after the lease ran out"
    );

    let job = env.store.job(&job.id).await?.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Done, 2));
    assert_eq!(one_ticket(env, &case.id).await?, ticket_id);
    let attempts = env.store.job_attempts(&job.id).await?;
    assert_eq!(
        attempts.len(),
        1,
        "the killed attempt recorded nothing; the takeover did: {attempts:?}"
    );
    assert_eq!(attempts[0].status_code, Some(200));
    assert!(logged(
        &env.activity(&case.id).await,
        "ticket_adopted",
        &format!("#{ticket_id}")
    ));
    assert_eq!(
        env.rec.tickets.lock().unwrap().len(),
        0,
        "node B never sent a create"
    );
    Ok(())
}

// (b) (c) --------------------------------------------------------------------------------------

/// The create is applied, but the answer comes only after the client's timeout.
async fn timeout_after_create_is_adopted(env: &Env) -> R {
    let case = env
        .new_case(&env.globex, RULE_CLOUD, "Impossible travel for bob")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    // delay_ms is scaled by time_scale 0.01: 1 s, past the 300 ms client timeout.
    env.faults(json!({"apply_then_fail": {"mode": "delay", "delay_ms": 100_000, "count": 1, "method": "POST", "path_prefix": "/service/tickets"}}))
        .await;
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    let job = create_job(env, &case.id).await;
    assert_eq!((job.state, job.attempts), (JobState::Done, 2));
    let attempts = env.store.job_attempts(&job.id).await?;
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.outcome.as_str(), a.status_code))
            .collect::<Vec<_>>(),
        [("retry", None), ("done", Some(200))]
    );
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("did not answer in time"),
        "{attempts:?}"
    );
    let activity = env.activity(&case.id).await;
    assert!(logged(&activity, "sync_retry", "did not answer in time"));
    assert!(logged(&activity, "ticket_adopted", &format!("#{id}")));
    assert_eq!(
        env.rec.tickets.lock().unwrap().len(),
        1,
        "the create was sent once"
    );
    Ok(())
}

/// ConnectWise creates the ticket and answers 500.
async fn error_500_after_create_is_adopted(env: &Env) -> R {
    let case = env
        .new_case(&env.plain, RULE_ENDPOINT, "Mimikatz on srv-2")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    env.faults(json!({"apply_then_fail": {"mode": "500", "count": 1, "method": "POST", "path_prefix": "/service/tickets"}})).await;
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    let job = create_job(env, &case.id).await;
    let attempts = env.store.job_attempts(&job.id).await?;
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.outcome.as_str(), a.status_code))
            .collect::<Vec<_>>(),
        [("retry", Some(500)), ("done", Some(200))]
    );
    assert!(logged(
        &env.activity(&case.id).await,
        "ticket_adopted",
        &format!("#{id}")
    ));
    // No company mapping: filed under the parent company.
    assert_eq!(
        env.sim_tickets_for(&case.id).await[0]["company"]["identifier"],
        json!("CBMSSP")
    );
    Ok(())
}

// (d) ------------------------------------------------------------------------------------------

async fn rate_limit_honours_retry_after(env: &Env) -> R {
    let w = Worker::new(env.ctx.clone());
    // With Retry-After: the job is due no earlier than ConnectWise asked.
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Rate limited with Retry-After")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    env.faults(json!({"rate_limit_429": {"every_n": 1, "retry_after_secs": 1}}))
        .await;
    let before = now_millis();
    assert_eq!(w.run_once().await?, 1);
    let job = create_job(env, &case.id).await;
    assert_eq!((job.state, job.attempts), (JobState::Pending, 1));
    let wait = job.due_at - before;
    assert!(
        (1_000..1_000 + 2_000).contains(&wait),
        "due in {wait} ms, Retry-After says 1 s"
    );
    let attempts = env.store.job_attempts(&job.id).await?;
    assert_eq!(
        (attempts[0].status_code, attempts[0].outcome.as_str()),
        (Some(429), "retry")
    );
    assert!(logged(
        &env.activity(&case.id).await,
        "sync_retry",
        "retrying in 1 s"
    ));
    env.faults(json!({})).await;
    assert_eq!(
        w.run_once().await?,
        0,
        "not claimed before Retry-After ran out"
    );
    env.drain(&[&w]).await;
    assert!(now_millis() >= job.due_at);
    one_ticket(env, &case.id).await?;

    // Without Retry-After: the worker's own (here millisecond) backoff.
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Rate limited without Retry-After")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    env.faults(json!({"rate_limit_429": {"every_n": 1, "retry_after_secs": null}}))
        .await;
    let before = now_millis();
    assert_eq!(w.run_once().await?, 1);
    let job = create_job(env, &case.id).await;
    assert_eq!(job.state, JobState::Pending);
    assert!(
        job.due_at - before < 500,
        "backoff of at most 5 ms (+ the request), got {} ms",
        job.due_at - before
    );
    assert_eq!(
        env.store.job_attempts(&job.id).await?[0].status_code,
        Some(429)
    );
    env.faults(json!({})).await;
    env.drain(&[&w]).await;
    one_ticket(env, &case.id).await?;
    Ok(())
}

// (e) ------------------------------------------------------------------------------------------

async fn dead_job_blocks_later_jobs_until_retried(env: &Env) -> R {
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Persistent 500s")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    let (_, note) = changes::add_note(
        &env.ctx,
        &case.id,
        "We isolated the host.",
        Visibility::Shared,
        "analyst",
    )
    .await?;
    env.faults(json!({"error_rate": 1.0})).await;
    drain(env).await;

    let jobs = env.jobs_of(&case.id).await;
    assert_eq!(jobs.len(), 2);
    let (create, note_job) = (&jobs[0], &jobs[1]);
    assert_eq!(
        (create.kind.as_str(), create.state, create.attempts),
        (CREATE_TICKET, JobState::Dead, env.opts.max_attempts)
    );
    assert!(
        create
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{create:?}"
    );
    let attempts = env.store.job_attempts(&create.id).await?;
    assert_eq!(attempts.len() as i64, env.opts.max_attempts);
    assert!(
        attempts
            .iter()
            .all(|a| a.status_code == Some(500) && a.error.is_some()),
        "{attempts:?}"
    );
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "dead"]);
    assert_eq!(
        (note_job.state, note_job.blocked, note_job.attempts),
        (JobState::Pending, true, 0),
        "{note_job:?}"
    );
    assert!(env.store.job_attempts(&note_job.id).await?.is_empty());
    assert!(
        env.rec.notes.lock().unwrap().is_empty(),
        "the note was never sent"
    );
    assert_eq!(
        env.store
            .jobs(Some(JobState::Dead), &env.accounts(), 10)
            .await?
            .len(),
        1
    );
    assert!(logged(
        &env.activity(&case.id).await,
        "sync_failed",
        "parked as dead"
    ));

    // Fixed on ConnectWise's side; retried by hand: the ticket, then the note.
    env.faults(json!({})).await;
    let retried = env.store.retry_job(&create.id, "admin").await?;
    assert_eq!(retried.state, JobState::Pending);
    assert!(
        !env.jobs_of(&case.id).await[1].blocked
            || env.jobs_of(&case.id).await[1].state != JobState::Dead
    );
    drain(env).await;
    let ticket = one_ticket(env, &case.id).await?;
    for j in env.jobs_of(&case.id).await {
        assert_eq!(j.state, JobState::Done, "{j:?}");
    }
    let notes = env.psa().notes(ticket).await?;
    let ours: Vec<_> = notes
        .iter()
        .filter(|n| n.text.contains(&note_marker(&note.id)))
        .collect();
    assert_eq!(ours.len(), 1, "{notes:?}");
    let local = env.store.notes(&case.id).await?;
    assert_eq!(
        local
            .iter()
            .find(|n| n.id == note.id)
            .and_then(|n| n.cw_note_id),
        Some(ours[0].id),
        "the case's note records the ConnectWise note it became"
    );
    assert!(
        ours[0].id > notes.iter().map(|n| n.id).min().unwrap(),
        "sent after the ticket's own notes"
    );
    assert!(logged(
        &env.activity(&case.id).await,
        "job_retry",
        &create.id
    ));
    Ok(())
}

// (f) ------------------------------------------------------------------------------------------

async fn validation_error_is_dead_at_once(env: &Env) -> R {
    // A company mapped here, then deleted in ConnectWise (OLDCO is deleted in the demo seed).
    let old = env
        .store
        .create_account(
            "Old Co",
            casebridge_domain::AccountKind::Subtenant,
            Some(&env.partner),
        )
        .await?;
    let mut mappings = env.store.company_mappings(&env.partner).await?;
    mappings.push((old.id.clone(), "OLDCO".into()));
    env.store
        .put_company_mappings(&env.partner, &mappings, &audit(&env.partner))
        .await?;
    let case = env
        .new_case(&old.id, RULE_ENDPOINT, "Case of a deleted company")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    let w = Worker::new(env.ctx.clone());
    assert_eq!(w.run_once().await?, 1);
    assert_eq!(w.run_once().await?, 0, "nothing left to retry");

    let job = env
        .store
        .jobs(Some(JobState::Dead), std::slice::from_ref(&old.id), 10)
        .await?
        .pop()
        .expect("dead job");
    assert_eq!(job.attempts, 1, "dead at once");
    let attempts = env.store.job_attempts(&job.id).await?;
    assert_eq!(
        (
            attempts.len(),
            attempts[0].status_code,
            attempts[0].outcome.as_str()
        ),
        (1, Some(400), "dead")
    );
    let activity = env.activity(&case.id).await;
    let failed = activity
        .iter()
        .find(|a| a.kind == "sync_failed")
        .expect("failure logged");
    assert!(
        failed.message.contains("OLDCO") && failed.message.contains("deleted"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("no retry can fix this"),
        "{}",
        failed.message
    );
    assert!(env.case(&case.id).await.ticket.is_none());
    let state = env.sim_state().await;
    assert!(
        state["tickets"].as_array().unwrap().is_empty(),
        "not re-filed under the parent company: {}",
        state["tickets"]
    );
    let sent = env.rec.tickets.lock().unwrap().clone();
    assert_eq!(
        sent.iter()
            .map(|t| t.company_identifier.as_str())
            .collect::<Vec<_>>(),
        ["OLDCO"]
    );
    Ok(())
}

// (g) ------------------------------------------------------------------------------------------

/// Notes added right after escalation, with several workers running concurrently and slow,
/// flaky ticket creation: a note never goes out before its ticket exists (it would be skipped
/// as "the case has no ticket"), and each note reaches its ticket once.
async fn notes_never_overtake_the_ticket(env: &Env) -> R {
    env.faults(json!({"latency_ms": 2_000, "error_rate": 0.2, "seed": 7}))
        .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(Worker::new(env.ctx.clone()).run(stop_rx.clone())))
        .collect();
    let accounts = [&env.acme, &env.globex, &env.plain];
    let mut cases = Vec::new();
    for i in 0..24 {
        let case = env
            .new_case(
                accounts[i % 3],
                if i % 2 == 0 {
                    RULE_ENDPOINT
                } else {
                    RULE_CLOUD
                },
                &format!("Ordering {i}"),
            )
            .await;
        escalate(&env.ctx, &case.id, "analyst").await?;
        let (_, n1) = changes::add_note(
            &env.ctx,
            &case.id,
            &format!("first note {i}"),
            Visibility::Shared,
            "analyst",
        )
        .await?;
        let (_, n2) = changes::add_note(
            &env.ctx,
            &case.id,
            &format!("second note {i}"),
            Visibility::Internal,
            "analyst",
        )
        .await?;
        cases.push((case.id, n1.id, n2.id));
    }
    env.wait_until("every job done", || async {
        let jobs = env.all_jobs().await;
        assert!(
            jobs.iter().all(|j| j.state != JobState::Dead),
            "dead jobs: {jobs:?}"
        );
        jobs.iter().all(|j| j.state == JobState::Done)
    })
    .await;
    stop_tx.send(true)?;
    for w in workers {
        tokio::time::timeout(DEADLINE, w).await??;
    }
    env.faults(json!({})).await;
    let psa = env.psa();
    for (case_id, n1, n2) in &cases {
        let ticket = one_ticket(env, case_id).await?;
        let activity = env.activity(case_id).await;
        assert!(
            !activity.iter().any(|a| a.kind == "sync_skipped"),
            "{case_id}: a note ran before its ticket: {activity:?}"
        );
        let notes = psa.notes(ticket).await?;
        let pos = |id: &str| {
            let found: Vec<_> = notes
                .iter()
                .filter(|n| n.text.contains(&note_marker(id)))
                .collect();
            assert_eq!(
                found.len(),
                1,
                "{case_id}: note {id} on the ticket once: {notes:?}"
            );
            found[0].id
        };
        assert!(pos(n1) < pos(n2), "notes in the order they were written");
    }
    Ok(())
}

// (h) ------------------------------------------------------------------------------------------

async fn escalating_twice_queues_one_create(env: &Env) -> R {
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Escalated twice")
        .await;
    let first = escalate(&env.ctx, &case.id, "analyst").await?;
    let second = escalate(&env.ctx, &case.id, "analyst").await?;
    assert_eq!(
        (first.status, second.status),
        (CaseStatus::Escalated, CaseStatus::Escalated)
    );
    assert_eq!(env.jobs_of(&case.id).await.len(), 1);
    assert!(logged(
        &env.activity(&case.id).await,
        "escalate_repeat",
        "already queued"
    ));
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    let third = escalate(&env.ctx, &case.id, "analyst").await?;
    assert_eq!(third.ticket.as_ref().map(|t| t.id), Some(id));
    assert_eq!(env.jobs_of(&case.id).await.len(), 1, "no second create");
    assert!(logged(
        &env.activity(&case.id).await,
        "escalate_repeat",
        &format!("keeps ConnectWise ticket #{id}")
    ));
    drain(env).await;
    one_ticket(env, &case.id).await?;
    Ok(())
}

async fn unticketable_case_is_ticketed_once_mapping_is_fixed(env: &Env) -> R {
    let case = env
        .new_case(&env.globex, RULE_UNASSIGNED, "Rule without a rule type")
        .await;
    let after = escalate(&env.ctx, &case.id, "analyst").await?;
    assert_eq!(after.status, CaseStatus::Escalated);
    assert!(after.ticket.is_none());
    assert_eq!(
        after.routing.as_ref().unwrap()["code"],
        json!("rule_unassigned")
    );
    assert!(env.jobs_of(&case.id).await.is_empty());
    assert!(logged(
        &env.activity(&case.id).await,
        "not_ticketed",
        &format!("not ticketed: rule {RULE_UNASSIGNED} has no rule type")
    ));
    // A note on an unticketed case stays local.
    changes::add_note(
        &env.ctx,
        &case.id,
        "local only",
        Visibility::Shared,
        "analyst",
    )
    .await?;
    assert!(env.jobs_of(&case.id).await.is_empty());

    let fixed = serde_json::to_value(board_mappings(true))?;
    env.store
        .put_mapping(
            &env.partner,
            MappingResource::Board,
            Some(&fixed),
            &audit(&env.partner),
        )
        .await?;
    let again = escalate(&env.ctx, &case.id, "analyst").await?;
    assert_eq!(again.routing.as_ref().unwrap()["ticketed"], json!(true));
    assert_eq!(env.jobs_of(&case.id).await.len(), 1);
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    assert_eq!(
        env.sim_tickets_for(&case.id).await[0]["board"]["id"],
        json!(2),
        "rule type Cloud → board 2 (#{id})"
    );
    Ok(())
}

/// The closing note lands, then the status write is applied but answered 500: the retry finds
/// the note by its marker instead of posting it again. The note is also the case's own.
async fn a_closing_note_is_kept_and_sent_once_when_the_status_write_fails(env: &Env) -> R {
    let case = env
        .new_case(
            &env.acme,
            RULE_ENDPOINT,
            "Closed with a failing status write",
        )
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    drain(env).await;
    let ticket = one_ticket(env, &case.id).await?;
    env.faults(json!({"apply_then_fail": {"mode": "500", "count": 1, "method": "PATCH", "path_prefix": "/service/tickets"}})).await;
    let closed = changes::change_status(
        &env.ctx,
        &case.id,
        CaseStatus::Closed,
        Some("resolved".into()),
        Some("Host reimaged; credentials rotated.".into()),
        "analyst",
    )
    .await?;
    assert_eq!(closed.status, CaseStatus::Closed);
    drain(env).await;
    let notes = env.store.notes(&case.id).await?;
    let closing: Vec<_> = notes
        .iter()
        .filter(|n| n.text == "Host reimaged; credentials rotated.")
        .collect();
    assert_eq!(closing.len(), 1, "kept on the case: {notes:?}");
    assert_eq!(closing[0].visibility, Visibility::Shared);
    let state = env.sim_state().await;
    let sent: Vec<_> = state["notes"][ticket.to_string()]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            n["text"]
                .as_str()
                .unwrap_or_default()
                .contains(&note_marker(&closing[0].id))
        })
        .collect();
    assert_eq!(sent.len(), 1, "posted once: {sent:#?}");
    assert_eq!(sent[0]["resolutionFlag"], json!(true), "{sent:?}");
    assert_eq!(closing[0].cw_note_id, sent[0]["id"].as_i64());
    let job = env
        .jobs_of(&case.id)
        .await
        .into_iter()
        .find(|j| j.kind == changes::UPDATE_STATUS)
        .expect("the status job");
    let outcomes: Vec<_> = env
        .store
        .job_attempts(&job.id)
        .await?
        .into_iter()
        .map(|a| (a.outcome, a.status_code))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry".to_string(), Some(500)),
            ("done".to_string(), Some(200))
        ]
    );
    assert_eq!(
        env.sim_tickets_for(&case.id).await[0]["closedFlag"],
        json!(true)
    );
    assert!(logged(
        &env.activity(&case.id).await,
        "note_sent",
        "closing note found on ticket"
    ));

    // A resolution for a case that is already closed is refused, not dropped unseen; a
    // resolution with another status likewise.
    for (status, why) in [
        (CaseStatus::Closed, "already closed"),
        (CaseStatus::InProgress, "only with status closed"),
    ] {
        let e = changes::change_status(
            &env.ctx,
            &case.id,
            status,
            None,
            Some("More text.".into()),
            "analyst",
        )
        .await
        .expect_err("refused");
        assert!(e.to_string().contains(why), "{e}");
    }
    assert_eq!(env.store.notes(&case.id).await?.len(), notes.len());
    Ok(())
}

async fn closed_and_reopened_case_keeps_its_ticket(env: &Env) -> R {
    let case = env
        .new_case(&env.acme, RULE_ENDPOINT, "Closed and reopened")
        .await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    changes::change_status(
        &env.ctx,
        &case.id,
        CaseStatus::Closed,
        Some("resolved".into()),
        Some("Host reimaged.".into()),
        "analyst",
    )
    .await?;
    drain(env).await;
    assert_eq!(
        env.sim_tickets_for(&case.id).await[0]["closedFlag"],
        json!(true)
    );
    let reopened =
        changes::change_status(&env.ctx, &case.id, CaseStatus::Open, None, None, "analyst").await?;
    assert_eq!(reopened.status, CaseStatus::Open);
    drain(env).await;
    assert_eq!(
        env.sim_tickets_for(&case.id).await[0]["closedFlag"],
        json!(false),
        "reopened in ConnectWise too"
    );
    let after = escalate(&env.ctx, &case.id, "analyst").await?;
    assert_eq!(
        after.ticket.as_ref().map(|t| (t.id, t.state)),
        Some((id, TicketState::Linked))
    );
    drain(env).await;
    let creates = env
        .jobs_of(&case.id)
        .await
        .into_iter()
        .filter(|j| j.kind == CREATE_TICKET)
        .count();
    assert_eq!(creates, 1, "no second create queued");
    assert_eq!(one_ticket(env, &case.id).await?, id);
    // Escalating a closed case that has a ticket also keeps it.
    changes::change_status(
        &env.ctx,
        &case.id,
        CaseStatus::Closed,
        None,
        None,
        "analyst",
    )
    .await?;
    escalate(&env.ctx, &case.id, "analyst").await?;
    drain(env).await;
    assert_eq!(
        env.jobs_of(&case.id)
            .await
            .into_iter()
            .filter(|j| j.kind == CREATE_TICKET)
            .count(),
        1
    );
    assert_eq!(one_ticket(env, &case.id).await?, id);
    Ok(())
}

/// Only a ticket deleted or merged away in ConnectWise lets escalation create a new one — and
/// the new create, even when its outcome is unknown, never adopts the old ticket.
async fn ticket_gone_in_connectwise_allows_a_new_one(env: &Env) -> R {
    for (state, fault) in [(TicketState::Deleted, false), (TicketState::Merged, true)] {
        let case = env
            .new_case(
                &env.acme,
                RULE_ENDPOINT,
                &format!("Ticket {}", state.as_str()),
            )
            .await;
        escalate(&env.ctx, &case.id, "analyst").await?;
        drain(env).await;
        let old = one_ticket(env, &case.id).await?;
        env.store
            .apply_case_change(
                &case.id,
                CaseChange {
                    ticket: Some(TicketLinkChange::State(state)),
                    ..Default::default()
                },
            )
            .await?;
        let after = escalate(&env.ctx, &case.id, "analyst").await?;
        assert_eq!(after.ticket.as_ref().map(|t| t.state), Some(state));
        let creates: Vec<_> = env
            .jobs_of(&case.id)
            .await
            .into_iter()
            .filter(|j| j.kind == CREATE_TICKET)
            .collect();
        assert_eq!(creates.len(), 2, "a new create queued");
        assert_eq!(creates[1].state, JobState::Pending);
        assert!(logged(
            &env.activity(&case.id).await,
            "ticket_relink",
            &format!("ticket #{old} was {}", state.as_str())
        ));
        // Escalating again before it ran queues nothing more.
        escalate(&env.ctx, &case.id, "analyst").await?;
        assert_eq!(env.jobs_of(&case.id).await.len(), 2);
        if fault {
            env.faults(json!({"apply_then_fail": {"mode": "500", "count": 1, "method": "POST", "path_prefix": "/service/tickets"}})).await;
        }
        drain(env).await;
        env.faults(json!({})).await;
        let case_now = env.case(&case.id).await;
        let link = case_now.ticket.expect("linked");
        assert_eq!(link.state, TicketState::Linked);
        assert_ne!(
            link.id,
            old,
            "{}: linked to a new ticket, not the old one",
            state.as_str()
        );
        let all = env.sim_tickets_for(&case.id).await;
        assert_eq!(
            all.len(),
            2,
            "the old ticket (still in the sim) and exactly one new one: {all:?}"
        );
    }
    Ok(())
}

// (i) ------------------------------------------------------------------------------------------

async fn ticket_content_and_flags(env: &Env) -> R {
    let title = "Verdächtige Anmeldung 🚨 für Jürgen Müller — 不可能的旅行 détectée depuis 203.0.113.77, puis élévation de privilèges 🔐🔐";
    assert!(title.encode_utf16().count() > 100);
    let case = env.new_case(&env.acme, RULE_CLOUD, title).await;
    escalate(&env.ctx, &case.id, "analyst").await?;
    drain(env).await;
    let id = one_ticket(env, &case.id).await?;
    let psa = env.psa();
    let ticket = psa.get_ticket(id).await?.expect("ticket");
    let units = ticket.summary.encode_utf16().count();
    assert!(
        (95..=100).contains(&units),
        "summary has {units} UTF-16 units"
    );
    let kept = ticket.summary.trim_end_matches('…');
    assert!(
        kept.len() < ticket.summary.len() && title.starts_with(kept),
        "cut on a character boundary, marked with …: {:?}",
        ticket.summary
    );
    assert_eq!(ticket.external_xref.as_deref(), Some(case.id.as_str()));
    assert_eq!(ticket.company_identifier.as_deref(), Some("ACMECORP"));
    assert_eq!((ticket.board_id, ticket.priority_id), (Some(2), Some(2)));

    let notes = psa.notes(id).await?;
    let description: Vec<_> = notes.iter().filter(|n| n.detail_description).collect();
    let internal: Vec<_> = notes.iter().filter(|n| n.internal_analysis).collect();
    assert_eq!((description.len(), internal.len()), (1, 1), "{notes:?}");
    let (d, i) = (&description[0].text, &internal[0].text);
    assert!(
        d.contains(title),
        "the description carries the full title: {d}"
    );
    for secret in [
        "ws-secret-42",
        "portal.example.test",
        "do-not-send",
        "Observables",
    ] {
        assert!(
            !d.contains(secret),
            "customer-visible description leaks {secret:?}: {d}"
        );
    }
    assert!(
        i.contains("ws-secret-42") && i.contains("203.0.113.77"),
        "observables in the internal analysis: {i}"
    );
    let link = i
        .lines()
        .find(|l| l.contains("https://portal.example.test/"))
        .unwrap_or_default();
    assert!(
        link.ends_with(&format!("/cases/{}", case.id)),
        "portal link in the internal analysis: {i}"
    );
    assert!(!i.contains("do-not-send"), "the raw alert is never sent");

    // Notes: shared → discussion, internal → internal analysis; never notifying.
    changes::add_note(
        &env.ctx,
        &case.id,
        "Customer-facing update",
        Visibility::Shared,
        "analyst",
    )
    .await?;
    changes::add_note(
        &env.ctx,
        &case.id,
        "Analyst-only detail",
        Visibility::Internal,
        "analyst",
    )
    .await?;
    drain(env).await;
    let sent_tickets = env.rec.tickets.lock().unwrap().clone();
    assert_eq!(sent_tickets.len(), 1);
    assert!(!sent_tickets[0].process_notifications);
    assert_eq!(sent_tickets[0].external_xref, case.id);
    let sent_notes = env.rec.notes.lock().unwrap().clone();
    assert_eq!(sent_notes.len(), 2);
    assert!(
        sent_notes
            .iter()
            .all(|(t, n)| *t == id && !n.process_notifications)
    );
    assert_eq!(
        (sent_notes[0].1.discussion, sent_notes[0].1.internal),
        (true, false)
    );
    assert_eq!(
        (sent_notes[1].1.discussion, sent_notes[1].1.internal),
        (false, true)
    );
    Ok(())
}

// (j) ------------------------------------------------------------------------------------------

async fn graceful_shutdown_releases_nothing_running(env: &Env) -> R {
    // Slow ConnectWise (300 ms a request) so jobs are in flight when the stop comes.
    env.faults(json!({"latency_ms": 30_000})).await;
    let mut cases = Vec::new();
    for i in 0..30 {
        let case = env
            .new_case(&env.acme, RULE_ENDPOINT, &format!("Shutdown {i}"))
            .await;
        escalate(&env.ctx, &case.id, "analyst").await?;
        cases.push(case.id);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = Worker::new(env.ctx.clone());
    let task = tokio::spawn(worker.run(stop_rx));
    env.wait_until("a job in flight", || async {
        env.all_jobs()
            .await
            .iter()
            .any(|j| j.state == JobState::Running)
    })
    .await;
    stop_tx.send(true)?;
    tokio::time::timeout(Duration::from_secs(20), task).await??;
    let jobs = env.all_jobs().await;
    assert!(
        jobs.iter().all(|j| j.state != JobState::Running),
        "nothing left running: {jobs:?}"
    );
    let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
    assert!(
        done >= 1 && done < cases.len(),
        "in-flight jobs finished ({done}), the rest was left pending"
    );
    // What is left is due now: another node takes it at once.
    env.faults(json!({})).await;
    let next = Worker::new(env.ctx.clone());
    assert!(
        next.run_once().await? > 0,
        "released jobs are claimable at once"
    );
    env.drain(&[&next]).await;
    for c in &cases {
        one_ticket(env, c).await?;
    }
    Ok(())
}

// (k) ------------------------------------------------------------------------------------------

const DRILL_CASES: usize = 300;

/// 300 escalations, each followed by a note, through two workers while cw-sim keeps switching
/// between apply-then-fail faults (500 and answers past the timeout), random 500s and 429s, and
/// workers are killed right after ConnectWise applied a write (and replaced). Every case ends
/// with exactly one ticket and its note on it exactly once.
async fn drill_300_escalations_with_faults_and_crashes(env: &Env) -> R {
    let started = Instant::now();
    let (crash_tx, mut crash_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut slots = Vec::new();
    for slot in 0..2 {
        let factory = Arc::new(RecordingFactory::new(env.opts.request_timeout));
        *factory.rec.crash.lock().unwrap() = Some(Crash {
            slot,
            rate: 0.03,
            remaining: 10,
            tx: crash_tx.clone(),
        });
        let mut ctx = env.ctx.clone();
        ctx.connectors = factory.clone() as Arc<dyn ConnectorFactory>;
        let task = tokio::spawn(Worker::new(ctx.clone()).run(stop_rx.clone()));
        slots.push((ctx, factory, task));
    }

    // Fault chaos: a new random fault configuration every few milliseconds.
    let chaos_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos = {
        let (http, url, stop) = (
            env.http.clone(),
            env.sim.url().to_string(),
            chaos_stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let body = match rand::random_range(0..5) {
                    0 => {
                        json!({"apply_then_fail": {"mode": "500", "count": rand::random_range(1..4), "method": "POST"}})
                    }
                    1 => {
                        json!({"apply_then_fail": {"mode": "delay", "delay_ms": 100_000, "count": 1, "method": "POST"}})
                    }
                    2 => json!({"error_rate": 0.1, "seed": n}),
                    3 => json!({"rate_limit_429": {"every_n": 5, "retry_after_secs": null}}),
                    _ => json!({}),
                };
                let _ = http
                    .put(format!("{url}/__sim/faults"))
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(rand::random_range(5..40))).await;
            }
            let _ = http
                .put(format!("{url}/__sim/faults"))
                .json(&json!({}))
                .send()
                .await;
            n
        })
    };

    let accounts = [&env.acme, &env.globex, &env.plain];
    let mut cases = Vec::with_capacity(DRILL_CASES);
    for i in 0..DRILL_CASES {
        let case = env
            .new_case(
                accounts[i % 3],
                if i % 2 == 0 {
                    RULE_ENDPOINT
                } else {
                    RULE_CLOUD
                },
                &format!("Drill {i}"),
            )
            .await;
        escalate(&env.ctx, &case.id, "analyst").await?;
        let (_, note) = changes::add_note(
            &env.ctx,
            &case.id,
            &format!("drill note {i}"),
            Visibility::Shared,
            "analyst",
        )
        .await?;
        cases.push((case.id, note.id));
        // Kill and replace workers as their connectors "die".
        while let Ok((slot, _)) = crash_rx.try_recv() {
            slots[slot].2.abort();
            slots[slot].2 = tokio::spawn(Worker::new(slots[slot].0.clone()).run(stop_rx.clone()));
        }
    }
    let escalated_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        while let Ok((slot, _)) = crash_rx.try_recv() {
            slots[slot].2.abort();
            slots[slot].2 = tokio::spawn(Worker::new(slots[slot].0.clone()).run(stop_rx.clone()));
        }
        let jobs = env.all_jobs().await;
        let dead: Vec<_> = jobs.iter().filter(|j| j.state == JobState::Dead).collect();
        assert!(dead.is_empty(), "dead jobs in the drill: {dead:?}");
        if jobs.iter().all(|j| j.state == JobState::Done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drill did not finish: {} jobs left",
            jobs.iter().filter(|j| j.state != JobState::Done).count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    chaos_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let fault_switches = chaos.await?;
    stop_tx.send(true)?;
    for (_, _, task) in slots.iter_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let drained_in = started.elapsed();

    // Exactly one ticket per case, each note once.
    let state = env.sim_state().await;
    let tickets = state["tickets"].as_array().unwrap();
    let mut per_case: HashMap<&str, Vec<i64>> = HashMap::new();
    for t in tickets {
        per_case
            .entry(t["externalXRef"].as_str().unwrap_or_default())
            .or_default()
            .push(t["id"].as_i64().unwrap());
    }
    assert_eq!(
        tickets.len(),
        DRILL_CASES,
        "one ticket per case, no duplicates"
    );
    let mut adopted = 0;
    for (case_id, note_id) in &cases {
        let ids = per_case.get(case_id.as_str()).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "case {case_id}: tickets {ids:?}");
        let case = env.case(case_id).await;
        assert_eq!(
            case.ticket.as_ref().map(|t| (t.id, t.state)),
            Some((ids[0], TicketState::Linked)),
            "case {case_id}"
        );
        let notes = state["notes"][ids[0].to_string()]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let marker = note_marker(note_id);
        let copies = notes
            .iter()
            .filter(|n| n["text"].as_str().unwrap_or_default().contains(&marker))
            .count();
        if copies != 1 {
            let mut why = Vec::new();
            for j in env.jobs_of(case_id).await {
                why.push(format!(
                    "{} {:?} attempts {}: {:?}",
                    j.kind,
                    j.state,
                    j.attempts,
                    env.store.job_attempts(&j.id).await?
                ));
            }
            let log: Vec<_> = env
                .activity(case_id)
                .await
                .into_iter()
                .map(|a| format!("{} {}: {}", a.at, a.kind, a.message))
                .collect();
            panic!(
                "case {case_id}: note sent {copies} times\njobs: {why:#?}\nactivity: {log:#?}\nnotes: {notes:#?}"
            );
        }
        // Also when the POST's outcome was unknown and the note was found by its marker.
        let sent_as = notes
            .iter()
            .find(|n| n["text"].as_str().unwrap_or_default().contains(&marker))
            .and_then(|n| n["id"].as_i64());
        let local = env.store.notes(case_id).await?;
        assert_eq!(
            local
                .iter()
                .find(|n| &n.id == note_id)
                .and_then(|n| n.cw_note_id),
            sent_as,
            "case {case_id}: the note records its ConnectWise id"
        );
        adopted += env
            .activity(case_id)
            .await
            .iter()
            .filter(|a| a.kind == "ticket_adopted")
            .count();
    }
    let attempts: i64 = env.all_jobs().await.iter().map(|j| j.attempts).sum();
    let crashes: u32 = slots
        .iter()
        .map(|(_, f, _)| f.rec.crashes.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    eprintln!(
        "drill ({:?}): {DRILL_CASES} escalations + notes in {escalated_in:?}, all synced in {drained_in:?}; \
         {} jobs, {attempts} attempts, {adopted} tickets adopted, {crashes} worker kills, {fault_switches} fault switches",
        env.backend,
        DRILL_CASES * 2,
    );
    Ok(())
}

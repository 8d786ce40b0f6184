//! `escalation`: cases escalated end to end against an in-process cw-sim — `escalate` enqueues
//! the ticket create, two outbox workers create the tickets in cw-sim and link them. Measured:
//! escalations/s from the first `escalate` call until the last case has its linked ticket, the
//! per-case latency escalate call → ticket linked (the store is polled every 5 ms), and, in the
//! same process afterwards, cw-sim's own raw ticket-create rate (32 concurrent plain POSTs for
//! 2 s) as the ceiling to compare with.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use base64::Engine;
use casebridge_domain::TicketState;
use casebridge_store::CaseFilter;
use casebridge_sync::outbox::Worker;
use casebridge_sync::{SyncConfig, escalation};

use crate::env::{SyncEnv, percentile};
use crate::per_sec;

pub async fn run(cases: usize, callers: usize, database_url: Option<String>) -> Result<()> {
    let config = SyncConfig {
        request_budget: 1_000_000,
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let env = SyncEnv::setup(database_url.as_deref(), config).await?;
    println!(
        "escalation: {} backend, {cases} cases escalated by {callers} concurrent caller(s), 2 outbox workers, in-process cw-sim",
        env.store.backend()
    );
    let mut ids = Vec::with_capacity(cases);
    for i in 0..cases {
        ids.push(env.new_case(&format!("ws-{i:05}")).await?.id);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(Worker::new(env.ctx.clone()).run(stop_rx.clone())))
        .collect();

    // the watcher: one listing of the account's cases every 5 ms; first time each is linked
    let linked_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (store, linked_at, watching) = (env.store.clone(), linked_at.clone(), watching.clone());
        let filter = CaseFilter {
            account_ids: vec![env.partner.clone()],
            limit: cases as i64 + 10,
            ..Default::default()
        };
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let listed = store.cases(&filter).await?;
                let now = Instant::now();
                let done = {
                    let mut seen = linked_at.lock().unwrap();
                    for c in listed {
                        if c.ticket
                            .as_ref()
                            .is_some_and(|t| t.state == TicketState::Linked)
                        {
                            seen.entry(c.id).or_insert(now);
                        }
                    }
                    seen.len() >= cases
                };
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        })
    };

    let started = Instant::now();
    let escalated_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let callers: Vec<_> = (0..callers.max(1))
        .map(|c| {
            let mine: Vec<String> = ids
                .iter()
                .skip(c)
                .step_by(callers.max(1))
                .cloned()
                .collect();
            let (ctx, escalated_at) = (env.ctx.clone(), escalated_at.clone());
            tokio::spawn(async move {
                for id in mine {
                    escalated_at
                        .lock()
                        .unwrap()
                        .insert(id.clone(), Instant::now());
                    escalation::escalate(&ctx, &id, "bench").await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for c in callers {
        c.await??;
    }
    let calls = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !watcher.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    watching.store(false, Ordering::Relaxed);
    watcher.await??;
    let seen = linked_at.lock().unwrap().clone();
    let escalated_at = escalated_at.lock().unwrap().clone();
    ensure!(
        seen.len() == cases,
        "only {} of {cases} cases got their ticket within 120 s",
        seen.len()
    );
    let last = seen.values().max().copied().unwrap_or(started);
    let total = last - started;
    let mut lat: Vec<Duration> = seen.iter().map(|(id, at)| *at - escalated_at[id]).collect();
    lat.sort();
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }

    // cw-sim's own ceiling: plain ticket creates, 32 concurrent, 2 s
    let raw = raw_creates(&env, 32, Duration::from_secs(2)).await?;
    let rate = per_sec(cases, total);
    println!("  {cases} escalate calls: {calls:.2?}");
    println!(
        "  end to end (first escalate → last ticket linked): {rate:>8.0} escalations/s ({total:.2?})"
    );
    println!(
        "  escalate call → ticket linked: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0)
    );
    println!("  cw-sim raw POST /service/tickets (32 concurrent, 2 s): {raw:>8.0} creates/s");
    println!(
        "  ratio end to end / raw: {:.3} ({:.1}%)",
        rate / raw,
        100.0 * rate / raw
    );
    env.teardown().await;
    Ok(())
}

/// Ticket creates/s of cw-sim under `concurrency` plain reqwest loops for `secs`.
async fn raw_creates(env: &SyncEnv, concurrency: usize, secs: Duration) -> Result<f64> {
    let k = &env.keys.api_member;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}+{}:{}", k.company, k.public_key, k.private_key))
    );
    let url = format!("{}/v4_6_release/apis/3.0/service/tickets", env.sim.url());
    let body = serde_json::json!({
        "summary": "bench raw create", "board": {"id": 1}, "company": {"identifier": "CBMSSP"}
    })
    .to_string();
    let http = reqwest::Client::new();
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let end = started + secs;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, auth, url, body) = (http.clone(), auth.clone(), url.clone(), body.clone());
            let (ok, failed, client_id) = (ok.clone(), failed.clone(), k.client_id.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let r = http
                        .post(&url)
                        .header("Authorization", &auth)
                        .header("clientId", &client_id)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    ensure!(ok > 0, "no raw create succeeded ({failed} failed)");
    if failed > 0 {
        println!("  note: {failed} raw creates failed");
    }
    Ok(per_sec(ok, elapsed))
}

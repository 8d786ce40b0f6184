//! `callbacks`: ConnectWise callbacks through the real web router (`POST /hooks/connectwise/{id}`
//! → `casebridge_sync::inbound::accept_callback`) — 32 concurrent clients posting correctly
//! signed callbacks with distinct MessageIds for a linked ticket; accepted/s and the
//! acknowledgement time. The signing key is cw-sim's real one: a callback registered on a capture
//! endpoint receives the ticket's real "added" delivery, whose `Metadata.key_url` (on the
//! integration's site origin) serves the key. Then the technician → case latency: callbacks
//! registered to the router, the inbox processor running, the technician PATCHes the status or
//! POSTs a note in cw-sim and the store is polled until the case shows it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::Bytes;
use axum::extract::State;
use casebridge_connector::callback_signature;
use casebridge_domain::{CaseStatus, TicketState};
use casebridge_sync::inbound::Processor;
use casebridge_sync::outbox::Worker;
use casebridge_sync::reconcile::{check_callback_registration, hook_url};
use casebridge_sync::{SyncConfig, escalation};
use casebridge_web::{AppState, WebConfig};
use serde_json::{Value, json};

use crate::env::{SyncEnv, percentile, secrets};
use crate::per_sec;

/// Concurrent ConnectWise delivery connections.
const CLIENTS: usize = 32;

type Captured = Arc<Mutex<Vec<Vec<u8>>>>;

async fn capture(State(c): State<Captured>, body: Bytes) -> &'static str {
    c.lock().unwrap().push(body.to_vec());
    "ok"
}

async fn serve(app: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !cond().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

pub async fn run(secs: u64, database_url: Option<String>) -> Result<()> {
    let config = SyncConfig {
        request_budget: 1_000_000,
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let env = SyncEnv::setup(database_url.as_deref(), config).await?;
    let id = env.integration.id.clone();
    println!(
        "callbacks: {} backend, web router on 127.0.0.1, in-process cw-sim",
        env.store.backend()
    );

    // the real web router
    let state = Arc::new(AppState {
        store: env.store.clone(),
        sync: env.ctx.clone(),
        secrets: secrets(),
        config: WebConfig::default(),
    });
    let web = serve(casebridge_web::router(state)).await?;

    // a capture endpoint registered in cw-sim, then a linked ticket: its "added" delivery
    let captured: Captured = Arc::default();
    let cap = serve(
        axum::Router::new()
            .route("/capture/{rest}", axum::routing::post(capture))
            .with_state(captured.clone()),
    )
    .await?;
    let psa = env.ctx.connectors.connector(&env.integration)?;
    psa.ensure_callback(&format!("{cap}/capture/")).await?;
    let case = env.new_case("ws-callbacks").await?;
    escalation::escalate(&env.ctx, &case.id, "bench").await?;
    let worker = Worker::new(env.ctx.clone());
    let store = env.store.clone();
    let mut ticket = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ticket == 0 {
        worker.run_once().await?;
        if let Some(t) = store.case(&case.id).await?.and_then(|c| c.ticket)
            && t.state == TicketState::Linked
        {
            ticket = t.id;
        }
        ensure!(Instant::now() < deadline, "the ticket was not linked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_for("a real delivery", Duration::from_secs(10), || async {
        Ok(!captured.lock().unwrap().is_empty())
    })
    .await?;
    let real: Value = serde_json::from_slice(&captured.lock().unwrap()[0])?;
    let key_url = real["Metadata"]["key_url"]
        .as_str()
        .context("the delivery has no Metadata.key_url")?
        .to_string();
    let http = reqwest::Client::new();
    let key: Value = http.get(&key_url).send().await?.json().await?;
    let signing_key = key["signing_key"]
        .as_str()
        .context("no signing_key at key_url")?
        .to_string();

    // the inbox processor runs as in the product
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let processor = tokio::spawn(Processor::new(env.ctx.clone()).run(stop_rx.clone()));

    // CLIENTS clients, each its own keep-alive connection, for `secs`
    let url = format!("{web}/hooks/connectwise/{id}?recordId={ticket}");
    let entity = json!({"id": ticket, "recordType": "ServiceTicket"}).to_string();
    // Each delivery is signed as ConnectWise would sign it. The bodies are built and signed
    // before the clock starts (as wrk-style load generators do), so the measurement spends this
    // 2-core machine's CPU on receiving callbacks rather than on forging them; a client that
    // runs out signs more on the fly.
    let (entity_s, key_url_s, signing_key_s) = (entity.clone(), key_url.clone(), signing_key);
    let sign = move |c: usize, n: usize| {
        let (entity, key_url, signing_key) = (&entity_s, &key_url_s, &signing_key_s);
        let body = serde_json::to_vec(&json!({
            "MessageId": format!("bench-{c}-{n}"), "FromUrl": "127.0.0.1",
            "CompanyId": "cbdemo", "MemberId": "jtech", "Action": "updated",
            "Type": "ticket", "ID": ticket, "CallbackObjectRecId": 1,
            "ProductInstanceId": "p", "PartnerId": "x", "Entity": entity,
            "Metadata": {"key_url": key_url}
        }))
        .expect("json");
        let sig = callback_signature(signing_key, &body);
        (body, sig)
    };
    let per_client = usize::try_from(secs).unwrap_or(60).min(60) * 600;
    let signed: Vec<Vec<(Vec<u8>, String)>> = (0..CLIENTS)
        .map(|c| (0..per_client).map(|n| sign(c, n)).collect())
        .collect();
    let sign = Arc::new(sign);
    let (accepted, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let tasks: Vec<_> = signed
        .into_iter()
        .enumerate()
        .map(|(c, bodies)| {
            let url = url.clone();
            let (accepted, other, sign) = (accepted.clone(), other.clone(), sign.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut lat = Vec::new();
                let mut bodies = bodies.into_iter();
                let mut n = per_client;
                while Instant::now() < end {
                    let (body, sig) = bodies.next().unwrap_or_else(|| {
                        n += 1;
                        sign(c, n)
                    });
                    let t0 = Instant::now();
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-content-signature", sig)
                        .body(body)
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s == 200
                        }
                        Err(_) => false,
                    };
                    lat.push(t0.elapsed());
                    if ok {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed();
    lat.sort();
    let (accepted, other) = (
        accepted.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    println!(
        "  {accepted} callbacks accepted (200), {other} not, in {elapsed:.2?} ({CLIENTS} clients, processor running)"
    );
    println!(
        "  accepted: {:>8.0} callbacks/s (target ≥ 5,000/s)",
        per_sec(accepted, elapsed)
    );
    println!(
        "  acknowledgement: p50 {:.2?}, p99 {:.2?}, max {:.2?} (target p99 < 50 ms)",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0)
    );
    ensure!(accepted > 0, "no callback was accepted");

    // the processor works through the flood's inbox (one sync per ticket and batch) meanwhile;
    // the latency part below waits for real outcomes, so a backlog would show there
    tokio::time::sleep(Duration::from_secs(1)).await;

    technician_latency(&env, &web, &case.id, ticket).await?;

    let _ = stop_tx.send(true);
    let _ = processor.await;
    env.teardown().await;
    Ok(())
}

/// Technician changes in cw-sim → the case, through real callbacks to the router.
async fn technician_latency(env: &SyncEnv, web: &str, case_id: &str, ticket: i64) -> Result<()> {
    let mode = check_callback_registration(
        &env.ctx,
        &env.integration,
        &hook_url(web, &env.integration.id),
    )
    .await?;
    ensure!(mode == "callbacks", "callback registration: {mode}");
    let tech = &env.keys.technician;
    let http = reqwest::Client::new();
    let api = format!(
        "{}/v4_6_release/apis/3.0/service/tickets/{ticket}",
        env.sim.url()
    );
    let cw = |req: reqwest::RequestBuilder| {
        req.basic_auth(
            format!("{}+{}", tech.company, tech.public_key),
            Some(&tech.private_key),
        )
        .header("clientId", &tech.client_id)
    };
    let rounds = 20;
    let (mut status_lat, mut note_lat) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // status: alternate Closed (105) and In Progress (102, an open status reopens the case)
        let (cw_status, want) = if i % 2 == 0 {
            (105, CaseStatus::Closed)
        } else {
            (102, CaseStatus::InProgress)
        };
        let t0 = Instant::now();
        let r = cw(http.patch(&api))
            .json(&json!([{"op": "replace", "path": "status", "value": {"id": cw_status}}]))
            .send()
            .await?;
        ensure!(r.status().as_u16() == 200, "PATCH status: {}", r.status());
        wait_for(
            &format!("the case status {want:?} (round {i})"),
            Duration::from_secs(10),
            || async {
                Ok(env
                    .store
                    .case(case_id)
                    .await?
                    .is_some_and(|c| c.status == want))
            },
        )
        .await?;
        status_lat.push(t0.elapsed());

        let before = env.store.notes(case_id).await?.len();
        let t0 = Instant::now();
        let r = cw(http.post(format!("{api}/notes")))
            .json(
                &json!({"text": format!("checked host, round {i}"), "detailDescriptionFlag": true}),
            )
            .send()
            .await?;
        ensure!(r.status().as_u16() == 201, "POST note: {}", r.status());
        wait_for(
            &format!("the note of round {i}"),
            Duration::from_secs(10),
            || async { Ok(env.store.notes(case_id).await?.len() > before) },
        )
        .await?;
        note_lat.push(t0.elapsed());
    }
    status_lat.sort();
    note_lat.sort();
    let mut all: Vec<Duration> = status_lat.iter().chain(&note_lat).copied().collect();
    all.sort();
    println!(
        "  technician → case ({rounds} status PATCHes + {rounds} notes, store polled every 2 ms):"
    );
    for (what, l) in [("status", &status_lat), ("note", &note_lat), ("all", &all)] {
        println!(
            "    {what:<6} p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            percentile(l, 50.0),
            percentile(l, 99.0),
            percentile(l, 100.0)
        );
    }
    println!(
        "    (target p99 < 1 s; coalesce window {:?})",
        env.ctx.config.coalesce_window
    );
    Ok(())
}

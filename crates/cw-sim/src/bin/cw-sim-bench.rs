//! Throughput of an in-process cw-sim: simple authenticated GETs/s and ticket creates/s.
//!
//! `cargo run --release -p cw-sim --bin cw-sim-bench -- [--secs 5] [--concurrency 32]`
use base64::Engine;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(
    label: &str,
    secs: u64,
    conc: u64,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
    want: u16,
) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc as usize)
        .build()
        .expect("client");
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, ok, bad, make) = (client.clone(), ok.clone(), bad.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match make(&client).send().await {
                    Ok(r) if r.status().as_u16() == want => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let el = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    let rate = n as f64 / el;
    println!(
        "{label}: {n} ok, {} failed in {el:.2} s → {rate:.0}/s (concurrency {conc})",
        bad.load(Ordering::Relaxed)
    );
    rate
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = arg("--secs", 5);
    let conc = arg("--concurrency", 32);
    let h = cw_sim::start(cw_sim::SimOptions {
        seed: cw_sim::Seed::Demo,
        ..Default::default()
    })
    .await?;
    let k = h.demo_keys().cloned().expect("keys").api_member;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}+{}:{}", k.company, k.public_key, k.private_key))
    );
    let base = format!("{}/v4_6_release/apis/3.0", h.url());
    let c = reqwest::Client::new();
    let t: serde_json::Value = c
        .post(format!("{base}/service/tickets"))
        .header("Authorization", &auth)
        .header("clientId", "bench")
        .json(&serde_json::json!({"summary": "bench", "board": {"id": 1}, "company": {"id": 251}}))
        .send()
        .await?
        .json()
        .await?;
    let id = t["id"].as_u64().expect("id");
    let (a1, b1) = (auth.clone(), base.clone());
    let get: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |c: &reqwest::Client| {
            c.get(format!("{b1}/service/tickets/{id}"))
                .header("Authorization", &a1)
                .header("clientId", "bench")
        });
    let g = run("GET /service/tickets/{id}", secs, conc, get, 200).await;
    let (a2, b2) = (auth.clone(), base.clone());
    let body = serde_json::json!({"summary": "bench create", "board": {"id": 1}, "company": {"identifier": "ACMECORP"}, "priority": {"id": 2}}).to_string();
    let post: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |c: &reqwest::Client| {
            c.post(format!("{b2}/service/tickets"))
                .header("Authorization", &a2)
                .header("clientId", "bench")
                .header("content-type", "application/json")
                .body(body.clone())
        });
    let p = run("POST /service/tickets", secs, conc, post, 201).await;
    println!(
        "summary: {g:.0} GET/s, {p:.0} creates/s on {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    h.shutdown().await;
    Ok(())
}

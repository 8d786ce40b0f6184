//! `ingest`: alerts/s of `casebridge_ingest::service::ingest_body` for one NDJSON batch built
//! from the shipped SigmaHQ regression alerts (`source_path` made unique per line, so every line
//! opens a case), then the same batch again (every line a repeat).

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use casebridge_domain::AccountKind;
use casebridge_ingest::ParseOptions;
use casebridge_ingest::service::{Attribution, ingest_body};
use serde_json::Value;

use crate::env::scratch_db;
use crate::per_sec;

const ALERTS: &str = include_str!("../../../data/alerts/sigma-regression-alerts.jsonl");

/// `lines` NDJSON lines cycling through the shipped alerts, each with a unique `source_path`.
fn batch(lines: usize) -> Result<Vec<u8>> {
    let alerts: Vec<Value> = ALERTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing the shipped alerts")?;
    ensure!(!alerts.is_empty(), "no shipped alerts");
    let mut body = Vec::with_capacity(lines * 2600);
    for i in 0..lines {
        let mut a = alerts[i % alerts.len()].clone();
        let path = a["source_path"].as_str().unwrap_or("alert").to_string();
        a["source_path"] = Value::String(format!("{path}#bench-{i}"));
        serde_json::to_writer(&mut body, &a)?;
        body.push(b'\n');
    }
    Ok(body)
}

pub async fn run(lines: usize, database_url: Option<String>) -> Result<()> {
    let body = batch(lines)?;
    let db = scratch_db(database_url.as_deref()).await?;
    let store = casebridge_store::open(db.url(), true)
        .await
        .context("opening the scratch database")?;
    let partner = store
        .create_account("Bench MSSP", AccountKind::Partner, None)
        .await?;
    let sub = store
        .create_account("Bench Sub", AccountKind::Subtenant, Some(&partner.id))
        .await?
        .id;
    let allowed = [sub.clone()];
    let who = Attribution {
        default_account: Some(&sub),
        own_account: &sub,
        own_is_partner: false,
        allowed: &allowed,
        actor: "bench",
    };
    println!(
        "ingest: {} backend, one NDJSON body of {lines} lines ({:.1} MB) from {} shipped alerts",
        store.backend(),
        body.len() as f64 / 1e6,
        ALERTS.lines().filter(|l| !l.trim().is_empty()).count()
    );

    let started = Instant::now();
    let first = ingest_body(
        store.as_ref(),
        &body,
        None,
        true,
        ParseOptions::default(),
        &who,
    )
    .await?;
    let t_first = started.elapsed();
    ensure!(
        first.created == lines,
        "expected {lines} new cases, got {} created / {} repeats / {} skipped / {} errors",
        first.created,
        first.repeats,
        first.skipped,
        first.errors
    );

    let started = Instant::now();
    let second = ingest_body(
        store.as_ref(),
        &body,
        None,
        true,
        ParseOptions::default(),
        &who,
    )
    .await?;
    let t_second = started.elapsed();
    ensure!(
        second.repeats == lines,
        "expected {lines} repeats, got {} created / {} repeats / {} skipped / {} errors",
        second.created,
        second.repeats,
        second.skipped,
        second.errors
    );

    println!(
        "  first run  ({} cases created):  {:>8.0} alerts/s  ({t_first:.2?})",
        first.created,
        per_sec(lines, t_first)
    );
    println!(
        "  second run ({} repeats):        {:>8.0} repeats/s ({t_second:.2?})",
        second.repeats,
        per_sec(lines, t_second)
    );
    drop(store);
    db.drop_db().await;
    Ok(())
}

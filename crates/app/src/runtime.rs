//! Start-up: opens the store, builds the sync context and the web state, and runs the roles.
//! Shutdown (Ctrl-C / SIGTERM) stops taking requests and new jobs, lets running jobs finish,
//! and releases what is left for other nodes.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use casebridge_domain::Role as TokenRole;
use casebridge_ingest::service::{Attribution, ingest_body};
use casebridge_ingest::{AlertFormat, ParseOptions};
use casebridge_store::Store;
use casebridge_sync::{ConnectWiseFactory, SyncContext};
use casebridge_web::{AppState, WebConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Role;
use crate::config::Settings;

pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub sync: SyncContext,
    pub secrets: casebridge_sync::SecretBox,
}

pub async fn build(s: &Settings) -> anyhow::Result<Runtime> {
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating {}", s.data_dir.display()))?;
    let store = casebridge_store::open(&s.database_url(), true)
        .await
        .context("opening the database")?;
    let secrets = s.secret_box()?;
    let cfg = s.sync_config();
    let factory = Arc::new(ConnectWiseFactory::new(
        secrets.clone(),
        cfg.request_timeout,
    ));
    let mut sync = SyncContext::new(store.clone(), factory, cfg);
    sync.portal_url = s.public_url.clone();
    Ok(Runtime {
        store,
        sync,
        secrets,
    })
}

/// Starts the background roles: outbox worker, callback processor, reconciler.
pub fn spawn_workers(ctx: &SyncContext, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let worker = casebridge_sync::outbox::Worker::new(ctx.clone());
    let processor = casebridge_sync::inbound::Processor::new(ctx.clone());
    let mut reconciler = casebridge_sync::reconcile::Reconciler::new(ctx.clone());
    if let Some(url) = &ctx.portal_url {
        reconciler = reconciler.with_hook_base(url);
    }
    vec![
        tokio::spawn(worker.run(shutdown.clone())),
        tokio::spawn(processor.run(shutdown.clone())),
        tokio::spawn(reconciler.run(shutdown.clone())),
    ]
}

pub fn web_state(rt: &Runtime, s: &Settings) -> Arc<AppState> {
    Arc::new(AppState {
        store: rt.store.clone(),
        sync: rt.sync.clone(),
        secrets: rt.secrets.clone(),
        config: WebConfig {
            public_url: s.public_url.clone(),
            max_body_bytes: s.max_body_bytes,
            ..Default::default()
        },
    })
}

/// Resolves when the process is asked to stop.
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn serve(s: Settings, role: Role) -> anyhow::Result<()> {
    let rt = build(&s).await?;
    let (tx, rx) = watch::channel(false);
    let workers = if role != Role::Api {
        spawn_workers(&rt.sync, &rx)
    } else {
        Vec::new()
    };
    if role == Role::Worker {
        tracing::info!("worker node running; stop with Ctrl-C");
        stop_signal().await;
    } else {
        let listener = tokio::net::TcpListener::bind(&s.bind)
            .await
            .with_context(|| format!("binding {}", s.bind))?;
        tracing::info!(addr = %listener.local_addr()?, role = ?role, "serving");
        let app = casebridge_web::router(web_state(&rt, &s));
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal())
            .await?;
    }
    let _ = tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

pub async fn ingest_file(
    s: Settings,
    file: &Path,
    account: Option<&str>,
    format: Option<&str>,
) -> anyhow::Result<()> {
    let rt = build(&s).await?;
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let format = format.map(str::parse::<AlertFormat>).transpose()?;
    let accounts: Vec<String> = rt
        .store
        .all_accounts()
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    if let Some(a) = account {
        anyhow::ensure!(accounts.iter().any(|x| x == a), "no account {a}");
    }
    let who = Attribution {
        default_account: account,
        own_account: "",
        own_is_partner: true,
        allowed: &accounts,
        actor: "cli ingest",
    };
    let ndjson = file
        .extension()
        .is_some_and(|e| e == "ndjson" || e == "jsonl");
    let report = ingest_body(
        rt.store.as_ref(),
        &body,
        format,
        ndjson,
        ParseOptions::default(),
        &who,
    )
    .await?;
    let mut escalated = 0;
    for case in &report.new_cases {
        if casebridge_sync::escalation::auto_escalate(&rt.sync, case)
            .await?
            .is_some()
        {
            escalated += 1;
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "created {}, repeats {}, skipped {}, errors {}, auto-escalated {escalated} (tickets are sent by a running server's workers)",
        report.created, report.repeats, report.skipped, report.errors
    );
    // like the API's 422: a file of which nothing could be ingested is a failure for scripts
    anyhow::ensure!(
        report.errors == 0 || report.created + report.repeats + report.skipped > 0,
        "no alert in {} could be ingested; see the errors above",
        file.display()
    );
    Ok(())
}

pub async fn create_token(
    s: &Settings,
    account: &str,
    role: &str,
    label: &str,
) -> anyhow::Result<String> {
    let store = casebridge_store::open(&s.database_url(), true).await?;
    let role = TokenRole::parse(role)
        .with_context(|| format!("role {role:?}: use admin, analyst or viewer"))?;
    anyhow::ensure!(
        store.account(account).await?.is_some(),
        "no account {account}"
    );
    let token = casebridge_web::auth::new_token();
    store
        .create_token(
            account,
            role,
            &casebridge_web::auth::hash_token(&token),
            label,
        )
        .await?;
    Ok(token)
}

pub async fn create_account(
    s: &Settings,
    name: &str,
    kind: &str,
    parent: Option<&str>,
) -> anyhow::Result<String> {
    use casebridge_domain::AccountKind;
    let store = casebridge_store::open(&s.database_url(), true).await?;
    let kind = AccountKind::parse(kind)
        .with_context(|| format!("kind {kind:?}: use partner, subtenant or standalone"))?;
    anyhow::ensure!(!name.trim().is_empty(), "the name must not be empty");
    match (kind, parent) {
        (AccountKind::Subtenant, Some(p)) => {
            let partner = store
                .account(p)
                .await?
                .with_context(|| format!("no account {p}"))?;
            anyhow::ensure!(partner.kind == AccountKind::Partner, "{p} is not a partner");
        }
        (AccountKind::Subtenant, None) => anyhow::bail!("a sub-tenant needs --parent PARTNER_ID"),
        (_, Some(_)) => anyhow::bail!("only a sub-tenant has a parent"),
        _ => {}
    }
    Ok(store.create_account(name.trim(), kind, parent).await?.id)
}

//! cw-sim — a ConnectWise PSA (Manage) stand-in for tests and demos.
//!
//! It serves `/login/companyinfo/{company}` and `/{codebase}/apis/3.0/…` (see [`api`]), delivers signed
//! callbacks ([`callbacks`]), offers a test-only admin surface under `/__sim/` ([`admin`]), fault injection
//! ([`faults`]) and a small HTML view under `/ui` ([`ui`]). Its wire types are written from the ConnectWise
//! facts (`shared/connectwise/API.md`), independent of the product crates. Business rules (validation,
//! merge, delete) are documented in [`model`].
//!
//! Every delay the sim imposes (latency, callback retries 2 s/4 s, callback timeout 5 s, quota window)
//! is multiplied by `time_scale` (1.0 = ConnectWise timing).
pub mod admin;
pub mod api;
pub mod callbacks;
pub mod cond;
pub mod error;
pub mod faults;
pub mod model;
pub mod seed;
pub mod ui;

use model::{Change, State};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc, oneshot};

pub use seed::DEMO_COMPANY;

/// Codebase announced by companyinfo (without the trailing slash).
pub const CODEBASE: &str = "v2025_1";
/// Codebases accepted in URLs.
pub const CODEBASES: &[&str] = &["v4_6_release", CODEBASE];
const STATE_FILE: &str = "cw-sim-state.json";

pub struct SimOptions {
    pub bind: SocketAddr,
    pub seed: Seed,
    pub state_dir: Option<PathBuf>,
    pub time_scale: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: Seed::Empty,
            state_dir: None,
            time_scale: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    Empty,
    Demo,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberKeys {
    pub company: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
    /// member identifier
    pub member: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoKeys {
    pub api_member: MemberKeys,
    pub technician: MemberKeys,
    pub restricted: MemberKeys,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    hex::encode(b)
}

pub(crate) fn random_guid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Shared server state.
pub struct Sim {
    state: Mutex<State>,
    pub(crate) faults: Mutex<faults::FaultRuntime>,
    pub(crate) base_url: String,
    pub(crate) authority: String,
    dirty: Notify,
    cb_tx: mpsc::UnboundedSender<Vec<Change>>,
    pub(crate) deliveries: Mutex<VecDeque<serde_json::Value>>,
    pub(crate) http: reqwest::Client,
}

pub(crate) type App = Arc<Sim>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
    pub(crate) fn faults(&self) -> MutexGuard<'_, faults::FaultRuntime> {
        lock(&self.faults)
    }
    pub(crate) fn time_scale(&self) -> f64 {
        self.faults().cfg.time_scale
    }
    /// Marks the state changed (persistence) and queues callback deliveries.
    pub(crate) fn commit(&self, changes: Vec<Change>) {
        self.dirty.notify_one();
        if !changes.is_empty() {
            let _ = self.cb_tx.send(changes);
        }
    }
    pub(crate) fn mark_dirty(&self) {
        self.dirty.notify_one();
    }
}

pub struct SimHandle {
    url: String,
    login_company: String,
    demo_keys: Option<DemoKeys>,
    app: App,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state_file: Option<PathBuf>,
}

impl SimHandle {
    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Some only when this start freshly seeded the demo.
    pub fn demo_keys(&self) -> Option<&DemoKeys> {
        self.demo_keys.as_ref()
    }
    /// The login company id of the site (e.g. "cbdemo").
    pub fn login_company(&self) -> &str {
        &self.login_company
    }
    /// Stops serving and flushes the state to `state_dir`.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        let abort = self.server.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(3), &mut self.server)
            .await
            .is_err()
        {
            abort.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(f) = &self.state_file
            && let Err(e) = flush(&self.app, f).await
        {
            tracing::warn!("cw-sim: final state flush failed: {e:#}");
        }
    }
}

async fn flush(app: &App, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(&*app.state())?;
    let tmp = file.with_extension("json.tmp");
    tokio::fs::write(&tmp, &bytes).await?;
    tokio::fs::rename(&tmp, file).await?;
    Ok(())
}

/// Starts a simulator. With `state_dir` holding a saved state, that state is loaded (and `seed` is ignored).
pub async fn start(opts: SimOptions) -> anyhow::Result<SimHandle> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    let authority = format!(
        "{}:{}",
        if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        },
        addr.port()
    );
    let url = format!("http://{authority}");

    let state_file = match &opts.state_dir {
        Some(d) => {
            tokio::fs::create_dir_all(d).await?;
            Some(d.join(STATE_FILE))
        }
        None => None,
    };
    let mut demo_keys = None;
    let loaded = match &state_file {
        Some(f) if tokio::fs::try_exists(f).await? => {
            let bytes = tokio::fs::read(f).await?;
            Some(
                serde_json::from_slice::<State>(&bytes)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?,
            )
        }
        _ => None,
    };
    let state = match loaded {
        Some(s) => s,
        None => {
            let mut s = State::empty(DEMO_COMPANY);
            if opts.seed == Seed::Demo {
                demo_keys = Some(seed::seed_demo(&mut s));
            }
            s
        }
    };
    let login_company = state.company_id.clone();

    let (cb_tx, cb_rx) = mpsc::unbounded_channel();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let faults = faults::Faults {
        time_scale: opts.time_scale,
        ..Default::default()
    };
    let app: App = Arc::new(Sim {
        state: Mutex::new(state),
        faults: Mutex::new(faults::FaultRuntime::new(faults)),
        base_url: url.clone(),
        authority,
        dirty: Notify::new(),
        cb_tx,
        deliveries: Mutex::new(VecDeque::new()),
        http,
    });

    let mut tasks = vec![tokio::spawn(callbacks::dispatcher(app.clone(), cb_rx))];
    if let Some(f) = &state_file {
        flush(&app, f).await?;
        let (app2, f2) = (app.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                app2.dirty.notified().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if let Err(e) = flush(&app2, &f2).await {
                    tracing::warn!("cw-sim: state flush failed: {e:#}");
                }
            }
        }));
    }

    let router = router(app.clone());
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = shutdown_rx.await;
            })
            .await;
    });
    Ok(SimHandle {
        url,
        login_company,
        demo_keys,
        app,
        shutdown_tx: Some(shutdown_tx),
        server,
        tasks,
        state_file,
    })
}

fn router(app: App) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/login/companyinfo/{company}", get(api::company_info))
        .route("/__sim/reset", post(admin::reset))
        .route("/__sim/seed", post(admin::seed))
        .route("/__sim/state", get(admin::state))
        .route("/__sim/members", post(admin::add_member))
        .route(
            "/__sim/faults",
            get(admin::get_faults).put(admin::put_faults),
        )
        .route("/ui", get(ui::list))
        .route("/ui/tickets/{id}", get(ui::ticket))
        .route("/ui/tickets/{id}/notes", post(ui::add_note))
        .route("/ui/tickets/{id}/status", post(ui::set_status))
        .fallback(api::fallback)
        .with_state(app)
}

//! Harness for the end-to-end tests: starts the built `casebridge` binary (never a second build)
//! as `demo` or `serve` in a throw-away data dir, reads where it listens, and kills it on drop.
//! Every wait polls with a deadline; nothing sleeps a fixed time hoping for the best.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_casebridge");

/// How long the demo may take to seed, ingest and answer (a debug build on two shared cores).
pub const START_DEADLINE: Duration = Duration::from_secs(240);
/// How long an asynchronous effect (an outbox job, a ticket) may take to show.
pub const EFFECT_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// The repository's root (for the shipped `data/` files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

pub fn data_file(rel: &str) -> PathBuf {
    repo_root().join("data").join(rel)
}

/// A unique, process- and call-specific suffix (no randomness crate needed).
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(&format!("cb-e2e-{prefix}-")));
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary to completion with a deadline; returns its output.
pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new("run");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CASEBRIDGE_DATABASE_URL")
        .env_remove("CASEBRIDGE_DATA_DIR")
        .env_remove("CASEBRIDGE_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starting casebridge");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for casebridge") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("casebridge {args:?} did not finish within 120 s");
        }
        std::thread::sleep(POLL);
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

/// Runs the binary and insists on success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "casebridge {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The last whitespace-separated word of a command's output (how `token create` and
/// `account create` hand back what they made).
pub fn last_word(s: &str) -> String {
    s.split_whitespace().last().unwrap_or_default().to_string()
}

/// A running `casebridge` process; killed on drop. Its stderr goes to `log` for failure reports.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
    what: String,
}

impl Proc {
    fn spawn(args: &[String], log: PathBuf, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("CASEBRIDGE_DATABASE_URL")
            .env_remove("CASEBRIDGE_DATA_DIR")
            .env_remove("CASEBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout log"))
            .stderr(std::fs::File::create(&log).expect("stderr log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting casebridge");
        Self {
            child: Some(child),
            log,
            what: format!("casebridge {}", args.join(" ")),
        }
    }

    /// Panics with the log when the process has already exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait().expect("try_wait")
        {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.what,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        let tail = |p: &Path| {
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let start = s.len().saturating_sub(6000);
            s.get(start..).unwrap_or(&s).to_string()
        };
        format!(
            "--- stderr ---\n{}\n--- stdout ---\n{}",
            tail(&self.log),
            tail(&self.log.with_extension("out"))
        )
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `deadline` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn client() -> reqwest::Client {
    casebridge_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

fn casebridge_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A response: status, content type and body (JSON when it parses, else a JSON string).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Resp {
    /// Asserts an RFC 9457 problem with `status`; returns its body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {self:#?}"
        );
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "not problem+json: {self:#?}"
        );
        assert_eq!(
            self.body["status"], status,
            "problem body lacks its status: {self:#?}"
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "problem without detail: {self:#?}"
        );
        &self.body
    }

    /// Asserts a problem naming `field` in its `errors` list.
    pub fn problem_naming(&self, status: u16, field: &str) -> &Value {
        let b = self.problem(status);
        let named = b["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == field));
        assert!(
            named,
            "the problem does not name field {field:?}: {self:#?}"
        );
        b
    }

    pub fn ok(&self) -> &Value {
        assert!(self.status.is_success(), "expected success, got {self:#?}");
        &self.body
    }
}

/// A bearer-token client of the REST API.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            http: client(),
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub fn without_token(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            status,
            content_type,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            Method::POST,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(
            Method::PATCH,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.send(Method::POST, path, Some(content_type), Some(body.into()))
            .await
    }

    /// Every item of a list endpoint, following `next` cursors (`path` may carry a query).
    pub async fn all(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let page = match &cursor {
                None => self.get(&format!("{path}{sep}limit={limit}")).await,
                Some(c) => {
                    self.get(&format!("{path}{sep}limit={limit}&cursor={c}"))
                        .await
                }
            };
            let body = page.ok();
            let items = body["items"].as_array().expect("a list response has items");
            assert!(
                items.len() <= limit,
                "a page of {} items is over the limit {limit}",
                items.len()
            );
            out.extend(items.iter().cloned());
            match body["next"].as_str() {
                Some(c) => {
                    assert!(!items.is_empty(), "an empty page still has a next cursor");
                    cursor = Some(c.to_string());
                }
                None => {
                    assert!(
                        body["next"].is_null(),
                        "next is neither a cursor nor null: {body}"
                    );
                    return out;
                }
            }
        }
        panic!("{path} paged forever");
    }

    pub async fn case(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/cases/{id}")).await.ok().clone()
    }

    pub async fn activity(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/cases/{id}/activity")).await.ok()["items"]
            .as_array()
            .expect("activity items")
            .clone()
    }
}

/// `casebridge demo --port 0 --sim-port 0 --data-dir D`, ready once `D/demo.json` appears.
pub struct Demo {
    pub proc: Proc,
    pub dir: PathBuf,
    pub info: Value,
    pub api: Api,
    _owned: Option<TempDir>,
}

impl Demo {
    /// A demo in a fresh data dir of its own (removed when the demo is dropped).
    pub async fn start() -> Self {
        let tmp = TempDir::new("demo");
        let mut d = Self::start_in(tmp.path()).await;
        d._owned = Some(tmp);
        d
    }

    /// A demo on `dir` (kept). A `demo.json` left by an earlier run is removed first, so the
    /// one read here is this run's.
    pub async fn start_in(dir: &Path) -> Self {
        let info_path = dir.join("demo.json");
        let previous = std::fs::read(&info_path).ok();
        let log = dir.join(unique("demo-log-")).with_extension("log");
        let args: Vec<String> = [
            "--data-dir",
            &dir.display().to_string(),
            "demo",
            "--port",
            "0",
            "--sim-port",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // demo.json of an earlier run stays until this run rewrites it atomically (the demo reads
        // it back for the simulator's keys): wait for a file that differs (new ports) or for the
        // banner the demo prints after writing it.
        let mut proc = Proc::spawn(&args, log, &[]);
        let end = Instant::now() + START_DEADLINE;
        let info: Value = loop {
            proc.assert_running();
            let announced = std::fs::read_to_string(proc.log.with_extension("out"))
                .is_ok_and(|o| o.contains("Casebridge demo is running"));
            if let Ok(bytes) = std::fs::read(&info_path)
                && (previous.as_deref() != Some(&bytes[..]) || announced)
            {
                break serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("demo.json is not JSON ({e}); written atomically?")
                });
            }
            assert!(
                Instant::now() < end,
                "the demo wrote no demo.json within {START_DEADLINE:?}\n{}",
                proc.log_text()
            );
            tokio::time::sleep(POLL).await;
        };
        let url = info["url"].as_str().expect("demo.json url").to_string();
        let token = info["token"].as_str().expect("demo.json token").to_string();
        Self {
            proc,
            dir: dir.to_path_buf(),
            api: Api::new(&url, Some(&token)),
            info,
            _owned: None,
        }
    }

    pub fn url(&self) -> &str {
        self.info["url"].as_str().unwrap()
    }

    pub fn sim_url(&self) -> &str {
        self.info["sim_url"].as_str().unwrap()
    }

    pub fn token(&self) -> &str {
        self.info["token"].as_str().unwrap()
    }

    pub fn data_dir(&self) -> String {
        self.dir.display().to_string()
    }

    /// The demo account called `name`.
    pub fn account(&self, name: &str) -> &Value {
        self.info["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .unwrap_or_else(|| panic!("no demo account {name}: {}", self.info["accounts"]))
    }

    pub fn account_id(&self, name: &str) -> String {
        self.account(name)["id"].as_str().unwrap().to_string()
    }

    pub fn partner_id(&self) -> String {
        self.info["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "partner")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Sub-tenant ids, in demo.json order.
    pub fn subtenant_ids(&self) -> Vec<String> {
        self.info["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "subtenant")
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// `casebridge token create` against this demo's data dir; returns the token.
    pub fn create_token(&self, account: &str, role: &str) -> String {
        let out = run_ok(&[
            "--data-dir",
            &self.data_dir(),
            "token",
            "create",
            "--account",
            account,
            "--role",
            role,
        ]);
        let t = last_word(&out);
        assert!(t.len() >= 20, "token create printed no token: {out}");
        t
    }

    /// How many tickets cw-sim holds with `externalXRef` = `case_id`, asked as the technician.
    pub async fn sim_ticket_count(&self, case_id: &str) -> i64 {
        // conditions=externalXRef="<case id>" (case ids are [a-z0-9_], nothing else to escape)
        self.sim_count(&format!("?conditions=externalXRef%3D%22{case_id}%22"))
            .await
    }

    /// How many tickets cw-sim holds in all.
    pub async fn sim_ticket_total(&self) -> i64 {
        self.sim_count("").await
    }

    async fn sim_count(&self, query: &str) -> i64 {
        let t = &self.info["technician"];
        let user = format!(
            "{}+{}",
            t["company"].as_str().unwrap(),
            t["public_key"].as_str().unwrap()
        );
        let res = self
            .api
            .http
            .get(format!(
                "{}/v4_6_release/apis/3.0/service/tickets/count{query}",
                self.sim_url()
            ))
            .basic_auth(user, t["private_key"].as_str())
            .header("clientId", t["client_id"].as_str().unwrap())
            .send()
            .await
            .expect("cw-sim answers");
        assert!(
            res.status().is_success(),
            "cw-sim ticket count: {}",
            res.status()
        );
        let v: Value = res.json().await.expect("cw-sim count JSON");
        v["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("cw-sim count without count: {v}"))
    }

    /// Waits until the outbox has no pending or running job (every queued ticket is sent).
    pub async fn wait_outbox_idle(&self) {
        eventually("an idle outbox", EFFECT_DEADLINE, || async {
            for state in ["pending", "running"] {
                let r = self
                    .api
                    .get(&format!("/api/v1/sync/jobs?state={state}&limit=500"))
                    .await;
                if !r.ok()["items"].as_array().is_some_and(|i| i.is_empty()) {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// Stops the process (the data dir stays).
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// `casebridge serve --bind 127.0.0.1:P --data-dir D [--database-url U]`, ready once /healthz
/// answers 200.
pub struct Serve {
    pub proc: Proc,
    pub url: String,
    pub dir: TempDir,
}

impl Serve {
    pub async fn start(database_url: Option<&str>) -> Self {
        let dir = TempDir::new("serve");
        let port = free_port();
        let mut args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
        if let Some(u) = database_url {
            args.extend(["--database-url".to_string(), u.to_string()]);
        }
        args.extend([
            "serve".to_string(),
            "--bind".to_string(),
            format!("127.0.0.1:{port}"),
        ]);
        let mut proc = Proc::spawn(&args, dir.path().join("serve.log"), &[]);
        let url = format!("http://127.0.0.1:{port}");
        let http = client();
        let end = Instant::now() + START_DEADLINE;
        loop {
            proc.assert_running();
            if http
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "serve did not answer /healthz within {START_DEADLINE:?}\n{}",
                proc.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
        Self { proc, url, dir }
    }

    /// The global flags that point another command at this server's database.
    pub fn db_args(&self, database_url: Option<&str>) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_string(),
            self.dir.path().display().to_string(),
        ];
        if let Some(u) = database_url {
            a.extend(["--database-url".to_string(), u.to_string()]);
        }
        a
    }
}

/// A PostgreSQL database of one test (the `[PG]` variants): created from
/// `CASEBRIDGE_TEST_DATABASE_URL` with `psql`, migrated by the binary, dropped on drop.
pub struct PgDb {
    pub url: String,
    base: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.base.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// `None` when `CASEBRIDGE_TEST_DATABASE_URL` is unset. When it is set and the server is
/// unreachable, this panics: the test fails, it never skips.
pub fn pg_database() -> Option<PgDb> {
    let base = std::env::var("CASEBRIDGE_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = unique("cb_e2e_").to_lowercase();
    let out = Command::new("psql")
        .args([
            base.as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("running psql (CASEBRIDGE_TEST_DATABASE_URL is set, so PostgreSQL is required)");
    assert!(
        out.status.success(),
        "CASEBRIDGE_TEST_DATABASE_URL is set but CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = PgDb {
        url: casebridge_testkit::with_database(&base, &name),
        base,
        name,
    };
    run_ok(&["--database-url", &db.url, "migrate"]);
    Some(db)
}

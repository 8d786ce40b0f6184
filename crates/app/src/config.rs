//! Configuration: built-in defaults, then a TOML file (`--config FILE` or `CASEBRIDGE_CONFIG`),
//! then `CASEBRIDGE_*` environment variables, then command-line flags — later wins.
//!
//! | key | env | default |
//! | --- | --- | --- |
//! | `data_dir` | `CASEBRIDGE_DATA_DIR` | `./casebridge-data` |
//! | `database_url` | `CASEBRIDGE_DATABASE_URL` | `sqlite://{data_dir}/casebridge.db` |
//! | `bind` | `CASEBRIDGE_BIND` | `127.0.0.1:8080` |
//! | `public_url` | `CASEBRIDGE_PUBLIC_URL` | none: integrations run on polling alone |
//! | `master_key` | `CASEBRIDGE_MASTER_KEY` | base64 key in `{data_dir}/master.key`, created on first run (0600) |
//! | `max_body_bytes` | `CASEBRIDGE_MAX_BODY_BYTES` | 1048576 |
//! | `poll_interval_ms` | `CASEBRIDGE_POLL_INTERVAL_MS` | 500 |
//! | `reconcile_interval_ms` | `CASEBRIDGE_RECONCILE_INTERVAL_MS` | 60000 |
//! | `backoff_base_ms` | `CASEBRIDGE_BACKOFF_BASE_MS` | 2000 |
//! | `max_attempts` | `CASEBRIDGE_MAX_ATTEMPTS` | 8 |
//! | `request_timeout_ms` | `CASEBRIDGE_REQUEST_TIMEOUT_MS` | 20000 |
//! | `request_budget_per_minute` | `CASEBRIDGE_REQUEST_BUDGET_PER_MINUTE` | 600 |

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub bind: String,
    pub public_url: Option<String>,
    pub master_key: Option<String>,
    pub max_body_bytes: usize,
    pub poll_interval_ms: u64,
    pub reconcile_interval_ms: u64,
    pub backoff_base_ms: u64,
    pub max_attempts: i64,
    pub request_timeout_ms: u64,
    pub request_budget_per_minute: i64,
    pub coalesce_window_ms: u64,
    pub inbox_retention_hours: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./casebridge-data"),
            database_url: None,
            bind: "127.0.0.1:8080".into(),
            public_url: None,
            master_key: None,
            max_body_bytes: 1024 * 1024,
            poll_interval_ms: 500,
            reconcile_interval_ms: 60_000,
            backoff_base_ms: 2_000,
            max_attempts: 8,
            request_timeout_ms: 20_000,
            request_budget_per_minute: 600,
            coalesce_window_ms: 200,
            inbox_retention_hours: 7 * 24,
        }
    }
}

impl Settings {
    /// Loads defaults ← file ← env, then applies `overrides` (the flags that were given).
    pub fn load(
        config_file: Option<&Path>,
        overrides: &[(&str, Option<String>)],
    ) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CASEBRIDGE_CONFIG").map(PathBuf::from));
        if let Some(f) = file {
            anyhow::ensure!(f.exists(), "config file {} does not exist", f.display());
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("CASEBRIDGE_").ignore(&["config"]));
        for (key, value) in overrides {
            if let Some(v) = value {
                fig = fig.merge((*key, v.clone()));
            }
        }
        fig.extract().context("reading the configuration")
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("casebridge.db").display())
        })
    }

    pub fn sync_config(&self) -> casebridge_sync::SyncConfig {
        casebridge_sync::SyncConfig {
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            reconcile_interval: Duration::from_millis(self.reconcile_interval_ms),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            max_attempts: self.max_attempts,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            request_budget: self.request_budget_per_minute,
            coalesce_window: Duration::from_millis(self.coalesce_window_ms),
            inbox_retention: Duration::from_secs(self.inbox_retention_hours.saturating_mul(3600)),
            ..Default::default()
        }
    }

    /// The master key: from config/env, else the key file in the data dir (created 0600).
    pub fn secret_box(&self) -> anyhow::Result<casebridge_sync::SecretBox> {
        if let Some(k) = &self.master_key {
            return casebridge_sync::SecretBox::from_base64("env", k)
                .context("CASEBRIDGE_MASTER_KEY");
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let path = self.data_dir.join("master.key");
        if !path.exists() {
            let key = casebridge_sync::secrets::generate_key();
            write_private(&path, key.as_bytes())?;
        }
        let key = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        casebridge_sync::SecretBox::from_base64("file", &key)
            .with_context(|| format!("{} holds no valid key", path.display()))
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_give_the_sync_engines_defaults() {
        let got = Settings::default().sync_config();
        let want = casebridge_sync::SyncConfig::default();
        assert_eq!(got.poll_interval, want.poll_interval);
        assert_eq!(got.reconcile_interval, want.reconcile_interval);
        assert_eq!(got.backoff_base, want.backoff_base);
        assert_eq!(got.max_attempts, want.max_attempts);
        assert_eq!(got.request_timeout, want.request_timeout);
        assert_eq!(got.request_budget, want.request_budget);
        assert_eq!(got.coalesce_window, want.coalesce_window);
        assert_eq!(got.inbox_retention, want.inbox_retention);
    }

    #[test]
    fn sync_timings_come_from_the_configuration_file() {
        let path = std::env::temp_dir().join(format!(
            "casebridge-config-test-{}-{}.toml",
            std::process::id(),
            casebridge_sync::secrets::generate_key().replace(['/', '+', '='], "")
        ));
        std::fs::write(
            &path,
            "coalesce_window_ms = 50\ninbox_retention_hours = 2\nreconcile_interval_ms = 1500\n",
        )
        .expect("write config");
        let loaded = Settings::load(Some(&path), &[]);
        let _ = std::fs::remove_file(&path);
        let c = loaded.expect("settings load").sync_config();
        assert_eq!(c.coalesce_window, Duration::from_millis(50));
        assert_eq!(c.inbox_retention, Duration::from_secs(7200));
        assert_eq!(c.reconcile_interval, Duration::from_millis(1500));
    }

    #[test]
    fn a_setting_of_the_wrong_type_is_named_in_the_error() {
        // flags arrive as strings; a number setting given as text is refused, by name
        let e = Settings::load(None, &[("inbox_retention_hours", Some("a week".into()))])
            .expect_err("not a number");
        assert!(format!("{e:#}").contains("inbox_retention_hours"), "{e:#}");
    }
}

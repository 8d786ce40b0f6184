//! The harness Casebridge's tests and benchmarks share (dev-only; the product never links it):
//!
//! - [`ScratchDb`]: a database of one test or benchmark run — a SQLite file in the temp dir, or
//!   a fresh database on the PostgreSQL server `CASEBRIDGE_TEST_DATABASE_URL` (or `--database-url`)
//!   names — and its removal afterwards.
//! - [`sim_integration`]: a ConnectWise integration pointing at an in-process cw-sim with its
//!   demo API member, as the sync tests, the web tests and the benchmarks all need one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use casebridge_store::{Integration, now_millis};
use sqlx::{AssertSqlSafe, Connection};

/// The variable that switches the PostgreSQL suites on: a server URL with rights to create
/// databases. When it is set and the server cannot be reached, tests fail — they never skip.
pub const PG_ENV: &str = "CASEBRIDGE_TEST_DATABASE_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// What `Store::backend()` answers for this backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database of its own for one test or benchmark run; [`ScratchDb::drop_db`] removes it.
#[derive(Debug)]
pub struct ScratchDb {
    url: String,
    place: Place,
}

#[derive(Debug)]
enum Place {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// 16 random hex digits: unique enough for scratch names, valid in SQL identifiers.
fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ScratchDb {
    /// A SQLite file `<temp>/<prefix>-<random>.db` (created when the store opens it).
    pub fn sqlite(prefix: &str) -> ScratchDb {
        let path = std::env::temp_dir().join(format!("{prefix}-{}.db", unique()));
        ScratchDb {
            url: format!("sqlite://{}", path.display()),
            place: Place::Sqlite(path),
        }
    }

    /// A new, empty database `<prefix>_<random>` on the server `admin_url` names.
    pub async fn postgres(admin_url: &str, prefix: &str) -> Result<ScratchDb> {
        let name = format!("{prefix}_{}", unique());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .context("cannot connect to PostgreSQL")?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = admin.close().await;
        Ok(ScratchDb {
            url: with_database(admin_url, &name),
            place: Place::Postgres {
                admin_url: admin_url.to_string(),
                name,
            },
        })
    }

    /// A scratch database of `backend` for a test: `None` only for PostgreSQL when [`PG_ENV`]
    /// is unset. Panics (the test fails) when the variable is set but the server refuses.
    pub async fn for_test(backend: Backend, prefix: &str) -> Option<ScratchDb> {
        match backend {
            Backend::Sqlite => Some(ScratchDb::sqlite(prefix)),
            Backend::Postgres => {
                let admin_url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
                Some(
                    ScratchDb::postgres(&admin_url, prefix)
                        .await
                        .unwrap_or_else(|e| panic!("{PG_ENV} is set, but: {e:#}")),
                )
            }
        }
    }

    /// The URL to open the store with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database file, when it is SQLite (tests read its raw bytes, e.g. to prove a secret
    /// is not stored in plain text).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        match &self.place {
            Place::Sqlite(path) => Some(path),
            Place::Postgres { .. } => None,
        }
    }

    /// Deletes the SQLite file (with its WAL and shared-memory files) or drops the PostgreSQL
    /// database, closing connections still open to it. Failures are reported, not raised.
    pub async fn drop_db(self) {
        match self.place {
            Place::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Place::Postgres { admin_url, name } => {
                let dropped = async {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                }
                .await;
                if let Err(e) = dropped {
                    eprintln!("note: could not drop scratch database {name}: {e}");
                }
            }
        }
    }
}

/// `url` with its database (the path after the authority) replaced by `db`, keeping scheme,
/// user, password, host, port and query string.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{db}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// An active ConnectWise integration of `account_id` on `sim`, logging in as its demo API
/// member whose private key is `sealed_private_key` (sealed by the caller's secret box).
/// Private hosts are allowed (cw-sim runs on 127.0.0.1); Apply to All Subtenants is on; the
/// integration starts on polling with no callback registered.
pub fn sim_integration(
    sim: &cw_sim::SimHandle,
    account_id: &str,
    sealed_private_key: String,
    parent_company_identifier: &str,
) -> Integration {
    let keys = sim
        .demo_keys()
        .expect("cw-sim was started with the demo seed");
    let now = now_millis();
    Integration {
        id: casebridge_domain::ids::new_id("int"),
        account_id: account_id.to_string(),
        kind: "connectwise".into(),
        site_url: sim.url().to_string(),
        company_id: sim.login_company().to_string(),
        public_key: keys.api_member.public_key.clone(),
        private_key_enc: Some(sealed_private_key),
        client_id: keys.api_member.client_id.clone(),
        parent_company_identifier: Some(parent_company_identifier.to_string()),
        apply_to_all_subtenants: true,
        uniform_subtenant_mappings: false,
        allow_private_hosts: true,
        process_notifications: false,
        active: true,
        last_test: None,
        tested_ok: true,
        callback_id: None,
        sync_mode: "polling".into(),
        last_callback_at: None,
        watermark: None,
        created_at: now,
        updated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1/a/b?x=1&y=2", "n"),
            "postgres://u@h:1/n?x=1&y=2"
        );
    }
}

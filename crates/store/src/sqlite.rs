//! The SQLite backend: the embedded default. One file under the data dir, WAL journal, and every
//! write transaction started with `BEGIN IMMEDIATE` so writers queue for the lock up front
//! instead of failing with SQLITE_BUSY halfway through.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Result, migrations};

type Db = sqlx::Sqlite;
type ThisStore = SqliteStore;
const BACKEND: &str = "sqlite";
const MIGRATIONS: &[migrations::Migration] = migrations::SQLITE;
/// SQLite serialises writers with `BEGIN IMMEDIATE`: no row locks needed.
const FOR_UPDATE: &str = "";
const SKIP_LOCKED: &str = "";

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    /// Readers (and, for `:memory:`, everything: there the pool is one connection).
    pool: sqlx::Pool<Db>,
    /// The one connection that writes. SQLite lets one writer in at a time; queueing writers
    /// here (in order, without sleeping) instead of in SQLite's busy handler — which sleeps
    /// 1, 2, 5, 10 … 100 ms between tries — keeps a burst of writes from stalling for tens of
    /// milliseconds. Other processes (the CLI while the server runs) still meet the busy timeout.
    writer: sqlx::Pool<Db>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (and creates) the database a `sqlite://PATH` URL names; `sqlite::memory:` works too.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .connect_with(opts.clone())
            .await?;
        // every `:memory:` connection is a database of its own: there the pool must be the writer
        let writer = if memory {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?
        };
        Ok(Self { pool, writer })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

include!("sql_impl.rs");

//! The PostgreSQL backend: for several stateless nodes sharing one database. Workers claim
//! outbox jobs with `FOR UPDATE SKIP LOCKED`, so two nodes never lease the same job.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::{Result, migrations};

type Db = sqlx::Postgres;
type ThisStore = PgStore;
const BACKEND: &str = "postgres";
const MIGRATIONS: &[migrations::Migration] = migrations::POSTGRES;
const FOR_UPDATE: &str = " FOR UPDATE";
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: sqlx::Pool<Db>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the DSN: it may carry a password
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin().await?)
    }
}

include!("sql_impl.rs");

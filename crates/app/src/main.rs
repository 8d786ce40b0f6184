//! `casebridge`: one binary, several jobs — `serve` (API + workers, or one role of them),
//! `demo` (everything in one process against an embedded ConnectWise simulator), `migrate`,
//! `ingest FILE`, `account create`, `token create`. See `config.rs` for every setting and its env variable.

mod config;
mod demo;
mod runtime;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use config::Settings;

#[derive(Parser)]
#[command(
    name = "casebridge",
    version,
    about = "Security cases synced both ways with ConnectWise PSA tickets, for MSSPs and their sub-tenants.",
    long_about = "Security cases synced both ways with ConnectWise PSA tickets, for MSSPs and their sub-tenants.\n\n\
Every option can also come from a TOML config file (--config or CASEBRIDGE_CONFIG) or a CASEBRIDGE_* environment \
variable (e.g. CASEBRIDGE_DATA_DIR, CASEBRIDGE_DATABASE_URL, CASEBRIDGE_PUBLIC_URL, CASEBRIDGE_MASTER_KEY); flags win."
)]
struct Cli {
    /// TOML config file (also CASEBRIDGE_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory: the SQLite database, the master key file, the demo's files (CASEBRIDGE_DATA_DIR; default ./casebridge-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… (CASEBRIDGE_DATABASE_URL; default SQLite in the data dir).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Role {
    /// REST API and callback endpoint only
    Api,
    /// outbox workers, callback processing and reconciliation only
    Worker,
    /// both
    All,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API, the ConnectWise callback endpoint and the sync workers.
    Serve {
        /// Address to listen on (CASEBRIDGE_BIND; default 127.0.0.1:8080).
        #[arg(long)]
        bind: Option<String>,
        /// The address ConnectWise can reach for callbacks (CASEBRIDGE_PUBLIC_URL); without it integrations run on polling alone.
        #[arg(long)]
        public_url: Option<String>,
        /// What this node runs: api, worker or all. Several nodes may share one PostgreSQL.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Run everything in one process: SQLite in the data dir, an embedded ConnectWise simulator, a demo partner with four
    /// sub-tenants, the Sigma catalogue and the shipped alerts. Prints the URLs, a login and an API token, and writes
    /// DATA_DIR/demo.json for scripts. Re-running on the same data dir duplicates nothing.
    Demo {
        /// API port (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of the embedded ConnectWise simulator (0 picks a free one).
        #[arg(long, default_value_t = 8081)]
        sim_port: u16,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Ingest alerts from a file (one JSON alert, a JSON array, or NDJSON; OCSF, Wazuh, Sigma regression records or plain JSON).
    Ingest {
        /// The file to read.
        file: PathBuf,
        /// Account of alerts that name none.
        #[arg(long)]
        account: Option<String>,
        /// Format (ocsf, wazuh, sigma, json); detected per alert when absent.
        #[arg(long)]
        format: Option<String>,
    },
    /// Accounts (to bootstrap a fresh database: create the partner, then a token for it).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account and print its id (as the last word).
    Create {
        /// The account's name.
        #[arg(long)]
        name: String,
        /// partner, subtenant or standalone.
        #[arg(long, default_value = "partner")]
        kind: String,
        /// The partner of a sub-tenant.
        #[arg(long)]
        parent: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for an account and print it (as the last word). Works while the server runs.
    Create {
        /// The account the token belongs to.
        #[arg(long)]
        account: String,
        /// admin, analyst or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

fn settings(cli: &Cli, extra: &[(&str, Option<String>)]) -> anyhow::Result<Settings> {
    let mut overrides = vec![
        (
            "data_dir",
            cli.data_dir.as_ref().map(|p| p.display().to_string()),
        ),
        ("database_url", cli.database_url.clone()),
    ];
    overrides.extend(extra.iter().cloned());
    Settings::load(cli.config.as_deref(), &overrides)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASEBRIDGE_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    casebridge_connector::install_crypto_provider();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve {
            bind,
            public_url,
            role,
        } => {
            let s = settings(
                &cli,
                &[("bind", bind.clone()), ("public_url", public_url.clone())],
            )?;
            runtime::serve(s, *role).await
        }
        Command::Demo { port, sim_port } => {
            let s = settings(&cli, &[])?;
            demo::run(s, *port, *sim_port).await
        }
        Command::Migrate => {
            let s = settings(&cli, &[])?;
            std::fs::create_dir_all(&s.data_dir).ok();
            casebridge_store::open(&s.database_url(), true).await?;
            println!(
                "migrations applied to {}",
                s.database_url().split('@').next_back().unwrap_or_default()
            );
            Ok(())
        }
        Command::Ingest {
            file,
            account,
            format,
        } => {
            let s = settings(&cli, &[])?;
            runtime::ingest_file(s, file, account.as_deref(), format.as_deref()).await
        }
        Command::Account {
            command: AccountCommand::Create { name, kind, parent },
        } => {
            let s = settings(&cli, &[])?;
            let id = runtime::create_account(&s, name, kind, parent.as_deref()).await?;
            println!("account {name} ({kind}): {id}");
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    account,
                    role,
                    label,
                },
        } => {
            let s = settings(&cli, &[])?;
            let token = runtime::create_token(&s, account, role, label).await?;
            println!("API token for {account} ({role}): {token}");
            Ok(())
        }
    }
}

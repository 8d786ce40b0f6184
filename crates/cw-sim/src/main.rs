//! `cw-sim --port P --seed demo|empty [--state-dir D] [--time-scale X]`
use clap::Parser;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "cw-sim",
    about = "A ConnectWise PSA stand-in for tests and demos"
)]
struct Args {
    /// TCP port (0 = any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// demo | empty
    #[arg(long, default_value = "demo")]
    seed: String,
    /// Directory to keep the state in (loaded when present; then the demo is not reseeded)
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    /// Multiplier for every delay the sim imposes (1.0 = ConnectWise timing)
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let seed = match a.seed.as_str() {
        "demo" => cw_sim::Seed::Demo,
        "empty" => cw_sim::Seed::Empty,
        other => anyhow::bail!("--seed must be demo or empty, not {other}"),
    };
    let h = cw_sim::start(cw_sim::SimOptions {
        bind: SocketAddr::new(a.host, a.port),
        seed,
        state_dir: a.state_dir,
        time_scale: a.time_scale,
    })
    .await?;
    println!("{}", h.url());
    if let Some(k) = h.demo_keys() {
        println!("{}", serde_json::to_string_pretty(k)?);
    }
    tokio::signal::ctrl_c().await?;
    h.shutdown().await;
    Ok(())
}

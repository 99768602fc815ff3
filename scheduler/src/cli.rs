//! The `conveyor-scheduler` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{Options, Scheduler, config, status};

/// Leader-elected cron scheduler for Conveyor: publishes one event per tenant per tick.
#[derive(Debug, Parser)]
#[command(name = "conveyor-scheduler", version)]
pub struct Cli {
    #[command(flatten)]
    nats: conveyor::connect_args::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scheduler (any number of processes; one fires).
    Run {
        /// The schedule file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// This process's id in the lease.
        #[arg(long, env = "CONVEYOR_NODE_ID")]
        node_id: Option<String>,
        /// Lease TTL in milliseconds: how fast a dead leader is replaced.
        #[arg(long, default_value_t = 2000)]
        lease_ttl_ms: u64,
        /// Serve /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:9465).
        #[arg(long, env = "CONVEYOR_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Validate the schedule file and exit.
    Check {
        /// The schedule file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show schedules with their next fire times, the leader and the last fired ticks.
    Status {
        /// The schedule file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Runs the command line; returns the process exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match cli.command {
        Command::Check { config } => {
            let schedules = config::load(&config)?;
            println!("{}: {} schedules OK", config.display(), schedules.len());
            Ok(())
        }
        Command::Status { config } => {
            let schedules = config::load(&config)?;
            let conn = cli.nats.connect().await?;
            print!("{}", status::read(&conn, &schedules).await?);
            Ok(())
        }
        Command::Run {
            config,
            node_id,
            lease_ttl_ms,
            metrics_addr,
        } => {
            let schedules = config::load(&config)?;
            let conn = cli.nats.connect().await?;
            let mut options = Options {
                lease_ttl: Duration::from_millis(lease_ttl_ms.max(300)),
                ..Options::default()
            };
            if let Some(id) = node_id {
                options.node_id = id;
            }
            let mut scheduler = Scheduler::new(&conn, &schedules, options)?;
            let mut _server = None;
            if let Some(addr) = metrics_addr {
                let telemetry = conveyor::telemetry::Telemetry::new();
                scheduler = scheduler.with_telemetry(&telemetry);
                _server = Some(telemetry.serve(addr).await?);
            }
            Ok(scheduler.run_until(shutdown_signal()).await?)
        }
    }
}

/// SIGTERM or Ctrl-C; only Ctrl-C where SIGTERM cannot be listened for.
async fn shutdown_signal() {
    match conveyor::shutdown::signal() {
        Ok(stop) => stop.await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

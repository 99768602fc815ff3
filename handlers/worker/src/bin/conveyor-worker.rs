//! `conveyor-worker`: runs handler groups until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use conveyor::telemetry::Telemetry;
use conveyor_worker::{StoreChoice, WorkerOptions, all_groups, start};

/// Where handler state is kept.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StoreKind {
    /// A JetStream key-value bucket.
    Kv,
    /// Files under a local directory.
    Dir,
}

/// Runs Conveyor handler groups. Start more copies to scale out: copies running a group share
/// its work.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    nats: conveyor::connect_args::ConnectArgs,
    /// Groups to run, comma-separated (default: all). See --list-groups.
    #[arg(long, env = "CONVEYOR_GROUPS", value_delimiter = ',')]
    groups: Vec<String>,
    /// Print the known groups and exit.
    #[arg(long)]
    list_groups: bool,
    /// Handlers per group this process runs at once (default: each group's own).
    #[arg(long, env = "CONVEYOR_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Where handler state is kept: `kv` (a JetStream key-value bucket, shared by every process
    /// on any host) or `dir` (files under --store-dir, one host only).
    #[arg(long, env = "CONVEYOR_STORE", value_enum, default_value = "kv")]
    store: StoreKind,
    /// The key-value bucket of `--store kv`.
    #[arg(long, env = "CONVEYOR_STORE_BUCKET", default_value = conveyor::store::STORE_BUCKET)]
    store_bucket: String,
    /// The directory of `--store dir`.
    #[arg(long, env = "CONVEYOR_STORE_DIR", default_value = ".conveyor/store")]
    store_dir: PathBuf,
    /// Where rendered emails are written (unless --smtp-url is given).
    #[arg(long, env = "CONVEYOR_OUTBOX_DIR", default_value = ".conveyor/outbox")]
    outbox_dir: PathBuf,
    /// Send emails through this SMTP server: smtp://host:25, smtp://user:pass@host:587?tls=required
    /// or smtps://user:pass@host:465.
    #[arg(long, env = "CONVEYOR_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Base URL of the LLM / AI API.
    #[arg(long, env = "CONVEYOR_AI_URL", default_value = "http://127.0.0.1:8089")]
    ai_url: String,
    /// The webhook signing secret.
    #[arg(long, env = "CONVEYOR_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "CONVEYOR_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Shutdown grace period in seconds.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_groups {
        for g in all_groups() {
            println!("{g}");
        }
        return ExitCode::SUCCESS;
    }
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
    // Listen for SIGTERM from the start, so a stop during startup is graceful too.
    let stop = conveyor::shutdown::signal()?;
    let conn = cli.nats.connect().await?;
    let telemetry = Telemetry::new();
    let _endpoint = match cli.metrics_addr {
        Some(addr) => Some(telemetry.serve(addr).await?),
        None => None,
    };
    let defaults = WorkerOptions::default();
    let options = WorkerOptions {
        groups: cli.groups,
        concurrency: cli.concurrency,
        store: match cli.store {
            StoreKind::Kv => StoreChoice::Kv {
                bucket: cli.store_bucket,
            },
            StoreKind::Dir => StoreChoice::Dir(cli.store_dir),
        },
        outbox_dir: cli.outbox_dir,
        smtp_url: cli.smtp_url,
        ai_base_url: cli.ai_url,
        webhook_secret: cli
            .webhook_secret
            .unwrap_or(defaults.webhook_secret.clone()),
        shutdown_grace: Duration::from_secs(cli.shutdown_grace_secs),
        ..defaults
    };
    let running = start(&conn, &options, &telemetry).await?;
    tracing::info!(groups = ?running.groups(), "conveyor-worker running");
    stop.await;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(())
}

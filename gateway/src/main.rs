//! `conveyor-gateway`: the HTTP ingest gateway, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use conveyor::telemetry::Telemetry;
use conveyor_gateway::{Gateway, GatewayConfig};

/// Takes events over HTTP (CloudEvents) and stores them in JetStream. Stateless: run as many as
/// you like behind a load balancer.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    nats: conveyor::connect_args::ConnectArgs,
    /// Where to listen: POST /v1/events, /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "CONVEYOR_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8800"
    )]
    listen: SocketAddr,
    /// Largest request body in bytes.
    #[arg(long, env = "CONVEYOR_GATEWAY_MAX_BODY", default_value_t = 4 << 20)]
    max_body: usize,
    /// How long a client may take to send a request's headers (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// How long a client may take to send a request's body (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    body_timeout: Duration,
    /// The `source` of events whose request names none.
    #[arg(long, default_value = "conveyor-gateway")]
    source: String,
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let stop = conveyor::shutdown::signal()?;
    let conn = cli.nats.connect().await?;
    let telemetry = Telemetry::new();
    let config = GatewayConfig {
        listen: cli.listen,
        max_body: cli.max_body,
        header_timeout: cli.header_timeout,
        body_timeout: cli.body_timeout,
        default_source: cli.source,
    };
    let gateway = Gateway::start(&conn, &telemetry, config).await?;
    // Tests and scripts read the address from this line.
    println!("listening on http://{}", gateway.local_addr());
    stop.await;
    tracing::info!("stopping: finishing requests in progress");
    gateway.shutdown().await;
    Ok(())
}

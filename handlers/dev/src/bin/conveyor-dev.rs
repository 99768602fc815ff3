//! `conveyor-dev`: the whole system on this machine until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use conveyor_dev::{DevOptions, DevSystem, lines};

/// Starts nats-server (unless --server), the topology, the LLM stub, the worker with every
/// group, the scheduler and a stream of sample events; prints what happens; Ctrl-C stops all.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "NATS_URL")]
    server: Option<String>,
    /// Where data goes (nats store, email outbox, and handler state with --store dir).
    #[arg(long, default_value = ".conveyor")]
    data_dir: PathBuf,
    /// Where handler state is kept: `kv` (the conveyor_store key-value bucket, as in
    /// production) or `dir` (files under <data-dir>/store).
    #[arg(long, default_value = "kv")]
    store: String,
    /// Milliseconds between sample events (0: none).
    #[arg(long, default_value_t = 1500)]
    sample_every_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    lines::install();
    #[cfg(unix)]
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match cli.store.as_str() {
        "kv" => conveyor_worker::StoreChoice::default(),
        "dir" => conveyor_worker::StoreChoice::Dir(cli.data_dir.join("store")),
        other => {
            eprintln!("error: --store is kv or dir, not {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let options = DevOptions {
        store,
        data_dir: cli.data_dir,
        nats_url: cli.server,
        sample_every: (cli.sample_every_ms > 0).then(|| Duration::from_millis(cli.sample_every_ms)),
        ..DevOptions::default()
    };
    let system = match DevSystem::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    lines::say("dev", "running; Ctrl-C stops everything");
    match cli.seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => {
            #[cfg(unix)]
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    lines::say("dev", "stopping");
    system.shutdown().await;
    lines::say("dev", "stopped");
    ExitCode::SUCCESS
}

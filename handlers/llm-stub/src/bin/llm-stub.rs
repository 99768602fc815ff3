//! Runs the LLM stub until Ctrl-C.

use std::time::Duration;

use clap::Parser;
use conveyor_llm_stub::{LlmStub, StubOptions};

/// A local stand-in for an LLM HTTP API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089", env = "LLM_STUB_ADDR")]
    addr: std::net::SocketAddr,
    /// The first N requests answer 500.
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    /// The next N requests answer 429.
    #[arg(long, default_value_t = 0)]
    rate_limit_next: u32,
    /// Retry-After of a 429, in seconds.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Delay of every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let cli = Cli::parse();
    let stub = LlmStub::start(
        cli.addr,
        StubOptions {
            fail_first: cli.fail_first,
            rate_limit_next: cli.rate_limit_next,
            retry_after_secs: cli.retry_after_secs,
            delay: Duration::from_millis(cli.delay_ms),
        },
    )
    .await?;
    println!("LLM stub on {}", stub.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

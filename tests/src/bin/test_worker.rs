//! A worker process for crash tests: handles `test.ping` in one group and reports each run on
//! core NATS (`test.started` when a run starts, `test.handled` when it ends), as
//! `<event-id> <attempt> <worker-name>`.
//!
//! Configured by environment: `NATS_URL`, `GROUP`, `WORKER_NAME`, `SLEEP_MS`, `ACK_WAIT_MS`,
//! `MAX_ATTEMPTS`, `CONCURRENCY`.

use std::time::Duration;

use conveyor::{Connection, Context, Group, HandlerOptions, HandlerResult, RetryPolicy, Worker};
use conveyor_tests::Ping;

#[derive(Clone)]
struct State {
    client: async_nats::Client,
    name: String,
    sleep: Duration,
}

async fn on_ping(_event: Ping, ctx: Context<State>) -> HandlerResult {
    let s = ctx.state();
    let line = format!("{} {} {}", ctx.event_id(), ctx.attempt(), s.name);
    s.client
        .publish("test.started", line.clone().into())
        .await?;
    tokio::time::sleep(s.sleep).await;
    s.client.publish("test.handled", line.into()).await?;
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    conveyor_tests::init_tracing();
    let url = std::env::var("NATS_URL")?;
    let group = std::env::var("GROUP").unwrap_or_else(|_| "crash".into());
    let conn = Connection::connect(&url).await?;
    let state = State {
        client: conn.client().clone(),
        name: std::env::var("WORKER_NAME").unwrap_or_else(|_| "child".into()),
        sleep: Duration::from_millis(env_u64("SLEEP_MS", 200)),
    };
    let attempts = u32::try_from(env_u64("MAX_ATTEMPTS", 5))?;
    let options = HandlerOptions::default()
        .retry(RetryPolicy::exponential(
            attempts,
            Duration::from_millis(100),
        ))
        .timeout(Duration::from_secs(60));
    Worker::builder(&conn, state)
        .group(
            Group::new(group)
                .ack_wait(Duration::from_millis(env_u64("ACK_WAIT_MS", 2000)))
                .concurrency(usize::try_from(env_u64("CONCURRENCY", 4))?)
                .handle_with(on_ping, options),
        )
        .build()?
        .run()
        .await?;
    Ok(())
}

//! `fairness`: a quiet tenant's latency behind a noisy tenant's backlog, Conveyor's partitioned
//! groups next to a plain single-consumer group written with raw async-nats, and the number of
//! consumers with many tenants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use conveyor::partition::partition_of;
use conveyor::topology::EVENTS_STREAM;
use conveyor::{Connection, Context, Group, HandlerResult, Publisher, Worker};
use futures::StreamExt;
use serde_json::json;

use crate::{BoxResult, IN_FLIGHT, Tick, percentile, reset, round2, tick};

/// The noisy tenant.
const NOISY: &str = "acme";
/// Handler slots of the group.
const CONCURRENCY: usize = 32;
/// Each run's work.
const WORK: Duration = Duration::from_millis(1);
/// The quiet tenant's events, one at a time.
const QUIET_EVENTS: u64 = 40;
const QUIET_EVERY: Duration = Duration::from_millis(5);

/// A tenant in another partition than the noisy one.
fn quiet_tenant() -> &'static str {
    ["globex", "initech", "umbrella", "hooli"]
        .into_iter()
        .find(|t| partition_of(t) != partition_of(NOISY))
        .unwrap_or("globex")
}

#[derive(Clone)]
struct Seen {
    noisy: Arc<AtomicU64>,
    quiet: Arc<std::sync::Mutex<Vec<f64>>>,
    origin: Instant,
}

impl Seen {
    fn new() -> Self {
        Self {
            noisy: Arc::new(AtomicU64::new(0)),
            quiet: Arc::new(std::sync::Mutex::new(Vec::new())),
            origin: Instant::now(),
        }
    }

    fn run(&self, tenant: &str, sent_us: u64) {
        if tenant == NOISY {
            self.noisy.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut l) = self.quiet.lock() {
            let now_us = self.origin.elapsed().as_micros() as u64;
            l.push(now_us.saturating_sub(sent_us) as f64 / 1000.0);
        }
    }

    fn quiet_latencies(&self) -> (f64, f64) {
        let mut l = self.quiet.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(f64::total_cmp);
        (percentile(&l, 0.5), percentile(&l, 0.99))
    }
}

async fn work(e: Tick, ctx: Context<Seen>) -> HandlerResult {
    tokio::time::sleep(WORK).await;
    ctx.state().run(ctx.tenant().as_str(), e.sent_us);
    Ok(())
}

async fn fill_noisy(conn: &Connection, n: usize) -> BoxResult<()> {
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many((0..n as u64).map(|i| (NOISY, tick(i, 0))))
        .await
        .into_result()?;
    Ok(())
}

/// Publishes the quiet tenant's events one at a time and waits until all ran.
async fn quiet_traffic(conn: &Connection, seen: &Seen) -> BoxResult<()> {
    let publisher = Publisher::new(conn);
    let quiet = quiet_tenant();
    for i in 0..QUIET_EVENTS {
        let sent_us = seen.origin.elapsed().as_micros() as u64;
        publisher.publish(quiet, &tick(i, sent_us)).await?;
        tokio::time::sleep(QUIET_EVERY).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.quiet.lock().map(|l| l.len() as u64).unwrap_or(0) < QUIET_EVENTS {
        if Instant::now() > deadline {
            return Err("the quiet tenant's events did not all run".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn wait_noisy(seen: &Seen, n: usize) -> BoxResult<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.noisy.load(Ordering::Relaxed) < n as u64 {
        if Instant::now() > deadline {
            return Err("the noisy backlog did not drain".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Conveyor: (quiet p50, quiet p99, noisy events/s) with a noisy backlog of `backlog`.
async fn conveyor_round(conn: &Connection, backlog: usize) -> BoxResult<(f64, f64, f64)> {
    reset(conn).await?;
    fill_noisy(conn, backlog).await?;
    let seen = Seen::new();
    let start = Instant::now();
    let worker = Worker::builder(conn, seen.clone())
        .backstop(false)
        .group(
            Group::new("fair")
                .concurrency(CONCURRENCY)
                .max_ack_pending(4096)
                .handle(work),
        )
        .build()?
        .spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    quiet_traffic(conn, &seen).await?;
    wait_noisy(&seen, backlog).await?;
    let rate = backlog as f64 / start.elapsed().as_secs_f64();
    worker.shutdown().await;
    let (p50, p99) = seen.quiet_latencies();
    Ok((p50, p99, rate))
}

/// A plain single-consumer group with raw async-nats: one pull consumer in stream order, the
/// same handler on `CONCURRENCY` tasks.
async fn raw_round(conn: &Connection, backlog: usize) -> BoxResult<(f64, f64, f64)> {
    reset(conn).await?;
    fill_noisy(conn, backlog).await?;
    let seen = Seen::new();
    let start = Instant::now();
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw_fair".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await?;
    let reader_seen = seen.clone();
    let reader = tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(CONCURRENCY)
            .messages()
            .await?;
        while let Some(m) = messages.next().await {
            let m = m?;
            let permit = slots.clone().acquire_owned().await?;
            let seen = reader_seen.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let tenant = m.subject.split('.').nth(1).unwrap_or("").to_owned();
                let sent_us = serde_json::from_slice::<serde_json::Value>(&m.payload)
                    .ok()
                    .and_then(|v| v["data"]["sent_us"].as_u64())
                    .unwrap_or(0);
                tokio::time::sleep(WORK).await;
                seen.run(&tenant, sent_us);
                let _ = m.ack().await;
            });
        }
        Ok::<(), crate::BoxError>(())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    quiet_traffic(conn, &seen).await?;
    wait_noisy(&seen, backlog).await?;
    let rate = backlog as f64 / start.elapsed().as_secs_f64();
    reader.abort();
    let (p50, p99) = seen.quiet_latencies();
    Ok((p50, p99, rate))
}

/// Consumers of one group on two lanes after events of `tenants` tenants ran.
async fn consumers_with_tenants(conn: &Connection, tenants: usize) -> BoxResult<(usize, f64)> {
    reset(conn).await?;
    let names: Vec<String> = (0..tenants).map(|n| format!("t{n}")).collect();
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many(names.iter().map(|t| (t.as_str(), tick(0, 0))))
        .await
        .into_result()?;
    let handled = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let worker =
        Worker::builder(conn, handled.clone())
            .backstop(false)
            .group(Group::new("many").concurrency(256).handle(
                |_: Tick, ctx: Context<Arc<AtomicU64>>| async move {
                    ctx.state().fetch_add(1, Ordering::Relaxed);
                    Ok::<(), conveyor::HandlerError>(())
                },
            ))
            .group(Group::new("many-high").lane("high").handle(
                |_: Tick, _: Context<Arc<AtomicU64>>| async move {
                    Ok::<(), conveyor::HandlerError>(())
                },
            ))
            .build()?
            .spawn();
    let deadline = Instant::now() + Duration::from_secs(300);
    while handled.load(Ordering::Relaxed) < tenants as u64 {
        if Instant::now() > deadline {
            return Err("the tenants' events did not all run".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = tenants as f64 / start.elapsed().as_secs_f64();
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await?;
    let consumers = stream.consumer_names().count().await;
    worker.shutdown().await;
    Ok((consumers, rate))
}

/// Prints one line per noisy backlog size, then the consumer count.
pub(crate) async fn fairness(conn: &Connection) -> BoxResult<()> {
    let (idle_p50, idle_p99, _) = conveyor_round(conn, 0).await?;
    for backlog in [10_000, 100_000] {
        let (p50, p99, rate) = conveyor_round(conn, backlog).await?;
        let (raw_p50, raw_p99, raw_rate) = raw_round(conn, backlog).await?;
        println!(
            "{}",
            json!({"bench": "fairness", "noisy_backlog": backlog, "concurrency": CONCURRENCY,
                   "handler_ms": WORK.as_millis() as u64, "quiet_events": QUIET_EVENTS,
                   "quiet_idle_p50_ms": round2(idle_p50), "quiet_idle_p99_ms": round2(idle_p99),
                   "quiet_p50_ms": round2(p50), "quiet_p99_ms": round2(p99),
                   "quiet_p99_vs_idle": round2(p99 / idle_p99),
                   "noisy_per_s": rate.round(),
                   "raw_single_consumer_quiet_p50_ms": round2(raw_p50),
                   "raw_single_consumer_quiet_p99_ms": round2(raw_p99),
                   "raw_single_consumer_noisy_per_s": raw_rate.round(),
                   "noisy_throughput_vs_raw": round2(rate / raw_rate)})
        );
    }
    let tenants = 100_000;
    let (consumers, rate) = consumers_with_tenants(conn, tenants).await?;
    println!(
        "{}",
        json!({"bench": "fairness_consumers", "tenants": tenants, "groups": 1, "lanes": 2,
               "consumers": consumers, "events_per_s": rate.round()})
    );
    Ok(())
}

//! Conveyor benchmarks against raw async-nats, in one run against their own nats-server.
//!
//! `cargo run --release -p conveyor-bench [-- core|publish|consume|latency]` prints one JSON
//! object per line:
//! - `publish`: events/s through `Publisher::publish_many` vs raw `jetstream.send_publish` of the
//!   same wire message (subject, `Nats-Msg-Id` and `Content-Type` headers, an envelope body of
//!   the same shape encoded per message) with the same ack window;
//! - `consume`: events/s of N queued events through a `Worker` with a no-op handler vs a raw pull
//!   consumer that acks each message;
//! - `latency`: publish-to-handler latency p50/p99 at a steady rate, each stack end to end;
//! - `memory`: the process's peak RSS;
//! - `awaiting` (run on its own: `-- awaiting`): handlers that await 5 ms, 256 slots: rate
//!   against the ideal, busy slots, CPU per event;
//! - `bulk` (run on its own: `-- bulk`): peak RSS and rate of one `publish_many` of 1 000 000
//!   events vs raw async-nats, each in a fresh process;
//! - `scheduler` (run on its own: `-- scheduler`): leader failover time after a crash and tick
//!   lateness;
//! - `observability` (run on its own: `-- observability`): consume throughput with metrics off,
//!   metrics on, and metrics plus run history on, next to raw async-nats;
//! - `priority` (run on its own: `-- priority`): how long an urgent event published behind a
//!   backlog of 400 waits, on the `high` lane and on the default lane;
//! - `fairness` (run on its own: `-- fairness`): a quiet tenant's latency behind a noisy
//!   tenant's backlog of 10 000 and 100 000 events, next to a plain single-consumer group of raw
//!   async-nats, and the consumers of one group on two lanes with 100 000 tenants;
//! - `flow` (run on its own: `-- flow`): lateness of 1 000 delayed events (delays of 1 to 10 s)
//!   next to raw schedule messages read by a raw consumer, and a group's throughput while 1 000
//!   events wait for a retry in an hour, as delayed copies and as delayed Naks, a batch
//!   handler's throughput next to one run per event, and the runs in a minute of a
//!   100-a-minute group limit over 4 worker processes;
//! - `gateway` (run on its own: `-- gateway`): events/s and p50/p99 latency through the HTTP
//!   gateway (keep-alive, single events and batches of 100) next to direct JetStream publishes
//!   of the same events with the same concurrency;
//! - `limits` (run on its own: `-- limits`): a concurrency limit of 2 per tenant over 4 worker
//!   processes: the most concurrent runs of one tenant, the hand-over time from a run's end to
//!   its tenant's next waiting event, and the other tenants' throughput.
//!
//! Each figure is the median of several alternating rounds, so both stacks see the same machine.
//! `CONVEYOR_BENCH_SIDE=conveyor` (or `raw`) runs only that side of `consume` and `awaiting`,
//! to profile it on its own; the other side's figures are then `null`. `CONVEYOR_BENCH_EVENTS`
//! sets the events of a `consume` run (30 000) and `CONVEYOR_BENCH_ROUNDS` the rounds of
//! `consume` and `observability`.

mod awaiting;
mod bulk;
mod cpu;
mod fairness;
mod flow;
mod gateway;
mod latency;
mod layout;
mod limits;
mod observability;
mod priority;
mod scheduler;
mod sides;
use sides::{alternate, consume_events, rounds};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use conveyor::telemetry::Telemetry;
use conveyor::testing::NatsServer;
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor::{Connection, Context, Event, Group, HandlerResult, Publisher, Worker};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ROUNDS: usize = 7;
const LATENCY_ROUNDS: usize = 5;
/// Rounds of the observability bench: its variants differ by little, so more rounds than the
/// others to keep the medians steady.
const OBSERVABILITY_ROUNDS: usize = 15;
const PUBLISH_N: usize = 30_000;
const CONSUME_N: usize = 30_000;
const IN_FLIGHT: usize = 256;
const CONCURRENCY: usize = 256;
const LATENCY_RATE: u64 = 500;
const LATENCY_SECS: u64 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxResult<T> = Result<T, BoxError>;

/// The benchmark event: a small order-like payload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Tick {
    seq: u64,
    sent_us: u64,
    customer: String,
    amount_minor: i64,
}

impl Event for Tick {
    const TYPE: &'static str = "bench.tick";
}

fn tick(seq: u64, sent_us: u64) -> Tick {
    Tick {
        seq,
        sent_us,
        customer: "customer-0001".into(),
        amount_minor: 4200,
    }
}

/// A tick whose `customer` is `customer` (the large-payload publish).
fn tick_with(seq: u64, customer: &str) -> Tick {
    Tick {
        customer: customer.to_owned(),
        ..tick(seq, 0)
    }
}

/// The median of `v`; NaN (printed as `null`) when `v` is empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Deletes every consumer of `EVENTS`, keeping its events.
async fn delete_consumers(conn: &Connection) -> BoxResult<()> {
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await?;
    let names: Vec<String> = stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    for n in names {
        stream.delete_consumer(&n).await?;
    }
    Ok(())
}

/// Deletes every consumer of `EVENTS` and purges it.
async fn reset(conn: &Connection) -> BoxResult<()> {
    delete_consumers(conn).await?;
    conn.jetstream()
        .get_stream(EVENTS_STREAM)
        .await?
        .purge()
        .await?;
    Ok(())
}

/// What a raw async-nats app publishes: its own envelope struct of the same shape and size as
/// Conveyor's, serialized per message.
#[derive(Serialize)]
struct RawEnvelope<'a> {
    specversion: &'a str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: &'a str,
    datacontenttype: &'a str,
    tenantid: &'a str,
    traceparent: String,
    data: Tick,
}

fn raw_body(seq: u64, customer: &str) -> BoxResult<Vec<u8>> {
    Ok(serde_json::to_vec(&RawEnvelope {
        specversion: "1.0",
        id: format!("{seq:036}"),
        source: "conveyor",
        event_type: "bench.tick",
        time: "2026-01-01T00:00:00.000000Z",
        datacontenttype: "application/json",
        tenantid: "acme",
        traceparent: format!("00-{:032x}-{:016x}-01", seq + 1, seq + 1),
        data: tick_with(seq, customer),
    })?)
}

/// Publishes `n` ticks with `Publisher::publish_many`, `IN_FLIGHT` acks outstanding.
async fn conveyor_publish(conn: &Connection, n: u64, customer: &str) -> BoxResult<cpu::Timed> {
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    let start = cpu::Mark::now();
    let results = publisher
        .publish_many((0..n).map(|i| ("acme", tick_with(i, customer))))
        .await;
    let timed = start.timed(n);
    results.into_result()?;
    Ok(timed)
}

/// Publishes `n` envelopes with raw async-nats, `IN_FLIGHT` acks outstanding; events/s.
async fn raw_publish_n(conn: &Connection, n: u64) -> BoxResult<cpu::Timed> {
    raw_publish_sized(conn, n, "customer-0001").await
}

/// [`raw_publish_n`] with ticks whose `customer` is `customer`.
async fn raw_publish_sized(conn: &Connection, n: u64, customer: &str) -> BoxResult<cpu::Timed> {
    let js = async_nats::jetstream::new(conn.client().clone());
    // Ids unique across rounds: a repeated Nats-Msg-Id is a duplicate the server does not store.
    let round = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let start = cpu::Mark::now();
    let mut acks = futures::stream::FuturesOrdered::new();
    for i in 0..n {
        let body = raw_body(i, customer)?;
        if acks.len() >= IN_FLIGHT
            && let Some(r) = acks.next().await
        {
            let _: async_nats::jetstream::publish::PublishAck = r?;
        }
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(format!("raw-{round}-{i}"))
            .header("Content-Type", "application/cloudevents+json");
        acks.push_back(
            js.send_publish("events.acme.bench.tick", msg)
                .await?
                .into_future(),
        );
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    Ok(start.timed(n))
}

async fn fill(conn: &Connection, n: usize) -> BoxResult<()> {
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many((0..n as u64).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    Ok(())
}

#[derive(Clone)]
struct Counter {
    handled: Arc<AtomicU64>,
    /// When the first event was handled.
    first: Arc<std::sync::OnceLock<Instant>>,
    latencies: Arc<std::sync::Mutex<Vec<f64>>>,
    origin: Instant,
}

fn counter() -> Counter {
    Counter {
        handled: Arc::new(AtomicU64::new(0)),
        first: Arc::default(),
        latencies: Arc::new(std::sync::Mutex::new(Vec::new())),
        origin: Instant::now(),
    }
}

async fn count(_e: Tick, ctx: Context<Counter>) -> HandlerResult {
    if ctx.state().handled.fetch_add(1, Ordering::Relaxed) == 0 {
        let _ = ctx.state().first.set(Instant::now());
    }
    Ok(())
}

async fn measure_latency(e: Tick, ctx: Context<Counter>) -> HandlerResult {
    let s = ctx.state();
    let now_us = s.origin.elapsed().as_micros() as u64;
    let ms = now_us.saturating_sub(e.sent_us) as f64 / 1000.0;
    if let Ok(mut l) = s.latencies.lock() {
        l.push(ms);
    }
    s.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn wait_until(c: &AtomicU64, n: u64, limit: Duration) -> BoxResult<()> {
    let deadline = Instant::now() + limit;
    while c.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            let got = c.load(Ordering::Relaxed);
            return Err(format!("only {got} of {n} events within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

async fn conveyor_consume(conn: &Connection) -> BoxResult<cpu::Timed> {
    observed_consume(conn, None, false).await
}

/// Consume throughput of a worker, with metrics in `telemetry` (if any) and run history on or
/// off.
async fn observed_consume(
    conn: &Connection,
    telemetry: Option<&Telemetry>,
    history: bool,
) -> BoxResult<cpu::Timed> {
    let n = consume_events();
    fill(conn, n).await?;
    let c = counter();
    let start = cpu::Mark::now();
    let mut builder = Worker::builder(conn, c.clone()).backstop(false).group(
        Group::new("bench")
            .concurrency(CONCURRENCY)
            .max_ack_pending(4096)
            .history(history)
            .handle(count),
    );
    if let Some(t) = telemetry {
        builder = builder.telemetry(t);
    }
    let worker = builder.build()?.spawn();
    wait_until(&c.handled, n as u64, Duration::from_secs(600)).await?;
    let timed = start
        .timed(n as u64)
        .with_first(start.at(), c.first.get().copied());
    worker.shutdown().await;
    Ok(timed)
}

/// The raw side's durable pull consumer on `EVENTS`: explicit acks, 4 096 unacked at most.
async fn raw_consumer(
    conn: &Connection,
) -> BoxResult<async_nats::jetstream::consumer::PullConsumer> {
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await?;
    Ok(stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await?)
}

async fn raw_consume(conn: &Connection) -> BoxResult<cpu::Timed> {
    let events = consume_events();
    fill(conn, events).await?;
    let start = cpu::Mark::now();
    let mut messages = raw_consumer(conn).await?.messages().await?;
    let mut n = 0;
    let mut first = None;
    while n < events {
        match messages.next().await {
            Some(Ok(m)) => {
                m.ack().await?;
                first.get_or_insert_with(Instant::now);
                n += 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err("raw stream ended".into()),
        }
    }
    Ok(start.timed(events as u64).with_first(start.at(), first))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn publish(conn: &Connection) -> BoxResult<()> {
    publish_sized(conn, "publish", PUBLISH_N, "customer-0001").await
}

/// `-- publish16k`: the publish comparison with 16 KB of data per event (a 16 000-character
/// field), 5 000 events a round.
async fn publish_16k(conn: &Connection) -> BoxResult<()> {
    publish_sized(conn, "publish16k", 5_000, &"c".repeat(16_000)).await
}

/// Alternating rounds of `n` publishes of ticks with `customer` for both sides.
async fn publish_sized(conn: &Connection, bench: &str, n: usize, customer: &str) -> BoxResult<()> {
    let (mut conveyor, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        reset(conn).await?;
        conveyor.push(conveyor_publish(conn, n as u64, customer).await?);
        reset(conn).await?;
        raw.push(raw_publish_sized(conn, n as u64, customer).await?);
    }
    println!("{}", compared(bench, n, &conveyor, &raw));
    Ok(())
}

async fn consume(conn: &Connection) -> BoxResult<()> {
    let (conveyor, raw) = alternate(conn, rounds(ROUNDS), raw_consume, conveyor_consume).await?;
    println!("{}", compared("consume", consume_events(), &conveyor, &raw));
    Ok(())
}

/// One line comparing Conveyor's runs with raw async-nats': median rate, and CPU per event of
/// the client and the server.
fn compared(
    bench: &str,
    events: usize,
    conveyor: &[cpu::Timed],
    raw: &[cpu::Timed],
) -> serde_json::Value {
    let rate = |runs: &[cpu::Timed]| median(runs.iter().map(|r| r.per_s).collect());
    let (c, r) = (rate(conveyor), rate(raw));
    let (cc, cs) = cpu::per_event_us(conveyor);
    let (rc, rs) = cpu::per_event_us(raw);
    json!({"bench": bench, "events": events, "in_flight": IN_FLIGHT, "concurrency": CONCURRENCY,
           "conveyor_per_s": c.round(), "raw_per_s": r.round(), "ratio": round2(c / r),
           "conveyor_client_cpu_us": cc, "raw_client_cpu_us": rc,
           "client_cpu_ratio": round2(cc / rc),
           "conveyor_server_cpu_us": cs, "raw_server_cpu_us": rs,
           "conveyor_first_ms": first_ms(conveyor), "raw_first_ms": first_ms(raw)})
}

/// Median time from the start of a window to its first event handled, in milliseconds (null
/// when not measured).
fn first_ms(runs: &[cpu::Timed]) -> Option<f64> {
    let firsts: Vec<f64> = runs
        .iter()
        .map(|r| r.first_s)
        .filter(|f| !f.is_nan())
        .collect();
    (!firsts.is_empty()).then(|| round2(median(firsts) * 1e3))
}

async fn core(conn: &Connection) -> BoxResult<()> {
    publish(conn).await?;
    consume(conn).await?;
    latency::latency(conn).await?;
    println!(
        "{}",
        json!({"bench": "memory", "peak_rss_mb": peak_rss_mb().map(round2)})
    );
    Ok(())
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "core".into());
    if which == bulk::CHILD {
        return bulk::child().await;
    }
    let server = NatsServer::start()?;
    if let Some(pid) = server.pid() {
        let _ = cpu::SERVER_PID.set(pid);
    }
    let conn = Connection::connect(&server.url())
        .await?
        .with_timeout(Duration::from_secs(30));
    provision(&conn, &Topology::default()).await?;
    match which.as_str() {
        "core" => core(&conn).await,
        "publish" => publish(&conn).await,
        "publish16k" => publish_16k(&conn).await,
        "consume" => consume(&conn).await,
        "latency" => latency::latency(&conn).await,
        "scheduler" => scheduler::scheduler_bench(&server.url()).await,
        "observability" => observability::observability(&conn).await,
        "priority" => priority::priority(&conn).await,
        "fairness" => fairness::fairness(&conn).await,
        "flow" => flow::flow(&server.url(), &conn).await,
        "limits" => limits::limits(&server.url(), &conn).await,
        "bulk" => bulk::bulk(&server.url()).await,
        "awaiting" => awaiting::awaiting(&conn).await,
        "layout" => layout::layout(&conn).await,
        "gateway" => gateway::gateway(&conn).await,
        other => Err(format!(
            "unknown benchmark {other:?}; available: core (publish, consume, latency), publish, consume, latency, scheduler, observability, priority, fairness, flow, limits, bulk, awaiting, gateway"
        )
        .into()),
    }
}

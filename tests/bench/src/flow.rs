//! `flow`: flow control in time. How late delayed events run (Conveyor's publisher and worker
//! next to raw async-nats schedule messages and a raw pull consumer), and the throughput of a
//! group while many events wait for a retry in an hour: as delayed copies, as delayed Naks, and
//! with no such events; a batch handler's throughput next to one run per event; and the accuracy
//! of a cluster-wide rate limit over a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use chrono::Utc;
use conveyor::topology::EVENTS_STREAM;
use conveyor::{
    Connection, Context, Event, EventOptions, Group, HandlerError, HandlerOptions, HandlerResult,
    Publisher, RetryPolicy, Worker,
};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{BoxResult, IN_FLIGHT, Tick, median, percentile, reset, round2, tick};

/// Delayed events per lateness round.
const DELAYED: u64 = 1000;
/// Their delays are spread over 1 to 10 s.
const MAX_DELAY_MS: u64 = 10_000;
/// Events waiting for a retry in an hour.
const WAITING: u64 = 1000;
/// Fresh events handled next to them.
const FRESH: u64 = 10_000;
/// The group's limit of unacknowledged deliveries per partition consumer.
const MAX_ACK_PENDING: i64 = 1024;
const CONCURRENCY: usize = 64;
/// Each fresh run's work.
const WORK: Duration = Duration::from_millis(2);
const ROUNDS: usize = 3;
/// The rate limit measured: runs a minute for the whole group.
const RATE_LIMIT: u32 = 100;
const RATE_WORKERS: usize = 4;

/// A delayed event carrying its due time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Due {
    seq: u64,
    due_ms: i64,
}

impl Event for Due {
    const TYPE: &'static str = "bench.due";
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn delay_of(seq: u64) -> u64 {
    1000 + (seq * 7919) % (MAX_DELAY_MS - 1000)
}

type Lateness = Arc<std::sync::Mutex<Vec<f64>>>;

async fn wait_len(l: &Lateness, n: usize, what: &str) -> BoxResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while l.lock().map(|l| l.len()).unwrap_or(0) < n {
        if Instant::now() > deadline {
            return Err(format!("{what}: not every delayed event ran").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn p50_p99(l: &Lateness) -> (f64, f64) {
    let mut v = l.lock().map(|l| l.clone()).unwrap_or_default();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// Conveyor: lateness (ms) of `DELAYED` delayed events, handler run time minus due time.
async fn conveyor_lateness(conn: &Connection) -> BoxResult<(f64, f64)> {
    reset(conn).await?;
    let late: Lateness = Arc::default();
    let worker = Worker::builder(conn, late.clone())
        .backstop(false)
        .group(Group::new("delays").concurrency(256).handle(
            |e: Due, ctx: Context<Lateness>| async move {
                if let Ok(mut l) = ctx.state().lock() {
                    l.push((now_ms() - e.due_ms) as f64);
                }
                Ok::<(), HandlerError>(())
            },
        ))
        .build()?
        .spawn();
    let start = now_ms();
    let results = Publisher::new(conn)
        .with_max_in_flight(IN_FLIGHT)
        .publish_many_with((0..DELAYED).map(|seq| {
            let delay = delay_of(seq);
            let due = Due {
                seq,
                due_ms: start + delay as i64,
            };
            let at = chrono::DateTime::from_timestamp_millis(due.due_ms).unwrap_or_default();
            ("acme", due, EventOptions::default().deliver_at(at))
        }))
        .await;
    results.into_result()?;
    wait_len(&late, DELAYED as usize, "conveyor").await?;
    worker.shutdown().await;
    Ok(p50_p99(&late))
}

/// Raw async-nats: the same schedules as raw messages, read by a raw pull consumer.
async fn raw_lateness(conn: &Connection) -> BoxResult<(f64, f64)> {
    reset(conn).await?;
    let js = conn.jetstream();
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw_delays".into()),
            ack_policy: AckPolicy::Explicit,
            filter_subject: conveyor::partition::stored_filter(Some("acme"), Some("bench.raw")),
            ..Default::default()
        })
        .await?;
    let late: Lateness = Arc::default();
    let reader_late = late.clone();
    let reader = tokio::spawn(async move {
        let mut messages = consumer.messages().await?;
        while let Some(m) = messages.next().await {
            let m = m?;
            let due = std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            if let Ok(mut l) = reader_late.lock() {
                l.push((now_ms() - due) as f64);
            }
            let _ = m.ack().await;
        }
        Ok::<(), crate::BoxError>(())
    });
    let start = now_ms();
    let mut acks = futures::stream::FuturesOrdered::new();
    for seq in 0..DELAYED {
        let due_ms = start + delay_of(seq) as i64;
        let at = chrono::DateTime::from_timestamp_millis(due_ms).unwrap_or_default();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Schedule", conveyor::delay::schedule_at(at).as_str());
        headers.insert("Nats-Schedule-Target", "events.acme.bench.raw");
        headers.insert("Nats-TTL", "never");
        if acks.len() >= IN_FLIGHT
            && let Some(r) = acks.next().await
        {
            let _: async_nats::jetstream::publish::PublishAck = r?;
        }
        let ack = js
            .publish_with_headers(
                format!("delayed.acme.e.raw-{seq}"),
                headers,
                due_ms.to_string().into(),
            )
            .await?;
        acks.push_back(ack.into_future());
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    wait_len(&late, DELAYED as usize, "raw").await?;
    reader.abort();
    Ok(p50_p99(&late))
}

/// Events/s of `FRESH` events while `WAITING` events of the same tenant wait for a retry in an
/// hour: `copies` true waits as delayed copies, false as delayed Naks; `WAITING` 0 for none.
async fn throughput_next_to_retries(
    conn: &Connection,
    waiting: u64,
    copies: bool,
) -> BoxResult<f64> {
    reset(conn).await?;
    let fresh = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let state = (fresh.clone(), failed.clone());
    let worker = Worker::builder(conn, state)
        .backstop(false)
        .group(
            Group::new("partner")
                .concurrency(CONCURRENCY)
                .max_ack_pending(MAX_ACK_PENDING)
                .delayed_retry_after(if copies {
                    Duration::from_secs(10)
                } else {
                    Duration::MAX
                })
                .handler_defaults(
                    HandlerOptions::default().retry(
                        RetryPolicy::exponential(5, Duration::from_secs(1))
                            .with_max_delay(Duration::from_secs(7200)),
                    ),
                )
                .handle(
                    move |e: Tick, ctx: Context<(Arc<AtomicU64>, Arc<AtomicU64>)>| async move {
                        if e.seq < waiting {
                            ctx.state().1.fetch_add(1, Ordering::Relaxed);
                            return Err(HandlerError::retry_after(
                                Duration::from_secs(3600),
                                "partner API down",
                            ));
                        }
                        tokio::time::sleep(WORK).await;
                        ctx.state().0.fetch_add(1, Ordering::Relaxed);
                        HandlerResult::Ok(())
                    },
                ),
        )
        .build()?
        .spawn();
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many((0..waiting).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while failed.load(Ordering::Relaxed) < waiting {
        if Instant::now() > deadline {
            return Err("the failing events did not all run".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the last retries settle (copies acked, or Naks sent).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    publisher
        .publish_many((waiting..waiting + FRESH).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while fresh.load(Ordering::Relaxed) < FRESH {
        if Instant::now() > deadline {
            return Err("the fresh events did not all run".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = FRESH as f64 / start.elapsed().as_secs_f64();
    worker.shutdown().await;
    Ok(rate)
}

/// Rate-limit accuracy: a limit of `RATE_LIMIT` a minute for the whole group, `RATE_WORKERS`
/// worker processes (each its own connection), a backlog of three minutes' worth; returns the
/// runs in the first minute after the first run and the most runs within any 300 ms (half the
/// slot interval: more than one there would be a burst above the burst size of 1).
async fn rate_accuracy(url: &str, conn: &Connection) -> BoxResult<(usize, usize)> {
    reset(conn).await?;
    let runs: Lateness = Arc::default();
    let origin = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..RATE_WORKERS {
        let c = Connection::connect(url).await?;
        workers.push(
            Worker::builder(&c, (runs.clone(), origin))
                .backstop(false)
                .group(
                    Group::new("limited")
                        .rate_limit(conveyor::rate::RateLimit::per_group(
                            RATE_LIMIT,
                            Duration::from_secs(60),
                        ))
                        .handle(|_: Tick, ctx: Context<(Lateness, Instant)>| async move {
                            let (runs, origin) = ctx.state();
                            if let Ok(mut l) = runs.lock() {
                                l.push(origin.elapsed().as_secs_f64() * 1000.0);
                            }
                            HandlerResult::Ok(())
                        }),
                )
                .build()?
                .spawn(),
        );
    }
    Publisher::new(conn)
        .with_max_in_flight(IN_FLIGHT)
        .publish_many((0..u64::from(RATE_LIMIT) * 3).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    tokio::time::sleep(Duration::from_secs(62)).await;
    for w in workers {
        w.shutdown().await;
    }
    let mut at = runs.lock().map(|l| l.clone()).unwrap_or_default();
    at.sort_by(f64::total_cmp);
    let first = at.first().copied().unwrap_or(0.0);
    let in_minute = at.iter().filter(|t| **t < first + 60_000.0).count();
    let burst = (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + 300.0).count())
        .max()
        .unwrap_or(0);
    Ok((in_minute, burst))
}

/// Events per batch throughput round, and the cost of one call to the service a handler uses
/// (an email API, say): the same for one event as for a batch, with at most `SERVICE_CALLS`
/// calls at once (the service's connection limit).
const BATCH_EVENTS: u64 = 20_000;
const CALL: Duration = Duration::from_millis(5);
const SERVICE_CALLS: usize = 16;

/// The handled-event count and the service's call limit.
#[derive(Clone)]
struct Service {
    done: Arc<AtomicU64>,
    calls: Arc<tokio::sync::Semaphore>,
}

impl Service {
    async fn call(&self, events: u64) {
        if let Ok(_permit) = self.calls.acquire().await {
            tokio::time::sleep(CALL).await;
        }
        self.done.fetch_add(events, Ordering::Relaxed);
    }
}

/// Events/s of `BATCH_EVENTS` queued events handled one call per event (`batch` 0) or one call
/// per batch of up to `batch`, with 256 handler slots.
async fn batch_throughput(conn: &Connection, batch: usize) -> BoxResult<f64> {
    reset(conn).await?;
    Publisher::new(conn)
        .with_max_in_flight(IN_FLIGHT)
        .publish_many((0..BATCH_EVENTS).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    let service = Service {
        done: Arc::new(AtomicU64::new(0)),
        calls: Arc::new(tokio::sync::Semaphore::new(SERVICE_CALLS)),
    };
    let done = service.done.clone();
    let group = Group::new("digests").concurrency(256);
    let group = if batch == 0 {
        group.handle(|_: Tick, ctx: Context<Service>| async move {
            ctx.state().call(1).await;
            HandlerResult::Ok(())
        })
    } else {
        group.handle_batch(
            |events: Vec<Tick>, ctx: conveyor::batch::BatchContext<Service>| async move {
                if let Some(service) = ctx.state() {
                    service.call(events.len() as u64).await;
                }
                HandlerResult::Ok(())
            },
            conveyor::batch::BatchOptions::new(batch, Duration::from_millis(20)),
        )
    };
    let start = Instant::now();
    let worker = Worker::builder(conn, service)
        .backstop(false)
        .group(group)
        .build()?
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.load(Ordering::Relaxed) < BATCH_EVENTS {
        if Instant::now() > deadline {
            return Err("the batch round did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = BATCH_EVENTS as f64 / start.elapsed().as_secs_f64();
    worker.shutdown().await;
    Ok(rate)
}

pub(crate) async fn flow(url: &str, conn: &Connection) -> BoxResult<()> {
    let (mut c50, mut c99, mut r50, mut r99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (p50, p99) = conveyor_lateness(conn).await?;
        c50.push(p50);
        c99.push(p99);
        let (p50, p99) = raw_lateness(conn).await?;
        r50.push(p50);
        r99.push(p99);
    }
    println!(
        "{}",
        json!({"bench": "flow_delay", "events": DELAYED, "delays_s": "1-10", "rounds": ROUNDS,
               "conveyor_late_p50_ms": round2(median(c50)), "conveyor_late_p99_ms": round2(median(c99)),
               "raw_late_p50_ms": round2(median(r50)), "raw_late_p99_ms": round2(median(r99))})
    );
    let (mut none, mut copies, mut naks) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        none.push(throughput_next_to_retries(conn, 0, true).await?);
        copies.push(throughput_next_to_retries(conn, WAITING, true).await?);
        naks.push(throughput_next_to_retries(conn, WAITING, false).await?);
    }
    let none = median(none);
    println!(
        "{}",
        json!({"bench": "flow_long_retries", "waiting": WAITING, "fresh": FRESH,
               "concurrency": CONCURRENCY, "max_ack_pending": MAX_ACK_PENDING, "work_ms": 2,
               "rounds": ROUNDS,
               "none_per_s": none.round(),
               "delayed_copies_per_s": median(copies.clone()).round(),
               "delayed_copies_vs_none": round2(median(copies) / none),
               "delayed_naks_per_s": median(naks.clone()).round(),
               "delayed_naks_vs_none": round2(median(naks) / none)})
    );
    let (mut single, mut batched) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        single.push(batch_throughput(conn, 0).await?);
        batched.push(batch_throughput(conn, 100).await?);
    }
    let single = median(single);
    let batched = median(batched);
    println!(
        "{}",
        json!({"bench": "flow_batch", "events": BATCH_EVENTS, "call_ms": 5,
               "service_calls_at_once": SERVICE_CALLS, "concurrency": 256,
               "batch_max_size": 100, "rounds": ROUNDS,
               "one_at_a_time_per_s": single.round(), "batched_per_s": batched.round(),
               "batched_vs_one_at_a_time": round2(batched / single)})
    );
    let (in_minute, burst) = rate_accuracy(url, conn).await?;
    println!(
        "{}",
        json!({"bench": "flow_rate_limit", "limit_per_min": RATE_LIMIT, "burst": 1,
               "workers": RATE_WORKERS, "runs_first_minute": in_minute,
               "vs_limit": round2(in_minute as f64 / f64::from(RATE_LIMIT)),
               "max_runs_in_300ms": burst})
    );
    Ok(())
}

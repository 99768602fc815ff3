//! `-- awaiting`: a group whose handlers await (5 ms, as a call to another service would) with
//! 256 slots, against a raw pull consumer running each message as its own task under a
//! semaphore of 256: throughput against the ideal (256 / 5 ms), the share of slots busy while
//! there is a backlog (sampled every millisecond), and CPU per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conveyor::{Connection, Context, Group, HandlerResult, Worker};
use futures::StreamExt;
use serde_json::json;

use super::{BoxResult, Tick, cpu, fill, median, raw_consumer, round2};

const EVENTS: usize = 20_000;
const SLOTS: usize = 256;
const WORK: Duration = Duration::from_millis(5);
const ROUNDS: usize = 3;

/// Handlers running now and handled so far.
#[derive(Clone, Default)]
struct Busy {
    running: Arc<AtomicU64>,
    handled: Arc<AtomicU64>,
}

impl Busy {
    async fn work(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(WORK).await;
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Samples the running handlers every millisecond until `EVENTS` are handled; returns the
    /// mean share of `SLOTS` busy over the samples taken while at least a tenth were left.
    async fn sample_until_done(&self) -> BoxResult<f64> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut sum, mut samples) = (0.0, 0u64);
        loop {
            let handled = self.handled.load(Ordering::Relaxed);
            if handled >= EVENTS as u64 {
                return Ok(sum / samples.max(1) as f64);
            }
            if Instant::now() > deadline {
                return Err(format!("only {handled} of {EVENTS} handled").into());
            }
            // Past the first start-up and before the tail, where fewer events are left than slots.
            if handled > 0 && (EVENTS as u64 - handled) > (EVENTS / 10) as u64 {
                sum += self.running.load(Ordering::Relaxed) as f64 / SLOTS as f64;
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn handle(_e: Tick, ctx: Context<Busy>) -> HandlerResult {
    ctx.state().work().await;
    Ok(())
}

async fn conveyor_run(conn: &Connection) -> BoxResult<(cpu::Timed, f64)> {
    fill(conn, EVENTS).await?;
    let busy = Busy::default();
    let start = cpu::Mark::now();
    let worker = Worker::builder(conn, busy.clone())
        .backstop(false)
        .group(
            Group::new("awaiting")
                .concurrency(SLOTS)
                .max_ack_pending(4096)
                .handle(handle),
        )
        .build()?
        .spawn();
    let share = busy.sample_until_done().await?;
    let timed = start.timed(EVENTS as u64);
    worker.shutdown().await;
    Ok((timed, share))
}

async fn raw_run(conn: &Connection) -> BoxResult<(cpu::Timed, f64)> {
    fill(conn, EVENTS).await?;
    let busy = Busy::default();
    let start = cpu::Mark::now();
    let consumer = raw_consumer(conn).await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(SLOTS));
    let pulling = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await?;
            while let Some(m) = messages.next().await {
                let m = m?;
                let permit = slots.clone().acquire_owned().await?;
                let busy = busy.clone();
                tokio::spawn(async move {
                    busy.work().await;
                    let _ = m.ack().await;
                    drop(permit);
                });
            }
            Ok::<(), super::BoxError>(())
        })
    };
    let share = busy.sample_until_done().await?;
    let timed = start.timed(EVENTS as u64);
    pulling.abort();
    Ok((timed, share))
}

pub(super) async fn awaiting(conn: &Connection) -> BoxResult<()> {
    let (conveyor, raw) = super::alternate(conn, ROUNDS, raw_run, conveyor_run).await?;
    let ideal = SLOTS as f64 / WORK.as_secs_f64();
    let summary = |runs: &[(cpu::Timed, f64)]| {
        let timed: Vec<cpu::Timed> = runs.iter().map(|(t, _)| *t).collect();
        let rate = median(timed.iter().map(|t| t.per_s).collect());
        let share = median(runs.iter().map(|(_, s)| *s).collect());
        let (client, server) = cpu::per_event_us(&timed);
        (rate, share, client, server)
    };
    let (c_rate, c_busy, c_client, c_server) = summary(&conveyor);
    let (r_rate, r_busy, r_client, r_server) = summary(&raw);
    println!(
        "{}",
        json!({"bench": "awaiting", "events": EVENTS, "slots": SLOTS, "work_ms": WORK.as_millis() as u64,
               "conveyor_per_s": c_rate.round(), "raw_per_s": r_rate.round(),
               "conveyor_vs_ideal": round2(c_rate / ideal), "raw_vs_ideal": round2(r_rate / ideal),
               "conveyor_busy_slots": round2(c_busy), "raw_busy_slots": round2(r_busy),
               "conveyor_client_cpu_us": c_client, "raw_client_cpu_us": r_client,
               "client_cpu_ratio": round2(c_client / r_client),
               "conveyor_server_cpu_us": c_server, "raw_server_cpu_us": r_server})
    );
    Ok(())
}

//! `limits`: a cluster-wide concurrency limit of 2 runs per tenant over 4 worker processes:
//! the most concurrent runs of one tenant the handlers saw, how long a waiting event takes to
//! start after a run of its tenant ends, and the throughput of the other tenants while one
//! tenant has a backlog.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::concurrency::ConcurrencyLimit;
use conveyor::{Connection, Context, Group, HandlerResult, Publisher, Worker};
use serde_json::json;

use crate::{BoxResult, IN_FLIGHT, Tick, percentile, reset, round2, tick};

const LIMIT: u32 = 2;
const WORKERS: usize = 4;
const WORK: Duration = Duration::from_millis(20);
/// The tenant with a backlog, and its events.
const BUSY: &str = "acme";
const BUSY_EVENTS: u64 = 100;
/// The other tenants and their events each.
const OTHERS: usize = 8;
const OTHER_EVENTS: u64 = 25;

/// Per tenant: (start, end) of each run, in ms since the origin.
type Runs = HashMap<String, Vec<(f64, f64)>>;

#[derive(Clone, Default)]
struct Seen {
    running: Arc<Mutex<HashMap<String, u32>>>,
    most: Arc<Mutex<u32>>,
    runs: Arc<Mutex<Runs>>,
    origin: Option<Instant>,
}

impl Seen {
    fn ms(&self) -> f64 {
        self.origin
            .map_or(0.0, |o| o.elapsed().as_secs_f64() * 1000.0)
    }
}

async fn run(_: Tick, ctx: Context<Seen>) -> HandlerResult {
    let seen = ctx.state();
    let tenant = ctx.tenant().to_string();
    if let Ok(mut running) = seen.running.lock() {
        let n = running.entry(tenant.clone()).or_default();
        *n += 1;
        if let Ok(mut most) = seen.most.lock() {
            *most = (*most).max(*n);
        }
    }
    let start = seen.ms();
    tokio::time::sleep(WORK).await;
    let end = seen.ms();
    if let Ok(mut running) = seen.running.lock()
        && let Some(n) = running.get_mut(&tenant)
    {
        *n -= 1;
    }
    if let Ok(mut runs) = seen.runs.lock() {
        runs.entry(tenant).or_default().push((start, end));
    }
    Ok(())
}

pub(crate) async fn limits(url: &str, conn: &Connection) -> BoxResult<()> {
    reset(conn).await?;
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many((0..BUSY_EVENTS).map(|i| (BUSY, tick(i, 0))))
        .await
        .into_result()?;
    let others: Vec<String> = (0..OTHERS).map(|n| format!("tenant-{n}")).collect();
    publisher
        .publish_many(
            (0..OTHER_EVENTS).flat_map(|i| others.iter().map(move |t| (t.as_str(), tick(i, 0)))),
        )
        .await
        .into_result()?;
    let seen = Seen {
        origin: Some(Instant::now()),
        ..Seen::default()
    };
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let c = Connection::connect(url).await?;
        workers.push(
            Worker::builder(&c, seen.clone())
                .backstop(false)
                .group(
                    Group::new("limited")
                        .concurrency(32)
                        .concurrency_limit(ConcurrencyLimit::per_tenant(LIMIT))
                        .handle(run),
                )
                .build()?
                .spawn(),
        );
    }
    let total = |seen: &Seen| -> u64 {
        seen.runs
            .lock()
            .map(|r| r.values().map(|v| v.len() as u64).sum())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while total(&seen) < BUSY_EVENTS + OTHER_EVENTS * OTHERS as u64 {
        if Instant::now() > deadline {
            return Err("the limited events did not all run".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in workers {
        w.shutdown().await;
    }
    let runs = seen.runs.lock().map(|r| r.clone()).unwrap_or_default();
    let last_end = |tenants: &mut dyn Iterator<Item = &String>| -> f64 {
        tenants
            .filter_map(|t| runs.get(t))
            .flat_map(|v| v.iter().map(|r| r.1))
            .fold(0.0, f64::max)
    };
    let others_done = last_end(&mut others.iter());
    let busy_done = last_end(&mut std::iter::once(&BUSY.to_owned()));
    // Hand-over: from the end of a run of the busy tenant to the start of its next run, when
    // its other slot was busy meanwhile (so the next waited for this one's room).
    let mut busy = runs.get(BUSY).cloned().unwrap_or_default();
    busy.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut handover: Vec<f64> = Vec::new();
    for run in &busy {
        if let Some(next) = busy
            .iter()
            .map(|r| r.0)
            .filter(|s| *s >= run.1)
            .reduce(f64::min)
        {
            handover.push(next - run.1);
        }
    }
    handover.sort_by(f64::total_cmp);
    let most = seen.most.lock().map(|m| *m).unwrap_or(0);
    println!(
        "{}",
        json!({"bench": "limits_concurrency", "limit_per_tenant": LIMIT, "workers": WORKERS,
               "handler_ms": WORK.as_millis() as u64,
               "busy_tenant_events": BUSY_EVENTS, "other_tenants": OTHERS,
               "other_tenant_events": OTHER_EVENTS,
               "most_concurrent_runs_of_a_tenant": most,
               "others_per_s": (OTHER_EVENTS as f64 * OTHERS as f64 / (others_done / 1000.0)).round(),
               "busy_tenant_per_s": round2(BUSY_EVENTS as f64 / (busy_done / 1000.0)),
               "handover_p50_ms": round2(percentile(&handover, 0.5)),
               "handover_p99_ms": round2(percentile(&handover, 0.99))})
    );
    Ok(())
}

//! `-- priority`: an urgent event on its own lane against a backlog on the default lane.

use super::*;

/// Records when each event was handled: normal ones counted, the urgent one timed.
#[derive(Clone)]
struct Lanes {
    normal_done: Arc<AtomicU64>,
    urgent_done: Arc<std::sync::Mutex<Option<(Instant, u64)>>>,
    work: Duration,
}

async fn slow_work(e: Tick, ctx: Context<Lanes>) -> HandlerResult {
    let s = ctx.state();
    tokio::time::sleep(s.work).await;
    if e.customer == "urgent" {
        if let Ok(mut u) = s.urgent_done.lock() {
            *u = Some((Instant::now(), s.normal_done.load(Ordering::Relaxed)));
        }
    } else {
        s.normal_done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Latency of one urgent event published behind a backlog, on the `high` lane or on the
/// default lane, and how many backlog events were handled before it.
async fn urgent_latency(conn: &Connection, lane: bool) -> BoxResult<(f64, u64)> {
    const BACKLOG: u64 = 400;
    let state = Lanes {
        normal_done: Arc::new(AtomicU64::new(0)),
        urgent_done: Arc::new(std::sync::Mutex::new(None)),
        work: Duration::from_millis(10),
    };
    let publisher = Publisher::new(conn).with_max_in_flight(IN_FLIGHT);
    publisher
        .publish_many((0..BACKLOG).map(|i| ("acme", tick(i, 0))))
        .await
        .into_result()?;
    let worker = Worker::builder(conn, state.clone())
        .backstop(false)
        .group(Group::new("work").concurrency(8).handle(slow_work))
        .group(
            Group::new("work-high")
                .lane("high")
                .concurrency(2)
                .handle(slow_work),
        )
        .build()?
        .spawn();
    // Let the backlog start draining, then send the urgent event.
    wait_until(&state.normal_done, 20, Duration::from_secs(30)).await?;
    let mut urgent = tick(BACKLOG, 0);
    urgent.customer = "urgent".into();
    let options = if lane {
        conveyor::EventOptions::default().lane("high")
    } else {
        conveyor::EventOptions::default()
    };
    let sent = Instant::now();
    publisher.publish_with("acme", &urgent, options).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (done, normal_before) = loop {
        if let Some(d) = state.urgent_done.lock().ok().and_then(|u| *u) {
            break d;
        }
        if Instant::now() > deadline {
            return Err("the urgent event was not handled within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    worker.shutdown().await;
    Ok(((done - sent).as_secs_f64() * 1000.0, normal_before))
}

pub(super) async fn priority(conn: &Connection) -> BoxResult<()> {
    let (mut lane, mut same, mut lane_before, mut same_before) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        reset(conn).await?;
        let (ms, before) = urgent_latency(conn, true).await?;
        lane.push(ms);
        lane_before.push(before as f64);
        reset(conn).await?;
        let (ms, before) = urgent_latency(conn, false).await?;
        same.push(ms);
        same_before.push(before as f64);
    }
    println!(
        "{}",
        json!({"bench": "priority", "backlog": 400, "handler_ms": 10, "concurrency": 8,
               "rounds": 3,
               "high_lane_latency_ms": round2(median(lane)),
               "same_lane_latency_ms": round2(median(same)),
               "backlog_handled_before_high_lane": median(lane_before),
               "backlog_handled_before_same_lane": median(same_before)})
    );
    Ok(())
}

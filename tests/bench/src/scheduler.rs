//! `-- scheduler`: leader failover after a crash, and tick lateness.

use super::*;

/// A scheduler in a thread of its own with its own runtime, so dropping the runtime ends it
/// abruptly, like a killed process: no lease release, connection gone.
struct SchedulerNode {
    leadership: std::sync::Arc<conveyor_scheduler::lease::Leadership>,
    stats: std::sync::Arc<conveyor_scheduler::Stats>,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchedulerNode {
    fn start(
        url: &str,
        schedules: Vec<conveyor_scheduler::Schedule>,
        node: &str,
    ) -> BoxResult<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let url = url.to_owned();
        let node = node.to_owned();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(conn) = Connection::connect(&url).await else {
                    return;
                };
                let options = conveyor_scheduler::Options {
                    node_id: node,
                    ..Default::default()
                };
                let Ok(s) = conveyor_scheduler::Scheduler::new(&conn, &schedules, options) else {
                    return;
                };
                let _ = ready_tx.send((s.leadership(), s.stats()));
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    let _ = kill_rx.recv();
                    let _ = tx.send(());
                });
                tokio::select! {
                    _ = s.run_until(futures::future::pending()) => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime here cancels every task mid-flight.
        });
        let (leadership, stats) = ready_rx.recv_timeout(Duration::from_secs(10))?;
        Ok(Self {
            leadership,
            stats,
            kill: Some(kill_tx),
            thread: Some(thread),
        })
    }

    fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn wait_for(cond: impl Fn() -> bool, limit: Duration) -> BoxResult<Duration> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err("timed out".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

/// Failover after a crashed leader (5 rounds) and tick lateness of an every-second schedule
/// with 10 tenants over 20 s.
pub(super) async fn scheduler_bench(url: &str) -> BoxResult<()> {
    use conveyor_scheduler::{CatchUp, Schedule};
    let tenants: Vec<String> = (0..10).map(|i| format!("tenant-{i}")).collect();
    let schedules = vec![
        Schedule::new("bench-pulse", "* * * * * *", "health.check")
            .tenants(tenants.clone())
            .catch_up(CatchUp::All),
    ];
    let mut failovers = Vec::new();
    let mut leader = SchedulerNode::start(url, schedules.clone(), "bench-a")?;
    wait_for(|| leader.leadership.is_leader(), Duration::from_secs(10)).await?;
    // Steady state: lateness measured on the leader over 20 s.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut lateness = leader.stats.lateness_ms();
    for round in 0..5 {
        let follower = SchedulerNode::start(url, schedules.clone(), &format!("bench-{round}"))?;
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        leader.kill();
        let took = wait_for(|| follower.leadership.is_leader(), Duration::from_secs(10)).await?;
        failovers.push(took.as_secs_f64() * 1000.0);
        leader = follower;
    }
    leader.kill();
    lateness.sort_by(f64::total_cmp);
    failovers.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"bench": "scheduler", "lease_ttl_ms": 2000, "rounds": failovers.len(),
               "failover_ms": round2(median(failovers.clone())),
               "failover_max_ms": round2(failovers.last().copied().unwrap_or(f64::NAN)),
               "tick_events": lateness.len(),
               "tick_late_p50_ms": round2(percentile(&lateness, 0.5)),
               "tick_late_p99_ms": round2(percentile(&lateness, 0.99))})
    );
    Ok(())
}

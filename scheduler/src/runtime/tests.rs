//! The leader's firing loop against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use conveyor::testing::NatsServer;

/// A leader whose renewal comes late (it stops acting for a while) but succeeds keeps its
/// term: nothing is caught up, so under `catch_up = "skip"` no tick is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_but_successful_renewal_skips_no_tick() {
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    conveyor::topology::provision(&conn, &conveyor::topology::Topology::default())
        .await
        .unwrap();
    let js = conn.jetstream();
    let state = bucket(js, STATE_BUCKET, "state").await.unwrap();
    let leadership = Arc::new(Leadership::new(false));
    let since = Utc::now();
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    leadership.set(far, since);
    let ctx = Arc::new(Ctx {
        publisher: Publisher::new(&conn),
        leadership: leadership.clone(),
        stats: Arc::new(Stats::default()),
        ids: crate::ids::TickIds::load(&state).await.unwrap(),
        state,
        runs: bucket(js, RUNS_BUCKET, "runs").await.unwrap(),
        registry: Arc::new(RwLock::new(None)),
    });
    let schedule = compile_all(&[Schedule::new("pulse", "* * * * * *", "health.check")
        .tenants(["acme"])
        .catch_up(CatchUp::Skip)])
    .unwrap()
    .remove(0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_schedule(ctx.clone(), schedule, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The renewal is late: the leader stops acting for 2.5 s, then the renewal succeeds
    // with the same term.
    leadership.set(tokio::time::Instant::now(), since);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    leadership.set(far, since);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        ctx.stats.skipped.load(Ordering::Relaxed),
        0,
        "no tick skipped"
    );
    let fired = ctx.stats.fired.load(Ordering::Relaxed);
    assert!(fired >= 6, "the ticks of the pause fired after it: {fired}");
}

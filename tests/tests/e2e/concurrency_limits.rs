//! Cluster-wide concurrency limits: one run per tenant at a time across two processes, waiting
//! events hold no slots, and one tenant's limit never holds back another tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::concurrency::ConcurrencyLimit;
use conveyor::{Context, Group, HandlerError, Worker, WorkerHandle};
use conveyor_tests::{Ping, eventually, publish_pings_of, server};

/// One run: tenant, event id, attempt, start, end.
type Run = (String, String, u32, Instant, Instant);

#[derive(Clone, Default)]
struct Seen {
    running: Arc<Mutex<HashMap<String, usize>>>,
    most: Arc<Mutex<HashMap<String, usize>>>,
    runs: Arc<Mutex<Vec<Run>>>,
}

fn start(conn: &conveyor::Connection, seen: &Seen) -> WorkerHandle {
    Worker::builder(conn, seen.clone())
        .group(
            Group::new("reports")
                .concurrency(8)
                .concurrency_limit(ConcurrencyLimit::per_tenant(1))
                .handle(|_: Ping, ctx: Context<Seen>| async move {
                    let tenant = ctx.tenant().to_string();
                    let seen = ctx.state();
                    {
                        let mut running = seen.running.lock().unwrap();
                        let n = running.entry(tenant.clone()).or_default();
                        *n += 1;
                        let mut most = seen.most.lock().unwrap();
                        let m = most.entry(tenant.clone()).or_default();
                        *m = (*m).max(*n);
                    }
                    let began = Instant::now();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    *seen.running.lock().unwrap().get_mut(&tenant).unwrap() -= 1;
                    seen.runs.lock().unwrap().push((
                        tenant,
                        ctx.event_id().to_owned(),
                        ctx.attempt(),
                        began,
                        Instant::now(),
                    ));
                    Ok::<(), HandlerError>(())
                }),
        )
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_tenant_at_a_time_across_two_processes() {
    let (server, conn) = server().await;
    let seen = Seen::default();
    let first = start(&server.connect().await.unwrap(), &seen);
    let second = start(&server.connect().await.unwrap(), &seen);
    let mut ids = publish_pings_of(&conn, "acme", 6).await;
    ids.extend(publish_pings_of(&conn, "globex", 6).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Events waiting for room are acked copies: only the two running hold a delivery.
    let (_, ack_pending, _) = conveyor_tests::consumer_state(&conn, "reports").await;
    assert!(ack_pending <= 2, "{ack_pending} deliveries held");
    let waiting = conveyor::delay::scheduled(&conn, None, 100).await.unwrap();
    assert!(!waiting.is_empty());
    assert!(
        waiting.iter().all(|s| matches!(
            &s.kind,
            conveyor::delay::ScheduledKind::WaitingForRoom { group, attempts: 0 } if group == "reports"
        )),
        "{waiting:?}"
    );
    eventually(Duration::from_secs(30), "every event", || async {
        seen.runs.lock().unwrap().len() >= 12
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.shutdown().await;
    second.shutdown().await;
    let most = seen.most.lock().unwrap().clone();
    assert_eq!(most.get("acme"), Some(&1), "{most:?}");
    assert_eq!(most.get("globex"), Some(&1), "{most:?}");
    let runs = seen.runs.lock().unwrap().clone();
    let mut ran: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
    ran.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ran, want, "each event ran once");
    assert!(runs.iter().all(|r| r.2 == 1), "waiting is not an attempt");
    // The two tenants ran side by side: acme's limit never held globex back.
    let overlaps = runs.iter().filter(|a| a.0 == "acme").any(|a| {
        runs.iter()
            .filter(|g| g.0 == "globex")
            .any(|g| g.3 < a.4 && a.3 < g.4)
    });
    assert!(overlaps, "no run of globex overlapped one of acme");
    conveyor_tests::assert_no_dead_letters(&conn).await;
}

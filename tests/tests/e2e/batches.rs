//! Batch handlers: one run per batch of one tenant's events, full or after its wait; a failed
//! batch is retried, a poison event is dead-lettered alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::batch::{BatchContext, BatchOptions};
use conveyor::{DeadLetterKind, Group, HandlerError, HandlerOptions, RetryPolicy, Worker};
use conveyor_tests::{Ping, dead_letters, eventually, publish_pings_of, server};

/// One batch run: its tenant, the events' numbers and their attempts.
#[derive(Debug, Clone)]
struct BatchRun {
    tenants: Vec<String>,
    ns: Vec<u32>,
    attempts: Vec<u32>,
}

type Runs = Arc<Mutex<Vec<BatchRun>>>;

fn record(runs: &Runs, events: &[Ping], ctx: &BatchContext<Runs>) {
    runs.lock().unwrap().push(BatchRun {
        tenants: ctx
            .events()
            .iter()
            .map(|c| c.tenant().to_string())
            .collect(),
        ns: events.iter().map(|p| p.n).collect(),
        attempts: ctx
            .events()
            .iter()
            .map(conveyor::Context::attempt)
            .collect(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_holds_one_tenants_events_up_to_its_size() {
    let (_server, conn) = server().await;
    let runs: Runs = Arc::default();
    let worker = Worker::builder(&conn, runs.clone())
        .group(Group::new("digests").concurrency(64).handle_batch(
            |events: Vec<Ping>, ctx: BatchContext<Runs>| async move {
                record(ctx.state().unwrap(), &events, &ctx);
                Ok::<(), HandlerError>(())
            },
            BatchOptions::new(10, Duration::from_millis(500)),
        ))
        .build()
        .unwrap()
        .spawn();
    publish_pings_of(&conn, "acme", 25).await;
    publish_pings_of(&conn, "globex", 7).await;
    eventually(
        Duration::from_secs(15),
        "every event in a batch",
        || async {
            runs.lock()
                .unwrap()
                .iter()
                .map(|r| r.ns.len())
                .sum::<usize>()
                >= 32
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    worker.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    for r in &runs {
        assert!(r.ns.len() <= 10, "a batch over its size: {r:?}");
        assert!(
            r.tenants.iter().all(|t| *t == r.tenants[0]),
            "a batch mixed tenants: {r:?}"
        );
    }
    let of = |tenant: &str| -> Vec<u32> {
        let mut ns: Vec<u32> = runs
            .iter()
            .filter(|r| r.tenants[0] == tenant)
            .flat_map(|r| r.ns.clone())
            .collect();
        ns.sort_unstable();
        ns
    };
    assert_eq!(of("acme"), (0..25).collect::<Vec<_>>(), "each event once");
    assert_eq!(of("globex"), (0..7).collect::<Vec<_>>());
    assert!(
        runs.iter().filter(|r| r.tenants[0] == "acme").count() >= 3,
        "{runs:?}"
    );
    conveyor_tests::assert_no_dead_letters(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_and_a_poison_event_is_dead_lettered_alone() {
    let (_server, conn) = server().await;
    let runs: Runs = Arc::default();
    let retry = HandlerOptions::default()
        .retry(RetryPolicy::exponential(3, Duration::from_millis(300)).with_jitter(0.0));
    let worker = Worker::builder(&conn, runs.clone())
        .group(Group::new("digests").concurrency(16).handle_batch(
            |events: Vec<Ping>, ctx: BatchContext<Runs>| async move {
                let runs = ctx.state().unwrap();
                record(runs, &events, &ctx);
                for (i, p) in events.iter().enumerate() {
                    if p.n == 3 {
                        ctx.reject(i, "no such mailbox");
                    }
                }
                if runs.lock().unwrap().len() == 1 {
                    return Err(HandlerError::transient("mail server busy"));
                }
                Ok(())
            },
            BatchOptions::new(10, Duration::from_millis(300)).handler_options(retry),
        ))
        .build()
        .unwrap()
        .spawn();
    publish_pings_of(&conn, "acme", 5).await;
    let letters = dead_letters(&conn, 1, Duration::from_secs(15)).await;
    eventually(Duration::from_secs(15), "the retried batch", || async {
        runs.lock().unwrap().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.shutdown().await;
    assert_eq!(letters.len(), 1, "only the poison event is a dead letter");
    assert_eq!(letters[0].kind, DeadLetterKind::Handler);
    assert!(
        letters[0].error.contains("no such mailbox"),
        "{}",
        letters[0].error
    );
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs[0].ns.len(), 5, "{runs:?}");
    let mut retried: Vec<u32> = runs[1..].iter().flat_map(|r| r.ns.clone()).collect();
    retried.sort_unstable();
    assert_eq!(
        retried,
        [0, 1, 2, 4],
        "the other four are retried, once: {runs:?}"
    );
    assert!(runs[1..].iter().all(|r| r.attempts.iter().all(|a| *a == 2)));
}

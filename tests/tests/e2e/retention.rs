//! Work that retention limits remove is counted: events a group had not handled when `EVENTS`
//! dropped them, and dead letters `DLQ` dropped (not those purged on purpose), shown by
//! `conveyor::retention` and exported by the scheduler's leader.

use std::time::Duration;

use conveyor::retention::{report, sample};
use conveyor::testing::NatsServer;
use conveyor::topology::{DLQ_STREAM, EVENTS_STREAM, StreamLimits, Topology, provision};
use conveyor::{Context, Group, HandlerError, HandlerOptions, Publisher, RetryPolicy, Worker};
use conveyor_schemas::commerce::OrderCreated;
use conveyor_tests::{Ping, Recorder, eventually};
use futures::StreamExt;

/// Events and dead letters live 5 s.
fn short_lived() -> Topology {
    let limits = StreamLimits {
        max_age: Duration::from_secs(5),
        max_bytes: -1,
        duplicate_window: Duration::from_secs(1),
    };
    Topology {
        events: limits.clone(),
        dead_letters: limits,
        ..Topology::default()
    }
}

fn worker(conn: &conveyor::Connection, with_pings: bool) -> conveyor::WorkerHandle {
    let mut builder =
        Worker::builder(conn, Recorder::default()).group(Group::new("orders").handle_with(
            |_: OrderCreated, _: Context<Recorder>| async move {
                Err::<(), _>(HandlerError::permanent("refused"))
            },
            HandlerOptions::default().retry(RetryPolicy::no_retry()),
        ));
    if with_pings {
        builder = builder.group(Group::new("pings").handle(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "pings");
                Ok::<(), HandlerError>(())
            },
        ));
    }
    builder.build().unwrap().spawn()
}

/// Starts a worker of both groups, waits until their 32 consumers exist, and stops it.
async fn bind_both(conn: &conveyor::Connection) {
    let w = worker(conn, true);
    eventually(
        Duration::from_secs(10),
        "both groups' consumers",
        || async {
            let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
            stream.consumer_names().count().await == 32
        },
    )
    .await;
    w.shutdown().await;
}

async fn messages(conn: &conveyor::Connection, stream: &str) -> u64 {
    let mut s = conn.jetstream().get_stream(stream).await.unwrap();
    s.info().await.unwrap().state.messages
}

fn removed(report: &conveyor::retention::RetentionReport, group: &str) -> (u64, bool) {
    let g = report.groups.iter().find(|g| g.group == group).unwrap();
    (g.removed, g.at_least)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_dead_letters_removed_by_limits_are_counted() {
    conveyor_tests::init_tracing();
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    provision(&conn, &short_lived()).await.unwrap();
    // Both groups' consumers exist; then the pings group is down.
    bind_both(&conn).await;
    let first = sample(&conn).await.unwrap();
    assert_eq!(removed(&first, "pings"), (0, false));

    conveyor_tests::publish_pings(&conn, 10).await;
    let publisher = Publisher::new(&conn);
    for n in 0..3 {
        publisher
            .publish("acme", &conveyor_tests::order(&format!("o-{n}"), 100))
            .await
            .unwrap();
    }
    sample(&conn).await.unwrap();

    // The orders group handles its events (into three dead letters); one letter is purged.
    let orders = worker(&conn, false);
    let letters = conveyor_tests::dead_letters(&conn, 3, Duration::from_secs(4)).await;
    assert_eq!(letters.len(), 3);
    let mut sequences = Vec::new();
    let mut stored = std::pin::pin!(conveyor::dlq::letters(&conn, false));
    while let Some(letter) = stored.next().await {
        sequences.push(letter.unwrap().sequence);
    }
    assert_eq!(
        conveyor::dlq::purge(&conn, [sequences[0]]).await.unwrap(),
        1
    );
    orders.shutdown().await;

    eventually(
        Duration::from_secs(20),
        "every event and letter expired",
        || async {
            messages(&conn, EVENTS_STREAM).await == 0 && messages(&conn, DLQ_STREAM).await == 0
        },
    )
    .await;
    let counted = sample(&conn).await.unwrap();
    assert_eq!(
        removed(&counted, "pings"),
        (10, false),
        "the ten pings the group never handled"
    );
    assert_eq!(
        removed(&counted, "orders"),
        (0, false),
        "the orders group had handled its events"
    );
    assert_eq!(
        counted.dead_letters_removed, 2,
        "two letters expired, one was purged"
    );
    assert_eq!(report(&conn).await.unwrap(), counted);

    // A later sample adds nothing; the pings group, restarted, has nothing left to run.
    let recorder = Recorder::default();
    let again = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("pings").handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "pings");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    again.shutdown().await;
    assert!(recorder.all().is_empty());
    assert_eq!(sample(&conn).await.unwrap(), counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_leader_exports_the_counts() {
    use conveyor_scheduler::{Options, Scheduler};
    conveyor_tests::init_tracing();
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    provision(&conn, &short_lived()).await.unwrap();
    bind_both(&conn).await;
    let telemetry = conveyor::telemetry::Telemetry::new();
    let scheduler = Scheduler::new(
        &conn,
        &[] as &[conveyor_scheduler::Schedule],
        Options {
            retention_sample_every: Some(Duration::from_millis(200)),
            ..Options::default()
        },
    )
    .unwrap()
    .with_telemetry(&telemetry);
    let stats = scheduler.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(scheduler.run_until(async {
        let _ = stopped.await;
    }));
    eventually(Duration::from_secs(10), "a first sample", || async {
        stats.retention().is_some()
    })
    .await;
    conveyor_tests::publish_pings(&conn, 4).await;
    eventually(
        Duration::from_secs(30),
        "the pings counted as removed",
        || async {
            conveyor_tests::metric(
                &telemetry.encode(),
                "conveyor_events_removed_unhandled{group=\"pings\"}",
            ) == Some(4.0)
        },
    )
    .await;
    let text = telemetry.encode();
    assert_eq!(
        conveyor_tests::metric(&text, "conveyor_events_removed_unhandled{group=\"orders\"}"),
        Some(0.0)
    );
    assert_eq!(
        conveyor_tests::metric(&text, "conveyor_dead_letters_removed"),
        Some(0.0)
    );
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

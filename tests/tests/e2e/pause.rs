//! Pausing a tenant: its events are kept and not run, others (even in its partition) are
//! served, the pause survives a worker restart, and resuming runs the kept events in order.

use std::time::Duration;

use conveyor::partition::partition_of;
use conveyor::pause::{PARKED_STREAM, pause, paused, resume};
use conveyor::{Context, Group, HandlerError, Publisher, TenantId, Worker, WorkerHandle};
use conveyor_tests::{Ping, Recorder, eventually, server};

/// A tenant in the same partition as `acme`: parked events must not hold its partition.
fn partition_mate() -> String {
    (0..10_000)
        .map(|n| format!("mate-{n}"))
        .find(|t| partition_of(t) == partition_of("acme"))
        .unwrap()
}

fn start(conn: &conveyor::Connection, recorder: &Recorder) -> WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("orders")
                .concurrency(1)
                .max_ack_pending(2)
                .handle(|_: Ping, ctx: Context<Recorder>| async move {
                    ctx.state()
                        .record(ctx.event_id(), ctx.attempt(), ctx.tenant().as_str());
                    Ok::<(), HandlerError>(())
                }),
        )
        .build()
        .unwrap()
        .spawn()
}

async fn parked(conn: &conveyor::Connection) -> u64 {
    match conn.jetstream().get_stream(PARKED_STREAM).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_tenant_waits_others_run_and_resume_runs_its_events_in_order() {
    let (_server, conn) = server().await;
    let acme = TenantId::parse("acme").unwrap();
    let mate = partition_mate();
    pause(&conn, &acme, None, "migration").await.unwrap();
    let recorder = Recorder::default();
    let worker = start(&conn, &recorder);
    let publisher = Publisher::new(&conn);
    let mut acme_ids: Vec<String> = conveyor_tests::publish_pings(&conn, 10).await;
    let mate_ids: Vec<String> = conveyor_tests::publish_pings_of(&conn, &mate, 3).await;
    // The partition's limit of 2 unacknowledged deliveries is not held by acme's events.
    recorder
        .wait_for_all(
            Duration::from_secs(20),
            "the partition mate's events",
            &mate_ids,
        )
        .await;
    eventually(Duration::from_secs(10), "acme's events parked", || async {
        parked(&conn).await == 10
    })
    .await;
    worker.shutdown().await;

    // The pause survives a restart.
    let worker = start(&conn, &recorder);
    acme_ids.push(publisher.publish("acme", &Ping { n: 10 }).await.unwrap().id);
    eventually(Duration::from_secs(10), "the new event parked", || async {
        parked(&conn).await == 11
    })
    .await;
    assert!(
        recorder.all().iter().all(|r| r.worker != "acme"),
        "a paused tenant's event ran"
    );
    assert_eq!(paused(&conn).await.unwrap().len(), 1);

    let resumed = resume(&conn, &acme, None).await.unwrap();
    assert_eq!(resumed, 11);
    recorder
        .wait_for(Duration::from_secs(20), "acme's events after resume", |s| {
            s.iter().filter(|r| r.worker == "acme").count() == 11
        })
        .await;
    let ran: Vec<String> = recorder
        .all()
        .into_iter()
        .filter(|r| r.worker == "acme")
        .map(|r| r.event_id)
        .collect();
    worker.shutdown().await;
    assert_eq!(ran, acme_ids, "in the order they were published");
    assert_eq!(parked(&conn).await, 0);
    assert!(paused(&conn).await.unwrap().is_empty());
}

fn start_two(conn: &conveyor::Connection, recorder: &Recorder) -> WorkerHandle {
    let record = |group: &'static str| {
        move |_: Ping, ctx: Context<Recorder>| async move {
            ctx.state().record(ctx.event_id(), ctx.attempt(), group);
            Ok::<(), HandlerError>(())
        }
    };
    Worker::builder(conn, recorder.clone())
        .group(Group::new("orders").concurrency(1).handle(record("orders")))
        .group(Group::new("audit").handle(record("audit")))
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_group_keeps_its_events_across_a_restart_and_resumes_in_order() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start_two(&conn, &recorder);
    eventually(Duration::from_secs(10), "the consumers", || async {
        conveyor::partition::group_counts(&conn, "orders")
            .await
            .is_ok_and(|c| c.consumers == conveyor::partition::PARTITIONS)
    })
    .await;
    conveyor::pause::pause_group(&conn, "orders", None)
        .await
        .unwrap();
    let ids: Vec<String> = conveyor_tests::publish_pings(&conn, 5).await;
    let ran_in = |group: &'static str| {
        let recorder = recorder.clone();
        move || {
            recorder
                .all()
                .into_iter()
                .filter(|r| r.worker == group)
                .map(|r| r.event_id)
                .collect::<Vec<_>>()
        }
    };
    recorder
        .wait_for(Duration::from_secs(10), "the other group's runs", |s| {
            s.iter().filter(|r| r.worker == "audit").count() == 5
        })
        .await;
    // A restart re-creates the consumers' settings but keeps the pause.
    worker.shutdown().await;
    let worker = start_two(&conn, &recorder);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ran_in("orders")().is_empty(), "the paused group ran");
    conveyor::pause::resume_group(&conn, "orders")
        .await
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(10), "the resumed group's runs", |s| {
            s.iter().filter(|r| r.worker == "orders").count() == 5
        })
        .await;
    worker.shutdown().await;
    assert_eq!(ran_in("orders")(), ids, "in order, once each");
}

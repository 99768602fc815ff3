//! Pausing and resuming tenants and groups.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_groups_are_paused_and_resumed_from_the_command_line() {
    let (server, conn) = server().await;
    let url = server.url();
    let pause = conveyor(&url, &["tenants", "pause", "acme", "--reason", "migration"]);
    let (out, err) = text(&pause);
    assert!(pause.status.success(), "{out}{err}");
    assert!(out.contains("acme paused for every group"), "{out}");
    let status = conveyor(&url, &["status"]);
    assert!(
        text(&status).0.contains("acme paused for every group"),
        "{:?}",
        text(&status)
    );
    conveyor::Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    let worker = recording_worker(&conn, "orders", &Recorder::default());
    eventually(Duration::from_secs(10), "the event parked", || async {
        text(&conveyor(&url, &["tenants", "paused"]))
            .0
            .contains("1 events parked")
    })
    .await;
    worker.shutdown().await;
    // With no worker running, another tenant's event waits in the group's backlog.
    conveyor::Publisher::new(&conn)
        .publish("globex", &Ping { n: 2 })
        .await
        .unwrap();
    let backlog = conveyor(&url, &["tenants", "backlog", "globex", "initech"]);
    assert!(backlog.status.success(), "{:?}", text(&backlog));
    assert_eq!(text(&backlog).0, "globex\torders\t1 waiting\n");
    let bad = conveyor(&url, &["tenants", "pause", "ac me"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("invalid tenant"), "{:?}", text(&bad));
    let resume = conveyor(&url, &["tenants", "resume", "acme"]);
    assert!(resume.status.success(), "{:?}", text(&resume));
    assert!(
        text(&resume).0.contains("1 parked events re-published"),
        "{:?}",
        text(&resume)
    );
    assert!(
        text(&conveyor(&url, &["tenants", "paused"]))
            .0
            .contains("no tenant is paused")
    );

    // A group no worker has run has no consumers to pause: a clear error.
    let unknown = conveyor(&url, &["groups", "pause", "billing"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).1.contains("run a worker of the group once"),
        "{:?}",
        text(&unknown)
    );
    let worker = recording_worker(&conn, "billing", &Recorder::default());
    eventually(Duration::from_secs(10), "the consumers", || async {
        conveyor::partition::group_counts(&conn, "billing")
            .await
            .is_ok_and(|c| c.consumers == conveyor::partition::PARTITIONS)
    })
    .await;
    let paused = conveyor(&url, &["groups", "pause", "billing", "--for", "1h"]);
    assert!(paused.status.success(), "{:?}", text(&paused));
    let json = conveyor(&url, &["status", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["groups"][0]["group"], "billing");
    assert_eq!(report["groups"][0]["paused"], true);
    assert_eq!(report["groups"][0]["consumers"], 16);
    let resumed = conveyor(&url, &["groups", "resume", "billing"]);
    assert!(resumed.status.success(), "{:?}", text(&resumed));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_no_version_handles_is_dropped_from_the_groups_consumers() {
    use conveyor_tests::Pong;
    let (server, conn) = server().await;
    let url = server.url();
    // Version 1 of the group handles pings and pongs.
    let v1 = Worker::builder(&conn, ())
        .group(
            Group::new("audit")
                .handle(|_: Ping, _: Context| async { Ok::<(), HandlerError>(()) })
                .handle(|_: Pong, _: Context| async { Ok::<(), HandlerError>(()) }),
        )
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "the group's consumers", || async {
        let mut stream = conn.jetstream().get_stream("EVENTS").await.unwrap();
        stream.info().await.unwrap().state.consumer_count == 16
    })
    .await;
    v1.shutdown().await;
    let types = conveyor(&url, &["groups", "types", "audit"]);
    assert_eq!(text(&types).0, "test.ping\ntest.pong\n");
    // Version 2 no longer handles pings; two are pending.
    conveyor_tests::publish_pings(&conn, 2).await;
    let unconfirmed = conveyor(&url, &["groups", "drop-type", "audit", "test.ping"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(
        text(&unconfirmed).1.contains("--yes"),
        "{:?}",
        text(&unconfirmed)
    );
    let dropped = conveyor(
        &url,
        &["groups", "drop-type", "audit", "test.ping", "--yes"],
    );
    assert!(dropped.status.success(), "{:?}", text(&dropped));
    assert!(
        text(&dropped)
            .0
            .contains("from 16 consumers of group audit; 2 pending events"),
        "{:?}",
        text(&dropped)
    );
    assert_eq!(
        text(&conveyor(&url, &["groups", "types", "audit"])).0,
        "test.pong\n"
    );
    assert_eq!(conveyor_tests::consumer_state(&conn, "audit").await.0, 0);
    // The last type cannot be dropped, a type the group does not filter is named.
    let last = conveyor(
        &url,
        &["groups", "drop-type", "audit", "test.pong", "--yes"],
    );
    assert_eq!(last.status.code(), Some(1));
    assert!(text(&last).1.contains("only type"), "{:?}", text(&last));
    let unknown = conveyor(
        &url,
        &["groups", "drop-type", "audit", "test.ping", "--yes"],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).1.contains("does not filter"),
        "{:?}",
        text(&unknown)
    );
    // Version 2 runs: the pings are neither delivered nor dead-lettered.
    let recorder = Recorder::default();
    let v2 = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("audit").handle(|_: Pong, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "v2");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    v2.shutdown().await;
    assert!(recorder.all().is_empty());
    conveyor_tests::assert_no_dead_letters(&conn).await;
}

//! `conveyor status`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_streams_groups_and_dead_letters() {
    let (server, conn) = server().await;
    let worker =
        Worker::builder(&conn, ())
            .group(Group::new("audit").handle(|_: Ping, _: Context| async {
                Err::<(), _>(HandlerError::permanent("no"))
            }))
            .build()
            .unwrap()
            .spawn();
    conveyor_tests::publish_pings(&conn, 2).await;
    conveyor_tests::dead_letters(&conn, 2, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(5), "acks", || async {
        conveyor_tests::consumer_state(&conn, "audit").await.1 == 0
    })
    .await;
    let out = conveyor(&server.url(), &["status", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(v["streams"][0]["messages"], 2);
    let audit = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "audit")
        .unwrap();
    assert_eq!(audit["dead_letters"], 2);
    assert_eq!(audit["pending"], 0);
    let table = conveyor(&server.url(), &["status"]);
    assert!(text(&table).0.contains("audit"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_events_the_stream_removed_before_the_group_handled_them() {
    use conveyor::topology::{StreamLimits, Topology, provision};
    conveyor_tests::init_tracing();
    let server = conveyor::testing::NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    let limits = StreamLimits {
        max_age: Duration::from_secs(3),
        max_bytes: -1,
        duplicate_window: Duration::from_secs(1),
    };
    provision(
        &conn,
        &Topology {
            events: limits.clone(),
            dead_letters: limits,
            ..Topology::default()
        },
    )
    .await
    .unwrap();
    // The group's consumers exist, then the group is down while its events expire.
    let worker = recording_worker(&conn, "audit", &Recorder::default());
    eventually(Duration::from_secs(10), "the group's consumers", || async {
        let mut stream = conn.jetstream().get_stream("EVENTS").await.unwrap();
        stream.info().await.unwrap().state.consumer_count == 16
    })
    .await;
    assert!(conveyor(&server.url(), &["status"]).status.success());
    worker.shutdown().await;
    conveyor_tests::publish_pings(&conn, 3).await;
    assert!(conveyor(&server.url(), &["status"]).status.success());
    eventually(Duration::from_secs(15), "the events expired", || async {
        events_count(&conn).await == 0
    })
    .await;
    let out = conveyor(&server.url(), &["status", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let audit = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "audit")
        .unwrap();
    assert_eq!(audit["removed_unhandled"], 3, "{v}");
    assert_eq!(audit["removed_at_least"], false);
    assert_eq!(v["dead_letters_removed"], 0);
    let table = text(&conveyor(&server.url(), &["status"])).0;
    assert!(table.contains("before the group handled them"), "{table}");
}

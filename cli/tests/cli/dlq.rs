//! Dead letters: list, show, replay, purge.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_listed_shown_replayed_and_purged() {
    let (server, conn) = server().await;
    let url = server.url();
    // A handler that refuses everything: every event becomes a dead letter.
    let refuse = Worker::builder(&conn, ())
        .group(Group::new("billing").handle(|_: Ping, _: Context| async {
            Err::<(), _>(HandlerError::permanent("customer unknown"))
        }))
        .build()
        .unwrap()
        .spawn();
    let ids = conveyor_tests::publish_pings(&conn, 3).await;
    conveyor_tests::dead_letters(&conn, 3, Duration::from_secs(10)).await;
    refuse.shutdown().await;

    let list = conveyor(&url, &["dlq", "list", "--json"]);
    assert!(list.status.success(), "{:?}", text(&list));
    let rows: Vec<serde_json::Value> = text(&list)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0]["seq"].as_u64() > rows[2]["seq"].as_u64(),
        "newest first"
    );
    assert_eq!(rows[0]["kind"], "handler");
    let filtered = conveyor(&url, &["dlq", "list", "--json", "--group", "nobody"]);
    assert!(text(&filtered).0.trim().is_empty());
    let paged = conveyor(
        &url,
        &["dlq", "list", "--json", "--limit", "2", "--page", "2"],
    );
    assert_eq!(text(&paged).0.lines().count(), 1);

    let seq = rows[0]["seq"].as_u64().unwrap().to_string();
    let show = conveyor(&url, &["dlq", "show", &seq]);
    let (out, _) = text(&show);
    assert!(
        out.contains("Conveyor-Error-Kind: handler") && out.contains("\"specversion\":\"1.0\""),
        "{out}"
    );
    let missing = conveyor(&url, &["dlq", "show", "999"]);
    assert_eq!(missing.status.code(), Some(1));

    let dry = conveyor(&url, &["dlq", "replay", "--all", "--dry-run"]);
    assert!(text(&dry).0.contains("3 dead letters would be replayed"));
    assert_eq!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .len(),
        3
    );

    // Now the handler works: replayed events are handled and leave the DLQ.
    let recorder = Recorder::default();
    let fixed = recording_worker(&conn, "billing", &recorder);
    let replay = conveyor(&url, &["dlq", "replay", "--all", "--group", "billing"]);
    assert!(replay.status.success(), "{:?}", text(&replay));
    assert!(text(&replay).0.contains("replayed 3 dead letters"));
    recorder
        .wait_for(Duration::from_secs(10), "replayed events handled", |s| {
            ids.iter().all(|id| s.iter().any(|r| &r.event_id == id))
        })
        .await;
    assert!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .is_empty()
    );
    fixed.shutdown().await;

    // Purge needs confirmation.
    conveyor_tests::publish_raw(&conn, "events.acme.test.ping", b"not json").await;
    let refuse = Worker::builder(&conn, ())
        .group(
            Group::new("billing")
                .handle(|_: Ping, _: Context| async { Ok::<(), HandlerError>(()) }),
        )
        .build()
        .unwrap()
        .spawn();
    conveyor_tests::dead_letters(&conn, 1, Duration::from_secs(10)).await;
    refuse.shutdown().await;
    let unconfirmed = conveyor(&url, &["dlq", "purge"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(text(&unconfirmed).1.contains("add --yes"));
    let purge = conveyor(&url, &["dlq", "purge", "--kind", "decode", "--yes"]);
    assert!(text(&purge).0.contains("purged 1 dead letters"));
    assert!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .is_empty()
    );
}

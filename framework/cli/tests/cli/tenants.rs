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

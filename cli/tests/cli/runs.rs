//! Run history and cancellation.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_history_and_cancel_skips_an_event() {
    let (server, conn) = server().await;
    let url = server.url();
    let recorder = Recorder::default();
    let seen = recorder.clone();
    // Event 0 fails once then succeeds; event 1 is refused for good.
    let worker = Worker::builder(&conn, ())
        .group(Group::new("ledger").history(true).handle_with(
            move |e: Ping, ctx: Context| {
                let seen = seen.clone();
                async move {
                    seen.record(ctx.event_id(), ctx.attempt(), "w");
                    match (e.n, ctx.attempt()) {
                        (0, 1) => Err(HandlerError::transient(std::io::Error::other(
                            "bank timeout",
                        ))),
                        (1, _) => Err(HandlerError::permanent("account closed")),
                        _ => Ok(()),
                    }
                }
            },
            conveyor::HandlerOptions::default().retry(
                conveyor::RetryPolicy::exponential(3, Duration::from_millis(100)).with_jitter(0.0),
            ),
        ))
        .build()
        .unwrap()
        .spawn();
    let ids = conveyor_tests::publish_pings(&conn, 2).await;
    recorder
        .wait_for(Duration::from_secs(10), "three runs", |s| s.len() == 3)
        .await;
    conveyor_tests::dead_letters(&conn, 1, Duration::from_secs(10)).await;

    eventually(Duration::from_secs(5), "history of event 0", || async {
        let show = conveyor(&url, &["runs", "show", &ids[0]]);
        text(&show).0.contains("succeeded")
    })
    .await;
    let show = conveyor(&url, &["runs", "show", &ids[0]]);
    let (out, err) = text(&show);
    assert!(show.status.success(), "{out}{err}");
    assert!(
        out.contains("attempt 1/3") && out.contains("attempt 2/3"),
        "{out}"
    );
    assert!(
        out.contains("retrying") && out.contains("bank timeout"),
        "{out}"
    );
    assert!(out.contains("next attempt at"), "{out}");

    let failed = conveyor(&url, &["runs", "failed", "--group", "ledger", "--json"]);
    let (out, err) = text(&failed);
    assert!(failed.status.success(), "{out}{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["event_id"], ids[1].as_str());
    assert_eq!(rows[0]["state"], "dead_lettered");
    let table = conveyor(
        &url,
        &["runs", "failed", "--group", "ledger", "--tenant", "acme"],
    );
    assert!(
        text(&table).0.contains("account closed"),
        "{:?}",
        text(&table)
    );
    let none = conveyor(&url, &["runs", "show", "no-such-event"]);
    assert!(none.status.success());
    assert!(text(&none).0.contains("no runs recorded"));
    let bad = conveyor(&url, &["runs", "failed", "--group", "a.b"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("invalid --group"));

    // Cancel an event before the worker sees it: it is skipped and acked, not dead-lettered.
    worker.shutdown().await;
    let later = conveyor_tests::publish_pings(&conn, 1).await;
    let cancel = conveyor(
        &url,
        &[
            "cancel",
            &later[0],
            "--tenant",
            "acme",
            "--group",
            "ledger",
            "--reason",
            "duplicate",
        ],
    );
    let (out, err) = text(&cancel);
    assert!(cancel.status.success(), "{out}{err}");
    assert!(
        out.contains("cancelled") && out.contains("group ledger"),
        "{out}"
    );
    let worker = Worker::builder(&conn, ())
        .group(
            Group::new("ledger")
                .history(true)
                .handle(|_: Ping, _: Context| async {
                    Err::<(), _>(HandlerError::permanent("must not run"))
                }),
        )
        .build()
        .unwrap()
        .spawn();
    eventually(
        Duration::from_secs(10),
        "cancelled run recorded",
        || async {
            text(&conveyor(&url, &["runs", "show", &later[0]]))
                .0
                .contains("cancelled")
        },
    )
    .await;
    worker.shutdown().await;
    assert_eq!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .len(),
        1
    );
}

//! Settling an outcome: bounded retry delays, and dead-letter publishes that fail.

use std::time::{Duration, Instant};

use conveyor::testing::NatsServer;
use conveyor::topology::{Topology, provision};
use conveyor::{
    Connection, Context, DeadLetter, DeadLetterErrorKind, DeadLetterKind, Group, HandlerError,
    HandlerOptions, Publisher, RetryPolicy, Worker,
};
use conveyor_tests::{Ping, Recorder, consumer_state, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_centuries_waits_the_handlers_max_delay() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("patient").history(true).handle_with(
                |_: Ping, ctx: Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                    if ctx.attempt() == 1 {
                        // 317 000 years: more than a timestamp can hold.
                        return Err(HandlerError::retry_after(
                            Duration::from_secs(10_000_000_000_000),
                            "Retry-After: far future",
                        ));
                    }
                    Ok(())
                },
                HandlerOptions::default().retry(
                    RetryPolicy::exponential(3, Duration::from_millis(100))
                        .with_max_delay(Duration::from_millis(500)),
                ),
            ),
        )
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(10), "the second attempt", |s| {
            s.iter().any(|r| r.attempt == 2)
        })
        .await;
    worker.shutdown().await;
}

/// A server whose user `nodlq` may do everything but publish dead letters.
fn server_without_dlq_rights() -> (NatsServer, tempfile::TempDir) {
    conveyor_tests::server_with_config(
        r#"
jetstream: enabled
accounts {
  APP: {
    jetstream: enabled
    users: [
      { user: admin, password: admin }
      { user: nodlq, password: nodlq, permissions: { publish: { deny: ["dlq.>"] } } }
    ]
  }
}
"#,
    )
}

async fn login(server: &NatsServer, user: &str) -> Connection {
    conveyor_tests::login(server, user, user).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dead_letter_fails_at_once_and_the_handler_is_not_run_again() {
    let (server, _dir) = server_without_dlq_rights();
    let admin = login(&server, "admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let conn = login(&server, "nodlq").await;

    // The dead-letter publish itself: a permission error as soon as the server says so.
    let letter = DeadLetter {
        original_subject: "events.acme.test.ping".into(),
        stream_sequence: 1,
        group: "g".into(),
        attempts: 1,
        kind: DeadLetterKind::Handler,
        error: "x".into(),
        failed_at: chrono::Utc::now(),
        body: bytes::Bytes::from_static(b"{}"),
        body_truncated_from: None,
    };
    let started = Instant::now();
    let e = letter.publish(&conn).await.unwrap_err();
    assert_eq!(e.kind(), DeadLetterErrorKind::PermissionDenied, "{e}");
    assert!(
        started.elapsed() < conn.timeout(),
        "not after a publish timeout: {:?}",
        started.elapsed()
    );

    // A permanently failing event whose dead letter cannot be stored: the runtime keeps retrying
    // the dead-letter publish, heartbeating the delivery, and never runs the handler again.
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .backstop(false)
        .shutdown_grace(Duration::from_millis(200))
        .group(
            Group::new("stuck")
                .ack_wait(Duration::from_millis(600))
                .handle(|_: Ping, ctx: Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                    Err::<(), _>(HandlerError::permanent("bad order"))
                }),
        )
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(10), "the run", |s| !s.is_empty())
        .await;
    // Several ack waits later: still one run, and the delivery is still held, not redelivered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(recorder.all().len(), 1, "{:?}", recorder.all());
    let (_, ack_pending, redelivered) = consumer_state(&admin, "stuck").await;
    assert_eq!((ack_pending, redelivered), (1, 0));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_acks_stop_the_group_and_fail_readiness() {
    let (server, _dir) = conveyor_tests::server_with_config(
        r#"
jetstream: enabled
accounts {
  APP: {
    jetstream: enabled
    users: [
      { user: admin, password: admin }
      { user: noack, password: noack, permissions: { publish: { deny: ["$JS.ACK.EVENTS.>"] } } }
    ]
  }
}
"#,
    );
    let admin = login(&server, "admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let conn = login(&server, "noack").await;
    let telemetry = conveyor::telemetry::Telemetry::new();
    let endpoint = telemetry
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .backstop(false)
        .telemetry(&telemetry)
        .group(
            Group::new("mute")
                .concurrency(1)
                .ack_wait(Duration::from_millis(500))
                .handle(|_: Ping, ctx: Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                    Ok::<(), HandlerError>(())
                }),
        )
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&admin)
        .publish_many((0..3).map(|n| ("acme", Ping { n })))
        .await;
    recorder
        .wait_for(Duration::from_secs(10), "a run", |s| !s.is_empty())
        .await;
    conveyor_tests::eventually(Duration::from_secs(5), "readiness to fail", || async {
        let (status, body) = conveyor_tests::http_get(endpoint.local_addr(), "/readyz").await;
        status == 503 && body.contains("consumer:mute")
    })
    .await;
    // Many ack waits later the events are not run over and over.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let runs = recorder.all().len();
    assert!(runs <= 3, "{runs} runs: the group stopped pulling");
    worker.shutdown().await;
}

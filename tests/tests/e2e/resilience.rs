use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{
    Connection, Context, DeadLetterKind, Group, HandlerError, HandlerOptions, Publisher,
    RetryPolicy, Worker,
};
use conveyor_tests::{
    Ping, Recorder, consumer_of, consumer_state, dead_letters, eventually, publish_pings, server,
};
use futures::StreamExt;

/// A worker process (`test_worker`) that can be SIGKILLed.
struct ChildWorker(Child);

impl ChildWorker {
    fn spawn(url: &str, group: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_test_worker"));
        cmd.env("NATS_URL", url).env("GROUP", group);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self(cmd.spawn().expect("spawn test_worker"))
    }

    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL on Unix
        let _ = self.0.wait();
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects `<event-id> <attempt> <worker>` lines a worker process reports on core NATS. The
/// subscription is in place when this returns.
async fn collect(conn: &Connection, subject: &str) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let client = conn.client().clone();
    let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    let l = lines.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            l.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&m.payload).into_owned());
        }
    });
    lines
}

/// Starts an in-process worker on `group` with the same settings as the child worker, to take
/// over what a child left.
fn takeover(
    conn: &Connection,
    group: &str,
    ack_wait: Duration,
    concurrency: usize,
    recorder: &Recorder,
) -> conveyor::WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new(group)
                .ack_wait(ack_wait)
                .concurrency(concurrency)
                .handle_with(
                    record_ping,
                    HandlerOptions::default()
                        .retry(RetryPolicy::exponential(5, Duration::from_millis(100))),
                ),
        )
        .build()
        .unwrap()
        .spawn()
}

/// The event ids of `<event-id> <attempt> <worker>` report lines.
fn ids_of(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

async fn record_ping(_: Ping, ctx: Context<Recorder>) -> Result<(), HandlerError> {
    ctx.state()
        .record(ctx.event_id(), ctx.attempt(), "in-process");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_worker_mid_batch_loses_nothing() {
    let (server, conn) = server().await;
    let started = collect(&conn, "test.started").await;
    let handled = collect(&conn, "test.handled").await;
    let mut child = ChildWorker::spawn(
        &server.url(),
        "crash",
        &[
            ("SLEEP_MS", "300"),
            ("CONCURRENCY", "4"),
            ("ACK_WAIT_MS", "2000"),
        ],
    );
    let ids: Vec<String> = publish_pings(&conn, 40).await;
    // Kill while handlers are running: some finished, some started and not finished.
    eventually(
        Duration::from_secs(15),
        "the child to be mid-batch",
        || async {
            let done = handled.lock().unwrap().len();
            done >= 4 && started.lock().unwrap().len() > done
        },
    )
    .await;
    child.kill();
    assert!(handled.lock().unwrap().len() < 40, "killed mid-batch");

    // A second worker on the same group finishes the rest, including the interrupted ones.
    let recorder = Recorder::default();
    let worker = takeover(&conn, "crash", Duration::from_millis(2000), 4, &recorder);
    let handled_by_child = ids_of(&handled);
    eventually(Duration::from_secs(20), "every event handled", || async {
        let by_second = recorder.counts();
        ids.iter()
            .all(|id| by_second.contains_key(id) || handled_by_child.contains(id))
    })
    .await;
    eventually(Duration::from_secs(5), "all acked", || async {
        let (pending, ack_pending, _) = consumer_state(&conn, "crash").await;
        pending == 0 && ack_pending == 0
    })
    .await;
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing() {
    let (mut server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("steady").concurrency(4).handle_with(
                |_: Ping, ctx: Context<Recorder>| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                    Ok::<(), HandlerError>(())
                },
                HandlerOptions::default()
                    .retry(RetryPolicy::exponential(10, Duration::from_millis(100))),
            ),
        )
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    let mut ids =
        conveyor_tests::published_ids(&publisher, (0..60).map(|n| ("acme", Ping { n }))).await;
    recorder
        .wait_for(Duration::from_secs(10), "some progress", |s| s.len() >= 10)
        .await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_again().unwrap();

    // Publishing after the restart: retry until the client has reconnected.
    for n in 60..90 {
        let event = Ping { n };
        let id = conveyor::envelope::new_event_id();
        let options = conveyor::EventOptions::default().id(id.clone());
        let mut tries = 0;
        loop {
            match publisher
                .publish_with("acme", &event, options.clone())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "publish never recovered: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        ids.push(id);
    }
    eventually(Duration::from_secs(45), "all 90 events handled", || async {
        let counts = recorder.counts();
        ids.iter().all(|id| counts.contains_key(id))
    })
    .await;
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_running_handlers_and_hands_back_the_rest() {
    let (server, conn) = server().await;
    let recorder = Recorder::default();
    let slow = |_: Ping, ctx: Context<Recorder>| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ctx.state().record(ctx.event_id(), ctx.attempt(), "first");
        Ok::<(), HandlerError>(())
    };
    // A long ack wait: an event that was neither acked nor handed back would not come back
    // within this test.
    let group = || {
        Group::new("graceful")
            .ack_wait(Duration::from_secs(60))
            .concurrency(4)
    };
    let first_conn = server.connect().await.unwrap();
    let first = Worker::builder(&first_conn, recorder.clone())
        .shutdown_grace(Duration::from_secs(10))
        .group(group().handle(slow))
        .build()
        .unwrap()
        .spawn();
    let ids: Vec<String> = publish_pings(&conn, 30).await;
    recorder
        .wait_for(Duration::from_secs(10), "first results", |s| s.len() >= 4)
        .await;
    first.shutdown().await;
    let by_first = recorder.all().len();
    assert!(by_first < 30, "stopped mid-way");

    let second = Worker::builder(&conn, recorder.clone())
        .group(
            group().handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "second");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "the rest handled", || async {
        recorder.counts().len() == 30
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts: HashMap<String, usize> = recorder.counts();
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "each exactly once: {counts:?}"
    );
    let (pending, ack_pending, _) = consumer_state(&conn, "graceful").await;
    assert_eq!((pending, ack_pending), (0, 0));
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_last_attempt_dies_with_its_process_is_dead_lettered() {
    let (server, conn) = server().await;
    let started = collect(&conn, "test.started").await;
    // One attempt only, and a handler far longer than the ack wait's heartbeats survive.
    let mut child = ChildWorker::spawn(
        &server.url(),
        "doomed",
        &[
            ("SLEEP_MS", "30000"),
            ("MAX_ATTEMPTS", "1"),
            ("ACK_WAIT_MS", "1000"),
        ],
    );
    let published = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the handler to start", || async {
        !started.lock().unwrap().is_empty()
    })
    .await;
    child.kill();

    // The next process of the group gets the event back after the ack wait and dead-letters it
    // without running it again: its one attempt is used up.
    let recorder = Recorder::default();
    let other = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("doomed")
                .ack_wait(Duration::from_millis(1000))
                .handle_with(
                    record_ping,
                    HandlerOptions::default().retry(RetryPolicy::no_retry()),
                ),
        )
        .build()
        .unwrap()
        .spawn();
    let letters = dead_letters(&conn, 1, Duration::from_secs(15)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.kind, DeadLetterKind::MaxDeliveries);
    assert_eq!(letter.group, "doomed");
    assert_eq!(letter.stream_sequence, published.stream_sequence);
    assert_eq!(letter.original_subject, "events.acme.test.ping");
    assert!(recorder.all().is_empty(), "not run a second time");
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_hand_back_does_not_use_up_an_attempt() {
    let (server, conn) = server().await;
    let recorder = Recorder::default();
    // One attempt each: a hand-back that counted as one would dead-letter the event.
    let group = |name: &'static str| {
        Group::new("once")
            .ack_wait(Duration::from_secs(60))
            .concurrency(4)
            .handle_with(
                move |_: Ping, ctx: Context<Recorder>| async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    ctx.state().record(ctx.event_id(), ctx.attempt(), name);
                    Ok::<(), HandlerError>(())
                },
                HandlerOptions::default().retry(RetryPolicy::no_retry()),
            )
    };
    let first_conn = server.connect().await.unwrap();
    // A grace shorter than a run: the running handlers are stopped and handed back too.
    let first = Worker::builder(&first_conn, recorder.clone())
        .shutdown_grace(Duration::from_millis(100))
        .group(group("first"))
        .build()
        .unwrap()
        .spawn();
    let ids: Vec<String> = publish_pings(&conn, 30).await;
    recorder
        .wait_for(Duration::from_secs(10), "first results", |s| s.len() >= 4)
        .await;
    first.shutdown().await;
    assert!(recorder.all().len() < 30, "stopped mid-way");

    let second = Worker::builder(&conn, recorder.clone())
        .group(group("second"))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(20), "the rest handled", || async {
        recorder.counts().len() == 30
    })
    .await;
    let (pending, ack_pending, _) = consumer_state(&conn, "once").await;
    assert_eq!((pending, ack_pending), (0, 0));
    let counts = recorder.counts();
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "each ran to the end once: {counts:?}"
    );
    let runs = recorder.all();
    assert!(
        runs.iter().all(|r| r.attempt == 1),
        "hand-backs are not attempts: {runs:?}"
    );
    assert!(runs.iter().any(|r| r.worker == "second"));
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_is_recreated_and_work_goes_on() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("phoenix").handle(record_ping))
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    let before = publish_pings(&conn, 20).await;
    recorder
        .wait_for(Duration::from_secs(10), "the first events", |s| {
            s.len() >= 20
        })
        .await;
    // Long enough for the worker to have read the consumer's ack floor since.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stream = conn.jetstream().get_stream("EVENTS").await.unwrap();
    stream
        .delete_consumer(&consumer_of("phoenix", "acme"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the consumer to be recreated",
        || async {
            stream
                .consumer_info(consumer_of("phoenix", "acme"))
                .await
                .is_ok()
        },
    )
    .await;
    let second = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();
    recorder
        .wait_for(
            Duration::from_secs(20),
            "an event after the deletion",
            |s| s.iter().any(|r| r.event_id == second.id),
        )
        .await;
    // Recreated from where the group was, not from the start of the stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = recorder.counts();
    assert!(
        before.iter().all(|id| counts.get(id) == Some(&1)),
        "no event handled before the deletion ran again: {counts:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_worker_process_gracefully() {
    let (server, conn) = server().await;
    let started = collect(&conn, "test.started").await;
    let handled = collect(&conn, "test.handled").await;
    let mut child = ChildWorker::spawn(
        &server.url(),
        "term",
        &[
            ("SLEEP_MS", "700"),
            ("CONCURRENCY", "2"),
            ("ACK_WAIT_MS", "60000"),
        ],
    );
    let ids: Vec<String> = publish_pings(&conn, 12).await;
    eventually(Duration::from_secs(15), "handlers running", || async {
        !started.lock().unwrap().is_empty()
    })
    .await;
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = child.0.wait();
        (child, status)
    });
    let (_child, status) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .expect("the worker exits within its grace period")
        .unwrap();
    assert!(status.unwrap().success(), "clean exit");
    // Every handler that started finished before the exit (its report may still be in transit
    // to this test's subscription).
    eventually(
        Duration::from_secs(5),
        "every started handler to finish",
        || async {
            let mut started_ids = ids_of(&started);
            let mut handled_ids = ids_of(&handled);
            started_ids.sort();
            handled_ids.sort();
            started_ids == handled_ids
        },
    )
    .await;
    let handled_ids = ids_of(&handled);

    // The rest was handed back, so another worker gets it at once (the ack wait is 60 s).
    let recorder = Recorder::default();
    let worker = takeover(&conn, "term", Duration::from_secs(60), 2, &recorder);
    eventually(Duration::from_secs(10), "the rest handled", || async {
        let counts = recorder.counts();
        ids.iter()
            .all(|id| counts.contains_key(id) || handled_ids.contains(id))
    })
    .await;
    let counts = recorder.counts();
    assert!(
        handled_ids.iter().all(|id| !counts.contains_key(id)),
        "nothing the first worker finished was handled again"
    );
    worker.shutdown().await;
}

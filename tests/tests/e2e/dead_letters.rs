use std::time::Duration;

use conveyor::dlq::headers;
use conveyor::{
    Context, DeadLetterKind, Group, HandlerError, HandlerOptions, Publisher, RetryPolicy, Worker,
};
use conveyor_tests::{
    Ping, Pong, Recorder, consumer_state, dead_letters, eventually, publish_raw, read_stream,
    server,
};

fn no_jitter(attempts: u32, initial: Duration) -> HandlerOptions {
    HandlerOptions::default().retry(RetryPolicy::exponential(attempts, initial).with_jitter(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_then_dead_letter_with_the_original_body() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("flaky").handle_with(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                Err::<(), _>(HandlerError::transient("upstream is down"))
            },
            no_jitter(3, Duration::from_millis(800)),
        ))
        .build()
        .unwrap()
        .spawn();
    let published = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();

    let letters = dead_letters(&conn, 1, Duration::from_secs(15)).await;
    assert_eq!(letters.len(), 1);
    let runs = recorder.all();
    assert_eq!(
        runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Backoff 0.8 s then 1.6 s (no jitter). The lower bound is strict; the upper bound allows
    // for a loaded machine.
    let gaps: Vec<Duration> = runs.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, expected) in gaps.iter().zip([800u64, 1600]) {
        let expected = Duration::from_millis(expected);
        assert!(
            *gap >= expected.mul_f64(0.95) && *gap <= expected + Duration::from_millis(1500),
            "gap {gap:?}, expected about {expected:?} (all gaps {gaps:?})"
        );
    }

    let letter = &letters[0];
    assert_eq!(letter.kind, DeadLetterKind::Handler);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.group, "flaky");
    assert_eq!(letter.original_subject, "events.acme.test.ping");
    assert_eq!(letter.stream_sequence, published.stream_sequence);
    assert!(
        letter.error.contains("upstream is down"),
        "{}",
        letter.error
    );
    let original = conn
        .jetstream()
        .get_stream("EVENTS")
        .await
        .unwrap()
        .direct_get(published.stream_sequence)
        .await
        .unwrap();
    assert_eq!(letter.body, original.payload, "body unchanged");

    let raw = read_stream(&conn, "DLQ", 1, Duration::from_secs(1)).await;
    let m = &raw[0].message;
    assert_eq!(m.subject.as_str(), "dlq.flaky.acme.test.ping");
    let h = m.headers.as_ref().unwrap();
    assert_eq!(
        h.get("Nats-Msg-Id").unwrap().as_str(),
        format!("dlq:flaky:{}", published.stream_sequence)
    );
    assert!(h.get(headers::FAILED_AT).is_some());

    // The original was terminated: nothing pending, nothing redelivered later.
    eventually(Duration::from_secs(5), "original settled", || async {
        let (pending, ack_pending, _) = consumer_state(&conn, "flaky").await;
        pending == 0 && ack_pending == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(recorder.all().len(), 3);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_permanent_errors_skip_retries() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("api").handle_with(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                if ctx.attempt() == 1 {
                    Err(HandlerError::retry_after(
                        Duration::from_millis(300),
                        "429 Too Many Requests",
                    ))
                } else {
                    Err(HandlerError::permanent("422 unknown customer"))
                }
            },
            // A long backoff proves the 300 ms came from retry_after.
            no_jitter(5, Duration::from_secs(30)),
        ))
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    let letters = dead_letters(&conn, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 2, "permanent: no third attempt");
    assert!(letters[0].error.contains("422"));
    let runs = recorder.all();
    assert_eq!(runs.len(), 2);
    let gap = runs[1].at - runs[0].at;
    assert!(
        gap >= Duration::from_millis(285) && gap < Duration::from_secs(3),
        "gap {gap:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_at_once_and_the_worker_keeps_going() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("strict")
                .handle(|_: Ping, ctx: Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "ping");
                    Ok::<(), HandlerError>(())
                })
                .handle(|_: Pong, ctx: Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "pong");
                    Ok::<(), HandlerError>(())
                }),
        )
        .build()
        .unwrap()
        .spawn();
    let envelope = |tenant: &str, ty: &str, data: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"raw-{ty}-{tenant}","source":"raw","type":"{ty}","tenantid":"{tenant}","datacontenttype":"application/json","data":{data}}}"#
        )
    };
    let cases: Vec<(&str, String, DeadLetterKind)> = vec![
        (
            "events.acme.test.ping",
            "not json at all".into(),
            DeadLetterKind::Decode,
        ),
        (
            "events.acme.test.ping",
            envelope("acme", "test.ping", r#"{"n":"not a number"}"#),
            DeadLetterKind::Decode,
        ),
        (
            "events.acme.test.ping",
            // A type on the subject of another: the envelope contradicts its subject.
            envelope("acme", "test.unknown", r#"{"n":1}"#),
            DeadLetterKind::TypeMismatch,
        ),
        (
            "events.acme.test.ping",
            envelope("globex", "test.ping", r#"{"n":1}"#),
            DeadLetterKind::TenantMismatch,
        ),
        (
            "events.acme.test.ping",
            envelope("a.b", "test.ping", r#"{"n":1}"#),
            DeadLetterKind::TenantMismatch,
        ),
        (
            "events.acme.test.ping",
            envelope("acme", "test.pong", r#"{"n":1}"#),
            DeadLetterKind::TypeMismatch,
        ),
    ];
    for (subject, body, _) in &cases {
        publish_raw(&conn, subject, body.as_bytes()).await;
    }
    let good = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();

    let letters = dead_letters(&conn, cases.len(), Duration::from_secs(10)).await;
    assert_eq!(letters.len(), cases.len());
    for (i, (_, body, kind)) in cases.iter().enumerate() {
        let letter = letters
            .iter()
            .find(|l| l.stream_sequence == i as u64 + 1)
            .unwrap_or_else(|| panic!("no dead letter for case {i}"));
        assert_eq!(letter.kind, *kind, "case {i}: {}", letter.error);
        assert_eq!(
            letter.attempts, 1,
            "case {i}: dead-lettered on the first delivery"
        );
        assert_eq!(letter.body.as_ref(), body.as_bytes());
    }
    let wrong_field = letters.iter().find(|l| l.stream_sequence == 2).unwrap();
    assert!(
        wrong_field.error.contains("data.n"),
        "the decode error names the field: {}",
        wrong_field.error
    );
    recorder
        .wait_for(Duration::from_secs(5), "the valid event", |s| {
            s.iter().any(|r| r.event_id == good.id)
        })
        .await;
    assert_eq!(
        recorder.all().len(),
        1,
        "no poison message reached a handler"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_a_failed_attempt_not_a_dead_worker() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("panicky").handle_with(
            |e: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                if e.n == 0 || ctx.attempt() == 1 {
                    panic!("boom on attempt {}", ctx.attempt());
                }
                Ok::<(), HandlerError>(())
            },
            no_jitter(2, Duration::from_millis(100)),
        ))
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    let always = publisher.publish("acme", &Ping { n: 0 }).await.unwrap();
    let once = publisher.publish("acme", &Ping { n: 1 }).await.unwrap();
    let letters = dead_letters(&conn, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Panic);
    assert_eq!(letters[0].stream_sequence, always.stream_sequence);
    assert!(
        letters[0].error.contains("boom on attempt 2"),
        "{}",
        letters[0].error
    );
    recorder
        .wait_for(Duration::from_secs(5), "the second attempt", |s| {
            s.iter().any(|r| r.event_id == once.id && r.attempt == 2)
        })
        .await;
    // The worker still handles new events.
    let after = publisher.publish("acme", &Ping { n: 5 }).await.unwrap();
    recorder
        .wait_for(Duration::from_secs(5), "a later event", |s| {
            s.iter().any(|r| r.event_id == after.id)
        })
        .await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried_and_the_last_one_dead_lettered() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let options = no_jitter(2, Duration::from_millis(100)).timeout(Duration::from_millis(300));
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("slow").handle_with(
            |e: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                if e.n == 0 || ctx.attempt() == 1 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<(), HandlerError>(())
            },
            options,
        ))
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    let stuck = publisher.publish("acme", &Ping { n: 0 }).await.unwrap();
    let once = publisher.publish("acme", &Ping { n: 1 }).await.unwrap();
    let letters = dead_letters(&conn, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Timeout);
    assert_eq!(letters[0].stream_sequence, stuck.stream_sequence);
    recorder
        .wait_for(Duration::from_secs(5), "the retried event", |s| {
            s.iter().any(|r| r.event_id == once.id && r.attempt == 2)
        })
        .await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_handler_from_being_redelivered() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("long")
                .ack_wait(Duration::from_millis(900))
                .handle_with(
                    |_: Ping, ctx: Context<Recorder>| async move {
                        ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                        tokio::time::sleep(Duration::from_millis(4000)).await;
                        Ok::<(), HandlerError>(())
                    },
                    HandlerOptions::default().timeout(Duration::from_secs(30)),
                ),
        )
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the ack", || async {
        !recorder.all().is_empty() && consumer_state(&conn, "long").await.1 == 0
    })
    .await;
    let (_, _, redelivered) = consumer_state(&conn, "long").await;
    assert_eq!(recorder.all().len(), 1, "ran once, over 4x the ack wait");
    assert_eq!(redelivered, 0);
    worker.shutdown().await;
}

//! Delayed events and long retries: stored now, run at their time (not before, once, across a
//! server restart), listed and cancelled while they wait, never holding a group's slots, and
//! never a way into another tenant.

use std::time::{Duration, Instant};

use conveyor::delay::{ScheduledKind, scheduled};
use conveyor::{
    Context, DeadLetterKind, EventOptions, Group, HandlerError, HandlerOptions, Publisher,
    RetryPolicy, TenantId, Worker, WorkerHandle,
};
use conveyor_tests::{Ping, Recorder, dead_letters, eventually, server};

fn start(conn: &conveyor::Connection, recorder: &Recorder) -> WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("reminders").handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state()
                    .record(ctx.event_id(), ctx.attempt(), ctx.tenant().as_str());
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_run_at_their_time_once_across_a_server_restart() {
    let (mut server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start(&conn, &recorder);
    let publisher = Publisher::new(&conn);
    let sent = Instant::now();
    let mut due = Vec::new();
    for (n, delay) in [(0u32, 3u64), (1, 4), (2, 5)] {
        let options = EventOptions::default()
            .id(format!("reminder-{n}"))
            .delay(Duration::from_secs(delay));
        let published = publisher
            .publish_with("acme", &Ping { n }, options.clone())
            .await
            .unwrap();
        assert!(published.deliver_at.is_some());
        assert!(published.subject.starts_with("delayed.acme.e."));
        // The same delayed event again is stored once.
        let again = publisher
            .publish_with("acme", &Ping { n }, options)
            .await
            .unwrap();
        assert!(
            again.duplicate,
            "a re-published delayed event is a duplicate"
        );
        due.push((published.id, sent + Duration::from_secs(delay)));
    }
    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let by_time = publisher
        .publish_with(
            "acme",
            &Ping { n: 3 },
            EventOptions::default().id("reminder-3").deliver_at(at),
        )
        .await
        .unwrap();
    due.push((by_time.id, sent + Duration::from_secs(3)));

    let waiting = scheduled(&conn, Some(&TenantId::parse("acme").unwrap()), 100)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 4, "{waiting:?}");
    assert!(waiting.iter().all(|s| s.kind == ScheduledKind::Event
        && s.event_type == "test.ping"
        && s.target == "events.acme.test.ping"
        && s.due.is_some()));

    // The schedules are in the stream: they survive a server restart.
    server.restart().unwrap();
    let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
    recorder
        .wait_for_all(Duration::from_secs(30), "the delayed events", &ids)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.shutdown().await;
    let runs = recorder.all();
    assert_eq!(runs.len(), 4, "each delayed event ran once: {runs:?}");
    for (id, not_before) in &due {
        let run = runs.iter().find(|r| &r.event_id == id).unwrap();
        // The server fires on the millisecond of the due time or later.
        assert!(
            run.at + Duration::from_millis(5) >= *not_before,
            "{id} ran {:?} early",
            *not_before - run.at
        );
    }
    assert!(scheduled(&conn, None, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_delayed_event_never_runs() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start(&conn, &recorder);
    let acme = TenantId::parse("acme").unwrap();
    let publisher = Publisher::new(&conn);
    let cancelled = publisher
        .publish_with(
            "acme",
            &Ping { n: 0 },
            EventOptions::default().delay(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let kept = publisher
        .publish_with(
            "acme",
            &Ping { n: 1 },
            EventOptions::default().delay(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let c = conveyor::control::cancel(&conn, &acme, &cancelled.id, None, "not needed")
        .await
        .unwrap();
    assert_eq!(c.unscheduled, Some(1));
    let left = scheduled(&conn, None, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, kept.id);
    recorder
        .wait_for_all(
            Duration::from_secs(20),
            "the kept event",
            std::slice::from_ref(&kept.id),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.shutdown().await;
    assert!(
        recorder.all().iter().all(|r| r.event_id != cancelled.id),
        "a cancelled delayed event ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_retries_wait_as_delayed_copies_and_hold_no_slots() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    // Events 0..4 fail with a 1-hour retry, event 5 once with a 2-second retry; every other
    // attempt succeeds.
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("partner")
                .max_ack_pending(4)
                .delayed_retry_after(Duration::from_secs(1))
                .handler_defaults(
                    HandlerOptions::default().retry(
                        RetryPolicy::exponential(5, Duration::from_secs(1))
                            .with_max_delay(Duration::from_secs(7200)),
                    ),
                )
                .handle(|p: Ping, ctx: Context<Recorder>| async move {
                    ctx.state()
                        .record(ctx.event_id(), ctx.attempt(), ctx.tenant().as_str());
                    match p.n {
                        0..=3 => Err(HandlerError::retry_after(
                            Duration::from_secs(3600),
                            "partner API down",
                        )),
                        5 if ctx.attempt() == 1 => Err(HandlerError::retry_after(
                            Duration::from_secs(2),
                            "rate limited",
                        )),
                        _ => Ok(()),
                    }
                }),
        )
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    let mut stuck = Vec::new();
    for n in 0..4 {
        stuck.push(publisher.publish("acme", &Ping { n }).await.unwrap().id);
    }
    recorder
        .wait_for_all(Duration::from_secs(20), "the four failing events", &stuck)
        .await;
    eventually(Duration::from_secs(10), "four delayed retries", || async {
        scheduled(&conn, None, 100).await.unwrap().len() == 4
    })
    .await;
    // All four wait for an hour, and the partition's limit of 4 unacked deliveries is free.
    let fifth = publisher.publish("acme", &Ping { n: 4 }).await.unwrap().id;
    recorder
        .wait_for_all(Duration::from_secs(10), "the fifth event", &[fifth])
        .await;
    let (_, ack_pending, _) = conveyor_tests::consumer_state(&conn, "partner").await;
    assert_eq!(ack_pending, 0, "a waiting retry holds a slot");
    let waiting = scheduled(&conn, None, 100).await.unwrap();
    for s in &waiting {
        assert_eq!(
            s.kind,
            ScheduledKind::Retry {
                group: "partner".into(),
                attempts: 1
            }
        );
        assert!(s.due.unwrap() > chrono::Utc::now() + chrono::Duration::minutes(59));
    }

    // A delayed retry comes back as the next attempt of the same event, for this group.
    let sixth = publisher.publish("acme", &Ping { n: 5 }).await.unwrap().id;
    recorder
        .wait_for(Duration::from_secs(20), "the retried event", |s| {
            s.iter().any(|r| r.event_id == sixth && r.attempt == 2)
        })
        .await;
    worker.shutdown().await;
    let attempts: Vec<u32> = recorder
        .all()
        .iter()
        .filter(|r| r.event_id == sixth)
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, [1, 2]);
    conveyor_tests::assert_no_dead_letters(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_cannot_deliver_into_another_tenant() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start(&conn, &recorder);
    // A publisher allowed only `delayed.acme.>` forges a schedule whose target and envelope
    // name globex: the target is a header, which subject permissions do not check.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(500);
    let body = conveyor_tests::ping_envelope("forged", "globex", 1);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Schedule", conveyor::delay::schedule_at(at).as_str());
    headers.insert("Nats-Schedule-Target", "events.globex.test.ping");
    conn.jetstream()
        .publish_with_headers(
            "delayed.acme.e.forged".to_owned(),
            headers,
            body.to_string().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let letters = dead_letters(&conn, 1, Duration::from_secs(15)).await;
    worker.shutdown().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::TenantMismatch);
    assert!(recorder.all().is_empty(), "the forged event ran");
}

fn start_recording_data(conn: &conveyor::Connection, recorder: &Recorder) -> WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("indexer").handle(|p: Ping, ctx: Context<Recorder>| async move {
                ctx.state()
                    .record(ctx.event_id(), ctx.attempt(), &p.n.to_string());
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_burst_runs_once_with_its_last_event() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start_recording_data(&conn, &recorder);
    let publisher = Publisher::new(&conn);
    // Long enough that no burst ends before it is listed, on a loaded machine too.
    let period = Duration::from_secs(3);
    let mut last = Instant::now();
    for n in 0..5 {
        publisher
            .publish_with(
                "acme",
                &Ping { n },
                EventOptions::default().debounce("doc-1", period),
            )
            .await
            .unwrap();
        // Another key and another tenant are bursts of their own.
        if n == 0 {
            publisher
                .publish_with(
                    "acme",
                    &Ping { n: 100 },
                    EventOptions::default().debounce("doc-2", period),
                )
                .await
                .unwrap();
            publisher
                .publish_with(
                    "globex",
                    &Ping { n: 200 },
                    EventOptions::default().debounce("doc-1", period),
                )
                .await
                .unwrap();
        }
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waiting = scheduled(&conn, None, 100).await.unwrap();
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    assert!(waiting.iter().any(|s| s.kind
        == ScheduledKind::Debounce {
            key: "doc-1".into()
        }));
    recorder
        .wait_for(Duration::from_secs(15), "three runs", |s| s.len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.shutdown().await;
    let runs = recorder.all();
    let mut data: Vec<&str> = runs.iter().map(|r| r.worker.as_str()).collect();
    data.sort_unstable();
    assert_eq!(
        data,
        ["100", "200", "4"],
        "one run per burst, with its last event"
    );
    let doc1 = runs.iter().find(|r| r.worker == "4").unwrap();
    assert!(
        doc1.at >= last + period - Duration::from_millis(5),
        "ran before the burst ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_burst_runs_at_its_max_wait_while_events_keep_coming() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start_recording_data(&conn, &recorder);
    let publisher = Publisher::new(&conn);
    let first = Instant::now();
    // An event every 300 ms for 3.3 s: never a 1-second pause, but at most 1.5 s of waiting.
    for n in 0..12 {
        publisher
            .publish_with(
                "acme",
                &Ping { n },
                EventOptions::default()
                    .debounce("feed", Duration::from_secs(1))
                    .debounce_max_wait(Duration::from_millis(1500)),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let done = Instant::now();
    recorder
        .wait_for(Duration::from_secs(10), "the last burst", |s| {
            s.iter().any(|r| r.worker == "11")
        })
        .await;
    worker.shutdown().await;
    let runs = recorder.all();
    assert!(runs.len() >= 2 && runs.len() <= 4, "{runs:?}");
    let early = runs.iter().filter(|r| r.at < done).count();
    assert!(early >= 1, "no run while events kept coming: {runs:?}");
    assert!(
        runs[0].at - first < Duration::from_millis(3000),
        "the first burst waited {:?}",
        runs[0].at - first
    );
}

//! Run history: records of every attempt, batched into `HISTORY`, on by default; progress.

use std::time::Duration;

use conveyor::control::{ProgressUpdate, progress_subject};
use conveyor::history::{self, HISTORY_STREAM, RunQuery, RunState};
use conveyor::{
    Context, Group, HandlerError, HandlerOptions, HandlerResult, Publisher, RetryPolicy, Worker,
};
use conveyor_tests::{Ping, dead_letters, eventually, server};
use futures::StreamExt;

fn fast_retries(attempts: u32) -> HandlerOptions {
    HandlerOptions::default()
        .retry(RetryPolicy::exponential(attempts, Duration::from_millis(100)).with_jitter(0.0))
}

async fn flaky(e: Ping, ctx: Context) -> HandlerResult {
    if e.n == 9 {
        return Err(HandlerError::permanent("invalid account 9"));
    }
    if ctx.attempt() < 3 {
        return Err(HandlerError::transient(std::io::Error::other(format!(
            "timeout talking to the bank (attempt {})",
            ctx.attempt()
        ))));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_records_retries_and_the_final_outcome() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let ok = publisher.publish("acme", &Ping { n: 1 }).await.unwrap();
    let dead = publisher.publish("acme", &Ping { n: 9 }).await.unwrap();
    let worker = Worker::builder(&conn, ())
        .group(
            // History is on by default.
            Group::new("ledger").handle_with(flaky, fast_retries(5)),
        )
        .build()
        .unwrap()
        .spawn();
    dead_letters(&conn, 1, Duration::from_secs(10)).await;
    eventually(
        Duration::from_secs(10),
        "three attempts recorded",
        || async {
            history::runs_of_event(&conn, &ok.id)
                .await
                .is_ok_and(|runs| runs.last().is_some_and(|r| r.state == RunState::Succeeded))
        },
    )
    .await;
    worker.shutdown().await;

    let runs = history::runs_of_event(&conn, &ok.id).await.unwrap();
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        vec![RunState::Retrying, RunState::Retrying, RunState::Succeeded]
    );
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.attempt, u32::try_from(i).unwrap() + 1);
        assert_eq!((r.group.as_str(), r.tenant.as_str()), ("ledger", "acme"));
        let path: Vec<RunState> = r.transitions.iter().map(|t| t.state).collect();
        assert_eq!(path[..2], [RunState::Queued, RunState::Running]);
        assert!(r.duration_ms.is_some() && r.finished_at.is_some());
    }
    assert!(runs[0].error.as_deref().unwrap().contains("attempt 1"));
    assert!(runs[0].retry_at.is_some());
    assert!(runs[1].error.as_deref().unwrap().contains("attempt 2"));
    assert!(runs[2].error.is_none());

    let failed = history::recent_failures(&conn, "ledger", Some("acme"), 10)
        .await
        .unwrap();
    assert_eq!(
        failed.len(),
        1,
        "the succeeded event is no failure: {failed:?}"
    );
    assert_eq!(failed[0].event_id, dead.id);
    assert_eq!(failed[0].state, RunState::DeadLettered);
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid account 9")
    );
}

async fn long_job(e: Ping, ctx: Context) -> HandlerResult {
    for step in 1..=e.n {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let percent = u8::try_from(step * 100 / e.n).unwrap();
        ctx.progress(percent, format!("step {step} of {}", e.n))
            .await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_updates_arrive_on_the_progress_subject_and_in_history() {
    let (_server, conn) = server().await;
    let mut updates = conn.client().subscribe("progress.acme.>").await.unwrap();
    let job = Publisher::new(&conn)
        .publish("acme", &Ping { n: 4 })
        .await
        .unwrap();
    let worker = Worker::builder(&conn, ())
        .group(Group::new("analysis").history(true).handle(long_job))
        .build()
        .unwrap()
        .spawn();
    let mut got = Vec::new();
    while got.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(10), updates.next())
            .await
            .expect("progress update")
            .unwrap();
        assert_eq!(
            msg.subject.as_str(),
            progress_subject("acme", "analysis", &job.id)
        );
        let update: ProgressUpdate = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(update.event_id, job.id);
        assert_eq!(update.group, "analysis");
        got.push((update.percent, update.message));
    }
    assert_eq!(
        got,
        vec![
            (25, "step 1 of 4".to_owned()),
            (50, "step 2 of 4".to_owned()),
            (75, "step 3 of 4".to_owned()),
            (100, "step 4 of 4".to_owned()),
        ]
    );
    eventually(Duration::from_secs(10), "run succeeded", || async {
        history::runs_of_event(&conn, &job.id)
            .await
            .is_ok_and(|r| r.len() == 1 && r[0].state == RunState::Succeeded)
    })
    .await;
    let run = &history::runs_of_event(&conn, &job.id).await.unwrap()[0];
    let progress = run.progress.as_ref().unwrap();
    assert_eq!(
        (progress.percent, progress.message.as_str()),
        (100, "step 4 of 4")
    );
    worker.shutdown().await;
}

async fn noop(_e: Ping, _ctx: Context) -> HandlerResult {
    Ok(())
}

async fn history_messages(conn: &conveyor::Connection) -> u64 {
    conn.jetstream()
        .get_stream(HISTORY_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_batched_and_all_written_by_a_graceful_shutdown() {
    const N: usize = 2000;
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let tenants = ["acme", "globex", "initech"];
    let summary = publisher
        .publish_many((0..N).map(|n| {
            (
                tenants[n % tenants.len()],
                Ping {
                    n: u32::try_from(n).unwrap(),
                },
            )
        }))
        .await;
    assert_eq!(summary.stored, u64::try_from(N).unwrap());

    let worker = Worker::builder(&conn, ())
        .group(Group::new("bulk").handle(noop))
        .group(Group::new("quiet").history(false).handle(noop))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(60), "every event handled", || async {
        let bulk = conveyor::partition::group_counts(&conn, "bulk").await;
        let quiet = conveyor::partition::group_counts(&conn, "quiet").await;
        [bulk, quiet].iter().all(|c| {
            c.as_ref()
                .is_ok_and(|c| c.pending == 0 && c.ack_pending == 0)
        })
    })
    .await;
    // Stopped at once: the records of the last interval are written by the shutdown.
    worker.shutdown().await;

    let runs = history::find(
        &conn,
        &RunQuery {
            group: Some("bulk".into()),
            ..RunQuery::default()
        },
        usize::MAX,
    )
    .await
    .unwrap();
    assert_eq!(runs.len(), N, "one record per event");
    assert!(
        runs.iter()
            .all(|r| r.state == RunState::Succeeded && r.attempt == 1)
    );
    for tenant in tenants {
        assert!(runs.iter().any(|r| r.tenant == tenant), "{tenant}");
    }
    // Read back from the newest records: the ten newest runs, from the newest end.
    let newest = history::find(
        &conn,
        &RunQuery {
            group: Some("bulk".into()),
            ..RunQuery::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(newest.len(), 10);
    let hundredth = runs[99].updated_at();
    assert!(
        newest.iter().all(|r| r.updated_at() >= hundredth),
        "the newest runs come from the end of the history"
    );
    let one = &runs[N / 2];
    let found = history::runs_of_event(&conn, &one.event_id).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].group.as_str(), found[0].tenant.as_str()),
        ("bulk", one.tenant.as_str())
    );

    let quiet = history::find(
        &conn,
        &RunQuery {
            group: Some("quiet".into()),
            ..RunQuery::default()
        },
        usize::MAX,
    )
    .await
    .unwrap();
    assert!(
        quiet.is_empty(),
        "a group with history off records nothing: {quiet:?}"
    );
    let messages = history_messages(&conn).await;
    assert!(
        messages > 0 && messages <= u64::try_from(N / 2).unwrap(),
        "{N} records in {messages} messages: appended in batches"
    );
}

/// Every record stored in the history, in order (superseded ones included).
async fn stored_records(conn: &conveyor::Connection) -> Vec<history::RunRecord> {
    let stream = conn.jetstream().get_stream(HISTORY_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut records = Vec::new();
    let total = history_messages(conn).await;
    for _ in 0..total {
        let msg = messages.next().await.unwrap().unwrap();
        records.extend(history::decode_batch(&msg.payload));
    }
    records
}

async fn short_wait(_e: Ping, _ctx: Context) -> HandlerResult {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

/// Event 99 runs until released; the others end at once.
async fn until_released(
    e: Ping,
    ctx: Context<std::sync::Arc<tokio::sync::Notify>>,
) -> HandlerResult {
    if e.n == 99 {
        ctx.state().notified().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_wait_writes_one_record_and_a_long_run_shows_running() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    for n in 0..50 {
        publisher.publish("acme", &Ping { n }).await.unwrap();
    }
    let worker = Worker::builder(&conn, ())
        .group(Group::new("short").handle(short_wait))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(30), "every event handled", || async {
        conveyor::partition::group_counts(&conn, "short")
            .await
            .is_ok_and(|c| c.pending == 0 && c.ack_pending == 0)
    })
    .await;
    worker.shutdown().await;
    let records = stored_records(&conn).await;
    assert_eq!(records.len(), 50, "one record per run: {records:?}");
    assert!(records.iter().all(|r| r.state == RunState::Succeeded
        && r.transitions.iter().map(|t| t.state).collect::<Vec<_>>()
            == [RunState::Queued, RunState::Running, RunState::Succeeded]));

    // A run still going at the next flush is recorded as running, then as succeeded.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let long = publisher.publish("acme", &Ping { n: 99 }).await.unwrap();
    let worker = Worker::builder(&conn, release.clone())
        .group(Group::new("long").handle(until_released))
        .build()
        .unwrap()
        .spawn();
    eventually(
        Duration::from_secs(10),
        "the run recorded as running",
        || async {
            history::runs_of_event(&conn, &long.id)
                .await
                .is_ok_and(|r| r.len() == 1 && r[0].state == RunState::Running)
        },
    )
    .await;
    release.notify_one();
    eventually(
        Duration::from_secs(10),
        "the run recorded as succeeded",
        || async {
            history::runs_of_event(&conn, &long.id)
                .await
                .is_ok_and(|r| r.len() == 1 && r[0].state == RunState::Succeeded)
        },
    )
    .await;
    worker.shutdown().await;
}

//! Replaying dead letters: only to the event subject the letter's own DLQ subject names, only for
//! the group that failed, once, and over any number of letters.

use std::time::Duration;

use conveyor::dlq::{self, StoredLetter, headers};
use conveyor::{
    Context, DeadLetterErrorKind, Group, HandlerError, HandlerOptions, Publisher, RetryPolicy,
    Worker,
};
use conveyor_tests::{Ping, Recorder, dead_letters, events_count, server};
use futures::StreamExt;

/// Publishes a dead letter as a worker could: any headers, on a `dlq.` subject.
async fn forge(conn: &conveyor::Connection, dlq_subject: &str, original: &str, id: &str) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::ORIGINAL_SUBJECT, original);
    h.insert(headers::STREAM_SEQUENCE, "1");
    h.insert(headers::GROUP, "billing");
    h.insert(headers::ATTEMPTS, "1");
    h.insert(headers::ERROR_KIND, "handler");
    h.insert(headers::ERROR, "forged");
    h.insert(headers::FAILED_AT, "2026-12-01T00:00:00Z");
    h.insert("Nats-Msg-Id", id);
    conn.jetstream()
        .publish_with_headers(dlq_subject.to_owned(), h, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn all_letters(conn: &conveyor::Connection, bodies: bool) -> Vec<StoredLetter> {
    dlq::letters(conn, bodies)
        .map(|l| l.unwrap())
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_letter_is_never_replayed_outside_its_own_event_subject() {
    let (_server, conn) = server().await;
    forge(
        &conn,
        "dlq.billing.acme.order.created",
        "$JS.API.STREAM.DELETE.EVENTS",
        "f1",
    )
    .await;
    forge(
        &conn,
        "dlq.billing.acme.order.created",
        "events.globex.order.created",
        "f2",
    )
    .await;
    forge(
        &conn,
        "dlq.billing.acme.order.created",
        "events.acme.order.created",
        "f3",
    )
    .await;
    let letters = all_letters(&conn, true).await;
    assert_eq!(letters.len(), 3);
    for forged in &letters[..2] {
        let e = dlq::replay(&conn, forged).await.unwrap_err();
        assert_eq!(e.kind(), DeadLetterErrorKind::NotReplayable, "{e}");
    }
    assert_eq!(events_count(&conn).await, 0, "nothing was published");
    assert!(
        conn.jetstream().get_stream("EVENTS").await.is_ok(),
        "EVENTS still exists"
    );
    // The consistent one goes where its DLQ subject says, once, even when retried.
    let seq = dlq::replay(&conn, &letters[2]).await.unwrap();
    let again = dlq::replay(&conn, &letters[2]).await;
    assert!(again.is_err(), "it left the DLQ after the first replay");
    assert_eq!(
        events_count(&conn).await,
        1,
        "a retried replay is stored once"
    );
    let stored = conn
        .jetstream()
        .get_stream("EVENTS")
        .await
        .unwrap()
        .direct_get(seq)
        .await
        .unwrap();
    assert_eq!(stored.subject.as_str(), "events.~.15.acme.order.created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_runs_only_in_the_group_that_failed() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let once = || HandlerOptions::default().retry(RetryPolicy::no_retry());
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("flaky").handle_with(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "flaky");
                if ctx
                    .state()
                    .all()
                    .iter()
                    .filter(|r| r.worker == "flaky")
                    .count()
                    == 1
                {
                    return Err(HandlerError::permanent("first run fails"));
                }
                Ok(())
            },
            once(),
        ))
        .group(Group::new("steady").handle_with(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "steady");
                Ok::<(), HandlerError>(())
            },
            once(),
        ))
        .build()
        .unwrap()
        .spawn();
    Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    assert_eq!(
        dead_letters(&conn, 1, Duration::from_secs(10)).await.len(),
        1
    );
    let letters = all_letters(&conn, true).await;
    dlq::replay(&conn, &letters[0]).await.unwrap();
    recorder
        .wait_for(
            Duration::from_secs(10),
            "the replay in the failed group",
            |s| s.iter().filter(|r| r.worker == "flaky").count() == 2,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = recorder
        .all()
        .iter()
        .filter(|r| r.worker == "steady")
        .count();
    assert_eq!(steady, 1, "the group that succeeded did not run it again");
    assert!(all_letters(&conn, false).await.is_empty());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_reads_every_letter_in_batches() {
    let (_server, conn) = server().await;
    let n = 2_500;
    let js = conn.jetstream();
    let mut acks = Vec::new();
    for i in 0..n {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::ORIGINAL_SUBJECT, "events.acme.test.ping");
        h.insert(headers::STREAM_SEQUENCE, i.to_string().as_str());
        h.insert(headers::GROUP, "bulk");
        h.insert(headers::ATTEMPTS, "1");
        h.insert(headers::ERROR_KIND, "handler");
        h.insert(headers::ERROR, "x");
        h.insert(headers::FAILED_AT, "2026-12-01T00:00:00Z");
        acks.push(
            js.publish_with_headers("dlq.bulk.acme.test.ping", h, "{}".into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let listed = all_letters(&conn, false).await;
    assert_eq!(listed.len(), n);
    assert!(listed.iter().all(|l| l.letter.body.is_empty()), "no bodies");
    let sequences: Vec<u64> = listed.iter().map(|l| l.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "oldest first");
}

//! Two versions of one group running side by side, as in a rolling deploy.

use std::time::Duration;

use conveyor::{Context, DeadLetterKind, Group, HandlerError, Publisher, Worker};
use conveyor_tests::{
    Ping, Pong, Recorder, consumer_of, consumer_state, dead_letters, eventually, server,
};

async fn ping(_: Ping, ctx: Context<Recorder>) -> Result<(), HandlerError> {
    ctx.state().record(ctx.event_id(), ctx.attempt(), "ping");
    Ok(())
}

async fn pong(_: Pong, ctx: Context<Recorder>) -> Result<(), HandlerError> {
    ctx.state().record(ctx.event_id(), ctx.attempt(), "pong");
    Ok(())
}

fn old_version(conn: &conveyor::Connection, recorder: &Recorder) -> conveyor::WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("app")
                .concurrency(8)
                .unknown_type_grace(Duration::from_secs(2))
                .handle(ping),
        )
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_new_versions_of_a_group_lose_and_dead_letter_nothing() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let new = Worker::builder(&conn, recorder.clone())
        .group(Group::new("app").concurrency(8).handle(ping).handle(pong))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "the consumer", || async {
        conn.jetstream()
            .get_stream("EVENTS")
            .await
            .unwrap()
            .consumer_info(consumer_of("app", "acme"))
            .await
            .is_ok()
    })
    .await;
    // The old version starts after the new one: it keeps the new type in the filter.
    let old = old_version(&conn, &recorder);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = conn
        .jetstream()
        .get_stream("EVENTS")
        .await
        .unwrap()
        .consumer_info(consumer_of("app", "acme"))
        .await
        .unwrap();
    assert!(
        info.config.filter_subjects.contains(&format!(
            "events.~.{}.*.test.pong",
            conveyor::partition::partition_of("acme")
        )),
        "{:?}",
        info.config.filter_subjects
    );
    let publisher = Publisher::new(&conn);
    let pongs: Vec<String> =
        conveyor_tests::published_ids(&publisher, (0..40).map(|n| ("acme", Pong { n }))).await;
    publisher
        .publish_many((0..40).map(|n| ("acme", Ping { n })))
        .await;
    eventually(Duration::from_secs(20), "every event handled", || async {
        let counts = recorder.counts();
        counts.len() == 80
    })
    .await;
    let runs = recorder.all();
    assert!(
        runs.iter()
            .filter(|r| pongs.contains(&r.event_id))
            .all(|r| r.worker == "pong" && r.attempt == 1),
        "hand-backs by the old version are not attempts"
    );
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());

    // Once no process handles the type, it still ends in the dead letters.
    new.shutdown().await;
    let orphan = publisher.publish("acme", &Pong { n: 99 }).await.unwrap();
    let letters = dead_letters(&conn, 1, Duration::from_secs(15)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::UnknownType);
    assert_eq!(letters[0].stream_sequence, orphan.stream_sequence);
    eventually(Duration::from_secs(5), "settled", || async {
        consumer_state(&conn, "app").await.1 == 0
    })
    .await;
    old.shutdown().await;
}

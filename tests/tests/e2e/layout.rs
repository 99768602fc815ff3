//! Events stored in an earlier subject layout of `EVENTS` are handled once after the stream is
//! switched to the current one, and the earlier filters go once those events are gone.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use conveyor::layout::EARLIER_LAYOUT_UNTIL;
use conveyor::partition::{consumer_name, partition_of};
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor::{Context, Group, HandlerError, Publisher, Worker};
use conveyor_tests::{Ping, Recorder, eventually, publish_raw};
use futures::StreamExt;

fn ping(id: &str, n: u32) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"shop","type":"test.ping","tenantid":"acme","datacontenttype":"application/json","data":{{"n":{n}}}}}"#
    )
}

fn app_worker(conn: &conveyor::Connection, recorder: &Recorder) -> conveyor::WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("app").handle(|_: Ping, ctx: Context<Recorder>| async move {
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
async fn events_stored_before_partitions_are_handled_once() {
    conveyor_tests::init_tracing();
    let server = conveyor::testing::NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    // A stream as it was provisioned before partitions: no subject transform.
    let mut legacy = Topology::default().stream_configs()[0].clone();
    legacy.subject_transform = None;
    conn.jetstream().create_stream(legacy).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..6 {
        let id = format!("legacy-{n}");
        let body = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"shop","type":"test.ping","tenantid":"acme","datacontenttype":"application/json","data":{{"n":{n}}}}}"#
        );
        publish_raw(&conn, "events.acme.test.ping", body.as_bytes()).await;
        ids.push(id);
    }
    // The group's single consumer of that time handled the first three.
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let old = stream
        .create_consumer(pull::Config {
            durable_name: Some("app".into()),
            filter_subjects: vec!["events.*.test.ping".into()],
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = old.fetch().max_messages(3).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    // The upgrade: the stream gets its transform, the group its partition consumers.
    provision(&conn, &Topology::default()).await.unwrap();
    let recorder = Recorder::default();
    let worker = app_worker(&conn, &recorder);
    let new = Publisher::new(&conn)
        .publish("acme", &Ping { n: 6 })
        .await
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(20), "the new event", |s| {
            s.iter().any(|r| r.event_id == new.id)
        })
        .await;
    eventually(Duration::from_secs(10), "the old backlog handled", || {
        let recorder = recorder.clone();
        let ids = ids.clone();
        async move {
            let all = recorder.all();
            ids[3..]
                .iter()
                .all(|id| all.iter().any(|r| &r.event_id == id))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = recorder.all();
    worker.shutdown().await;
    assert!(
        ids[..3]
            .iter()
            .all(|id| all.iter().all(|r| &r.event_id != id)),
        "events the old consumer acked ran again: {all:?}"
    );
    assert_eq!(all.len(), 4, "{all:?}");
    let stored = stream.direct_get(7).await.unwrap();
    assert_eq!(
        stored.subject.as_str(),
        format!("events.~.{}.acme.test.ping", partition_of("acme"))
    );
    assert!(
        stream
            .consumer_info(&consumer_name("app", 0))
            .await
            .unwrap()
            .config
            .filter_subjects
            .contains(&"events.*.test.ping".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_tenant_first_are_handled_once_after_the_switch() {
    conveyor_tests::init_tracing();
    let server = conveyor::testing::NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    // The stream and a group's consumer as an earlier version made them: the partition after
    // the tenant, consumers filtering `events.*.<p>.<type>`.
    let p = partition_of("acme");
    let mut earlier = Topology::default().stream_configs()[0].clone();
    earlier.subject_transform = Some(async_nats::jetstream::stream::SubjectTransform {
        source: "events.*.>".into(),
        destination: "events.{{wildcard(1)}}.{{partition(16,1)}}.>".into(),
    });
    let stream = conn.jetstream().create_stream(earlier).await.unwrap();
    let ids: Vec<String> = (0..6).map(|n| format!("earlier-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        publish_raw(
            &conn,
            "events.acme.test.ping",
            ping(id, n as u32).as_bytes(),
        )
        .await;
    }
    assert_eq!(
        stream.direct_get(1).await.unwrap().subject.as_str(),
        format!("events.acme.{p}.test.ping")
    );
    let old = stream
        .create_consumer(pull::Config {
            durable_name: Some(consumer_name("app", p)),
            filter_subjects: vec![format!("events.*.{p}.test.ping")],
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = old.fetch().max_messages(2).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    provision(&conn, &Topology::default()).await.unwrap();
    let mut stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(
        info.config
            .metadata
            .get(EARLIER_LAYOUT_UNTIL)
            .map(String::as_str),
        Some("6"),
        "{:?}",
        info.config.metadata
    );
    let recorder = Recorder::default();
    let worker = app_worker(&conn, &recorder);
    let new = Publisher::new(&conn)
        .publish("acme", &Ping { n: 6 })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the new event and the rest of the old backlog",
        || {
            let all = recorder.all();
            let ids = ids.clone();
            let new = new.id.clone();
            async move {
                ids[2..]
                    .iter()
                    .chain(Some(&new))
                    .all(|id| all.iter().any(|r| &r.event_id == id))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = recorder.all();
    worker.shutdown().await;
    assert_eq!(
        all.len(),
        5,
        "each event once, the two acked ones not again: {all:?}"
    );
    assert_eq!(
        stream.direct_get(7).await.unwrap().subject.as_str(),
        format!("events.~.{p}.acme.test.ping")
    );
    let filters = |stream: async_nats::jetstream::stream::Stream| async move {
        stream
            .consumer_info(consumer_name("app", p))
            .await
            .unwrap()
            .config
            .filter_subjects
    };
    assert_eq!(
        filters(stream.clone()).await,
        [
            format!("events.*.{p}.test.ping"),
            format!("events.~.{p}.*.test.ping")
        ]
    );
    // Once the events of the earlier layout are gone, a worker binding drops their filters.
    stream.purge().filter("events.acme.>").await.unwrap();
    let worker = app_worker(&conn, &recorder);
    eventually(
        Duration::from_secs(10),
        "the earlier filters dropped",
        || {
            let stream = stream.clone();
            async move { filters(stream).await == [format!("events.~.{p}.*.test.ping")] }
        },
    )
    .await;
    worker.shutdown().await;
}

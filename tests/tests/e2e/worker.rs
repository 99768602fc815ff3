use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{
    BuildErrorKind, Connection, Context, Group, HandlerResult, Publisher, StartFrom, Worker,
};
use conveyor_schemas::commerce::{OrderCreated, OrderFulfilled};
use conveyor_tests::{
    Ping, Pong, Recorder, consumer_of, consumer_state, dead_letters, eventually, server,
};

#[derive(Clone, Default)]
struct Seen {
    recorder: Recorder,
    name: String,
    tenants: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn record_ping(_e: Ping, ctx: Context<Seen>) -> HandlerResult {
    ctx.state()
        .recorder
        .record(ctx.event_id(), ctx.attempt(), &ctx.state().name);
    Ok(())
}

async fn record_order(e: OrderCreated, ctx: Context<Seen>) -> HandlerResult {
    let s = ctx.state();
    s.recorder.record(ctx.event_id(), ctx.attempt(), &s.name);
    s.tenants.lock().unwrap().push((
        ctx.tenant().to_string(),
        e.order_id.to_string(),
        ctx.correlation_id().to_owned(),
    ));
    Ok(())
}

fn order(id: &str) -> OrderCreated {
    conveyor_tests::order(id, 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_events_of_two_tenants_and_acks_them() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let a = publisher.publish("acme", &order("o-1")).await.unwrap();
    let b = publisher.publish("globex", &order("o-2")).await.unwrap();

    let seen = Seen::default();
    let worker = Worker::builder(&conn, seen.clone())
        .group(Group::new("billing").handle(record_order))
        .build()
        .unwrap()
        .spawn();
    seen.recorder
        .wait_for(Duration::from_secs(10), "two orders", |s| s.len() == 2)
        .await;
    let mut tenants = seen.tenants.lock().unwrap().clone();
    tenants.sort();
    assert_eq!(
        tenants,
        vec![
            ("acme".into(), "o-1".into(), a.id.clone()),
            ("globex".into(), "o-2".into(), b.id.clone()),
        ],
        "tenant, payload, and the event's own id as correlation id"
    );
    eventually(Duration::from_secs(5), "acks", || async {
        consumer_state(&conn, "billing").await == (0, 0, 0)
    })
    .await;
    worker.shutdown().await;
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_get_every_event() {
    let (_server, conn) = server().await;
    let billing = Seen {
        name: "billing".into(),
        ..Default::default()
    };
    let shipping = Seen {
        name: "shipping".into(),
        ..Default::default()
    };
    let w1 = Worker::builder(&conn, billing.clone())
        .group(Group::new("billing").handle(record_ping))
        .build()
        .unwrap()
        .spawn();
    let w2 = Worker::builder(&conn, shipping.clone())
        .group(Group::new("shipping").handle(record_ping))
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    for n in 0..20 {
        publisher.publish("acme", &Ping { n }).await.unwrap();
    }
    for seen in [&billing, &shipping] {
        seen.recorder
            .wait_for(Duration::from_secs(10), "20 events", |s| s.len() >= 20)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(billing.recorder.counts().len(), 20);
    assert_eq!(shipping.recorder.counts().len(), 20);
    assert!(billing.recorder.counts().values().all(|&c| c == 1));
    assert!(shipping.recorder.counts().values().all(|&c| c == 1));
    w1.shutdown().await;
    w2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_group_and_handle_each_event_once() {
    let (server, conn) = server().await;
    let recorder = Recorder::default();
    let mut handles = Vec::new();
    for i in 0..3 {
        // Each worker has its own connection, as separate processes would.
        let own: Connection = server.connect().await.unwrap();
        let state = Seen {
            recorder: recorder.clone(),
            name: format!("w{i}"),
            ..Default::default()
        };
        handles.push(
            Worker::builder(&own, state)
                .group(Group::new("shared").concurrency(4).handle(record_ping))
                .build()
                .unwrap()
                .spawn(),
        );
    }
    // Let all three bind before the burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = (0..300).map(|n| ("acme", Ping { n }));
    Publisher::new(&conn)
        .publish_many(events)
        .await
        .into_result()
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(20), "300 events", |s| s.len() >= 300)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = recorder.counts();
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|&c| c == 1), "each event handled once");
    let workers: HashSet<String> = recorder.all().into_iter().map(|s| s.worker).collect();
    assert_eq!(workers.len(), 3, "every worker took a share: {workers:?}");
    for h in handles {
        h.shutdown().await;
    }
}

async fn fulfil(e: OrderCreated, ctx: Context<Seen>) -> HandlerResult {
    ctx.publish(&OrderFulfilled {
        order_id: e.order_id,
        tracking_number: None,
        fulfilled_at: chrono::Utc::now(),
    })
    .await?;
    Ok(())
}

type Chain = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_events_carry_causation_and_correlation() {
    let (_server, conn) = server().await;
    let chain: Chain = Arc::default();
    let c = chain.clone();
    let conn2 = conn.clone();
    let worker = Worker::builder(&conn, Seen::default())
        .group(Group::new("fulfilment").handle(fulfil))
        .group(
            Group::new("audit").handle(move |e: OrderFulfilled, ctx: Context<Seen>| {
                let c = c.clone();
                let conn = conn2.clone();
                async move {
                    // Read the stored envelope to see the attributes on the wire.
                    let s = conn.jetstream().get_stream("EVENTS").await?;
                    let m = s.direct_get(ctx.stream_sequence()).await?;
                    let env = conveyor::Envelope::<OrderFulfilled>::decode(&m.payload)?;
                    c.lock().unwrap().push((
                        e.order_id.to_string(),
                        env.causation_id,
                        env.correlation_id,
                    ));
                    Ok::<(), conveyor::HandlerError>(())
                }
            }),
        )
        .build()
        .unwrap()
        .spawn();
    let first = Publisher::new(&conn)
        .publish_with(
            "acme",
            &order("o-9"),
            conveyor::EventOptions::default().correlation_id("checkout-77"),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "follow-up handled", || async {
        !chain.lock().unwrap().is_empty()
    })
    .await;
    let got = chain.lock().unwrap()[0].clone();
    assert_eq!(
        got,
        (
            "o-9".into(),
            Some(first.id.clone()),
            Some("checkout-77".into())
        )
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn misconfigured_workers_fail_at_build_time() {
    let (_server, conn) = server().await;
    let kind = |r: Result<Worker<Seen>, conveyor::BuildError>| r.unwrap_err().kind();
    assert_eq!(
        kind(
            Worker::builder(&conn, Seen::default())
                .group(
                    Group::new("billing")
                        .handle(record_ping)
                        .handle(record_ping)
                )
                .build()
        ),
        BuildErrorKind::DuplicateHandler
    );
    for bad in ["", "a.b", "a b", "g>", "*"] {
        assert_eq!(
            kind(
                Worker::builder(&conn, Seen::default())
                    .group(Group::new(bad).handle(record_ping))
                    .build()
            ),
            BuildErrorKind::InvalidGroupName,
            "{bad:?}"
        );
    }
    assert_eq!(
        kind(
            Worker::builder(&conn, Seen::default())
                .group(Group::new("a").handle(record_ping))
                .group(Group::new("a").handle(record_ping))
                .build()
        ),
        BuildErrorKind::DuplicateGroup
    );
    assert_eq!(
        kind(
            Worker::builder(&conn, Seen::default())
                .group(Group::new("empty"))
                .build()
        ),
        BuildErrorKind::EmptyGroup
    );
    assert_eq!(
        kind(
            Worker::builder(&conn, Seen::default())
                .group(Group::new("zero").concurrency(0).handle(record_ping))
                .build()
        ),
        BuildErrorKind::InvalidConfig
    );
    assert_eq!(
        kind(Worker::builder(&conn, Seen::default()).build()),
        BuildErrorKind::NoGroups
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_starting_from_now_skips_history() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    publisher.publish("acme", &Pong { n: 1 }).await.unwrap();
    let seen = Seen::default();
    let worker = Worker::builder(&conn, seen.clone())
        .group(Group::new("fresh").start_from(StartFrom::Now).handle(
            |_: Pong, ctx: Context<Seen>| async move {
                ctx.state().recorder.record(ctx.event_id(), 1, "fresh");
                Ok::<(), conveyor::HandlerError>(())
            },
        ))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(5), "consumer bound", || async {
        conn.jetstream()
            .get_stream("EVENTS")
            .await
            .unwrap()
            .consumer_info(consumer_of("fresh", "acme"))
            .await
            .is_ok()
    })
    .await;
    let new = publisher.publish("acme", &Pong { n: 2 }).await.unwrap();
    seen.recorder
        .wait_for(Duration::from_secs(10), "the new event", |s| !s.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = seen.recorder.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event_id, new.id);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_handler_stores_its_follow_ups_once() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("fan").handle_with(
            |_: Ping, ctx: Context<Recorder>| async move {
                ctx.publish(&Pong { n: 1 }).await?;
                ctx.publish(&Pong { n: 2 }).await?;
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                if ctx.attempt() == 1 {
                    return Err(conveyor::HandlerError::transient("after the follow-ups"));
                }
                Ok(())
            },
            conveyor::HandlerOptions::default().retry(conveyor::RetryPolicy::exponential(
                3,
                Duration::from_millis(100),
            )),
        ))
        .build()
        .unwrap()
        .spawn();
    let ping = Publisher::new(&conn)
        .publish("acme", &Ping { n: 0 })
        .await
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(10), "the second attempt", |s| {
            s.iter().any(|r| r.attempt == 2)
        })
        .await;
    let ids: Vec<String> = conveyor_tests::read_stream(&conn, "EVENTS", 3, Duration::from_secs(2))
        .await
        .iter()
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.message.payload).ok()?;
            Some(v["id"].as_str()?.to_owned())
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            ping.id.clone(),
            format!("{}:test.pong", ping.id),
            format!("{}:test.pong:2", ping.id)
        ],
        "two attempts, each follow-up stored once"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_groups_with_states_of_different_types() {
    let (_server, conn) = server().await;
    #[derive(Clone)]
    struct Billing {
        recorder: Recorder,
        label: &'static str,
    }
    #[derive(Clone)]
    struct Shipping(Recorder, u32);
    let recorder = Recorder::default();
    let worker = conveyor::Worker::builder(&conn, ())
        .group(
            Group::new("billing")
                .handle(|_: Ping, ctx: Context<Billing>| async move {
                    let s = ctx.state();
                    s.recorder.record(ctx.event_id(), ctx.attempt(), s.label);
                    Ok::<(), conveyor::HandlerError>(())
                })
                .with_state(Billing {
                    recorder: recorder.clone(),
                    label: "billing-state",
                }),
        )
        .group(
            Group::new("shipping")
                .handle(|_: Ping, ctx: Context<Shipping>| async move {
                    let Shipping(r, n) = ctx.state();
                    r.record(ctx.event_id(), ctx.attempt(), &format!("shipping-{n}"));
                    Ok::<(), conveyor::HandlerError>(())
                })
                .with_state(Shipping(recorder.clone(), 7)),
        )
        .build()
        .unwrap()
        .spawn();
    let id = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap()
        .id;
    recorder
        .wait_for(Duration::from_secs(10), "both groups", |s| s.len() == 2)
        .await;
    worker.shutdown().await;
    let mut seen: Vec<String> = recorder
        .all()
        .into_iter()
        .filter(|r| r.event_id == id)
        .map(|r| r.worker)
        .collect();
    seen.sort();
    assert_eq!(seen, ["billing-state", "shipping-7"]);
}

//! Tenant fairness: a tenant's backlog or failures do not delay another tenant's events.

use std::time::Duration;

use conveyor::partition::{PARTITIONS, group_counts, partition_of};
use conveyor::topology::EVENTS_STREAM;
use conveyor::{Context, Group, HandlerError, HandlerOptions, Publisher, RetryPolicy, Worker};
use conveyor_tests::{Ping, Recorder, server};
use futures::StreamExt;

/// A tenant whose partition differs from `acme`'s.
fn quiet_tenant() -> &'static str {
    ["quiet", "globex", "initech", "umbrella", "hooli"]
        .into_iter()
        .find(|t| partition_of(t) != partition_of("acme"))
        .unwrap()
}

/// Records the run under the event's tenant, then takes `ms` milliseconds.
async fn slow(ms: u64, ctx: &Context<Recorder>) {
    ctx.state()
        .record(ctx.event_id(), ctx.attempt(), ctx.tenant().as_str());
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenant_overtakes_another_tenants_backlog() {
    let (_server, conn) = server().await;
    let quiet = quiet_tenant();
    let publisher = Publisher::new(&conn);
    // The noisy tenant's backlog is in the stream before the quiet tenant's one event.
    publisher
        .publish_many((0..2000).map(|n| ("acme", Ping { n })))
        .await
        .into_result()
        .unwrap();
    let quiet_event = publisher.publish(quiet, &Ping { n: 0 }).await.unwrap();
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("alerts").concurrency(4).handle(
            |_: Ping, ctx: Context<Recorder>| async move {
                slow(5, &ctx).await;
                Ok::<(), HandlerError>(())
            },
        ))
        .build()
        .unwrap()
        .spawn();
    recorder
        .wait_for(Duration::from_secs(60), "the quiet tenant's event", |s| {
            s.iter().any(|r| r.event_id == quiet_event.id)
        })
        .await;
    let before = recorder
        .all()
        .iter()
        .take_while(|r| r.event_id != quiet_event.id)
        .count();
    worker.shutdown().await;
    // In stream order it would have run after all 2000; served fairly it runs within the first
    // pulls (each partition has one event waiting for the next free slot of four).
    assert!(
        before < 100,
        "{before} events of the noisy tenant ran before the quiet tenant's one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_does_not_take_the_groups_capacity() {
    let (_server, conn) = server().await;
    let quiet = quiet_tenant();
    let recorder = Recorder::default();
    // Every event of acme fails and waits a minute before its retry (a dead endpoint); with a
    // limit of 8 unacknowledged deliveries per partition, its retries (delayed Naks here: a
    // retry shorter than `delayed_retry_after` is one) fill its own partition only.
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("webhooks")
                .concurrency(4)
                .max_ack_pending(8)
                .delayed_retry_after(Duration::MAX)
                .handle_with(
                    |_: Ping, ctx: Context<Recorder>| async move {
                        slow(1, &ctx).await;
                        if ctx.tenant().as_str() == "acme" {
                            return Err(HandlerError::retry_after(
                                Duration::from_secs(60),
                                "503 from the endpoint",
                            ));
                        }
                        Ok(())
                    },
                    HandlerOptions::default()
                        .retry(RetryPolicy::exponential(5, Duration::from_secs(60))),
                ),
        )
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    publisher
        .publish_many((0..40).map(|n| ("acme", Ping { n })))
        .await
        .into_result()
        .unwrap();
    recorder
        .wait_for(Duration::from_secs(20), "acme's partition full", |s| {
            s.iter().filter(|r| r.worker == "acme").count() >= 8
        })
        .await;
    let quiet_ids: Vec<String> = conveyor_tests::publish_pings_of(&conn, quiet, 20).await;
    recorder
        .wait_for_all(
            Duration::from_secs(20),
            "every event of the healthy tenant",
            &quiet_ids,
        )
        .await;
    let acme_runs = recorder.all().iter().filter(|r| r.worker == "acme").count();
    worker.shutdown().await;
    assert_eq!(
        acme_runs, 8,
        "acme's retries wait outside the handler slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_consumers_does_not_grow_with_tenants() {
    let (_server, conn) = server().await;
    let tenants: Vec<String> = (0..300).map(|n| format!("tenant-{n}")).collect();
    let ids: Vec<String> = conveyor_tests::published_ids(
        &Publisher::new(&conn),
        tenants.iter().map(|t| (t.as_str(), Ping { n: 1 })),
    )
    .await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("reports").concurrency(16).handle(
            |_: Ping, ctx: Context<Recorder>| async move {
                slow(0, &ctx).await;
                Ok::<(), HandlerError>(())
            },
        ))
        .group(Group::new("reports-high").lane("high").handle(
            |_: Ping, ctx: Context<Recorder>| async move {
                slow(0, &ctx).await;
                Ok::<(), HandlerError>(())
            },
        ))
        .build()
        .unwrap()
        .spawn();
    recorder
        .wait_for_all(Duration::from_secs(30), "every tenant's event", &ids)
        .await;
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let names = || async {
        let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
        names
    };
    // The idle group binds its partitions while the other one handles the events: wait until
    // both groups are bound, then hold the count.
    conveyor_tests::eventually(
        Duration::from_secs(10),
        "both groups' consumers",
        || async { names().await.len() >= 2 * PARTITIONS as usize },
    )
    .await;
    let names = names().await;
    worker.shutdown().await;
    assert_eq!(names.len(), 2 * PARTITIONS as usize, "{names:?}");
    // Every tenant is stored in its partition: the tenants spread over all of them.
    let used: std::collections::BTreeSet<u32> = tenants.iter().map(|t| partition_of(t)).collect();
    assert_eq!(used.len(), PARTITIONS as usize);
    let counts = group_counts(&conn, "reports").await.unwrap();
    assert_eq!(counts.consumers, PARTITIONS);
    assert_eq!(counts.pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_never_waits_on_slots_it_reserved_itself() {
    // Handlers that finish at once, mixed with some that wait, free their slots while the
    // partition's probe is still on its way; the next pull then reserves them. The probe must
    // not wait for a slot only its own partition loop could hand out (two workers share the
    // group, as in a rolling deploy).
    let (_server, conn) = server().await;
    let ids: Vec<String> = conveyor_tests::publish_pings(&conn, 2000).await;
    let recorder = Recorder::default();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Worker::builder(&conn, recorder.clone())
                .group(Group::new("tight").concurrency(8).handle(
                    |p: Ping, ctx: Context<Recorder>| async move {
                        ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                        if p.n.is_multiple_of(3) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Ok::<(), HandlerError>(())
                    },
                ))
                .build()
                .unwrap()
                .spawn()
        })
        .collect();
    recorder
        .wait_for_all(Duration::from_secs(60), "every event", &ids)
        .await;
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_slots_in_proportion_to_their_weights() {
    let (_server, conn) = server().await;
    let light = quiet_tenant();
    let acme = conveyor::TenantId::parse("acme").unwrap();
    conveyor::weights::set_weight(&conn, &acme, 3)
        .await
        .unwrap();
    // Both tenants have a backlog before the worker starts.
    conveyor_tests::publish_pings_of(&conn, "acme", 300).await;
    conveyor_tests::publish_pings_of(&conn, light, 300).await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(Group::new("weighted").concurrency(8).handle(
            |_: Ping, ctx: Context<Recorder>| async move {
                slow(10, &ctx).await;
                Ok::<(), HandlerError>(())
            },
        ))
        .build()
        .unwrap()
        .spawn();
    recorder
        .wait_for(Duration::from_secs(30), "200 runs", |s| s.len() >= 200)
        .await;
    worker.shutdown().await;
    let runs = recorder.all();
    let first: Vec<_> = runs.iter().take(200).collect();
    let heavy = first.iter().filter(|r| r.worker == "acme").count();
    let lighter = first.len() - heavy;
    eprintln!("of the first 200 runs: acme (weight 3) {heavy}, {light} (weight 1) {lighter}");
    assert!(
        heavy as f64 >= 2.2 * lighter as f64 && lighter >= 25,
        "acme (weight 3) ran {heavy}, {light} (weight 1) ran {lighter} of the first 200"
    );
}

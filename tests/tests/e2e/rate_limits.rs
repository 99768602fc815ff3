//! Cluster-wide rate limits: several processes share one limit, events over it wait without
//! holding slots, across a server restart, and one tenant's backlog never delays another
//! tenant under a per-tenant limit.

use std::time::{Duration, Instant};

use conveyor::rate::RateLimit;
use conveyor::{Context, Group, HandlerError, Worker, WorkerHandle};
use conveyor_tests::{Recorder, publish_pings_of, server};

fn start(
    conn: &conveyor::Connection,
    recorder: &Recorder,
    limit: RateLimit,
    name: &str,
) -> WorkerHandle {
    let name = name.to_owned();
    Worker::builder(conn, recorder.clone())
        .group(Group::new("partner").rate_limit(limit).handle(
            move |_: conveyor_tests::Ping, ctx: Context<Recorder>| {
                let name = name.clone();
                async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), &name);
                    Ok::<(), HandlerError>(())
                }
            },
        ))
        .build()
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_limit_holds_across_processes_and_a_server_restart() {
    let (mut server, conn) = server().await;
    let recorder = Recorder::default();
    // 10 runs per 2 s for the whole group: a slot every 200 ms.
    let limit = RateLimit::per_group(10, Duration::from_secs(2));
    let mut workers = Vec::new();
    for w in 0..4 {
        let c = server.connect().await.unwrap();
        workers.push(start(&c, &recorder, limit.clone(), &format!("w{w}")));
    }
    let start_at = Instant::now();
    let ids = publish_pings_of(&conn, "acme", 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The waiting events hold no unacknowledged delivery.
    let (_, ack_pending, _) = conveyor_tests::consumer_state(&conn, "partner").await;
    assert!(
        ack_pending <= 4,
        "{ack_pending} deliveries held while waiting"
    );
    let waiting = conveyor::delay::scheduled(&conn, None, 100).await.unwrap();
    assert!(!waiting.is_empty());
    assert!(waiting.iter().all(|s| matches!(
        &s.kind,
        conveyor::delay::ScheduledKind::RateLimited { group, attempts: 0 } if group == "partner"
    )));
    server.restart().unwrap();
    recorder
        .wait_for_all(Duration::from_secs(40), "every limited event", &ids)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for w in workers {
        w.shutdown().await;
    }
    let runs = recorder.all();
    assert_eq!(runs.len(), 30, "each event ran once");
    assert!(
        runs.iter().all(|r| r.attempt == 1),
        "waiting is not an attempt"
    );
    assert!(
        runs.iter()
            .map(|r| &r.worker)
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "the processes shared the work"
    );
    // 30 slots 200 ms apart: the last is 5.8 s after the first.
    let mut at: Vec<Duration> = runs.iter().map(|r| r.at - start_at).collect();
    at.sort();
    assert!(
        at[29] - at[0] >= Duration::from_millis(5600),
        "30 runs in {:?}",
        at[29] - at[0]
    );
    // No window of 1.75 s holds much more than the limit's 9 slots: a copy runs on its slot
    // up to 500 ms late (the schedules fire in ticks of about 250 ms), later ones take a new
    // slot.
    for (i, first) in at.iter().enumerate() {
        let within = at[i..]
            .iter()
            .take_while(|t| **t < *first + Duration::from_millis(1750))
            .count();
        assert!(
            within <= 12,
            "{within} runs within 1.75 s from {first:?}: {at:?}"
        );
    }
    conveyor_tests::assert_no_dead_letters(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limit_never_delays_another_tenant() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start(
        &conn,
        &recorder,
        RateLimit::per_tenant(2, Duration::from_secs(1)),
        "w",
    );
    let noisy = publish_pings_of(&conn, "acme", 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let quiet = publish_pings_of(&conn, "globex", 1).await;
    recorder
        .wait_for_all(Duration::from_secs(10), "the quiet tenant's event", &quiet)
        .await;
    let quiet_run = recorder
        .all()
        .into_iter()
        .find(|r| r.event_id == quiet[0])
        .unwrap();
    assert!(
        quiet_run.at - sent < Duration::from_millis(800),
        "the quiet tenant waited {:?}",
        quiet_run.at - sent
    );
    // acme's 20 events take 2 a second: most of them are still waiting.
    let acme_ran = recorder
        .all()
        .iter()
        .filter(|r| noisy.contains(&r.event_id))
        .count();
    assert!(
        acme_ran <= 4,
        "{acme_ran} of acme's events ran within about a second"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_slot_does_not_pass_the_limit() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = start(
        &conn,
        &recorder,
        RateLimit::per_group(1, Duration::from_secs(30)),
        "w",
    );
    // A publisher sets the headers of a copy that holds its slot, on a plain publish: the server
    // refuses a `Nats-Scheduler` header it did not set, and the slot header alone is not
    // honoured.
    let slot = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for n in 0..5 {
        let body = conveyor_tests::ping_envelope(&format!("forged-{n}"), "acme", n);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(conveyor::rate::RATE_SLOT_HEADER, slot.as_str());
        let mut forged = headers.clone();
        forged.insert(
            "Nats-Scheduler",
            format!("delayed.acme.r.forged-{n}.partner").as_str(),
        );
        let refused = conn
            .jetstream()
            .publish_with_headers(
                "events.acme.test.ping".to_owned(),
                forged,
                body.to_string().into(),
            )
            .await
            .unwrap()
            .await;
        assert!(
            refused.is_err(),
            "the server stored a forged Nats-Scheduler"
        );
        conn.jetstream()
            .publish_with_headers(
                "events.acme.test.ping".to_owned(),
                headers,
                body.to_string().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    recorder
        .wait_for(Duration::from_secs(10), "the first event", |s| {
            !s.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.shutdown().await;
    assert_eq!(recorder.all().len(), 1, "forged slots passed the limit");
}

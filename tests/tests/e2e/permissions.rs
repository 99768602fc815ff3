//! The users of `nats-config/accounts.conf`, against a server started with that file.

use std::path::Path;
use std::time::Duration;

use conveyor::testing::NatsServer;
use conveyor::topology::{Topology, provision};
use conveyor::{
    Connection, Context, EventOptions, Group, HandlerError, PublishErrorKind, Publisher, Worker,
};
use conveyor_tests::{Ping, Recorder, eventually};

async fn login(server: &NatsServer, user: &str, password: &str) -> Connection {
    Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .custom_inbox_prefix(format!("_INBOX_{user}")),
    )
    .await
    .unwrap()
    .with_timeout(Duration::from_secs(2))
}

async fn record(p: Ping, ctx: Context<Recorder>) -> Result<(), HandlerError> {
    ctx.state().record(ctx.event_id(), ctx.attempt(), "billing");
    // Ping 5 is retried once, as a delayed copy the worker schedules with its own permissions.
    if p.n == 5 && ctx.attempt() == 1 {
        return Err(HandlerError::retry_after(
            Duration::from_secs(1),
            "partner busy",
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_can_do_its_job_and_nothing_else() {
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    // The fixture's port and store flags override the file's.
    let server = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = login(&server, "admin", "change-me-admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    // The admin creates the consumers; workers of restricted users only bind to them.
    for group in ["billing", "shipping"] {
        let w = Worker::builder(&admin, Recorder::default())
            .group(Group::new(group).handle(record))
            .build()
            .unwrap()
            .spawn();
        eventually(Duration::from_secs(10), "consumers created", || async {
            conveyor::partition::group_counts(&admin, group)
                .await
                .is_ok_and(|c| c.consumers == conveyor::partition::PARTITIONS)
        })
        .await;
        w.shutdown().await;
    }

    // The app publisher: its own tenant only, and a clear error otherwise.
    let app = login(&server, "pub_acme", "change-me-acme").await;
    let publisher = Publisher::new(&app);
    let ok = publisher.publish("acme", &Ping { n: 1 }).await.unwrap();
    let denied = publisher
        .publish("globex", &Ping { n: 2 })
        .await
        .unwrap_err();
    assert_eq!(
        denied.kind(),
        PublishErrorKind::PermissionDenied,
        "{denied}"
    );
    // Delayed events too: its own tenant's schedules only.
    let later = EventOptions::default().delay(Duration::from_millis(500));
    let delayed = publisher
        .publish_with("acme", &Ping { n: 4 }, later.clone())
        .await
        .unwrap();
    let denied = publisher
        .publish_with("globex", &Ping { n: 4 }, later)
        .await
        .unwrap_err();
    assert_eq!(
        denied.kind(),
        PublishErrorKind::PermissionDenied,
        "{denied}"
    );
    // Debounced ones, reading the burst they join.
    for n in [6, 7] {
        publisher
            .publish_with(
                "acme",
                &Ping { n },
                EventOptions::default()
                    .debounce("k", Duration::from_millis(300))
                    .debounce_max_wait(Duration::from_secs(1)),
            )
            .await
            .unwrap();
    }
    let refused = app.recent_permission_violation();
    assert!(
        refused.as_deref().is_none_or(|s| !s.starts_with("$JS.API")),
        "reading the burst was refused: {refused:?}"
    );
    // A group's copy schedules (delayed retries, rate-limit waits) are the workers' alone.
    let copy = app
        .jetstream()
        .publish("delayed.acme.r.x.billing", "{}".into())
        .await
        .unwrap()
        .await;
    assert!(copy.is_err(), "an app published a group's copy schedule");
    let retried = publisher.publish("acme", &Ping { n: 5 }).await.unwrap();

    // The worker user runs its group (bound to the existing consumer) and handles the event.
    let worker_conn = login(&server, "worker_billing", "change-me-billing").await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&worker_conn, recorder.clone())
        .group(
            Group::new("billing")
                .bind_only(true)
                .history(true)
                .delayed_retry_after(Duration::from_millis(500))
                .rate_limit(conveyor::rate::RateLimit::per_tenant(
                    100,
                    Duration::from_secs(1),
                ))
                .handle(record),
        )
        .build()
        .unwrap()
        .spawn();
    recorder
        .wait_for(
            Duration::from_secs(10),
            "the restricted worker to handle the event",
            |s| {
                s.iter().any(|r| r.event_id == ok.id)
                    && s.iter().any(|r| r.event_id == delayed.id)
                    && s.iter().any(|r| r.event_id == retried.id && r.attempt == 2)
            },
        )
        .await;
    // It records run history (and watches cancellations) with its own permissions.
    eventually(Duration::from_secs(10), "the run recorded", || async {
        conveyor::history::runs_of_event(&admin, &ok.id)
            .await
            .is_ok_and(|r| r.len() == 1 && r[0].state == conveyor::history::RunState::Succeeded)
    })
    .await;
    // It announces its process, bound to the group's consumers; gone once it stops.
    eventually(Duration::from_secs(10), "the process announced", || async {
        conveyor::status::workers(&admin)
            .await
            .unwrap()
            .iter()
            .any(|p| p.group == "billing" && p.bound && p.pid == std::process::id())
    })
    .await;
    assert_eq!(
        worker_conn.recent_permission_violation(),
        None,
        "nothing the worker does is refused"
    );
    worker.shutdown().await;
    assert_eq!(conveyor::status::workers(&admin).await.unwrap(), []);

    // ... but cannot publish events,
    let err = Publisher::new(&worker_conn)
        .publish("acme", &Ping { n: 3 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::PermissionDenied, "{err}");
    // ... nor read another group's consumer.
    let other = worker_conn
        .jetstream()
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
            conveyor::partition::consumer_name("shipping", 0),
            "EVENTS",
        )
        .await;
    assert!(
        other.is_err(),
        "worker_billing could read the shipping consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_user_can_lead_and_fire() {
    use conveyor_scheduler::{CatchUp, Options, Schedule, Scheduler};
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    let server = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = login(&server, "admin", "change-me-admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let scheduler_conn = login(&server, "scheduler", "change-me-scheduler").await;
    let schedules = vec![
        Schedule::new("pulse", "* * * * * *", "health.check")
            .tenants(["acme"])
            .catch_up(CatchUp::Skip),
    ];
    let options = Options {
        retention_sample_every: Some(Duration::from_millis(500)),
        ..Options::default()
    };
    let scheduler = Scheduler::new(&scheduler_conn, &schedules, options).unwrap();
    let stats = scheduler.stats();
    scheduler
        .run_until(tokio::time::sleep(Duration::from_secs(4)))
        .await
        .unwrap();
    let fired = stats.fired.load(std::sync::atomic::Ordering::Relaxed);
    assert!(fired >= 2, "the scheduler user fired {fired} ticks");
    // As leader it also sampled what retention limits removed, with its own permissions.
    assert!(
        stats.retention().is_some(),
        "the scheduler user could not sample the retention counts"
    );
    assert_eq!(scheduler_conn.recent_permission_violation(), None);
    assert!(conveyor_tests::events_count(&admin).await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_suppress_another_tenants_events_by_id() {
    use conveyor::EventOptions;
    use conveyor_scheduler::{CatchUp, Options, Schedule, Scheduler};
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    let server = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = login(&server, "admin", "change-me-admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let app = login(&server, "pub_acme", "change-me-acme").await;

    // The same business id in two tenants: both stored.
    let ours = Publisher::new(&app)
        .publish_with(
            "acme",
            &Ping { n: 1 },
            EventOptions::default().id("order-1001"),
        )
        .await
        .unwrap();
    let theirs = Publisher::new(&admin)
        .publish_with(
            "globex",
            &Ping { n: 2 },
            EventOptions::default().id("order-1001"),
        )
        .await
        .unwrap();
    assert!(!ours.duplicate && !theirs.duplicate);
    assert_ne!(ours.stream_sequence, theirs.stream_sequence);

    // acme publishes first, on its own subject, with every id globex's next ticks could have.
    let scheduler = Scheduler::new(
        &admin,
        &[Schedule::new("pulse", "* * * * * *", "health.check")
            .tenants(["globex"])
            .catch_up(CatchUp::Skip)],
        Options::default(),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged: Vec<i64> = (now + 2..now + 5).collect();
    for unix in &forged {
        for guess in [
            format!("cron:pulse:globex:{unix}"),
            format!("globex:cron:pulse:globex:{unix}"),
        ] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", guess.as_str());
            app.jetstream()
                .publish_with_headers("events.acme.health.check", headers, "{}".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    let stats = scheduler.stats();
    scheduler
        .run_until(tokio::time::sleep(Duration::from_secs(7)))
        .await
        .unwrap();
    assert_eq!(
        stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no tick was taken for a duplicate"
    );
    let stored: Vec<i64> = conveyor_tests::read_stream(&admin, "EVENTS", 0, Duration::ZERO)
        .await
        .into_iter()
        .filter(|m| {
            conveyor::partition::published_subject(&m.message.subject)
                == "events.globex.health.check"
        })
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.message.payload).ok()?;
            let at = v["data"]["scheduled_at"].as_str()?;
            Some(chrono::DateTime::parse_from_rfc3339(at).ok()?.timestamp())
        })
        .collect();
    for unix in &forged {
        assert!(
            stored.contains(unix),
            "globex's tick {unix} is stored: {stored:?}"
        );
    }
}

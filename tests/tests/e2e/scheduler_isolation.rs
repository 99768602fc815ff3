//! The scheduler when some of its work fails: one tenant's failing publish, an unreadable tenant
//! registry, forged run keys.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::testing::NatsServer;
use conveyor::topology::{Topology, provision};
use conveyor::{Connection, Context, EventOptions, Group, HandlerError, Publisher, Worker};
use conveyor_scheduler::{CatchUp, Options, Overlap, Schedule, Scheduler};
use conveyor_tests::{Ping, Recorder, read_stream};

/// A server whose user `sched` may publish events of acme and globex but not of initech, and
/// may not read the tenant registry; `admin` may do everything.
fn server() -> (NatsServer, tempfile::TempDir) {
    conveyor_tests::server_with_config(
        r#"
jetstream: enabled
accounts {
  APP: {
    jetstream: enabled
    users: [
      { user: admin, password: admin }
      { user: nokv, password: nokv, permissions: { publish: { deny: ["$JS.API.>"] } } }
      { user: sched, password: sched, permissions: {
          publish: { deny: ["events.initech.>", "$JS.API.CONSUMER.CREATE.KV_conveyor_tenants.>",
                            "$JS.API.CONSUMER.CREATE.KV_conveyor_tenants"] } } }
    ]
  }
}
"#,
    )
}

async fn login(server: &NatsServer, user: &str) -> Connection {
    conveyor_tests::login(server, user, user)
        .await
        .with_timeout(Duration::from_secs(1))
}

/// Scheduled times of the stored events of `tenant` from schedule `pulse`, in order.
async fn ticks_of(conn: &Connection, tenant: &str) -> Vec<DateTime<Utc>> {
    let subject = format!("events.{tenant}.health.check");
    let mut ticks: Vec<DateTime<Utc>> = read_stream(conn, "EVENTS", 0, Duration::ZERO)
        .await
        .into_iter()
        .filter(|m| conveyor::partition::published_subject(&m.message.subject) == subject)
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.message.payload).ok()?;
            if v["data"]["schedule"] != "pulse" {
                return None;
            }
            let at = DateTime::parse_from_rfc3339(v["data"]["scheduled_at"].as_str()?).ok()?;
            Some(at.with_timezone(&Utc))
        })
        .collect();
    ticks.sort();
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_publish_fails_holds_up_no_other_tenant() {
    let (server, _dir) = server();
    let admin = login(&server, "admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let conn = login(&server, "sched").await;
    let scheduler = Scheduler::new(
        &conn,
        &[
            Schedule::new("pulse", "* * * * * *", "health.check")
                .tenants(["acme", "initech", "globex"])
                .catch_up(CatchUp::Skip),
            Schedule::new("guarded", "* * * * * *", "health.check")
                .tenants(["initech"])
                .overlap(Overlap::SkipIfRunning)
                .catch_up(CatchUp::Skip),
        ],
        Options::default(),
    )
    .unwrap();
    let stats = scheduler.stats();
    scheduler
        .run_until(tokio::time::sleep(Duration::from_secs(6)))
        .await
        .unwrap();
    for tenant in ["acme", "globex"] {
        let ticks = ticks_of(&admin, tenant).await;
        assert!(ticks.len() >= 4, "{tenant}: {ticks:?}");
        for w in ticks.windows(2) {
            assert_eq!(
                (w[1] - w[0]).num_seconds(),
                1,
                "{tenant}: every second, once: {ticks:?}"
            );
        }
    }
    assert!(ticks_of(&admin, "initech").await.is_empty());
    assert!(stats.errors.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(
        stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "tenants that got a tick are not published again"
    );
    // The failed tenant's run marker was removed, so its next tick is not skipped.
    let runs = admin
        .jetstream()
        .get_key_value(conveyor::runs::RUNS_BUCKET)
        .await
        .unwrap();
    assert_eq!(runs.get("guarded.initech").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_without_its_buckets_fails_with_a_typed_error() {
    let (server, _dir) = server();
    let conn = login(&server, "nokv").await;
    let scheduler = Scheduler::new(
        &conn,
        &[Schedule::new("pulse", "* * * * * *", "health.check").tenants(["acme"])],
        Options::default(),
    )
    .unwrap();
    let e = scheduler
        .run_until(tokio::time::sleep(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), conveyor_scheduler::RunErrorKind::Bucket, "{e}");
    assert!(e.to_string().contains("conveyor_leases"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_tenant_registry_does_not_advance_the_schedule() {
    let (server, _dir) = server();
    let admin = login(&server, "admin").await;
    provision(&admin, &Topology::default()).await.unwrap();
    let registry = admin
        .jetstream()
        .get_key_value(conveyor::topology::TENANTS_BUCKET)
        .await
        .unwrap();
    registry.put("acme", "{}".into()).await.unwrap();
    let conn = login(&server, "sched").await;
    let scheduler = Scheduler::new(
        &conn,
        &[Schedule::new("pulse", "* * * * * *", "health.check")
            .tenant_registry()
            .catch_up(CatchUp::All)],
        Options::default(),
    )
    .unwrap();
    scheduler
        .run_until(tokio::time::sleep(Duration::from_secs(4)))
        .await
        .unwrap();
    assert!(ticks_of(&admin, "acme").await.is_empty());
    // The ticks are still owed: the state did not move past them.
    let state = admin
        .jetstream()
        .get_key_value(conveyor::topology::SCHEDULES_BUCKET)
        .await
        .unwrap();
    let last = state.get("last.pulse").await.unwrap().unwrap();
    let last = DateTime::parse_from_rfc3339(std::str::from_utf8(&last).unwrap()).unwrap();
    assert!(
        Utc::now().signed_duration_since(last).num_seconds() >= 3,
        "the schedule stayed where it was: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_key_clears_only_the_marker_of_its_own_event() {
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    let server = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password(
            "admin".into(),
            "change-me-admin".into(),
        ),
    )
    .await
    .unwrap();
    provision(&admin, &Topology::default()).await.unwrap();
    let runs = admin
        .jetstream()
        .get_key_value(conveyor::runs::RUNS_BUCKET)
        .await
        .unwrap();
    runs.put("nightly.globex", "cron:nightly:globex:1:aa".into())
        .await
        .unwrap();
    runs.put("nightly.acme", "cron:nightly:acme:1:bb".into())
        .await
        .unwrap();
    let recorder = Recorder::default();
    let worker = Worker::builder(&admin, recorder.clone())
        .group(
            Group::new("any").handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn();
    let app = Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password(
            "pub_acme".into(),
            "change-me-acme".into(),
        )
        .custom_inbox_prefix("_INBOX_pub_acme"),
    )
    .await
    .unwrap();
    let publisher = Publisher::new(&app);
    for key in ["nightly.globex", "nightly.acme"] {
        publisher
            .publish_with(
                "acme",
                &Ping { n: 1 },
                EventOptions::default().header(conveyor::runs::RUN_KEY_HEADER, key),
            )
            .await
            .unwrap();
    }
    recorder
        .wait_for(Duration::from_secs(10), "both handled", |s| s.len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        runs.get("nightly.globex").await.unwrap().is_some(),
        "another tenant's marker stays"
    );
    assert!(
        runs.get("nightly.acme").await.unwrap().is_some(),
        "a marker of another event stays"
    );

    // The marker of the event itself is cleared (written before the publish, as the scheduler
    // does).
    runs.put("nightly.acme", "cron:nightly:acme:3:dd".into())
        .await
        .unwrap();
    publisher
        .publish_with(
            "acme",
            &Ping { n: 3 },
            EventOptions::default()
                .id("cron:nightly:acme:3:dd")
                .header(conveyor::runs::RUN_KEY_HEADER, "nightly.acme"),
        )
        .await
        .unwrap();
    conveyor_tests::eventually(Duration::from_secs(10), "own marker cleared", || async {
        runs.get("nightly.acme").await.unwrap().is_none()
    })
    .await;
    worker.shutdown().await;
}

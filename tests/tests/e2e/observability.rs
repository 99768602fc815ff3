//! Metrics, health, trace propagation and cancellation.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::history::{self, RunState};
use conveyor::telemetry::Telemetry;
use conveyor::trace::TraceParent;
use conveyor::{
    Context, EventOptions, Group, HandlerError, HandlerOptions, HandlerResult, Publisher,
    RetryPolicy, Worker,
};
use conveyor_tests::{
    Ping, Pong, consumer_state, dead_letters, eventually, http_get, metric, read_stream, server,
};

fn fast_retries(attempts: u32) -> HandlerOptions {
    HandlerOptions::default()
        .retry(RetryPolicy::exponential(attempts, Duration::from_millis(100)).with_jitter(0.0))
}

/// n % 3 == 0: permanent failure; n % 3 == 1: success; n % 3 == 2: fails once, then succeeds.
async fn mixed(e: Ping, ctx: Context) -> HandlerResult {
    match e.n % 3 {
        0 => Err(HandlerError::permanent("no such account")),
        2 if ctx.attempt() == 1 => Err(HandlerError::transient(std::io::Error::other(
            "upstream 503",
        ))),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_handled_events_by_outcome() {
    let (_server, conn) = server().await;
    let telemetry = Telemetry::with_tenant_labels(["acme"]);
    let endpoint = telemetry
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(&conn).with_telemetry(&telemetry);
    for n in 0..6 {
        let tenant = if n < 3 { "acme" } else { "globex" };
        publisher.publish(tenant, &Ping { n }).await.unwrap();
    }
    let bad = publisher
        .publish("no.dots", &Ping { n: 0 })
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), conveyor::PublishErrorKind::InvalidTenant);

    let worker = Worker::builder(&conn, ())
        .group(Group::new("obs").handle_with(mixed, fast_retries(3)))
        .telemetry(&telemetry)
        .consumer_poll_interval(Duration::from_millis(200))
        .build()
        .unwrap()
        .spawn();
    let series = |outcome: &str| {
        format!(
            r#"conveyor_events_handled_total{{group="obs",event_type="test.ping",outcome="{outcome}"}}"#
        )
    };
    let addr = endpoint.local_addr();
    eventually(Duration::from_secs(15), "every event settled", || async {
        let (_, text) = http_get(addr, "/metrics").await;
        metric(&text, &series("ok")) == Some(4.0)
            && metric(&text, &series("dead_letter")) == Some(2.0)
    })
    .await;
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, &series("retry")), Some(2.0), "{text}");
    assert_eq!(metric(&text, &series("cancelled")), Some(0.0));
    assert_eq!(
        metric(
            &text,
            r#"conveyor_handler_duration_seconds_count{group="obs",event_type="test.ping"}"#
        ),
        Some(8.0),
        "6 first attempts and 2 retries ran"
    );
    assert_eq!(
        metric(
            &text,
            r#"conveyor_dead_letters_total{group="obs",kind="handler"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"conveyor_publish_errors_total{kind="invalid_tenant"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"conveyor_handlers_in_flight{group="obs"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, r#"conveyor_consumer_bound{group="obs"}"#),
        Some(1.0)
    );
    // The allow-listed tenant has its own series; the other tenant is no label anywhere.
    let acme_ok = r#"conveyor_tenant_events_handled_total{tenant="acme",group="obs",event_type="test.ping",outcome="ok"}"#;
    assert_eq!(metric(&text, acme_ok), Some(2.0), "{text}");
    assert!(!text.contains("globex"));
    eventually(Duration::from_secs(5), "pending gauges at zero", || async {
        let (_, text) = http_get(addr, "/metrics").await;
        metric(&text, r#"conveyor_consumer_pending{group="obs"}"#) == Some(0.0)
            && metric(&text, r#"conveyor_consumer_ack_pending{group="obs"}"#) == Some(0.0)
    })
    .await;
    worker.shutdown().await;
    endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_metrics_show_leadership_and_ticks() {
    use conveyor_scheduler::{Options, Schedule, Scheduler};
    let (_server, conn) = server().await;
    let telemetry = Telemetry::new();
    let endpoint = telemetry
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let schedules =
        vec![Schedule::new("every-second", "* * * * * *", "health.check").tenants(["acme"])];
    let scheduler = Scheduler::new(&conn, &schedules, Options::default())
        .unwrap()
        .with_telemetry(&telemetry);
    let stop = tokio_util_token();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move {
            scheduler
                .run_until(async move { stop.notified().await })
                .await
        }
    });
    let addr = endpoint.local_addr();
    eventually(
        Duration::from_secs(10),
        "leader and a fired tick",
        || async {
            let (_, text) = http_get(addr, "/metrics").await;
            metric(&text, "conveyor_scheduler_leader") == Some(1.0)
                && metric(&text, "conveyor_scheduler_ticks_fired_total").unwrap_or(0.0) >= 1.0
        },
    )
    .await;
    let (_, text) = http_get(addr, "/metrics").await;
    assert!(
        text.contains("conveyor_scheduler_ticks_skipped_total"),
        "{text}"
    );
    assert!(
        text.contains("conveyor_scheduler_ticks_late_total"),
        "{text}"
    );
    // Every scheduler family is in the README's metric table, under its exposed name.
    let readme = include_str!("../../../README.md");
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE conveyor_scheduler"))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(families.len(), 6, "{text}");
    for (name, kind) in families {
        let suffix = if kind == "counter" { "_total" } else { "" };
        let exposed = format!("`conveyor_scheduler{name}{suffix}`");
        assert!(readme.contains(&exposed), "{exposed} is not in the README");
    }
    stop.notify_one();
    run.await.unwrap().unwrap();
}

fn tokio_util_token() -> Arc<tokio::sync::Notify> {
    Arc::new(tokio::sync::Notify::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_nats_connection() {
    let (mut server, conn) = server().await;
    let telemetry = Telemetry::new();
    let endpoint = telemetry
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = endpoint.local_addr();
    async fn ok(_e: Ping, _ctx: Context) -> HandlerResult {
        Ok(())
    }
    let worker = Worker::builder(&conn, ())
        .group(Group::new("ready").handle(ok))
        .telemetry(&telemetry)
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "ready", || async {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    server.stop();
    eventually(
        Duration::from_secs(10),
        "not ready while NATS is down",
        || async {
            let (status, body) = http_get(addr, "/readyz").await;
            status == 503 && body.contains("nats")
        },
    )
    .await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200, "alive all along");

    server.start_again().unwrap();
    eventually(Duration::from_secs(20), "ready again", || async {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await;
    worker.shutdown().await;
}

#[derive(Clone, Default)]
struct Traces {
    seen: Arc<Mutex<Vec<(TraceParent, String)>>>,
}

async fn ping_then_pong(e: Ping, ctx: Context<Traces>) -> HandlerResult {
    ctx.state()
        .seen
        .lock()
        .unwrap()
        .push((ctx.trace(), ctx.event_id().to_owned()));
    ctx.publish(&Pong { n: e.n }).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_continues_from_publish_through_handler_to_follow_up() {
    let (_server, conn) = server().await;
    let origin: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    let publisher = Publisher::new(&conn);
    let first = publisher
        .publish_with(
            "acme",
            &Ping { n: 1 },
            EventOptions::default().traceparent(origin.to_string()),
        )
        .await
        .unwrap();
    let second = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();

    let traces = Traces::default();
    let worker = Worker::builder(&conn, traces.clone())
        .group(Group::new("tracer").handle(ping_then_pong))
        .build()
        .unwrap()
        .spawn();
    let messages = read_stream(&conn, "EVENTS", 4, Duration::from_secs(10)).await;
    worker.shutdown().await;
    let envelopes: Vec<conveyor::envelope::RawEnvelope<'_>> = messages
        .iter()
        .map(|m| conveyor::envelope::RawEnvelope::parse(&m.message.payload).unwrap())
        .collect();
    let by_id = |id: &str| envelopes.iter().find(|e| e.id == id).unwrap();
    let generated: TraceParent = by_id(&second.id)
        .traceparent
        .as_deref()
        .expect("a publisher without a trace starts one")
        .parse()
        .unwrap();
    assert_ne!(generated.trace_id(), origin.trace_id());

    let seen = traces.seen.lock().unwrap().clone();
    for (parent, published) in [(origin, &first), (generated, &second)] {
        let (handler, _) = seen.iter().find(|(_, id)| *id == published.id).unwrap();
        assert_eq!(
            handler.trace_id(),
            parent.trace_id(),
            "the handler continues the trace"
        );
        assert_ne!(handler.span_id(), parent.span_id(), "in a span of its own");
        let pong = envelopes
            .iter()
            .find(|e| {
                e.event_type == "test.pong" && e.causationid.as_deref() == Some(&*published.id)
            })
            .unwrap();
        let carried: TraceParent = pong.traceparent.as_deref().unwrap().parse().unwrap();
        assert_eq!(
            carried.trace_id(),
            parent.trace_id(),
            "the follow-up carries it on"
        );
        assert_eq!(
            carried.span_id(),
            handler.span_id(),
            "with the handler's span as parent"
        );
    }
}

/// Fails twice, then succeeds; event n == 9 always fails permanently.
#[derive(Clone, Default)]
struct Started {
    runs: Arc<AtomicU32>,
    stopped_at: Arc<Mutex<Option<Instant>>>,
}

/// Runs for a minute unless cancelled; does not look at cancellation itself.
async fn stubborn(_e: Ping, ctx: Context<Started>) -> HandlerResult {
    ctx.state().runs.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

/// Runs for a minute unless cancelled; stops when told.
async fn cooperative(_e: Ping, ctx: Context<Started>) -> HandlerResult {
    ctx.state().runs.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        () = ctx.cancelled() => {
            *ctx.state().stopped_at.lock().unwrap() = Some(Instant::now());
            Ok(())
        }
        () = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_handler_and_skips_a_queued_event() {
    let acme = conveyor::TenantId::parse("acme").unwrap();
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let running = publisher.publish("acme", &Ping { n: 1 }).await.unwrap();
    let queued = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();
    let state = Started::default();
    let worker = Worker::builder(&conn, state.clone())
        .group(
            Group::new("jobs")
                .history(true)
                .concurrency(1)
                .max_ack_pending(1)
                .handle(cooperative),
        )
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "first job running", || async {
        state.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // The second event waits behind the first (one at a time): cancel it before it starts.
    conveyor::control::cancel(&conn, &acme, &queued.id, Some("jobs"), "not needed")
        .await
        .unwrap();
    let asked = Instant::now();
    conveyor::control::cancel(&conn, &acme, &running.id, Some("jobs"), "customer asked")
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "running job stopped", || async {
        state.stopped_at.lock().unwrap().is_some()
    })
    .await;
    let stopped_after = state.stopped_at.lock().unwrap().unwrap() - asked;
    eventually(Duration::from_secs(10), "both acked", || async {
        consumer_state(&conn, "jobs").await == (0, 0, 0)
    })
    .await;
    worker.shutdown().await;
    assert!(
        stopped_after < Duration::from_secs(1),
        "stopped {stopped_after:?} after the cancellation"
    );
    assert_eq!(
        state.runs.load(Ordering::SeqCst),
        1,
        "the queued event never ran"
    );
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
    for id in [&running.id, &queued.id] {
        let runs = history::runs_of_event(&conn, id).await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].state, RunState::Cancelled);
    }
    let queued_run = &history::runs_of_event(&conn, &queued.id).await.unwrap()[0];
    assert!(
        !queued_run
            .transitions
            .iter()
            .any(|t| t.state == RunState::Running),
        "skipped before it started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_cancellation_is_stopped_after_its_grace() {
    let acme = conveyor::TenantId::parse("acme").unwrap();
    let (_server, conn) = server().await;
    let job = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    let state = Started::default();
    let worker = Worker::builder(&conn, state.clone())
        .group(Group::new("stubborn").handle_with(
            stubborn,
            HandlerOptions::default().cancel_grace(Duration::from_millis(200)),
        ))
        .build()
        .unwrap()
        .spawn();
    eventually(Duration::from_secs(10), "job running", || async {
        state.runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // Every group: no group given.
    conveyor::control::cancel(&conn, &acme, &job.id, None, "")
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "acked as cancelled", || async {
        consumer_state(&conn, "stubborn").await == (0, 0, 0)
    })
    .await;
    worker.shutdown().await;
    assert!(dead_letters(&conn, 0, Duration::ZERO).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_expected_duration_is_counted_and_announced() {
    let (_server, conn) = server().await;
    let telemetry = Telemetry::new();
    async fn slow(_e: Ping, _ctx: Context) -> HandlerResult {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(())
    }
    let job = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    let worker = Worker::builder(&conn, ())
        .group(
            Group::new("sla").history(true).handle_with(
                slow,
                HandlerOptions::default()
                    .expected_duration(Duration::from_millis(200))
                    .sla_event(true),
            ),
        )
        .telemetry(&telemetry)
        .build()
        .unwrap()
        .spawn();
    let messages = read_stream(&conn, "EVENTS", 2, Duration::from_secs(10)).await;
    let breach = messages
        .iter()
        .find(|m| m.message.subject.as_str() == "events.~.15.acme.sla.breached")
        .expect("an sla.breached event");
    let env =
        conveyor::Envelope::<conveyor::sla::SlaBreached>::decode(&breach.message.payload).unwrap();
    assert_eq!(env.data.event_id, job.id);
    assert_eq!(
        (env.data.group.as_str(), env.data.expected_ms),
        ("sla", 200)
    );
    assert!(env.data.elapsed_ms >= 200);
    assert_eq!(env.causation_id.as_deref(), Some(&*job.id));
    eventually(Duration::from_secs(10), "run finished", || async {
        history::runs_of_event(&conn, &job.id)
            .await
            .is_ok_and(|r| r.len() == 1 && r[0].state == RunState::Succeeded)
    })
    .await;
    worker.shutdown().await;
    let run = &history::runs_of_event(&conn, &job.id).await.unwrap()[0];
    assert!(run.sla_breached);
    assert_eq!(run.expected_ms, Some(200));
    assert_eq!(
        metric(
            &telemetry.encode(),
            r#"conveyor_sla_breaches_total{group="sla",event_type="test.ping"}"#
        ),
        Some(1.0)
    );
}

//! The dev system end to end: the handler crates composed by the worker, against a real server.

use std::time::{Duration, Instant};

use chrono::Utc;
use conveyor::Publisher;
use conveyor::envelope::RawEnvelope;
use conveyor_dev::{DevOptions, DevSystem, samples};
use conveyor_llm_stub::StubOptions;
use conveyor_schemas::Id;
use conveyor_schemas::fraud::{Decision, FraudExplanationRequested, Priority};
use conveyor_tests::{dead_letters, eventually, read_stream};

fn options(dir: &std::path::Path) -> DevOptions {
    conveyor_tests::init_tracing();
    DevOptions {
        data_dir: dir.to_path_buf(),
        nats_port: Some(0),
        metrics_addr: None,
        gateway_addr: None,
        dashboard_addr: None,
        sample_every: None,
        scheduler: false,
        analysis: conveyor_analysis::AnalysisConfig {
            files: 5,
            step_duration: Duration::from_millis(20),
            ack_wait: Duration::from_secs(1),
        },
        ..DevOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_system_runs_the_video_chain_fraud_alerts_and_dead_letters_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let system = DevSystem::start(options(dir.path())).await.unwrap();
    let conn = system.conn.clone();
    let publisher = Publisher::new(&conn).with_source("shop");
    let upload = publisher
        .publish("acme", &samples::upload(1).unwrap())
        .await
        .unwrap();
    publisher
        .publish("acme", &samples::detection(2, Decision::Block).unwrap())
        .await
        .unwrap();
    let gone = format!("http://{}/hooks/gone", system.sink);
    let webhook = publisher
        .publish("globex", &samples::webhook(3, &gone).unwrap())
        .await
        .unwrap();

    // The video chain: every step caused by the one before, all sharing the upload's id.
    find_after(&conn, "video.ai.generated").await;
    let events = read_stream(&conn, "EVENTS", 0, Duration::ZERO).await;
    let envelopes: Vec<RawEnvelope<'_>> = events
        .iter()
        .map(|m| RawEnvelope::parse(&m.message.payload).unwrap())
        .collect();
    let find = |t: &str| {
        envelopes
            .iter()
            .find(|e| e.event_type == t)
            .unwrap_or_else(|| panic!("no {t} event"))
    };
    let started = find("video.transcription.started");
    let completed = find("video.transcription.completed");
    let generated = find("video.ai.generated");
    assert_eq!(started.causationid.as_deref(), Some(&*upload.id));
    assert_eq!(completed.causationid.as_deref(), Some(&*started.id));
    assert_eq!(generated.causationid.as_deref(), Some(&*completed.id));
    for e in [started, completed, generated] {
        assert_eq!(e.correlationid.as_deref(), Some(&*upload.id));
        assert_eq!(
            &e.traceparent.as_deref().unwrap()[3..35],
            &find("video.upload.completed")
                .traceparent
                .as_deref()
                .unwrap()[3..35],
            "one trace"
        );
    }

    // The blocked order: an explanation (after the stub's 500 and 429) and an email.
    let acme = conveyor::TenantId::parse("acme").unwrap();
    let email = system.outbox_dir.join("acme/fraud-det-2.eml");
    eventually(Duration::from_secs(20), "explanation and email", || async {
        email.is_file()
            && system
                .store
                .get(&acme, "fraud_explanations", "det-2")
                .await
                .unwrap()
                .is_some()
    })
    .await;
    let record = system
        .store
        .get(&acme, "fraud_explanations", "det-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value["priority"], "HIGH");
    assert!(
        record.value["attempts"].as_u64().unwrap() >= 2,
        "{:?}",
        record.value
    );
    assert!(
        std::fs::read_to_string(&email)
            .unwrap()
            .contains("Order ord-2 blocked by fraud screening")
    );

    // The webhook to a gone endpoint: a dead letter with its HTTP status.
    let letters = dead_letters(&conn, 1, Duration::from_secs(10)).await;
    let letter = letters
        .iter()
        .find(|d| d.group == "webhooks")
        .expect("the webhook's dead letter");
    assert!(letter.error.contains("HTTP 410"), "{}", letter.error);
    assert_eq!(
        letter.original_subject,
        "events.globex.webhook.delivery.requested"
    );
    let failed = find_after(&conn, "webhook.delivery.failed").await;
    assert_eq!(failed["causationid"], webhook.id.as_str());
    assert_eq!(failed["data"]["last_status"], 410);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_system_takes_events_over_http_with_a_key_kept_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let system = DevSystem::start(DevOptions {
        gateway_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..options(dir.path())
    })
    .await
    .unwrap();
    let (gateway, key) = system.gateway.as_ref().expect("the gateway runs");
    let (addr, key) = (gateway.local_addr(), key.clone());
    let saved = std::fs::read_to_string(dir.path().join("gateway-key")).unwrap();
    assert_eq!(saved.trim(), key);
    let upload = serde_json::to_value(samples::upload(7).unwrap()).unwrap();
    let body = serde_json::json!({"type": "video.upload.completed", "id": "http-upload-7", "data": upload});
    let auth = format!("Bearer {key}");
    let (status, answer) = conveyor_tests::http_post(
        addr,
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // The pipeline runs from the event that came in over HTTP.
    let generated = find_after(&system.conn, "video.ai.generated").await;
    assert_eq!(generated["correlationid"], "http-upload-7");
    assert_eq!(generated["tenantid"], "acme");
    system.shutdown().await;

    // The next run keeps the key.
    let again = DevSystem::start(DevOptions {
        gateway_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..options(dir.path())
    })
    .await
    .unwrap();
    assert_eq!(again.gateway.as_ref().expect("gateway").1, key);
    again.shutdown().await;
}

async fn find_after(conn: &conveyor::Connection, event_type: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for m in read_stream(conn, "EVENTS", 0, Duration::ZERO).await {
            let v: serde_json::Value = serde_json::from_slice(&m.message.payload).unwrap();
            if v["type"] == event_type {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no {event_type} event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_explanation_overtakes_a_backlog_of_normal_ones() {
    let dir = tempfile::tempdir().unwrap();
    let system = DevSystem::start(DevOptions {
        stub: StubOptions {
            delay: Duration::from_millis(100),
            ..StubOptions::default()
        },
        concurrency: Some(2),
        ..options(dir.path())
    })
    .await
    .unwrap();
    let conn = system.conn.clone();
    let publisher = Publisher::new(&conn);
    const BACKLOG: usize = 40;
    let normal = (0..BACKLOG).map(|i| {
        (
            "acme",
            FraudExplanationRequested {
                detection_id: Id::new(format!("n-{i}")).unwrap(),
                decision: Decision::Review,
                priority: Priority::Normal,
                requested_at: Utc::now(),
            },
        )
    });
    publisher.publish_many(normal).await.into_result().unwrap();
    // The triage of a blocked order puts its request on the high lane.
    publisher
        .publish("acme", &samples::detection(99, Decision::Block).unwrap())
        .await
        .unwrap();
    let acme = conveyor::TenantId::parse("acme").unwrap();
    eventually(
        Duration::from_secs(20),
        "the urgent explanation",
        || async {
            system
                .store
                .get(&acme, "fraud_explanations", "det-99")
                .await
                .unwrap()
                .is_some()
        },
    )
    .await;
    let normal_done = system
        .store
        .list(&acme, "fraud_explanations")
        .await
        .unwrap()
        .iter()
        .filter(|r| r.key.starts_with("n-"))
        .count();
    assert!(
        normal_done < BACKLOG / 2,
        "the urgent request waited for {normal_done} of {BACKLOG} normal ones"
    );
    system.shutdown().await;
}

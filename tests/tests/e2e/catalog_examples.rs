//! The catalog's examples, published as an app in another language would (from the exported
//! `schemas/json/envelope/*.schema.json` files), are handled by the shipped handlers.

use std::path::Path;
use std::time::{Duration, Instant};

use conveyor::topology::EVENTS_STREAM;
use conveyor_dev::{DevOptions, DevSystem};
use conveyor_tests::dead_letters;
use futures::StreamExt;

/// True when no group of the dev system has an event pending or unacknowledged.
async fn settled(conn: &conveyor::Connection) -> bool {
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    for name in names {
        let info = stream.consumer_info(&name).await.unwrap();
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_example_is_handled_by_its_shipped_handler() {
    conveyor_tests::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let system = DevSystem::start(DevOptions {
        data_dir: dir.path().to_path_buf(),
        nats_port: Some(0),
        metrics_addr: None,
        gateway_addr: None,
        dashboard_addr: None,
        sample_every: None,
        scheduler: false,
        analysis: conveyor_analysis::AnalysisConfig {
            files: 3,
            step_duration: Duration::from_millis(10),
            ack_wait: Duration::from_secs(1),
        },
        ..DevOptions::default()
    })
    .await
    .unwrap();
    let conn = system.conn.clone();
    let exported = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/json");
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("catalog.json")).unwrap()).unwrap();
    // In catalog order, each settled before the next: a step of a chain (a transcription) needs
    // the step before it (its upload).
    for entry in catalog["events"].as_array().unwrap() {
        let file = exported.join(entry["envelope_schema"].as_str().unwrap());
        let schema: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let mut example = schema["examples"][0].clone();
        let ty = example["type"].as_str().unwrap().to_owned();
        if ty == "webhook.delivery.requested" {
            // The example's endpoint is on the internet; this machine's tests are offline.
            example["data"]["url"] = format!("http://{}/hooks/ok", system.sink).into();
        }
        let tenant = example["tenantid"].as_str().unwrap().to_owned();
        let id = example["id"].as_str().unwrap().to_owned();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{tenant}:{id}").as_str());
        headers.insert("Content-Type", "application/cloudevents+json");
        conn.jetstream()
            .publish_with_headers(
                format!("events.{tenant}.{ty}"),
                headers,
                serde_json::to_vec(&example).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !settled(&conn).await {
            assert!(Instant::now() < deadline, "{ty}: not settled in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let letters = dead_letters(&conn, 0, Duration::ZERO).await;
        assert!(letters.is_empty(), "{ty}: {letters:?}");
    }
    system.shutdown().await;
}

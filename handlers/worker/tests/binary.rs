//! The `conveyor-worker` binary against a real nats-server: runs the groups it is told to,
//! exits cleanly on SIGTERM, and shares handler state across hosts.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conveyor::Publisher;
use conveyor::testing::NatsServer;
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor_schemas::notifications::{EmailAlertRequested, EmailTemplate};
use conveyor_schemas::{EmailAddress, Id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_the_chosen_groups_and_stops_on_sigterm() {
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    provision(&conn, &Topology::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor-worker"))
        .args(["--server", &server.url(), "--groups", "email,webhooks"])
        .arg("--store-dir")
        .arg(dir.path().join("store"))
        .arg("--outbox-dir")
        .arg(dir.path().join("outbox"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let alert = EmailAlertRequested {
        alert_id: Id::new("a-1").unwrap(),
        to: vec![EmailAddress::new("ops@example.com").unwrap()],
        template: EmailTemplate::WebhookFailing,
        variables: BTreeMap::from([
            ("url".into(), "https://hooks.example.com".into()),
            ("status".into(), "503".into()),
        ]),
        requested_at: chrono::Utc::now(),
    };
    Publisher::new(&conn).publish("acme", &alert).await.unwrap();
    let email = dir.path().join("outbox/acme/a-1.eml");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !email.is_file() {
        assert!(Instant::now() < deadline, "the email was not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    assert!(
        stream
            .consumer_info(conveyor::partition::consumer_name("email", 0))
            .await
            .is_ok()
    );
    assert!(
        stream
            .consumer_info(conveyor::partition::consumer_name("webhooks", 0))
            .await
            .is_ok()
    );
    assert!(
        stream
            .consumer_info(conveyor::partition::consumer_name("fraud-triage", 0))
            .await
            .is_err(),
        "a group it was not told to run"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn an_unknown_group_is_refused() {
    let server = NatsServer::start().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_conveyor-worker"))
        .args(["--server", &server.url(), "--groups", "billing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown group \"billing\""), "{err}");
    assert!(
        err.contains("fraud-triage"),
        "names the known groups: {err}"
    );
}

/// Starts `conveyor-worker` for `groups` with a local directory of its own (as on another host).
fn worker(
    server: &NatsServer,
    groups: &str,
    dir: &std::path::Path,
    ai: &str,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_conveyor-worker"))
        .args([
            "--server",
            &server.url(),
            "--groups",
            groups,
            "--ai-url",
            ai,
        ])
        .arg("--store-dir")
        .arg(dir.join("store"))
        .arg("--outbox-dir")
        .arg(dir.join("outbox"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_across_two_hosts_on_the_key_value_store() {
    use conveyor_schemas::HttpUrl;
    use conveyor_schemas::video::{VideoAiGenerated, VideoUploadCompleted};
    use futures::StreamExt;
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    provision(&conn, &Topology::default()).await.unwrap();
    let stub = conveyor_llm_stub::LlmStub::start(
        "127.0.0.1:0".parse().unwrap(),
        conveyor_llm_stub::StubOptions::default(),
    )
    .await
    .unwrap();
    // Intake on one host, transcription and summary on another: different local directories.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut intake = worker(&server, "video-intake", a.path(), &stub.base_url());
    let mut rest = worker(
        &server,
        "video-transcribe,video-summarize",
        b.path(),
        &stub.base_url(),
    );
    let upload = VideoUploadCompleted {
        video_id: Id::new("vid-7").unwrap(),
        storage_url: HttpUrl::new("https://storage.example.com/vid-7.mp4").unwrap(),
        size_bytes: 1_000_000,
        duration_ms: 60_000,
        content_type: "video/mp4".into(),
        uploaded_by: Id::new("u-1").unwrap(),
        completed_at: chrono::Utc::now(),
    };
    Publisher::new(&conn)
        .publish("acme", &upload)
        .await
        .unwrap();
    // The summary is published once the transcription found the upload intake stored.
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let reader = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: conveyor::partition::stored_filter(
                Some("acme"),
                Some(<VideoAiGenerated as conveyor::Event>::TYPE),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = reader.messages().await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("no summary within 30 s")
        .unwrap()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&summary.payload).unwrap();
    assert_eq!(summary["data"]["video_id"], "vid-7");
    let dlq = conn
        .jetstream()
        .get_stream(conveyor::topology::DLQ_STREAM)
        .await
        .unwrap()
        .cached_info()
        .state
        .messages;
    assert_eq!(dlq, 0, "a dead letter (no upload recorded?)");
    // Neither host wrote handler state into its own directory.
    assert!(!a.path().join("store").exists() && !b.path().join("store").exists());
    for child in [&mut intake, &mut rest] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

//! The `conveyor-worker` binary against a real nats-server: runs the groups it is told to and
//! exits cleanly on SIGTERM.
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

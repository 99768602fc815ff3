//! The notification handlers against a local webhook sink, an outbox directory and a store.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use axum::http::{HeaderMap, StatusCode};
use conveyor::TenantId;
use conveyor::store::MemoryStore;
use conveyor::testing::TestDelivery;
use conveyor_schemas::{HttpUrl, Id};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A webhook receiver answering `status` (and sleeping `delay` first), recording requests.
async fn receiver(status: u16, delay: Duration) -> (String, Arc<Mutex<Vec<(HeaderMap, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                tokio::time::sleep(delay).await;
                log.lock().unwrap().push((headers, body));
                let mut h = HeaderMap::new();
                h.insert("Retry-After", "30".parse().unwrap());
                (StatusCode::from_u16(status).unwrap(), h, "")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn state(timeout: Duration, dir: &std::path::Path) -> (State, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let config = NotificationsConfig {
        webhook_timeout: timeout,
        ..NotificationsConfig::default()
    };
    let n = Notifications::new(config, store.clone(), Arc::new(DirectoryOutbox::new(dir))).unwrap();
    (Arc::new(n), store)
}

fn webhook(url: &str) -> WebhookDeliveryRequested {
    WebhookDeliveryRequested {
        delivery_id: Id::new("wd-1").unwrap(),
        subscription_id: Id::new("sub-1").unwrap(),
        url: HttpUrl::new(url).unwrap(),
        event_name: "order.created".into(),
        body: r#"{"order":"o-1"}"#.into(),
        requested_at: Utc::now(),
    }
}

#[tokio::test]
async fn delivers_with_a_verifiable_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = receiver(204, Duration::ZERO).await;
    let (s, store) = state(Duration::from_secs(2), dir.path());
    TestDelivery::new(acme(), webhook(&url))
        .run(deliver_webhook, s)
        .await
        .result
        .unwrap();
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let sig = headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
    let secret = NotificationsConfig::default().webhook_secret;
    assert!(verify_signature(
        &secret,
        sig,
        body.as_bytes(),
        Duration::from_secs(300)
    ));
    assert!(!verify_signature(
        "other",
        sig,
        body.as_bytes(),
        Duration::from_secs(300)
    ));
    assert!(!verify_signature(
        &secret,
        sig,
        b"tampered",
        Duration::from_secs(300)
    ));
    let record = store
        .get(&acme(), DELIVERIES, "wd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value["status"], 204);
}

#[tokio::test]
async fn a_4xx_is_permanent_and_announced_but_408_and_429_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (gone, _) = receiver(410, Duration::ZERO).await;
    let (s, store) = state(Duration::from_secs(2), dir.path());
    let run = TestDelivery::new(acme(), webhook(&gone))
        .run(deliver_webhook, s.clone())
        .await;
    let err = run.result.unwrap_err();
    assert_eq!(err.retry(), Retry::Never);
    assert!(err.to_string().contains("HTTP 410"), "{err}");
    assert_eq!(run.published[0].event_type, "webhook.delivery.failed");
    assert_eq!(run.published[0].data["last_status"], 410);
    let record = store
        .get(&acme(), DELIVERIES, "wd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value["delivered"], false);

    let (timeout, _) = receiver(408, Duration::ZERO).await;
    let run = TestDelivery::new(acme(), webhook(&timeout))
        .run(deliver_webhook, s.clone())
        .await;
    assert_eq!(run.result.unwrap_err().retry(), Retry::Backoff);
    assert!(run.published.is_empty(), "attempts left: not given up");

    let (limited, _) = receiver(429, Duration::ZERO).await;
    let run = TestDelivery::new(acme(), webhook(&limited))
        .run(deliver_webhook, s)
        .await;
    assert_eq!(
        run.result.unwrap_err().retry(),
        Retry::After(Duration::from_secs(30))
    );
}

#[tokio::test]
async fn server_errors_and_timeouts_retry_and_the_last_attempt_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let (failing, _) = receiver(503, Duration::ZERO).await;
    let (s, _) = state(Duration::from_millis(300), dir.path());
    let err = TestDelivery::new(acme(), webhook(&failing))
        .run(deliver_webhook, s.clone())
        .await
        .result
        .unwrap_err();
    assert_eq!(err.retry(), Retry::Backoff);
    let (slow, _) = receiver(200, Duration::from_secs(2)).await;
    let run = TestDelivery::new(acme(), webhook(&slow))
        .run(deliver_webhook, s.clone())
        .await;
    let err = run.result.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    let run = TestDelivery::new(acme(), webhook(&failing))
        .attempt(8, 8)
        .run(deliver_webhook, s)
        .await;
    assert!(run.result.is_err());
    assert_eq!(run.published[0].data["last_status"], 503);
    assert_eq!(run.published[0].data["attempts"], 8);
}

/// A minimal SMTP server: accepts one session and returns what DATA carried.
async fn smtp_server() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let session = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" => b"250 test\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(reply).await.unwrap();
        }
        data
    });
    (url, session)
}

#[tokio::test]
async fn an_alert_is_sent_over_smtp_once() {
    let (url, session) = smtp_server().await;
    let store = Arc::new(MemoryStore::default());
    let n = Notifications::new(
        NotificationsConfig::default(),
        store,
        Arc::new(SmtpOutbox::from_url(&url).unwrap()),
    )
    .unwrap();
    let s = Arc::new(n);
    let alert = EmailAlertRequested {
        alert_id: Id::new("report-1").unwrap(),
        to: vec![conveyor_schemas::EmailAddress::new("ops@example.com").unwrap()],
        template: EmailTemplate::DailyReport,
        variables: BTreeMap::from([
            ("date".into(), "2026-11-21".into()),
            ("summary".into(), "12 explanations".into()),
        ]),
        requested_at: Utc::now(),
    };
    TestDelivery::new(acme(), alert.clone())
        .run(send_email, s.clone())
        .await
        .result
        .unwrap();
    let data = session.await.unwrap();
    assert!(
        data.contains("Subject: [acme] Daily report 2026-11-21"),
        "{data}"
    );
    assert!(data.contains("12 explanations"), "{data}");
    assert!(data.contains("Message-ID: <report-1@conveyor>"), "{data}");
    // A redelivery sends nothing (the server is gone: sending would fail).
    TestDelivery::new(acme(), alert)
        .run(send_email, s)
        .await
        .result
        .unwrap();
}

#[tokio::test]
async fn an_alert_is_rendered_into_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = state(Duration::from_secs(1), dir.path());
    let alert = EmailAlertRequested {
        alert_id: Id::new("fraud-d-1").unwrap(),
        to: vec![conveyor_schemas::EmailAddress::new("risk@example.com").unwrap()],
        template: EmailTemplate::FraudBlocked,
        variables: BTreeMap::from([
            ("order_id".into(), "o-1".into()),
            ("amount".into(), "99900 EUR".into()),
            ("score".into(), "930".into()),
            ("detection_id".into(), "d-1".into()),
        ]),
        requested_at: Utc::now(),
    };
    TestDelivery::new(acme(), alert.clone())
        .run(send_email, s.clone())
        .await
        .result
        .unwrap();
    let eml = std::fs::read_to_string(dir.path().join("acme/fraud-d-1.eml")).unwrap();
    assert!(
        eml.contains("Subject: [acme] Order o-1 blocked by fraud screening"),
        "{eml}"
    );
    assert!(eml.contains("To: risk@example.com"));
    assert!(eml.contains("fraud score 930"));

    let mut missing = alert;
    missing.alert_id = Id::new("fraud-d-2").unwrap();
    missing.variables.remove("score");
    let err = TestDelivery::new(acme(), missing)
        .run(send_email, s)
        .await
        .result
        .unwrap_err();
    assert_eq!(err.retry(), Retry::Never);
    assert!(err.to_string().contains("score"));
}

#[tokio::test]
async fn the_catalog_example_of_an_alert_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = state(Duration::from_secs(1), dir.path());
    let entry = conveyor_schemas::find("email.alert.requested").unwrap();
    let example: EmailAlertRequested = serde_json::from_value(entry.example()).unwrap();
    let id = example.alert_id.to_string();
    TestDelivery::new(acme(), example)
        .run(send_email, s)
        .await
        .result
        .unwrap();
    assert!(dir.path().join(format!("acme/{id}.eml")).exists());
}

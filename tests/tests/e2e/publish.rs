use std::time::Duration;

use conveyor::testing::NatsServer;
use conveyor::topology::{EVENTS_STREAM, StreamChange};
use conveyor::topology::{Topology, provision};
use conveyor::{EventOptions, PublishErrorKind, Publisher, TenantIdErrorKind};
use conveyor_schemas::commerce::OrderCreated;
use conveyor_tests::{Ping, events_count, server};

fn order(id: &str) -> OrderCreated {
    conveyor_tests::order(id, 2500)
}

#[tokio::test]
async fn publishes_a_cloudevent_on_the_tenant_subject() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn).with_source("shop");
    let stored = publisher.publish("acme", &order("o-1")).await.unwrap();
    assert_eq!(stored.subject, "events.acme.order.created");
    assert!(!stored.duplicate);

    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let msg = stream.direct_get(stored.stream_sequence).await.unwrap();
    assert_eq!(
        msg.subject.as_str(),
        "events.~.15.acme.order.created",
        "stored with the tenant's partition"
    );
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").unwrap().as_str(),
        format!("acme:{}", stored.id),
        "the de-duplication id is scoped by tenant"
    );
    assert_eq!(
        msg.headers.get("Content-Type").unwrap().as_str(),
        "application/cloudevents+json"
    );
    let json: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(json["specversion"], "1.0");
    assert_eq!(json["id"], stored.id.as_str());
    assert_eq!(json["source"], "shop");
    assert_eq!(json["type"], "order.created");
    assert_eq!(json["tenantid"], "acme");
    assert_eq!(json["datacontenttype"], "application/json");
    assert!(json["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json["data"]["total"]["amount_minor"], 2500);
}

#[tokio::test]
async fn republishing_an_id_is_reported_as_duplicate_and_stored_once() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let opts = EventOptions::default().id("order-o-1-created");
    let first = publisher
        .publish_with("acme", &order("o-1"), opts.clone())
        .await
        .unwrap();
    let second = publisher
        .publish_with("acme", &order("o-1"), opts)
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.stream_sequence, second.stream_sequence);
    assert_eq!(events_count(&conn).await, 1);
}

#[tokio::test]
async fn invalid_tenants_are_rejected_before_sending() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let long = "x".repeat(65);
    let cases: [(&str, TenantIdErrorKind); 9] = [
        ("", TenantIdErrorKind::Empty),
        ("a.b", TenantIdErrorKind::Separator),
        ("*", TenantIdErrorKind::Wildcard),
        (">", TenantIdErrorKind::Wildcard),
        ("$sys", TenantIdErrorKind::InvalidCharacter),
        ("a b", TenantIdErrorKind::Whitespace),
        (" acme", TenantIdErrorKind::Whitespace),
        (&long, TenantIdErrorKind::TooLong),
        ("tenant-ü", TenantIdErrorKind::NonAscii),
    ];
    for (tenant, rule) in cases {
        let err = publisher.publish(tenant, &Ping { n: 1 }).await.unwrap_err();
        assert_eq!(err.kind(), PublishErrorKind::InvalidTenant, "{tenant:?}");
        let cause = err
            .cause()
            .and_then(|s| s.downcast_ref::<conveyor::TenantIdError>())
            .expect("the tenant error is the cause");
        assert_eq!(cause.kind(), rule, "{tenant:?}: {err}");
        // The rule is said once, and reporters walking `source()` do not repeat it.
        let text = err.to_string();
        assert_eq!(text.matches(cause.message()).count(), 1, "{text}");
        assert!(std::error::Error::source(&err).is_none());
    }
    assert_eq!(events_count(&conn).await, 0, "nothing was sent");
}

#[tokio::test]
async fn publishing_without_a_stream_says_so() {
    conveyor_tests::init_tracing();
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    let err = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::NoStream, "{err}");
}

#[tokio::test]
async fn oversized_payloads_are_rejected() {
    let (_server, conn) = server().await;
    let big = OrderCreated {
        customer_id: conveyor_schemas::Id::new("x").unwrap(),
        lines: vec![
            conveyor_schemas::commerce::OrderLine {
                sku: conveyor_schemas::Id::new("x".repeat(100)).unwrap(),
                quantity: std::num::NonZeroU32::MIN,
                unit_price: conveyor_schemas::Money::new(1, "EUR").unwrap(),
            };
            12_000
        ],
        ..order("o-big")
    };
    let err = Publisher::new(&conn)
        .publish("acme", &big)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::PayloadTooLarge, "{err}");
}

#[tokio::test]
async fn publishing_for_a_forbidden_tenant_is_permission_denied() {
    conveyor_tests::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.conf");
    std::fs::write(
        &conf,
        r#"
accounts {
  APP: {
    jetstream: enabled
    users: [
      { user: admin, password: admin }
      { user: pub_acme, password: secret, permissions: {
          publish: { allow: ["events.acme.>"] }
          subscribe: { allow: ["_INBOX_pub_acme.>"] } } }
    ]
  }
}
"#,
    )
    .unwrap();
    let server = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = conveyor::Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into()),
    )
    .await
    .unwrap();
    provision(&admin, &Topology::default()).await.unwrap();

    let app = conveyor::Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password("pub_acme".into(), "secret".into())
            .custom_inbox_prefix("_INBOX_pub_acme"),
    )
    .await
    .unwrap();
    let publisher = Publisher::new(&app);
    publisher.publish("acme", &Ping { n: 1 }).await.unwrap();

    let started = std::time::Instant::now();
    let err = publisher
        .publish("globex", &Ping { n: 2 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("events.globex.test.ping"), "{err}");
    assert!(
        started.elapsed() < conveyor::connection::DEFAULT_REQUEST_TIMEOUT,
        "reported before the ack timeout"
    );
}

#[tokio::test]
async fn publish_many_keeps_order_and_stores_every_event() {
    use futures::StreamExt;
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn).with_max_in_flight(64);
    let events = (0..500).map(|n| {
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        (tenant, Ping { n }, EventOptions::default())
    });
    let results: Vec<_> = publisher.publish_stream(events).collect().await;
    assert_eq!(results.len(), 500);
    let seqs: Vec<u64> = results
        .into_iter()
        .map(|r| r.unwrap().stream_sequence)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in input order");
    assert_eq!(events_count(&conn).await, 500);

    // The summary counts what was stored and keeps only the failures, by position.
    let again = (0..500).map(|n| ("acme", Ping { n }));
    let summary = publisher.publish_many(again).await;
    assert_eq!(summary.stored, 500);
    assert_eq!(summary.duplicates, 0);
    assert_eq!(
        summary.last_sequence.unwrap() - summary.first_sequence.unwrap(),
        499
    );
    let mixed = publisher
        .publish_many(vec![
            ("acme", Ping { n: 1 }),
            ("bad.tenant", Ping { n: 2 }),
            ("acme", Ping { n: 3 }),
        ])
        .await;
    assert_eq!(mixed.stored, 2);
    assert_eq!(mixed.failed.len(), 1);
    assert_eq!(mixed.failed[0].0, 1);
    assert_eq!(mixed.failed[0].1.kind(), PublishErrorKind::InvalidTenant);
    assert!(!mixed.is_complete());
    assert_eq!(
        mixed.into_result().unwrap_err().kind(),
        PublishErrorKind::InvalidTenant
    );
}

#[tokio::test]
async fn provisioning_is_idempotent_and_applies_changes() {
    conveyor_tests::init_tracing();
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    let topology = Topology::default();
    let first = provision(&conn, &topology).await.unwrap();
    assert!(
        first.iter().all(|(_, c)| *c == StreamChange::Created),
        "{first:?}"
    );
    let again = provision(&conn, &topology).await.unwrap();
    assert!(
        again.iter().all(|(_, c)| *c == StreamChange::Unchanged),
        "{again:?}"
    );

    let mut changed = topology.clone();
    changed.events.max_age = Duration::from_secs(3600);
    changed.events.duplicate_window = Duration::from_secs(60);
    let updated = provision(&conn, &changed).await.unwrap();
    assert_eq!(
        updated[0],
        (EVENTS_STREAM.to_owned(), StreamChange::Updated)
    );
    assert_eq!(updated[1].1, StreamChange::Unchanged);
    let mut stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(60));

    let mut invalid = topology;
    invalid.events.max_age = Duration::from_secs(10);
    let err = provision(&conn, &invalid).await.unwrap_err();
    assert_eq!(err.kind(), conveyor::ProvisionErrorKind::InvalidConfig);
}

/// An event whose payload cannot be encoded as JSON (a map with non-string keys).
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Unencodable {
    by_pair: std::collections::BTreeMap<(u8, u8), u8>,
}

impl conveyor::Event for Unencodable {
    const TYPE: &'static str = "test.unencodable";
}

#[tokio::test]
async fn unencodable_payloads_are_rejected_before_sending() {
    let (_server, conn) = server().await;
    let event = Unencodable {
        by_pair: [((1, 2), 3)].into_iter().collect(),
    };
    let err = Publisher::new(&conn)
        .publish("acme", &event)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Encode, "{err}");
    assert_eq!(events_count(&conn).await, 0);
}

#[tokio::test]
async fn an_unanswered_publish_times_out() {
    let (mut server, conn) = server().await;
    let conn = conn.with_timeout(Duration::from_millis(500));
    server.stop();
    let err = Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Timeout, "{err}");
}

/// An event whose own type rejects what it serializes (the field is written as `a` and read
/// as `b`).
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Lopsided {
    #[serde(rename(serialize = "a", deserialize = "b"))]
    value: u32,
}

impl conveyor::Event for Lopsided {
    const TYPE: &'static str = "test.lopsided";
}

#[tokio::test]
async fn an_event_its_own_type_cannot_decode_is_never_sent() {
    let (_server, conn) = server().await;
    let err = Publisher::new(&conn)
        .publish("acme", &Lopsided { value: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Encode, "{err}");
    assert!(err.to_string().contains("would not decode"), "{err}");
    assert_eq!(events_count(&conn).await, 0);
}

#[tokio::test]
async fn an_atomic_batch_is_stored_whole_or_not_at_all() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn).with_source("shop");
    let mut batch = publisher.atomic_batch("acme").unwrap();
    for n in 0..3 {
        let id = format!("a-{n}");
        batch
            .add(&order(&id), EventOptions::default().id(id.clone()))
            .unwrap();
    }
    batch
        .add_untyped(
            "order.created",
            &order("a-later"),
            EventOptions::default()
                .id("a-later")
                .delay(Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(batch.len(), 4);
    let stored = batch.commit().await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|p| p.stream_sequence).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(stored[3].deliver_at.is_some());
    assert_eq!(events_count(&conn).await, 4);

    // One id already stored: nothing of the batch is.
    let mut again = publisher.atomic_batch("acme").unwrap();
    again
        .add(&order("a-new"), EventOptions::default().id("a-new"))
        .unwrap();
    again
        .add(&order("a-1"), EventOptions::default().id("a-1"))
        .unwrap();
    let e = again.commit().await.unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::Duplicate, "{e}");
    assert_eq!(events_count(&conn).await, 4);

    // Refused before sending: one id twice, too many events, a debounced event, a bad tenant.
    let mut twice = publisher.atomic_batch("acme").unwrap();
    twice
        .add(&Ping { n: 1 }, EventOptions::default().id("x"))
        .unwrap();
    let e = twice
        .add(&Ping { n: 2 }, EventOptions::default().id("x"))
        .unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::Duplicate);
    let mut full = publisher.atomic_batch("acme").unwrap();
    for n in 0..conveyor::publisher::MAX_ATOMIC_BATCH {
        full.add(&Ping { n: n as u32 }, EventOptions::default())
            .unwrap();
    }
    let e = full
        .add(&Ping { n: 0 }, EventOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::BatchTooLarge);
    let mut debounced = publisher.atomic_batch("acme").unwrap();
    let e = debounced
        .add(
            &Ping { n: 1 },
            EventOptions::default().debounce("k", Duration::from_secs(5)),
        )
        .unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::InvalidDelay);
    let e = publisher.atomic_batch("ac me").unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::InvalidTenant);
    // An empty batch stores nothing.
    let empty = publisher.atomic_batch("acme").unwrap();
    assert!(empty.commit().await.unwrap().is_empty());
    assert_eq!(events_count(&conn).await, 4);
}

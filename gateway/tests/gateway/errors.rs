//! Every refusal: its status, its JSON body, and that nothing was stored.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Gateway, key, order_data, order_event};

#[tokio::test]
async fn keys_are_required_scoped_and_revocable() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let event = order_event("k-1").to_string();
    let ce = "application/cloudevents+json";

    let missing = gw.post(None, ce, event.clone()).await;
    assert_eq!(
        (missing.status, missing.code()),
        (401, "unauthorized"),
        "{missing:?}"
    );
    let malformed = gw.post(Some("not-a-key"), ce, event.clone()).await;
    assert_eq!(malformed.status, 401);
    let unknown = gw
        .post(Some("cvk_0123456789ab_0000000000000000"), ce, event.clone())
        .await;
    assert_eq!(unknown.status, 401);

    let acme = key(&conn, "acme", &["order.*"], None).await;
    let (id, _) = conveyor_gateway::keys::split_key(&acme).unwrap();
    let wrong_secret = format!("cvk_{id}_wrong");
    assert_eq!(
        gw.post(Some(&wrong_secret), ce, event.clone()).await.status,
        401
    );

    let mut payout = order_event("p-1");
    payout["type"] = json!("payout.requested");
    let scope = gw.post_event(&acme, &payout).await;
    assert_eq!(
        (scope.status, scope.code()),
        (403, "forbidden_type"),
        "{scope:?}"
    );
    assert_eq!(gw.post(Some(&acme), ce, event.clone()).await.status, 202);

    let keys = conveyor_gateway::keys::Keys::open(&conn).await.unwrap();
    keys.revoke(id).await.unwrap();
    let deadline = Instant::now() + conveyor_gateway::CACHE_TTL + Duration::from_secs(3);
    loop {
        let a = gw
            .post(Some(&acme), ce, order_event("k-2").to_string())
            .await;
        if a.status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked key still publishes: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = gw
        .post(Some(&acme), ce, order_event("k-3").to_string())
        .await;
    assert_eq!(again.status, 401, "{again:?}");
    // k-1, and k-2 while gateways may still trust what they read of the key.
    assert!(conveyor_tests::events_count(&conn).await <= 2);
}

#[tokio::test]
async fn invalid_events_get_400_with_a_pointer_and_store_nothing() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;

    let mut bad = order_data("v-1");
    bad["lines"][0]["quantity"] = json!(0);
    let mut event = order_event("v-1");
    event["data"] = bad.clone();
    let a = gw.post_event(&acme, &event).await;
    assert_eq!((a.status, a.code()), (400, "invalid_data"), "{a:?}");
    assert_eq!(a.body["error"]["pointer"], "/data/lines/0/quantity");

    // A batch with one invalid event stores none of it.
    let batch = json!([order_event("v-2"), event, order_event("v-3")]).to_string();
    let b = gw
        .post(Some(&acme), "application/cloudevents-batch+json", batch)
        .await;
    assert_eq!(b.status, 400, "{b:?}");
    assert_eq!(b.body["error"]["pointer"], "/1/data/lines/0/quantity");

    let mut unknown = order_event("v-4");
    unknown["type"] = json!("order.teleported");
    let u = gw.post_event(&acme, &unknown).await;
    assert_eq!((u.status, u.code()), (400, "unknown_type"));

    let not_json = gw
        .post(Some(&acme), "application/cloudevents+json", "{nope")
        .await;
    assert_eq!((not_json.status, not_json.code()), (400, "invalid_json"));

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let d = gw
        .post(Some(&acme), "application/cloudevents-batch+json", deep)
        .await;
    assert_eq!((d.status, d.code()), (400, "too_deep"));

    let twice = json!([order_event("v-5"), order_event("v-5")]).to_string();
    let t = gw
        .post(Some(&acme), "application/cloudevents-batch+json", twice)
        .await;
    assert_eq!(t.status, 400);
    assert_eq!(t.body["error"]["pointer"], "/1/id");

    assert_eq!(conveyor_tests::events_count(&conn).await, 0);
}

#[tokio::test]
async fn sizes_media_types_and_rates_are_enforced() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &["--max-body", "20000"]);
    let acme = key(&conn, "acme", &[], None).await;

    let huge = json!({"type": "order.created", "data": {"pad": "x".repeat(30_000)}});
    let big = gw
        .post(Some(&acme), "application/json", huge.to_string())
        .await;
    assert_eq!((big.status, big.code()), (413, "too_large"), "{big:?}");

    let text = gw.post(Some(&acme), "text/plain", "hello").await;
    assert_eq!((text.status, text.code()), (415, "unsupported_media_type"));

    let limited = key(&conn, "acme", &[], Some("2/m")).await;
    let ce = "application/cloudevents+json";
    assert_eq!(
        gw.post(Some(&limited), ce, order_event("r-1").to_string())
            .await
            .status,
        202
    );
    assert_eq!(
        gw.post(Some(&limited), ce, order_event("r-2").to_string())
            .await
            .status,
        202
    );
    let over = gw
        .post(Some(&limited), ce, order_event("r-3").to_string())
        .await;
    assert_eq!(
        (over.status, over.code()),
        (429, "rate_limited"),
        "{over:?}"
    );
    let after = over.retry_after.expect("Retry-After");
    assert!((1..=31).contains(&after), "{after}");
    // Another key of the same tenant is not slowed by it.
    assert_eq!(
        gw.post(Some(&acme), ce, order_event("r-4").to_string())
            .await
            .status,
        202
    );
    assert_eq!(conveyor_tests::events_count(&conn).await, 3);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &["--header-timeout", "1s", "--body-timeout", "1s"]);
    let acme = key(&conn, "acme", &[], None).await;

    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection of a client that never finished its headers stayed open"
    );

    // A body that never arrives: 408.
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {acme}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"type\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // Meanwhile others are served.
    let a = gw.post_event(&acme, &order_event("fast-1")).await;
    assert_eq!(a.status, 202);
}

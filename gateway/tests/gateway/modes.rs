//! Every content mode, keys of two tenants, duplicates, traces, metrics.

use serde_json::json;

use crate::{Gateway, key, order_data, order_event, stored};

#[tokio::test]
async fn every_content_mode_stores_events_of_the_keys_tenant() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;

    let a = gw.post_event(&acme, &order_event("s-1")).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.statuses(), ["stored"]);
    assert_eq!(a.body["events"][0]["id"], "s-1");

    let binary = gw
        .http
        .post(gw.url("/v1/events"))
        .bearer_auth(&acme)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b-1")
        .header("ce-source", "/checkout")
        .header("ce-type", "order.created")
        .header("ce-correlationid", "corr-1")
        .body(order_data("b-1").to_string())
        .send()
        .await
        .unwrap();
    let b = crate::Answer::of(binary).await;
    assert_eq!(b.status, 202, "{b:?}");

    let batch = json!([order_event("m-1"), order_event("m-2"), order_event("m-3")]);
    let c = gw
        .post(
            Some(&acme),
            "application/cloudevents-batch+json",
            batch.to_string(),
        )
        .await;
    assert_eq!(c.status, 202, "{c:?}");
    assert_eq!(c.statuses(), ["stored"; 3]);
    let seqs: Vec<u64> = (0..3)
        .map(|i| c.body["events"][i]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs[1], seqs[0] + 1);
    assert_eq!(seqs[2], seqs[0] + 2);

    let minimal = json!({"type": "order.created", "data": order_data("x-1")});
    let d = gw
        .post(Some(&acme), "application/json", minimal.to_string())
        .await;
    assert_eq!(d.status, 202, "{d:?}");
    let generated = d.body["events"][0]["id"].as_str().unwrap().to_owned();
    assert!(!generated.is_empty());

    let events = stored(&conn, 6).await;
    assert_eq!(events.len(), 6);
    for (subject, envelope) in &events {
        assert_eq!(
            conveyor::subject::split_event_subject(subject),
            Some(("acme", "order.created")),
            "{subject}"
        );
        assert_eq!(envelope["tenantid"], "acme");
        assert_eq!(envelope["type"], "order.created");
        assert_eq!(envelope["specversion"], "1.0");
    }
    let ids: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-1", "b-1", "m-1", "m-2", "m-3", generated.as_str()]);
    assert_eq!(events[0].1["source"], "/checkout");
    assert_eq!(events[1].1["correlationid"], "corr-1");
    assert_eq!(events[5].1["source"], "conveyor-gateway");
}

#[tokio::test]
async fn keys_of_two_tenants_publish_each_for_its_own() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;
    let globex = key(&conn, "globex", &[], None).await;
    // The same business id for both tenants: each is stored, neither is a duplicate.
    assert_eq!(
        gw.post_event(&acme, &order_event("order-1"))
            .await
            .statuses(),
        ["stored"]
    );
    assert_eq!(
        gw.post_event(&globex, &order_event("order-1"))
            .await
            .statuses(),
        ["stored"]
    );
    // A key for acme naming globex in the event is refused.
    let mut forged = order_event("order-2");
    forged["tenantid"] = json!("globex");
    let f = gw.post_event(&acme, &forged).await;
    assert_eq!((f.status, f.code()), (403, "forbidden_tenant"), "{f:?}");
    let events = stored(&conn, 2).await;
    let tenants: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["tenantid"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
}

#[tokio::test]
async fn retried_requests_are_stored_once_and_reported_as_duplicates() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;
    let event = order_event("dup-1");
    assert_eq!(gw.post_event(&acme, &event).await.statuses(), ["stored"]);
    let again = gw.post_event(&acme, &event).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.statuses(), ["duplicate"]);

    let batch = json!([order_event("bd-1"), order_event("bd-2")]).to_string();
    let first = gw
        .post(
            Some(&acme),
            "application/cloudevents-batch+json",
            batch.clone(),
        )
        .await;
    assert_eq!(first.statuses(), ["stored", "stored"], "{first:?}");
    let retry = gw
        .post(Some(&acme), "application/cloudevents-batch+json", batch)
        .await;
    assert_eq!(retry.status, 202, "{retry:?}");
    assert_eq!(retry.statuses(), ["duplicate", "duplicate"]);
    // A batch mixing a stored id with a new one stores the new one.
    let mixed = json!([order_event("bd-2"), order_event("bd-3")]).to_string();
    let m = gw
        .post(Some(&acme), "application/cloudevents-batch+json", mixed)
        .await;
    assert_eq!(m.statuses(), ["duplicate", "stored"], "{m:?}");
    assert_eq!(stored(&conn, 4).await.len(), 4);
}

#[tokio::test]
async fn the_request_trace_becomes_the_events_trace_and_metrics_count_requests() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = gw
        .http
        .post(gw.url("/v1/events"))
        .bearer_auth(&acme)
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", tp)
        .body(order_event("t-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let events = stored(&conn, 1).await;
    assert_eq!(events[0].1["traceparent"], tp);

    let (status, _) = conveyor_tests::http_get(gw.addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = conveyor_tests::http_get(gw.addr, "/readyz").await;
    assert_eq!(status, 200);
    let (_, metrics) = conveyor_tests::http_get(gw.addr, "/metrics").await;
    assert_eq!(
        conveyor_tests::metric(&metrics, "conveyor_gateway_requests_total{status=\"202\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        conveyor_tests::metric(&metrics, "conveyor_gateway_events_total{result=\"stored\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn delayed_events_pass_through() {
    let (server, conn) = conveyor_tests::server().await;
    let gw = Gateway::start(&server, &[]);
    let acme = key(&conn, "acme", &[], None).await;
    let mut event = order_event("later-1");
    event["delay"] = json!("1h");
    let a = gw.post_event(&acme, &event).await;
    assert_eq!(a.status, 202, "{a:?}");
    let at = a.body["events"][0]["deliver_at"]
        .as_str()
        .expect("deliver_at");
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!(at > chrono::Utc::now() + chrono::Duration::minutes(59));
    let events = stored(&conn, 1).await;
    assert!(events[0].0.starts_with("delayed.acme."), "{}", events[0].0);
}

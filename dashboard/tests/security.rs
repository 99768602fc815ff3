//! The dashboard's guards over plain HTTP: loopback by default and a token elsewhere,
//! same-origin actions, read-only mode, escaping of tenant input, and an API that says what the
//! library says.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use conveyor::testing::NatsServer;
use conveyor_dashboard::{Dashboard, DashboardConfig, DashboardErrorKind};

async fn setup() -> (NatsServer, conveyor::Connection) {
    let server = NatsServer::start().unwrap();
    let conn = server.connect().await.unwrap();
    conveyor::topology::provision(&conn, &conveyor::topology::Topology::default())
        .await
        .unwrap();
    (server, conn)
}

fn local(configure: impl FnOnce(&mut DashboardConfig)) -> DashboardConfig {
    let mut c = DashboardConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..DashboardConfig::default()
    };
    configure(&mut c);
    c
}

#[tokio::test]
async fn another_address_than_loopback_needs_a_token() {
    let (_server, conn) = setup().await;
    let open = DashboardConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..DashboardConfig::default()
    };
    let e = Dashboard::start(&conn, open).await.unwrap_err();
    assert_eq!(e.kind(), DashboardErrorKind::Insecure);
    let guarded = DashboardConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        token: Some("s3cret-token".into()),
        ..DashboardConfig::default()
    };
    let d = Dashboard::start(&conn, guarded).await.unwrap();
    let url = format!("http://127.0.0.1:{}", d.local_addr().port());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        http.get(format!("{url}/")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        http.get(format!("{url}/api/overview"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(format!("{url}/api/overview"))
            .bearer_auth("s3cret-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // `?token=` once: a cookie, and the token leaves the address.
    let login = http
        .get(format!("{url}/tenants?token=s3cret-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/tenants");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = http
        .get(format!("{url}/tenants"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        !page.text().await.unwrap().contains("s3cret-token"),
        "the token is rendered"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn actions_from_another_origin_or_a_read_only_dashboard_are_refused() {
    let (_server, conn) = setup().await;
    let d = Dashboard::start(&conn, local(|_| {})).await.unwrap();
    let url = format!("http://{}", d.local_addr());
    let http = reqwest::Client::new();
    let pause = format!("{url}/tenants/acme/pause");
    let cross = http
        .post(&pause)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let fetched = http
        .post(&pause)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 403);
    assert!(conveyor::pause::paused(&conn).await.unwrap().is_empty());
    let same = http
        .post(&pause)
        .header("origin", url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=maintenance")
        .send()
        .await
        .unwrap();
    assert!(same.status().is_success(), "{}", same.status());
    assert_eq!(
        conveyor::pause::paused(&conn).await.unwrap()[0].reason,
        "maintenance"
    );
    // Pages forbid framing and scripts from anywhere.
    let page = http.get(format!("{url}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    d.shutdown().await;

    let ro = Dashboard::start(&conn, local(|c| c.read_only = true))
        .await
        .unwrap();
    let url = format!("http://{}", ro.local_addr());
    let refused = http
        .post(format!("{url}/tenants/acme/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let api = http
        .post(format!("{url}/api/tenants/acme/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    assert_eq!(
        conveyor::pause::paused(&conn).await.unwrap().len(),
        1,
        "a read-only dashboard resumed a tenant"
    );
    ro.shutdown().await;
}

#[tokio::test]
async fn tenant_input_is_escaped_and_the_api_agrees_with_the_library() {
    let (_server, conn) = setup().await;
    // A dead letter whose body and error hold markup.
    let body = br#"{"specversion":"1.0","id":"x","source":"s","type":"order.created","tenantid":"acme","data":{"note":"<script>alert('x')</script><img src=x onerror=alert(1)>"}}"#;
    let letter = conveyor::DeadLetter {
        original_subject: "events.acme.order.created".into(),
        stream_sequence: 1,
        group: "orders".into(),
        attempts: 1,
        kind: conveyor::DeadLetterKind::Handler,
        error: "bad <b>input</b>".into(),
        failed_at: chrono::Utc::now(),
        body: bytes::Bytes::from_static(body),
        body_truncated_from: None,
    };
    letter.publish(&conn).await.unwrap();
    let d = Dashboard::start(&conn, local(|_| {})).await.unwrap();
    let url = format!("http://{}", d.local_addr());
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{url}/dead-letters/1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>alert"), "raw markup in the page");
    assert!(!page.contains("<img src=x"), "raw markup in the page");
    assert!(
        page.contains("&lt;script&gt;alert"),
        "the payload is not shown"
    );
    assert!(page.contains("bad &lt;b&gt;input&lt;/b&gt;"));

    let api: serde_json::Value = http
        .get(format!("{url}/api/overview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lib = serde_json::to_value(conveyor::status::overview(&conn).await.unwrap()).unwrap();
    assert_eq!(api["streams"], lib["streams"]);
    assert_eq!(api["groups"], lib["groups"]);
    let letters: serde_json::Value = http
        .get(format!("{url}/api/dead-letters?group=orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(letters[0]["seq"], 1);
    assert_eq!(
        letters[0]["fingerprint"],
        conveyor::dlq::fingerprint("bad <b>input</b>")
    );
    let none: serde_json::Value = http
        .get(format!("{url}/api/dead-letters?group=other"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, serde_json::json!([]));
    // Every API route is in the OpenAPI document.
    let spec: serde_json::Value = http
        .get(format!("{url}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let source = include_str!("../src/api.rs");
    for line in source
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\"/api/"))
    {
        let path = line.split('"').nth(1).unwrap();
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} is not in openapi.json"
        );
    }
    d.shutdown().await;
}

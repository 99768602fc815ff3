//! The `gateway` user of `nats-config/accounts.conf` is enough to run a gateway.

use std::path::Path;

use serde_json::json;

use crate::{Gateway, key, order_event, stored};

#[tokio::test]
async fn the_gateway_user_can_publish_for_any_key() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    let server =
        conveyor::testing::NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = conveyor_tests::login(&server, "admin", "change-me-admin").await;
    conveyor::topology::provision(&admin, &conveyor::topology::Topology::default())
        .await
        .unwrap();
    let acme = key(&admin, "acme", &[], None).await;
    let globex = key(&admin, "globex", &[], None).await;
    let gw = Gateway::start(
        &server,
        &[
            "--user",
            "gateway",
            "--password",
            "change-me-gateway",
            "--inbox-prefix",
            "_INBOX_gateway",
        ],
    );
    assert_eq!(gw.post_event(&acme, &order_event("p-1")).await.status, 202);
    let mut later = order_event("p-2");
    later["delay"] = json!("1h");
    assert_eq!(gw.post_event(&globex, &later).await.status, 202);
    let batch = json!([order_event("p-3"), order_event("p-4")]).to_string();
    let b = gw
        .post(Some(&acme), "application/cloudevents-batch+json", batch)
        .await;
    assert_eq!(b.statuses(), ["stored", "stored"], "{b:?}");
    assert_eq!(stored(&admin, 4).await.len(), 4);
}

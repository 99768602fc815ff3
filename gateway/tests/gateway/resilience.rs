//! NATS going away under load: 503 with Retry-After while it is gone, service again after,
//! and every event answered 202 is in the stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Gateway, key, order_event, stored};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_load_loses_nothing_accepted() {
    let (mut server, conn) = conveyor_tests::server().await;
    let gw = Arc::new(Gateway::start(&server, &[]));
    let acme = key(&conn, "acme", &[], None).await;
    drop(conn);

    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (gw, acme, accepted, refused, stop) = (
            gw.clone(),
            acme.clone(),
            accepted.clone(),
            refused.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("load-{c}-{n}");
                let a = gw.post_event(&acme, &order_event(&id)).await;
                match a.status {
                    202 => {
                        accepted.lock().unwrap().insert(id);
                    }
                    503 => {
                        assert!(a.retry_after.is_some(), "503 without Retry-After: {a:?}");
                        refused.lock().unwrap().push(id);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => panic!("unexpected {other}: {a:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.stop();
    // Requests in flight when the server died wait for their ack until the connection's
    // timeout; the ones after them are refused at once.
    conveyor_tests::eventually(Duration::from_secs(20), "503s while NATS is down", || {
        let refused = refused.clone();
        async move { !refused.lock().unwrap().is_empty() }
    })
    .await;
    let (ready, body) = conveyor_tests::http_get(gw.addr, "/readyz").await;
    assert_eq!(ready, 503, "ready while NATS is down: {body}");
    server.start_again().unwrap();
    // Served again once reconnected.
    let before = accepted.lock().unwrap().len();
    conveyor_tests::eventually(Duration::from_secs(20), "202s after the restart", || {
        let accepted = accepted.clone();
        async move { accepted.lock().unwrap().len() > before + 20 }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let conn = server.connect().await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    let in_stream: HashSet<String> = stored(&conn, accepted.len())
        .await
        .into_iter()
        .map(|(_, e)| e["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = accepted.difference(&in_stream).collect();
    assert!(lost.is_empty(), "accepted but not stored: {lost:?}");
}

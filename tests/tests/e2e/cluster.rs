//! Conveyor unchanged on a 3-node cluster with 3 replicas.

use std::time::{Duration, Instant};

use conveyor::testing::NatsCluster;
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor::{EventOptions, Group, Publisher, Worker};
use conveyor_tests::{Ping, Recorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_killing_the_stream_leader() {
    conveyor_tests::init_tracing();
    let mut cluster = NatsCluster::start().unwrap();
    let conn = cluster
        .connect()
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let topology = Topology {
        replicas: 3,
        ..Topology::default()
    };
    // The cluster needs a moment to elect its meta leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match provision(&conn, &topology).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "cluster not ready");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("provisioning on the cluster failed: {e}"),
        }
    }
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("clustered")
                .concurrency(64)
                .ack_wait(Duration::from_secs(5))
                .handle(|_: Ping, ctx: conveyor::Context<Recorder>| async move {
                    ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                    Ok::<(), conveyor::HandlerError>(())
                }),
        )
        .build()
        .unwrap()
        .spawn();

    let publisher = Publisher::new(&conn);
    let total = 10_000u32;
    let mut killed = None;
    for n in 0..total {
        if n == 3_000 {
            let mut stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
            let info = stream.info().await.unwrap();
            let leader = info
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .expect("a stream leader");
            cluster.kill(&leader);
            killed = Some(leader);
        }
        // Retry with the same id: a publish that timed out may have been stored; the duplicate
        // window stores it once.
        let options = EventOptions::default().id(format!("cluster-{n}"));
        let mut tries = 0;
        while let Err(e) = publisher
            .publish_with("acme", &Ping { n }, options.clone())
            .await
        {
            tries += 1;
            // Three servers on a shared 2-core machine, each electing leaders for every stream
            // the killed one led: the new EVENTS leader can take over ten seconds to answer.
            assert!(tries < 300, "publish {n} never succeeded in 30 s: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(killed.is_some());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let handled = recorder.counts().len();
        if handled == total as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {handled} of {total} events handled after the leader {killed:?} was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = recorder.counts();
    assert!((0..total).all(|n| counts.contains_key(&format!("cluster-{n}"))));
    let mut stream = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        u64::from(total),
        "each stored once"
    );
    worker.shutdown().await;
}

/// `NatsCluster::start` returns a cluster that is formed: a node can take a client and report
/// the other two (while a route port is still being bound, a node already accepts clients, and a
/// node that then fails to bind it exits), and JetStream answers on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_fixture_returns_once_every_node_serves_jetstream() {
    conveyor_tests::init_tracing();
    let cluster = NatsCluster::start().unwrap();
    for url in cluster.urls() {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        assert_eq!(client.server_info().connect_urls.len(), 3, "{url}");
        let account = async_nats::jetstream::new(client)
            .query_account()
            .await
            .unwrap_or_else(|e| panic!("{url}: JetStream unavailable: {e}"));
        assert_eq!(account.streams, 0);
    }
}

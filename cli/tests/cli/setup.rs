//! Setting up the topology, and the errors every command shares.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_applies_the_topology_idempotently_and_verifies_it() {
    conveyor_tests::init_tracing();
    let server = conveyor::testing::NatsServer::start().unwrap();
    let first = conveyor(&server.url(), &["setup"]);
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}{err}");
    assert!(out.contains("EVENTS") && out.contains("created"), "{out}");
    assert!(out.contains("KV conveyor_leases"), "{out}");
    assert!(
        out.contains("verified: probe event published and read back"),
        "{out}"
    );
    let second = conveyor(&server.url(), &["setup"]);
    let (out, _) = text(&second);
    assert!(second.status.success());
    assert!(
        !out.contains(" created") && !out.contains(" updated"),
        "second run changes nothing: {out}"
    );
    assert!(out.contains("setup complete: 0 changed"), "{out}");
    let conn = server.connect().await.unwrap();
    assert_eq!(events_count(&conn).await, 0, "the probe was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_chooses_replicas_by_cluster_size() {
    conveyor_tests::init_tracing();
    let single = conveyor::testing::NatsServer::start().unwrap();
    let out = conveyor(&single.url(), &["setup"]);
    assert!(text(&out).0.contains("replicas: 1"), "{:?}", text(&out));

    let cluster = conveyor::testing::NatsCluster::start().unwrap();
    let urls = cluster.urls().join(",");
    // The fixture returns once JetStream answers on every node; a request can still meet a
    // leader election on a loaded machine, so setup is retried for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = conveyor(&urls, &["setup"]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("replicas: 3"), "{stdout}");
    let conn = cluster.connect().await.unwrap();
    let mut stream = conn.jetstream().get_stream("EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);
}

/// Run right after a cluster starts (as a deploy script would), setup waits for the cluster's
/// JetStream instead of failing on its first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_waits_for_a_cluster_that_is_still_forming() {
    conveyor_tests::init_tracing();
    // One node of three has no JetStream quorum: it answers "temporarily unavailable".
    let mut cluster = conveyor::testing::NatsCluster::start_partial(&["n1"]).unwrap();
    let url = cluster.urls()[0].clone();
    let setup = std::thread::spawn(move || conveyor(&url, &["setup"]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    if setup.is_finished() {
        let out = setup.join().unwrap();
        panic!("setup gave up on a forming cluster: {:?}", text(&out));
    }
    cluster.start_node("n2").unwrap();
    cluster.start_node("n3").unwrap();
    let out = setup.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("waiting for JetStream"), "{stdout}");
    assert!(stdout.contains("setup complete"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_server_or_bad_credentials_get_one_clear_line() {
    let out = conveyor("nats://127.0.0.1:1", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let (_, err) = text(&out);
    assert!(
        err.starts_with("error: ") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.conf");
    std::fs::write(
        &conf,
        "authorization { user: admin, password: right-secret }\njetstream: enabled\n",
    )
    .unwrap();
    let server =
        conveyor::testing::NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let out = conveyor(
        &server.url(),
        &[
            "--user",
            "admin",
            "--password",
            "wrong-secret-value",
            "status",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let (stdout, err) = text(&out);
    assert!(
        !err.contains("wrong-secret-value") && !stdout.contains("wrong-secret-value"),
        "credentials printed: {err}"
    );
    assert!(
        err.contains("credentials") || err.contains("authorization"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named() {
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config/accounts.conf");
    let server =
        conveyor::testing::NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let admin = conveyor(
        &server.url(),
        &["--user", "admin", "--password", "change-me-admin", "setup"],
    );
    assert!(admin.status.success(), "{:?}", text(&admin));
    let app = conveyor(
        &server.url(),
        &[
            "--user",
            "pub_acme",
            "--password",
            "change-me-acme",
            "--inbox-prefix",
            "_INBOX_pub_acme",
            "status",
        ],
    );
    assert_eq!(app.status.code(), Some(1));
    let (out, err) = text(&app);
    assert!(
        err.starts_with("error: permission denied") && err.contains("$JS.API"),
        "{err}"
    );
    assert!(!err.contains("change-me-acme") && !out.contains("change-me-acme"));

    // Without its inbox prefix the user may publish but not read the stream's ack: it is told
    // so, and how to retry without a duplicate.
    let no_inbox = conveyor(
        &server.url(),
        &[
            "--user",
            "pub_acme",
            "--password",
            "change-me-acme",
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            r#"{"order_id":"o-1","fulfilled_at":"2026-11-22T09:00:00Z"}"#,
            "--id",
            "fulfil-o-1",
        ],
    );
    assert_eq!(no_inbox.status.code(), Some(1));
    let (_, err) = text(&no_inbox);
    assert!(
        err.contains("reply inbox") && err.contains("--inbox-prefix"),
        "{err}"
    );
    assert!(err.contains("--id fulfil-o-1"), "{err}");
}

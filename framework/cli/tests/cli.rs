//! The `conveyor` command line against real nats-server processes: exit codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use conveyor::{Context, Group, HandlerError, Worker};
use conveyor_tests::{Ping, Recorder, events_count, eventually, server};

fn conveyor(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env_remove("NATS_URL")
        .arg("--server")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

/// A worker running `group` with a handler that records every run in `recorder`.
fn recording_worker(
    conn: &conveyor::Connection,
    group: &str,
    recorder: &Recorder,
) -> conveyor::WorkerHandle {
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new(group).handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

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
async fn publish_validates_against_the_catalog_before_sending() {
    let (server, conn) = server().await;
    let url = server.url();
    let data = r#"{"order_id":"o-1","fulfilled_at":"2026-11-22T09:00:00Z"}"#;
    let ok = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            data,
        ],
    );
    assert!(ok.status.success(), "{:?}", text(&ok));
    assert!(text(&ok).0.contains("events.acme.order.fulfilled"));
    assert_eq!(events_count(&conn).await, 1);
    let stored = conveyor_tests::read_stream(&conn, "EVENTS", 1, Duration::from_secs(2)).await;
    let body: serde_json::Value = serde_json::from_slice(&stored[0].message.payload).unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(
        text(&ok).0.starts_with(&format!("published {id} ")),
        "prints the id: {:?}",
        text(&ok)
    );

    let empty_id = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            data,
            "--id",
            "",
        ],
    );
    assert_eq!(empty_id.status.code(), Some(1));
    assert!(
        text(&empty_id).1.starts_with("error: invalid --id"),
        "{:?}",
        text(&empty_id)
    );
    assert_eq!(events_count(&conn).await, 1, "nothing stored");

    let bad = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            r#"{"order_id":""}"#,
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let (_, err) = text(&bad);
    assert!(
        err.starts_with("error: invalid order.fulfilled payload") && err.contains("data/order_id"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let unknown = conveyor(
        &url,
        &[
            "publish",
            "order.teleported",
            "--tenant",
            "acme",
            "--data",
            "{}",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown)
            .1
            .contains("unknown event type \"order.teleported\"")
    );

    let tenant = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "a.b",
            "--data",
            data,
        ],
    );
    assert_eq!(tenant.status.code(), Some(1));
    assert!(text(&tenant).1.contains("invalid --tenant"));

    let dry = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            data,
            "--dry-run",
        ],
    );
    assert!(dry.status.success());
    assert_eq!(events_count(&conn).await, 1, "dry run sends nothing");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let from_file = format!("@{}", file.path().display());
    let ok = conveyor(
        &url,
        &[
            "publish",
            "order.fulfilled",
            "--tenant",
            "globex",
            "--data",
            &from_file,
        ],
    );
    assert!(ok.status.success(), "{:?}", text(&ok));

    let usage = conveyor(&url, &["publish", "order.fulfilled", "--colour", "red"]);
    assert_eq!(usage.status.code(), Some(2), "a bad flag is a usage error");
    let (_, err) = text(&usage);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--colour") && err.contains("--help"), "{err}");
    let help = conveyor(&url, &["dlq", "replay", "--help"]);
    assert!(help.status.success() && text(&help).0.contains("--dry-run"));
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
async fn dead_letters_can_be_listed_shown_replayed_and_purged() {
    let (server, conn) = server().await;
    let url = server.url();
    // A handler that refuses everything: every event becomes a dead letter.
    let refuse = Worker::builder(&conn, ())
        .group(Group::new("billing").handle(|_: Ping, _: Context| async {
            Err::<(), _>(HandlerError::permanent("customer unknown"))
        }))
        .build()
        .unwrap()
        .spawn();
    let ids = conveyor_tests::publish_pings(&conn, 3).await;
    conveyor_tests::dead_letters(&conn, 3, Duration::from_secs(10)).await;
    refuse.shutdown().await;

    let list = conveyor(&url, &["dlq", "list", "--json"]);
    assert!(list.status.success(), "{:?}", text(&list));
    let rows: Vec<serde_json::Value> = text(&list)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0]["seq"].as_u64() > rows[2]["seq"].as_u64(),
        "newest first"
    );
    assert_eq!(rows[0]["kind"], "handler");
    let filtered = conveyor(&url, &["dlq", "list", "--json", "--group", "nobody"]);
    assert!(text(&filtered).0.trim().is_empty());
    let paged = conveyor(
        &url,
        &["dlq", "list", "--json", "--limit", "2", "--page", "2"],
    );
    assert_eq!(text(&paged).0.lines().count(), 1);

    let seq = rows[0]["seq"].as_u64().unwrap().to_string();
    let show = conveyor(&url, &["dlq", "show", &seq]);
    let (out, _) = text(&show);
    assert!(
        out.contains("Conveyor-Error-Kind: handler") && out.contains("\"specversion\":\"1.0\""),
        "{out}"
    );
    let missing = conveyor(&url, &["dlq", "show", "999"]);
    assert_eq!(missing.status.code(), Some(1));

    let dry = conveyor(&url, &["dlq", "replay", "--all", "--dry-run"]);
    assert!(text(&dry).0.contains("3 dead letters would be replayed"));
    assert_eq!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .len(),
        3
    );

    // Now the handler works: replayed events are handled and leave the DLQ.
    let recorder = Recorder::default();
    let fixed = recording_worker(&conn, "billing", &recorder);
    let replay = conveyor(&url, &["dlq", "replay", "--all", "--group", "billing"]);
    assert!(replay.status.success(), "{:?}", text(&replay));
    assert!(text(&replay).0.contains("replayed 3 dead letters"));
    recorder
        .wait_for(Duration::from_secs(10), "replayed events handled", |s| {
            ids.iter().all(|id| s.iter().any(|r| &r.event_id == id))
        })
        .await;
    assert!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .is_empty()
    );
    fixed.shutdown().await;

    // Purge needs confirmation.
    conveyor_tests::publish_raw(&conn, "events.acme.test.ping", b"not json").await;
    let refuse = Worker::builder(&conn, ())
        .group(
            Group::new("billing")
                .handle(|_: Ping, _: Context| async { Ok::<(), HandlerError>(()) }),
        )
        .build()
        .unwrap()
        .spawn();
    conveyor_tests::dead_letters(&conn, 1, Duration::from_secs(10)).await;
    refuse.shutdown().await;
    let unconfirmed = conveyor(&url, &["dlq", "purge"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(text(&unconfirmed).1.contains("add --yes"));
    let purge = conveyor(&url, &["dlq", "purge", "--kind", "decode", "--yes"]);
    assert!(text(&purge).0.contains("purged 1 dead letters"));
    assert!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_streams_groups_and_dead_letters() {
    let (server, conn) = server().await;
    let worker =
        Worker::builder(&conn, ())
            .group(Group::new("audit").handle(|_: Ping, _: Context| async {
                Err::<(), _>(HandlerError::permanent("no"))
            }))
            .build()
            .unwrap()
            .spawn();
    conveyor_tests::publish_pings(&conn, 2).await;
    conveyor_tests::dead_letters(&conn, 2, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(5), "acks", || async {
        conveyor_tests::consumer_state(&conn, "audit").await.1 == 0
    })
    .await;
    let out = conveyor(&server.url(), &["status", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(v["streams"][0]["messages"], 2);
    let audit = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "audit")
        .unwrap();
    assert_eq!(audit["dead_letters"], 2);
    assert_eq!(audit["pending"], 0);
    let table = conveyor(&server.url(), &["status"]);
    assert!(text(&table).0.contains("audit"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_events_with_filters() {
    use std::io::BufRead;
    let (server, conn) = server().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["--server", &server.url(), "tail", "--tenant", "acme"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "following ..." so the consumer exists before publishing.
    let stderr = child.stderr.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("following events.acme.>"), "{first}");
    let publisher = conveyor::Publisher::new(&conn);
    publisher.publish("globex", &Ping { n: 1 }).await.unwrap();
    let acme = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains(" acme test.ping ") && line.contains(&acme.id),
        "{line}"
    );
    let bad = conveyor(&server.url(), &["tail", "--tenant", "a b"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_chooses_replicas_by_cluster_size() {
    conveyor_tests::init_tracing();
    let single = conveyor::testing::NatsServer::start().unwrap();
    let out = conveyor(&single.url(), &["setup"]);
    assert!(text(&out).0.contains("replicas: 1"), "{:?}", text(&out));

    let cluster = conveyor::testing::NatsCluster::start().unwrap();
    let urls = cluster.urls().join(",");
    // The meta leader takes a moment after start.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named() {
    conveyor_tests::init_tracing();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nats-config/accounts.conf");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_history_and_cancel_skips_an_event() {
    let (server, conn) = server().await;
    let url = server.url();
    let recorder = Recorder::default();
    let seen = recorder.clone();
    // Event 0 fails once then succeeds; event 1 is refused for good.
    let worker = Worker::builder(&conn, ())
        .group(Group::new("ledger").history(true).handle_with(
            move |e: Ping, ctx: Context| {
                let seen = seen.clone();
                async move {
                    seen.record(ctx.event_id(), ctx.attempt(), "w");
                    match (e.n, ctx.attempt()) {
                        (0, 1) => Err(HandlerError::transient(std::io::Error::other(
                            "bank timeout",
                        ))),
                        (1, _) => Err(HandlerError::permanent("account closed")),
                        _ => Ok(()),
                    }
                }
            },
            conveyor::HandlerOptions::default().retry(
                conveyor::RetryPolicy::exponential(3, Duration::from_millis(100)).with_jitter(0.0),
            ),
        ))
        .build()
        .unwrap()
        .spawn();
    let ids = conveyor_tests::publish_pings(&conn, 2).await;
    recorder
        .wait_for(Duration::from_secs(10), "three runs", |s| s.len() == 3)
        .await;
    conveyor_tests::dead_letters(&conn, 1, Duration::from_secs(10)).await;

    eventually(Duration::from_secs(5), "history of event 0", || async {
        let show = conveyor(&url, &["runs", "show", &ids[0]]);
        text(&show).0.contains("succeeded")
    })
    .await;
    let show = conveyor(&url, &["runs", "show", &ids[0]]);
    let (out, err) = text(&show);
    assert!(show.status.success(), "{out}{err}");
    assert!(
        out.contains("attempt 1/3") && out.contains("attempt 2/3"),
        "{out}"
    );
    assert!(
        out.contains("retrying") && out.contains("bank timeout"),
        "{out}"
    );
    assert!(out.contains("next attempt at"), "{out}");

    let failed = conveyor(&url, &["runs", "failed", "--group", "ledger", "--json"]);
    let (out, err) = text(&failed);
    assert!(failed.status.success(), "{out}{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["event_id"], ids[1].as_str());
    assert_eq!(rows[0]["state"], "dead_lettered");
    let table = conveyor(
        &url,
        &["runs", "failed", "--group", "ledger", "--tenant", "acme"],
    );
    assert!(
        text(&table).0.contains("account closed"),
        "{:?}",
        text(&table)
    );
    let none = conveyor(&url, &["runs", "show", "no-such-event"]);
    assert!(none.status.success());
    assert!(text(&none).0.contains("no runs recorded"));
    let bad = conveyor(&url, &["runs", "failed", "--group", "a.b"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("invalid --group"));

    // Cancel an event before the worker sees it: it is skipped and acked, not dead-lettered.
    worker.shutdown().await;
    let later = conveyor_tests::publish_pings(&conn, 1).await;
    let cancel = conveyor(
        &url,
        &[
            "cancel",
            &later[0],
            "--tenant",
            "acme",
            "--group",
            "ledger",
            "--reason",
            "duplicate",
        ],
    );
    let (out, err) = text(&cancel);
    assert!(cancel.status.success(), "{out}{err}");
    assert!(
        out.contains("cancelled") && out.contains("group ledger"),
        "{out}"
    );
    let worker = Worker::builder(&conn, ())
        .group(
            Group::new("ledger")
                .history(true)
                .handle(|_: Ping, _: Context| async {
                    Err::<(), _>(HandlerError::permanent("must not run"))
                }),
        )
        .build()
        .unwrap()
        .spawn();
    eventually(
        Duration::from_secs(10),
        "cancelled run recorded",
        || async {
            text(&conveyor(&url, &["runs", "show", &later[0]]))
                .0
                .contains("cancelled")
        },
    )
    .await;
    worker.shutdown().await;
    assert_eq!(
        conveyor_tests::dead_letters(&conn, 0, Duration::ZERO)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_groups_are_paused_and_resumed_from_the_command_line() {
    let (server, conn) = server().await;
    let url = server.url();
    let pause = conveyor(&url, &["tenants", "pause", "acme", "--reason", "migration"]);
    let (out, err) = text(&pause);
    assert!(pause.status.success(), "{out}{err}");
    assert!(out.contains("acme paused for every group"), "{out}");
    let status = conveyor(&url, &["status"]);
    assert!(
        text(&status).0.contains("acme paused for every group"),
        "{:?}",
        text(&status)
    );
    conveyor::Publisher::new(&conn)
        .publish("acme", &Ping { n: 1 })
        .await
        .unwrap();
    let worker = recording_worker(&conn, "orders", &Recorder::default());
    eventually(Duration::from_secs(10), "the event parked", || async {
        text(&conveyor(&url, &["tenants", "paused"]))
            .0
            .contains("1 events parked")
    })
    .await;
    worker.shutdown().await;
    let bad = conveyor(&url, &["tenants", "pause", "ac me"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("invalid tenant"), "{:?}", text(&bad));
    let resume = conveyor(&url, &["tenants", "resume", "acme"]);
    assert!(resume.status.success(), "{:?}", text(&resume));
    assert!(
        text(&resume).0.contains("1 parked events re-published"),
        "{:?}",
        text(&resume)
    );
    assert!(
        text(&conveyor(&url, &["tenants", "paused"]))
            .0
            .contains("no tenant is paused")
    );

    // A group no worker has run has no consumers to pause: a clear error.
    let unknown = conveyor(&url, &["groups", "pause", "billing"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).1.contains("run a worker of the group once"),
        "{:?}",
        text(&unknown)
    );
    let worker = recording_worker(&conn, "billing", &Recorder::default());
    eventually(Duration::from_secs(10), "the consumers", || async {
        conveyor::partition::group_counts(&conn, "billing")
            .await
            .is_ok_and(|c| c.consumers == conveyor::partition::PARTITIONS)
    })
    .await;
    let paused = conveyor(&url, &["groups", "pause", "billing", "--for", "1h"]);
    assert!(paused.status.success(), "{:?}", text(&paused));
    let json = conveyor(&url, &["status", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["groups"][0]["group"], "billing");
    assert_eq!(report["groups"][0]["paused"], true);
    assert_eq!(report["groups"][0]["consumers"], 16);
    let resumed = conveyor(&url, &["groups", "resume", "billing"]);
    assert!(resumed.status.success(), "{:?}", text(&resumed));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_are_published_listed_and_cancelled_from_the_command_line() {
    let (server, _conn) = server().await;
    let url = server.url();
    let data = r#"{"order_id":"o-1","fulfilled_at":"2026-11-22T09:00:00Z"}"#;
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            "order.fulfilled",
            "--tenant",
            "acme",
            "--data",
            data,
        ];
        args.extend_from_slice(extra);
        conveyor(&url, &args)
    };
    let delayed = publish(&["--id", "review-1", "--delay", "1h"]);
    let (out, err) = text(&delayed);
    assert!(delayed.status.success(), "{out}{err}");
    assert!(
        out.contains("published review-1 on delayed.acme.e.review-1")
            && out.contains("delivered at"),
        "{out}"
    );
    let at = publish(&["--id", "review-2", "--at", "2099-01-01T09:00:00+01:00"]);
    let (out, err) = text(&at);
    assert!(at.status.success(), "{out}{err}");
    assert!(out.contains("delivered at 2099-01-01T08:00:00"), "{out}");
    let bad = publish(&["--at", "tomorrow"]);
    assert_eq!(bad.status.code(), Some(2), "{:?}", text(&bad));

    let list = conveyor(&url, &["scheduled", "list", "--tenant", "acme"]);
    let (out, err) = text(&list);
    assert!(list.status.success(), "{out}{err}");
    assert!(
        out.contains("acme order.fulfilled review-1 (delayed event)"),
        "{out}"
    );
    assert!(
        out.starts_with("2099-01-01T08:00:00") || out.contains("\n2099-01-01T08:00:00"),
        "{out}"
    );
    let json = conveyor(&url, &["scheduled", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["target"], "events.acme.order.fulfilled");

    // Status counts what waits, and a listing's reader is no group.
    let status = conveyor(&url, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["scheduled"], 2, "{v}");
    assert_eq!(v["groups"].as_array().map(Vec::len), Some(0), "{v}");
    let cancel = conveyor(&url, &["cancel", "review-1", "--tenant", "acme"]);
    let (out, err) = text(&cancel);
    assert!(cancel.status.success(), "{out}{err}");
    assert!(out.contains("1 schedule(s) removed before firing"), "{out}");
    let list = conveyor(&url, &["scheduled", "list", "--tenant", "globex"]);
    assert_eq!(text(&list).0.trim(), "nothing scheduled");
    let list = conveyor(&url, &["scheduled", "list"]);
    let (out, _) = text(&list);
    assert!(
        !out.contains("review-1") && out.contains("review-2"),
        "{out}"
    );
}

//! Publishing, following and delaying events.

use super::*;

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

/// Starts `conveyor tail` with `args` and returns it once it follows `following`.
fn start_tail(url: &str, args: &[&str], following: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["--server", url, "tail"])
        .args(args)
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
    assert!(
        first.starts_with(&format!("following {following}")),
        "{first}"
    );
    child
}

/// The first line `tail` prints, then stops it.
async fn first_line(mut child: std::process::Child) -> String {
    use std::io::BufRead;
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
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_events_with_filters() {
    let (server, conn) = server().await;
    let by_tenant = start_tail(&server.url(), &["--tenant", "acme"], "events.acme.>");
    let by_type = start_tail(
        &server.url(),
        &["--type", "test.ping"],
        "events.*.test.ping",
    );
    let publisher = conveyor::Publisher::new(&conn);
    publisher.publish("globex", &Ping { n: 1 }).await.unwrap();
    let acme = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();
    let line = first_line(by_tenant).await;
    assert!(
        line.contains(" acme test.ping ") && line.contains(&acme.id),
        "{line}"
    );
    let line = first_line(by_type).await;
    assert!(line.contains(" globex test.ping "), "{line}");
    let bad = conveyor(&server.url(), &["tail", "--tenant", "a b"]);
    assert_eq!(bad.status.code(), Some(1));
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

//! `conveyor-dev` as a developer runs it: starts everything, prints what happens, and stops
//! everything on SIGTERM (as on Ctrl-C).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn starts_everything_prints_lines_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor-dev"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--sample-every-ms", "200"])
        .env_remove("NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for a handled sample and a dead letter.
    while !(seen.iter().any(|l: &String| l.contains("  ok "))
        && seen.iter().any(|l: &String| l.contains("  dlq ")))
    {
        assert!(Instant::now() < deadline, "no outcome lines: {seen:#?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("nats-server at nats://127.0.0.1:"), "{text}");
    assert!(
        dir.path().join("nats").is_dir(),
        "the server's data is in the data dir"
    );
    assert!(text.contains("worker    running fraud-triage"), "{text}");
    assert!(text.contains("event     "), "{text}");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("dev       stopped")),
        "{rest:#?}"
    );
}

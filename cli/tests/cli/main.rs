//! The `conveyor` command line against real nats-server processes: exit codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use conveyor::{Context, Group, HandlerError, Worker};
use conveyor_tests::{Ping, Recorder, events_count, eventually, server};

fn conveyor(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
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

mod dlq;
mod keys;
mod publish;
mod runs;
mod setup;
mod status;
mod tenants;

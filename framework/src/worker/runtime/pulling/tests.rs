//! Tests of the partition loops and of the delivery future they run.

use crate::testing::NatsServer;
use crate::{Context, Group, HandlerError, Worker};

/// The size of what `f` returns, without calling it.
fn returned_size<A, F: FnOnce(A) -> R, R>(_: &F) -> usize {
    std::mem::size_of::<R>()
}

#[test]
fn the_guard_does_not_double_a_deliverys_future() {
    type Args = (
        super::Arc<super::GroupRuntime<()>>,
        (super::jetstream::Message, Option<super::super::Meta>),
        super::Slot,
        super::CancellationToken,
    );
    let deliver = |(rt, incoming, slot, abort): Args| super::deliver(rt, incoming, slot, abort);
    let guarded = |(rt, incoming, slot, abort): Args| {
        super::guarded(rt.clone(), super::deliver(rt, incoming, slot, abort))
    };
    let (inner, outer) = (returned_size(&deliver), returned_size(&guarded));
    eprintln!("delivery future: {inner} bytes, guarded: {outer} bytes");
    // Every delivery allocates and moves this future: the guard adds only its own few
    // bytes (an `async fn` guard doubled it). The delivery's own size depends on the
    // optimisation level (in a release build, a stage moved into its tracing wrapper
    // inside the `.await` kept room twice; see `deliver`): bounded loosely here.
    assert!(
        outer <= inner + 64,
        "guard doubles the delivery: {inner} -> {outer}"
    );
    assert!(inner < 8 * 1024, "delivery future of {inner} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_loop_that_dies_fails_the_groups_readiness() {
    let server = NatsServer::start().expect("nats-server");
    let conn = server.connect().await.expect("connect");
    let telemetry = crate::telemetry::Telemetry::new();
    let worker = Worker::builder(&conn, ())
        .telemetry(&telemetry)
        .group(
            Group::new("sla").handle(|_: crate::sla::SlaBreached, _: Context| async {
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .expect("worker");
    let rt = worker.groups[0].clone();
    telemetry.add_check("consumer:sla", rt.bound());
    rt.set_bound(None, true);
    assert!(telemetry.failing_checks().is_empty());
    // A loop that ends (at shutdown) leaves the group as it was.
    super::supervise(&rt, 3, async {}).await;
    assert!(telemetry.failing_checks().is_empty());
    // A loop that panics fails readiness: `/readyz` answers 503.
    super::supervise(&rt, 3, async { panic!("a bug in the pull loop") }).await;
    assert_eq!(telemetry.failing_checks(), ["consumer:sla"]);
    let served = telemetry
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let mut stream = tokio::net::TcpStream::connect(served.local_addr())
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

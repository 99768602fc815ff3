//! With the `otel` feature, handler spans exported through an OpenTelemetry SDK continue the
//! trace of the event they handle, and events they publish continue it further.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use conveyor::trace::TraceParent;
use conveyor::{Context, EventOptions, Group, HandlerResult, Publisher, Worker};
use conveyor_tests::{Ping, Pong, eventually, read_stream, server};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::prelude::*;

async fn ping_then_pong(e: Ping, ctx: Context) -> HandlerResult {
    ctx.publish(&Pong { n: e.n }).await?;
    Ok(())
}

async fn pong(_e: Pong, _ctx: Context) -> HandlerResult {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_spans_are_exported_in_the_events_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("conveyor-test")))
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .init();

    let (_server, conn) = server().await;
    let origin: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    Publisher::new(&conn)
        .publish_with(
            "acme",
            &Ping { n: 1 },
            EventOptions::default().traceparent(origin.to_string()),
        )
        .await
        .unwrap();
    let worker = Worker::builder(&conn, ())
        .group(Group::new("pinger").handle(ping_then_pong))
        .group(Group::new("ponger").handle(pong))
        .build()
        .unwrap()
        .spawn();
    let spans = || {
        let _ = provider.force_flush();
        exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == "conveyor.delivery")
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "two delivery spans", || async {
        spans().len() >= 2
    })
    .await;
    worker.shutdown().await;

    let spans = spans();
    let trace = |s: &opentelemetry_sdk::trace::SpanData| {
        u128::from_be_bytes(s.span_context.trace_id().to_bytes())
    };
    let id = |s: &opentelemetry_sdk::trace::SpanData| {
        u64::from_be_bytes(s.span_context.span_id().to_bytes())
    };
    let parent =
        |s: &opentelemetry_sdk::trace::SpanData| u64::from_be_bytes(s.parent_span_id.to_bytes());
    let group = |s: &opentelemetry_sdk::trace::SpanData, g: &str| {
        s.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "group" && kv.value.as_str() == g)
    };
    let ping = spans
        .iter()
        .find(|s| group(s, "pinger"))
        .expect("ping span");
    let pong = spans
        .iter()
        .find(|s| group(s, "ponger"))
        .expect("pong span");
    assert_eq!(
        trace(ping),
        origin.trace_id(),
        "the ping's span is in the publisher's trace"
    );
    assert_eq!(
        parent(ping),
        origin.span_id(),
        "child of the publisher's span"
    );
    assert_eq!(trace(pong), origin.trace_id(), "so is the follow-up's");
    assert_eq!(
        parent(pong),
        id(ping),
        "child of the handler that published it"
    );

    // The follow-up event carries the exported span as its parent.
    let messages = read_stream(&conn, "EVENTS", 2, Duration::from_secs(5)).await;
    let follow_up = messages
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.message.payload).unwrap())
        .find(|v| v["type"] == "test.pong")
        .unwrap();
    let carried: TraceParent = follow_up["traceparent"].as_str().unwrap().parse().unwrap();
    assert_eq!(carried.span_id(), id(ping));
}

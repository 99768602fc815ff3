//! `-- layout`: what the server spends per delivered event on the subject layout and filters
//! Conveyor uses, at 1, 1 000 and 100 000 tenants. The same stored events
//! (`events.~.<p>.<tenant>.bench.tick`, the stream's transform) are consumed three ways, each
//! with fresh consumers: one raw consumer without a filter; 16 raw consumers filtered as a
//! group's partition consumers are (`conveyor::partition::filter_subjects`); a Conveyor worker
//! (those 16 consumers, concurrency 256, no-op handler, history off). For comparison, 16 raw
//! consumers on a stream of bare messages with the tenant first
//! (`alt.<tenant>.<p>.bench.tick`, filters `alt.*.<p>.bench.tick`, the layout of earlier
//! versions) and with the partition first (`alt.<p>.<tenant>.bench.tick`, filters
//! `alt.<p>.*.bench.tick`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use conveyor::partition::PARTITIONS;
use conveyor::topology::EVENTS_STREAM;
use conveyor::{Connection, Group, Publisher, Worker};
use futures::StreamExt;
use serde_json::json;

use super::{BoxResult, IN_FLIGHT, count, counter, cpu, delete_consumers, reset, tick, wait_until};

const EVENTS: u64 = 60_000;

/// Reads and acks `EVENTS` events from consumers with these filters (one consumer each, `[]`:
/// one without a filter), all at once.
async fn raw_filtered(conn: &Connection, filters: Vec<Vec<String>>) -> BoxResult<cpu::Timed> {
    raw_filtered_on(conn, EVENTS_STREAM, filters).await
}

/// [`raw_filtered`] on stream `name`.
async fn raw_filtered_on(
    conn: &Connection,
    name: &str,
    filters: Vec<Vec<String>>,
) -> BoxResult<cpu::Timed> {
    let stream = conn.jetstream().get_stream(name).await?;
    let total = Arc::new(AtomicU64::new(0));
    let start = cpu::Mark::now();
    let mut tasks = Vec::new();
    for (i, filter_subjects) in filters.into_iter().enumerate() {
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("layout-{i}")),
                filter_subjects,
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 4096,
                ..Default::default()
            })
            .await?;
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut messages = consumer.messages().await?;
            while let Some(m) = messages.next().await {
                m?.ack().await?;
                total.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, async_nats::Error>(())
        }));
    }
    wait_until(&total, EVENTS, Duration::from_secs(120)).await?;
    let timed = start.timed(EVENTS);
    for t in tasks {
        t.abort();
    }
    Ok(timed)
}

async fn conveyor_worker(conn: &Connection) -> BoxResult<cpu::Timed> {
    let c = counter();
    let start = cpu::Mark::now();
    let worker = Worker::builder(conn, c.clone())
        .backstop(false)
        .group(
            Group::new("layout")
                .concurrency(256)
                .max_ack_pending(4096)
                .history(false)
                .handle(count),
        )
        .build()?
        .spawn();
    wait_until(&c.handled, EVENTS, Duration::from_secs(120)).await?;
    let timed = start.timed(EVENTS);
    worker.shutdown().await;
    Ok(timed)
}

/// The stream of the alternative layouts (raw only), on `alt.>`.
const ALT_STREAM: &str = "LAYOUT_ALT";

/// Stores `EVENTS` small messages in `ALT_STREAM` on `subject(tenant, partition)`, `tenants`
/// tenants in turn.
async fn fill_alt(
    conn: &Connection,
    tenants: u64,
    subject: impl Fn(&str, u32) -> String,
) -> BoxResult<()> {
    let js = conn.jetstream();
    let _ = js.delete_stream(ALT_STREAM).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: ALT_STREAM.into(),
        subjects: vec!["alt.>".into()],
        ..Default::default()
    })
    .await?;
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..EVENTS {
        let tenant = format!("t{:06}", i % tenants);
        let p = conveyor::partition::partition_of(&tenant);
        if acks.len() >= IN_FLIGHT
            && let Some(r) = acks.next().await
        {
            let _: async_nats::jetstream::publish::PublishAck = r?;
        }
        acks.push(
            js.publish(subject(&tenant, p), bytes::Bytes::from_static(b"{}"))
                .await?
                .into_future(),
        );
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    Ok(())
}

/// [`raw_filtered`] on `ALT_STREAM`.
async fn alt_filtered(conn: &Connection, filters: Vec<Vec<String>>) -> BoxResult<cpu::Timed> {
    raw_filtered_on(conn, ALT_STREAM, filters).await
}

/// One bare-message layout: the events stored on `subject(tenant, partition)`, read by one
/// consumer per partition filtered on `filter(partition)`.
async fn alt_layout(
    conn: &Connection,
    tenants: u64,
    subject: impl Fn(&str, u32) -> String,
    filter: impl Fn(u32) -> String,
) -> BoxResult<cpu::Timed> {
    fill_alt(conn, tenants, subject).await?;
    alt_filtered(conn, (0..PARTITIONS).map(|p| vec![filter(p)]).collect()).await
}

/// Prints one line per tenant count.
pub(super) async fn layout(conn: &Connection) -> BoxResult<()> {
    let partitioned: Vec<Vec<String>> = (0..PARTITIONS)
        .map(|p| conveyor::partition::filter_subjects(["bench.tick"], None, p))
        .collect();
    for tenants in [1u64, 1_000, 100_000] {
        reset(conn).await?;
        Publisher::new(conn)
            .with_max_in_flight(IN_FLIGHT)
            .publish_many((0..EVENTS).map(|i| (format!("t{:06}", i % tenants), tick(i, 0))))
            .await
            .into_result()?;
        let unfiltered = raw_filtered(conn, vec![Vec::new()]).await?;
        delete_consumers(conn).await?;
        let raw_partitioned = raw_filtered(conn, partitioned.clone()).await?;
        delete_consumers(conn).await?;
        let conveyor = conveyor_worker(conn).await?;
        // The same partitions with the partition token first: literal prefixes for the server.
        let partition_first = alt_layout(
            conn,
            tenants,
            |t, p| format!("alt.{p}.{t}.bench.tick"),
            |p| format!("alt.{p}.*.bench.tick"),
        )
        .await?;
        let tenant_first = alt_layout(
            conn,
            tenants,
            |t, p| format!("alt.{t}.{p}.bench.tick"),
            |p| format!("alt.*.{p}.bench.tick"),
        )
        .await?;
        let us = |t: &cpu::Timed| {
            let (client, server) = cpu::per_event_us(std::slice::from_ref(t));
            json!({"client_us": client, "server_us": server, "per_s": t.per_s.round()})
        };
        println!(
            "{}",
            json!({"bench": "layout", "tenants": tenants, "events": EVENTS,
                   "raw_unfiltered": us(&unfiltered),
                   "raw_16_partition_filters": us(&raw_partitioned),
                   "conveyor_worker": us(&conveyor),
                   "raw_alt_tenant_first": us(&tenant_first),
                   "raw_alt_partition_first": us(&partition_first)})
        );
    }
    Ok(())
}

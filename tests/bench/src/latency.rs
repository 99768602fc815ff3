//! `latency` (part of `core`): publish-to-handler latency at a steady rate, each stack end to end.

use super::*;

/// Publishes at a steady rate through Conveyor and returns (p50, p99) latency in ms.
async fn conveyor_latency(conn: &Connection) -> BoxResult<(f64, f64)> {
    let c = counter();
    let worker = Worker::builder(conn, c.clone())
        .backstop(false)
        .group(
            Group::new("latency")
                .concurrency(32)
                .handle(measure_latency),
        )
        .build()?
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = Publisher::new(conn);
    let total = LATENCY_RATE * LATENCY_SECS;
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    let mut sends = Vec::new();
    for i in 0..total {
        interval.tick().await;
        let p = publisher.clone();
        let sent_us = c.origin.elapsed().as_micros() as u64;
        sends.push(tokio::spawn(async move {
            p.publish("acme", &tick(i, sent_us)).await
        }));
    }
    for s in sends {
        s.await??;
    }
    wait_until(&c.handled, total, Duration::from_secs(30)).await?;
    worker.shutdown().await;
    let mut l = c.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    Ok((percentile(&l, 0.5), percentile(&l, 0.99)))
}

/// Publishes at a steady rate with raw async-nats, reads with a raw pull consumer, and returns
/// (p50, p99) latency in ms.
async fn raw_latency(conn: &Connection) -> BoxResult<(f64, f64)> {
    let origin = Instant::now();
    let stream = conn.jetstream().get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw_latency".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let total = LATENCY_RATE * LATENCY_SECS;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut messages = consumer.messages().await?;
        while (latencies.len() as u64) < total {
            let Some(m) = messages.next().await else {
                break;
            };
            let m = m?;
            let now_us = origin.elapsed().as_micros() as u64;
            let body: serde_json::Value = serde_json::from_slice(&m.payload)?;
            let sent_us = body["sent_us"].as_u64().unwrap_or(now_us);
            latencies.push(now_us.saturating_sub(sent_us) as f64 / 1000.0);
            m.ack().await?;
        }
        Ok::<_, BoxError>(latencies)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let js = conn.jetstream().clone();
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    let mut sends = Vec::new();
    for i in 0..total {
        interval.tick().await;
        let js = js.clone();
        let sent_us = origin.elapsed().as_micros() as u64;
        sends.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&json!({"seq": i, "sent_us": sent_us}))?;
            js.publish("events.acme.bench.tick", body.into())
                .await?
                .await?;
            Ok::<_, BoxError>(())
        }));
    }
    for s in sends {
        s.await??;
    }
    let mut l = tokio::time::timeout(Duration::from_secs(30), reader).await???;
    l.sort_by(f64::total_cmp);
    Ok((percentile(&l, 0.5), percentile(&l, 0.99)))
}

pub(super) async fn latency(conn: &Connection) -> BoxResult<()> {
    let (mut c50, mut c99, mut r50, mut r99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LATENCY_ROUNDS {
        reset(conn).await?;
        let (p50, p99) = raw_latency(conn).await?;
        r50.push(p50);
        r99.push(p99);
        reset(conn).await?;
        let (p50, p99) = conveyor_latency(conn).await?;
        c50.push(p50);
        c99.push(p99);
    }
    let (c99, r99) = (median(c99), median(r99));
    println!(
        "{}",
        json!({"bench": "latency", "rate_per_s": LATENCY_RATE, "seconds": LATENCY_SECS,
               "rounds": LATENCY_ROUNDS,
               "conveyor_p50_ms": round2(median(c50)), "conveyor_p99_ms": round2(c99),
               "raw_p50_ms": round2(median(r50)), "raw_p99_ms": round2(r99),
               "p99_overhead_ms": round2(c99 - r99)})
    );
    Ok(())
}

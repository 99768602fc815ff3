//! `-- gateway`: events through the HTTP gateway (HTTP/1.1 keep-alive; single events and
//! batches of 100) next to direct JetStream publishes of the same events, with the same
//! concurrency, in the same process.

use conveyor_gateway::keys::{KeySpec, Keys};
use conveyor_gateway::{Gateway, GatewayConfig};

use super::*;

/// Requests (or direct publishes) in flight at once.
const CLIENTS: usize = 32;
const SINGLE_N: usize = 6_000;
const BATCH: usize = 100;
const BATCH_REQUESTS: usize = 120;
const GATEWAY_ROUNDS: usize = 3;

/// Events per second and latencies (ms) of one run.
struct Run {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn order(id: &str) -> serde_json::Value {
    json!({
        "order_id": id, "customer_id": "c-1",
        "lines": [{"sku": "mug-blue", "quantity": 1, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}],
        "total": {"amount_minor": 1250, "currency": "EUR"},
        "placed_at": "2026-12-01T10:00:00Z",
    })
}

fn cloudevent(id: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/bench", "type": "order.created", "data": order(id)})
}

/// Runs `requests` jobs with `CLIENTS` in flight; each job stores `per_job` events.
async fn drive<F, Fut>(requests: usize, per_job: usize, job: F) -> BoxResult<Run>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = BoxResult<()>> + Send,
{
    let start = Instant::now();
    let latencies: Vec<BoxResult<f64>> = futures::stream::iter((0..requests).map(|i| {
        let job = job.clone();
        async move {
            let t = Instant::now();
            job(i).await?;
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        }
    }))
    .buffer_unordered(CLIENTS)
    .collect()
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut ms = latencies.into_iter().collect::<BoxResult<Vec<f64>>>()?;
    ms.sort_by(f64::total_cmp);
    Ok(Run {
        per_s: (requests * per_job) as f64 / elapsed,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
    })
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    ct: &str,
    body: String,
) -> BoxResult<()> {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await?;
    if r.status() != 202 {
        return Err(format!("gateway answered {}: {}", r.status(), r.text().await?).into());
    }
    r.bytes().await?;
    Ok(())
}

pub(super) async fn gateway(conn: &Connection) -> BoxResult<()> {
    let telemetry = Telemetry::new();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        ..GatewayConfig::default()
    };
    let gw = Gateway::start(conn, &telemetry, config).await?;
    let url = format!("http://{}/v1/events", gw.local_addr());
    let spec = KeySpec {
        tenant: conveyor::TenantId::parse("acme")?,
        types: vec![],
        rate: None,
        name: Some("bench".into()),
    };
    let (key, _) = Keys::open(conn).await?.create(spec).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let publisher = Publisher::new(conn);
    let (mut single, mut direct, mut batch, mut direct_batch) = (vec![], vec![], vec![], vec![]);
    for round in 0..GATEWAY_ROUNDS {
        reset(conn).await?;
        let (h, u, k) = (http.clone(), url.clone(), key.clone());
        single.push(
            drive(SINGLE_N, 1, move |i| {
                let (h, u, k) = (h.clone(), u.clone(), k.clone());
                async move {
                    let body = cloudevent(&format!("g{round}-{i}")).to_string();
                    post(&h, &u, &k, "application/cloudevents+json", body).await
                }
            })
            .await?,
        );
        reset(conn).await?;
        let p = publisher.clone();
        direct.push(
            drive(SINGLE_N, 1, move |i| {
                let p = p.clone();
                async move {
                    let id = format!("d{round}-{i}");
                    let options = conveyor::EventOptions::default().id(id.clone());
                    p.publish_untyped("acme", "order.created", &order(&id), options)
                        .await?;
                    Ok(())
                }
            })
            .await?,
        );
        reset(conn).await?;
        let (h, u, k) = (http.clone(), url.clone(), key.clone());
        batch.push(
            drive(BATCH_REQUESTS, BATCH, move |i| {
                let (h, u, k) = (h.clone(), u.clone(), k.clone());
                async move {
                    let events: Vec<serde_json::Value> = (0..BATCH)
                        .map(|j| cloudevent(&format!("gb{round}-{i}-{j}")))
                        .collect();
                    let body = serde_json::Value::Array(events).to_string();
                    post(&h, &u, &k, "application/cloudevents-batch+json", body).await
                }
            })
            .await?,
        );
        reset(conn).await?;
        let p = publisher.clone();
        direct_batch.push(
            drive(BATCH_REQUESTS, BATCH, move |i| {
                let p = p.clone();
                async move {
                    let mut b = p.atomic_batch("acme")?;
                    for j in 0..BATCH {
                        let id = format!("db{round}-{i}-{j}");
                        b.add_untyped(
                            "order.created",
                            &order(&id),
                            conveyor::EventOptions::default().id(id.clone()),
                        )?;
                    }
                    b.commit().await?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    let line = |mode: &str, events: usize, g: &[Run], d: &[Run]| {
        let m = |runs: &[Run], f: fn(&Run) -> f64| round2(median(runs.iter().map(f).collect()));
        let (gr, dr) = (m(g, |r| r.per_s), m(d, |r| r.per_s));
        json!({"bench": "gateway", "mode": mode, "events": events, "clients": CLIENTS,
               "gateway_per_s": gr.round(), "direct_per_s": dr.round(), "ratio": round2(gr / dr),
               "gateway_p50_ms": m(g, |r| r.p50_ms), "gateway_p99_ms": m(g, |r| r.p99_ms),
               "direct_p50_ms": m(d, |r| r.p50_ms), "direct_p99_ms": m(d, |r| r.p99_ms)})
    };
    println!("{}", line("single", SINGLE_N, &single, &direct));
    println!(
        "{}",
        line("batch_100", BATCH_REQUESTS * BATCH, &batch, &direct_batch)
    );
    gw.shutdown().await;
    Ok(())
}

//! The Conveyor demo: publishes orders for two tenants, a worker handles them with retries, and
//! one order fails into the dead-letter stream. Starts its own nats-server unless `--server URL`
//! (or `NATS_URL`) names one.

use std::time::Duration;

use conveyor::testing::NatsServer;
use conveyor::topology::{DLQ_STREAM, Topology, provision};
use conveyor::{
    Connection, Context, DeadLetter, Group, HandlerError, HandlerOptions, HandlerResult, Publisher,
    RetryPolicy, Worker,
};
use std::num::NonZeroU32;

use conveyor_schemas::commerce::{OrderCreated, OrderLine};
use conveyor_schemas::{Id, InvalidValue, Money};
use futures::StreamExt;
use tokio::sync::mpsc;

/// What the handler reports back to the demo's output.
#[derive(Debug)]
enum Report {
    Handled {
        tenant: String,
        order: String,
        attempt: u32,
    },
    Failed {
        tenant: String,
        order: String,
        attempt: u32,
        error: String,
    },
}

#[derive(Clone)]
struct Demo {
    reports: mpsc::UnboundedSender<Report>,
}

/// Sends an order receipt. Order o-1002 hits a flaky payment gateway once; customers on the
/// block list are refused for good.
async fn send_receipt(order: OrderCreated, ctx: Context<Demo>) -> HandlerResult {
    let report = |r| {
        let _ = ctx.state().reports.send(r);
    };
    let fail = |error: &str| Report::Failed {
        tenant: ctx.tenant().to_string(),
        order: order.order_id.to_string(),
        attempt: ctx.attempt(),
        error: error.to_owned(),
    };
    if order.customer_id.as_str() == "blocked-customer" {
        report(fail("customer is on the block list"));
        return Err(HandlerError::permanent("customer is on the block list"));
    }
    if order.order_id.as_str() == "o-1002" && ctx.attempt() == 1 {
        report(fail("payment gateway timed out"));
        return Err(HandlerError::transient("payment gateway timed out"));
    }
    report(Report::Handled {
        tenant: ctx.tenant().to_string(),
        order: order.order_id.to_string(),
        attempt: ctx.attempt(),
    });
    Ok(())
}

fn order(id: &str, customer: &str, amount_minor: i64) -> Result<OrderCreated, InvalidValue> {
    let price = Money::new(amount_minor, "EUR")?;
    Ok(OrderCreated {
        order_id: Id::new(id)?,
        customer_id: Id::new(customer)?,
        lines: vec![OrderLine {
            sku: Id::new("mug-blue")?,
            quantity: NonZeroU32::MIN,
            unit_price: price.clone(),
        }],
        total: price,
        placed_at: chrono::Utc::now(),
    })
}

fn server_from_args() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--server" {
            return args.next();
        }
        if let Some(url) = a.strip_prefix("--server=") {
            return Some(url.to_owned());
        }
    }
    std::env::var("NATS_URL").ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();

    let (_embedded, url) = match server_from_args() {
        Some(url) => (None, url),
        None => {
            let server = NatsServer::start()?;
            let url = server.url();
            println!(
                "started nats-server at {url} (data in {})",
                server.dir().display()
            );
            (Some(server), url)
        }
    };
    let conn = Connection::connect(&url).await?;
    for (stream, change) in provision(&conn, &Topology::default()).await? {
        println!("{stream}: {change}");
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker =
        Worker::builder(&conn, Demo { reports: tx })
            .group(Group::new("receipts").handle_with(
                send_receipt,
                HandlerOptions::default().retry(
                    RetryPolicy::exponential(3, Duration::from_millis(500)).with_jitter(0.0),
                ),
            ))
            .build()?
            .spawn();

    let publisher = Publisher::new(&conn).with_source("demo-shop");
    let orders = [
        ("acme", order("o-1001", "c-17", 2400)?),
        ("acme", order("o-1002", "c-18", 1250)?),
        ("acme", order("o-1003", "blocked-customer", 99_900)?),
        ("globex", order("g-2001", "c-3", 5600)?),
        ("globex", order("g-2002", "c-4", 780)?),
    ];
    for (tenant, o) in &orders {
        let stored = publisher.publish(*tenant, o).await?;
        println!(
            "published order.created {:<7} for {tenant:<6} -> {} (#{})",
            o.order_id, stored.subject, stored.stream_sequence
        );
    }

    let mut settled = 0;
    let mut handled = 0;
    let mut dead = 0;
    while settled < orders.len() {
        let report = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        match report {
            Ok(Some(Report::Handled {
                tenant,
                order,
                attempt,
            })) => {
                println!("handled   {order:<7} for {tenant:<6} on attempt {attempt}: receipt sent");
                settled += 1;
                handled += 1;
            }
            Ok(Some(Report::Failed {
                tenant,
                order,
                attempt,
                error,
            })) => {
                if order == "o-1003" {
                    println!(
                        "failed    {order:<7} for {tenant:<6} on attempt {attempt}: {error} (permanent: dead-lettered)"
                    );
                    settled += 1;
                    dead += 1;
                } else {
                    println!(
                        "failed    {order:<7} for {tenant:<6} on attempt {attempt}: {error} (retrying in 0.5 s)"
                    );
                }
            }
            Ok(None) | Err(_) => return Err("the worker stopped reporting".into()),
        }
    }

    // Read the dead letter back from the DLQ stream.
    let letters = read_dead_letters(&conn, dead).await?;
    for l in &letters {
        println!(
            "dead letter on {}: kind={} attempts={} error={:?} original={}",
            l.subject(),
            l.kind,
            l.attempts,
            l.error,
            l.original_subject
        );
    }
    worker.shutdown().await;
    println!(
        "done: {} events published for 2 tenants, {handled} handled, {} dead-lettered",
        orders.len(),
        letters.len()
    );
    Ok(())
}

async fn read_dead_letters(
    conn: &Connection,
    expected: usize,
) -> Result<Vec<DeadLetter>, Box<dyn std::error::Error>> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stream = conn.jetstream().get_stream(DLQ_STREAM).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await?;
        let mut letters = Vec::new();
        let mut batch = consumer.fetch().max_messages(100).messages().await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let headers = m.message.headers.clone().unwrap_or_default();
            letters.push(DeadLetter::from_parts(&headers, m.message.payload.clone())?);
        }
        if letters.len() >= expected || tokio::time::Instant::now() > deadline {
            return Ok(letters);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

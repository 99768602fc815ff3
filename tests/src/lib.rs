//! Shared support for Conveyor's end-to-end tests: test events, a server with the topology set
//! up, recorders, and readers for the streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use conveyor::testing::NatsServer;
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor::{Connection, DeadLetter, Event};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A small test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ping {
    /// A number to tell events apart.
    pub n: u32,
}

impl Event for Ping {
    const TYPE: &'static str = "test.ping";
}

/// A second test event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pong {
    /// A number to tell events apart.
    pub n: u32,
}

impl Event for Pong {
    const TYPE: &'static str = "test.pong";
}

/// An `order.created` event with one line.
pub fn order(order_id: &str, amount_minor: i64) -> conveyor_schemas::commerce::OrderCreated {
    use conveyor_schemas::commerce::{OrderCreated, OrderLine};
    use conveyor_schemas::{Id, Money};
    OrderCreated {
        order_id: Id::new(order_id).unwrap(),
        customer_id: Id::new("c-1").unwrap(),
        lines: vec![OrderLine {
            sku: Id::new("sku-1").unwrap(),
            quantity: std::num::NonZeroU32::MIN,
            unit_price: Money::new(amount_minor, "EUR").unwrap(),
        }],
        total: Money::new(amount_minor, "EUR").unwrap(),
        placed_at: chrono::Utc::now(),
    }
}

/// Installs a test log subscriber once (`RUST_LOG` filters; default warn).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Starts a server of its own, connects, and provisions the topology.
pub async fn server() -> (NatsServer, Connection) {
    init_tracing();
    let server = NatsServer::start().expect("nats-server");
    let conn = server.connect().await.expect("connect");
    provision(&conn, &Topology::default())
        .await
        .expect("provision");
    (server, conn)
}

/// One handler run seen by a [`Recorder`].
#[derive(Debug, Clone)]
pub struct Seen {
    /// The event id.
    pub event_id: String,
    /// The attempt number.
    pub attempt: u32,
    /// Which worker saw it.
    pub worker: String,
    /// When.
    pub at: Instant,
}

/// Collects handler runs across tasks.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Records one run.
    pub fn record(&self, event_id: &str, attempt: u32, worker: &str) {
        self.seen.lock().unwrap().push(Seen {
            event_id: event_id.to_owned(),
            attempt,
            worker: worker.to_owned(),
            at: Instant::now(),
        });
    }

    /// Every run so far.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Runs per event id.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for s in self.all() {
            *counts.entry(s.event_id).or_insert(0) += 1;
        }
        counts
    }

    /// Waits until every event of `ids` has run, or panics after `timeout`.
    pub async fn wait_for_all(&self, timeout: Duration, what: &str, ids: &[String]) {
        self.wait_for(timeout, what, |s| {
            let seen: std::collections::HashSet<&str> =
                s.iter().map(|r| r.event_id.as_str()).collect();
            ids.iter().all(|id| seen.contains(id.as_str()))
        })
        .await;
    }

    /// Waits until `cond` holds for the runs so far, or panics after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, what: &str, cond: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.all()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; seen {} runs",
                self.all().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads every message of `stream` (from the start) within `timeout`, waiting until at least
/// `min` are there.
pub async fn read_stream(
    conn: &Connection,
    stream: &str,
    min: usize,
    timeout: Duration,
) -> Vec<async_nats::jetstream::Message> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = conn.jetstream().get_stream(stream).await.unwrap();
        let consumer = s
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut batch = consumer
            .fetch()
            .max_messages(10_000)
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            out.push(m);
        }
        if out.len() >= min || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the dead letters, waiting until at least `min` are there (or `timeout` passes).
pub async fn dead_letters(conn: &Connection, min: usize, timeout: Duration) -> Vec<DeadLetter> {
    // Read as the CLI reads them: `conveyor::dlq::letters`.
    let deadline = Instant::now() + timeout;
    loop {
        let mut letters = Vec::new();
        let mut stored = std::pin::pin!(conveyor::dlq::letters(conn, true));
        while let Some(letter) = stored.next().await {
            letters.push(letter.unwrap().letter);
        }
        if letters.len() >= min || Instant::now() >= deadline {
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `test.ping` envelope as a client in another language would write it by hand.
pub fn ping_envelope(id: &str, tenant: &str, n: u32) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "app", "type": Ping::TYPE,
        "tenantid": tenant, "datacontenttype": "application/json", "data": {"n": n}
    })
}

/// Asserts that the DLQ holds no letter (after a short wait for letters in flight).
pub async fn assert_no_dead_letters(conn: &Connection) {
    let letters = dead_letters(conn, 0, Duration::from_millis(200)).await;
    assert!(letters.is_empty(), "unexpected dead letters: {letters:?}");
}

/// Number of messages in `EVENTS`.
pub async fn events_count(conn: &Connection) -> u64 {
    let mut s = conn.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    s.info().await.unwrap().state.messages
}

/// The name of `group`'s consumer for `tenant`'s partition.
pub fn consumer_of(group: &str, tenant: &str) -> String {
    conveyor::partition::consumer_name(group, conveyor::partition::partition_of(tenant))
}

/// Consumer state of a group, summed over its partitions: (pending, ack pending, redelivered).
pub async fn consumer_state(conn: &Connection, group: &str) -> (u64, usize, usize) {
    let c = conveyor::partition::group_counts(conn, group)
        .await
        .unwrap();
    (
        c.pending,
        usize::try_from(c.ack_pending).unwrap(),
        usize::try_from(c.redelivered).unwrap(),
    )
}

/// Publishes `events` (each must be stored) and returns their ids, in order.
pub async fn published_ids<E: Event, T: conveyor::IntoTenantId>(
    publisher: &conveyor::Publisher,
    events: impl IntoIterator<Item = (T, E)>,
) -> Vec<String> {
    let events = events
        .into_iter()
        .map(|(t, e)| (t, e, conveyor::EventOptions::default()));
    publisher
        .publish_stream(events)
        .map(|r| r.unwrap().id)
        .collect()
        .await
}

/// Publishes `n` pings for `acme` and returns their event ids, in order.
pub async fn publish_pings(conn: &Connection, n: u32) -> Vec<String> {
    publish_pings_of(conn, "acme", n).await
}

/// Publishes `n` pings for `tenant` and returns their event ids, in order.
pub async fn publish_pings_of(conn: &Connection, tenant: &str, n: u32) -> Vec<String> {
    published_ids(
        &conveyor::Publisher::new(conn),
        (0..n).map(|n| (tenant, Ping { n })),
    )
    .await
}

/// Publishes raw bytes to `subject` and awaits the stream ack.
pub async fn publish_raw(conn: &Connection, subject: &str, body: &[u8]) -> u64 {
    conn.jetstream()
        .publish(subject.to_owned(), body.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// Waits until `cond` is true, or panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `request` whole and reads the answer to its end: the status code and body.
async fn exchange(mut stream: tokio::net::TcpStream, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// `GET http://<addr><path>`: the status code and body (HTTP/1.1, connection closed after).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(stream, &request).await
}

/// `POST http://<addr><path>` with `headers` and `body`: the status code and body (HTTP/1.1,
/// connection closed after).
pub async fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    exchange(stream, &request).await
}

/// The value of the metric sample `series` (name and labels exactly as exposed), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Starts a server of its own from `config` (nats-server configuration text, e.g. accounts with
/// permissions); the fixture's port and store flags override the file's. Keep the directory
/// while the server runs.
pub fn server_with_config(config: &str) -> (NatsServer, tempfile::TempDir) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config).unwrap();
    let server = NatsServer::start_with_args(&["-c", path.to_str().unwrap()]).unwrap();
    (server, dir)
}

/// Connects to `server` as `user` with `password`.
pub async fn login(server: &NatsServer, user: &str, password: &str) -> Connection {
    Connection::connect_with(
        server.url(),
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into()),
    )
    .await
    .unwrap()
}

//! The gateway as a real process against a real nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod errors;
mod modes;
mod permissions;
mod resilience;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conveyor::Connection;
use conveyor::testing::NatsServer;
use conveyor_gateway::keys::{KeySpec, Keys, Rate};
use serde_json::{Value, json};

/// A `conveyor-gateway` process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Gateway {
    pub fn start(server: &NatsServer, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor-gateway"))
            .args(["--server", &server.url(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start conveyor-gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("read the gateway's address");
        // Keep reading, so the gateway's later output has somewhere to go.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        Self {
            child,
            addr,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` with `content_type` and `key`; the status, `Retry-After` and JSON body.
    pub async fn post(
        &self,
        key: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .http
            .post(self.url("/v1/events"))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Answer::of(request.send().await.expect("request")).await
    }

    /// POSTs a structured-mode CloudEvent.
    pub async fn post_event(&self, key: &str, event: &Value) -> Answer {
        self.post(Some(key), "application/cloudevents+json", event.to_string())
            .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Answer {
    pub async fn of(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self {
            status,
            retry_after,
            body,
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn statuses(&self) -> Vec<&str> {
        self.body["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["status"].as_str().unwrap_or(""))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A key of `tenant` for `types` (empty: every type) with an optional rate.
pub async fn key(conn: &Connection, tenant: &str, types: &[&str], rate: Option<&str>) -> String {
    let keys = Keys::open(conn).await.expect("keys");
    let spec = KeySpec {
        tenant: conveyor::TenantId::parse(tenant).expect("tenant"),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        rate: rate.map(|r| Rate::parse(r).expect("rate")),
        name: None,
    };
    keys.create(spec).await.expect("create key").0
}

/// A valid `order.created` payload.
pub fn order_data(order_id: &str) -> Value {
    serde_json::to_value(conveyor_tests::order(order_id, 1250)).expect("order")
}

/// A structured-mode `order.created` CloudEvent.
pub fn order_event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/checkout",
        "type": "order.created",
        "data": order_data(id),
    })
}

/// The stored envelopes of the stream, as JSON, with their subjects.
pub async fn stored(conn: &Connection, min: usize) -> Vec<(String, Value)> {
    conveyor_tests::read_stream(conn, "EVENTS", min, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|m| {
            let body = serde_json::from_slice(&m.payload).expect("envelope");
            (m.subject.to_string(), body)
        })
        .collect()
}

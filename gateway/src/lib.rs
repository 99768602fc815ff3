//! The Conveyor HTTP ingest gateway: apps that cannot keep a NATS connection (serverless
//! functions, webhooks, other languages) publish events with one HTTP request.
//!
//! `POST /v1/events` takes CloudEvents 1.0 over HTTP in structured mode
//! (`application/cloudevents+json`), binary mode (`ce-*` headers, the data as a JSON body) and
//! batch mode (`application/cloudevents-batch+json`, up to [`MAX_BATCH`] events, stored all or
//! none), and a minimal form (`application/json`: `{"type", "data", "id"}`). The tenant comes
//! from the API key ([`keys`]), never from the body. Each event is checked against the catalog's
//! JSON Schema, published with the publisher's envelope and de-duplication (the event id is the
//! `Nats-Msg-Id`, scoped by tenant), and answered `202` only once the stream has stored it.
//!
//! The gateway keeps no state of its own: run any number behind a load balancer. Rate limits
//! are counted per gateway process.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use conveyor::telemetry::Telemetry;
//! use conveyor_gateway::{Gateway, GatewayConfig};
//!
//! let conn = conveyor::Connection::connect("nats://127.0.0.1:4222").await?;
//! let gateway = Gateway::start(&conn, &Telemetry::new(), GatewayConfig::default()).await?;
//! println!("POST http://{}/v1/events", gateway.local_addr());
//! # Ok(()) }
//! ```

mod auth;
mod handler;
mod ingest;
pub mod keys;
mod metrics;
mod outcome;
mod publish;
mod rejection;
mod server;

pub use auth::CACHE_TTL;
pub use ingest::{MAX_BATCH, MAX_DEPTH};
pub use outcome::EventResult;
pub use server::{Gateway, GatewayConfig, GatewayError, GatewayErrorKind};

//! Test support: run a handler in-process, and start real nats-server processes.
//!
//! # Running a handler
//!
//! [`TestDelivery`] runs a handler the way the worker would, without a server: the event is
//! encoded into a real envelope and decoded back (so a serde mismatch fails the test), the run
//! goes through the worker's own code (timeout, panics, cancellation) and decision, so
//! [`HandlerRun::outcome`] is what the worker would do with the event (ack, retry after a delay,
//! dead letter), and follow-up events go through the publisher's own checks and are recorded
//! instead of sent.
//!
//! ```
//! use conveyor::testing::TestDelivery;
//! use conveyor::{Context, HandlerError, HandlerResult, TenantId};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct OrderCreated { order_id: String }
//! # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct InvoiceRequested { order_id: String }
//! # impl conveyor::Event for InvoiceRequested { const TYPE: &'static str = "invoice.requested"; }
//!
//! async fn on_order(e: OrderCreated, ctx: Context) -> HandlerResult {
//!     ctx.publish(&InvoiceRequested { order_id: e.order_id }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tenant = TenantId::parse("acme").unwrap();
//! let run = TestDelivery::new(tenant, OrderCreated { order_id: "o-1".into() })
//!     .run(on_order, ())
//!     .await;
//! assert!(run.result.is_ok());
//! assert_eq!(run.outcome, conveyor::testing::RunOutcome::Acked);
//! assert_eq!(run.published[0].event_type, "invoice.requested");
//! # }
//! ```
//!
//! # A nats-server per test
//!
//! [`NatsServer::start`] starts a JetStream-enabled nats-server on a random port with its own
//! temporary store; dropping it kills the process and deletes the store. The binary is found
//! through `CONVEYOR_NATS_SERVER`, then a project-local `.tools/nats/bin/nats-server` (in the
//! current directory or a parent), then `PATH` (see [`nats_server_binary`]).
//! [`NatsCluster::start`] starts three routed nodes and returns once every node serves
//! JetStream; [`NatsCluster::start_partial`] starts some of them, for tests of a cluster that
//! is still forming.
//!
//! This module needs the `testing` feature (not on by default): add
//! `conveyor = { version = "...", features = ["testing"] }` to `[dev-dependencies]`.

mod cluster;
mod delivery;
mod server;

pub use cluster::NatsCluster;
pub use delivery::{HandlerRun, RunOutcome, TestDelivery};
pub use server::{
    FixtureError, FixtureErrorKind, NATS_SERVER_ENV, NatsServer, PROJECT_NATS_SERVER,
    nats_server_binary,
};

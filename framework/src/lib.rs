//! Conveyor: event-driven background work on NATS JetStream.
//!
//! Apps publish typed, tenant-scoped events ([`Event`], [`Publisher`]) as CloudEvents to
//! `events.<tenant>.<type>`; handler groups ([`Group`]) run plain async functions on them inside
//! a [`Worker`], with acks, retries with backoff ([`RetryPolicy`]), heartbeats for long handlers,
//! dead letters ([`dlq`]) and graceful shutdown. Any number of worker processes can run a group:
//! they share its durable consumers, one per tenant partition, served fairly
//! ([`partition`]).
//!
//! # Quick tour
//!
//! ```no_run
//! use conveyor::{Connection, Context, Event, Group, HandlerError, HandlerResult, Publisher, Worker};
//! use conveyor::topology::{provision, Topology};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! /// An order was placed.
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! struct OrderCreated { order_id: String, total_minor: i64 }
//! impl Event for OrderCreated { const TYPE: &'static str = "order.created"; }
//!
//! async fn send_receipt(order: OrderCreated, ctx: Context) -> HandlerResult {
//!     if order.total_minor < 0 {
//!         return Err(HandlerError::permanent("negative total"));
//!     }
//!     println!("receipt for {} of tenant {}", order.order_id, ctx.tenant());
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = Connection::connect("nats://127.0.0.1:4222").await?;
//! provision(&conn, &Topology::default()).await?;
//!
//! Publisher::new(&conn)
//!     .publish("acme", &OrderCreated { order_id: "o-1".into(), total_minor: 4200 })
//!     .await?;
//!
//! Worker::builder(&conn, ())
//!     .group(Group::new("receipts").handle(send_receipt))
//!     .build()?
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Delivery guarantees
//!
//! Delivery is at least once. An event ends either acked after a successful handler run or as a
//! dead letter with its error; [`Context::event_id`] stays the same across redeliveries so
//! handlers can be idempotent. The attempt number counts deliveries, including one that a crash
//! or a shutdown interrupted.

pub mod batch;
pub mod concurrency;
#[cfg(feature = "cli")]
pub mod connect_args;
pub mod connection;
pub mod control;
pub mod delay;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod event;
pub mod filters;
pub mod handler;
pub mod history;
mod kvwatch;
pub mod layout;
pub mod partition;
pub mod pause;
pub mod publisher;
pub mod rate;
pub mod retention;
pub mod retry;
pub mod runs;
pub mod scope;
pub mod shutdown;
pub mod sla;
pub mod status;
#[cfg(feature = "store")]
pub mod store;
pub mod subject;
pub mod telemetry;
pub mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod trace;
pub mod weights;
pub mod worker;

pub use connection::{ConnectError, ConnectErrorKind, Connection};
pub use dlq::{DeadLetter, DeadLetterError, DeadLetterErrorKind, DeadLetterKind};
pub use envelope::{DecodeError, DecodeErrorKind, Envelope, EventOptions};
pub use error::Error;
pub use event::{Event, EventTypeError, EventTypeErrorKind, validate_event_type};
pub use handler::{Context, Handler, HandlerError, HandlerOptions, HandlerResult, Retry};
pub use publisher::{PublishError, PublishErrorKind, PublishSummary, Published, Publisher};
pub use retry::RetryPolicy;
pub use tenant::{IntoTenantId, TenantId, TenantIdError, TenantIdErrorKind};
pub use topology::{ProvisionError, ProvisionErrorKind};
pub use worker::{
    BuildError, BuildErrorKind, Group, GroupConfig, StartFrom, Worker, WorkerBuilder, WorkerError,
    WorkerErrorKind, WorkerHandle,
};

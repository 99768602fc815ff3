//! Publishing typed events.

mod atomic;
mod many;
mod prepare;
mod send;

pub use atomic::{AtomicBatch, MAX_ATOMIC_BATCH};
pub use many::PublishSummary;

pub(crate) use prepare::Prepared;
#[cfg(feature = "testing")]
pub(crate) use prepare::prepare_event;
pub(crate) use send::{Sent, send_message};

use std::fmt;
use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage as Publish;

use serde::Serialize;

use crate::connection::Connection;
use crate::envelope::{CONTENT_TYPE, EventOptions};
use crate::error::Error;
use crate::event::Event;
use crate::telemetry::Telemetry;
use crate::tenant::{IntoTenantId, TenantId};

/// Default number of publishes whose acks may be outstanding in [`Publisher::publish_many`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default `source` attribute of published events.
pub const DEFAULT_SOURCE: &str = "conveyor";

/// Why a publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The tenant id breaks the tenant rules; nothing was sent.
    InvalidTenant,
    /// The event type name breaks the event type rules; nothing was sent.
    InvalidEventType,
    /// The payload could not be encoded as JSON; nothing was sent.
    Encode,
    /// The event id is empty, longer than
    /// [`MAX_EVENT_ID_LEN`](crate::envelope::MAX_EVENT_ID_LEN) bytes, or has control
    /// characters; nothing was sent.
    InvalidId,
    /// An extra header has an invalid name, or a value with control characters (CR, LF, ...);
    /// nothing was sent.
    InvalidHeader,
    /// The delay is past any representable time, or the debounce key is invalid (empty, over
    /// 256 bytes, control characters) or given with a delay; nothing was sent.
    InvalidDelay,
    /// No stream captures the subject (the topology is not set up).
    NoStream,
    /// No ack arrived in time. The event may still have been stored: retrying with the same
    /// event id is safe inside the duplicate window.
    Timeout,
    /// The server refused the subject for this user.
    PermissionDenied,
    /// The message is larger than the server's `max_payload`; nothing was sent.
    PayloadTooLarge,
    /// An atomic batch held an event whose id the stream already stored inside its duplicate
    /// window, or one id twice: nothing of the batch was stored.
    Duplicate,
    /// An atomic batch would hold more than [`MAX_ATOMIC_BATCH`] events.
    BatchTooLarge,
    /// Anything else (connection closed, stream limits, ...).
    Other,
}

impl fmt::Display for PublishErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidTenant => "invalid tenant",
            Self::InvalidEventType => "invalid event type",
            Self::Encode => "encode failed",
            Self::InvalidId => "invalid event id",
            Self::InvalidHeader => "invalid header",
            Self::InvalidDelay => "invalid delay",
            Self::NoStream => "no stream",
            Self::Timeout => "publish timed out",
            Self::PermissionDenied => "permission denied",
            Self::PayloadTooLarge => "payload too large",
            Self::Duplicate => "duplicate event id in batch",
            Self::BatchTooLarge => "batch too large",
            Self::Other => "publish failed",
        })
    }
}

impl PublishErrorKind {
    /// The kind as a metric label value (`invalid_tenant`, `timeout`, ...).
    pub fn as_label(self) -> &'static str {
        match self {
            Self::InvalidTenant => "invalid_tenant",
            Self::InvalidEventType => "invalid_event_type",
            Self::Encode => "encode",
            Self::InvalidId => "invalid_id",
            Self::InvalidHeader => "invalid_header",
            Self::InvalidDelay => "invalid_delay",
            Self::NoStream => "no_stream",
            Self::Timeout => "timeout",
            Self::PermissionDenied => "permission_denied",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Duplicate => "duplicate",
            Self::BatchTooLarge => "batch_too_large",
            Self::Other => "other",
        }
    }
}

/// A failed publish.
pub type PublishError = Error<PublishErrorKind>;

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event id (also its `Nats-Msg-Id`).
    pub id: String,
    /// The subject it was stored under: `events.<tenant>.<type>`, or for a delayed event its
    /// schedule's subject (see [`crate::delay`]).
    pub subject: String,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// True when the stream already held an event with this id (inside the duplicate window):
    /// nothing new was stored.
    pub duplicate: bool,
    /// When a delayed event becomes visible; `None` for an event visible at once.
    pub deliver_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Publishes typed, tenant-scoped events as CloudEvents to `events.<tenant>.<type>`.
///
/// Cheap to clone. Every publish awaits the stream's ack, so a returned `Ok` means stored.
///
/// ```no_run
/// # use conveyor::{Connection, Event, Publisher};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderCreated { order_id: String }
/// # impl Event for OrderCreated { const TYPE: &'static str = "order.created"; }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Connection::connect("nats://127.0.0.1:4222").await?;
/// let publisher = Publisher::new(&conn).with_source("checkout-api");
/// let stored = publisher
///     .publish("acme", &OrderCreated { order_id: "o-1".into() })
///     .await?;
/// println!("stored as #{} ({})", stored.stream_sequence, stored.id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    conn: Connection,
    source: Arc<str>,
    max_in_flight: usize,
    telemetry: Option<Telemetry>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("source", &self.source)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `conn` with source [`DEFAULT_SOURCE`].
    pub fn new(conn: &Connection) -> Self {
        Self {
            conn: conn.clone(),
            source: DEFAULT_SOURCE.into(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            telemetry: None,
        }
    }

    /// Counts failed publishes in `telemetry` (`conveyor_publish_errors_total`, by kind).
    pub fn with_telemetry(mut self, telemetry: &Telemetry) -> Self {
        self.telemetry = Some(telemetry.clone());
        self
    }

    fn counted<T>(&self, result: Result<T, PublishError>) -> Result<T, PublishError> {
        if let (Err(e), Some(t)) = (&result, &self.telemetry) {
            t.publish_error(e.kind().as_label());
        }
        result
    }

    /// Sets the CloudEvents `source` attribute (the publishing app).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into().into();
        self
    }

    /// Sets how many acks [`publish_many`](Self::publish_many) may await at once (at least 1).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The connection this publisher uses.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Publishes one event for `tenant` and awaits the stream's ack.
    pub async fn publish<E: Event>(
        &self,
        tenant: impl IntoTenantId,
        event: &E,
    ) -> Result<Published, PublishError> {
        self.publish_with(tenant, event, EventOptions::default())
            .await
    }

    /// Publishes one event with explicit attributes (id, time, correlation, ...).
    pub async fn publish_with<E: Event>(
        &self,
        tenant: impl IntoTenantId,
        event: &E,
        options: EventOptions,
    ) -> Result<Published, PublishError> {
        let result = match self.prepare_event(tenant, event, &options) {
            Ok(prepared) => self.send(prepared).await,
            Err(e) => Err(e),
        };
        self.counted(result)
    }

    /// Publishes an event given by type name and any serializable payload. The type name is
    /// validated; the payload is not checked against a schema. Prefer [`publish`](Self::publish).
    pub async fn publish_untyped<T: Serialize + ?Sized>(
        &self,
        tenant: impl IntoTenantId,
        event_type: &str,
        data: &T,
        options: EventOptions,
    ) -> Result<Published, PublishError> {
        let result = match self.prepare(tenant, event_type, data, &options) {
            Ok(prepared) => self.send(prepared).await,
            Err(e) => Err(e),
        };
        self.counted(result)
    }

    pub(super) fn prepare_event<E: Event>(
        &self,
        tenant: impl IntoTenantId,
        event: &E,
        options: &EventOptions,
    ) -> Result<Prepared, PublishError> {
        prepare::prepare_event(&self.source, tenant, event, options)
    }

    fn prepare<T: Serialize + ?Sized>(
        &self,
        tenant: impl IntoTenantId,
        event_type: &str,
        data: &T,
        options: &EventOptions,
    ) -> Result<Prepared, PublishError> {
        prepare::prepare(&self.source, tenant, event_type, data, options)
    }

    async fn send(&self, prepared: Prepared) -> Result<Published, PublishError> {
        self.start(prepared).await?.finish().await
    }

    /// Sends one event; the returned value awaits its ack.
    pub(super) async fn start(&self, prepared: Prepared) -> Result<PendingAck, PublishError> {
        let Prepared {
            id,
            message_id,
            subject,
            body,
            mut headers,
            mut deliver_at,
            debounce_max_wait,
        } = prepared;
        if let (Some(max_wait), Some(at)) = (debounce_max_wait, deliver_at) {
            // The burst's first time comes from the schedule this publish replaces.
            // Boxed: the lookup's requests would otherwise grow every publish's future.
            let until = Box::pin(debounce_until(
                &self.conn,
                &subject,
                &mut headers,
                at,
                max_wait,
            ));
            deliver_at = Some(until.await);
        }
        let mut message = Publish::build()
            .payload(body)
            .message_id(message_id)
            .header("Content-Type", CONTENT_TYPE);
        for (name, value) in headers {
            message = message.header(name.as_str(), value.as_str());
        }
        match send_message(&self.conn, subject, message).await {
            Ok(sent) => Ok(PendingAck {
                id,
                sent,
                deliver_at,
            }),
            Err(e) => Err(e.for_event(id)),
        }
    }
}

/// The due time of a debounced event whose own due time is `at`: at most `max_wait` after the
/// first event of its burst, read from the schedule on `subject` that it replaces (none: this
/// event starts the burst). Rewrites the schedule and first-time headers to match.
async fn debounce_until(
    conn: &Connection,
    subject: &str,
    headers: &mut [(String, String)],
    at: chrono::DateTime<chrono::Utc>,
    max_wait: std::time::Duration,
) -> chrono::DateTime<chrono::Utc> {
    let stream = conn
        .jetstream()
        .get_stream_no_info(crate::topology::EVENTS_STREAM)
        .await;
    let first = match stream {
        Ok(s) => s
            .direct_get_last_for_subject(subject)
            .await
            .ok()
            .and_then(|m| {
                let v = m.headers.get(crate::delay::DEBOUNCE_FIRST_HEADER)?;
                chrono::DateTime::parse_from_rfc3339(v.as_str()).ok()
            }),
        Err(_) => None,
    };
    let Some(first) = first.map(|f| f.with_timezone(&chrono::Utc)) else {
        return at;
    };
    let latest = crate::delay::When::After(max_wait)
        .resolve(first)
        .ok()
        .flatten()
        .unwrap_or(first);
    let due = at.min(latest);
    for (name, value) in headers.iter_mut() {
        if name == "Nats-Schedule" {
            *value = crate::delay::schedule_at(due);
        } else if name == crate::delay::DEBOUNCE_FIRST_HEADER {
            *value = first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        }
    }
    due
}

/// The `Nats-Msg-Id` of event `id` of `tenant`: `<tenant>:<id>`. JetStream de-duplicates by this
/// header across the whole stream, whatever the subject: scoping it by tenant keeps two tenants
/// that use the same business id (`order-1001`) from dropping each other's events.
///
/// ```
/// let acme = conveyor::TenantId::parse("acme")?;
/// assert_eq!(conveyor::publisher::message_id(&acme, "order-1001"), "acme:order-1001");
/// # Ok::<(), conveyor::TenantIdError>(())
/// ```
pub fn message_id(tenant: &TenantId, id: &str) -> String {
    format!("{tenant}:{id}")
}

/// A sent event whose ack is still outstanding.
pub(super) struct PendingAck {
    id: String,
    sent: Sent,
    deliver_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl PendingAck {
    pub(super) async fn finish(self) -> Result<Published, PublishError> {
        let Self {
            id,
            sent,
            deliver_at,
        } = self;
        let subject = sent.subject().to_owned();
        let ack = match sent.acked().await {
            Ok(ack) => ack,
            Err(e) => return Err(e.for_event(id)),
        };
        Ok(Published {
            id,
            subject,
            stream_sequence: ack.sequence,
            duplicate: ack.duplicate,
            deliver_at,
        })
    }
}

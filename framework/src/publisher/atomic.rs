//! Atomic batches: up to [`MAX_ATOMIC_BATCH`] events of one tenant stored all together or not at
//! all (JetStream atomic batch publish, ADR-50, nats-server 2.12+; the `EVENTS` stream of the
//! topology allows it).
//!
//! async-nats 0.51 has no builder for atomic batches, only the stream flag, so the batch headers
//! (`Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`) are written here. Every message
//! asks for a reply on one inbox subscription and all are sent before any reply is awaited: a
//! batch costs one round trip, and the first refused message names the reason.

use async_nats::HeaderMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::prepare::{Prepared, prepare, prepare_event};
use super::{PublishError, PublishErrorKind, Published, Publisher};
use crate::envelope::{CONTENT_TYPE, EventOptions};
use crate::error::Error;
use crate::event::Event;
use crate::tenant::{IntoTenantId, TenantId};

/// Most events in one atomic batch (the server's limit).
pub const MAX_ATOMIC_BATCH: usize = 1000;

/// The server's error code for a batch holding an id it already stored (or one id twice).
const DUPLICATE_IN_BATCH: u64 = 10201;

/// Events of one tenant to be stored together or not at all; see
/// [`Publisher::atomic_batch`].
///
/// ```no_run
/// # use conveyor::{Connection, Event, EventOptions, Publisher};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderCreated { order_id: String }
/// # impl Event for OrderCreated { const TYPE: &'static str = "order.created"; }
/// # async fn run(conn: &Connection) -> Result<(), Box<dyn std::error::Error>> {
/// let mut batch = Publisher::new(conn).atomic_batch("acme")?;
/// for n in 0..3 {
///     let order = OrderCreated { order_id: format!("o-{n}") };
///     batch.add(&order, EventOptions::default().id(format!("o-{n}")))?;
/// }
/// let stored = batch.commit().await?; // all three, or an error and none
/// assert_eq!(stored.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AtomicBatch {
    publisher: Publisher,
    tenant: TenantId,
    events: Vec<Prepared>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts an atomic batch for `tenant`: the events added to it are stored together when it
    /// is committed, or none is.
    pub fn atomic_batch(&self, tenant: impl IntoTenantId) -> Result<AtomicBatch, PublishError> {
        let tenant = tenant
            .into_tenant_id()
            .map_err(|e| Error::restate(PublishErrorKind::InvalidTenant, e))?;
        Ok(AtomicBatch {
            publisher: self.clone(),
            tenant,
            events: Vec::new(),
        })
    }
}

impl AtomicBatch {
    /// Adds a typed event (checked like [`Publisher::publish_with`]); returns its id.
    pub fn add<E: Event>(
        &mut self,
        event: &E,
        options: EventOptions,
    ) -> Result<&str, PublishError> {
        let prepared = prepare_event(&self.publisher.source, &self.tenant, event, &options)?;
        self.push(prepared)
    }

    /// Adds an event by type name with any serializable payload (checked like
    /// [`Publisher::publish_untyped`]); returns its id.
    pub fn add_untyped<T: Serialize + ?Sized>(
        &mut self,
        event_type: &str,
        data: &T,
        options: EventOptions,
    ) -> Result<&str, PublishError> {
        let prepared = prepare(
            &self.publisher.source,
            &self.tenant,
            event_type,
            data,
            &options,
        )?;
        self.push(prepared)
    }

    fn push(&mut self, prepared: Prepared) -> Result<&str, PublishError> {
        let debounced = prepared
            .headers
            .iter()
            .any(|(name, _)| name == crate::delay::DEBOUNCE_FIRST_HEADER);
        if debounced {
            return Err(Error::new(
                PublishErrorKind::InvalidDelay,
                "a debounced event cannot be part of an atomic batch",
            )
            .for_event(prepared.id));
        }
        if self.events.len() == MAX_ATOMIC_BATCH {
            return Err(Error::new(
                PublishErrorKind::BatchTooLarge,
                format!("an atomic batch holds at most {MAX_ATOMIC_BATCH} events"),
            )
            .for_event(prepared.id));
        }
        if self.events.iter().any(|e| e.id == prepared.id) {
            return Err(Error::new(
                PublishErrorKind::Duplicate,
                format!("event id {:?} is twice in the batch", prepared.id),
            )
            .for_event(prepared.id));
        }
        self.events.push(prepared);
        Ok(&self.events[self.events.len() - 1].id)
    }

    /// The number of events added.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no event was added.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The ids of the events added, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|e| e.id.as_str())
    }

    /// Sends the batch and awaits the stream's verdict: every event stored (in order, with its
    /// sequence) or none. [`PublishErrorKind::Duplicate`] means an event's id is already stored
    /// (inside the duplicate window), so nothing of the batch was; an empty batch stores
    /// nothing and returns an empty list.
    pub async fn commit(self) -> Result<Vec<Published>, PublishError> {
        let result = self.send().await;
        if let Some(t) = &self.publisher.telemetry
            && let Err(e) = &result
        {
            t.publish_error(e.kind().as_label());
        }
        result
    }

    async fn send(&self) -> Result<Vec<Published>, PublishError> {
        let n = self.events.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let conn = &self.publisher.conn;
        let client = conn.client();
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| Error::with_source(PublishErrorKind::Other, "cannot subscribe", e))?;
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        for (i, event) in self.events.iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert("Content-Type", CONTENT_TYPE);
            headers.insert("Nats-Msg-Id", event.message_id.as_str());
            for (name, value) in &event.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i + 1 == n {
                headers.insert("Nats-Batch-Commit", "1");
            }
            client
                .publish_with_reply_and_headers(
                    event.subject.clone(),
                    format!("{inbox}.{i}"),
                    headers,
                    event.body.clone(),
                )
                .await
                .map_err(|e| {
                    let kind = match e.kind() {
                        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                            PublishErrorKind::PayloadTooLarge
                        }
                        _ => PublishErrorKind::Other,
                    };
                    Error::with_source(kind, "the batch could not be sent; nothing was stored", e)
                        .for_event(event.id.clone())
                })?;
        }
        let commit = tokio::time::timeout(conn.timeout(), async {
            let mut seen = 0;
            while let Some(reply) = replies.next().await {
                seen += 1;
                let index = reply
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .unwrap_or(n - 1);
                if reply.payload.is_empty() {
                    if seen == n {
                        break;
                    }
                    continue;
                }
                return Some((index, reply.payload));
            }
            None
        })
        .await;
        let (index, payload) = match commit {
            Ok(Some(reply)) => reply,
            Ok(None) | Err(_) => return Err(self.timed_out()),
        };
        let ack: BatchAck = serde_json::from_slice(&payload).map_err(|e| {
            Error::with_source(
                PublishErrorKind::Other,
                "the stream's reply to the batch is not a publish ack; the batch may have been stored: retry it with the same ids",
                e,
            )
        })?;
        if let Some(error) = ack.error {
            // A refusal at the commit is about the whole batch, not its last event.
            let id = (index + 1 < n)
                .then(|| self.events.get(index).map(|e| e.id.clone()))
                .flatten();
            return Err(refused(error, id));
        }
        let count = ack.count.unwrap_or(n as u64);
        let first = ack.seq.saturating_sub(count.saturating_sub(1));
        Ok(self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| Published {
                id: e.id.clone(),
                subject: e.subject.clone(),
                stream_sequence: first + i as u64,
                duplicate: false,
                deliver_at: e.deliver_at,
            })
            .collect())
    }

    fn timed_out(&self) -> PublishError {
        Error::new(
            PublishErrorKind::Timeout,
            format!(
                "no verdict on the batch of {} events in {:?}; it may have been stored: retry it with the same ids (a stored batch is then refused as duplicate)",
                self.events.len(),
                self.publisher.conn.timeout()
            ),
        )
    }
}

/// The stream's reply to a batch's commit.
#[derive(Debug, Deserialize)]
struct BatchAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

fn refused(error: ApiError, id: Option<String>) -> PublishError {
    let kind = match error.err_code {
        DUPLICATE_IN_BATCH => PublishErrorKind::Duplicate,
        _ => PublishErrorKind::Other,
    };
    let e = Error::new(
        kind,
        format!(
            "the stream refused the batch, nothing of it was stored: {} (error {})",
            error.description, error.err_code
        ),
    );
    match id {
        Some(id) => e.for_event(id),
        None => e,
    }
}

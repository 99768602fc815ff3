//! The context a handler runs in: its delivery, follow-up events, progress and cancellation.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::envelope::EventOptions;
use crate::event::Event;
use crate::publisher::{PublishError, Published, Publisher};
use crate::tenant::{IntoTenantId, TenantId};
use crate::trace::TraceParent;
use tokio_util::sync::CancellationToken;

/// Facts about the delivery a handler is running for.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The group (shared by its deliveries).
    pub(crate) group: std::sync::Arc<str>,
    pub(crate) tenant: TenantId,
    pub(crate) event_id: String,
    /// The handled type, from the group's route (no copy per delivery).
    pub(crate) event_type: &'static str,
    pub(crate) source: String,
    pub(crate) time: Option<DateTime<Utc>>,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    /// `None`: the event is its own correlation (its id).
    pub(crate) correlation_id: Option<String>,
    /// The trace context of this handler run (its own span id).
    pub(crate) trace: TraceParent,
    pub(crate) stream_sequence: u64,
}

impl Delivery {
    /// The correlation id of the handled event (its own id when it carries none).
    pub(crate) fn correlation_id(&self) -> &str {
        self.correlation_id.as_deref().unwrap_or(&self.event_id)
    }
}

/// Receives the progress reports of one run.
pub(crate) trait ProgressSink: Send + Sync {
    fn report(&self, percent: u8, message: String) -> BoxFuture<'_, ()>;
}

/// What a run shares with the runtime: its cancellation and where progress goes. The sink is
/// held inline, last, so a run's hooks are one allocation: `Arc<RunHooks<LiveProgress>>`
/// becomes the `Arc<RunHooks>` a [`Context`] holds.
pub(crate) struct RunHooks<P: ?Sized + ProgressSink = dyn ProgressSink> {
    pub(crate) cancel: CancellationToken,
    /// Follow-up events published so far in this run, by type: numbers their derived ids.
    pub(crate) follow_ups: Mutex<Vec<(&'static str, u32)>>,
    pub(crate) progress: P,
}

impl<P: ProgressSink> RunHooks<P> {
    pub(crate) fn new(cancel: CancellationToken, progress: P) -> Self {
        Self {
            cancel,
            follow_ups: Mutex::new(Vec::new()),
            progress,
        }
    }
}

impl<P: ?Sized + ProgressSink> RunHooks<P> {
    /// The how-many-th follow-up of `event_type` this run publishes (1-based).
    fn next_follow_up(&self, event_type: &'static str) -> u32 {
        let Ok(mut seen) = self.follow_ups.lock() else {
            return 1;
        };
        match seen.iter_mut().find(|(t, _)| *t == event_type) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((event_type, 1));
                1
            }
        }
    }
}

/// The id of the `n`-th follow-up event of `event_type` published while handling `parent`:
/// `<parent>:<type>` for the first, `<parent>:<type>:<n>` after it. A redelivered handler that
/// publishes the same follow-ups in the same order re-publishes the same ids, and the stream's
/// duplicate window stores them once. An id that would grow past
/// [`MAX_EVENT_ID_LEN`](crate::envelope::MAX_EVENT_ID_LEN) (a long causal chain) is shortened to
/// a hash of itself.
///
/// ```
/// assert_eq!(conveyor::handler::follow_up_id("e-1", "order.shipped", 1), "e-1:order.shipped");
/// assert_eq!(conveyor::handler::follow_up_id("e-1", "order.shipped", 2), "e-1:order.shipped:2");
/// assert!(conveyor::handler::follow_up_id(&"x".repeat(250), "order.shipped", 1).len() <= 256);
/// ```
pub fn follow_up_id(parent: &str, event_type: &str, n: u32) -> String {
    let id = if n <= 1 {
        format!("{parent}:{event_type}")
    } else {
        format!("{parent}:{event_type}:{n}")
    };
    if id.len() <= crate::envelope::MAX_EVENT_ID_LEN {
        return id;
    }
    // FNV-1a, twice with different offsets: 128 stable bits (ids need no cryptographic hash,
    // only one that is the same in every process and release).
    let fnv = |offset: u64| {
        id.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "h:{:016x}{:016x}:{event_type}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// An event a handler published from a test context (see [`crate::testing`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Its event id (derived from the handled event's id unless the handler chose one).
    pub id: String,
    /// The tenant it was published for.
    pub tenant: TenantId,
    /// Its event type.
    pub event_type: String,
    /// Its payload as JSON.
    pub data: serde_json::Value,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// Its causation id.
    pub causation_id: Option<String>,
    /// Its `traceparent`.
    pub traceparent: Option<String>,
    /// The lane it was published on (`None`: the default lane).
    pub lane: Option<String>,
    /// When it becomes visible, for a delayed follow-up.
    pub deliver_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
pub(crate) enum FollowUps {
    Nats(Publisher),
    /// A [`TestDelivery`](crate::testing::TestDelivery)'s log.
    #[cfg(feature = "testing")]
    Recorder(Arc<Mutex<Vec<RecordedEvent>>>),
}

/// What a handler gets besides its event: who the event is for, which attempt this is, a
/// publisher for follow-up events, and the worker's shared state.
///
/// Delivery is at least once: use [`event_id`](Context::event_id) to make side effects
/// idempotent.
pub struct Context<S = ()> {
    delivery: Arc<Delivery>,
    follow_ups: FollowUps,
    hooks: Arc<RunHooks>,
    state: S,
}

impl Context<()> {
    /// The same context with `state` as its state.
    pub(crate) fn with_state<S>(self, state: S) -> Context<S> {
        Context {
            delivery: self.delivery,
            follow_ups: self.follow_ups,
            hooks: self.hooks,
            state,
        }
    }
}

impl<S: Clone> Clone for Context<S> {
    fn clone(&self) -> Self {
        Self {
            delivery: self.delivery.clone(),
            follow_ups: self.follow_ups.clone(),
            hooks: self.hooks.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S> fmt::Debug for Context<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl<S> Context<S> {
    pub(crate) fn new(
        delivery: Arc<Delivery>,
        follow_ups: FollowUps,
        hooks: Arc<RunHooks>,
        state: S,
    ) -> Self {
        Self {
            delivery,
            follow_ups,
            hooks,
            state,
        }
    }

    /// The tenant the event belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.delivery.tenant
    }

    /// The event id: the same on every redelivery, so use it for idempotency.
    pub fn event_id(&self) -> &str {
        &self.delivery.event_id
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        self.delivery.event_type
    }

    /// The `source` of the event (the app that published it).
    pub fn source(&self) -> &str {
        &self.delivery.source
    }

    /// When the event happened, if the publisher said.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.delivery.time
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.delivery.attempt
    }

    /// Attempts the handler's retry policy allows.
    pub fn max_attempts(&self) -> u32 {
        self.delivery.max_attempts
    }

    /// True when a failure now goes to the dead letters.
    pub fn is_last_attempt(&self) -> bool {
        self.delivery.attempt >= self.delivery.max_attempts
    }

    /// The correlation id of the event's causal chain (the event's own id if it started one).
    pub fn correlation_id(&self) -> &str {
        self.delivery.correlation_id()
    }

    /// The trace context of this handler run: the event's trace, with this run's span id.
    /// Events published from the handler carry it as their `traceparent`.
    pub fn trace(&self) -> TraceParent {
        self.delivery.trace
    }

    /// [`trace`](Self::trace) as a W3C `traceparent` string.
    pub fn traceparent(&self) -> String {
        self.delivery.trace.to_string()
    }

    /// True once the event has been cancelled for this group (see [`crate::control`]).
    pub fn is_cancelled(&self) -> bool {
        self.hooks.cancel.is_cancelled()
    }

    /// Completes when the event is cancelled for this group. A long handler selects on it to
    /// stop early and clean up; one that does not is stopped after its cancel grace.
    ///
    /// ```
    /// use std::time::Duration;
    /// use conveyor::{Context, HandlerResult};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Analyse { rows: u32 }
    /// # impl conveyor::Event for Analyse { const TYPE: &'static str = "analysis.requested"; }
    ///
    /// async fn analyse(job: Analyse, ctx: Context) -> HandlerResult {
    ///     for step in 0..job.rows {
    ///         tokio::select! {
    ///             () = ctx.cancelled() => return Ok(()), // stop; the run is recorded as cancelled
    ///             () = tokio::time::sleep(Duration::from_millis(10)) => {}
    ///         }
    ///         ctx.progress((step * 100 / job.rows.max(1)) as u8, format!("row {step}")).await;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn cancelled(&self) {
        self.hooks.cancel.cancelled().await;
    }

    /// Reports progress: `percent` (capped at 100) and what the handler is doing. The update is
    /// published on the event's progress subject (see [`crate::control`]), kept in the run
    /// history when the group records it, and extends the delivery like a heartbeat. Never
    /// fails the handler: a report that cannot be sent is logged.
    pub async fn progress(&self, percent: u8, message: impl Into<String>) {
        self.hooks
            .progress
            .report(percent.min(100), message.into())
            .await;
    }

    /// The handler group running this handler.
    pub fn group(&self) -> &str {
        &self.delivery.group
    }

    /// The event's sequence in the `EVENTS` stream.
    pub fn stream_sequence(&self) -> u64 {
        self.delivery.stream_sequence
    }

    /// The worker's shared state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Publishes a follow-up event for the same tenant. It carries this event's correlation id,
    /// and this event's id as its causation id. Its id is derived from this event's id (see
    /// [`follow_up_id`]), so a redelivered handler re-publishes the same ids and the stream
    /// stores each follow-up once; [`EventOptions::id`] overrides it.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Published, PublishError> {
        self.publish_for(self.delivery.tenant.clone(), event).await
    }

    /// Publishes a follow-up event for another tenant, with causation and correlation ids.
    pub async fn publish_for<E: Event>(
        &self,
        tenant: impl IntoTenantId,
        event: &E,
    ) -> Result<Published, PublishError> {
        self.publish_for_with(tenant, event, EventOptions::default())
            .await
    }

    /// Publishes a follow-up event for the same tenant with explicit options (a lane, an id for
    /// idempotent re-publishing, ...). Correlation id, causation id and trace context are
    /// filled in unless `options` sets them.
    pub async fn publish_with<E: Event>(
        &self,
        event: &E,
        options: EventOptions,
    ) -> Result<Published, PublishError> {
        self.publish_for_with(self.delivery.tenant.clone(), event, options)
            .await
    }

    async fn publish_for_with<E: Event>(
        &self,
        tenant: impl IntoTenantId,
        event: &E,
        mut options: EventOptions,
    ) -> Result<Published, PublishError> {
        options
            .correlation_id
            .get_or_insert_with(|| self.delivery.correlation_id().to_owned());
        options
            .causation_id
            .get_or_insert_with(|| self.delivery.event_id.clone());
        options
            .traceparent
            .get_or_insert_with(|| self.delivery.trace.to_string());
        if options.id.is_none() {
            let n = self.hooks.next_follow_up(E::TYPE);
            options.id = Some(follow_up_id(&self.delivery.event_id, E::TYPE, n));
        }
        match &self.follow_ups {
            FollowUps::Nats(publisher) => publisher.publish_with(tenant, event, options).await,
            #[cfg(feature = "testing")]
            FollowUps::Recorder(log) => record(log, tenant, event, options),
        }
    }
}

/// Records a follow-up of a test run after preparing it exactly as a publish would (tenant, type,
/// id, header and lane checks, the decode-back check, the envelope), so a unit test refuses what
/// production refuses.
#[cfg(feature = "testing")]
fn record<E: Event>(
    log: &Mutex<Vec<RecordedEvent>>,
    tenant: impl IntoTenantId,
    event: &E,
    options: EventOptions,
) -> Result<Published, PublishError> {
    use crate::publisher::PublishErrorKind as K;
    let tenant = tenant
        .into_tenant_id()
        .map_err(|e| crate::Error::restate(K::InvalidTenant, e))?;
    let prepared = crate::publisher::prepare_event("test", tenant.clone(), event, &options)?;
    let data = serde_json::to_value(event)
        .map_err(|e| crate::Error::with_source(K::Encode, "could not encode the event", e))?;
    let mut log = log
        .lock()
        .map_err(|_| crate::Error::new(K::Other, "the test recorder is poisoned"))?;
    log.push(RecordedEvent {
        id: prepared.id.clone(),
        tenant,
        event_type: E::TYPE.to_owned(),
        data,
        correlation_id: options.correlation_id,
        causation_id: options.causation_id,
        traceparent: options.traceparent,
        lane: options.lane,
        deliver_at: prepared.deliver_at,
    });
    Ok(Published {
        id: prepared.id,
        subject: prepared.subject,
        stream_sequence: log.len() as u64,
        duplicate: false,
        deliver_at: prepared.deliver_at,
    })
}

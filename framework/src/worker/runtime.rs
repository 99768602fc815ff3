//! The per-group consumer loop and the handling of one delivery.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use bytes::Bytes;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field::Empty};

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::handback::{HANDBACK_ALLOWANCE, HandBacks};
use super::{GroupConfig, Route, StartFrom};
use crate::connection::Connection;
use crate::control::{Cancellations, ProgressUpdate, progress_subject};
use crate::dlq::{DeadLetter, DeadLetterKind};
use crate::envelope::{RawEnvelope, split_event_subject};
use crate::handler::{Context, Delivery, FollowUps, HandlerResult, ProgressSink, Retry, RunHooks};
use crate::history::{HistoryWriter, ProgressReport, RunRecord, RunState, Transition};
use crate::publisher::Publisher;
use crate::sla::SlaBreached;
use crate::telemetry::{GroupMetrics, Outcome as TelemetryOutcome, RouteMetrics};
use crate::tenant::TenantId;
use crate::topology::EVENTS_STREAM;
use crate::trace::TraceParent;

/// Deliveries of a type this process has no handler for before it is dead-lettered as
/// `unknown-type` (see [`GroupConfig::unknown_type_grace`]).
const UNKNOWN_TYPE_HANDBACKS: u32 = 8;

/// How long one pull request waits on the server; also bounds how long a shutdown waits for
/// the last pull to end.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Delay before retrying a dead-letter publish that failed.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

pub(crate) struct GroupRuntime<S> {
    name: String,
    config: GroupConfig,
    routes: HashMap<String, Route<S>>,
    conn: Connection,
    publisher: Publisher,
    state: S,
    max_deliver: i64,
    metrics: Option<GroupMetrics>,
    /// Counts deliveries that failed before a route was found.
    unrouted: Option<RouteMetrics>,
    history: Option<HistoryWriter>,
    cancels: Arc<Cancellations>,
    handbacks: Arc<HandBacks>,
    bound: Arc<AtomicBool>,
    /// The consumer's ack floor (stream sequence) last read from the server; 0 when unknown. A
    /// consumer that disappears is recreated from just above it.
    ack_floor: AtomicU64,
}

/// How often a bound group re-reads its consumer's ack floor (when a pull ends, never per event).
const ACK_FLOOR_EVERY: Duration = Duration::from_secs(2);

/// What a group runtime shares with the worker: metrics, cancellations and hand-back counts.
pub(crate) struct Shared {
    pub(crate) metrics: Option<GroupMetrics>,
    pub(crate) cancels: Arc<Cancellations>,
    pub(crate) handbacks: Arc<HandBacks>,
}

impl<S> GroupRuntime<S> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True while the group is bound to its consumer.
    pub(crate) fn bound(&self) -> Arc<AtomicBool> {
        self.bound.clone()
    }

    pub(crate) fn metrics(&self) -> Option<&GroupMetrics> {
        self.metrics.as_ref()
    }

    pub(crate) fn history_writer(&self) -> Option<&HistoryWriter> {
        self.history.as_ref()
    }

    fn set_bound(&self, bound: bool) {
        self.bound.store(bound, Ordering::Release);
        if let Some(m) = &self.metrics {
            m.bound.set(i64::from(bound));
        }
    }
}

impl<S: Clone + Send + Sync + 'static> GroupRuntime<S> {
    pub(crate) fn new(
        name: String,
        config: GroupConfig,
        routes: HashMap<String, Route<S>>,
        conn: Connection,
        publisher: Publisher,
        state: S,
        shared: Shared,
    ) -> Self {
        let max_deliver = routes
            .values()
            .map(|r| i64::from(r.options.retry.max_attempts.max(1)))
            .max()
            .unwrap_or(1);
        let history = config.history.then(|| HistoryWriter::new(conn.clone()));
        let unrouted = shared.metrics.as_ref().map(|m| m.route("unknown"));
        Self {
            name,
            config,
            routes,
            conn,
            publisher,
            state,
            max_deliver,
            metrics: shared.metrics,
            unrouted,
            history,
            cancels: shared.cancels,
            handbacks: shared.handbacks,
            bound: Arc::new(AtomicBool::new(false)),
            ack_floor: AtomicU64::new(0),
        }
    }

    /// The consumer configuration of this group. `max_deliver` is the largest attempt count
    /// of its handlers plus [`HANDBACK_ALLOWANCE`] deliveries for hand-backs (see
    /// [`super::handback`]); there is no `backoff` list because retry delays are Nak delays.
    fn consumer_config(&self) -> pull::Config {
        let mut filters: Vec<String> = self
            .routes
            .keys()
            .map(|t| match &self.config.lane {
                Some(lane) => format!("events.*.{t}.{}{lane}", crate::envelope::LANE_MARKER),
                None => format!("events.*.{t}"),
            })
            .collect();
        filters.sort();
        pull::Config {
            durable_name: Some(self.name.clone()),
            name: Some(self.name.clone()),
            filter_subjects: filters,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.max_deliver + i64::from(HANDBACK_ALLOWANCE),
            max_ack_pending: self.config.max_ack_pending,
            deliver_policy: match self.config.start_from {
                StartFrom::Beginning => DeliverPolicy::All,
                StartFrom::Now => DeliverPolicy::New,
            },
            ..Default::default()
        }
    }

    /// Creates the group's consumer or brings an existing one up to date. The deliver policy
    /// of an existing consumer is kept: it cannot change.
    async fn ensure_consumer(
        &self,
    ) -> Result<PullConsumer, Box<dyn std::error::Error + Send + Sync>> {
        if self.config.bind_only {
            let consumer: PullConsumer = self
                .conn
                .jetstream()
                .get_consumer_from_stream(&self.name, EVENTS_STREAM)
                .await?;
            self.note_ack_floor(consumer.cached_info().ack_floor.stream_sequence);
            return Ok(consumer);
        }
        let stream = self.conn.jetstream().get_stream(EVENTS_STREAM).await?;
        let mut config = self.consumer_config();
        match stream.consumer_info(&self.name).await {
            Ok(info) => {
                config.deliver_policy = info.config.deliver_policy;
                // Old and new versions of the group run side by side in a rolling deploy: keep
                // the types the other version added, and its larger delivery limit, rather than
                // overwriting each other's consumer back and forth. (A type removed from every
                // version stays in the filter; its events end as `unknown-type` dead letters.)
                let mut filters: std::collections::BTreeSet<String> =
                    config.filter_subjects.drain(..).collect();
                let ours = filters.len();
                filters.extend(info.config.filter_subjects.iter().cloned());
                if !info.config.filter_subject.is_empty() {
                    filters.insert(info.config.filter_subject.clone());
                }
                if filters.len() > ours {
                    tracing::info!(group = %self.name, filters = ?filters, "the group's consumer keeps the types of another version");
                }
                config.filter_subjects = filters.into_iter().collect();
                config.max_deliver = config.max_deliver.max(info.config.max_deliver);
            }
            Err(e) => {
                // Gone while this process knew where the group was (deleted by hand, lost with
                // a server's store): start just above its ack floor rather than replaying the
                // whole stream into the group.
                let floor = self.ack_floor.load(Ordering::Acquire);
                if floor > 0 {
                    tracing::warn!(group = %self.name, error = %e, from_sequence = floor + 1, "the group's consumer is gone; recreating it from its last known ack floor");
                    config.deliver_policy = DeliverPolicy::ByStartSequence {
                        start_sequence: floor + 1,
                    };
                }
            }
        }
        let consumer = stream.create_consumer(config).await?;
        self.note_ack_floor(consumer.cached_info().ack_floor.stream_sequence);
        Ok(consumer)
    }

    fn note_ack_floor(&self, floor: u64) {
        self.ack_floor.fetch_max(floor, Ordering::AcqRel);
    }

    fn heartbeat_every(&self) -> Duration {
        (self.config.ack_wait / 3).max(Duration::from_millis(50))
    }
}

/// An outstanding pull request and the handler slots reserved for the messages it asked for.
/// Dropping it releases the slots no message arrived for.
struct Pull {
    batch: pull::Batch,
    slots: Vec<OwnedSemaphorePermit>,
}

/// How many pulls may be outstanding at once: one being consumed, one on its way.
const MAX_PULLS: usize = 2;

/// Polls every outstanding pull; returns the index of the one that yielded and what it yielded
/// (`None`: that pull has ended).
async fn next_from(
    pulls: &mut [Pull],
) -> (usize, Option<Result<jetstream::Message, async_nats::Error>>) {
    futures::future::poll_fn(|cx| {
        for (i, p) in pulls.iter_mut().enumerate() {
            if let std::task::Poll::Ready(item) = p.batch.poll_next_unpin(cx) {
                return std::task::Poll::Ready((i, item));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Pulls and dispatches the group's events until `shutdown`, rebinding the consumer whenever a
/// pull fails.
///
/// Each pull asks for exactly as many messages as it has free handler slots for, so nothing is
/// prefetched beyond what can start at once (a prefetched message's ack timer already runs).
/// A second pull goes out once half the slots are free, so the next messages are on their way
/// while the current ones are handled. A pull is a bounded request: it ends when its messages
/// have arrived or it expires. On shutdown the loop reads the outstanding pulls to their end and
/// hands every message back, so none is left in transit to a process that is going away.
///
/// A loop that panics (a bug, never bad input: deliveries contain their own panics) is not
/// restarted: the group reports itself unbound, so `/readyz` fails and the process gets
/// restarted by its supervisor, and the error is logged.
pub(crate) async fn run_group<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    let pulling = pull_loop(rt.clone(), shutdown, abort, tracker);
    if let Err(panic) = AssertUnwindSafe(pulling).catch_unwind().await {
        rt.set_bound(false);
        tracing::error!(group = %rt.name, panic = %panic_message(&panic), "the group's pull loop died; the group is not ready");
    }
}

async fn pull_loop<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    let concurrency = rt.config.concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    let refill = u32::try_from((concurrency / 2).max(1)).unwrap_or(u32::MAX);
    let mut backoff = Duration::from_millis(250);
    let mut pulls: Vec<Pull> = Vec::with_capacity(MAX_PULLS);
    // The server reports a refused ack only as a permission violation: watched here, so a user
    // without `$JS.ACK` rights stops the group (and fails readiness) instead of running every
    // event until its deliveries run out.
    let ack_prefix = format!("$JS.ACK.{EVENTS_STREAM}.{}.", rt.name);
    let mut violations = rt.conn.violations().map(|v| v.subscribe());
    'bind: while !shutdown.is_cancelled() {
        let consumer = match rt.ensure_consumer().await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(group = %rt.name, error = %e, retry_in = ?backoff, "cannot bind consumer");
                rt.set_bound(false);
                sleep_or_cancel(backoff, &shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::info!(group = %rt.name, "consumer bound");
        rt.set_bound(true);
        let mut floor_read = tokio::time::Instant::now();
        loop {
            // The first pull needs one free slot; a second one waits until half are free.
            let wanted = if pulls.is_empty() { 1 } else { refill };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'bind,
                refused = refused_ack(&mut violations, &ack_prefix) => {
                    tracing::error!(group = %rt.name, subject = %refused, retry_in = ?ACKS_REFUSED_PAUSE, "the server refuses this user's acks; the group stops pulling: allow it to publish to {ack_prefix}>");
                    rt.set_bound(false);
                    finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                    sleep_or_cancel(ACKS_REFUSED_PAUSE, &shutdown).await;
                    continue 'bind;
                }
                first = permits.clone().acquire_many_owned(wanted), if pulls.len() < MAX_PULLS => {
                    let Ok(first) = first else { break 'bind };
                    let mut slots = Vec::with_capacity(concurrency);
                    slots.push(first);
                    while let Ok(p) = permits.clone().try_acquire_owned() {
                        slots.push(p);
                    }
                    let slots: Vec<OwnedSemaphorePermit> =
                        slots.into_iter().flat_map(split_permit).collect();
                    match consumer
                        .batch()
                        .max_messages(slots.len())
                        .expires(PULL_EXPIRES)
                        .messages()
                        .await
                    {
                        Ok(batch) => pulls.push(Pull { batch, slots }),
                        Err(e) => {
                            tracing::warn!(group = %rt.name, error = %e, retry_in = ?backoff, "pull failed; rebinding");
                            rt.set_bound(false);
                            drop(slots);
                            finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                            sleep_or_cancel(backoff, &shutdown).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue 'bind;
                        }
                    }
                }
                (i, item) = next_from(&mut pulls), if !pulls.is_empty() => match item {
                    Some(Ok(msg)) => dispatch(&rt, &mut pulls[i], msg, &tracker, &abort, &shutdown).await,
                    Some(Err(e)) => {
                        tracing::warn!(group = %rt.name, error = %e, "pull ended with an error; rebinding");
                        rt.set_bound(false);
                        pulls.swap_remove(i);
                        finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'bind;
                    }
                    None => {
                        pulls.swap_remove(i);
                        backoff = Duration::from_millis(250);
                        if floor_read.elapsed() >= ACK_FLOOR_EVERY {
                            floor_read = tokio::time::Instant::now();
                            tokio::spawn(read_ack_floor(rt.clone(), consumer.clone()));
                        }
                    }
                },
            }
        }
    }
    finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
    rt.set_bound(false);
}

/// Reads the consumer's ack floor into the group's runtime.
async fn read_ack_floor<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    mut consumer: PullConsumer,
) {
    match consumer.info().await {
        Ok(info) => rt.note_ack_floor(info.ack_floor.stream_sequence),
        Err(e) => {
            tracing::debug!(group = %rt.name, error = %e, "cannot read the consumer's ack floor")
        }
    }
}

/// How long a group whose acks the server refuses waits before it pulls again (permissions can
/// change with a server config reload).
const ACKS_REFUSED_PAUSE: Duration = Duration::from_secs(30);

/// Waits for a permission violation on one of the group's ack subjects (`prefix...`); never
/// returns for a connection that does not report violations.
async fn refused_ack(
    violations: &mut Option<tokio::sync::broadcast::Receiver<Arc<str>>>,
    prefix: &str,
) -> Arc<str> {
    let Some(rx) = violations else {
        return futures::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(subject) if subject.starts_with(prefix) => return subject,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return futures::future::pending().await;
            }
        }
    }
}

/// Splits a permit for several slots into one permit per slot.
fn split_permit(mut permit: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
    let mut out = Vec::with_capacity(permit.num_permits());
    while permit.num_permits() > 1 {
        if let Some(one) = permit.split(1) {
            out.push(one);
        }
    }
    out.push(permit);
    out
}

/// Starts the handler for `msg` in one of the pull's slots, or hands it back when the worker is
/// shutting down (or the server sent more than was asked for).
async fn dispatch<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    pull: &mut Pull,
    msg: jetstream::Message,
    tracker: &TaskTracker,
    abort: &CancellationToken,
    shutdown: &CancellationToken,
) {
    match pull.slots.pop() {
        Some(permit) if !shutdown.is_cancelled() => {
            // Run the delivery here until it first waits: a handler that finishes at once
            // costs no task. One that waits continues as a task of its own.
            let mut delivery = Box::pin(tracker.track_future(guarded(
                rt.name.clone(),
                deliver(rt.clone(), msg, permit, abort.clone()),
            )));
            if futures::poll!(delivery.as_mut()).is_pending() {
                tokio::spawn(delivery);
            }
        }
        _ => {
            if let Some(reply) = msg.message.reply.clone() {
                if let Ok(info) = msg.info() {
                    let before = if info.delivered > 1 {
                        rt.handbacks.count(&rt.name, info.stream_sequence).await
                    } else {
                        0
                    };
                    rt.handbacks
                        .record(&rt.name, info.stream_sequence, before)
                        .await;
                }
                send_ack(&rt.conn, reply, Bytes::from_static(b"-NAK")).await;
            }
            if shutdown.is_cancelled() {
                tracing::debug!(group = %rt.name, "shutdown: pulled event handed back");
            }
        }
    }
}

/// Runs one delivery, containing a panic of the runtime's own code to that delivery: it is
/// logged, and the event, never settled, is redelivered after its ack wait. (Handler panics are
/// caught closer to the handler and become failed attempts.)
async fn guarded(group: String, delivery: impl std::future::Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(delivery).catch_unwind().await {
        tracing::error!(%group, panic = %panic_message(&panic), "delivery panicked; the event will be redelivered");
    }
}

/// Reads every outstanding pull to its end, dispatching (or, on shutdown, handing back) what
/// still arrives.
async fn finish_pulls<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    pulls: &mut Vec<Pull>,
    tracker: &TaskTracker,
    abort: &CancellationToken,
    shutdown: &CancellationToken,
) {
    while !pulls.is_empty() {
        match next_from(pulls).await {
            (i, Some(Ok(msg))) => dispatch(rt, &mut pulls[i], msg, tracker, abort, shutdown).await,
            (i, Some(Err(_)) | None) => {
                pulls.swap_remove(i);
            }
        }
    }
}

async fn sleep_or_cancel(d: Duration, token: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = token.cancelled() => {}
    }
}

async fn send_ack(conn: &Connection, reply: async_nats::Subject, body: Bytes) {
    if let Err(e) = conn.client().publish(reply, body).await {
        tracing::error!(error = %e, "could not send ack");
    }
}

/// What becomes of one delivery.
enum Outcome {
    Ack,
    Retry {
        delay: Duration,
        error: String,
    },
    DeadLetter {
        kind: DeadLetterKind,
        error: String,
    },
    Cancelled {
        running: bool,
    },
    HandBack,
    /// A type this process does not handle: handed back after `delay` for another version of
    /// the group.
    Elsewhere {
        delay: Duration,
    },
    /// A replayed dead letter of another group: acked, not run.
    NotForThisGroup,
}

impl Outcome {
    fn dead(kind: DeadLetterKind, error: impl Into<String>) -> Self {
        Self::DeadLetter {
            kind,
            error: error.into(),
        }
    }
}

/// How one handler run ended.
enum Run {
    Done(HandlerResult),
    Panicked(String),
    TimedOut,
    Cancelled,
    Aborted,
}

/// What is known about a delivery as it is handled, for metrics and history.
#[derive(Default)]
struct Tracking<'a> {
    metrics: Option<&'a RouteMetrics>,
    tenant: Option<TenantId>,
    record: Option<Arc<Mutex<RunRecord>>>,
    started: Option<tokio::time::Instant>,
    /// Earlier deliveries of this event that the group handed back.
    handed_back: u32,
}

async fn deliver<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    msg: jetstream::Message,
    _permit: OwnedSemaphorePermit,
    abort: CancellationToken,
) {
    let Some(reply) = msg.message.reply.clone() else {
        tracing::warn!(group = %rt.name, subject = %msg.message.subject, "message without reply subject ignored");
        return;
    };
    let (stream_sequence, delivered) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.delivered.max(1)),
        Err(e) => {
            tracing::warn!(group = %rt.name, error = %e, "message without JetStream metadata ignored");
            return;
        }
    };
    // Deliveries this group handed back without a result do not count as attempts.
    let handed_back = if delivered > 1 {
        rt.handbacks.count(&rt.name, stream_sequence).await
    } else {
        0
    };
    let attempt = u32::try_from(delivered)
        .unwrap_or(u32::MAX)
        .saturating_sub(handed_back)
        .max(1);
    let span = tracing::info_span!(
        "conveyor.delivery",
        group = %rt.name,
        event_type = Empty,
        tenant = Empty,
        event_id = Empty,
        attempt,
        stream_sequence,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
        outcome = Empty,
    );
    // The envelope is parsed before the span is entered: an OpenTelemetry parent can only be
    // set on a span that has not started.
    let parsed = RawEnvelope::parse(&msg.message.payload);
    let trace = start_trace(
        &span,
        parsed
            .as_ref()
            .ok()
            .and_then(|env| env.traceparent.as_deref()),
    );
    let mut tracking = Tracking {
        handed_back,
        ..Tracking::default()
    };
    let outcome = handle(
        &rt,
        &msg,
        parsed,
        trace,
        &reply,
        stream_sequence,
        attempt,
        &abort,
        &mut tracking,
    )
    .instrument(span.clone())
    .await;
    settle(
        &rt,
        &msg,
        reply,
        stream_sequence,
        attempt,
        (outcome, &abort),
        tracking,
    )
    .instrument(span)
    .await;
}

/// The trace context of a handler run: a child of the event's `traceparent`, or a new trace.
/// Records the span fields.
fn start_trace(span: &tracing::Span, carried: Option<&str>) -> TraceParent {
    let parent = carried.and_then(|tp| tp.parse::<TraceParent>().ok());
    #[allow(unused_mut)]
    let mut trace = parent.map_or_else(TraceParent::generate, |p| p.child());
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if let Some(p) = parent {
            let _ = span.set_parent(p.to_otel_context());
        }
        if let Some(tp) = span.in_scope(TraceParent::from_current_span) {
            trace = tp;
        }
    }
    if !span.is_disabled() {
        span.record(
            "trace_id",
            tracing::field::display(format_args!("{:032x}", trace.trace_id())),
        );
        span.record(
            "span_id",
            tracing::field::display(format_args!("{:016x}", trace.span_id())),
        );
        if let Some(p) = parent {
            span.record(
                "parent_span_id",
                tracing::field::display(format_args!("{:016x}", p.span_id())),
            );
        }
    }
    trace
}

#[allow(clippy::too_many_arguments)]
async fn handle<'a, S: Clone + Send + Sync + 'static>(
    rt: &'a GroupRuntime<S>,
    msg: &jetstream::Message,
    parsed: Result<RawEnvelope<'_>, crate::envelope::DecodeError>,
    trace: TraceParent,
    reply: &async_nats::Subject,
    stream_sequence: u64,
    attempt: u32,
    abort: &CancellationToken,
    tracking: &mut Tracking<'a>,
) -> Outcome {
    let span = tracing::Span::current();
    if let Some(group) = msg
        .message
        .headers
        .as_ref()
        .and_then(|h| h.get(crate::dlq::REPLAY_FOR_HEADER))
        && group.as_str() != rt.name
    {
        return Outcome::NotForThisGroup;
    }
    let subject = msg.message.subject.as_str();
    let Some((subject_tenant, subject_type)) = split_event_subject(subject) else {
        return Outcome::dead(
            DeadLetterKind::Decode,
            format!("subject {subject:?} is not events.<tenant>.<type>"),
        );
    };
    let env = match parsed {
        Ok(env) => env,
        Err(e) => return Outcome::dead(DeadLetterKind::Decode, e.to_string()),
    };
    span.record("event_type", &*env.event_type);
    span.record("event_id", &*env.id);
    span.record("tenant", &*env.tenantid);
    let tenant = match env.tenant() {
        Ok(t) => t,
        Err(e) => return Outcome::dead(DeadLetterKind::TenantMismatch, e.to_string()),
    };
    if tenant.as_str() != subject_tenant {
        return Outcome::dead(
            DeadLetterKind::TenantMismatch,
            format!("tenantid {tenant:?} differs from the subject's tenant {subject_tenant:?}"),
        );
    }
    if rt.metrics.is_some() {
        // Only the tenant allow-list of the metrics needs it.
        tracking.tenant = Some(tenant.clone());
    }
    if env.event_type != subject_type {
        tracking.metrics = rt.routes.get(subject_type).and_then(|r| r.metrics.as_ref());
        return Outcome::dead(
            DeadLetterKind::TypeMismatch,
            format!(
                "envelope type {:?} differs from the subject's type {subject_type:?}",
                env.event_type
            ),
        );
    }
    let Some(route) = rt.routes.get(subject_type) else {
        // The consumer's filter holds a type this process has no handler for: another version
        // of the group (a rolling deploy) handles it. Handed back for a process that can, a
        // bounded number of times.
        let delivered = attempt.saturating_add(tracking.handed_back);
        let mut known: Vec<&str> = rt.routes.keys().map(String::as_str).collect();
        known.sort_unstable();
        if delivered <= UNKNOWN_TYPE_HANDBACKS {
            tracing::info!(event_type = subject_type, handles = ?known, "type handled by another version of the group; handed back");
            return Outcome::Elsewhere {
                delay: rt.config.unknown_type_grace / UNKNOWN_TYPE_HANDBACKS,
            };
        }
        return Outcome::dead(
            DeadLetterKind::UnknownType,
            format!(
                "group {:?} has no handler for type {subject_type:?} (it handles {known:?}), and no process of the group handled it in {delivered} deliveries",
                rt.name
            ),
        );
    };
    tracking.metrics = route.metrics.as_ref();
    let policy = &route.options.retry;
    if attempt > policy.max_attempts {
        return Outcome::dead(
            DeadLetterKind::MaxDeliveries,
            format!(
                "delivery {attempt} exceeds the handler's {} attempts: an earlier attempt ended without a result",
                policy.max_attempts
            ),
        );
    }
    if rt.history.is_some() {
        let mut record = RunRecord {
            group: rt.name.clone(),
            tenant: tenant.as_str().to_owned(),
            event_id: env.id.to_string(),
            event_type: env.event_type.to_string(),
            attempt,
            max_attempts: policy.max_attempts,
            state: RunState::Queued,
            queued_at: env.time,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            retry_at: None,
            error: None,
            progress: None,
            expected_ms: route
                .options
                .expected_duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            sla_breached: false,
            trace_id: Some(trace.trace_id_hex()),
            transitions: vec![Transition {
                state: RunState::Queued,
                at: env.time.unwrap_or_else(Utc::now),
                error: None,
            }],
        };
        // The `running` state is written once the handler first waits (see `run_handler`): a
        // handler that finishes at once gets one write, with every transition in it.
        if !rt.cancels.is_cancelled(&rt.name, tenant.as_str(), &env.id) {
            record.started_at = Some(Utc::now());
            record.transition(RunState::Running, None);
        }
        tracking.record = Some(Arc::new(Mutex::new(record)));
    }
    let cancellations = rt.cancels.subscribe();
    if rt.cancels.is_cancelled(&rt.name, tenant.as_str(), &env.id) {
        return Outcome::Cancelled { running: false };
    }
    let delivery = Arc::new(Delivery {
        group: rt.name.clone(),
        tenant,
        event_id: env.id.to_string(),
        event_type: env.event_type.to_string(),
        source: env.source.to_string(),
        time: env.time,
        attempt,
        max_attempts: policy.max_attempts,
        correlation_id: env.correlationid.as_deref().unwrap_or(&env.id).to_owned(),
        trace,
        stream_sequence,
    });
    let cancel = CancellationToken::new();
    let hooks = Arc::new(RunHooks {
        cancel: cancel.clone(),
        progress: Box::new(LiveProgress {
            conn: rt.conn.clone(),
            reply: reply.clone(),
            delivery: delivery.clone(),
            history: rt.history.clone(),
            record: tracking.record.clone(),
        }),
    });
    let ctx = Context::new(
        delivery.clone(),
        FollowUps::Nats(rt.publisher.clone()),
        hooks,
        rt.state.clone(),
    );
    // Decoding runs the payload's `Deserialize` and creating the future runs the handler's code
    // up to its first `.await` (for a handler that is not an `async fn`): a panic in either is
    // caught here and re-raised inside the future, so it is a failed attempt like any handler
    // panic and never reaches the pull loop that polls this delivery.
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
        route.handler.call(env.data, &env.event_type, ctx)
    }));
    let future = match call {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return Outcome::dead(DeadLetterKind::Decode, e.to_string()),
        Err(panic) => Box::pin(resume_panic(panic)),
    };

    tracking.started = Some(tokio::time::Instant::now());
    let run = run_handler(
        rt,
        reply,
        crate::trace::in_context(trace, future),
        route,
        &delivery,
        (&cancel, cancellations),
        abort,
        tracking,
    )
    .await;
    if let (Some(m), Some(started)) = (tracking.metrics, tracking.started) {
        m.duration.observe(started.elapsed());
    }
    if cancel.is_cancelled() && !matches!(run, Run::Aborted) {
        return Outcome::Cancelled { running: true };
    }
    let (kind, retry, error) = match run {
        Run::Done(Ok(())) => return Outcome::Ack,
        Run::Aborted => return Outcome::HandBack,
        Run::Cancelled => return Outcome::Cancelled { running: true },
        Run::Done(Err(e)) => (DeadLetterKind::Handler, e.retry(), e.to_string()),
        Run::Panicked(message) => (
            DeadLetterKind::Panic,
            Retry::Backoff,
            format!("handler panicked: {message}"),
        ),
        Run::TimedOut => (
            DeadLetterKind::Timeout,
            Retry::Backoff,
            format!("handler exceeded its {:?} timeout", route.options.timeout),
        ),
    };
    match retry {
        Retry::Never => Outcome::DeadLetter { kind, error },
        _ if attempt >= policy.max_attempts => Outcome::DeadLetter { kind, error },
        Retry::After(delay) => Outcome::Retry {
            delay: policy.bounded(delay),
            error,
        },
        Retry::Backoff => Outcome::Retry {
            delay: policy.delay_after(attempt),
            error,
        },
    }
}

/// Sends a handler's progress reports: on its progress subject, into its run record, and as a
/// heartbeat of its delivery.
struct LiveProgress {
    conn: Connection,
    reply: async_nats::Subject,
    delivery: Arc<Delivery>,
    history: Option<HistoryWriter>,
    record: Option<Arc<Mutex<RunRecord>>>,
}

impl ProgressSink for LiveProgress {
    fn report(&self, percent: u8, message: String) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let d = &self.delivery;
            let at = Utc::now();
            send_ack(&self.conn, self.reply.clone(), Bytes::from_static(b"+WPI")).await;
            let update = ProgressUpdate {
                event_id: d.event_id.clone(),
                event_type: d.event_type.clone(),
                tenant: d.tenant.as_str().to_owned(),
                group: d.group.clone(),
                attempt: d.attempt,
                percent,
                message: message.clone(),
                at,
            };
            match serde_json::to_vec(&update) {
                Ok(body) => {
                    let subject = progress_subject(d.tenant.as_str(), &d.group, &d.event_id);
                    if let Err(e) = self.conn.client().publish(subject, body.into()).await {
                        tracing::warn!(error = %e, "could not publish progress");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode progress"),
            }
            if let (Some(history), Some(record)) = (&self.history, &self.record) {
                let snapshot = record.lock().ok().map(|mut r| {
                    r.progress = Some(ProgressReport {
                        percent,
                        message,
                        at,
                    });
                    r.clone()
                });
                if let Some(snapshot) = snapshot {
                    history.put_nowait(&snapshot).await;
                }
            }
        })
    }
}

/// Runs the handler future with its timeout, catching panics, sending in-progress heartbeats
/// while it runs, watching its expected duration, stopping it after its cancel grace once it
/// is cancelled, and giving up when the worker aborts. A handler that completes on its first
/// poll costs no timer at all; otherwise one timer serves heartbeats, the expected duration
/// and the timeout.
#[allow(clippy::too_many_arguments)]
async fn run_handler<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    reply: &async_nats::Subject,
    future: impl std::future::Future<Output = HandlerResult>,
    route: &Route<S>,
    delivery: &Delivery,
    (cancel, mut cancellations): (&CancellationToken, tokio::sync::watch::Receiver<u64>),
    abort: &CancellationToken,
    tracking: &Tracking<'_>,
) -> Run {
    let finished = |r: Result<HandlerResult, Box<dyn std::any::Any + Send>>| match r {
        Ok(r) => Run::Done(r),
        Err(panic) => Run::Panicked(panic_message(&panic)),
    };
    let start = tokio::time::Instant::now();
    let guarded = AssertUnwindSafe(future).catch_unwind();
    tokio::pin!(guarded);
    if let std::task::Poll::Ready(r) = futures::poll!(guarded.as_mut()) {
        return finished(r);
    }
    // In flight: counted for handlers that wait (one that finished on its first poll was in
    // flight for no measurable time).
    let _in_flight = rt.metrics.as_ref().map(|m| InFlight::new(&m.in_flight));
    if let (Some(history), Some(record)) = (&rt.history, &tracking.record) {
        let snapshot = record.lock().ok().map(|r| r.clone());
        if let Some(snapshot) = snapshot {
            history.put_nowait(&snapshot).await;
        }
    }
    let timeout = route.options.timeout;
    let deadline = start + timeout;
    let mut sla_at = route.options.expected_duration.map(|d| start + d);
    let every = rt.heartbeat_every();
    let next_wake = |now: tokio::time::Instant, sla_at: Option<tokio::time::Instant>| {
        let mut at = (now + every).min(deadline);
        if let Some(sla) = sla_at {
            at = at.min(sla);
        }
        at
    };
    let timer = tokio::time::sleep_until(next_wake(start, sla_at));
    tokio::pin!(timer);
    let mut watching = true;
    loop {
        tokio::select! {
            biased;
            r = guarded.as_mut() => return finished(r),
            () = abort.cancelled() => return Run::Aborted,
            changed = cancellations.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if rt.cancels.is_cancelled(&delivery.group, delivery.tenant.as_str(), &delivery.event_id) {
                    tracing::info!("cancellation received");
                    cancel.cancel();
                }
            }
            () = cancel.cancelled() => {
                let grace = route.options.cancel_grace;
                return match tokio::time::timeout(grace, guarded.as_mut()).await {
                    Ok(_) => Run::Cancelled,
                    Err(_) => {
                        tracing::info!(?grace, "cancelled handler did not return in its grace; stopped");
                        Run::Cancelled
                    }
                };
            }
            () = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Run::TimedOut;
                }
                if sla_at.is_some_and(|at| now >= at) {
                    sla_at = None;
                    sla_breached(rt, route, delivery, now - start, tracking).await;
                } else {
                    send_ack(&rt.conn, reply.clone(), Bytes::from_static(b"+WPI")).await;
                }
                timer.as_mut().reset(next_wake(now, sla_at));
            }
        }
    }
}

/// A run went over its expected duration: log, count, mark the record, publish if configured.
async fn sla_breached<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    route: &Route<S>,
    delivery: &Delivery,
    elapsed: Duration,
    tracking: &Tracking<'_>,
) {
    let expected = route.options.expected_duration.unwrap_or_default();
    tracing::warn!(?expected, ?elapsed, "run over its expected duration");
    if let Some(m) = tracking.metrics {
        m.sla_breaches.inc();
    }
    if let (Some(history), Some(record)) = (&rt.history, &tracking.record) {
        let snapshot = record.lock().ok().map(|mut r| {
            r.sla_breached = true;
            r.clone()
        });
        if let Some(snapshot) = snapshot {
            history.put_nowait(&snapshot).await;
        }
    }
    if route.options.sla_event {
        let event = SlaBreached {
            group: delivery.group.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt: delivery.attempt,
            expected_ms: u64::try_from(expected.as_millis()).unwrap_or(u64::MAX),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            detected_at: Utc::now(),
        };
        let options = crate::EventOptions {
            correlation_id: Some(delivery.correlation_id.clone()),
            causation_id: Some(delivery.event_id.clone()),
            traceparent: Some(delivery.trace.to_string()),
            ..crate::EventOptions::default()
        };
        if let Err(e) = rt
            .publisher
            .publish_with(delivery.tenant.clone(), &event, options)
            .await
        {
            tracing::warn!(error = %e, "could not publish sla.breached");
        }
    }
}

/// Counts a running handler in the in-flight gauge until dropped.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A handler future that re-raises a panic caught while the handler was being called.
async fn resume_panic(panic: Box<dyn std::any::Any + Send>) -> HandlerResult {
    std::panic::resume_unwind(panic)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

async fn settle<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
    reply: async_nats::Subject,
    stream_sequence: u64,
    attempt: u32,
    (outcome, abort): (Outcome, &CancellationToken),
    tracking: Tracking<'_>,
) {
    let beat = Heartbeat {
        conn: &rt.conn,
        reply: &reply,
        every: rt.heartbeat_every(),
    };
    let metrics = tracking.metrics.or(rt.unrouted.as_ref());
    let tenant = tracking.tenant.as_ref().map(TenantId::as_str);
    if let (Some(history), Some(record)) = (&rt.history, &tracking.record) {
        let snapshot = record.lock().ok().map(|mut r| {
            let now = Utc::now();
            if let Some(started) = tracking.started {
                r.duration_ms =
                    Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            r.finished_at = Some(now);
            match &outcome {
                Outcome::Ack => r.transition(RunState::Succeeded, None),
                Outcome::Retry { delay, error } => {
                    r.retry_at = chrono::Duration::from_std(*delay)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d));
                    r.transition(RunState::Retrying, Some(error.clone()));
                }
                Outcome::DeadLetter { kind, error } => {
                    r.transition(RunState::DeadLettered, Some(format!("{kind}: {error}")));
                }
                Outcome::Cancelled { .. } => r.transition(RunState::Cancelled, None),
                Outcome::HandBack => r.transition(RunState::HandedBack, None),
                // Decided before a run record exists.
                Outcome::NotForThisGroup | Outcome::Elsewhere { .. } => {}
            }
            r.clone()
        });
        if let Some(snapshot) = snapshot {
            beat.during(history.put(&snapshot)).await;
        }
    }
    let counted = match &outcome {
        Outcome::Ack => TelemetryOutcome::Ok,
        Outcome::Retry { .. } => TelemetryOutcome::Retry,
        Outcome::DeadLetter { .. } => TelemetryOutcome::DeadLetter,
        Outcome::Cancelled { .. } => TelemetryOutcome::Cancelled,
        Outcome::HandBack => TelemetryOutcome::HandedBack,
        Outcome::NotForThisGroup => TelemetryOutcome::Skipped,
        Outcome::Elsewhere { .. } => TelemetryOutcome::HandedBack,
    };
    let dead_kind = match &outcome {
        Outcome::DeadLetter { kind, .. } => Some(*kind),
        _ => None,
    };
    let finished = settle_delivery(
        rt,
        msg,
        (&beat, abort),
        (stream_sequence, tracking.handed_back),
        attempt,
        outcome,
    )
    .await;
    if finished && tracking.handed_back > 0 {
        rt.handbacks.forget(&rt.name, stream_sequence).await;
    }
    if let Some(m) = metrics {
        m.settled(counted, tenant);
    }
    if let (Some(kind), Some(gm), true) = (dead_kind, &rt.metrics, finished) {
        gm.dead_letter(kind.as_str());
    }
    if finished
        && let Some(key) = msg
            .message
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::runs::RUN_KEY_HEADER))
    {
        Box::pin(crate::runs::finish_run(
            &rt.conn,
            key.as_str(),
            &msg.message.subject,
            &msg.message.payload,
        ))
        .await;
    }
}

/// Acks, Naks or dead-letters the delivery. Returns true when the event is finished: acked, or
/// stored as a dead letter.
async fn settle_delivery<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
    (beat, abort): (&Heartbeat<'_>, &CancellationToken),
    (stream_sequence, handed_back): (u64, u32),
    attempt: u32,
    outcome: Outcome,
) -> bool {
    let span = tracing::Span::current();
    let reply = beat.reply.clone();
    match outcome {
        Outcome::Ack => {
            span.record("outcome", "ack");
            tracing::debug!("handled");
            send_ack(&rt.conn, reply, Bytes::from_static(b"+ACK")).await;
            true
        }
        Outcome::Elsewhere { delay } => {
            span.record("outcome", "handed-back");
            rt.handbacks
                .record(&rt.name, stream_sequence, handed_back)
                .await;
            let body = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
            send_ack(&rt.conn, reply, body.into()).await;
            false
        }
        Outcome::NotForThisGroup => {
            span.record("outcome", "skipped");
            tracing::debug!("replay for another group; skipped");
            send_ack(&rt.conn, reply, Bytes::from_static(b"+ACK")).await;
            true
        }
        Outcome::Cancelled { running } => {
            span.record("outcome", "cancelled");
            if running {
                tracing::info!("cancelled while running");
            } else {
                tracing::info!("cancelled before it started; skipped");
            }
            send_ack(&rt.conn, reply, Bytes::from_static(b"+ACK")).await;
            true
        }
        Outcome::Retry { delay, error } => {
            span.record("outcome", "retry");
            tracing::warn!(%error, retry_in = ?delay, "attempt failed; will retry");
            let body = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
            send_ack(&rt.conn, reply, body.into()).await;
            false
        }
        Outcome::HandBack => {
            span.record("outcome", "handed-back");
            tracing::info!("shutdown: event handed back");
            rt.handbacks
                .record(&rt.name, stream_sequence, handed_back)
                .await;
            send_ack(&rt.conn, reply, Bytes::from_static(b"-NAK")).await;
            false
        }
        Outcome::DeadLetter { kind, error } => {
            span.record("outcome", "dead-letter");
            let letter = DeadLetter {
                original_subject: msg.message.subject.to_string(),
                stream_sequence,
                group: rt.name.clone(),
                attempts: attempt,
                kind,
                error,
                failed_at: Utc::now(),
                body: msg.message.payload.clone(),
                body_truncated_from: None,
            };
            // Only the dead-letter publish is retried, never the handler: the delivery keeps
            // its heartbeats meanwhile, so it is not redelivered to another process. Only a
            // shutdown past its grace hands it back unsettled.
            let stored = beat
                .during(async {
                    loop {
                        match Box::pin(letter.publish(&rt.conn)).await {
                            Ok(()) => return true,
                            Err(e) => {
                                tracing::error!(error = %e, retry_in = ?DEAD_LETTER_RETRY, "could not dead-letter; retrying the dead-letter publish");
                            }
                        }
                        tokio::select! {
                            () = tokio::time::sleep(DEAD_LETTER_RETRY) => {}
                            () = abort.cancelled() => return false,
                        }
                    }
                })
                .await;
            if stored {
                tracing::error!(kind = %kind, error = %letter.error, dlq_subject = %letter.subject(), "dead-lettered");
                let body = format!("+TERM dlq:{kind}");
                send_ack(&rt.conn, reply, body.into()).await;
            } else {
                tracing::error!("shutdown: not dead-lettered yet; the event is handed back");
                rt.handbacks
                    .record(&rt.name, stream_sequence, handed_back)
                    .await;
                send_ack(&rt.conn, reply, Bytes::from_static(b"-NAK")).await;
            }
            stored
        }
    }
}

/// Sends in-progress heartbeats for a delivery while the runtime itself works on it (history
/// writes, dead-letter publishes), so its ack wait does not run out mid-settle. Never used once
/// the final ack is sent: a heartbeat after a delayed Nak would restart the ack wait and undo the
/// delay.
struct Heartbeat<'a> {
    conn: &'a Connection,
    reply: &'a async_nats::Subject,
    every: Duration,
}

impl Heartbeat<'_> {
    /// Runs `work`, heartbeating while it waits. Work that completes at once costs no timer.
    async fn during<F: std::future::Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        if let std::task::Poll::Ready(out) = futures::poll!(work.as_mut()) {
            return out;
        }
        let start = tokio::time::Instant::now() + self.every;
        let mut ticks = tokio::time::interval_at(start, self.every);
        loop {
            tokio::select! {
                biased;
                out = work.as_mut() => return out,
                _ = ticks.tick() => {
                    send_ack(self.conn, self.reply.clone(), Bytes::from_static(b"+WPI")).await;
                }
            }
        }
    }
}

//! A group's runtime: its partition loops and the handling of one delivery.

mod ack_subject;
mod acks;
pub(crate) use acks::{Acks, send_queued as send_acks};
mod admission;
mod consumer;
mod first_poll;
mod headers;
use headers::{ATTEMPTS_MADE, RATE_SLOT, REPLAY_FOR, RUN_KEY, SCHEDULER, header};
mod limits;
mod outcome;
mod pulling;
mod record;
mod run;
mod settle;
use settle::send_ack;
mod slots;

use admission::Routed;
use consumer::Known;
pub(crate) use outcome::{Attempt, Outcome, Run, decide};
pub(crate) use pulling::run_group;
use record::RunRecorder;
pub(crate) use run::panic_message;
use run::{LiveProgress, resume_panic};
#[cfg(feature = "testing")]
pub(crate) use run::{RunLimits, RunWatch, supervise};
use settle::settle;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{PullConsumer, pull},
};
use bytes::Bytes;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field::Empty};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::handback::{HANDBACK_ALLOWANCE, HandBacks};
use super::{GroupConfig, Route, StartFrom};
use crate::connection::Connection;
use crate::control::{Cancellations, ProgressUpdate, progress_subject};
use crate::dlq::{DeadLetter, DeadLetterKind};
use crate::envelope::{RawEnvelope, split_event_subject};
use crate::handler::{Context, Delivery, FollowUps, HandlerResult, ProgressSink, RunHooks};
use crate::history::{HistoryWriter, ProgressReport, RunState, Transition};
use crate::partition::{PARTITIONS, consumer_name};
use crate::publisher::Publisher;
use crate::sla::SlaBreached;
use crate::telemetry::{GroupMetrics, RouteMetrics};
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
    /// The name again, shared by every delivery's context.
    shared_name: Arc<str>,
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
    pauses: Arc<crate::pause::Pauses>,
    weights: Arc<crate::weights::Weights>,
    handbacks: Arc<HandBacks>,
    /// The group's rate limit, if it has one.
    limiter: Option<crate::rate::Limiter>,
    /// The group's concurrency limit, if it has one.
    concurrency: Option<crate::concurrency::Limiter>,
    /// The worker's queue of acks (see [`acks`]).
    acks: Arc<Acks>,
    /// One bit per partition consumer this process is bound to.
    bound: Arc<AtomicU32>,
    /// Each partition consumer's ack floor (stream sequence) last read from the server; 0 when
    /// unknown. A consumer that disappears is recreated from just above it.
    ack_floors: Vec<AtomicU64>,
}

/// The `bound` mask of a group bound to every partition.
const ALL_BOUND: u32 = if PARTITIONS >= 32 {
    u32::MAX
} else {
    (1 << PARTITIONS) - 1
};

/// How often a bound group re-reads its consumer's ack floor (when a pull ends, never per event).
const ACK_FLOOR_EVERY: Duration = Duration::from_secs(2);

/// What a group runtime shares with the worker: metrics, cancellations and hand-back counts.
pub(crate) struct Shared {
    pub(crate) metrics: Option<GroupMetrics>,
    pub(crate) cancels: Arc<Cancellations>,
    pub(crate) pauses: Arc<crate::pause::Pauses>,
    pub(crate) weights: Arc<crate::weights::Weights>,
    pub(crate) handbacks: Arc<HandBacks>,
    pub(crate) acks: Arc<Acks>,
}

impl<S> GroupRuntime<S> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True while the group is bound to every one of its partition consumers.
    pub(crate) fn bound(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let bound = self.bound.clone();
        move || bound.load(Ordering::Acquire) == ALL_BOUND
    }

    /// The group's handler slots.
    pub(crate) fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    pub(crate) fn metrics(&self) -> Option<&GroupMetrics> {
        self.metrics.as_ref()
    }

    pub(crate) fn history_writer(&self) -> Option<&HistoryWriter> {
        self.history.as_ref()
    }

    /// Records whether partition `p`'s consumer is bound (`None`: every partition).
    fn set_bound(&self, p: Option<u32>, bound: bool) {
        let bits = p.map_or(ALL_BOUND, |p| 1 << p);
        let before = if bound {
            self.bound.fetch_or(bits, Ordering::AcqRel)
        } else {
            self.bound.fetch_and(!bits, Ordering::AcqRel)
        };
        let after = if bound { before | bits } else { before & !bits };
        if after == ALL_BOUND && before != ALL_BOUND {
            tracing::info!(group = %self.name, partitions = PARTITIONS, "consumers bound");
        }
        if let Some(m) = &self.metrics {
            m.bound.set(i64::from(after == ALL_BOUND));
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
        let name_for_deliveries: Arc<str> = Arc::from(name.as_str());
        let max_deliver = routes
            .values()
            .map(|r| i64::from(r.options.retry.max_attempts.max(1)))
            .max()
            .unwrap_or(1);
        let history = config
            .history
            .then(|| HistoryWriter::new(conn.clone(), &name));
        let unrouted = shared.metrics.as_ref().map(|m| m.route("unknown"));
        let limiter = config
            .rate_limit
            .clone()
            .map(|limit| crate::rate::Limiter::new(conn.clone(), limit));
        let concurrency = config
            .concurrency_limit
            .clone()
            .map(|limit| crate::concurrency::Limiter::new(conn.clone(), limit));
        Self {
            limiter,
            concurrency,
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
            pauses: shared.pauses,
            weights: shared.weights,
            handbacks: shared.handbacks,
            acks: shared.acks,
            bound: Arc::new(AtomicU32::new(0)),
            shared_name: name_for_deliveries,
            ack_floors: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn heartbeat_every(&self) -> Duration {
        (self.config.ack_wait / 3).max(Duration::from_millis(50))
    }
}

/// One delivery as it is handled: the message and what its metadata says.
struct Incoming<'m> {
    msg: &'m jetstream::Message,
    /// Where acks, Naks and heartbeats go.
    reply: async_nats::Subject,
    stream_sequence: u64,
    /// The attempt this delivery is (hand-backs and earlier copies accounted for).
    attempt: u32,
}

/// What is known about a delivery as it is handled, for metrics and history.
#[derive(Default)]
struct Tracking<'a> {
    metrics: Option<&'a RouteMetrics>,
    tenant: Option<TenantId>,
    record: Option<Arc<RunRecorder>>,
    started: Option<tokio::time::Instant>,
    /// Earlier deliveries of this event that the group handed back.
    handed_back: u32,
    /// The run's lease on its concurrency key, released once the delivery is settled.
    lease: Option<crate::concurrency::Lease>,
}

/// What a delivery's JetStream metadata (its reply subject) says, read once as it arrives.
#[derive(Debug, Clone, Copy)]
struct Meta {
    stream_sequence: u64,
    /// The delivery count, at least 1.
    delivered: i64,
}

async fn deliver<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    (msg, meta): (jetstream::Message, Option<Meta>),
    _slot: slots::Slot,
    abort: CancellationToken,
) {
    let Some(reply) = msg.message.reply.clone() else {
        tracing::warn!(group = %rt.name, subject = %msg.message.subject, "message without reply subject ignored");
        return;
    };
    let Some(Meta {
        stream_sequence,
        delivered,
    }) = meta
    else {
        tracing::warn!(group = %rt.name, reply = %reply, "message without JetStream metadata ignored");
        return;
    };
    // Deliveries this group handed back without a result do not count as attempts.
    let handed_back = if delivered > 1 {
        // Boxed: a redelivery's lookup should not grow every delivery's future.
        Box::pin(rt.handbacks.count(&rt.name, stream_sequence)).await
    } else {
        0
    };
    // A delayed retry copy carries the attempts made before it (see `crate::delay`).
    let made_before = header(&msg, ATTEMPTS_MADE)
        .and_then(|v| v.as_str().parse::<u32>().ok())
        .unwrap_or(0);
    let attempt = u32::try_from(delivered)
        .unwrap_or(u32::MAX)
        .saturating_sub(handed_back)
        .max(1)
        .saturating_add(made_before);
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
    let incoming = Incoming {
        msg: &msg,
        reply,
        stream_sequence,
        attempt,
    };
    // Each stage is wrapped in a block that ends before its `.await`: the stage's own future,
    // moved into its `Instrumented`, would otherwise keep its room in this future next to it.
    let outcome = {
        let handling = handle(&rt, &incoming, parsed, trace, &abort, &mut tracking);
        handling.instrument(span.clone())
    }
    .await;
    let lease = tracking.lease.take();
    {
        let settling = settle(&rt, &incoming, outcome, &abort, tracking);
        settling.instrument(span.clone())
    }
    .await;
    if let Some(lease) = lease {
        Box::pin(limits::release(&rt, lease).instrument(span)).await;
    }
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

/// Handles one delivery up to its outcome: admission, limits, the run record, the run, and
/// the decision.
async fn handle<'a, S: Clone + Send + Sync + 'static>(
    rt: &'a GroupRuntime<S>,
    incoming: &Incoming<'_>,
    parsed: Result<RawEnvelope<'_>, crate::envelope::DecodeError>,
    trace: TraceParent,
    abort: &CancellationToken,
    tracking: &mut Tracking<'a>,
) -> Outcome {
    let routed = match admission::admit(rt, incoming, parsed, tracking) {
        Ok(routed) => routed,
        Err(outcome) => return outcome,
    };
    let (attempt, route) = (incoming.attempt, routed.route);
    let cancelled = || {
        rt.cancels
            .is_cancelled(&rt.name, routed.tenant.as_str(), &routed.env.id)
    };
    if (rt.limiter.is_some() || rt.concurrency.is_some()) && !cancelled() {
        let event = limits::Admitted {
            msg: incoming.msg,
            tenant: &routed.tenant,
            event_type: &routed.env.event_type,
            data: routed.env.data,
            timeout: route.options.timeout,
        };
        // Boxed: the key-value requests would otherwise grow every delivery's future, limited
        // group or not.
        if let Some(wait) = Box::pin(limits::admit(rt, &event, tracking)).await {
            return wait;
        }
    }
    let Routed { env, tenant, .. } = routed;
    let delivery = Arc::new(Delivery {
        group: rt.shared_name.clone(),
        tenant,
        event_id: env.id.to_string(),
        event_type: route.event_type,
        source: env.source.to_string(),
        time: env.time,
        attempt,
        max_attempts: route.options.retry.max_attempts,
        correlation_id: env
            .correlationid
            .as_deref()
            .filter(|c| **c != *env.id)
            .map(str::to_owned),
        trace,
        stream_sequence: incoming.stream_sequence,
    });
    let cancelled = || {
        rt.cancels
            .is_cancelled(&rt.name, delivery.tenant.as_str(), &delivery.event_id)
    };
    if let Some(history) = &rt.history {
        let recorder = RunRecorder::start(
            history.clone(),
            delivery.clone(),
            &route.options,
            !cancelled(),
        );
        tracking.record = Some(Arc::new(recorder));
    }
    let cancellations = rt.cancels.subscribe();
    if cancelled() {
        return Outcome::Cancelled { running: false };
    }
    let cancel = CancellationToken::new();
    let hooks = Arc::new(RunHooks::new(
        cancel.clone(),
        LiveProgress {
            conn: rt.conn.clone(),
            reply: incoming.reply.clone(),
            delivery: delivery.clone(),
            record: tracking.record.clone(),
        },
    ));
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
    let watch = run::DeliveryWatch::new(rt, incoming, route, &delivery, tracking);
    let run = run::supervise(
        crate::trace::in_context(trace, future),
        &run::RunLimits::of(&route.options, rt.heartbeat_every()),
        (&cancel, Some(cancellations)),
        Some(abort),
        &watch,
    )
    .await;
    drop(watch);
    if let (Some(m), Some(started)) = (tracking.metrics, tracking.started) {
        m.duration.observe(started.elapsed());
    }
    decide(
        &run,
        cancel.is_cancelled(),
        Attempt {
            number: attempt,
            policy: &route.options.retry,
            timeout: route.options.timeout,
        },
    )
}

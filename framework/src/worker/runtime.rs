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

use super::{GroupConfig, Route, StartFrom};
use crate::connection::Connection;
use crate::dlq::{DeadLetter, DeadLetterKind};
use crate::envelope::{RawEnvelope, split_event_subject};
use crate::handler::{Context, Delivery, FollowUps, HandlerResult, Retry};
use crate::publisher::Publisher;
use crate::topology::EVENTS_STREAM;

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
}

impl<S> GroupRuntime<S> {
    pub(crate) fn name(&self) -> &str {
        &self.name
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
    ) -> Self {
        let max_deliver = routes
            .values()
            .map(|r| i64::from(r.options.retry.max_attempts.max(1)))
            .max()
            .unwrap_or(1);
        Self {
            name,
            config,
            routes,
            conn,
            publisher,
            state,
            max_deliver,
        }
    }

    /// The consumer configuration of this group. `max_deliver` is the largest attempt count
    /// of its handlers; there is no `backoff` list because retry delays are Nak delays.
    fn consumer_config(&self) -> pull::Config {
        let mut filters: Vec<String> = self
            .routes
            .keys()
            .map(|t| format!("events.*.{t}"))
            .collect();
        filters.sort();
        pull::Config {
            durable_name: Some(self.name.clone()),
            name: Some(self.name.clone()),
            filter_subjects: filters,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.max_deliver,
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
            return Ok(self
                .conn
                .jetstream()
                .get_consumer_from_stream(&self.name, EVENTS_STREAM)
                .await?);
        }
        let stream = self.conn.jetstream().get_stream(EVENTS_STREAM).await?;
        let mut config = self.consumer_config();
        if let Ok(info) = stream.consumer_info(&self.name).await {
            config.deliver_policy = info.config.deliver_policy;
        }
        Ok(stream.create_consumer(config).await?)
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
pub(crate) async fn run_group<S: Clone + Send + Sync + 'static>(
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
    'bind: while !shutdown.is_cancelled() {
        let consumer = match rt.ensure_consumer().await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(group = %rt.name, error = %e, retry_in = ?backoff, "cannot bind consumer");
                sleep_or_cancel(backoff, &shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::info!(group = %rt.name, "consumer bound");
        loop {
            // The first pull needs one free slot; a second one waits until half are free.
            let wanted = if pulls.is_empty() { 1 } else { refill };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'bind,
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
                        pulls.swap_remove(i);
                        finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'bind;
                    }
                    None => {
                        pulls.swap_remove(i);
                        backoff = Duration::from_millis(250);
                    }
                },
            }
        }
    }
    finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
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
            let mut delivery =
                Box::pin(tracker.track_future(deliver(rt.clone(), msg, permit, abort.clone())));
            if futures::poll!(delivery.as_mut()).is_pending() {
                tokio::spawn(delivery);
            }
        }
        _ => {
            if let Some(reply) = msg.message.reply.clone() {
                send_ack(&rt.conn, reply, Bytes::from_static(b"-NAK")).await;
            }
            if shutdown.is_cancelled() {
                tracing::debug!(group = %rt.name, "shutdown: pulled event handed back");
            }
        }
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
    Retry { delay: Duration, error: String },
    DeadLetter { kind: DeadLetterKind, error: String },
    HandBack,
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
    Aborted,
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
    let (stream_sequence, attempt) = match msg.info() {
        Ok(info) => (
            info.stream_sequence,
            u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
        ),
        Err(e) => {
            tracing::warn!(group = %rt.name, error = %e, "message without JetStream metadata ignored");
            return;
        }
    };
    let span = tracing::info_span!(
        "conveyor.delivery",
        group = %rt.name,
        event_type = Empty,
        tenant = Empty,
        event_id = Empty,
        attempt,
        stream_sequence,
        outcome = Empty,
    );
    async move {
        let outcome = handle(&rt, &msg, &reply, stream_sequence, attempt, &abort).await;
        settle(&rt, &msg, reply, stream_sequence, attempt, outcome).await;
    }
    .instrument(span)
    .await;
}

async fn handle<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
    reply: &async_nats::Subject,
    stream_sequence: u64,
    attempt: u32,
    abort: &CancellationToken,
) -> Outcome {
    let span = tracing::Span::current();
    let subject = msg.message.subject.as_str();
    let Some((subject_tenant, subject_type)) = split_event_subject(subject) else {
        return Outcome::dead(
            DeadLetterKind::Decode,
            format!("subject {subject:?} is not events.<tenant>.<type>"),
        );
    };
    let env = match RawEnvelope::parse(&msg.message.payload) {
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
    let Some(route) = rt.routes.get(&*env.event_type) else {
        let mut known: Vec<&str> = rt.routes.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Outcome::dead(
            DeadLetterKind::UnknownType,
            format!(
                "group {:?} has no handler for type {:?} (it handles {known:?})",
                rt.name, env.event_type
            ),
        );
    };
    if env.event_type != subject_type {
        return Outcome::dead(
            DeadLetterKind::TypeMismatch,
            format!(
                "envelope type {:?} differs from the subject's type {subject_type:?}",
                env.event_type
            ),
        );
    }
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
        traceparent: env.traceparent.as_deref().map(str::to_owned),
        stream_sequence,
    });
    let ctx = Context::new(
        delivery,
        FollowUps::Nats(rt.publisher.clone()),
        rt.state.clone(),
    );
    let future = match route.handler.call(env.data, &env.event_type, ctx) {
        Ok(f) => f,
        Err(e) => return Outcome::dead(DeadLetterKind::Decode, e.to_string()),
    };

    let run = run_handler(rt, reply, future, route.options.timeout, abort).await;
    let (kind, retry, error) = match run {
        Run::Done(Ok(())) => return Outcome::Ack,
        Run::Aborted => return Outcome::HandBack,
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
        Retry::After(delay) => Outcome::Retry { delay, error },
        Retry::Backoff => Outcome::Retry {
            delay: policy.delay_after(attempt),
            error,
        },
    }
}

/// Runs the handler future with its timeout, catching panics, sending in-progress heartbeats
/// while it runs, and giving up when the worker aborts. A handler that completes on its first
/// poll costs no timer at all; otherwise one timer serves both heartbeats and the timeout.
async fn run_handler<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    reply: &async_nats::Subject,
    future: futures::future::BoxFuture<'static, HandlerResult>,
    timeout: Duration,
    abort: &CancellationToken,
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
    let deadline = start + timeout;
    let every = rt.heartbeat_every();
    let timer = tokio::time::sleep_until((start + every).min(deadline));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            biased;
            r = guarded.as_mut() => return finished(r),
            () = abort.cancelled() => return Run::Aborted,
            () = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Run::TimedOut;
                }
                send_ack(&rt.conn, reply.clone(), Bytes::from_static(b"+WPI")).await;
                timer.as_mut().reset((now + every).min(deadline));
            }
        }
    }
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
    outcome: Outcome,
) {
    let finished = settle_delivery(rt, msg, reply, stream_sequence, attempt, outcome).await;
    if finished
        && let Some(key) = msg
            .message
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::runs::RUN_KEY_HEADER))
    {
        Box::pin(crate::runs::finish_run(&rt.conn, key.as_str())).await;
    }
}

/// Acks, Naks or dead-letters the delivery. Returns true when the event is finished: acked, or
/// stored as a dead letter.
async fn settle_delivery<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
    reply: async_nats::Subject,
    stream_sequence: u64,
    attempt: u32,
    outcome: Outcome,
) -> bool {
    let span = tracing::Span::current();
    match outcome {
        Outcome::Ack => {
            span.record("outcome", "ack");
            tracing::debug!("handled");
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
            };
            match Box::pin(letter.publish(&rt.conn)).await {
                Ok(()) => {
                    tracing::error!(kind = %kind, error = %letter.error, dlq_subject = %letter.subject(), "dead-lettered");
                    let body = format!("+TERM dlq:{kind}");
                    send_ack(&rt.conn, reply, body.into()).await;
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not dead-letter; the event will be redelivered");
                    let body = format!("-NAK {{\"delay\":{}}}", DEAD_LETTER_RETRY.as_nanos());
                    send_ack(&rt.conn, reply, body.into()).await;
                    false
                }
            }
        }
    }
}

//! [`TestDelivery`]: one handler run in-process, through the worker's run and decision.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::HandlerError;
use crate::dlq::DeadLetterKind;
use crate::envelope::{self, EventOptions, RawEnvelope};
use crate::event::Event;
use crate::handler::{
    Context, Delivery, FollowUps, Handler, HandlerOptions, HandlerResult, ProgressSink,
    RecordedEvent, RunHooks,
};
use crate::tenant::TenantId;
use crate::trace::TraceParent;
use crate::worker::runtime::{Attempt, Outcome, Run, RunLimits, RunWatch, decide, supervise};

/// One handler run by [`TestDelivery::run`].
#[derive(Debug)]
pub struct HandlerRun {
    /// What the handler returned.
    pub result: HandlerResult,
    /// The events it published, in order.
    pub published: Vec<RecordedEvent>,
    /// The progress it reported (percent, message), in order.
    pub progress: Vec<(u8, String)>,
    /// What the worker would do with the event after this run.
    pub outcome: RunOutcome,
}

/// What the worker does with an event after a handler run (see the README's ack protocol).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// Handled: acked.
    Acked,
    /// Retried after `delay` (a delayed Nak, or a delayed copy for a long delay).
    Retried {
        /// How long the event waits.
        delay: Duration,
        /// The error of this attempt.
        error: String,
    },
    /// Copied to the dead letters.
    DeadLettered {
        /// Why.
        kind: DeadLetterKind,
        /// The error.
        error: String,
    },
    /// Cancelled before it started or while it ran.
    Cancelled,
}

impl RunOutcome {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ack => Self::Acked,
            Outcome::Retry { delay, error } => Self::Retried { delay, error },
            Outcome::DeadLetter { kind, error } => Self::DeadLettered { kind, error },
            // A test run is never aborted, parked, limited or routed elsewhere: those outcomes
            // are decided before or around a run, not from it.
            _ => Self::Cancelled,
        }
    }
}

/// A test run's [`RunWatch`]: nothing to heartbeat, nothing to record.
struct Unwatched;

impl RunWatch for Unwatched {
    fn waiting(&self) {}
    fn heartbeat(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn over_expected(&self, _: Duration) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// Records progress reports of a test run.
struct RecordProgress(Arc<Mutex<Vec<(u8, String)>>>);

impl ProgressSink for RecordProgress {
    fn report(&self, percent: u8, message: String) -> futures::future::BoxFuture<'_, ()> {
        if let Ok(mut log) = self.0.lock() {
            log.push((percent, message));
        }
        Box::pin(async {})
    }
}

/// A fake delivery of one event to a handler, for unit tests.
#[derive(Debug, Clone)]
pub struct TestDelivery<E> {
    tenant: TenantId,
    event: E,
    attempt: u32,
    max_attempts: u32,
    options: EventOptions,
    group: String,
    cancel_after: Option<Duration>,
    handler_options: HandlerOptions,
}

impl<E: Event> TestDelivery<E> {
    /// A first attempt (of 5) at `event` for `tenant`.
    pub fn new(tenant: TenantId, event: E) -> Self {
        Self {
            tenant,
            event,
            attempt: 1,
            max_attempts: 5,
            options: EventOptions::default(),
            group: "test".into(),
            cancel_after: None,
            handler_options: HandlerOptions::default(),
        }
    }

    /// Sets the attempt number and the attempts allowed.
    pub fn attempt(mut self, attempt: u32, max_attempts: u32) -> Self {
        self.attempt = attempt;
        self.max_attempts = max_attempts;
        self
    }

    /// Sets envelope attributes (id, correlation id, ...).
    pub fn options(mut self, options: EventOptions) -> Self {
        self.options = options;
        self
    }

    /// Cancels the run `after` this long (zero: cancelled before it starts), as
    /// `conveyor cancel` would.
    pub fn cancel_after(mut self, after: Duration) -> Self {
        self.cancel_after = Some(after);
        self
    }

    /// Sets the handler's options (timeout, retry policy, cancel grace), as given to
    /// `Group::handle_with`; the attempts allowed become the policy's.
    pub fn handler_options(mut self, options: HandlerOptions) -> Self {
        self.max_attempts = options.retry.max_attempts;
        self.handler_options = options;
        self
    }

    /// Sets the group name the context reports.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Round-trips the event through the wire codec and runs `handler` on it as the worker
    /// would (its timeout, panics caught, cancellation), and decides the outcome. Panics
    /// (failing the test) if the event does not survive the round trip.
    pub async fn run<S, H: Handler<E, S>>(self, handler: H, state: S) -> HandlerRun {
        let id = self
            .options
            .id
            .clone()
            .unwrap_or_else(envelope::new_event_id);
        let time = self.options.time.unwrap_or_else(chrono::Utc::now);
        let body = match envelope::encode(
            &envelope::Attributes {
                id: &id,
                source: "test",
                event_type: E::TYPE,
                time: &time,
                tenant: &self.tenant,
                traceparent: self.options.traceparent.as_deref(),
                correlation_id: self.options.correlation_id.as_deref(),
                causation_id: self.options.causation_id.as_deref(),
                data_len: 0,
            },
            &self.event,
        ) {
            Ok(b) => b,
            Err(e) => panic!("the {} event does not encode: {e}", E::TYPE),
        };
        let raw = match RawEnvelope::parse(&body) {
            Ok(r) => r,
            Err(e) => panic!("the {} envelope does not decode: {e}", E::TYPE),
        };
        let event: E = match raw.decode_data() {
            Ok(e) => e,
            Err(e) => panic!(
                "the {} event does not survive its JSON round trip: {e}",
                E::TYPE
            ),
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let delivery = Arc::new(Delivery {
            group: self.group.into(),
            tenant: self.tenant,
            correlation_id: self.options.correlation_id.filter(|c| *c != id),
            event_id: id,
            event_type: E::TYPE,
            source: "test".into(),
            time: Some(time),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            trace: self
                .options
                .traceparent
                .as_deref()
                .and_then(|tp| tp.parse::<TraceParent>().ok())
                .map_or_else(TraceParent::generate, |tp| tp.child()),
            stream_sequence: 1,
        });
        let progress = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let hooks = Arc::new(RunHooks::new(
            cancel.clone(),
            RecordProgress(progress.clone()),
        ));
        let ctx = Context::new(delivery, FollowUps::Recorder(log.clone()), hooks, state);
        // As the worker calls it: a panic before the first `.await` is a failed attempt.
        let call =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.call(event, ctx)));
        let future: futures::future::BoxFuture<'_, HandlerResult> = match call {
            Ok(f) => Box::pin(f),
            Err(panic) => Box::pin(async move { std::panic::resume_unwind(panic) }),
        };
        let canceller = self.cancel_after.map(|after| {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                cancel.cancel();
            })
        });
        let options = &self.handler_options;
        let limits = RunLimits::of(options, Duration::from_secs(3600));
        let run = supervise(future, &limits, (&cancel, None), None, &Unwatched).await;
        if let Some(c) = canceller {
            c.abort();
        }
        let mut policy = options.retry.clone();
        policy.max_attempts = self.max_attempts;
        let outcome = RunOutcome::of(decide(
            &run,
            cancel.is_cancelled(),
            Attempt {
                number: self.attempt,
                policy: &policy,
                timeout: options.timeout,
            },
        ));
        let result = match run {
            Run::Done(result) => result,
            Run::Panicked(message) => Err(HandlerError::transient(format!(
                "handler panicked: {message}"
            ))),
            Run::TimedOut => Err(HandlerError::transient(format!(
                "handler exceeded its {:?} timeout",
                options.timeout
            ))),
            Run::Cancelled | Run::Aborted => Err(HandlerError::permanent(
                "cancelled: the handler did not return within its cancel grace",
            )),
        };
        let published = log.lock().map(|l| l.clone()).unwrap_or_default();
        let progress = progress.lock().map(|l| l.clone()).unwrap_or_default();
        HandlerRun {
            result,
            published,
            progress,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::HandlerError;
    use crate::PublishErrorKind;
    use serde::{Deserialize, Deserializer, Serialize};

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Order {
        n: u32,
    }
    impl Event for Order {
        const TYPE: &'static str = "test.order";
    }

    /// A follow-up whose own type refuses `n == 0` when decoding.
    #[derive(Debug, Serialize, schemars::JsonSchema)]
    struct Invoice {
        n: u32,
    }
    impl<'de> Deserialize<'de> for Invoice {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            struct Raw {
                n: u32,
            }
            let raw = Raw::deserialize(d)?;
            if raw.n == 0 {
                return Err(serde::de::Error::custom("an invoice needs a number"));
            }
            Ok(Self { n: raw.n })
        }
    }
    impl Event for Invoice {
        const TYPE: &'static str = "test.invoice";
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[tokio::test]
    async fn follow_ups_are_refused_as_a_publish_would_refuse_them() {
        let publish = |n: u32, options: EventOptions| async move {
            let kind = std::sync::Arc::new(Mutex::new(None));
            let seen = kind.clone();
            let handler = move |_: Order, ctx: Context| {
                let seen = seen.clone();
                let options = options.clone();
                async move {
                    if let Err(e) = ctx.publish_with(&Invoice { n }, options).await {
                        *seen.lock().unwrap() = Some(e.kind());
                        return Err(HandlerError::permanent(e));
                    }
                    Ok(())
                }
            };
            let run = TestDelivery::new(acme(), Order { n: 1 })
                .run(handler, ())
                .await;
            (run, kind.lock().unwrap().take())
        };
        let (run, kind) = publish(0, EventOptions::default()).await;
        assert!(run.result.is_err() && run.published.is_empty());
        assert_eq!(
            kind,
            Some(PublishErrorKind::Encode),
            "the decode-back check"
        );
        let (_, kind) = publish(1, EventOptions::default().lane("Not A Lane")).await;
        assert_eq!(
            kind,
            Some(PublishErrorKind::InvalidEventType),
            "the lane check"
        );
        let (_, kind) = publish(1, EventOptions::default().header("X", "a\r\nb")).await;
        assert_eq!(kind, Some(PublishErrorKind::InvalidHeader));
        let (run, kind) = publish(1, EventOptions::default().lane("high")).await;
        assert_eq!(kind, None);
        assert_eq!(run.published[0].lane.as_deref(), Some("high"));
    }

    #[tokio::test]
    async fn follow_ups_get_ids_derived_from_the_handled_event() {
        let handler = |_: Order, ctx: Context| async move {
            ctx.publish(&Invoice { n: 1 }).await?;
            ctx.publish(&Invoice { n: 2 }).await?;
            ctx.publish_with(&Invoice { n: 3 }, EventOptions::default().id("mine"))
                .await?;
            Ok(())
        };
        let run = TestDelivery::new(acme(), Order { n: 1 })
            .options(EventOptions::default().id("order-7"))
            .run(handler, ())
            .await;
        assert!(run.result.is_ok());
        let ids: Vec<&str> = run.published.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            ["order-7:test.invoice", "order-7:test.invoice:2", "mine"]
        );
    }

    #[tokio::test]
    async fn reports_what_the_worker_would_do_with_the_event() {
        let run = |attempt: u32, options: HandlerOptions, fail: &'static str| {
            let handler = move |_: Order, _: Context| async move {
                match fail {
                    "panic" => panic!("a bug"),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(())
                    }
                    "permanent" => Err(HandlerError::permanent("bad input")),
                    "transient" => Err(HandlerError::transient("down")),
                    _ => Ok(()),
                }
            };
            TestDelivery::new(acme(), Order { n: 1 })
                .handler_options(options)
                .attempt(attempt, 3)
                .run(handler, ())
        };
        let options = HandlerOptions::default().retry(crate::RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.0,
        });
        assert_eq!(
            run(1, options.clone(), "ok").await.outcome,
            RunOutcome::Acked
        );
        assert_eq!(
            run(2, options.clone(), "transient").await.outcome,
            RunOutcome::Retried {
                delay: Duration::from_secs(4),
                error: "down".into()
            }
        );
        assert_eq!(
            run(3, options.clone(), "transient").await.outcome,
            RunOutcome::DeadLettered {
                kind: DeadLetterKind::Handler,
                error: "down".into()
            }
        );
        assert_eq!(
            run(1, options.clone(), "permanent").await.outcome,
            RunOutcome::DeadLettered {
                kind: DeadLetterKind::Handler,
                error: "bad input".into()
            }
        );
        let panicked = run(3, options.clone(), "panic").await;
        assert_eq!(
            panicked.outcome,
            RunOutcome::DeadLettered {
                kind: DeadLetterKind::Panic,
                error: "handler panicked: a bug".into()
            }
        );
        assert!(panicked.result.is_err());
        let slow = run(1, options.timeout(Duration::from_millis(50)), "slow").await;
        assert_eq!(
            slow.outcome,
            RunOutcome::Retried {
                delay: Duration::from_secs(2),
                error: "handler exceeded its 50ms timeout".into()
            }
        );
    }
}

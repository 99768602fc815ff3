//! Handlers, their results, and the context they run in.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::envelope::{self, DecodeError};
use crate::event::Event;
use crate::retry::RetryPolicy;

mod context;
mod error;

pub use context::{Context, RecordedEvent, follow_up_id};
pub(crate) use context::{Delivery, FollowUps, ProgressSink, RunHooks};
pub use error::{HandlerError, HandlerResult, Retry};

/// Per-handler settings: retries, timeout, expected duration and cancellation.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerOptions {
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// How long one attempt may run before it counts as a (retryable) failure.
    pub timeout: Duration,
    /// How long a run is expected to take (its SLA). A run still going after it logs a
    /// warning and counts in `conveyor_sla_breaches_total`; `None` (default): no expectation.
    pub expected_duration: Option<Duration>,
    /// Also publish an [`SlaBreached`](crate::sla::SlaBreached) event (`sla.breached`, for the
    /// event's tenant) when a run goes over its expected duration (default false).
    pub sla_event: bool,
    /// How long a cancelled run may take to return after it was told; it is stopped after that
    /// (default 500 ms).
    pub cancel_grace: Duration,
}

impl Default for HandlerOptions {
    /// [`RetryPolicy::default`], a 60 s timeout, no expected duration, 500 ms cancel grace.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            expected_duration: None,
            sla_event: false,
            cancel_grace: Duration::from_millis(500),
        }
    }
}

impl HandlerOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the expected duration of a run (see [`expected_duration`](Self::expected_duration)).
    pub fn expected_duration(mut self, expected: Duration) -> Self {
        self.expected_duration = Some(expected);
        self
    }

    /// Publishes an `sla.breached` event when a run goes over its expected duration.
    pub fn sla_event(mut self, publish: bool) -> Self {
        self.sla_event = publish;
        self
    }

    /// Sets how long a cancelled run may take to return before it is stopped.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }
}

/// An async function that handles events of type `E` with app state `S`.
///
/// Implemented for every `Fn(E, Context<S>) -> impl Future<Output = HandlerResult>`, so a plain
/// `async fn` is a handler:
///
/// ```
/// use conveyor::{Context, HandlerResult};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderCreated { order_id: String }
/// # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
///
/// async fn on_order_created(event: OrderCreated, ctx: Context<()>) -> HandlerResult {
///     tracing::info!(tenant = %ctx.tenant(), order = %event.order_id, "order received");
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Conveyor handler for events of type `{E}` with state `{S}`",
    note = "a handler is `async fn(event: E, ctx: Context<S>) -> HandlerResult` where `E: Event` and `S` is the worker's state type"
)]
pub trait Handler<E, S>: Clone + Send + Sync + 'static {
    /// The future one run returns.
    type Future: Future<Output = HandlerResult> + Send + 'static;
    /// Runs the handler on one event.
    fn call(&self, event: E, ctx: Context<S>) -> Self::Future;
}

impl<F, Fut, E, S> Handler<E, S> for F
where
    F: Fn(E, Context<S>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    type Future = Fut;
    fn call(&self, event: E, ctx: Context<S>) -> Fut {
        self(event, ctx)
    }
}

/// A handler with its event type erased: decodes the payload, then runs.
pub(crate) trait ErasedHandler<S>: Send + Sync {
    fn call(
        &self,
        data: &RawValue,
        event_type: &str,
        ctx: Context<S>,
    ) -> Result<BoxFuture<'static, HandlerResult>, DecodeError>;
}

pub(crate) struct Typed<E, H> {
    pub(crate) handler: H,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E, H> Typed<E, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _event: std::marker::PhantomData,
        }
    }
}

impl<E: Event, S: Send + 'static, H: Handler<E, S>> ErasedHandler<S> for Typed<E, H> {
    fn call(
        &self,
        data: &RawValue,
        event_type: &str,
        ctx: Context<S>,
    ) -> Result<BoxFuture<'static, HandlerResult>, DecodeError> {
        let event: E = envelope::decode_data(data, event_type)?;
        Ok(Box::pin(self.handler.call(event, ctx)))
    }
}

/// A handler of a group that carries its own state ([`Group::with_state`](crate::Group::with_state)):
/// runs the inner handler with that state in place of the worker's `()`.
pub(crate) struct WithState<S> {
    pub(crate) inner: std::sync::Arc<dyn ErasedHandler<S>>,
    pub(crate) state: S,
}

impl<S: Clone + Send + Sync + 'static> ErasedHandler<()> for WithState<S> {
    fn call(
        &self,
        data: &RawValue,
        event_type: &str,
        ctx: Context<()>,
    ) -> Result<BoxFuture<'static, HandlerResult>, DecodeError> {
        self.inner
            .call(data, event_type, ctx.with_state(self.state.clone()))
    }
}

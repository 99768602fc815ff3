//! Batch handlers: one run for many events of one tenant.
//!
//! [`Group::handle_batch`](crate::Group::handle_batch) registers an
//! `async fn(events: Vec<E>, ctx: BatchContext<S>) -> HandlerResult`. Each process collects its
//! deliveries of the type per tenant (a batch never mixes tenants) and runs the handler once a
//! batch holds `max_size` events, or `max_wait` after its first event. Every event of the batch
//! is settled on its own, as if its handler had returned the batch's result: success acks them
//! all, a failure retries each with its own attempt count and retry policy (and dead-letters
//! those on their last attempt). An event the handler names with
//! [`BatchContext::reject`] is dead-lettered alone (a permanent failure with the given error),
//! whatever the batch's result.
//!
//! While an event waits for its batch it holds one of the group's handler slots, with
//! in-progress heartbeats, so a batch holds at most the group's
//! [`concurrency`](crate::GroupConfig::concurrency) events, and the handler's timeout is
//! extended by `max_wait` to cover the wait. With several processes, each builds its own batches
//! from the deliveries it gets.
//!
//! ```
//! use std::time::Duration;
//! use conveyor::batch::{BatchContext, BatchOptions};
//! use conveyor::{Group, HandlerResult};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct Notification { text: String }
//! # impl conveyor::Event for Notification { const TYPE: &'static str = "notification.created"; }
//!
//! /// One digest email per tenant for up to 100 notifications, at most 5 minutes late.
//! async fn digest(notes: Vec<Notification>, ctx: BatchContext) -> HandlerResult {
//!     println!("digest of {} notifications for {}", notes.len(), ctx.tenant());
//!     Ok(())
//! }
//!
//! let group = Group::new("digests")
//!     .concurrency(100)
//!     .handle_batch(digest, BatchOptions::new(100, Duration::from_secs(300)));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;

use crate::envelope::{self, DecodeError};
use crate::event::Event;
use crate::handler::{Context, ErasedHandler, HandlerError, HandlerOptions, HandlerResult};
use crate::tenant::TenantId;

/// How a batch handler's batches are built.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOptions {
    /// Events in a full batch (at least 1).
    pub max_size: usize,
    /// How long after its first event a batch that is not full runs.
    pub max_wait: Duration,
    /// Retry policy and timeout (the timeout is extended by `max_wait`, for the wait); `None`:
    /// the group's handler defaults.
    pub handler: Option<HandlerOptions>,
}

impl BatchOptions {
    /// Batches of up to `max_size` events, run at the latest `max_wait` after their first.
    pub fn new(max_size: usize, max_wait: Duration) -> Self {
        Self {
            max_size: max_size.max(1),
            max_wait,
            handler: None,
        }
    }

    /// Sets the retry policy and timeout of the handler.
    pub fn handler_options(mut self, options: HandlerOptions) -> Self {
        self.handler = Some(options);
        self
    }
}

/// A batch handler for events of type `E` with state `S`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Conveyor batch handler for events of type `{E}` with state `{S}`",
    note = "a batch handler is `async fn(events: Vec<E>, ctx: BatchContext<S>) -> HandlerResult`"
)]
pub trait BatchHandler<E, S>: Clone + Send + Sync + 'static {
    /// The future one run returns.
    type Future: Future<Output = HandlerResult> + Send + 'static;
    /// Runs the handler on one batch.
    fn call(&self, events: Vec<E>, ctx: BatchContext<S>) -> Self::Future;
}

impl<F, Fut, E, S> BatchHandler<E, S> for F
where
    F: Fn(Vec<E>, BatchContext<S>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    type Future = Fut;
    fn call(&self, events: Vec<E>, ctx: BatchContext<S>) -> Fut {
        self(events, ctx)
    }
}

/// What a batch handler gets besides its events: their tenant, each event's own [`Context`]
/// (id, attempt, follow-up publishing with that event as the cause), the state, and a way to
/// dead-letter one event alone.
pub struct BatchContext<S = ()> {
    tenant: TenantId,
    contexts: Vec<Context<S>>,
    rejected: Arc<Mutex<HashMap<usize, String>>>,
}

impl<S> fmt::Debug for BatchContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchContext")
            .field("tenant", &self.tenant)
            .field("len", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

impl<S> BatchContext<S> {
    /// The tenant of every event of the batch.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// True for an empty batch (never passed to a handler).
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The context of the `i`-th event (as in the `events` vector): its id, attempt,
    /// correlation, and follow-up publishing.
    pub fn event(&self, i: usize) -> Option<&Context<S>> {
        self.contexts.get(i)
    }

    /// Every event's context, in the order of `events`.
    pub fn events(&self) -> &[Context<S>] {
        &self.contexts
    }

    /// The worker's (or the group's) state.
    pub fn state(&self) -> Option<&S> {
        self.contexts.first().map(Context::state)
    }

    /// Dead-letters the `i`-th event alone (a poison event), with `error`, whatever the batch's
    /// result: the others are acked on success, retried on failure.
    pub fn reject(&self, i: usize, error: impl fmt::Display) {
        if i < self.contexts.len()
            && let Ok(mut r) = self.rejected.lock()
        {
            r.insert(i, error.to_string());
        }
    }
}

/// A batch being filled for one tenant.
struct Filling<E, S> {
    events: Vec<E>,
    contexts: Vec<Context<S>>,
    results: Vec<oneshot::Sender<HandlerResult>>,
}

struct Slot<E, S> {
    filling: Mutex<Option<Filling<E, S>>>,
    /// Woken when the batch is full.
    full: Notify,
}

/// The batches being filled, by tenant.
type Open<E, S> = Arc<Mutex<HashMap<TenantId, Arc<Slot<E, S>>>>>;

/// A batch handler behind the per-event handler interface: each event's run joins its tenant's
/// batch and waits for the batch's result.
pub(crate) struct Batched<E, H, S> {
    handler: H,
    max_size: usize,
    max_wait: Duration,
    open: Open<E, S>,
}

impl<E, H, S> Batched<E, H, S> {
    pub(crate) fn new(handler: H, options: &BatchOptions) -> Self {
        Self {
            handler,
            max_size: options.max_size.max(1),
            max_wait: options.max_wait,
            open: Arc::default(),
        }
    }
}

/// The same failure for each event of a batch.
fn for_each(e: &HandlerError) -> HandlerError {
    HandlerError::with_retry(e.retry(), e.to_string())
}

impl<E, H, S> ErasedHandler<S> for Batched<E, H, S>
where
    E: Event,
    H: BatchHandler<E, S>,
    S: Clone + Send + Sync + 'static,
{
    fn call(
        &self,
        data: &RawValue,
        event_type: &str,
        ctx: Context<S>,
    ) -> Result<BoxFuture<'static, HandlerResult>, DecodeError> {
        let event: E = envelope::decode_data(data, event_type)?;
        let tenant = ctx.tenant().clone();
        let (tx, rx) = oneshot::channel();
        let Ok(mut open) = self.open.lock() else {
            return Ok(Box::pin(async {
                Err(HandlerError::transient("the batch table is poisoned"))
            }));
        };
        let slot = open.get(&tenant).cloned();
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(Slot {
                    filling: Mutex::new(Some(Filling {
                        events: Vec::with_capacity(self.max_size),
                        contexts: Vec::with_capacity(self.max_size),
                        results: Vec::with_capacity(self.max_size),
                    })),
                    full: Notify::new(),
                });
                open.insert(tenant.clone(), slot.clone());
                let flush = flush(
                    self.handler.clone(),
                    self.open.clone(),
                    tenant.clone(),
                    slot.clone(),
                    self.max_wait,
                );
                tokio::spawn(flush.instrument(tracing::Span::current()));
                slot
            }
        };
        let mut full = false;
        if let Ok(mut filling) = slot.filling.lock()
            && let Some(f) = filling.as_mut()
        {
            f.events.push(event);
            f.contexts.push(ctx);
            f.results.push(tx);
            full = f.events.len() >= self.max_size;
        }
        if full {
            open.remove(&tenant);
            slot.full.notify_one();
        }
        drop(open);
        Ok(Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(HandlerError::transient(
                    "the batch ended without a result (the worker stopped)",
                ))
            })
        }))
    }
}

/// Runs a batch once it is full or `max_wait` after it opened, and hands each event its result.
async fn flush<E, H, S>(
    handler: H,
    open: Open<E, S>,
    tenant: TenantId,
    slot: Arc<Slot<E, S>>,
    max_wait: Duration,
) where
    E: Event,
    H: BatchHandler<E, S>,
    S: Clone + Send + Sync + 'static,
{
    tokio::select! {
        () = tokio::time::sleep(max_wait) => {}
        () = slot.full.notified() => {}
    }
    if let Ok(mut open) = open.lock()
        && open.get(&tenant).is_some_and(|s| Arc::ptr_eq(s, &slot))
    {
        open.remove(&tenant);
    }
    let Some(Filling {
        events,
        contexts,
        results,
    }) = slot.filling.lock().ok().and_then(|mut f| f.take())
    else {
        return;
    };
    // Events whose runs ended meanwhile (cancelled, stopped) are not run.
    let (mut kept_events, mut kept_contexts, mut kept_results) = (vec![], vec![], vec![]);
    for ((e, c), r) in events.into_iter().zip(contexts).zip(results) {
        if !r.is_closed() {
            kept_events.push(e);
            kept_contexts.push(c);
            kept_results.push(r);
        }
    }
    if kept_events.is_empty() {
        return;
    }
    let rejected = Arc::new(Mutex::new(HashMap::new()));
    let ctx = BatchContext {
        tenant,
        contexts: kept_contexts,
        rejected: rejected.clone(),
    };
    let run = std::panic::AssertUnwindSafe(async { handler.call(kept_events, ctx).await })
        .catch_unwind()
        .await;
    let result = match run {
        Ok(result) => result,
        Err(panic) => Err(HandlerError::transient(format!(
            "batch handler panicked: {}",
            crate::worker::panic_message(&panic)
        ))),
    };
    let rejected = rejected.lock().map(|r| r.clone()).unwrap_or_default();
    for (i, tx) in kept_results.into_iter().enumerate() {
        let own = match (rejected.get(&i), &result) {
            (Some(why), _) => Err(HandlerError::permanent(format!(
                "rejected from its batch: {why}"
            ))),
            (None, Ok(())) => Ok(()),
            (None, Err(e)) => Err(for_each(e)),
        };
        let _ = tx.send(own);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_at_least_one_event() {
        assert_eq!(BatchOptions::new(0, Duration::ZERO).max_size, 1);
    }
}

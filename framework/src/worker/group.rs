//! Handler groups: a named set of handlers sharing the group's partition consumers, and their
//! settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Event;
use crate::handler::{ErasedHandler, Handler, HandlerOptions, Typed};
use crate::telemetry::RouteMetrics;

/// Where a new group's consumer starts reading the `EVENTS` stream. Only used when the group's
/// consumer is created; an existing consumer keeps its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Every event still in the stream (default): nothing published before the group's first
    /// start is missed.
    #[default]
    Beginning,
    /// Only events published after the consumer is created.
    Now,
}

/// Settings of one handler group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Handlers this process runs at once for the group (default 32). The pull batch follows it.
    pub concurrency: usize,
    /// Deliveries without an ack across every process of the group, per partition consumer
    /// (default 1024): one tenant partition's cluster-wide limit.
    pub max_ack_pending: i64,
    /// How long the server waits for an ack before redelivering (default 30 s). Running
    /// handlers send in-progress heartbeats every third of it.
    pub ack_wait: Duration,
    /// Where a new consumer starts.
    pub start_from: StartFrom,
    /// Options of handlers registered without their own.
    pub handler_defaults: HandlerOptions,
    /// Bind to the group's existing consumer instead of creating or updating it: for users
    /// whose permissions allow pulling and acking but not creating consumers. The consumer
    /// must exist (an admin creates it, e.g. by running the worker once with more rights).
    pub bind_only: bool,
    /// Record every attempt in the run history (see [`crate::history`]); default true. Records
    /// are appended in batches, 20 to 30 % of a group's throughput for handlers that do
    /// nothing (BENCHMARKS.md, Observability); turn it off for a group whose runs nobody looks up.
    pub history: bool,
    /// The lane the group handles (`None`: the default lane). See [`Group::lane`].
    pub lane: Option<String>,
    /// How long an event of a type this process has no handler for, but its consumer's filter
    /// holds (another version of the group added it: a rolling deploy), is handed back for a
    /// process that handles it, in 8 delayed hand-backs, before it is dead-lettered as
    /// `unknown-type` (default 4 min). Hand-backs do not count as attempts.
    pub unknown_type_grace: Duration,
    /// A retry that waits at least this long (default 10 s) is not a delayed Nak, which would
    /// hold one of the partition's `max_ack_pending` deliveries for the whole wait: the delivery
    /// is acked and a delayed copy for this group only is scheduled (see [`crate::delay`]). The
    /// handler sees the same event id, attempt number, trace and correlation either way.
    pub delayed_retry_after: Duration,
    /// A cluster-wide rate limit of the group's runs (see [`crate::rate`]); default none.
    pub rate_limit: Option<crate::rate::RateLimit>,
    /// A cluster-wide limit of the group's concurrent runs, for the group, per tenant or per
    /// key (see [`crate::concurrency`]); default none.
    pub concurrency_limit: Option<crate::concurrency::ConcurrencyLimit>,
}

/// Default of [`GroupConfig::delayed_retry_after`].
pub const DEFAULT_DELAYED_RETRY_AFTER: Duration = Duration::from_secs(10);

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            max_ack_pending: 1024,
            ack_wait: Duration::from_secs(30),
            start_from: StartFrom::Beginning,
            handler_defaults: HandlerOptions::default(),
            bind_only: false,
            history: true,
            lane: None,
            unknown_type_grace: Duration::from_secs(240),
            delayed_retry_after: DEFAULT_DELAYED_RETRY_AFTER,
            rate_limit: None,
            concurrency_limit: None,
        }
    }
}

pub(crate) struct RouteSpec<S> {
    pub(super) event_type: &'static str,
    pub(super) handler: Arc<dyn ErasedHandler<S>>,
    pub(super) options: Option<HandlerOptions>,
    /// Added to the handler's timeout: a batch event's run includes its wait for the batch.
    pub(super) extra_timeout: Duration,
}

pub(crate) struct Route<S> {
    /// The type it handles.
    pub(crate) event_type: &'static str,
    pub(crate) handler: Arc<dyn ErasedHandler<S>>,
    pub(crate) options: HandlerOptions,
    pub(crate) metrics: Option<RouteMetrics>,
}

/// A named set of handlers sharing durable consumers: one per tenant partition
/// (`<name>~p00` to `<name>~p15`, see [`crate::partition`]), so no tenant's backlog delays
/// another's events.
///
/// Every process that runs the group binds the same consumers, so starting more processes
/// spreads the group's work; each event is delivered to one of them. Two groups that handle the
/// same event type each get every event (fan-out). The name names the consumers: renaming a
/// group starts new ones.
///
/// ```
/// use conveyor::{Context, Group, HandlerOptions, HandlerResult, RetryPolicy};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderCreated { order_id: String }
/// # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderFulfilled { order_id: String }
/// # impl conveyor::Event for OrderFulfilled { const TYPE: &'static str = "order.fulfilled"; }
/// async fn created(e: OrderCreated, ctx: Context) -> HandlerResult { Ok(()) }
/// async fn fulfilled(e: OrderFulfilled, ctx: Context) -> HandlerResult { Ok(()) }
///
/// let billing = Group::new("billing")
///     .concurrency(8)
///     .handle(created)
///     .handle_with(fulfilled, HandlerOptions::default().retry(RetryPolicy::no_retry()));
/// ```
pub struct Group<S = ()> {
    pub(super) name: String,
    pub(super) config: GroupConfig,
    pub(super) routes: Vec<RouteSpec<S>>,
}

impl<S> fmt::Debug for Group<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("config", &self.config)
            .field(
                "event_types",
                &self.routes.iter().map(|r| r.event_type).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S: Clone + Send + Sync + 'static> Group<S> {
    /// A group named `name` (`[A-Za-z0-9_-]`, 1 to 64 characters; checked by
    /// [`WorkerBuilder::build`](super::WorkerBuilder::build)).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            config: GroupConfig::default(),
            routes: Vec::new(),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers `handler` for its event type with the group's default options.
    pub fn handle<E: Event, H: Handler<E, S>>(mut self, handler: H) -> Self {
        self.routes.push(RouteSpec {
            event_type: E::TYPE,
            handler: Arc::new(Typed::<E, H>::new(handler)),
            options: None,
            extra_timeout: Duration::ZERO,
        });
        self
    }

    /// Registers `handler` for its event type with its own retry policy and timeout.
    pub fn handle_with<E: Event, H: Handler<E, S>>(
        mut self,
        handler: H,
        options: HandlerOptions,
    ) -> Self {
        self.routes.push(RouteSpec {
            event_type: E::TYPE,
            handler: Arc::new(Typed::<E, H>::new(handler)),
            options: Some(options),
            extra_timeout: Duration::ZERO,
        });
        self
    }

    /// Registers a batch handler for its event type: one run for up to `options.max_size`
    /// events of one tenant, at most `options.max_wait` after the first (see [`crate::batch`]).
    /// The handler's timeout is extended by `options.max_wait`, to cover the wait for the batch.
    pub fn handle_batch<E: Event, H: crate::batch::BatchHandler<E, S>>(
        mut self,
        handler: H,
        options: crate::batch::BatchOptions,
    ) -> Self {
        self.routes.push(RouteSpec {
            event_type: E::TYPE,
            handler: Arc::new(crate::batch::Batched::<E, H, S>::new(handler, &options)),
            options: options.handler.clone(),
            extra_timeout: options.max_wait,
        });
        self
    }

    /// Replaces the group's settings.
    pub fn config(mut self, config: GroupConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets how many handlers this process runs at once for the group.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Sets the cluster-wide limit of unacknowledged deliveries of each partition consumer.
    pub fn max_ack_pending(mut self, n: i64) -> Self {
        self.config.max_ack_pending = n;
        self
    }

    /// Sets the consumer's ack wait.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.config.ack_wait = ack_wait;
        self
    }

    /// Sets where a new consumer starts.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.config.start_from = start;
        self
    }

    /// Binds to the existing consumer only (see [`GroupConfig::bind_only`]).
    pub fn bind_only(mut self, bind_only: bool) -> Self {
        self.config.bind_only = bind_only;
        self
    }

    /// Makes the group handle the events published on `lane` (`events.<tenant>.<type>.~<lane>`)
    /// instead of the default lane. Two groups with the same handlers, one on the default lane
    /// and one on a `high` lane, give urgent events a consumer of their own: a backlog on the
    /// default lane does not delay them.
    ///
    /// ```
    /// use conveyor::{Context, EventOptions, Group, HandlerResult};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Explain { id: String }
    /// # impl conveyor::Event for Explain { const TYPE: &'static str = "fraud.explanation.requested"; }
    /// async fn explain(e: Explain, ctx: Context) -> HandlerResult { Ok(()) }
    ///
    /// let normal = Group::new("explain").handle(explain);
    /// let urgent = Group::new("explain-high").lane("high").handle(explain);
    /// // publisher.publish_with("acme", &event, EventOptions::default().lane("high"))
    /// # let _ = (normal, urgent, EventOptions::default().lane("high"));
    /// ```
    pub fn lane(mut self, lane: impl Into<String>) -> Self {
        self.config.lane = Some(lane.into());
        self
    }

    /// Sets how long events of a type only another version of the group handles are handed
    /// back before they are dead-lettered (see [`GroupConfig::unknown_type_grace`]).
    pub fn unknown_type_grace(mut self, grace: Duration) -> Self {
        self.config.unknown_type_grace = grace;
        self
    }

    /// Sets from which retry delay on a retry is a delayed copy rather than a delayed Nak (see
    /// [`GroupConfig::delayed_retry_after`]).
    pub fn delayed_retry_after(mut self, after: Duration) -> Self {
        self.config.delayed_retry_after = after;
        self
    }

    /// Limits the group's runs across every process (see [`crate::rate`]): an event over the
    /// limit waits for its slot as a delayed copy, holding no handler or `max_ack_pending` slot.
    pub fn rate_limit(mut self, limit: crate::rate::RateLimit) -> Self {
        self.config.rate_limit = Some(limit);
        self
    }

    /// Limits the group's concurrent runs across every process, for the group, per tenant or
    /// per key (see [`crate::concurrency`]): an event whose key is full waits as a delayed copy,
    /// holding no handler or `max_ack_pending` slot, until a run of its key ends.
    pub fn concurrency_limit(mut self, limit: crate::concurrency::ConcurrencyLimit) -> Self {
        self.config.concurrency_limit = Some(limit);
        self
    }

    /// Records every attempt in the run history, or not (see [`GroupConfig::history`]; on by
    /// default).
    pub fn history(mut self, on: bool) -> Self {
        self.config.history = on;
        self
    }

    /// Gives the group its own state and makes it a `Group<()>`, so groups of different crates
    /// (each with its own state type) run in one [`Worker`](super::Worker) built with `()`:
    /// one consumer loop per group, one cancellation watcher, one backstop for all of them.
    /// Handlers still get a `Context<S>` with this state.
    ///
    /// ```
    /// use conveyor::{Context, Group, HandlerResult};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct OrderCreated { order_id: String }
    /// # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct VideoUploaded { video_id: String }
    /// # impl conveyor::Event for VideoUploaded { const TYPE: &'static str = "video.upload.completed"; }
    /// #[derive(Clone)]
    /// struct Billing { psp: String }
    /// #[derive(Clone)]
    /// struct Video { ai: String }
    ///
    /// async fn charge(e: OrderCreated, ctx: Context<Billing>) -> HandlerResult { Ok(()) }
    /// async fn intake(e: VideoUploaded, ctx: Context<Video>) -> HandlerResult { Ok(()) }
    ///
    /// # async fn run(conn: conveyor::Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// let worker = conveyor::Worker::builder(&conn, ())
    ///     .group(Group::new("billing").handle(charge).with_state(Billing { psp: "psp".into() }))
    ///     .group(Group::new("video").handle(intake).with_state(Video { ai: "ai".into() }))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn with_state(self, state: S) -> Group<()> {
        Group {
            name: self.name,
            config: self.config,
            routes: self
                .routes
                .into_iter()
                .map(|r| RouteSpec {
                    event_type: r.event_type,
                    handler: Arc::new(crate::handler::WithState {
                        inner: r.handler,
                        state: state.clone(),
                    }) as Arc<dyn ErasedHandler<()>>,
                    options: r.options,
                    extra_timeout: r.extra_timeout,
                })
                .collect(),
        }
    }

    /// Sets the options of handlers registered with [`handle`](Self::handle).
    pub fn handler_defaults(mut self, options: HandlerOptions) -> Self {
        self.config.handler_defaults = options;
        self
    }
}

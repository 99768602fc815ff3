//! Handler groups and the worker that runs them.

mod backstop;
mod consumer_metrics;
mod group;
mod handback;
mod presence;
pub(crate) mod runtime;

pub(crate) use group::Route;
pub use group::{Group, GroupConfig, StartFrom};
pub(crate) use runtime::panic_message;

pub use handback::{HANDBACK_ALLOWANCE, HANDBACKS_BUCKET};
pub use presence::{PRESENCE_INTERVAL, WORKERS_BUCKET, WORKERS_MAX_AGE};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::Connection;
use crate::control::Cancellations;
use crate::error::Error;
use crate::event::validate_event_type;
use crate::publisher::Publisher;
use crate::telemetry::Telemetry;

/// Why a worker could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// A group name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidGroupName,
    /// Two groups of the worker have the same name.
    DuplicateGroup,
    /// A group has no handlers.
    EmptyGroup,
    /// A group has two handlers for one event type.
    DuplicateHandler,
    /// An event type name breaks the event type rules.
    InvalidEventType,
    /// A setting is out of range (zero concurrency, zero ack wait, ...).
    InvalidConfig,
    /// The worker has no groups.
    NoGroups,
}

impl fmt::Display for BuildErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidGroupName => "invalid group name",
            Self::DuplicateGroup => "duplicate group",
            Self::EmptyGroup => "empty group",
            Self::DuplicateHandler => "duplicate handler",
            Self::InvalidEventType => "invalid event type",
            Self::InvalidConfig => "invalid group config",
            Self::NoGroups => "no groups",
        })
    }
}

/// A worker that could not be built.
pub type BuildError = Error<BuildErrorKind>;

/// Configures a [`Worker`].
pub struct WorkerBuilder<S> {
    conn: Connection,
    state: S,
    groups: Vec<Group<S>>,
    shutdown_grace: Duration,
    backstop: bool,
    source: String,
    telemetry: Option<Telemetry>,
    poll_interval: Duration,
}

impl<S: Clone + Send + Sync + 'static> WorkerBuilder<S> {
    /// Records the worker's metrics in `telemetry` and adds its readiness checks (`nats`:
    /// connected; `consumer:<group>`: bound to the group's consumer). Serve them with
    /// [`Telemetry::serve`]. Without it the worker keeps no metrics at all.
    pub fn telemetry(mut self, telemetry: &Telemetry) -> Self {
        self.telemetry = Some(telemetry.clone());
        self
    }

    /// How often consumer pending counts are read from JetStream for the metrics (default 10 s).
    pub fn consumer_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Adds a handler group.
    pub fn group(mut self, group: Group<S>) -> Self {
        self.groups.push(group);
        self
    }

    /// How long a shutdown lets running handlers finish before it stops them and hands their
    /// events back to the server (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Whether this process also runs the max-deliveries backstop (default true): it
    /// dead-letters events whose last delivery ended without a result. Any number of processes
    /// may run it; they share one consumer.
    pub fn backstop(mut self, enabled: bool) -> Self {
        self.backstop = enabled;
        self
    }

    /// Sets the `source` of events handlers publish (default `conveyor-worker`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Checks every group and returns the worker, or the first problem found.
    pub fn build(self) -> Result<Worker<S>, BuildError> {
        if self.groups.is_empty() {
            return Err(Error::new(
                BuildErrorKind::NoGroups,
                "a worker needs at least one handler group",
            ));
        }
        let mut publisher = Publisher::new(&self.conn).with_source(self.source);
        if let Some(t) = &self.telemetry {
            publisher = publisher.with_telemetry(t);
        }
        let cancels = Arc::new(Cancellations::default());
        let pauses = Arc::new(crate::pause::Pauses::default());
        let weights = Arc::new(crate::weights::Weights::default());
        let handbacks = Arc::new(handback::HandBacks::new(self.conn.clone()));
        let acks = Arc::new(runtime::Acks::default());
        let mut names = HashSet::new();
        let mut groups = Vec::with_capacity(self.groups.len());
        for group in self.groups {
            crate::subject::validate_group_name(&group.name)
                .map_err(|e| Error::restate(BuildErrorKind::InvalidGroupName, e))?;
            if !names.insert(group.name.clone()) {
                return Err(Error::new(
                    BuildErrorKind::DuplicateGroup,
                    format!("group {:?} is registered twice", group.name),
                ));
            }
            let c = &group.config;
            if c.concurrency == 0
                || c.ack_wait < Duration::from_millis(100)
                || c.max_ack_pending < 1
            {
                return Err(Error::new(
                    BuildErrorKind::InvalidConfig,
                    format!(
                        "group {:?}: concurrency and max_ack_pending must be at least 1 and ack_wait at least 100 ms",
                        group.name
                    ),
                ));
            }
            if let Some(lane) = &group.config.lane {
                crate::envelope::validate_lane(lane).map_err(|e| {
                    Error::with_source(
                        BuildErrorKind::InvalidConfig,
                        format!("group {:?}: {}", group.name, e.message()),
                        e,
                    )
                })?;
            }
            if group.routes.is_empty() {
                return Err(Error::new(
                    BuildErrorKind::EmptyGroup,
                    format!("group {:?} has no handlers", group.name),
                ));
            }
            let group_metrics = self.telemetry.as_ref().map(|t| t.group(&group.name));
            let mut routes = HashMap::new();
            for spec in group.routes {
                validate_event_type(spec.event_type).map_err(|e| {
                    Error::with_source(
                        BuildErrorKind::InvalidEventType,
                        format!("group {:?}: {}", group.name, e.message()),
                        e,
                    )
                })?;
                let mut options = spec
                    .options
                    .unwrap_or_else(|| group.config.handler_defaults.clone());
                options.timeout = options.timeout.saturating_add(spec.extra_timeout);
                let route = Route {
                    event_type: spec.event_type,
                    handler: spec.handler,
                    options,
                    metrics: group_metrics.as_ref().map(|m| m.route(spec.event_type)),
                };
                if routes.insert(spec.event_type.to_owned(), route).is_some() {
                    return Err(Error::new(
                        BuildErrorKind::DuplicateHandler,
                        format!(
                            "group {:?} has two handlers for {:?}; one group handles a type once (use another group to fan out)",
                            group.name, spec.event_type
                        ),
                    ));
                }
            }
            groups.push(Arc::new(runtime::GroupRuntime::new(
                group.name,
                group.config,
                routes,
                self.conn.clone(),
                publisher.clone(),
                self.state.clone(),
                runtime::Shared {
                    metrics: group_metrics,
                    cancels: cancels.clone(),
                    pauses: pauses.clone(),
                    weights: weights.clone(),
                    handbacks: handbacks.clone(),
                    acks: acks.clone(),
                },
            )));
        }
        Ok(Worker {
            conn: self.conn,
            groups,
            acks,
            shutdown_grace: self.shutdown_grace,
            backstop: self.backstop,
            telemetry: self.telemetry,
            poll_interval: self.poll_interval,
            cancels,
            pauses,
            weights,
        })
    }
}

/// Runs handler groups: durable pull consumers per group (one per tenant partition, served
/// fairly), with acks, retries with backoff, dead letters, heartbeats for long handlers and
/// graceful shutdown.
///
/// ```no_run
/// use conveyor::{Connection, Context, Group, HandlerResult, Worker};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct OrderCreated { order_id: String }
/// # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
///
/// #[derive(Clone)]
/// struct App { greeting: String }
///
/// async fn on_order(event: OrderCreated, ctx: Context<App>) -> HandlerResult {
///     println!("{} order {} of {}", ctx.state().greeting, event.order_id, ctx.tenant());
///     Ok(())
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Connection::connect("nats://127.0.0.1:4222").await?;
/// let worker = Worker::builder(&conn, App { greeting: "new".into() })
///     .group(Group::new("billing").handle(on_order))
///     .build()?;
/// worker.run().await?; // until SIGTERM or Ctrl-C
/// # Ok(()) }
/// ```
pub struct Worker<S> {
    conn: Connection,
    groups: Vec<Arc<runtime::GroupRuntime<S>>>,
    /// The acks the groups' handled deliveries queue, sent by one task.
    acks: Arc<runtime::Acks>,
    shutdown_grace: Duration,
    backstop: bool,
    telemetry: Option<Telemetry>,
    poll_interval: Duration,
    cancels: Arc<Cancellations>,
    pauses: Arc<crate::pause::Pauses>,
    weights: Arc<crate::weights::Weights>,
}

impl<S> fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field(
                "groups",
                &self.groups.iter().map(|g| g.name()).collect::<Vec<_>>(),
            )
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

/// Why a worker stopped with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerErrorKind {
    /// The shutdown signal handler could not be installed.
    Signal,
}

impl fmt::Display for WorkerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Signal => "signal handler failed",
        })
    }
}

/// A worker that stopped with an error.
pub type WorkerError = Error<WorkerErrorKind>;

impl<S: Clone + Send + Sync + 'static> Worker<S> {
    /// Starts configuring a worker on `conn` whose handlers share `state` (use `()` for none;
    /// wrap expensive state in an `Arc`).
    pub fn builder(conn: &Connection, state: S) -> WorkerBuilder<S> {
        WorkerBuilder {
            conn: conn.clone(),
            state,
            groups: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            backstop: true,
            source: "conveyor-worker".into(),
            telemetry: None,
            poll_interval: Duration::from_secs(10),
        }
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run(self) -> Result<(), WorkerError> {
        let signal = crate::shutdown::signal().map_err(|e| {
            Error::with_source(WorkerErrorKind::Signal, "cannot listen for SIGTERM", e)
        })?;
        self.run_until(signal).await;
        Ok(())
    }

    /// Runs until `signal` completes, then shuts down gracefully: stops pulling, hands buffered
    /// events back, lets running handlers finish within the grace period, hands back the ones
    /// still running after it, and flushes every ack and dead letter.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) {
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut loops = Vec::new();
        loops.push(tokio::spawn(
            self.cancels
                .clone()
                .watch(self.conn.clone(), shutdown.clone()),
        ));
        if let Some(t) = &self.telemetry {
            let client = self.conn.client().clone();
            t.add_check("nats", move || {
                client.connection_state() == async_nats::connection::State::Connected
            });
            for group in &self.groups {
                t.add_check(format!("consumer:{}", group.name()), group.bound());
            }
            loops.push(tokio::spawn(consumer_metrics::poll_consumers(
                self.conn.clone(),
                self.groups
                    .iter()
                    .filter_map(|g| g.metrics().map(|m| (g.name().to_owned(), m.clone())))
                    .collect(),
                self.poll_interval,
                shutdown.clone(),
            )));
        }
        // Run records are appended by one flusher per group, and acks sent by one task, until
        // the last handler has finished.
        let close_history = CancellationToken::new();
        let mut flushers = Vec::new();
        for group in &self.groups {
            if let Some(writer) = group.history_writer() {
                writer.ensure_stream().await;
                flushers.push(writer.spawn_flusher(close_history.clone()));
            }
        }
        flushers.push(tokio::spawn(runtime::send_acks(
            self.acks.clone(),
            self.conn.clone(),
            close_history.clone(),
        )));
        loops.push(tokio::spawn(
            self.pauses
                .clone()
                .watch(self.conn.clone(), shutdown.clone()),
        ));
        loops.push(tokio::spawn(
            self.weights
                .clone()
                .watch(self.conn.clone(), shutdown.clone()),
        ));
        self.cancels.wait_ready(Duration::from_secs(5)).await;
        self.pauses.wait_ready(Duration::from_secs(5)).await;
        self.weights.wait_ready(Duration::from_secs(5)).await;
        for group in &self.groups {
            loops.push(tokio::spawn(runtime::run_group(
                group.clone(),
                shutdown.clone(),
                abort.clone(),
                tracker.clone(),
            )));
        }
        loops.push(tokio::spawn(presence::announce(
            self.conn.clone(),
            self.groups.clone(),
            shutdown.clone(),
        )));
        if self.backstop {
            loops.push(tokio::spawn(backstop::run(
                self.conn.clone(),
                shutdown.clone(),
            )));
        }
        tracing::info!(
            groups = ?self.groups.iter().map(|g| g.name()).collect::<Vec<_>>(),
            "worker running"
        );
        signal.await;
        tracing::info!(grace = ?self.shutdown_grace, "worker shutting down");
        shutdown.cancel();
        for l in loops {
            if let Err(e) = l.await {
                tracing::error!(error = %e, "group loop failed");
            }
        }
        tracker.close();
        if tokio::time::timeout(self.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = tracker.len(),
                "grace period over; handing running events back"
            );
            abort.cancel();
            if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(running = tracker.len(), "handlers did not stop");
            }
        }
        close_history.cancel();
        for f in flushers {
            if let Err(e) = f.await {
                tracing::error!(error = %e, "run history or ack flusher failed");
            }
        }
        if let Err(e) = self.conn.client().flush().await {
            tracing::error!(error = %e, "flush on shutdown failed");
        }
        if let Some(t) = &self.telemetry {
            t.remove_check("nats");
            for group in &self.groups {
                t.remove_check(&format!("consumer:{}", group.name()));
            }
        }
        tracing::info!("worker stopped");
    }

    /// Starts the worker on the current runtime and returns a handle to stop it.
    pub fn spawn(self) -> WorkerHandle {
        let token = CancellationToken::new();
        let signal = token.clone();
        let join = tokio::spawn(async move { self.run_until(signal.cancelled_owned()).await });
        WorkerHandle { token, join }
    }
}

/// A running worker started with [`Worker::spawn`].
#[derive(Debug)]
pub struct WorkerHandle {
    token: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Shuts the worker down gracefully and waits until it has stopped.
    pub async fn shutdown(self) {
        self.token.cancel();
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "worker task failed");
        }
    }
}
